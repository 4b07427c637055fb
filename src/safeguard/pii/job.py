"""A scrub run's parameters, validated once (:class:`ScrubJob`), and its report (:class:`ScrubReport`).

Both file engines (in-process :mod:`safeguard.pii.stream`, and :mod:`safeguard.scale.ray_engine`)
take a :class:`ScrubJob`: the same arguments mean the same thing and are refused with the
same messages whichever engine runs them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safeguard import __version__
from safeguard.errors import DataError
from safeguard.pii.paths import parse_path
from safeguard.pii.records import Format, Quarantine, RecordWriter, Sink, Tally, csv_header
from safeguard.pii.types import Scrubber

__all__ = [
    "FORMATS",
    "REPORT_SCHEMA",
    "ScrubJob",
    "ScrubReport",
    "atomic_write_text",
    "config_digest",
    "detect_format",
    "key_id",
    "now",
    "sha256_file",
]

REPORT_SCHEMA = "safeguard.pii.scrub-report/v1"
FORMATS: tuple[Format, ...] = ("jsonl", "csv", "parquet")
_FORMAT_NAMES = {"jsonl": "JSONL", "csv": "CSV", "parquet": "Parquet"}
_SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file, fsynced, then renamed."""
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


def config_digest(scrubber: Scrubber) -> str:
    """``sha256:<hex>`` of the scrubber's configuration (the report's default policy digest)."""
    data = json.dumps(scrubber.config.to_dict(), sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(data.encode("utf-8")).hexdigest()


def key_id(scrubber: Scrubber) -> str | None:
    """The id of the scrubber's pseudonym key, if it has one."""
    return getattr(getattr(scrubber, "key", None), "key_id", None)


def detect_format(path: str | Path, given: str | None = None) -> Format:
    """The format named by ``given`` or by the file's suffix (``.jsonl``/``.json``/``.csv``/``.parquet``)."""
    if given:
        if given not in FORMATS:
            raise DataError(f"format {given!r} is not supported; use jsonl, csv or parquet")
        return given  # type: ignore[return-value]
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(
            f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}; "
            "use .jsonl, .csv or .parquet, or pass --format"
        )
    return _SUFFIXES[suffix]


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
        return atomic_write_text(
            Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        )


@dataclass(frozen=True)
class ScrubJob:
    """The parameters of one scrub run, checked when the job is made.

    Args:
        scrubber: A :class:`~safeguard.pii.Scrubber` (anything meeting
            :class:`safeguard.pii.types.Scrubber`).
        input_path: JSONL, CSV or Parquet file.
        output_path: Where the scrubbed records go (same record structure).
        fields: Field paths to scrub (``text``, ``note.body``, ``messages.*.content``).
        input_format: Overrides the format read from the input suffix.
        output_format: Overrides the format read from the output suffix (default: input's).
        quarantine_path: JSONL for records that cannot be processed
            (default ``OUT.quarantine.jsonl``; created only if needed).
        report_path: Where to write the :class:`ScrubReport` as JSON (optional).
        batch_size: Records per batch (and per checkpoint).
        patient_field: Field path whose value groups records for date shifting.
        max_record_bytes: Larger records are quarantined instead of processed.
        policy_digest: Digest recorded in the report (default: a digest of the config).
        engine: Name of the engine that will run the job (for messages).
        formats: The formats that engine reads and writes.

    Paths may be given as strings. After validation the paths are :class:`~pathlib.Path`,
    ``input_format``, ``output_format`` and ``quarantine_path`` are resolved, ``fields`` is a
    tuple, and ``columns``/``schema`` describe a CSV or Parquet
    input (``None`` for JSONL).

    Raises:
        DataError: The input is missing, a directory or unreadable; input and output are the
            same file; ``batch_size`` < 1; a field path is malformed or not a column of a CSV
            or Parquet input; the output folder is missing; a format is unknown or not one
            the engine handles; CSV output without CSV input.
    """

    scrubber: Scrubber
    input_path: Path  # str accepted; a Path after validation (as the other paths)
    output_path: Path
    fields: Sequence[str] = ("text",)
    input_format: Format | None = None
    output_format: Format | None = None
    quarantine_path: Path | None = None
    report_path: Path | None = None
    batch_size: int = 256
    patient_field: str | None = None
    max_record_bytes: int = 16 << 20
    policy_digest: str | None = None
    engine: str = "local"
    formats: tuple[Format, ...] = FORMATS
    columns: list[str] | None = field(default=None, init=False)
    schema: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        src, dst = Path(self.input_path), Path(self.output_path)
        _check_paths(src, dst)
        if self.batch_size < 1:
            raise DataError(f"`batch_size` (={self.batch_size}) must be >= 1")
        fields = tuple(self.fields)
        for f in [*fields, *([self.patient_field] if self.patient_field else [])]:
            try:
                parse_path(f)
            except ValueError as exc:
                raise DataError(str(exc)) from None
        in_fmt = detect_format(src, self.input_format)
        out_fmt = in_fmt
        if self.output_format or dst.suffix:
            out_fmt = detect_format(dst, self.output_format)
        if not dst.parent.exists():
            raise DataError(f"output folder {str(dst.parent)!r} does not exist")
        self._check_formats(in_fmt, out_fmt)
        columns, schema = _input_layout(src, in_fmt, fields)
        if out_fmt == "csv" and columns is None:
            raise DataError(
                "CSV output needs CSV input (its header defines the columns); write JSONL instead"
            )
        qpath = self.quarantine_path
        default_q = dst.with_name(dst.name + ".quarantine.jsonl")
        resolved = {
            "input_path": src,
            "output_path": dst,
            "fields": fields,
            "input_format": in_fmt,
            "output_format": out_fmt,
            "quarantine_path": Path(qpath) if qpath else default_q,
            "report_path": Path(self.report_path) if self.report_path else None,
            "columns": columns,
            "schema": schema,
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def _check_formats(self, in_fmt: str, out_fmt: str) -> None:
        unsupported = [f for f in (in_fmt, out_fmt) if f not in self.formats]
        if unsupported:
            names = " or ".join(_FORMAT_NAMES[f] for f in self.formats)
            raise DataError(
                f"the {self.engine} engine reads and writes {names}; use --engine local for "
                f"{_FORMAT_NAMES[unsupported[0]]}"
            )

    @property
    def field_list(self) -> list[str]:
        """The fields as a list (as messages, reports and checkpoints show them)."""
        return list(self.fields)

    @property
    def source(self) -> str:
        """The input path as quarantine entries name it."""
        return str(self.input_path)

    def writer(self, tally: Tally | None = None) -> RecordWriter:
        """A writer for this job's output and quarantine (not opened yet)."""
        sink = Sink(self.output_format, self.output_path, self.columns, self.schema)  # type: ignore[arg-type]
        return RecordWriter(sink, Quarantine(self.quarantine_path), tally)  # type: ignore[arg-type]

    def report(
        self,
        writer: RecordWriter,
        *,
        input_sha256: str,
        input_bytes: int,
        started_at: str,
        resumed: int = 0,
    ) -> ScrubReport:
        """The report of a finished run (``writer`` finished, ``OUT.partial`` complete)."""
        scrubber, tally = self.scrubber, writer.tally
        quarantined = tally.counts["quarantined"]
        qpath = self.quarantine_path
        return ScrubReport(
            policy={
                "name": getattr(scrubber.config, "policy_name", None),
                "digest": self.policy_digest or config_digest(scrubber),
            },
            config={
                k: v for k, v in scrubber.report_fields().items() if k not in ("key_id", "policy")
            },
            key_id=key_id(scrubber),
            input={
                "path": str(self.input_path),
                "format": self.input_format,
                "bytes": input_bytes,
                "sha256": input_sha256,
            },
            output={
                "path": str(self.output_path),
                "format": self.output_format,
                "bytes": writer.sink.partial.stat().st_size,
                "sha256": sha256_file(writer.sink.partial),
            },
            quarantine={
                "path": str(qpath) if quarantined else None,
                "records": quarantined,
                "sha256": sha256_file(qpath) if quarantined else None,  # type: ignore[arg-type]
            },
            fields=self.field_list,
            records=tally.records(),
            entities=dict(sorted(tally.entities.items())),
            resumed=resumed,
            started_at=started_at,
            finished_at=now(),
        )

    def publish(self, writer: RecordWriter, report: ScrubReport) -> None:
        """Write the report, then rename ``OUT.partial`` to ``OUT``."""
        if self.report_path:
            report.write(self.report_path)
        writer.sink.commit()


def _check_paths(src: Path, dst: Path) -> None:
    if not src.exists():
        raise DataError(f"input file {str(src)!r} does not exist")
    if src.is_dir():
        raise DataError(f"input {str(src)!r} is a directory; give a JSONL, CSV or Parquet file")
    if not os.access(src, os.R_OK):
        raise DataError(f"input file {str(src)!r} is not readable (permissions)")
    if src.resolve() == dst.resolve():
        raise DataError("the output path must differ from the input path")


def _input_layout(src: Path, fmt: str, fields: Sequence[str]) -> tuple[list[str] | None, Any]:
    """Columns (and Parquet schema) of a CSV or Parquet input; every field must be a column."""
    if fmt == "jsonl":
        return None, None
    schema = None
    if fmt == "csv":
        columns = csv_header(src)
    else:
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(src)
        except Exception as exc:
            raise DataError(f"cannot read Parquet file {str(src)!r}: {exc}") from None
        columns = list(schema.names)
    for f in fields:
        if parse_path(f)[0] not in columns:
            raise DataError(f"field {f!r} is not a column of {str(src)!r}; columns: {columns}")
    return columns, schema
