"""Streaming, resumable, quarantining scrubbing of JSONL, CSV and Parquet files.

:func:`scrub_file` reads records in batches, scrubs the chosen text fields, and writes:

- the output to ``OUT.partial`` (Parquet: one part file per batch under ``OUT.parts/``),
  renamed to ``OUT`` only when the run completes (atomic: readers never see half a file);
- records that cannot be processed to a quarantine JSONL file (mode 0600: it holds raw
  records), each with its reason, its input position and (below 1 MB) its raw text,
  counted in the report. A line that is not UTF-8, not JSON, holds a lone surrogate
  (``"\\ud800"``) or is not an object is quarantined like any other bad record; only an
  input none of whose first batch of lines is readable is refused (it is not JSONL);
- a checkpoint ``OUT.partial.ckpt.json`` (0600) after every batch, written after the output
  and quarantine are flushed to disk, so that after a crash (even ``kill -9``) a rerun with
  ``resume=True`` truncates both files to the last checkpoint and continues from the next
  input record: no record is lost or written twice. The checkpoint holds the sha256 of the
  input bytes consumed so far (JSONL; CSV and Parquet: of the whole input), and a resume
  re-reads and compares it: an input edited in place, even with its size and modification
  time restored, is refused instead of resumed into a mix of old and new records;
- a scrub report (JSON) with per-entity counts, records changed, the policy digest and the
  sha256 of input and output, for the provenance manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from safeguard._files import write_private
from safeguard.errors import DataError
from safeguard.pii.job import (
    REPORT_SCHEMA,
    ScrubJob,
    ScrubReport,
    config_digest,
    detect_format,
    key_id,
    now,
    sha256_file,
)
from safeguard.pii.records import (
    FirstBatchRefused,
    RecordWriter,
    Tally,
    Unit,
    count_units,
    csv_units,
    jsonl_units,
    parquet_units,
    scrub_texts,
    scrub_units,
)
from safeguard.pii.types import Scrubber

__all__ = [
    "REPORT_SCHEMA",
    "ScrubReport",
    "detect_format",
    "run_local",
    "scrub_file",
    "sha256_file",
]

log = logging.getLogger(__name__)

_CKPT_VERSION = 2  # 2: the consumed input's sha256 is checked on resume
_count_units = count_units  # the progress bar's total (kept under its old name)

# --------------------------------------------------------------------------- workers

_WORKER: Any = None


def _worker_init(scrubber: Any) -> None:
    global _WORKER
    _WORKER = scrubber


def _worker_scrub(args: tuple[list[str], list[str | None]]) -> list[Any]:
    texts, pids = args
    return scrub_texts(_WORKER, texts, pids)


# --------------------------------------------------------------------------- main loop


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
    resume: bool = False,
    batch_size: int = 256,
    processes: int = 1,
    patient_field: str | None = None,
    max_record_bytes: int = 16 << 20,
    policy_digest: str | None = None,
    progress: bool | None = None,
    _stop_after_batches: int | None = None,
) -> ScrubReport:
    """Scrub the text ``fields`` of every record of a file into another file.

    Args:
        scrubber, input_path, output_path, fields, input_format, output_format,
        quarantine_path, report_path, batch_size, patient_field, max_record_bytes,
        policy_digest: What they mean for :class:`~safeguard.pii.job.ScrubJob`, which
            checks them (the Ray engine takes the same).
        resume: Continue an interrupted run from its checkpoint.
        processes: Worker processes for analysis (1: in-process).
        progress: Show a progress bar (default: when stderr is a terminal).

    Returns:
        The report (also written to ``report_path``).

    Raises:
        DataError: The input is missing or unreadable, a field is not in the CSV header or
            Parquet schema, a partial run exists without ``resume``, or the checkpoint does
            not match this input and configuration.
    """
    if processes < 1:
        raise DataError(f"`processes` (={processes}) must be >= 1")
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
    )
    return run_local(
        job, resume=resume, processes=processes, progress=progress, stop_after=_stop_after_batches
    )


def run_local(
    job: ScrubJob,
    *,
    resume: bool = False,
    processes: int = 1,
    progress: bool | None = None,
    stop_after: int | None = None,
) -> ScrubReport:
    """Run a :class:`ScrubJob` in this process (``processes`` > 1: analysis in a pool)."""
    return _LocalRun(job, resume, processes, progress, stop_after).run()


class _LocalRun:
    """One in-process run: checkpointed batches, optional worker pool and progress bar."""

    def __init__(
        self,
        job: ScrubJob,
        resume: bool,
        processes: int,
        progress: bool | None,
        stop_after: int | None,
    ) -> None:
        self.job = job
        self.resume = resume
        self.processes = processes
        self.stop_after = stop_after
        self.show = sys.stderr.isatty() if progress is None else progress
        dst = job.output_path
        self.ckpt_path = dst.with_name(dst.name + ".partial.ckpt.json")
        self.stat = job.input_path.stat()
        # JSONL is resumed from a byte offset, and the bytes before it are hashed as they are
        # consumed (``state["in_sha256"]``); CSV and Parquet are resumed by record count, so
        # the whole input is hashed up front (the report reuses that digest).
        self.whole_sha256 = sha256_file(job.input_path) if job.input_format != "jsonl" else None
        self.consumed = hashlib.sha256()  # of input bytes [0, in_offset) (JSONL)
        self.fingerprint = self._fingerprint()
        self.state: dict[str, Any] = {
            "units": 0, "in_offset": 0, "in_sha256": self.consumed.hexdigest(), "out_pos": 0,
            "q_pos": 0, "counts": {}, "entities": {}, "resumed": 0, "started_at": now(),
        }  # fmt: skip
        self.pool: Any = None
        self.bar: Any = None

    def _fingerprint(self) -> dict[str, Any]:
        job = self.job
        return {
            "version": _CKPT_VERSION,
            "input": str(job.input_path.resolve()),
            "input_size": self.stat.st_size,
            "input_mtime_ns": self.stat.st_mtime_ns,
            "input_sha256": self.whole_sha256,
            "policy_digest": job.policy_digest or config_digest(job.scrubber),
            "config_digest": config_digest(job.scrubber),
            "fields": job.field_list,
            "key_id": key_id(job.scrubber),
            "out_format": job.output_format,
        }

    # ------------------------------------------------------------------ resuming
    def _restore(self, writer: RecordWriter) -> None:
        """Take up the checkpoint of an interrupted run, or refuse to overwrite its output."""
        if not (self.ckpt_path.exists() or writer.sink.leftovers()):
            return
        if not self.resume:
            raise DataError(
                f"an interrupted run left {str(writer.sink.partial)!r}; pass --resume to continue "
                "it, or delete the .partial files to start over"
            )
        if not self.ckpt_path.exists():
            return
        saved = _load_checkpoint(self.ckpt_path)
        if saved.get("fingerprint", {}).get("version") != _CKPT_VERSION:
            raise DataError(
                f"cannot resume: the checkpoint {str(self.ckpt_path)!r} was written by another "
                "version of safeguard; delete the .partial files to start over"
            )
        if saved.get("fingerprint") != self.fingerprint:
            raise DataError(
                "cannot resume: the input file, policy, fields or key differ from the "
                "interrupted run; delete the .partial files to start over"
            )
        self.state = state = saved["state"]
        if self.job.input_format == "jsonl":
            self.consumed = _check_consumed(
                self.job.input_path, int(state["in_offset"]), str(state["in_sha256"])
            )
        state["resumed"] = int(state.get("resumed", 0)) + 1
        log.info("resuming after %d input records", state["units"])

    def _units(self) -> Iterator[Unit]:
        job, start = self.job, int(self.state["units"])
        if job.input_format == "jsonl":
            return self._jsonl_units(start, int(self.state["in_offset"]))
        if job.input_format == "csv":
            return csv_units(job.input_path, start, job.max_record_bytes)
        return parquet_units(job.input_path, start, job.batch_size)

    def _jsonl_units(self, start: int, offset: int) -> Iterator[Unit]:
        with open(self.job.input_path, "rb") as fh:
            fh.seek(offset)
            yield from jsonl_units(
                fh, self.job.max_record_bytes, start_unit=start, start_offset=offset
            )

    # ------------------------------------------------------------------ running
    def run(self) -> ScrubReport:
        job = self.job
        writer = job.writer()
        self._restore(writer)
        state = self.state
        writer.tally = Tally(state["counts"], state["entities"])
        writer.open(int(state["out_pos"]), int(state["q_pos"]))
        fresh = int(state["units"]) == 0
        units = self._units()
        self._start_helpers()
        try:
            self._loop(units, writer, fresh)
            writer.finish()
        except FirstBatchRefused as exc:
            writer.refuse()
            self.ckpt_path.unlink(missing_ok=True)
            raise DataError(str(exc)) from None
        finally:
            if self.pool is not None:
                self.pool.terminate()
            if self.bar is not None:
                self.bar.close()
            writer.close()
        report = job.report(
            writer,
            # JSONL: every byte was consumed and hashed on the way (no second read).
            input_sha256=self.whole_sha256 or "sha256:" + self.consumed.hexdigest(),
            input_bytes=self.stat.st_size,
            started_at=state.get("started_at", ""),
            resumed=int(state.get("resumed", 0)),
        )
        # Order matters for crash safety: once the checkpoint is gone a rerun starts over,
        # which is always correct; the output appears under its final name only when complete.
        if job.report_path:
            report.write(job.report_path)
        self.ckpt_path.unlink(missing_ok=True)
        writer.sink.commit()
        return report

    def _start_helpers(self) -> None:
        if self.show:
            from tqdm import tqdm

            self.bar = tqdm(
                total=count_units(self.job.input_path, self.job.input_format),
                initial=int(self.state["units"]),
                unit="rec",
                desc="scrub",
                file=sys.stderr,
            )
        if self.processes > 1:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            ctx = multiprocessing.get_context(method)
            self.pool = ctx.Pool(self.processes, _worker_init, (self.job.scrubber,))

    def _loop(self, units: Iterator[Unit], writer: RecordWriter, fresh: bool) -> None:
        batches_done = 0
        batch: list[Unit] = []
        for unit in units:
            batch.append(unit)
            if len(batch) >= self.job.batch_size:
                self._process(batch, writer, fresh and batches_done == 0)
                batch = []
                batches_done += 1
                if self.stop_after is not None and batches_done >= self.stop_after:
                    raise _Interrupted
        if batch:
            self._process(batch, writer, fresh and batches_done == 0)

    def _scrub(self, texts: list[str], pids: list[str | None]) -> list[Any]:
        if self.pool is None:
            return scrub_texts(self.job.scrubber, texts, pids)
        chunk = max(1, len(texts) // self.processes + 1)
        jobs = [(texts[i : i + chunk], pids[i : i + chunk]) for i in range(0, len(texts), chunk)]
        return [res for part in self.pool.map(_worker_scrub, jobs) for res in part]

    def _process(self, batch: list[Unit], writer: RecordWriter, first: bool) -> None:
        job, state = self.job, self.state
        outcomes = scrub_units(batch, job.fields, job.patient_field, job.source, self._scrub)
        writer.write(outcomes, first=first, fields=job.field_list, src=job.input_path)
        state["units"] = batch[-1].position + 1
        if batch[-1].end_offset is not None:
            for unit in batch:
                self.consumed.update(unit.data)
            state["in_offset"] = batch[-1].end_offset
            state["in_sha256"] = self.consumed.hexdigest()
        state["out_pos"], state["q_pos"] = writer.sync()
        state["counts"] = dict(writer.tally.counts)
        state["entities"] = dict(writer.tally.entities)
        write_private(self.ckpt_path, json.dumps({"fingerprint": self.fingerprint, "state": state}))
        if self.bar is not None:
            self.bar.update(len(batch))


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"cannot resume: the checkpoint {str(path)!r} is unreadable ({exc}); delete the "
            ".partial files to start over"
        ) from None
    if not isinstance(saved, dict):
        raise DataError(
            f"cannot resume: {str(path)!r} is not a checkpoint; delete it to start over"
        )
    return saved


def _check_consumed(src: Path, offset: int, expected: str) -> Any:
    """Re-hash the input bytes the interrupted run consumed; refuse if they changed.

    Returns the running hash of bytes ``[0, offset)``, ready to take the rest of the input.
    """
    h = hashlib.sha256()
    left = offset
    with open(src, "rb") as fh:
        while left > 0:
            block = fh.read(min(left, 1 << 20))
            if not block:
                break
            h.update(block)
            left -= len(block)
    if left or h.hexdigest() != expected:
        raise DataError(
            f"cannot resume: the first {offset} bytes of {str(src)!r}, already scrubbed by the "
            "interrupted run, have changed since (its size and modification time have not); "
            "resuming would mix old and new records. Delete the .partial files to start over"
        )
    return h


class _Interrupted(Exception):
    """Raised by tests to simulate a crash after some batches (checkpoint left in place)."""
