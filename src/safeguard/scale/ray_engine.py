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

import heapq
import io
import itertools
import json
import logging
import pickle
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from safeguard._files import json_line, open_private, parse_jsonl_line, printable
from safeguard.errors import DataError, missing_dependency

__all__ = ["DetectCounts", "detect_file", "init_ray", "scrub_file"]

log = logging.getLogger(__name__)

_RAW_LIMIT = 1 << 20  # raw text kept in quarantine up to 1 MiB (as the in-process engine)


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


def _run_worker(
    batch: dict[str, np.ndarray], *, factory: Any, spec: dict[str, Any]
) -> dict[str, np.ndarray]:
    """A Ray task: build the worker (cheap: keys, tokenizer, scrubber config) and run it.

    Stateless tasks reuse Ray's worker processes between runs, where actors would start new
    ones; heavy state (spaCy) is cached per process by the PII module itself.
    """
    return factory(**spec)(batch)


# ============================================================================ detection


@dataclass
class DetectCounts:
    """What a detection run did: records read, flagged and not processable."""

    total: int = 0
    flagged: int = 0
    errors: int = 0
    too_short: int = 0


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
    """Parse, tokenize and detect a batch of units exactly as ``safeguard detect`` does."""

    def __init__(
        self,
        keys: Sequence[Any],
        tokenizer: Any,
        field: str,
        prompt_field: str | None,
        fpr: float,
        options: dict[str, Any],
        normalize: bool = True,
    ) -> None:
        from safeguard.watermark import Watermarker, normalize_text

        self.keys = list(keys)
        self.tokenizer = tokenizer
        self.field = field
        self.prompt_field = prompt_field
        self.fpr = fpr
        self.options = options
        self.clean = normalize_text if normalize else (lambda t: t)
        self.single = Watermarker(self.keys[0]) if len(self.keys) == 1 else None
        self.vocab = len(tokenizer)

    def _parse(self, body: bytes, first: bool) -> tuple[list[int], list[int] | None]:
        from safeguard.watermark.tokenizer import encode_record

        record, reason = parse_jsonl_line(body, first=first)
        if reason is not None:
            raise DataError(reason)
        return encode_record(
            record,
            self.tokenizer,
            field=self.field,
            prompt_field=self.prompt_field,
            clean=self.clean,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from safeguard.watermark.batch import detect_records

        positions = [int(p) for p in batch["pos"]]
        out = [""] * len(positions)  # "" marks a blank line: nothing written
        flag = np.zeros(len(positions), dtype=np.int8)
        err = np.zeros(len(positions), dtype=np.int8)
        short = np.zeros(len(positions), dtype=np.int8)
        pending: list[tuple[int, list[int], list[int] | None]] = []
        for i, (pos, raw) in enumerate(zip(positions, batch["raw"], strict=True)):
            body = bytes(raw).rstrip(b"\r\n")
            if not body.strip():
                continue
            n = pos + 1
            try:
                ids, prompt_ids = self._parse(body, first=pos == 0)
            except DataError as exc:
                out[i], err[i] = json.dumps({"line": n, "error": str(exc)}), 1
                continue
            pending.append((i, ids, prompt_ids))
        outcomes = detect_records(
            self.keys,
            [(ids, prompt_ids) for _, ids, prompt_ids in pending],
            false_positive_rate=self.fpr,
            vocab_size=self.vocab,
            options=self.options,
            watermarker=self.single,
        )
        for (i, _, _), outcome in zip(pending, outcomes, strict=True):
            n = positions[i] + 1
            if outcome.error is not None:
                out[i], err[i] = json.dumps({"line": n, "error": outcome.error}), 1
                continue
            out[i] = json.dumps({"line": n, **(outcome.payload or {})})
            flag[i], short[i] = int(outcome.flagged), int(outcome.too_short)
        return {
            "pos": np.asarray(positions, dtype=np.int64),
            "out": np.asarray(out, dtype=object),
            "flag": flag,
            "err": err,
            "short": short,
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
    if not keys:
        raise DataError("`keys` is empty; pass at least one watermark key")
    if batch_size < 1:
        raise DataError(f"`batch_size` (={batch_size}) must be >= 1")
    fmt = _format_of(input_path, input_format)
    if "://" not in input_path and not Path(input_path).is_file():
        raise DataError(f"cannot read {input_path!r}: no such file")
    ray = init_ray()
    workers = num_workers or max(1, int(ray.available_resources().get("CPU", 1)))
    ds = (
        ray.data.read_binary_files(input_path)
        .flat_map(_split_for_detect, fn_kwargs={"fmt": fmt})
        .repartition(target_num_rows_per_block=batch_size)
        .map_batches(
            _run_worker,
            fn_kwargs={
                "factory": _DetectWorker,
                "spec": {
                    "keys": list(keys),
                    "tokenizer": tokenizer,
                    "field": field,
                    "prompt_field": prompt_field,
                    "fpr": false_positive_rate,
                    "options": dict(options or {}),
                    "normalize": normalize,
                },
            },
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=workers,
        )
    )
    counts = DetectCounts()
    for row in _quiet_rows(ds):
        line = str(row["out"])
        if not line:
            continue
        counts.total += 1
        counts.flagged += int(row["flag"])
        counts.errors += int(row["err"])
        counts.too_short += int(row["short"])
        sink.write(line + "\n")
    return counts


# ============================================================================ scrubbing


def _split_for_scrub(row: dict[str, Any], fmt: str, max_bytes: int) -> list[dict[str, Any]]:
    """One input file -> units as the in-process reader makes them (binary JSONL lines)."""
    data = row["bytes"]
    units: list[dict[str, Any]] = []
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for i, rec in enumerate(pq.read_table(pa.BufferReader(data)).to_pylist()):
            units.append({"pos": i, "kind": "record", "blob": pickle.dumps(rec), "offset": -1})
        return units
    offset = 0
    for i, raw in enumerate(io.BytesIO(data)):
        unit: dict[str, Any] = {"pos": i, "kind": "record", "blob": b"", "offset": offset}
        offset += len(raw)
        body = raw.rstrip(b"\r\n")
        if not body.strip():
            unit["kind"] = "empty"
        elif len(body) > max_bytes:
            unit["kind"] = "error"
            unit["blob"] = pickle.dumps(
                (
                    f"record is {len(body)} bytes, over max_record_bytes ({max_bytes}); "
                    "raise --max-record-bytes to process it",
                    None,
                )
            )
        else:
            unit["blob"] = body
            unit["kind"] = "line"
        units.append(unit)
    return units


def _decode_line(body: bytes, first: bool = False) -> tuple[Any, str | None, str | None]:
    """(record, error, raw) for one JSONL line, as the in-process reader makes them."""
    record, reason = parse_jsonl_line(body, first=first)
    if reason is None:
        return record, None, None
    return None, reason, printable(body) if len(body) <= _RAW_LIMIT else None


class _ScrubWorker:
    """Scrub the text fields of a batch of units as ``safeguard scrub`` does."""

    def __init__(
        self, scrubber: Any, fields: Sequence[str], patient_field: str | None, source: str
    ) -> None:
        self.scrubber = scrubber
        self.fields = list(fields)
        self.patient_field = patient_field
        self.source = source

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from safeguard.pii.paths import locate_texts
        from safeguard.pii.stream import _scrub_texts

        n = len(batch["pos"])
        records: list[Any] = [None] * n
        errors: list[str | None] = [None] * n
        raws: list[str | None] = [None] * n
        kinds = [str(k) for k in batch["kind"]]
        unreadable = np.zeros(n, dtype=np.int8)  # not UTF-8 / JSON / an object
        for i, (kind, blob) in enumerate(zip(kinds, batch["blob"], strict=True)):
            if kind == "line":
                first = int(batch["offset"][i]) == 0
                records[i], errors[i], raws[i] = _decode_line(bytes(blob), first)
                unreadable[i] = errors[i] is not None
            elif kind == "record":
                records[i] = pickle.loads(bytes(blob))
            elif kind == "error":
                errors[i], raws[i] = pickle.loads(bytes(blob))
        texts: list[str] = []
        pids: list[str | None] = []
        slots: list[tuple[int, Any, Any]] = []
        bad: dict[int, str] = {}
        located = np.zeros(n, dtype=np.int8)
        for i in range(n):
            if kinds[i] == "empty" or errors[i] is not None:
                continue
            try:
                pid, mine = locate_texts(records[i], self.fields, self.patient_field)
            except (KeyError, TypeError) as exc:
                bad[i] = str(exc.args[0]) if exc.args else type(exc).__name__
                continue
            located[i] = 1
            for container, key in mine:
                slots.append((i, container, key))
                texts.append(container[key])
                pids.append(pid)
        results = _scrub_texts(self.scrubber, texts, pids) if texts else []
        unlocated = dict(bad)  # fields missing or not strings (before any scrubbing)
        for (i, _, _), res in zip(slots, results, strict=True):
            if isinstance(res, Exception):
                bad.setdefault(i, f"scrubbing failed: {type(res).__name__}: {res}")
        entities: list[Counter[str]] = [Counter() for _ in range(n)]
        for (i, container, key), res in zip(slots, results, strict=True):
            if i in bad:
                continue
            container[key] = res.text
            entities[i].update(f.entity for f in res.findings)
        out_kind, payload, ents = [], [], []
        for i in range(n):
            reason = errors[i] or bad.get(i)
            if kinds[i] == "empty":
                out_kind.append("empty")
                payload.append(b"")
            elif reason:
                pos = int(batch["pos"][i])
                entry: dict[str, Any] = {"reason": reason, "input": self.source, "position": pos}
                if int(batch["offset"][i]) >= 0:
                    entry["line"] = pos + 1
                    entry["byte_offset"] = int(batch["offset"][i])
                if records[i] is not None:
                    entry["record"] = records[i]
                elif raws[i] is not None:
                    entry["raw"] = raws[i]
                out_kind.append("quarantine")
                payload.append(json_line(entry))
            else:
                out_kind.append("record")
                payload.append(pickle.dumps(records[i]))
            ents.append(json.dumps(dict(entities[i])))
        return {
            "pos": np.asarray(batch["pos"], dtype=np.int64),
            "kind": np.asarray(out_kind, dtype=object),
            "payload": np.asarray(payload, dtype=object),
            "entities": np.asarray(ents, dtype=object),
            "located": located,
            "unreadable": unreadable,
            "bad": np.asarray([unlocated.get(i, "") for i in range(n)], dtype=object),
        }


def scrub_file(
    scrubber: Any,
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
) -> Any:
    """Scrub a JSONL or Parquet file on Ray Data; same output, quarantine and counts as in-process.

    The arguments mean what they mean for :func:`safeguard.pii.stream.scrub_file`. There is
    no ``resume``: Ray retries failed tasks, and the output appears under its final name
    only when the run completes (written to ``OUT.partial`` first, then renamed).

    Returns:
        The :class:`~safeguard.pii.stream.ScrubReport` (also written to ``report_path``).

    Raises:
        DataError: Missing input, CSV (use the in-process engine), same input and output, or
            no record of the first batch has the requested fields.
    """
    import datetime as dt
    import os

    from safeguard.pii.paths import parse_path
    from safeguard.pii.stream import ScrubReport, detect_format, sha256_file

    src, dst = Path(input_path), Path(output_path)
    if not src.is_file():
        raise DataError(f"input file {str(src)!r} does not exist or is not a file")
    if src.resolve() == dst.resolve():
        raise DataError("the output path must differ from the input path")
    if batch_size < 1:
        raise DataError(f"`batch_size` (={batch_size}) must be >= 1")
    if not dst.parent.exists():
        raise DataError(f"output folder {str(dst.parent)!r} does not exist")
    fields = list(fields)
    for f in [*fields, *([patient_field] if patient_field else [])]:
        try:
            parse_path(f)
        except ValueError as exc:
            raise DataError(str(exc)) from None
    in_fmt = detect_format(src, input_format)
    out_fmt = detect_format(dst, output_format) if (output_format or dst.suffix) else in_fmt
    if "csv" in (in_fmt, out_fmt):
        raise DataError(
            "the ray engine reads and writes JSONL or Parquet; use --engine local for CSV"
        )
    schema = None
    if in_fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(src)
        except Exception as exc:
            raise DataError(f"cannot read Parquet file {str(src)!r}: {exc}") from None
        for f in fields:
            if parse_path(f)[0] not in schema.names:
                raise DataError(
                    f"field {f!r} is not a column of {str(src)!r}; columns: {list(schema.names)}"
                )
    qpath = (
        Path(quarantine_path) if quarantine_path else dst.with_name(dst.name + ".quarantine.jsonl")
    )
    partial = dst.with_name(dst.name + ".partial")
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

    ray = init_ray()
    workers = num_workers or max(1, int(ray.available_resources().get("CPU", 1)))
    ds = (
        ray.data.read_binary_files(str(src))
        .flat_map(_split_for_scrub, fn_kwargs={"fmt": in_fmt, "max_bytes": max_record_bytes})
        .repartition(target_num_rows_per_block=batch_size)
        .map_batches(
            _run_worker,
            fn_kwargs={
                "factory": _ScrubWorker,
                "spec": {
                    "scrubber": scrubber,
                    "fields": fields,
                    "patient_field": patient_field,
                    "source": str(src),
                },
            },
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=workers,
        )
    )
    counts: Counter[str] = Counter()
    entities: Counter[str] = Counter()
    writer = _Output(out_fmt, partial, schema, batch_size)
    quarantine = None
    try:
        rows = _quiet_rows(ds)
        head = list(itertools.islice(rows, batch_size))
        _check_first_batch(head, fields, src)
        for row in itertools.chain(head, rows):
            quarantine = _consume(row, counts, entities, writer, quarantine, qpath)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    finally:
        if quarantine is not None:
            quarantine.close()

    from safeguard.pii.stream import _config_digest

    digest = policy_digest or _config_digest(scrubber)
    report = ScrubReport(
        policy={"name": getattr(scrubber.config, "policy_name", None), "digest": digest},
        config={k: v for k, v in scrubber.report_fields().items() if k not in ("key_id", "policy")},
        key_id=getattr(getattr(scrubber, "key", None), "key_id", None),
        input={
            "path": str(src),
            "format": in_fmt,
            "bytes": src.stat().st_size,
            "sha256": sha256_file(src),
        },
        output={
            "path": str(dst),
            "format": out_fmt,
            "bytes": partial.stat().st_size,
            "sha256": sha256_file(partial),
        },
        quarantine={
            "path": str(qpath) if counts["quarantined"] else None,
            "records": counts["quarantined"],
            "sha256": sha256_file(qpath) if counts["quarantined"] else None,
        },
        fields=fields,
        records={
            k: counts[k] for k in ("read", "written", "changed", "quarantined", "empty_lines")
        },
        entities=dict(sorted(entities.items())),
        resumed=0,
        started_at=started,
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    if report_path:
        report.write(report_path)
    os.replace(partial, dst)
    return report


def _check_first_batch(rows: list[dict[str, Any]], fields: list[str], src: Path) -> None:
    """The in-process engine refuses a run whose first batch has none of the fields, or whose
    first batch is unreadable throughout (not JSONL)."""
    live = [r for r in rows if str(r["kind"]) != "empty"]
    if live and all(int(r["unreadable"]) for r in live):
        entry = json.loads(bytes(live[0]["payload"]))
        raise DataError(
            f"{str(src)!r} does not look like JSONL: none of its first {len(live)} "
            f"line(s) is a readable JSON object (line {entry['line']}: {entry['reason']}); "
            "check the file, or pass --format for CSV or Parquet"
        )
    bad = [str(r["bad"]) for r in live if str(r["bad"])]
    if bad and not any(int(r["located"]) for r in live):
        sample = next((r for r in live if str(r["bad"]) and str(r["kind"]) == "quarantine"), None)
        keys: list[str] = []
        if sample is not None:
            entry = json.loads(bytes(sample["payload"]).decode("utf-8"))
            rec = entry.get("record")
            keys = sorted(rec) if isinstance(rec, dict) else []
        raise DataError(
            f"none of the first {len(bad)} records has the field(s) {fields}: {bad[0]}; "
            f"top-level keys: {keys}"
        )


def _consume(
    row: dict[str, Any],
    counts: Counter[str],
    entities: Counter[str],
    writer: _Output,
    quarantine: Any,
    qpath: Path,
) -> Any:
    kind = str(row["kind"])
    if kind == "empty":
        counts["empty_lines"] += 1
        return quarantine
    counts["read"] += 1
    if kind == "quarantine":
        if quarantine is None:
            quarantine = open_private(qpath, "wb")  # raw records: owner-only; caller closes
        quarantine.write(bytes(row["payload"]))
        counts["quarantined"] += 1
        return quarantine
    writer.write(pickle.loads(bytes(row["payload"])))
    counts["written"] += 1
    found = json.loads(str(row["entities"]))
    if found:
        counts["changed"] += 1
        entities.update(found)
    return quarantine


class _Output:
    """JSONL lines, or Parquet written ``batch_size`` records per row group (input schema)."""

    def __init__(self, fmt: str, path: Path, schema: Any, batch_size: int) -> None:
        self.fmt, self.path, self.schema, self.batch_size = fmt, path, schema, batch_size
        self.fh = open(path, "wb") if fmt == "jsonl" else None  # noqa: SIM115
        self.pending: list[Any] = []
        self.writer: Any = None

    def write(self, record: Any) -> None:
        if self.fh is not None:
            line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
            self.fh.write(line.encode("utf-8"))
            return
        self.pending.append(record)
        if len(self.pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.pending:
            return
        table = pa.Table.from_pylist(self.pending, schema=self.schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        elif table.schema != self.writer.schema:
            table = table.cast(self.writer.schema)
        self.writer.write_table(table)
        self.pending = []

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            return
        self._flush()
        if self.writer is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist([], schema=self.schema), self.path)
        else:
            self.writer.close()

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
        elif self.writer is not None:
            self.writer.close()
        self.path.unlink(missing_ok=True)
