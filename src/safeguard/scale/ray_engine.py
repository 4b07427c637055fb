"""Batch detection and scrubbing on Ray Data, with the output of the in-process engine.

Both commands run the same three-stage plan::

    read_binary_files(IN) ─► flat_map: split into units (JSONL lines / Parquet rows, numbered)
        ─► repartition(batch_size rows per block)
        ─► map_batches(task: Watermarker.detect_batch | Scrubber.scrub_batch)
        ─► driver: put units back in input order ─► OUT (+ quarantine, report)

Units carry their input position, so the driver writes exactly what ``safeguard detect`` /
``safeguard scrub`` write in-process, in the same order, whatever the cluster did.
``ray.init()`` connects to the cluster named by ``RAY_ADDRESS`` when it is set, and starts
a local Ray instance otherwise. Keys and pseudonym keys travel to the workers inside Ray's
object store (never in logs or task names); workers need ``safeguard`` installed.
"""

from __future__ import annotations

import functools
import heapq
import io
import itertools
import logging
import pickle
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from safeguard._files import json_line, parse_jsonl_line
from safeguard.errors import DataError, missing_dependency
from safeguard.pii.job import ScrubJob, ScrubReport, now, sha256_file
from safeguard.pii.records import (
    FirstBatchRefused,
    Unit,
    jsonl_units,
    parquet_units,
    parse_pending,
    scrub_texts,
    scrub_units,
)
from safeguard.pii.types import Scrubber

if TYPE_CHECKING:
    from safeguard.watermark.batch import DetectCounts

__all__ = ["DetectCounts", "detect_file", "init_ray", "run_job", "scrub_file"]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # DetectCounts is watermark's (imported when asked for: scrubbing needs no watermark code).
    if name == "DetectCounts":
        from safeguard.watermark.batch import DetectCounts

        return DetectCounts
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def init_ray(num_cpus: int | None = None) -> Any:
    """Connect to Ray (``RAY_ADDRESS`` if set, else a local instance) and configure Ray Data.

    Order is preserved and progress bars are off, so output is deterministic and stderr
    carries only safeguard's own summary.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise missing_dependency("ray", "ray") from exc
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no per-run banners on stderr
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray


def _quiet_rows(ds: Any) -> Iterator[dict[str, Any]]:
    """Rows of ``ds`` in input order, without Ray's sizing hints (small inputs are fine)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*concurrent tasks.*", category=UserWarning)
        yield from _in_order(ds.iter_batches(batch_format="numpy", batch_size=None))


def _format_of(path: str, given: str | None = None) -> str:
    if given:
        return given
    return "parquet" if path.lower().endswith((".parquet", ".pq")) else "jsonl"


def _in_order(batches: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, Any]]:
    """Rows of ``batches`` by ascending ``pos`` (0, 1, 2, ...), buffering any that run ahead."""
    heap: list[tuple[int, int, dict[str, Any]]] = []
    expected, tie = 0, 0
    for batch in batches:
        names = list(batch)
        for i in range(len(batch["pos"])):
            row = {name: batch[name][i] for name in names}
            heapq.heappush(heap, (int(row["pos"]), tie, row))
            tie += 1
        while heap and heap[0][0] == expected:
            yield heapq.heappop(heap)[2]
            expected += 1
    while heap:
        pos, _, row = heapq.heappop(heap)
        if pos != expected:
            raise RuntimeError(f"Ray returned units out of sequence (missing unit {expected})")
        yield row
        expected += 1


def _plan(
    path: str,
    split: Any,
    split_kwargs: dict[str, Any],
    factory: Any,
    spec: dict[str, Any],
    batch_size: int,
    num_workers: int | None,
) -> Any:
    """The three-stage Ray Data plan: read ``path``, ``split`` it into numbered units,
    regroup ``batch_size`` units per block, and run ``factory(**spec)`` on each batch."""
    ray = init_ray()
    workers = num_workers or max(1, int(ray.available_resources().get("CPU", 1)))
    return (
        ray.data.read_binary_files(path)
        .flat_map(split, fn_kwargs=split_kwargs)
        .repartition(target_num_rows_per_block=batch_size)
        .map_batches(
            _run_worker,
            fn_kwargs={"factory": factory, "spec": spec},
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=workers,
        )
    )


def _run_worker(
    batch: dict[str, np.ndarray], *, factory: Any, spec: dict[str, Any]
) -> dict[str, np.ndarray]:
    """A Ray task: build the worker (cheap: keys, tokenizer, scrubber config) and run it.

    Stateless tasks reuse Ray's worker processes between runs, where actors would start new
    ones; heavy state (spaCy) is cached per process by the PII module itself.
    """
    return factory(**spec)(batch)


# ============================================================================ detection


def _split_for_detect(row: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """One input file -> one unit per row, or per ``\n``-ended line of bytes (JSONL, as the
    in-process reader splits; each line is decoded on its own by the worker)."""
    data = row["bytes"]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        records = pq.read_table(pa.BufferReader(data)).to_pylist()
        return [{"pos": i, "raw": json_line(r)} for i, r in enumerate(records)]
    return [{"pos": i, "raw": line} for i, line in enumerate(io.BytesIO(data))]


class _DetectWorker:
    """Parse, tokenize and detect a batch of units exactly as ``safeguard detect`` does: the
    lines go through :func:`safeguard.watermark.batch.detect_lines`, the local engine's loop."""

    def __init__(self, **detect: Any) -> None:
        self.detect = detect  # keys, tokenizer, field, prompt_field, fpr, options, normalize

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from safeguard.watermark.batch import detect_lines

        positions = [int(p) for p in batch["pos"]]
        lines = []
        for pos, raw in zip(positions, batch["raw"], strict=True):
            body = bytes(raw).rstrip(b"\r\n")
            if body.strip():  # a blank line has no result line
                record, reason = parse_jsonl_line(body, first=pos == 0)
                lines.append((pos + 1, record, reason))
        found = {
            outcome.line - 1: pickle.dumps(outcome)
            for outcome in detect_lines(lines, batch_size=max(1, len(lines)), **self.detect)
        }
        return {
            "pos": np.asarray(positions, dtype=np.int64),
            "out": np.asarray([found.get(p, b"") for p in positions], dtype=object),
        }


def detect_file(
    input_path: str,
    sink: IO[str],
    *,
    keys: Sequence[Any],
    tokenizer: Any,
    field: str = "text",
    prompt_field: str | None = None,
    false_positive_rate: float = 1e-3,
    options: dict[str, Any] | None = None,
    input_format: str | None = None,
    batch_size: int = 1024,
    num_workers: int | None = None,
    normalize: bool = True,
) -> DetectCounts:
    """Detect watermarks in every record of a JSONL or Parquet file on Ray Data.

    Writes to ``sink`` exactly the lines ``safeguard detect`` writes in-process (Parquet
    row ``i`` is reported as line ``i + 1``).

    Args:
        input_path: JSONL or Parquet file (local path or a URI Ray's file systems read).
        sink: Text stream for the JSONL results.
        keys: ``WatermarkKey`` objects (several: Holm-corrected, as ``detect_many``).
        tokenizer: The tokenizer used at generation (pickled to the workers).
        field: Field holding the text.
        prompt_field: Field holding the prompt, if recorded.
        false_positive_rate: Rate at which unwatermarked text is flagged.
        options: Scheme options (``resolution`` for exp/exp-edit).
        input_format: ``jsonl`` or ``parquet`` (default: from the suffix).
        batch_size: Records per detection batch (and per Ray block).
        num_workers: Concurrent detection tasks (default: the cluster's CPUs).
        normalize: Undo Unicode edits (zero-width characters, look-alike letters, exotic
            spaces) before tokenizing, as ``safeguard detect`` does by default.

    Returns:
        The counts for the summary and the exit code.
    """
    from safeguard.watermark.batch import DetectCounts

    if not keys:
        raise DataError("`keys` is empty; pass at least one watermark key")
    if batch_size < 1:
        raise DataError(f"`batch_size` (={batch_size}) must be >= 1")
    fmt = _format_of(input_path, input_format)
    if "://" not in input_path and not Path(input_path).is_file():
        raise DataError(f"cannot read {input_path!r}: no such file")
    spec = {
        "keys": list(keys),
        "tokenizer": tokenizer,
        "field": field,
        "prompt_field": prompt_field,
        "false_positive_rate": false_positive_rate,
        "options": dict(options or {}),
        "normalize": normalize,
    }
    ds = _plan(
        input_path, _split_for_detect, {"fmt": fmt}, _DetectWorker, spec, batch_size, num_workers
    )
    counts = DetectCounts()
    for row in _quiet_rows(ds):
        if blob := bytes(row["out"]):
            outcome = pickle.loads(blob)
            sink.write(outcome.json + "\n")
            counts.add(outcome)
    return counts


# ============================================================================ scrubbing


def _split_for_scrub(row: dict[str, Any], fmt: str, max_bytes: int) -> list[dict[str, Any]]:
    """One input file -> units as the in-process reader makes them (JSONL lines unparsed:
    the tasks parse them)."""
    data = row["bytes"]
    if fmt == "parquet":
        import pyarrow as pa

        units: Iterator[Unit] = parquet_units(pa.BufferReader(data), 0, 1 << 16)
    else:
        units = jsonl_units(io.BytesIO(data), max_bytes, parse=False)
    out = []
    for unit in units:
        unit.data = b""  # the input hash is taken on the driver
        out.append({"pos": unit.position, "unit": pickle.dumps(unit)})
    return out


class _ScrubWorker:
    """Scrub the text fields of a batch of units as ``safeguard scrub`` does."""

    def __init__(self, job: ScrubJob) -> None:
        self.job = job

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        job = self.job
        units = [parse_pending(pickle.loads(bytes(blob))) for blob in batch["unit"]]
        scrub = functools.partial(scrub_texts, job.scrubber)
        outcomes = scrub_units(units, job.fields, job.patient_field, job.source, scrub)
        return {
            "pos": np.asarray(batch["pos"], dtype=np.int64),
            "out": np.asarray([pickle.dumps(o) for o in outcomes], dtype=object),
        }


def scrub_file(
    scrubber: Scrubber,
    input_path: str | Path,
    output_path: str | Path,
    *,
    fields: Sequence[str] = ("text",),
    input_format: str | None = None,
    output_format: str | None = None,
    quarantine_path: str | Path | None = None,
    report_path: str | Path | None = None,
    batch_size: int = 256,
    patient_field: str | None = None,
    max_record_bytes: int = 16 << 20,
    policy_digest: str | None = None,
    num_workers: int | None = None,
) -> ScrubReport:
    """Scrub a JSONL or Parquet file on Ray Data; same output, quarantine and counts as in-process.

    The arguments mean what they mean for :func:`safeguard.pii.stream.scrub_file` (both
    make a :class:`~safeguard.pii.job.ScrubJob`). There is no ``resume``: Ray retries
    failed tasks, and the output appears under its final name only when the run completes
    (written to ``OUT.partial`` first, then renamed).

    Returns:
        The :class:`~safeguard.pii.job.ScrubReport` (also written to ``report_path``).

    Raises:
        DataError: Missing input, CSV (use the in-process engine), same input and output, or
            no record of the first batch has the requested fields.
    """
    job = ScrubJob(
        scrubber,
        input_path,
        output_path,
        fields=fields,
        input_format=input_format,  # type: ignore[arg-type]
        output_format=output_format,  # type: ignore[arg-type]
        quarantine_path=quarantine_path,
        report_path=report_path,
        batch_size=batch_size,
        patient_field=patient_field,
        max_record_bytes=max_record_bytes,
        policy_digest=policy_digest,
        engine="ray",
        formats=("jsonl", "parquet"),
    )
    return run_job(job, num_workers=num_workers)


def run_job(job: ScrubJob, *, num_workers: int | None = None) -> ScrubReport:
    """Run a :class:`~safeguard.pii.job.ScrubJob` on Ray Data (JSONL or Parquet)."""
    started = now()
    split_kwargs = {"fmt": job.input_format, "max_bytes": job.max_record_bytes}
    ds = _plan(
        str(job.input_path), _split_for_scrub, split_kwargs, _ScrubWorker, {"job": job},
        job.batch_size, num_workers,
    )  # fmt: skip
    writer = job.writer()
    writer.open()
    outcomes = (pickle.loads(bytes(row["out"])) for row in _quiet_rows(ds))
    try:
        for i, batch in enumerate(_batches(outcomes, job.batch_size)):
            writer.write(batch, first=i == 0, fields=job.field_list, src=job.input_path)
        writer.finish()
    except FirstBatchRefused as exc:
        writer.refuse()
        raise DataError(str(exc)) from None
    except BaseException:
        writer.sink.discard()
        writer.close()
        qpath = job.quarantine_path
        if qpath.exists() and qpath.stat().st_size == 0:  # type: ignore[union-attr]
            qpath.unlink()  # type: ignore[union-attr]
        raise
    report = job.report(
        writer,
        input_sha256=sha256_file(job.input_path),
        input_bytes=job.input_path.stat().st_size,
        started_at=started,
    )
    job.publish(writer, report)
    return report


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while batch := list(itertools.islice(items, size)):
        yield batch
