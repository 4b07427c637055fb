"""`python -m safeguard.pii.evaluate` on the small labelled fixture in tests/data/pii."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeguard.pii import Scrubber
from safeguard.pii.evaluate import evaluate_scrubber, load_labelled, main

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "pii" / "labelled_sample.jsonl"


def test_fixture_scores(hipaa: Scrubber) -> None:
    examples = load_labelled(SAMPLE)
    assert len(examples) == 25
    report = evaluate_scrubber(hipaa, examples)
    assert report.overall.gold == sum(len(e.spans) for e in examples)
    assert report.overall.recall >= 0.9 and report.overall.precision >= 0.9


def test_evaluate_cli(capsys: pytest.CaptureFixture[str], hipaa: Scrubber) -> None:
    assert main([str(SAMPLE), "--policy", "healthcare-hipaa"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"overall", "typed", "lenient", "per_entity", "safe_harbor"} <= set(out)
    assert len(out["safe_harbor"]) == 18
