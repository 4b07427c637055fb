"""Recall-first stages of overlap resolution (safeguard.pii.refine), alone and inside resolve."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from safeguard.pii.patterns import Candidate
from safeguard.pii.refine import (
    absorb_address_parts,
    drug_guard,
    extend_address_block,
    remap_entity,
    split_at_line_breaks,
    trim_person_digits,
    unescape_line_breaks,
)
from safeguard.pii.resolve import resolve


def texts(text: str, cands: list[Candidate]) -> list[str]:
    return [text[c.start : c.end] for c in cands]


def ner(s: int, e: int, entity: str = "PERSON") -> Candidate:
    return Candidate(s, e, entity, 0.55, "ner", "ner")


def test_split_at_real_and_escaped_line_breaks() -> None:
    t = "Ann Lee\n12 Elm St\\nBoston"
    assert texts(t, split_at_line_breaks(t, ner(0, len(t)))) == ["Ann Lee", "12 Elm St", "Boston"]


def test_trim_person_digits_keeps_the_name() -> None:
    t = "Anna Berg 4 Elm"
    assert texts(t, trim_person_digits(t, ner(0, 11))) == ["Anna Berg"]
    assert trim_person_digits(t, ner(0, 11, "LOCATION")) == [ner(0, 11, "LOCATION")]


def test_remap_name_shaped_org_to_person_and_facility_to_location() -> None:
    t = "met Lucas Brown at Mass General; Acme Inc; Tylenol"
    assert remap_entity(t, ner(4, 15, "ORGANIZATION")).entity == "PERSON"  # type: ignore[union-attr]
    assert remap_entity(t, ner(19, 31, "ORGANIZATION")).entity == "LOCATION"  # type: ignore[union-attr]
    assert remap_entity(t, ner(33, 41, "ORGANIZATION")) is None
    assert remap_entity(t, ner(43, 50, "PRODUCT")) is None


def test_drug_guard_drops_drugs_and_dosed_words_only() -> None:
    t = "Lasix 10 mg, Tylenol, Maria Rayos, Takes Plavix"
    assert drug_guard(t, ner(0, 5)) is None
    assert drug_guard(t, ner(13, 20)) is None
    assert drug_guard(t, ner(22, 33)) == ner(22, 33)  # a drug name inside a real name stays
    assert drug_guard(t, ner(35, 47)) is None  # "Takes" alone is no name
    pattern = Candidate(0, 5, "PERSON", 0.8, "pattern", "title-name")
    assert drug_guard(t, pattern) == pattern


def test_absorb_house_numbers_and_postcodes() -> None:
    t = "lives at 75008 Paris; Kungsgatan 12; took 2 mg"
    out = absorb_address_parts(t, [Candidate(15, 20, "LOCATION", 0.5, "ner"),
                                   Candidate(22, 32, "STREET_ADDRESS", 0.5, "lexicon")])  # fmt: skip
    assert texts(t, out) == ["75008 Paris", "Kungsgatan 12"]


def test_address_block_takes_town_and_lines_but_not_the_next_finding() -> None:
    t = "sent to 12 Elm Road, Petosino\\n Apt. 4\\n LARNAKA\\n\\nThanks"
    assert texts(t, extend_address_block(t, [Candidate(8, 19, "STREET_ADDRESS", 0.8)])) == [
        "12 Elm Road, Petosino\\n Apt. 4\\n LARNAKA"
    ]
    t2 = "Lives at 12 Main Street, Boston, MA 02115"
    kept = [Candidate(9, 23, "STREET_ADDRESS", 0.8), Candidate(25, 31, "LOCATION", 0.7)]
    assert texts(t2, extend_address_block(t2, kept)) == ["12 Main Street", "Boston"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab\\n \n", max_size=40))
def test_unescape_keeps_length(text: str) -> None:
    assert len(unescape_line_breaks(text)) == len(text)


def test_resolve_recall_first_turns_org_names_into_people() -> None:
    t = "ICU day 4. Lucas Brown remains intubated."
    cands = [ner(11, 22, "ORGANIZATION")]
    assert all(c.entity != "PERSON" for c in resolve(t, cands, threshold=0.3))
    got = resolve(t, cands, threshold=0.3, recall_first=True)
    assert [(c.entity, t[c.start : c.end]) for c in got] == [("PERSON", "Lucas Brown")]


def test_resolve_recall_first_keeps_a_person_before_an_address_line() -> None:
    t = "Jane Roe\n12 Elm St"
    cands = [ner(0, len(t))]
    assert resolve(t, cands, threshold=0.3) == []  # the digits reject the whole span
    got = resolve(t, cands, threshold=0.3, recall_first=True)
    assert (got[0].entity, t[got[0].start : got[0].end]) == ("PERSON", "Jane Roe")
