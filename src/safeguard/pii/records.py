"""The record path shared by the file engines: read units, scrub them, write the outcomes.

One input file becomes a sequence of :class:`Unit` (a record, an empty line or a bad record,
numbered by input position). :func:`scrub_units` turns a batch of units into one
:class:`Outcome` per unit (a scrubbed record, a quarantine entry, or an empty line), and a
:class:`RecordWriter` sends outcomes to the output (:class:`Sink`), the quarantine file
(:class:`Quarantine`) and the counts (:class:`Tally`). The in-process engine
(:mod:`safeguard.pii.stream`) runs all of it in one process; the Ray engine
(:mod:`safeguard.scale.ray_engine`) makes units and outcomes in Ray tasks and writes them on
the driver with the same writer, so both engines write the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from safeguard._files import iter_lines, json_line, open_private, parse_jsonl_line, printable
from safeguard.errors import DataError
from safeguard.pii.paths import locate_texts
from safeguard.pii.types import Scrubber

__all__ = [
    "RAW_LIMIT",
    "FirstBatchRefused",
    "Format",
    "Outcome",
    "Quarantine",
    "RecordWriter",
    "ScrubTexts",
    "Sink",
    "Tally",
    "Unit",
    "count_units",
    "csv_header",
    "csv_units",
    "first_batch_refusal",
    "jsonl_units",
    "parquet_units",
    "parse_pending",
    "quarantine_entry",
    "scrub_texts",
    "scrub_units",
]

Format = Literal["jsonl", "csv", "parquet"]
RAW_LIMIT = 1 << 20  # raw text kept in quarantine up to 1 MiB

#: Scrubs texts with their patient ids: one result, or the exception raised, per text.
ScrubTexts = Callable[[list[str], list[str | None]], list[Any]]


@dataclass
class Unit:
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
    pending: bytes | None = None  # a JSONL line not parsed yet (see parse_pending)


# --------------------------------------------------------------------------- readers


def jsonl_units(
    fh: BinaryIO, max_bytes: int, *, start_unit: int = 0, start_offset: int = 0, parse: bool = True
) -> Iterator[Unit]:
    """One unit per line of ``fh`` from its current position; bad lines carry their reason.

    ``start_unit`` and ``start_offset`` number the first line read. With ``parse=False`` a
    line is left in ``unit.pending`` for :func:`parse_pending` (a Ray task parses it).
    """
    pos, offset = start_unit, start_offset
    for raw in iter_lines(fh):
        unit = Unit(position=pos, line=pos + 1, offset=offset, end_offset=offset + len(raw))
        unit.data = raw
        offset += len(raw)
        pos += 1
        body = raw.rstrip(b"\r\n")
        if not body.strip():
            unit.empty = True
        elif len(body) > max_bytes:
            unit.error = (
                f"record is {len(body)} bytes, over max_record_bytes ({max_bytes}); "
                "raise --max-record-bytes to process it"
            )
        else:
            unit.pending = body
            if parse:
                parse_pending(unit)
        yield unit


def parse_pending(unit: Unit) -> Unit:
    """Parse the JSONL line a unit holds (if any): its record, or its reason and raw text."""
    body, unit.pending = unit.pending, None
    if body is None:
        return unit
    record, reason = parse_jsonl_line(body, first=unit.offset == 0)
    if reason is not None:
        unit.error, unit.unreadable = reason, True
        # The raw line, lossless and always writable (bad bytes as \xff escapes).
        unit.raw = printable(body) if len(body) <= RAW_LIMIT else None
    else:
        unit.record = record
    return unit


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (its first row)."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        try:
            return next(reader)
        except StopIteration:
            raise DataError(f"CSV file {str(path)!r} is empty (no header row)") from None


def csv_units(path: Path, start_unit: int, max_bytes: int) -> Iterator[Unit]:
    """One unit per CSV row from row ``start_unit``; bad rows carry their reason."""
    csv.field_size_limit(max(max_bytes, 1 << 17))
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh)
        pos = 0
        try:
            for row in reader:
                if pos >= start_unit:
                    yield _csv_unit(row, pos, reader, max_bytes)
                pos += 1
        except csv.Error as exc:
            raise DataError(
                f"CSV file {str(path)!r} is malformed near line {reader.line_num}: {exc}"
            ) from exc


def _csv_unit(row: dict[Any, Any], pos: int, reader: csv.DictReader, max_bytes: int) -> Unit:
    unit = Unit(position=pos, line=reader.line_num)
    values = [v for v in row.values() if isinstance(v, str)]
    header = len(reader.fieldnames or [])
    if None in row:
        unit.error = f"row has {len(row[None]) + header} fields, header has {header}"
    elif any(_has_surrogates(v) for v in values):
        unit.error = "invalid UTF-8 in the row"
    elif sum(len(v) for v in values) > max_bytes:
        unit.error = f"row is over max_record_bytes ({max_bytes})"
    if unit.error is None:
        unit.record = dict(row)
    else:
        raw = json.dumps({k: v for k, v in row.items() if k is not None}, ensure_ascii=True)
        unit.raw = raw if len(raw) <= RAW_LIMIT else None
    return unit


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parquet_units(source: Any, start_unit: int, batch_rows: int) -> Iterator[Unit]:
    """One unit per row of a Parquet file (a path or a ``pyarrow`` buffer) from ``start_unit``."""
    import pyarrow.parquet as pq

    pos = 0
    for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_rows):
        n = batch.num_rows
        if pos + n <= start_unit:
            pos += n
            continue
        for row in batch.to_pylist():
            if pos >= start_unit:
                yield Unit(position=pos, record=row)
            pos += 1


def count_units(path: Path, fmt: str) -> int | None:
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


# --------------------------------------------------------------------------- scrubbing


def scrub_texts(scrubber: Scrubber, texts: list[str], pids: list[str | None]) -> list[Any]:
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


@dataclass
class Outcome:
    """What became of one unit: ``empty``, ``quarantine`` (with its entry) or ``record``.

    ``unreadable``, ``located``, ``unlocated`` (why the fields were not found), ``line``,
    ``error`` and ``keys`` (the record's top-level keys, when unlocated) are what
    :func:`first_batch_refusal` needs to refuse a run whose first batch is all wrong.
    """

    kind: Literal["empty", "quarantine", "record"]
    record: Any = None
    entry: bytes = b""
    entities: dict[str, int] = field(default_factory=dict)
    line: int | None = None
    error: str | None = None
    unreadable: bool = False
    located: bool = False
    unlocated: str | None = None
    keys: list[str] | None = None


def quarantine_entry(unit: Unit, reason: str, source: str) -> bytes:
    """The quarantine line for ``unit``: reason, input, position, line, offset, record or raw."""
    entry: dict[str, Any] = {"reason": reason, "input": source, "position": unit.position}
    if unit.line is not None:
        entry["line"] = unit.line
    if unit.offset is not None:
        entry["byte_offset"] = unit.offset
    if unit.record is not None:
        entry["record"] = unit.record
    elif unit.raw is not None:
        entry["raw"] = unit.raw
    return json_line(entry)  # never fails to encode (lone surrogates, bad bytes)


def scrub_units(
    units: Sequence[Unit],
    fields: Sequence[str],
    patient_field: str | None,
    source: str,
    scrub: ScrubTexts,
) -> list[Outcome]:
    """Scrub the ``fields`` of a batch of units (records are changed in place).

    A record whose fields are missing, or one of whose texts fails to scrub, is quarantined
    with its original values.
    """
    texts: list[str] = []
    pids: list[str | None] = []
    slots: list[tuple[int, Any, Any]] = []  # (unit idx, container, key)
    unlocated: dict[int, str] = {}
    for ui, unit in enumerate(units):
        if unit.empty or unit.error:
            continue
        try:
            pid, mine = locate_texts(unit.record, fields, patient_field)
        except (KeyError, TypeError) as exc:
            unlocated[ui] = str(exc.args[0]) if exc.args else type(exc).__name__
            continue
        for container, key in mine:
            slots.append((ui, container, key))
            texts.append(container[key])
            pids.append(pid)
    results = scrub(texts, pids) if texts else []
    bad = dict(unlocated)
    for (ui, _, _), res in zip(slots, results, strict=True):
        if isinstance(res, Exception):
            bad.setdefault(ui, f"scrubbing failed: {type(res).__name__}: {res}")
    found: dict[int, Counter[str]] = {}
    for (ui, container, key), res in zip(slots, results, strict=True):
        if ui in bad:
            continue  # the quarantined record keeps its original values
        container[key] = res.text
        found.setdefault(ui, Counter()).update(f.entity for f in res.findings)
    return [
        _outcome(unit, unit.error or bad.get(ui), found.get(ui), unlocated.get(ui), source)
        for ui, unit in enumerate(units)
    ]


def _outcome(
    unit: Unit, reason: str | None, found: Counter[str] | None, unlocated: str | None, source: str
) -> Outcome:
    if unit.empty:
        return Outcome("empty", line=unit.line)
    facts: dict[str, Any] = {
        "line": unit.line,
        "error": unit.error,
        "unreadable": unit.unreadable,
        "located": unit.error is None and unlocated is None,
        "unlocated": unlocated,
    }
    if unlocated is not None and isinstance(unit.record, dict):
        facts["keys"] = sorted(unit.record)
    if reason:
        return Outcome("quarantine", entry=quarantine_entry(unit, reason, source), **facts)
    return Outcome("record", record=unit.record, entities=dict(found or {}), **facts)


def first_batch_refusal(outcomes: Sequence[Outcome], fields: list[str], src: Path) -> str | None:
    """Why a run must stop at its first batch, or ``None``.

    It stops when no record of the first batch has the requested fields (a typo in a field
    name), or when no line of it is readable at all (the input is not JSONL).
    """
    live = [o for o in outcomes if o.kind != "empty"]
    bad = [o for o in live if o.unlocated is not None]
    if any(o.located for o in live):
        return None
    if bad:
        keys = next((o.keys for o in bad if o.keys is not None), [])
        return (
            f"none of the first {len(bad)} records has the field(s) {fields}: "
            f"{bad[0].unlocated}; top-level keys: {keys}"
        )
    if live and all(o.unreadable for o in live):
        return (
            f"{str(src)!r} does not look like JSONL: none of its first {len(live)} "
            f"line(s) is a readable JSON object (line {live[0].line}: {live[0].error}); "
            "check the file, or pass --format for CSV or Parquet"
        )
    return None


# --------------------------------------------------------------------------- writers


class Tally:
    """Counts of a run (read, written, changed, quarantined, empty lines) and entities found."""

    KEYS = ("read", "written", "changed", "quarantined", "empty_lines")

    def __init__(
        self, counts: dict[str, int] | None = None, entities: dict[str, int] | None = None
    ) -> None:
        self.counts: Counter[str] = Counter(counts or {})
        self.entities: Counter[str] = Counter(entities or {})

    def add(self, outcome: Outcome) -> None:
        if outcome.kind == "empty":
            self.counts["empty_lines"] += 1
            return
        self.counts["read"] += 1
        if outcome.kind == "quarantine":
            self.counts["quarantined"] += 1
            return
        self.counts["written"] += 1
        if outcome.entities:
            self.counts["changed"] += 1
            self.entities.update(outcome.entities)

    def records(self) -> dict[str, int]:
        return {k: self.counts[k] for k in self.KEYS}


class Sink:
    """Output in the chosen format, appended batch by batch; durable positions for checkpoints.

    Writes go to ``OUT.partial`` (Parquet: one part file per batch under ``OUT.parts/``,
    merged into ``OUT.partial`` by :meth:`finalize`); :meth:`commit` renames it to ``OUT``.
    """

    def __init__(self, fmt: Format, final: Path, columns: list[str] | None, schema: Any = None):
        self.fmt = fmt
        self.final = final
        self.partial = final.with_name(final.name + ".partial")
        self.parts = final.with_name(final.name + ".parts")
        self.columns = columns
        self.schema = schema
        self.fh: Any = None
        self.n_parts = 0

    def leftovers(self) -> bool:
        """Whether an interrupted run left output behind."""
        return self.partial.exists() or self.parts.exists()

    def open(self, position: int) -> None:
        """Start writing at ``position`` (bytes; Parquet: parts), dropping anything after it."""
        if self.fmt == "parquet":
            self.parts.mkdir(exist_ok=True)
            self.n_parts = position
            for extra in self.parts.glob("part-*.parquet"):
                if int(extra.stem.split("-")[1]) >= position:
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
        if self.fmt != "parquet":
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.close()
            return
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

    def _drop_parts(self) -> None:
        if self.parts.exists():
            for part in self.parts.glob("part-*"):
                part.unlink()
            with contextlib.suppress(OSError):
                self.parts.rmdir()

    def commit(self) -> None:
        """Drop the Parquet parts and rename ``OUT.partial`` to ``OUT`` (atomic)."""
        if self.fmt == "parquet":
            self._drop_parts()
        os.replace(self.partial, self.final)

    def discard(self) -> None:
        """Remove everything this run wrote (used when the run is refused or fails)."""
        self.close()
        self.partial.unlink(missing_ok=True)
        self._drop_parts()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class Quarantine:
    """The quarantine JSONL file (mode 0600: it holds raw records), appended entry by entry."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None

    def open(self, position: int) -> None:
        # Raw records (PHI) land here: owner-only, also when resuming into an older file.
        mode = "r+b" if self.path.exists() else "w+b"
        self.fh = open_private(self.path, mode)
        self.fh.truncate(position)
        self.fh.seek(position)

    def write(self, entry: bytes) -> None:
        self.fh.write(entry)

    def sync(self) -> int:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class RecordWriter:
    """Where a run's outcomes go: the output :class:`Sink`, the :class:`Quarantine` and a
    :class:`Tally`; the first batch is checked with :func:`first_batch_refusal`.

    Raises :class:`FirstBatchRefused` (a :class:`DataError`) from :meth:`write`.
    """

    def __init__(self, sink: Sink, quarantine: Quarantine, tally: Tally | None = None) -> None:
        self.sink = sink
        self.quarantine = quarantine
        self.tally = tally or Tally()

    def open(self, out_pos: int = 0, q_pos: int = 0) -> None:
        self.sink.open(out_pos)
        self.quarantine.open(q_pos)

    def write(
        self, outcomes: Sequence[Outcome], *, first: bool, fields: list[str], src: Path
    ) -> None:
        if first and (reason := first_batch_refusal(outcomes, fields, src)) is not None:
            raise FirstBatchRefused(reason)
        records = []
        for outcome in outcomes:
            self.tally.add(outcome)
            if outcome.kind == "record":
                records.append(outcome.record)
            elif outcome.kind == "quarantine":
                self.quarantine.write(outcome.entry)
        self.sink.write(records)

    def sync(self) -> tuple[int, int]:
        """Flush output and quarantine to disk; their durable positions."""
        return self.sink.sync(), self.quarantine.sync()

    def finish(self) -> None:
        """Complete ``OUT.partial``; drop the quarantine file if nothing was quarantined."""
        self.sink.finalize()
        self.close()
        path = self.quarantine.path
        if self.tally.counts["quarantined"] == 0 and path.exists() and path.stat().st_size == 0:
            path.unlink()

    def refuse(self) -> None:
        """Remove all this run wrote (output and quarantine): it was refused at the start."""
        self.sink.discard()
        self.quarantine.close()
        self.quarantine.path.unlink(missing_ok=True)

    def close(self) -> None:
        self.sink.close()
        self.quarantine.close()


class FirstBatchRefused(DataError):
    """No record of the first batch has the requested field, or none is readable at all."""
