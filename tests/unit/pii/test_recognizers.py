"""Recall-first recognizers (pure Python): one block per recognizer, plus the registry."""

from __future__ import annotations

import pytest

from safeguard.errors import ConfigError
from safeguard.pii.recognizers import (
    RECALL_FIRST,
    RECOGNIZERS,
    get_recognizer,
    register_recognizer,
    run_recognizers,
)
from safeguard.pii.recognizers.wordlists import WORD_LISTS, word_list


def found(name: str, text: str) -> list[tuple[str, str]]:
    return [(c.entity, text[c.start : c.end]) for c in get_recognizer(name)(text)]


def values(name: str, text: str) -> list[str]:
    return [v for _, v in found(name, text)]


# ----------------------------------------------------------------- registry and word lists
def test_registry_lists_known_names_on_a_typo() -> None:
    with pytest.raises(ConfigError, match=r"known: .*given_names"):
        get_recognizer("given_name")


def test_registering_a_taken_name_needs_force() -> None:
    with pytest.raises(ConfigError, match="force=True"):
        register_recognizer("cities", lambda text: [])


def test_recall_first_runs_only_registered_recognizers() -> None:
    assert set(RECALL_FIRST) <= set(RECOGNIZERS)


def test_run_recognizers_keeps_only_wanted_entities() -> None:
    text = "Met Sophie Martin in Tucson"
    assert {c.entity for c in run_recognizers(RECALL_FIRST, text, ["LOCATION"])} == {"LOCATION"}


@pytest.mark.parametrize("name", WORD_LISTS)
def test_every_word_list_loads_lower_case_and_non_empty(name: str) -> None:
    words = word_list(name)
    assert words and all(w == w.lower() for w in words)


def test_word_lists_are_independent_of_the_evaluation_generators() -> None:
    # Census first names and GeoNames cities, not Faker: spot-check entries Faker lacks.
    assert {"sophie", "lucas"} <= word_list("given_names")
    assert {"worcester", "accra", "tucson"} <= word_list("cities")
    assert {"tylenol", "lasix", "coumadin"} <= word_list("drugs")


def test_unknown_word_list_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown word list"):
        word_list("names")


# ----------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Family meeting with Sophie Martin (partner)", "Sophie Martin"),
        ("ICU day 4. Lucas Brown remains intubated.", "Lucas Brown"),
        ("PATIENT: HALVORSEN, INGRID   MRN", "HALVORSEN, INGRID"),
        ("Spoke with luis fernandez re: dosing", "luis fernandez"),
        ("JAMES O'CONNOR brought by EMS", "JAMES O'CONNOR"),
        ("Anna J. Smith came in", "Anna J. Smith"),
    ],
)
def test_given_name_pairs(text: str, name: str) -> None:
    assert name in values("given_names", text)


@pytest.mark.parametrize(
    "text",
    [
        "Will see May in clinic",  # common words that are also given names
        "Tylenol 650 mg PO given",  # a drug, and a dose follows
        "lasix given at noon",
        "grace period of two weeks",
    ],
)
def test_given_names_leave_common_words_and_drugs(text: str) -> None:
    assert found("given_names", text) == []


def test_surname_pairs_need_a_listed_surname_and_capitals() -> None:
    assert values("surname_pairs", "Thiago Alves\nPrincipal") == ["Thiago Alves"]
    assert found("surname_pairs", "LUMBAR SPINE WITHOUT CONTRAST") == []
    assert found("surname_pairs", "Lives on Coal Street") == []


def test_names_before_person_verbs_open_a_sentence_or_line() -> None:
    assert values("names_before_verbs", "Seen today.\nHenrik lives alone.") == ["Henrik"]
    assert found("names_before_verbs", "Aspirin was held. Pain is better.") == []


def test_ages_after_names_but_not_vitals() -> None:
    assert values("ages_after_names", "Albert is 91; HR is 92, sat was 95%") == ["91"]
    assert found("ages_after_names", "She is 95% sure") == []


# ----------------------------------------------------------------- places
def test_cities_from_the_gazetteer() -> None:
    assert values("cities", "admitted from Worcester nursing home") == ["Worcester"]
    assert values("cities", "Moved from Sun City to Tucson.") == ["Sun City", "Tucson"]


@pytest.mark.parametrize(
    "text", ["Mobile phone on file", "Reading is fine", "Paris Hilton", "Normal saline"]
)
def test_cities_skip_common_words_and_given_names_without_a_place_cue(text: str) -> None:
    assert found("cities", text) == []


def test_ambiguous_city_counts_after_a_place_cue() -> None:
    assert values("cities", "Lives in Lawrence.") == ["Lawrence"]
    assert values("cities", "Austin, TX") == ["Austin"]


def test_facilities() -> None:
    text = "INR at Mass General lab; GP at Bruntsfield Medical Practice; Attorney General"
    assert values("facilities", text) == ["Mass General", "Bruntsfield Medical Practice"]


def test_international_streets_and_military_mail() -> None:
    assert values("streets", "at 393 Norra Bäckebo 73 and Frørupvej 65") == [
        "393 Norra Bäckebo 73",
        "Frørupvej 65",
    ]
    assert values("streets", "PSC 2059, Box 1024\nAPO AP 21250") == [
        "PSC 2059, Box 1024\nAPO AP 21250"
    ]
    assert found("streets", "Room 12 Bed 4") == []


def test_places_after_residence_cues() -> None:
    assert values("places_after_cue", "grew up in Videm pri Ptuju.") == ["Videm pri Ptuju"]
    assert values("places_after_cue", "My friend lives in OFFERDAL") == ["OFFERDAL"]
    assert found("places_after_cue", "She is in Pain") == []


def test_named_streets_and_postcodes_after_countries() -> None:
    assert values("named_streets", "shows on Inessa Mountain Street were") == [
        "Inessa Mountain Street"
    ]
    assert values("country_postcodes", "Larnaka\nCyprus (Greek) 96183") == ["96183"]
    assert found("country_postcodes", "Took 2 pills") == []


# ----------------------------------------------------------------- formats
@pytest.mark.parametrize(
    "stamp",
    ["2026-03-14T08:42:00Z", "2026-03-14 08:42", "12/06 23:15", "15-AUG-2026", "Tues 3/17"],
)
def test_datetimes(stamp: str) -> None:
    assert values("datetime", f"seen {stamp} in ED") == [stamp]


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("mobile 07700 900461", "07700 900461"),
        ("tel 0049 30 1234567", "0049 30 1234567"),
        ("(0151) 496 0123 is the ward", "(0151) 496 0123"),
        ("You can call 934 92 965", "934 92 965"),
        ("+41 (0)88 694 68 51-Fax", "+41 (0)88 694 68 51"),
    ],
)
def test_international_phones(text: str, number: str) -> None:
    assert number in values("intl_phone", text)


@pytest.mark.parametrize("text", ["dose 0.5 mg", "MRN 00483921", "BP 120/80 at 10 30"])
def test_phones_leave_doses_and_record_numbers(text: str) -> None:
    assert found("intl_phone", text) == []


def test_postcodes() -> None:
    assert values("postcode", "Edinburgh EH9 1HY, Ottawa K1A 0B1") == ["EH9 1HY", "K1A 0B1"]


@pytest.mark.parametrize(
    "email",
    ["jsmith at gmail dot com", "j.smith [at] example [dot] org", "priya.raman at outlook dot com"],
)
def test_obfuscated_emails(email: str) -> None:
    assert found("obfuscated_email", f"write to {email} please") == [("EMAIL_ADDRESS", email)]


def test_at_home_is_not_an_email() -> None:
    assert found("obfuscated_email", "meet at home dot") == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("I want to add Miroslav Fomin as a beneficiary", "Miroslav Fomin"),
        ("Directed By:    Angus Stuart", "Angus Stuart"),
        ("My name is Milorad S Musić but", "Milorad S Musić"),
        ("signed by Ewa Kowalczyk, MD", "Ewa Kowalczyk"),
        ('Ditte: "Who are you?"', "Ditte"),
    ],
)
def test_names_after_cues_and_speakers(text: str, name: str) -> None:
    assert name in values("names_after_cues", text)


@pytest.mark.parametrize(
    "text",
    ["Spoke with pharmacy re: refill", "said the patient", "by Monday", "under General anesthesia"],
)
def test_name_cues_need_a_name_shaped_run(text: str) -> None:
    assert found("names_after_cues", text) == []
