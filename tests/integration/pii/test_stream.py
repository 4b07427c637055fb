"""Streaming files: formats, resume after a crash, quarantine, report, several processes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeguard.errors import DataError
from safeguard.pii import Scrubber
from safeguard.pii.stream import _Interrupted, scrub_file
from safeguard.pii.synthetic import generate_examples
from safeguard.policy import load_policy, policy_digest

NOTES = [e.text for e in generate_examples(60, seed=31, split="dev")]


def write_jsonl(path: Path, n: int = 60) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "meta": {"note": NOTES[i % len(NOTES)]}}) + "\n")
    return path


def ids(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_resume_after_crash_equals_uninterrupted_run(
    tmp_path: Path, hipaa: Scrubber, fmt: str
) -> None:
    src = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        write_jsonl(src)
        field = "meta.note"
    elif fmt == "csv":
        with src.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "note"])
            for i, note in enumerate(NOTES):
                w.writerow([i, note])
        field = "note"
    else:
        pq.write_table(pa.table({"id": list(range(len(NOTES))), "note": NOTES}), src)
        field = "note"
    ref = scrub_file(hipaa, src, tmp_path / f"ref.{fmt}", fields=[field], batch_size=7)
    out = tmp_path / f"out.{fmt}"
    with pytest.raises(_Interrupted):
        scrub_file(hipaa, src, out, fields=[field], batch_size=7, _stop_after_batches=3)
    assert not out.exists()  # never visible half-written
    with pytest.raises(DataError, match="--resume"):
        scrub_file(hipaa, src, out, fields=[field], batch_size=7)
    rep = scrub_file(hipaa, src, out, fields=[field], batch_size=7, resume=True)
    assert rep.resumed == 1
    assert (tmp_path / f"ref.{fmt}").read_bytes() == out.read_bytes()
    assert rep.records == ref.records and rep.entities == ref.entities
    assert rep.records["written"] == len(NOTES) == rep.records["changed"]
    assert not list(tmp_path.glob("out.*.partial*")) and not list(tmp_path.glob("*.parts"))


def test_kill_9_then_resume_loses_and_duplicates_nothing(
    tmp_path: Path, patterns_only: Scrubber
) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", n=3000)
    out = tmp_path / "out.jsonl"
    ckpt = tmp_path / "out.jsonl.partial.ckpt.json"
    cmd = [sys.executable, "-m", "safeguard", "scrub", str(src), str(out), "--field", "meta.note",
           "--no-ner", "--batch-size", "3", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (
            ckpt.exists()
            and json.loads(ckpt.read_text() or "{}").get("state", {}).get("units", 0) >= 30
        ):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make the input larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and ckpt.exists()
    digest = policy_digest(load_policy("healthcare-hipaa"))  # what the CLI records
    rep = scrub_file(
        patterns_only,
        src,
        out,
        fields=["meta.note"],
        resume=True,
        batch_size=500,
        policy_digest=digest,
    )
    assert ids(out) == list(range(3000))
    assert rep.records["written"] == 3000 and rep.resumed == 1
    ref = scrub_file(
        patterns_only, src, tmp_path / "ref.jsonl", fields=["meta.note"], batch_size=500
    )
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert rep.entities == ref.entities


def test_bad_records_are_quarantined_with_reasons(tmp_path: Path, hipaa: Scrubber) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": 0, "text": "Pt John Smith"}).encode(),
        b"",
        b'{"id": 1, "text": "bad \xff byte"}',
        b"{not json",
        b"[1, 2]",
        json.dumps({"id": 2}).encode(),
        json.dumps({"id": 3, "text": 42}).encode(),
        json.dumps({"id": 4, "text": "x" * 500}).encode(),
        json.dumps({"id": 5, "text": None}).encode(),
        json.dumps({"id": 6, "text": "Call 617-555-0123"}).encode(),
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    q = tmp_path / "q.jsonl"
    rep = scrub_file(hipaa, src, tmp_path / "out.jsonl", quarantine_path=q, max_record_bytes=300,
                     report_path=tmp_path / "r.json")  # fmt: skip
    assert ids(tmp_path / "out.jsonl") == [0, 5, 6]
    reasons = [json.loads(line)["reason"] for line in q.read_text().splitlines()]
    assert len(reasons) == 6 == rep.records["quarantined"]
    for needle in (
        "invalid UTF-8",
        "malformed JSON",
        "JSON list",
        "not found",
        "is a int",
        "max_record_bytes",
    ):
        assert any(needle in r for r in reasons), (needle, reasons)
    assert rep.records == {
        "read": 9,
        "written": 3,
        "changed": 2,
        "quarantined": 6,
        "empty_lines": 1,
    }
    entry = json.loads(q.read_text().splitlines()[4])
    assert entry["record"] == {"id": 3, "text": 42} and entry["line"] == 7


def test_report_digests_and_no_raw_values(tmp_path: Path, hipaa: Scrubber) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", n=20)
    out = tmp_path / "out.jsonl"
    rep = scrub_file(hipaa, src, out, fields=["meta.note"], report_path=tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["schema"] == "safeguard.pii.scrub-report/v1"
    assert data["input"]["sha256"] == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    assert data["output"]["sha256"] == "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    assert data["policy"]["digest"].startswith("sha256:")
    text = out.read_text()
    tags = sum(text.count(f"<{e}_") for e in rep.entities)
    zips = len(re.findall(r"\b\d{3}XX\b", text))  # healthcare-hipaa keeps 3-digit ZIPs
    assert sum(rep.entities.values()) == tags + zips
    assert rep.entities.get("ZIP_CODE", 0) == zips
    raw = (tmp_path / "r.json").read_text()
    for ex in generate_examples(20, seed=31, split="dev"):
        for s, e, _ in ex.spans:
            assert ex.text[s:e] not in raw


def test_resume_refuses_a_changed_input(tmp_path: Path, hipaa: Scrubber) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", n=30)
    out = tmp_path / "out.jsonl"
    with pytest.raises(_Interrupted):
        scrub_file(hipaa, src, out, fields=["meta.note"], batch_size=5, _stop_after_batches=1)
    write_jsonl(src, n=31)
    with pytest.raises(DataError, match="cannot resume"):
        scrub_file(hipaa, src, out, fields=["meta.note"], batch_size=5, resume=True)


def test_unknown_field_and_missing_input(tmp_path: Path, hipaa: Scrubber) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", n=5)
    with pytest.raises(DataError, match="none of the first 5 records"):
        scrub_file(hipaa, src, tmp_path / "o.jsonl", fields=["body"])
    assert not list(tmp_path.glob("o.jsonl*"))
    with pytest.raises(DataError, match="does not exist"):
        scrub_file(hipaa, tmp_path / "nope.jsonl", tmp_path / "o.jsonl")
    with pytest.raises(DataError, match="suffix"):
        scrub_file(hipaa, src, tmp_path / "o.txt")


def test_two_processes_give_the_same_output(tmp_path: Path, hipaa: Scrubber) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", n=40)
    scrub_file(hipaa, src, tmp_path / "a.jsonl", fields=["meta.note"], batch_size=16)
    scrub_file(hipaa, src, tmp_path / "b.jsonl", fields=["meta.note"], batch_size=16, processes=2)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_a_50_mb_record_is_quarantined_not_loaded_into_spacy(
    tmp_path: Path, hipaa: Scrubber
) -> None:
    src = tmp_path / "in.jsonl"
    with src.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": 0, "text": "Pt John Smith"}) + "\n")
        fh.write(json.dumps({"id": 1, "text": "x " * (25 << 20)}) + "\n")  # 50 MiB
        fh.write(json.dumps({"id": 2, "text": "MRN 12345678"}) + "\n")
    rep = scrub_file(hipaa, src, tmp_path / "out.jsonl")
    assert ids(tmp_path / "out.jsonl") == [0, 2]
    entry = json.loads((tmp_path / "out.jsonl.quarantine.jsonl").read_text())
    assert "over max_record_bytes" in entry["reason"] and entry["line"] == 2
    assert "raw" not in entry and "record" not in entry  # position only, the input keeps it
    assert rep.records["quarantined"] == 1


def test_csv_invalid_utf8_row_is_quarantined(tmp_path: Path, hipaa: Scrubber) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"id,note\n0,Pt John Smith\n1,bad \xff byte\n2,Call 617-555-0123\n")
    rep = scrub_file(hipaa, src, tmp_path / "out.csv", fields=["note"])
    rows = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["0", "2"]
    assert rows[1]["note"] == "Call <PHONE_NUMBER_1>"
    assert rep.records["quarantined"] == 1
    assert "invalid UTF-8" in (tmp_path / "out.csv.quarantine.jsonl").read_text()
