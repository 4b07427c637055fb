"""ScrubJob validation and the Ray engine's record path, run without Ray."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeguard.errors import DataError
from safeguard.pii.job import ScrubJob
from safeguard.pii.types import Finding, ScrubResult


class _Config:
    policy_name = "fake"

    def to_dict(self) -> dict[str, Any]:
        return {"fake": True}


class UpperScrubber:
    """Upper-cases a text; one TEXT finding per non-empty text."""

    config = _Config()

    def scrub(self, text: str, *, patient_id: str | None = None) -> ScrubResult:
        found = (Finding("TEXT", 0, len(text), 1.0),) if text else ()
        return ScrubResult(text.upper(), found)

    def scrub_batch(
        self, texts: Sequence[str], *, patient_ids: Sequence[str | None] | None = None
    ) -> list[ScrubResult]:
        return [self.scrub(t) for t in texts]

    def report_fields(self) -> dict[str, Any]:
        return {"policy": "fake", "entities": ["TEXT"]}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{"text": "b"}\n{"x": 1}\n{bad\n')
    return path


def job(src: Path, out: Path, **kw: Any) -> ScrubJob:
    return ScrubJob(UpperScrubber(), src, out, **kw)


def test_defaults_are_resolved_once(src: Path, tmp_path: Path) -> None:
    j = job(src, tmp_path / "out.jsonl", fields=["text"])
    assert j.fields == ("text",) and j.field_list == ["text"]
    assert (j.input_format, j.output_format) == ("jsonl", "jsonl")
    assert j.quarantine_path == tmp_path / "out.jsonl.quarantine.jsonl"
    assert j.columns is None and j.report_path is None
    assert job(src, tmp_path / "out", output_format="parquet").output_format == "parquet"
    assert job(src, tmp_path / "noext").output_format == "jsonl"  # no suffix: the input's


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_path": "missing.jsonl"}, "does not exist"),
        ({"input_path": "."}, "is a directory"),
        ({"output_path": "in.jsonl"}, "must differ from the input path"),
        ({"batch_size": 0}, r"`batch_size` \(=0\) must be >= 1"),
        ({"fields": ["a..b"]}, "field path .a..b. is empty or has an empty part"),
        ({"output_path": "nowhere/out.jsonl"}, "output folder .* does not exist"),
        ({"output_path": "out.csv"}, "CSV output needs CSV input"),
        ({"input_format": "xml"}, "format 'xml' is not supported"),
        ({"output_path": "out.txt"}, "cannot tell the format"),
    ],
)
def test_bad_parameters_are_refused_with_the_argument_named(
    src: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    kw: dict[str, Any] = {"input_path": src, "output_path": tmp_path / "out.jsonl", **change}
    for name in ("input_path", "output_path"):
        if isinstance(kw[name], str):
            kw[name] = tmp_path / kw[name]
    with pytest.raises(DataError, match=message):
        ScrubJob(UpperScrubber(), **kw)


def test_csv_fields_must_be_columns(tmp_path: Path) -> None:
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("id,note\n1,hello\n")
    with pytest.raises(DataError, match=r"field 'text' is not a column .* \['id', 'note'\]"):
        job(csv_in, tmp_path / "out.csv")
    assert job(csv_in, tmp_path / "out.csv", fields=["note"]).columns == ["id", "note"]


def test_an_engine_refuses_formats_it_does_not_handle(tmp_path: Path) -> None:
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("text\nhello\n")
    with pytest.raises(DataError, match="the ray engine reads and writes JSONL or Parquet; use "
                       "--engine local for CSV"):  # fmt: skip
        job(csv_in, tmp_path / "out.jsonl", engine="ray", formats=("jsonl", "parquet"))


def test_importing_the_scale_engine_loads_no_ray() -> None:
    code = (
        "import sys, safeguard.scale, safeguard.scale.ray_engine;"
        "sys.exit(1 if 'ray' in sys.modules else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _ray_path(j: ScrubJob) -> tuple[list[Any], bytes, bytes]:
    """Split, scrub and write as the Ray engine does, with its task functions called here."""
    from safeguard.scale.ray_engine import _batches, _ScrubWorker, _split_for_scrub

    rows = _split_for_scrub({"bytes": j.input_path.read_bytes()}, "jsonl", j.max_record_bytes)
    worker = _ScrubWorker(pickle.loads(pickle.dumps(j)))
    outcomes = []
    for batch in _batches(iter(rows), j.batch_size):
        cols = {
            "pos": np.asarray([r["pos"] for r in batch]),
            "unit": np.asarray([r["unit"] for r in batch], dtype=object),
        }
        result = worker(cols)
        assert list(result["pos"]) == [r["pos"] for r in batch]
        outcomes += [pickle.loads(bytes(b)) for b in result["out"]]
    writer = j.writer()
    writer.open()
    for i, batch in enumerate(_batches(iter(outcomes), j.batch_size)):
        writer.write(batch, first=i == 0, fields=j.field_list, src=j.input_path)
    writer.finish()
    writer.sink.commit()
    return outcomes, j.output_path.read_bytes(), j.quarantine_path.read_bytes()


def test_ray_tasks_write_what_the_local_engine_writes(src: Path, tmp_path: Path) -> None:
    from safeguard.pii.stream import scrub_file

    outcomes, out, quarantine = _ray_path(job(src, tmp_path / "ray.jsonl", batch_size=2))
    local = scrub_file(UpperScrubber(), src, tmp_path / "local.jsonl", batch_size=2)
    assert out == (tmp_path / "local.jsonl").read_bytes() == b'{"text": "A"}\n{"text": "B"}\n'
    assert quarantine == (tmp_path / "local.jsonl.quarantine.jsonl").read_bytes()
    assert [o.kind for o in outcomes] == ["record", "empty", "record", "quarantine", "quarantine"]
    assert local.records == {
        "read": 4, "written": 2, "changed": 2, "quarantined": 2, "empty_lines": 1
    }  # fmt: skip


def test_batches_regroup_an_iterator() -> None:
    from safeguard.scale.ray_engine import _batches

    assert list(_batches(iter(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    assert list(_batches(iter([]), 3)) == []
