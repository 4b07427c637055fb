"""`safeguard scrub` through the real entry point: exit codes and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeguard.cli.main import main


@pytest.fixture()
def notes(tmp_path: Path) -> Path:
    src = tmp_path / "notes.jsonl"
    rows = [
        {"text": "Pt John Smith, MRN 448812, seen 03/02/2024", "pid": "a"},
        {"text": "Dr. Alice Walker called John Smith on 03/09/2024", "pid": "a"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return src


def test_scrub_ok(
    tmp_path: Path, notes: Path, capsys: pytest.CaptureFixture[str], hipaa: object
) -> None:
    out = tmp_path / "out.jsonl"
    code = main(["scrub", str(notes), str(out), "--policy", "healthcare-hipaa", "--field", "text",
                 "--report", str(tmp_path / "r.json"), "--no-progress"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"]["written"] == 2
    first = json.loads(out.read_text().splitlines()[0])
    assert first == {
        "text": "Pt <PERSON_1>, MRN <MEDICAL_RECORD_NUMBER_1>, seen <DATE_TIME_1>",
        "pid": "a",
    }
    assert json.loads((tmp_path / "r.json").read_text())["policy"]["name"] == "healthcare-hipaa"


def test_quarantine_exit_codes(tmp_path: Path, notes: Path, hipaa: object) -> None:
    with notes.open("a", encoding="utf-8") as fh:
        fh.write("{broken\n")
    args = [
        "scrub",
        str(notes),
        str(tmp_path / "o.jsonl"),
        "--no-progress",
        "--quarantine",
        str(tmp_path / "q.jsonl"),
    ]
    assert main(args) == 1
    assert "malformed JSON" in (tmp_path / "q.jsonl").read_text()
    args[2] = str(tmp_path / "o2.jsonl")
    assert main([*args, "--allow-quarantine"]) == 0


def test_usage_errors_exit_2(
    tmp_path: Path, notes: Path, capsys: pytest.CaptureFixture[str], hipaa: object
) -> None:
    assert main(["scrub", str(tmp_path / "missing.jsonl"), str(tmp_path / "o.jsonl")]) == 2
    assert (
        main(["scrub", str(notes), str(tmp_path / "o.jsonl"), "--field", "body", "--no-progress"])
        == 2
    )
    assert "body" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "schema_version: 1\nname: bad\npii:\n  entities: [PERSON]\n  operators: {PERSON: shred}\n"
    )
    assert main(["scrub", str(notes), str(tmp_path / "o.jsonl"), "--policy", str(bad)]) == 2
    assert "shred" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse usage error
        main(["scrub", str(notes)])
    assert exc.value.code == 2
    assert main(["scrub", str(notes), str(tmp_path / "o.jsonl"), "--batch-size", "0"]) == 2


def test_keyed_policy_needs_key_and_uses_it(
    tmp_path: Path, notes: Path, capsys: pytest.CaptureFixture[str], hipaa: object
) -> None:
    policy = tmp_path / "keyed.yaml"
    policy.write_text(
        "schema_version: 1\nname: keyed\npii:\n  entities: [PERSON, DATE_TIME, MEDICAL_RECORD_NUMBER]\n"
        "  operators: {DEFAULT: pseudonym, DATE_TIME: date_shift}\n"
    )
    out = tmp_path / "o.jsonl"
    assert main(["scrub", str(notes), str(out), "--policy", str(policy), "--no-progress"]) == 2
    assert "pseudonym key" in capsys.readouterr().err
    key = tmp_path / "k.json"
    assert main(["scrub-key", str(key)]) == 0
    key_id = capsys.readouterr().out.strip()
    assert key_id.startswith("pii-") and (key.stat().st_mode & 0o777) == 0o600
    assert main(["scrub-key", str(key)]) == 2  # never overwritten
    code = main(["scrub", str(notes), str(out), "--policy", str(policy), "--key-file", str(key),
                 "--patient-field", "pid", "--report", str(tmp_path / "r.json"), "--no-progress"])  # fmt: skip
    assert code == 0
    a, b = (json.loads(x)["text"] for x in out.read_text().splitlines())
    pseudo = a.split("Pt ")[1].split(",")[0]
    assert pseudo.startswith("<PERSON_") and pseudo in b  # same person, same pseudonym
    report = (tmp_path / "r.json").read_text()
    assert json.loads(report)["key_id"] == key_id
    assert json.loads(key.read_text())["secret_hex"] not in report


def test_scrub_writes_a_signed_manifest(
    tmp_path: Path, notes: Path, capsys: pytest.CaptureFixture[str], hipaa: object
) -> None:
    signer = tmp_path / "signer.key"
    assert main(["manifest", "keygen", str(signer)]) == 0
    out, manifest = tmp_path / "out.jsonl", tmp_path / "scrub.json"
    code = main(["scrub", str(notes), str(out), "--policy", "healthcare-hipaa", "--no-progress",
                 "--manifest", str(manifest), "--signing-key", str(signer)])  # fmt: skip
    assert code == 0
    capsys.readouterr()
    assert main(["manifest", "verify", str(manifest), "--pubkey", f"{signer}.pub"]) == 0
    shown = capsys.readouterr().out
    assert "scrub" in shown and "John Smith" not in manifest.read_text()
    out.write_text(out.read_text() + "\n")  # any change to the scrubbed output breaks the manifest
    assert main(["manifest", "verify", str(manifest), "--pubkey", f"{signer}.pub"]) == 1
