"""The demo's step runner, verb runners, budget registry and summary: no model needed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from safeguard import __version__
from safeguard.demo.runner import StepRunner, demo_registry, subprocess_verbs
from safeguard.demo.summary import DemoSummary, format_table


def _runner(tmp_path: Path, verbs, lines: list[str] | None = None) -> StepRunner:
    echo = lines.append if lines is not None else (lambda line: None)
    return StepRunner(tmp_path, total=3, echo=echo, verbs=verbs)


def test_verb_logs_the_command_and_its_output(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def verbs(argv: list[str]) -> int:
        seen.append(argv)
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return 0

    run = _runner(tmp_path, verbs)
    rc, stdout = run.verb("scrub", ("scrub", "a.jsonl"))
    assert (rc, stdout) == (0, "to stdout\n")
    assert seen == [["scrub", "a.jsonl"]]  # a list, as the CLI's main takes
    log = (tmp_path / "logs" / "scrub.log").read_text()
    assert log == "$ safeguard scrub a.jsonl\nto stdout\nto stderr\n(exit 0)\n"
    run.verb("scrub", ["scrub", "b.jsonl"])  # a second call appends
    assert (tmp_path / "logs" / "scrub.log").read_text().count("$ safeguard") == 2


def test_verb_refuses_an_unexpected_exit_code_and_names_the_log(tmp_path: Path) -> None:
    run = _runner(tmp_path, lambda argv: 1)
    assert run.verb("detect", ["detect"], ok=(0, 1))[0] == 1
    with pytest.raises(RuntimeError, match=r"step 'verify' failed \(exit 1\); see .*verify\.log"):
        run.verb("verify", ["manifest", "verify"])


def test_verb_turns_system_exit_into_its_code(tmp_path: Path) -> None:
    def verbs(argv: list[str]) -> int:
        raise SystemExit(2)

    run = _runner(tmp_path, verbs)
    assert run.verb("usage", ["nope"], ok=(2,))[0] == 2
    assert (tmp_path / "logs" / "usage.log").read_text().endswith("(exit 2)\n")


def test_steps_are_numbered_timed_and_reported(tmp_path: Path) -> None:
    lines: list[str] = []
    run = _runner(tmp_path, lambda argv: 0, lines)
    with run.step("first"):
        pass
    with pytest.raises(ValueError), run.step("second"):
        raise ValueError("boom")
    assert lines[0] == "[1/3] first ..."
    assert lines[1].startswith("      done in ") and lines[1].endswith(" s")
    assert lines[2:] == ["[2/3] second ..."]  # a failed step is timed but not reported done
    assert set(run.times) == {"first", "second"}
    assert all(t >= 0 for t in run.times.values())


def test_the_default_verbs_run_python_m_safeguard(tmp_path: Path) -> None:
    run = StepRunner(tmp_path, total=1, echo=lambda line: None)
    assert run.verbs is subprocess_verbs
    rc, stdout = run.verb("version", ["--version"])
    assert rc == 0 and stdout.strip() == f"safeguard {__version__}"
    rc, _ = run.verb("bad", ["no-such-verb"], ok=(2,))
    assert "invalid choice" in (tmp_path / "logs" / "bad.log").read_text()


def test_demo_registry_is_fresh_and_restores_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SAFEGUARD_HOME", "/somewhere/else")
    model_dp = tmp_path / "model-dp"
    (model_dp / "old").mkdir(parents=True)
    (tmp_path / ".safeguard-home" / "old").mkdir(parents=True)
    with demo_registry(tmp_path, model_dp):
        assert os.environ["SAFEGUARD_HOME"] == str(tmp_path / ".safeguard-home")
        assert not model_dp.exists() and not (tmp_path / ".safeguard-home").exists()
    assert os.environ["SAFEGUARD_HOME"] == "/somewhere/else"
    monkeypatch.delenv("SAFEGUARD_HOME")
    with pytest.raises(KeyError), demo_registry(tmp_path, model_dp):
        raise KeyError("the registry is restored even when a step fails")
    assert "SAFEGUARD_HOME" not in os.environ


def _summary(**kw) -> DemoSummary:
    base = dict(
        out_dir="out",
        notes=4,
        pii_found=9,
        pii_by_entity={"PERSON": 5, "DATE_TIME": 3, "MEDICAL_RECORD_NUMBER": 1},
        records_changed=4,
        measured_recall=0.99,
        measured_precision=0.98,
        epsilon_spent=7.5,
        epsilon_budget=8.0,
        delta=1e-5,
        dp_steps=3,
        unit_of_privacy="record",
        watermark_key_id="abcd",
        watermark_scheme="gumbel",
        fpr=1e-4,
        watermarked_p_values=[1e-9, 1e-12],
        plain_p_values=[0.5, 0.7],
        chain_verified=True,
        tamper_detected=True,
        steps={"a": 1.0, "b": 2.0},
    )
    base.update(kw)
    return DemoSummary(**base)


def test_summary_ok_needs_every_claim() -> None:
    assert _summary().ok
    assert _summary(plain_p_values=[1e-5, 0.5]).ok  # one false flag is what the rate allows
    assert not _summary(plain_p_values=[1e-5, 1e-6]).ok
    assert not _summary(watermarked_p_values=[1e-9, 0.3]).ok
    assert not _summary(watermarked_p_values=[]).ok
    assert not _summary(chain_verified=False).ok
    assert not _summary(tamper_detected=False).ok
    assert not _summary(epsilon_spent=8.5).ok
    assert not DemoSummary(out_dir="x").ok  # nothing measured yet


def test_format_table_states_what_was_measured() -> None:
    table = format_table(_summary())
    lines = table.splitlines()
    assert lines[0] == lines[-1] and set(lines[0]) <= {"-", "+"}
    assert len({line.index("|") for line in lines[1:-1]}) == 1  # one column edge
    assert "9 spans in 4/4 notes (PERSON 5, DATE_TIME 3, MEDICAL_RECORD_NUMBER 1)" in table
    assert "epsilon spent 7.50 of 8" in table
    assert "2/2 flagged at FPR 0.0001" in table
    assert "verified: raw -> scrubbed -> DP training -> model -> text" in table
    assert "time" in table and "3 s" in table
    broken = format_table(_summary(chain_verified=False, chain_detail="FAILED: x"))
    assert "NOT verified: FAILED: x" in broken
    assert "NOT detected" in format_table(_summary(tamper_detected=False))
