"""The recall-first healthcare pipeline end to end (Presidio + en_core_web_sm, offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeguard.pii import Scrubber, ScrubConfig
from safeguard.pii.evaluate import evaluate_predictions, safe_harbor_gold
from safeguard.pii.synthetic import read_marked_notes

DATA = Path(__file__).resolve().parents[2] / "data" / "pii"


@pytest.fixture(scope="module")
def standard() -> Scrubber:
    s = Scrubber.from_policy("healthcare-hipaa", recall_first=False)
    s.analyze("warm-up")
    return s


def masked(s: Scrubber, text: str) -> set[str]:
    return {text[f.start : f.end] for f in s.analyze(text)}


def test_healthcare_policy_is_recall_first_and_default_is_not(hipaa: Scrubber) -> None:
    assert hipaa.config.recall_first
    assert hipaa.report_fields()["recall_first"] is True
    assert not ScrubConfig.from_policy("default").recall_first


@pytest.mark.parametrize(
    ("text", "phi"),
    [
        ("ICU day 4. Lucas Brown remains intubated.", "Lucas Brown"),
        ("Family meeting with Sophie Martin (partner) at 1400.", "Sophie Martin"),
        ("Urosepsis; admitted from Worcester nursing home.", "Worcester"),
        ("INR 3.4 today at Mass General lab.", "Mass General"),
        ("Pt asks results go to jsmith at gmail dot com today.", "jsmith at gmail dot com"),
        ("DATE: 2026-03-14T08:42:00Z", "2026-03-14T08:42:00Z"),
        ("Her mobile is 07700 900461.", "07700 900461"),
        ("Flat 4, 22 Marchmont Road, Edinburgh EH9 1HY", "EH9 1HY"),
        ("Spoke with luis fernandez re: dosing.", "luis fernandez"),
        ("JAMES O'CONNOR brought by EMS.", "JAMES O'CONNOR"),
    ],
)
def test_recall_first_finds_what_the_standard_pipeline_missed(
    hipaa: Scrubber, text: str, phi: str
) -> None:
    got = hipaa.analyze(text)
    covered = {i for f in got for i in range(f.start, f.end)}
    start = text.index(phi)
    assert all(i in covered for i in range(start, start + len(phi)) if text[i].isalnum()), got


@pytest.mark.parametrize(
    "text",
    [
        "Tylenol 650 mg PO given for headache.",
        "Lasix 10 mg IV given per order.",
        "Takes Plavix and Lipitor; Eliquis 5 mg bid continued.",
    ],
)
def test_drug_names_are_not_people(hipaa: Scrubber, text: str) -> None:
    assert not [f for f in hipaa.analyze(text) if f.entity in ("PERSON", "LOCATION")]


def test_escaped_line_breaks_keep_offsets(hipaa: Scrubber) -> None:
    text = "Billing address: Jasmin Rasmussen\\n935 Breverudsvingen 207\\nALTA"
    res = hipaa.scrub(text)
    assert "Rasmussen" not in res.text and "Breverudsvingen" not in res.text
    assert res.text.count("\\n") == 2  # the escapes themselves are kept


def test_development_notes_recall_and_never_below_standard(
    hipaa: Scrubber, standard: Scrubber
) -> None:
    """The 14 development notes (inspected while tuning): a regression guard, not a claim."""
    notes = read_marked_notes(DATA / "clinical_notes_dev.txt")
    texts = [n.text for n in notes]
    gold = [safe_harbor_gold(n.text, n.spans) for n in notes]

    def chars(s: Scrubber) -> float:
        pred = [[(f.start, f.end, f.entity) for f in fs] for fs in s.analyze_batch(texts)]
        rep = evaluate_predictions(texts, gold, pred)
        assert rep.characters is not None
        return rep.characters.recall

    ours, base = chars(hipaa), chars(standard)
    assert ours >= 0.97 and ours >= base
