"""Issue 13 §3-4 for scrubbing: no input stops a run or is lost, PHI files are 0600, and
``--resume`` checks the content it already consumed."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from safeguard.cli.main import main
from safeguard.errors import DataError
from safeguard.pii import PseudonymKey, Scrubber
from safeguard.pii.stream import _Interrupted, scrub_file

SAFEGUARD = Path(sys.executable).with_name("safeguard")

GOOD = [
    {"id": 0, "text": "Pt John Smith, MRN 448812, seen 03/02/2024"},
    {"id": 1, "text": "Call 617-555-0123 about the results"},
    {"id": 2, "text": "Dr. Alice Walker reviewed the chart"},
    {"id": 3, "text": "Nothing to see here."},
]


def good(i: int) -> bytes:
    return json.dumps(GOOD[i % len(GOOD)] | {"id": i}).encode()


def bad_lines() -> list[bytes]:
    """Lines 1-9: good records around a lone surrogate, invalid UTF-8 and a surrogate key."""
    return [
        good(0),
        b'{"id": 100, "text": "Pt Jo\\ud800hn Smith"}',  # escaped lone surrogate
        good(1),
        b'{"id": 101, "text": "MRN 448812 \xff\xfe"}',  # invalid UTF-8
        good(2),
        b'{"id": 102, "text": "ok", "meta": {"k\\udfff": 1}}',  # surrogate in a nested key
        good(3),
        b'{"id": 103, "text": "\\ud83d\\ude00 a valid pair"}',  # fine: an emoji
        good(4),
    ]


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def ids(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def quarantined(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]


@pytest.mark.parametrize("ner", [True, False], ids=["spacy", "patterns"])
def test_lone_surrogates_and_bad_bytes_are_quarantined_and_the_rest_scrubbed(
    tmp_path: Path, hipaa: Scrubber, patterns_only: Scrubber, ner: bool
) -> None:
    scrubber = hipaa if ner else patterns_only
    src = write(tmp_path / "in.jsonl", bad_lines())
    out, q = tmp_path / "out.jsonl", tmp_path / "q.jsonl"
    rep = scrub_file(scrubber, src, out, quarantine_path=q, batch_size=4)
    assert ids(out) == [0, 1, 2, 3, 103, 4]
    assert rep.records["written"] == 6 and rep.records["quarantined"] == 3
    entries = quarantined(q)
    assert [e["line"] for e in entries] == [2, 4, 6]
    assert entries[0]["reason"].startswith(
        "contains a lone surrogate (U+D800) in field 'text' at character 5"
    )
    assert entries[1]["reason"] == "invalid UTF-8 (byte 0xff at column 33)"
    assert "(U+DFFF) in a key under 'meta'" in entries[2]["reason"]
    # The raw line is kept, lossless: escapes stay escapes, bad bytes become \xNN.
    assert entries[0]["raw"] == '{"id": 100, "text": "Pt Jo\\ud800hn Smith"}'
    assert entries[1]["raw"].endswith('448812 \\xff\\xfe"}')
    assert mode(q) == 0o600
    assert "John Smith" not in out.read_text(encoding="utf-8")


def test_resume_runs_through_a_lone_surrogate_record(
    tmp_path: Path, patterns_only: Scrubber
) -> None:
    src = write(tmp_path / "in.jsonl", bad_lines())
    ref = scrub_file(patterns_only, src, tmp_path / "ref.jsonl", batch_size=1)
    out = tmp_path / "out.jsonl"
    with pytest.raises(_Interrupted):  # stops right before the surrogate record
        scrub_file(patterns_only, src, out, batch_size=1, _stop_after_batches=1)
    ckpt = tmp_path / "out.jsonl.partial.ckpt.json"
    assert mode(ckpt) == 0o600
    assert mode(tmp_path / "out.jsonl.quarantine.jsonl") == 0o600
    rep = scrub_file(patterns_only, src, out, batch_size=1, resume=True)
    assert rep.resumed == 1 and rep.records == ref.records
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert (tmp_path / "out.jsonl.quarantine.jsonl").read_bytes() == (
        tmp_path / "ref.jsonl.quarantine.jsonl"
    ).read_bytes()


def edit_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Change bytes of the file, keeping its size and restoring its modification time."""
    assert len(old) == len(new)
    st = path.stat()
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_resume_refuses_an_input_edited_where_it_was_already_consumed(
    tmp_path: Path, patterns_only: Scrubber
) -> None:
    src = write(tmp_path / "in.jsonl", [good(i) for i in range(12)])
    out = tmp_path / "out.jsonl"
    with pytest.raises(_Interrupted):
        scrub_file(patterns_only, src, out, batch_size=4, _stop_after_batches=2)
    state = json.loads((tmp_path / "out.jsonl.partial.ckpt.json").read_text())["state"]
    assert state["in_sha256"] and state["in_offset"] > 0
    edit_in_place(src, b'"id": 1,', b'"id": 7,')  # inside the first, already scrubbed batch
    with pytest.raises(DataError, match="already scrubbed by the interrupted run, have changed"):
        scrub_file(patterns_only, src, out, batch_size=4, resume=True)
    assert not out.exists()  # nothing mixed was published


def test_resume_reads_an_edit_after_the_consumed_part_as_new_input(
    tmp_path: Path, patterns_only: Scrubber
) -> None:
    src = write(tmp_path / "in.jsonl", [good(i) for i in range(12)])
    out = tmp_path / "out.jsonl"
    with pytest.raises(_Interrupted):
        scrub_file(patterns_only, src, out, batch_size=4, _stop_after_batches=1)
    edit_in_place(src, b'"id": 10,', b'"id": 77,')  # not yet read: resuming is sound
    rep = scrub_file(patterns_only, src, out, batch_size=4, resume=True)
    assert ids(out) == [*range(10), 77, 11]
    ref = scrub_file(patterns_only, src, tmp_path / "ref.jsonl", batch_size=4)
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert rep.input["sha256"] == ref.input["sha256"]  # the running hash covers every byte


def test_resume_refuses_an_edited_csv_with_the_same_size_and_mtime(
    tmp_path: Path, patterns_only: Scrubber
) -> None:
    src = tmp_path / "in.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        for i in range(10):
            w.writerow([i, GOOD[i % len(GOOD)]["text"]])
    out = tmp_path / "out.csv"
    with pytest.raises(_Interrupted):
        scrub_file(patterns_only, src, out, batch_size=3, _stop_after_batches=1)
    edit_in_place(src, b"5,Call", b"5,Cell")
    with pytest.raises(DataError, match="cannot resume"):
        scrub_file(patterns_only, src, out, batch_size=3, resume=True)


def test_a_checkpoint_of_another_version_is_refused_clearly(
    tmp_path: Path, patterns_only: Scrubber
) -> None:
    src = write(tmp_path / "in.jsonl", [good(i) for i in range(6)])
    out = tmp_path / "out.jsonl"
    with pytest.raises(_Interrupted):
        scrub_file(patterns_only, src, out, batch_size=2, _stop_after_batches=1)
    ckpt = tmp_path / "out.jsonl.partial.ckpt.json"
    saved = json.loads(ckpt.read_text())
    saved["fingerprint"]["version"] = 1
    ckpt.write_text(json.dumps(saved))
    with pytest.raises(DataError, match="another version of safeguard"):
        scrub_file(patterns_only, src, out, batch_size=2, resume=True)
    ckpt.write_text("{half")
    with pytest.raises(DataError, match=r"checkpoint .* is unreadable"):
        scrub_file(patterns_only, src, out, batch_size=2, resume=True)


def test_a_binary_file_is_refused_and_leaves_nothing(
    tmp_path: Path, patterns_only: Scrubber
) -> None:
    src = tmp_path / "image.jsonl"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    with pytest.raises(DataError, match=r"does not look like JSONL.*line 1: invalid UTF-8"):
        scrub_file(patterns_only, src, tmp_path / "out.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.jsonl"]


def test_scrubber_refuses_a_lone_surrogate_with_its_position(
    hipaa: Scrubber, patterns_only: Scrubber
) -> None:
    for scrubber in (hipaa, patterns_only):
        with pytest.raises(
            DataError, match=r"`text` contains a lone surrogate \(U\+D800\) at character 5"
        ):
            scrubber.anonymize("Pt Jo\ud800hn", [])
        with pytest.raises(
            DataError, match=r"texts\[0\] contains a lone surrogate \(U\+D800\) at character 5"
        ):
            scrubber.scrub("Pt Jo\ud800hn Smith")
        with pytest.raises(ValueError, match=r"texts\[1\]"):  # DataError is a ValueError
            scrubber.scrub_batch(["fine", "x\udcff"])
        assert scrubber.scrub("Pt John Smith \U0001f600").text.endswith("\U0001f600")


# ------------------------------------------------------------------------------- CLI


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SAFEGUARD), *args], capture_output=True, text=True, timeout=600)


def test_cli_quarantines_bad_records_without_a_traceback(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", bad_lines())
    out, q = tmp_path / "out.jsonl", tmp_path / "q.jsonl"
    proc = run("scrub", str(src), str(out), "--no-ner", "--no-progress", "--quarantine", str(q))
    assert proc.returncode == 1, proc.stderr  # the scrub convention: quarantined records -> 1
    assert "Traceback" not in proc.stderr
    assert "3 record(s) quarantined" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["records"]["written"] == 6 and summary["records"]["quarantined"] == 3
    assert ids(out) == [0, 1, 2, 3, 103, 4] and mode(q) == 0o600
    proc = run("scrub", str(src), str(tmp_path / "o2.jsonl"), "--no-ner", "--no-progress",
               "--allow-quarantine")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert mode(tmp_path / "o2.jsonl.quarantine.jsonl") == 0o600


def test_cli_unreadable_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blob = tmp_path / "blob.jsonl"
    blob.write_bytes(bytes(range(256)) * 8)
    assert main(["scrub", str(blob), str(tmp_path / "o.jsonl"), "--no-ner", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("safeguard scrub: error: ") and err.count("\n") == 1
    assert "does not look like JSONL" in err
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    assert main(["scrub", str(folder), str(tmp_path / "o.jsonl"), "--no-ner"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_resume_of_an_edited_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], patterns_only: Scrubber
) -> None:
    from safeguard.policy import load_policy, policy_digest

    src = write(tmp_path / "in.jsonl", [good(i) for i in range(9)])
    out = tmp_path / "out.jsonl"
    with pytest.raises(_Interrupted):  # a crashed CLI run: same digest as the CLI records
        scrub_file(patterns_only, src, out, batch_size=3, _stop_after_batches=1,
                   policy_digest=policy_digest(load_policy("healthcare-hipaa")))  # fmt: skip
    edit_in_place(src, b'"id": 0,', b'"id": 9,')
    args = ["scrub", str(src), str(out), "--no-ner", "--no-progress", "--batch-size", "3"]
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "have changed" in err and err.count("\n") == 1


def test_cli_warns_about_a_pseudonym_key_others_can_read(tmp_path: Path) -> None:
    key = tmp_path / "k.json"
    PseudonymKey.generate().save(key)
    src = write(tmp_path / "in.jsonl", [good(0)])
    args = ["scrub", str(src), str(tmp_path / "o.jsonl"), "--no-ner", "--no-progress",
            "--key-file", str(key)]  # fmt: skip
    proc = run(*args)
    assert proc.returncode == 0 and "other users" not in proc.stderr, proc.stderr
    key.chmod(0o644)
    args[2] = str(tmp_path / "o2.jsonl")
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "other users" in x]
    assert f"pseudonym key file {key} is readable by other users (mode 0644)" in line
    assert "chmod 600" in line
    assert json.loads(key.read_text())["secret_hex"] not in proc.stderr
