"""Safe Harbor gold spans and character-coverage scores (safeguard.pii.evaluate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeguard.pii.evaluate import evaluate_predictions, safe_harbor_gold
from safeguard.pii.synthetic import parse_markup, read_marked_notes

DATA = Path(__file__).resolve().parents[2] / "data" / "pii"


def test_years_states_countries_and_titles_are_not_identifiers() -> None:
    t = "Dr. Ann Lee, Ohio, France, 3 May 2024, 2019"
    spans = [(0, 11, "PERSON"), (13, 17, "LOCATION"), (19, 25, "LOCATION"), (27, 37, "DATE_TIME"),
             (39, 43, "DATE_TIME")]  # fmt: skip
    assert [t[s:e] for s, e, _ in safe_harbor_gold(t, spans)] == ["Ann Lee", "3 May"]


def test_addresses_lose_their_country_and_function_words() -> None:
    t = "the corner of Elm St and Oak Ave, Lyon, France 69001"
    got = [t[s:e] for s, e, _ in safe_harbor_gold(t, [(0, len(t), "STREET_ADDRESS")])]
    assert got == ["corner", "Elm St", "Oak Ave, Lyon", "69001"]


def test_character_recall_counts_partial_masks_in_part() -> None:
    t = "Ann Lee came"
    rep = evaluate_predictions([t], [[(0, 7, "PERSON")]], [[(0, 3, "PERSON")]])
    assert rep.overall.recall == 0.0
    assert rep.characters is not None and rep.characters.recall == pytest.approx(3 / 6)
    assert rep.characters.precision == 1.0


def test_markup_round_trip_and_errors() -> None:
    ex = parse_markup("Seen by [[PERSON:Ana Diaz]] on [[DATE_TIME:3/4]].")
    assert [ex.text[s:e] for s, e, _ in ex.spans] == ["Ana Diaz", "3/4"]
    with pytest.raises(ValueError, match="unbalanced"):
        parse_markup("Seen by [[PERSON Ana Diaz]]")


@pytest.mark.parametrize("name", ["dev", "heldout"])
def test_shipped_note_sets_parse_and_mark_no_titles(name: str) -> None:
    notes = read_marked_notes(DATA / f"clinical_notes_{name}.txt")
    assert len(notes) == 14
    for n in notes:
        for s, e, _ in n.spans:
            assert n.text[s:e] == n.text[s:e].strip() and not n.text[s:e].startswith(("Dr.", "Mrs"))
