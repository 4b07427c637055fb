"""The shared record path (safeguard.pii.records): units, outcomes, the writer; no Presidio."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from safeguard.errors import DataError
from safeguard.pii.records import (
    FirstBatchRefused,
    Outcome,
    Quarantine,
    RecordWriter,
    Sink,
    Tally,
    Unit,
    first_batch_refusal,
    jsonl_units,
    parse_pending,
    scrub_texts,
    scrub_units,
)
from safeguard.pii.types import Finding, Scrubber, ScrubResult


class _Config:
    policy_name = "fake"

    def to_dict(self) -> dict[str, Any]:
        return {"fake": True}


class DigitScrubber:
    """Replaces digits with '#', one NUMBER finding per digit run; 'boom' fails."""

    config = _Config()

    def scrub(self, text: str, *, patient_id: str | None = None) -> ScrubResult:
        if "boom" in text:
            raise ValueError("cannot scrub this")
        findings, out, i = [], [], 0
        while i < len(text):
            if text[i].isdigit():
                j = i
                while j < len(text) and text[j].isdigit():
                    j += 1
                findings.append(Finding("NUMBER", i, j, 1.0))
                out.append("#")
                i = j
            else:
                out.append(text[i])
                i += 1
        return ScrubResult("".join(out), tuple(findings))

    def scrub_batch(
        self, texts: Sequence[str], *, patient_ids: Sequence[str | None] | None = None
    ) -> list[ScrubResult]:
        return [self.scrub(t) for t in texts]

    def report_fields(self) -> dict[str, Any]:
        return {"policy": "fake", "entities": ["NUMBER"]}


def _units(data: bytes, max_bytes: int = 1000, parse: bool = True) -> list[Unit]:
    return list(jsonl_units(io.BytesIO(data), max_bytes, parse=parse))


def _scrub(units: list[Unit], fields: Sequence[str] = ("text",)) -> list[Outcome]:
    scrubber = DigitScrubber()
    return scrub_units(units, fields, None, "in.jsonl", lambda t, p: scrub_texts(scrubber, t, p))


def test_the_fake_scrubber_meets_the_protocol() -> None:
    assert isinstance(DigitScrubber(), Scrubber)
    assert not isinstance(object(), Scrubber)


def test_jsonl_units_number_lines_and_carry_reasons() -> None:
    data = b'{"text": "a1"}\n\n{broken\n' + b'{"text": "' + b"x" * 50 + b'"}\n[1]'
    units = _units(data, max_bytes=40)
    assert [u.position for u in units] == [0, 1, 2, 3, 4]
    assert [u.line for u in units] == [1, 2, 3, 4, 5]
    assert units[0].record == {"text": "a1"} and units[0].offset == 0
    assert units[1].empty and units[2].unreadable and "malformed JSON" in units[2].error
    assert "over max_record_bytes (40)" in units[3].error and not units[3].unreadable
    assert units[4].unreadable and units[4].raw == "[1]"
    assert units[-1].end_offset == len(data)
    assert b"".join(u.data for u in units) == data


def test_unparsed_units_parse_later_to_the_same_unit() -> None:
    data = b'{"text": "a1"}\n\xff\n{"text": 3}\n'
    parsed = _units(data)
    later = [parse_pending(u) for u in _units(data, parse=False)]
    assert later == parsed


def test_scrub_units_scrubs_quarantines_and_counts() -> None:
    data = (
        b'{"text": "call 555 1234"}\n'
        b'{"note": "no text"}\n'
        b'{"text": "boom 12"}\n'
        b"\n"
        b'{"text": "nothing"}\n'
        b'{"text": 17}\n'
    )
    outcomes = _scrub(_units(data))
    assert [o.kind for o in outcomes] == [
        "record", "quarantine", "quarantine", "empty", "record", "quarantine"
    ]  # fmt: skip
    assert outcomes[0].record == {"text": "call # #"}
    assert outcomes[0].entities == {"NUMBER": 2}
    assert outcomes[4].entities == {}
    missing = json.loads(outcomes[1].entry)
    assert missing["line"] == 2 and missing["record"] == {"note": "no text"}
    assert outcomes[1].unlocated and outcomes[1].keys == ["note"]
    failed = json.loads(outcomes[2].entry)
    assert failed["reason"].startswith("scrubbing failed: ValueError: cannot scrub this")
    assert failed["record"] == {"text": "boom 12"}  # the quarantined record keeps its values
    assert "is a int, expected a string" in json.loads(outcomes[5].entry)["reason"]
    assert [o.located for o in outcomes] == [True, False, True, False, True, False]


def test_first_batch_refusal_names_the_missing_field_and_the_keys() -> None:
    outcomes = _scrub(_units(b'{"a": 1}\n{"a": 2}\n'), fields=["body"])
    reason = first_batch_refusal(outcomes, ["body"], Path("x.jsonl"))
    assert reason is not None
    assert reason.startswith("none of the first 2 records has the field(s) ['body']: ")
    assert reason.endswith("top-level keys: ['a']")


def test_first_batch_refusal_of_an_input_that_is_not_jsonl() -> None:
    outcomes = _scrub(_units(b"\x00\x01\xff\n\xfe\n"))
    reason = first_batch_refusal(outcomes, ["text"], Path("blob.jsonl"))
    assert reason is not None and "'blob.jsonl' does not look like JSONL" in reason
    assert "none of its first 2 line(s)" in reason


def test_first_batch_with_one_good_record_is_not_refused() -> None:
    outcomes = _scrub(_units(b'{"a": 1}\n{"text": "x"}\n'))
    assert first_batch_refusal(outcomes, ["text"], Path("x.jsonl")) is None
    assert first_batch_refusal([Outcome("empty")], ["text"], Path("x.jsonl")) is None


def test_tally_counts_like_the_report() -> None:
    tally = Tally()
    for o in _scrub(_units(b'{"text": "1"}\n{"text": "a"}\n\n{"b": 1}\n')):
        tally.add(o)
    assert tally.records() == {
        "read": 3, "written": 2, "changed": 1, "quarantined": 1, "empty_lines": 1
    }  # fmt: skip
    assert dict(tally.entities) == {"NUMBER": 1}


def _writer(tmp_path: Path) -> RecordWriter:
    sink = Sink("jsonl", tmp_path / "out.jsonl", None)
    return RecordWriter(sink, Quarantine(tmp_path / "q.jsonl"))


def test_writer_writes_output_and_a_private_quarantine(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.open()
    data = b'{"text": "a 1"}\n{"x": 1}\n'
    writer.write(_scrub(_units(data)), first=True, fields=["text"], src=tmp_path / "in")
    out_pos, q_pos = writer.sync()
    assert out_pos == len(b'{"text": "a #"}\n') and q_pos > 0
    writer.finish()
    writer.sink.commit()
    assert (tmp_path / "out.jsonl").read_bytes() == b'{"text": "a #"}\n'
    q = tmp_path / "q.jsonl"
    assert json.loads(q.read_text())["record"] == {"x": 1}
    assert stat.S_IMODE(os.stat(q).st_mode) == 0o600
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_writer_drops_an_empty_quarantine(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.open()
    writer.write(_scrub(_units(b'{"text": "a"}\n')), first=True, fields=["text"], src=tmp_path)
    writer.finish()
    assert not (tmp_path / "q.jsonl").exists()
    assert (tmp_path / "out.jsonl.partial").read_bytes() == b'{"text": "a"}\n'


def test_writer_refuses_a_bad_first_batch_and_leaves_nothing(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.open()
    with pytest.raises(FirstBatchRefused, match="has the field") as info:
        writer.write(_scrub(_units(b'{"a": 1}\n'), ["body"]), first=True, fields=["body"],
                     src=tmp_path / "in")  # fmt: skip
    assert isinstance(info.value, DataError)
    writer.refuse()
    assert list(tmp_path.iterdir()) == []


def test_parquet_sink_merges_parts_with_the_input_schema(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    sink = Sink("parquet", tmp_path / "out.parquet", ["id", "text"], schema)
    sink.open(0)
    sink.write([{"id": 1, "text": "a"}])
    sink.write([{"id": 2, "text": None}])
    assert sink.sync() == 2
    sink.finalize()
    sink.commit()
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema == schema and table.num_rows == 2
    assert not (tmp_path / "out.parquet.parts").exists()
