"""Overlap resolution and NER filters."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from safeguard.pii.patterns import Candidate
from safeguard.pii.resolve import resolve


def spans(text: str, cands: list[Candidate], **kw: object) -> list[tuple[str, str]]:
    kw.setdefault("threshold", 0.3)
    return [(c.entity, text[c.start : c.end]) for c in resolve(text, cands, **kw)]  # type: ignore[arg-type]


def test_adjacent_spans_of_one_entity_merge() -> None:
    text = "Dave Jones came"
    cands = [Candidate(0, 4, "PERSON", 0.55, "ner"), Candidate(5, 10, "PERSON", 0.55, "ner")]
    assert spans(text, cands) == [("PERSON", "Dave Jones")]


def test_adjacent_spans_across_a_newline_do_not_merge() -> None:
    text = "Dave\nJones"
    cands = [Candidate(0, 4, "PERSON", 0.55, "ner"), Candidate(5, 10, "PERSON", 0.55, "ner")]
    assert len(spans(text, cands)) == 2


def test_contained_lower_ranked_entity_dropped() -> None:
    text = "mail jane@mercy.org"
    cands = [Candidate(5, 19, "EMAIL_ADDRESS", 0.9), Candidate(10, 19, "URL", 0.7)]
    assert spans(text, cands) == [("EMAIL_ADDRESS", "jane@mercy.org")]


def test_ner_zip_and_house_numbers_are_not_dates() -> None:
    text = "Boston, MA 02115 at 12 Main Street in 2019"
    cands = [
        Candidate(8, 16, "DATE_TIME", 0.55, "ner"),  # "MA 02115"
        Candidate(20, 22, "DATE_TIME", 0.55, "ner"),  # "12"
        Candidate(38, 42, "DATE_TIME", 0.55, "ner"),  # "2019": a year alone is allowed
        Candidate(11, 16, "ZIP_CODE", 0.85),
    ]
    assert spans(text, cands) == [("ZIP_CODE", "02115")]


def test_ner_keeps_its_remainder_next_to_a_pattern_span() -> None:
    text = "12 Main Street, Boston today"
    cands = [Candidate(0, 14, "STREET_ADDRESS", 0.8), Candidate(3, 22, "LOCATION", 0.55, "ner")]
    assert spans(text, cands) == [("STREET_ADDRESS", "12 Main Street"), ("LOCATION", "Boston")]


def test_states_are_not_phi_locations() -> None:
    text = "moved to Ohio from Dayton"
    cands = [Candidate(9, 13, "LOCATION", 0.55, "ner"), Candidate(19, 25, "LOCATION", 0.55, "ner")]
    assert spans(text, cands) == [("LOCATION", "Dayton")]


def test_ner_person_label_words_and_titles() -> None:
    text = "Email Dr. Jane Roe's chart"
    cands = [Candidate(0, 5, "PERSON", 0.55, "ner"), Candidate(6, 20, "PERSON", 0.55, "ner")]
    assert spans(text, cands) == [("PERSON", "Jane Roe")]


def test_thresholds_global_and_per_entity() -> None:
    text = "a 617-555-0123 b"
    cands = [Candidate(2, 14, "PHONE_NUMBER", 0.6)]
    assert spans(text, cands, threshold=0.7) == []
    assert spans(text, cands, threshold=0.7, entity_thresholds={"PHONE_NUMBER": 0.5}) != []


def test_allow_list() -> None:
    text = "Dr. House saw Jane"
    cands = [Candidate(4, 9, "PERSON", 0.8), Candidate(14, 18, "PERSON", 0.55, "ner")]
    assert spans(text, cands, allow_list=["house"]) == [("PERSON", "Jane")]


def test_deny_outranks_everything() -> None:
    text = "code ZEBRA-7"
    cands = [Candidate(5, 12, "ACCOUNT_NUMBER", 0.85), Candidate(5, 12, "PERSON", 1.0, "deny")]
    assert spans(text, cands) == [("PERSON", "ZEBRA-7")]


def test_output_is_sorted_and_non_overlapping() -> None:
    text = "x" * 50
    cands = [
        Candidate(30, 40, "A", 0.5),
        Candidate(0, 10, "B", 0.5),
        Candidate(5, 15, "B", 0.6),
        Candidate(35, 45, "C", 0.9),
    ]
    out = resolve(text, cands, threshold=0.0)
    assert all(a.end <= b.start for a, b in itertools.pairwise(out))
    # the lower-ranked A keeps the part C does not cover
    assert [(c.start, c.end, c.entity) for c in out] == [(0, 15, "B"), (30, 35, "A"), (35, 45, "C")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 190),
            st.integers(1, 12),
            st.sampled_from(["PERSON", "DATE_TIME", "LOCATION", "US_SSN"]),
            st.floats(0.0, 1.0),
            st.sampled_from(["pattern", "ner", "deny"]),
        ),
        max_size=60,
    )
)
def test_resolution_invariants(raw: list[tuple[int, int, str, float, str]]) -> None:
    text = ("Ab Cd 12/03/2020 Ef " * 12)[:200]
    cands = [Candidate(s, min(200, s + n), e, sc, src) for s, n, e, sc, src in raw]
    out = resolve(text, cands, threshold=0.3)
    # sorted, non-overlapping, inside the text
    assert all(a.end <= b.start for a, b in itertools.pairwise(out))
    assert all(0 <= c.start < c.end <= len(text) for c in out)
    # a deny-list term above the threshold is always fully masked
    covered = [False] * len(text)
    for c in out:
        for i in range(c.start, c.end):
            covered[i] = True
    for c in cands:
        if c.source == "deny" and c.score >= 0.3:
            assert all(covered[i] for i in range(c.start, c.end) if text[i].isalnum())
