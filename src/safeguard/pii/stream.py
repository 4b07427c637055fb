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

import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from safeguard import __version__
from safeguard._files import (
    iter_lines,
    json_line,
    open_private,
    parse_jsonl_line,
    printable,
    write_private,
)
from safeguard.errors import DataError
from safeguard.pii.paths import locate_texts, parse_path

__all__ = ["ScrubReport", "detect_format", "scrub_file"]

log = logging.getLogger(__name__)

Format = Literal["jsonl", "csv", "parquet"]
REPORT_SCHEMA = "safeguard.pii.scrub-report/v1"
_RAW_LIMIT = 1 << 20  # raw text kept in quarantine up to 1 MiB
_CKPT_VERSION = 2  # 2: the consumed input's sha256 is checked on resume


@dataclass
class ScrubReport:
    """What a scrub run did (plain data; never contains a raw value or a key).

    Attributes:
        schema: Report schema id.
        policy: Policy name and digest (``sha256:...``).
        config: Entities, operators and thresholds in force.
        key_id: Id of the pseudonym key, if a keyed operator was used.
        input: Path, format, size and sha256 of the input file.
        output: Path, format, size and sha256 of the output file.
        quarantine: Path, sha256 and number of quarantined records.
        fields: Field paths that were scrubbed.
        records: Counts: read, written, changed, quarantined, empty lines skipped.
        entities: Findings per entity type.
        resumed: Number of times the run was resumed after an interruption.
    """

    schema: str = REPORT_SCHEMA
    tool: dict[str, str] = field(
        default_factory=lambda: {"name": "safeguard", "version": __version__}
    )
    policy: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    key_id: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    quarantine: dict[str, Any] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)
    entities: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    started_at: str = ""
    finished_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | Path) -> Path:
        """Write as JSON, atomically."""
        return _atomic_write_text(
            Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        )


# --------------------------------------------------------------------------- helpers


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _atomic_write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def sha256_file(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def detect_format(path: str | Path, given: str | None = None) -> Format:
    """The format named by ``given`` or by the file's suffix (``.jsonl``/``.json``/``.csv``/``.parquet``)."""
    if given:
        if given not in ("jsonl", "csv", "parquet"):
            raise DataError(f"format {given!r} is not supported; use jsonl, csv or parquet")
        return given  # type: ignore[return-value]
    suffix = Path(path).suffix.lower()
    table = {
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "jsonl",
        ".csv": "csv",
        ".parquet": "parquet",
        ".pq": "parquet",
    }
    if suffix not in table:
        raise DataError(
            f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}; "
            "use .jsonl, .csv or .parquet, or pass --format"
        )
    return table[suffix]  # type: ignore[return-value]


@dataclass
class _Unit:
    """One input unit: a record, an empty line, or a bad record."""

    position: int  # 0-based unit index in the input
    record: Any = None
    error: str | None = None
    raw: str | None = None
    line: int | None = None
    offset: int | None = None
    end_offset: int | None = None
    empty: bool = False
    unreadable: bool = False  # not UTF-8 / JSON / an object (not merely too large)
    data: bytes = b""  # the line as read, with its line break (JSONL; for the input hash)


# --------------------------------------------------------------------------- readers


def _read_jsonl(path: Path, start_unit: int, start_offset: int, max_bytes: int) -> Iterator[_Unit]:
    """One unit per line from ``start_offset``; bad lines carry their reason, never raise."""
    with open(path, "rb") as fh:
        fh.seek(start_offset)
        pos, offset = start_unit, start_offset
        for raw in iter_lines(fh):
            unit = _Unit(position=pos, line=pos + 1, offset=offset, end_offset=offset + len(raw))
            unit.data = raw
            first = offset == 0
            offset += len(raw)
            pos += 1
            body = raw.rstrip(b"\r\n")
            if not body.strip():
                unit.empty = True
                yield unit
                continue
            if len(body) > max_bytes:
                unit.error = (
                    f"record is {len(body)} bytes, over max_record_bytes ({max_bytes}); "
                    "raise --max-record-bytes to process it"
                )
                yield unit
                continue
            record, reason = parse_jsonl_line(body, first=first)
            if reason is not None:
                unit.error, unit.unreadable = reason, True
                # The raw line, lossless and always writable (bad bytes as \xff escapes).
                unit.raw = printable(body) if len(body) <= _RAW_LIMIT else None
            else:
                unit.record = record
            yield unit


def _csv_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        try:
            return next(reader)
        except StopIteration:
            raise DataError(f"CSV file {str(path)!r} is empty (no header row)") from None


def _read_csv(path: Path, start_unit: int, max_bytes: int) -> Iterator[_Unit]:
    csv.field_size_limit(max(max_bytes, 1 << 17))
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh)
        pos = 0
        try:
            for row in reader:
                if pos < start_unit:
                    pos += 1
                    continue
                unit = _Unit(position=pos, line=reader.line_num)
                pos += 1
                values = [v for v in row.values() if isinstance(v, str)]
                if None in row:
                    unit.error = f"row has {len(row[None]) + len(reader.fieldnames or [])} fields, header has {len(reader.fieldnames or [])}"
                elif any(_has_surrogates(v) for v in values):
                    unit.error = "invalid UTF-8 in the row"
                elif sum(len(v) for v in values) > max_bytes:
                    unit.error = f"row is over max_record_bytes ({max_bytes})"
                if unit.error is None:
                    unit.record = dict(row)
                else:
                    raw = json.dumps(
                        {k: v for k, v in row.items() if k is not None}, ensure_ascii=True
                    )
                    unit.raw = raw if len(raw) <= _RAW_LIMIT else None
                yield unit
        except csv.Error as exc:
            raise DataError(
                f"CSV file {str(path)!r} is malformed near line {reader.line_num}: {exc}"
            ) from exc


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _count_units(path: Path, fmt: str) -> int | None:
    """Records in ``path`` for the progress bar's total and ETA (``None`` when unknown).

    JSONL counts lines (a newline scan, a small fraction of scrubbing time; blank lines
    are included, so the bar may end a little short), Parquet reads its footer; CSV
    records may span lines and are not counted.
    """
    try:
        if fmt == "jsonl":
            lines, last = 0, b"\n"
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
            return lines + (last != b"\n")
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
    except OSError:
        return None
    return None


def _read_parquet(path: Path, start_unit: int, batch_rows: int) -> Iterator[_Unit]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    pos = 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        n = batch.num_rows
        if pos + n <= start_unit:
            pos += n
            continue
        rows = batch.to_pylist()
        for row in rows:
            if pos >= start_unit:
                yield _Unit(position=pos, record=row)
            pos += 1


# --------------------------------------------------------------------------- writers


class _Sink:
    """Output in the chosen format, appended batch by batch; durable positions for checkpoints."""

    def __init__(self, fmt: Format, final: Path, columns: list[str] | None) -> None:
        self.fmt = fmt
        self.final = final
        self.partial = final.with_name(final.name + ".partial")
        self.parts = final.with_name(final.name + ".parts")
        self.columns = columns
        self.fh: Any = None
        self.writer: Any = None
        self.n_parts = 0
        self.schema: Any = None

    def open(self, position: int, n_parts: int) -> None:
        if self.fmt == "parquet":
            self.parts.mkdir(exist_ok=True)
            self.n_parts = n_parts
            for extra in self.parts.glob("part-*.parquet"):
                if int(extra.stem.split("-")[1]) >= n_parts:
                    extra.unlink()
            return
        mode = "r+b" if self.partial.exists() else "w+b"
        self.fh = open(self.partial, mode)  # noqa: SIM115 - closed in close()
        self.fh.truncate(position)
        self.fh.seek(position)
        if self.fmt == "csv" and position == 0:
            self._csv_rows(
                [dict(zip(self.columns or [], self.columns or [], strict=True))], header=True
            )

    def _csv_rows(self, rows: list[dict[str, Any]], header: bool = False) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=self.columns or [], extrasaction="ignore", lineterminator="\n"
        )
        for row in rows:
            writer.writerow(row)
        self.fh.write(buf.getvalue().encode("utf-8"))

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self.fmt == "jsonl":
            data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
            self.fh.write(data.encode("utf-8"))
        elif self.fmt == "csv":
            self._csv_rows(records)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(records, schema=self.schema)
            part = self.parts / f"part-{self.n_parts:06d}.parquet"
            tmp = part.with_name(part.name + ".tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, part)
            self.n_parts += 1

    def sync(self) -> int:
        """Flush to disk; returns the durable position (bytes, or part count for Parquet)."""
        if self.fmt == "parquet":
            return self.n_parts
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def finalize(self) -> None:
        """Make ``OUT.partial`` complete and durable (Parquet: merge the parts into it)."""
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for part in sorted(self.parts.glob("part-*.parquet")):
                    table = pq.read_table(part)
                    if writer is None:
                        writer = pq.ParquetWriter(self.partial, table.schema)
                    elif table.schema != writer.schema:
                        table = table.cast(writer.schema)
                    writer.write_table(table)
                if writer is None:  # no rows at all: an empty file with the input schema
                    pq.write_table(pa.Table.from_pylist([], schema=self.schema), self.partial)
            finally:
                if writer is not None:
                    writer.close()
        else:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            self.fh = None

    def commit(self) -> None:
        """Drop the Parquet parts and rename ``OUT.partial`` to ``OUT`` (atomic)."""
        if self.fmt == "parquet":
            for part in self.parts.glob("part-*"):
                part.unlink()
            with contextlib.suppress(OSError):
                self.parts.rmdir()
        os.replace(self.partial, self.final)

    def discard(self) -> None:
        """Remove everything this run wrote (used when the run is refused before any output)."""
        self.close()
        self.partial.unlink(missing_ok=True)
        if self.parts.exists():
            for part in self.parts.glob("part-*"):
                part.unlink()
            with contextlib.suppress(OSError):
                self.parts.rmdir()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class _Quarantine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None

    def open(self, position: int) -> None:
        # Raw records (PHI) land here: owner-only, also when resuming into an older file.
        mode = "r+b" if self.path.exists() else "w+b"
        self.fh = open_private(self.path, mode)
        self.fh.truncate(position)
        self.fh.seek(position)

    def add(self, unit: _Unit, reason: str, source: str) -> None:
        entry = {"reason": reason, "input": source, "position": unit.position}
        if unit.line is not None:
            entry["line"] = unit.line
        if unit.offset is not None:
            entry["byte_offset"] = unit.offset
        if unit.record is not None:
            entry["record"] = unit.record
        elif unit.raw is not None:
            entry["raw"] = unit.raw
        self.fh.write(json_line(entry))  # never fails to encode (lone surrogates, bad bytes)

    def sync(self) -> int:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


# --------------------------------------------------------------------------- workers

_WORKER: Any = None


def _worker_init(scrubber: Any) -> None:
    global _WORKER
    _WORKER = scrubber


def _worker_scrub(args: tuple[list[str], list[str | None]]) -> list[Any]:
    texts, pids = args
    return _scrub_texts(_WORKER, texts, pids)


def _scrub_texts(scrubber: Any, texts: list[str], pids: list[str | None]) -> list[Any]:
    """Scrub a batch; on failure retry one by one, returning the exception for bad texts."""
    try:
        return list(scrubber.scrub_batch(texts, patient_ids=pids))
    except Exception:
        out: list[Any] = []
        for t, p in zip(texts, pids, strict=True):
            try:
                out.append(scrubber.scrub(t, patient_id=p))
            except Exception as exc:
                out.append(exc)
        return out


# --------------------------------------------------------------------------- main loop


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
        scrubber: A :class:`~safeguard.pii.Scrubber`.
        input_path: JSONL, CSV or Parquet file.
        output_path: Where the scrubbed records go (same record structure).
        fields: Field paths to scrub (``text``, ``note.body``, ``messages.*.content``).
        input_format: Overrides the format read from the input suffix.
        output_format: Overrides the format read from the output suffix (default: input's).
        quarantine_path: JSONL for records that cannot be processed
            (default ``OUT.quarantine.jsonl``; created only if needed).
        report_path: Where to write the :class:`ScrubReport` as JSON (optional).
        resume: Continue an interrupted run from its checkpoint.
        batch_size: Records per batch (and per checkpoint).
        processes: Worker processes for analysis (1: in-process).
        patient_field: Field path whose value groups records for date shifting.
        max_record_bytes: Larger records are quarantined instead of processed.
        policy_digest: Digest recorded in the report (default: a digest of the config).
        progress: Show a progress bar (default: when stderr is a terminal).

    Returns:
        The report (also written to ``report_path``).

    Raises:
        DataError: The input is missing or unreadable, a field is not in the CSV header or
            Parquet schema, a partial run exists without ``resume``, or the checkpoint does
            not match this input and configuration.
    """
    src = Path(input_path)
    dst = Path(output_path)
    if not src.exists():
        raise DataError(f"input file {str(src)!r} does not exist")
    if src.is_dir():
        raise DataError(f"input {str(src)!r} is a directory; give a JSONL, CSV or Parquet file")
    if not os.access(src, os.R_OK):
        raise DataError(f"input file {str(src)!r} is not readable (permissions)")
    if src.resolve() == dst.resolve():
        raise DataError("the output path must differ from the input path")
    if batch_size < 1:
        raise DataError(f"`batch_size` (={batch_size}) must be >= 1")
    if processes < 1:
        raise DataError(f"`processes` (={processes}) must be >= 1")
    fields = list(fields)
    for f in [*fields, *([patient_field] if patient_field else [])]:
        try:
            parse_path(f)
        except ValueError as exc:
            raise DataError(str(exc)) from None
    in_fmt = detect_format(src, input_format)
    out_fmt = detect_format(dst, output_format) if (output_format or dst.suffix) else in_fmt
    qpath = (
        Path(quarantine_path) if quarantine_path else dst.with_name(dst.name + ".quarantine.jsonl")
    )
    ckpt_path = dst.with_name(dst.name + ".partial.ckpt.json")
    if not dst.parent.exists():
        raise DataError(f"output folder {str(dst.parent)!r} does not exist")

    columns: list[str] | None = None
    schema = None
    if in_fmt == "csv":
        columns = _csv_header(src)
        for f in fields:
            if parse_path(f)[0] not in columns:
                raise DataError(f"field {f!r} is not a column of {str(src)!r}; columns: {columns}")
    elif in_fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(src)
        except Exception as exc:
            raise DataError(f"cannot read Parquet file {str(src)!r}: {exc}") from None
        columns = list(schema.names)
        for f in fields:
            if parse_path(f)[0] not in columns:
                raise DataError(f"field {f!r} is not a column of {str(src)!r}; columns: {columns}")
    if out_fmt == "csv" and columns is None:
        raise DataError(
            "CSV output needs CSV input (its header defines the columns); write JSONL instead"
        )

    digest = policy_digest or _config_digest(scrubber)
    stat = src.stat()
    # JSONL is resumed from a byte offset, and the bytes before it are hashed as they are
    # consumed (``state["in_sha256"]``); CSV and Parquet are resumed by record count, so the
    # whole input is hashed up front (the report reuses that digest).
    whole_sha256 = sha256_file(src) if in_fmt != "jsonl" else None
    fingerprint = {
        "version": _CKPT_VERSION,
        "input": str(src.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "input_sha256": whole_sha256,
        "policy_digest": digest,
        "config_digest": _config_digest(scrubber),
        "fields": fields,
        "key_id": getattr(getattr(scrubber, "key", None), "key_id", None),
        "out_format": out_fmt,
    }
    consumed = hashlib.sha256()  # of input bytes [0, in_offset) (JSONL)
    state = {"units": 0, "in_offset": 0, "in_sha256": consumed.hexdigest(), "out_pos": 0, "q_pos": 0,
             "counts": {}, "entities": {}, "resumed": 0, "started_at": _now()}  # fmt: skip
    sink = _Sink(out_fmt, dst, columns)
    if ckpt_path.exists() or sink.partial.exists() or sink.parts.exists():
        if not resume:
            raise DataError(
                f"an interrupted run left {str(sink.partial)!r}; pass --resume to continue it, or "
                "delete the .partial files to start over"
            )
        if ckpt_path.exists():
            saved = _load_checkpoint(ckpt_path)
            if saved.get("fingerprint", {}).get("version") != _CKPT_VERSION:
                raise DataError(
                    f"cannot resume: the checkpoint {str(ckpt_path)!r} was written by another "
                    "version of safeguard; delete the .partial files to start over"
                )
            if saved.get("fingerprint") != fingerprint:
                raise DataError(
                    "cannot resume: the input file, policy, fields or key differ from the "
                    "interrupted run; delete the .partial files to start over"
                )
            state = saved["state"]
            if in_fmt == "jsonl":
                consumed = _check_consumed(src, int(state["in_offset"]), str(state["in_sha256"]))
            state["resumed"] = int(state.get("resumed", 0)) + 1
            log.info("resuming after %d input records", state["units"])
    sink.schema = schema
    sink.open(int(state["out_pos"]), int(state["out_pos"]) if out_fmt == "parquet" else 0)
    quarantine = _Quarantine(qpath)
    quarantine.open(int(state["q_pos"]))
    fresh = int(state["units"]) == 0

    counts: Counter[str] = Counter(state["counts"])
    entities: Counter[str] = Counter(state["entities"])

    if in_fmt == "jsonl":
        units = _read_jsonl(src, int(state["units"]), int(state["in_offset"]), max_record_bytes)
    elif in_fmt == "csv":
        units = _read_csv(src, int(state["units"]), max_record_bytes)
    else:
        units = _read_parquet(src, int(state["units"]), batch_size)

    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(
            total=_count_units(src, in_fmt),
            initial=int(state["units"]),
            unit="rec",
            desc="scrub",
            file=sys.stderr,
        )

    pool = None
    if processes > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(processes, _worker_init, (scrubber,))

    def process(batch: list[_Unit], first: bool) -> None:
        texts: list[str] = []
        pids: list[str | None] = []
        slots: list[tuple[int, Any, Any]] = []  # (unit idx, container, key)
        bad: dict[int, str] = {}
        located = 0
        for ui, unit in enumerate(batch):
            if unit.empty or unit.error:
                continue
            try:
                pid, mine = locate_texts(unit.record, fields, patient_field)
            except (KeyError, TypeError) as exc:
                bad[ui] = str(exc.args[0]) if exc.args else type(exc).__name__
                continue
            located += 1
            for container, key in mine:
                slots.append((ui, container, key))
                texts.append(container[key])
                pids.append(pid)
        if first and located == 0 and bad:
            sample = next(
                u.record for i, u in enumerate(batch) if i in bad and u.record is not None
            )
            keys = sorted(sample) if isinstance(sample, dict) else []
            raise _UnknownField(
                f"none of the first {len(bad)} records has the field(s) {fields}: "
                f"{next(iter(bad.values()))}; top-level keys: {keys}"
            )
        if first and located == 0 and not bad:
            live = [u for u in batch if not u.empty]
            if live and all(u.unreadable for u in live):
                raise _UnknownField(
                    f"{str(src)!r} does not look like JSONL: none of its first {len(live)} "
                    f"line(s) is a readable JSON object (line {live[0].line}: {live[0].error}); "
                    "check the file, or pass --format for CSV or Parquet"
                )
        results: list[Any] = []
        if texts:
            if pool is not None:
                chunk = max(1, len(texts) // processes + 1)
                jobs = [
                    (texts[i : i + chunk], pids[i : i + chunk]) for i in range(0, len(texts), chunk)
                ]
                for part in pool.map(_worker_scrub, jobs):
                    results.extend(part)
            else:
                results = _scrub_texts(scrubber, texts, pids)
        for (ui, _, _), res in zip(slots, results, strict=True):
            if isinstance(res, Exception):
                bad.setdefault(ui, f"scrubbing failed: {type(res).__name__}: {res}")
        changed: set[int] = set()
        found_per_unit: dict[int, Counter[str]] = {}
        for (ui, container, key), res in zip(slots, results, strict=True):
            if ui in bad:
                continue  # the quarantined record keeps its original values
            container[key] = res.text
            if res.findings:
                changed.add(ui)
                found_per_unit.setdefault(ui, Counter()).update(f.entity for f in res.findings)
        out_records = []
        for ui, unit in enumerate(batch):
            if unit.empty:
                counts["empty_lines"] += 1
                continue
            counts["read"] += 1
            reason = unit.error or bad.get(ui)
            if reason:
                quarantine.add(unit, reason, str(src))
                counts["quarantined"] += 1
                continue
            out_records.append(unit.record)
            counts["written"] += 1
            if ui in changed:
                counts["changed"] += 1
                entities.update(found_per_unit.get(ui, {}))
        sink.write(out_records)
        state["units"] = batch[-1].position + 1
        if batch[-1].end_offset is not None:
            for unit in batch:
                consumed.update(unit.data)
            state["in_offset"] = batch[-1].end_offset
            state["in_sha256"] = consumed.hexdigest()
        state["out_pos"] = sink.sync()
        state["q_pos"] = quarantine.sync()
        state["counts"] = dict(counts)
        state["entities"] = dict(entities)
        write_private(ckpt_path, json.dumps({"fingerprint": fingerprint, "state": state}))
        if bar is not None:
            bar.update(len(batch))

    batches_done = 0
    try:
        batch: list[_Unit] = []
        for unit in units:
            batch.append(unit)
            if len(batch) >= batch_size:
                process(batch, fresh and batches_done == 0)
                batch = []
                batches_done += 1
                if _stop_after_batches is not None and batches_done >= _stop_after_batches:
                    raise _Interrupted
        if batch:
            process(batch, fresh and batches_done == 0)
        sink.finalize()
        quarantine.close()
    except _UnknownField as exc:
        sink.discard()
        quarantine.close()
        if qpath.exists() and fresh:
            qpath.unlink()
        ckpt_path.unlink(missing_ok=True)
        raise DataError(str(exc)) from None
    finally:
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar.close()
        sink.close()
        quarantine.close()

    if counts["quarantined"] == 0 and qpath.exists() and qpath.stat().st_size == 0:
        qpath.unlink()
    report = ScrubReport(
        policy={"name": getattr(scrubber.config, "policy_name", None), "digest": digest},
        config={k: v for k, v in scrubber.report_fields().items() if k not in ("key_id", "policy")},
        key_id=getattr(getattr(scrubber, "key", None), "key_id", None),
        input={
            "path": str(src),
            "format": in_fmt,
            "bytes": stat.st_size,
            # JSONL: every byte was consumed and hashed on the way (no second read).
            "sha256": whole_sha256 or "sha256:" + consumed.hexdigest(),
        },
        output={
            "path": str(dst),
            "format": out_fmt,
            "bytes": sink.partial.stat().st_size,
            "sha256": sha256_file(sink.partial),
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
        resumed=int(state.get("resumed", 0)),
        started_at=state.get("started_at", ""),
        finished_at=_now(),
    )
    if report_path:
        report.write(report_path)
    # Order matters for crash safety: once the checkpoint is gone a rerun starts over, which
    # is always correct; the output appears under its final name only when complete.
    ckpt_path.unlink(missing_ok=True)
    sink.commit()
    return report


class _UnknownField(Exception):
    """No record of the first batch has the requested field, or none is readable at all."""


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


def _config_digest(scrubber: Any) -> str:
    data = json.dumps(scrubber.config.to_dict(), sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(data.encode("utf-8")).hexdigest()
