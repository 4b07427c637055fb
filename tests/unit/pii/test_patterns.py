"""Pattern recognizers, one stock Presidio failure per test where the issue names one."""

from __future__ import annotations

import pytest

from safeguard.pii.patterns import PatternDetector, whole_word_regex
from safeguard.pii.resolve import resolve


@pytest.fixture(scope="module")
def det() -> PatternDetector:
    return PatternDetector()


def found(det: PatternDetector, text: str, threshold: float = 0.3) -> list[tuple[str, str]]:
    return [
        (c.entity, text[c.start : c.end])
        for c in resolve(text, det.detect(text), threshold=threshold)
    ]


@pytest.mark.parametrize(
    "phone",
    [
        "+1-617-555-0123",
        "001-617-555-0123",
        "617-555-0123x1234",
        "(617) 555-0123 ext. 12",
        "+1 (617) 555-0123",
        "617.555.0123x99",
        "001-617-555-0123x12345",
    ],
)
def test_phone_formats_presidio_misses(det: PatternDetector, phone: str) -> None:
    assert found(det, f"Call back at {phone} today.") == [("PHONE_NUMBER", phone)]


def test_fax_is_told_apart_from_phone(det: PatternDetector) -> None:
    text = "Phone 617-555-0123; fax records to (617) 555-0199."
    assert found(det, text) == [("PHONE_NUMBER", "617-555-0123"), ("FAX_NUMBER", "(617) 555-0199")]


@pytest.mark.parametrize(
    "card",
    [
        "2223003122003222",  # Mastercard 2-series
        "2223 0031 2200 3222",
        "6759649826438453",  # Maestro
        "501829384756",  # 12-digit Maestro (Luhn-valid)
        "4000000000000000006",  # 19-digit Visa (Luhn-valid)
        "3782-822463-10005",  # Amex with dashes
    ],
)
def test_card_numbers_presidio_misses(det: PatternDetector, card: str) -> None:
    assert found(det, f"Paid with card {card}.") == [("CREDIT_CARD", card)]


def test_card_needs_luhn(det: PatternDetector) -> None:
    assert found(det, "Paid with card 4111111111111112.") == []


def test_email_is_not_also_a_url(det: PatternDetector) -> None:
    assert found(det, "Write to jane.doe@mercy-health.org please.") == [
        ("EMAIL_ADDRESS", "jane.doe@mercy-health.org")
    ]


def test_long_digit_strings_are_not_bank_or_licence_numbers(det: PatternDetector) -> None:
    # Stock Presidio reports these as US_BANK_NUMBER / US_DRIVER_LICENSE.
    assert found(det, "Reference 83920174635 and batch 004417 were processed.") == []


def test_labelled_identifiers_span_the_value_only(det: PatternDetector) -> None:
    text = "MRN: 00448812, Member ID W123456789, acct #99812312, DL# D1234567, S/N PJN885522H"
    assert found(det, text) == [
        ("MEDICAL_RECORD_NUMBER", "00448812"),
        ("HEALTH_PLAN_NUMBER", "W123456789"),
        ("ACCOUNT_NUMBER", "99812312"),
        ("LICENSE_NUMBER", "D1234567"),
        ("DEVICE_ID", "PJN885522H"),
    ]


def test_npi_and_dea_checksums(det: PatternDetector) -> None:
    assert found(det, "NPI 1234567893, DEA AB1234563") == [
        ("NPI", "1234567893"),
        ("DEA_NUMBER", "AB1234563"),
    ]
    # Bare 10-digit number with a valid NPI checksum but no label: score 0.4.
    assert found(det, "code 1234567893", threshold=0.5) == []
    # Invalid DEA checksum without a label is not reported.
    assert found(det, "ref AB1234564") == []


def test_vin_with_check_digit_and_plate_with_label(det: PatternDetector) -> None:
    assert found(det, "car 1M8GDM9AXKP042788 and plate ABC-1234") == [
        ("VEHICLE_ID", "1M8GDM9AXKP042788"),
        ("VEHICLE_ID", "ABC-1234"),
    ]


def test_whole_word_context_not_substring() -> None:
    rx = whole_word_regex(["lic", "social security"])
    assert rx is not None
    assert not rx.search("the public record")
    assert rx.search("lic: A123")
    assert rx.search("Social  Security number")


def test_context_inside_a_word_does_not_raise_the_score(det: PatternDetector) -> None:
    ctx = PatternDetector(context_words={"US_SSN": ["ss"]})
    # "ss" occurs inside "class" but is not a whole word: the space-separated SSN keeps 0.3.
    scores = [c.score for c in ctx.detect("class 123 45 6789") if c.entity == "US_SSN"]
    assert scores == [pytest.approx(0.3)]
    scores = [c.score for c in ctx.detect("ss 123 45 6789") if c.entity == "US_SSN"]
    assert max(scores) > 0.8


def test_policy_context_words_extend_labels() -> None:
    custom = PatternDetector(context_words={"MEDICAL_RECORD_NUMBER": ["EPIC ID"]})
    text = "EPIC ID 7788123"
    assert [(c.entity, text[c.start : c.end]) for c in custom.detect(text)] == [
        ("MEDICAL_RECORD_NUMBER", "7788123")
    ]


def test_dates_all_elements_but_not_bare_years(det: PatternDetector) -> None:
    text = "Admitted 03/02/2024, seen March 3rd, 2024 and 2024-01-31; smoker since 1998 for 3 days."
    assert found(det, text) == [
        ("DATE_TIME", "03/02/2024"),
        ("DATE_TIME", "March 3rd, 2024"),
        ("DATE_TIME", "2024-01-31"),
    ]


def test_fractions_and_pain_scores_are_not_dates(det: PatternDetector) -> None:
    assert found(det, "pain 5/10, took 1/2 tablet, BP 130/85") == []


def test_ages_over_89_only(det: PatternDetector) -> None:
    text = "A 92-year-old woman, her 67 year old son, age 101, and a 95 yo neighbor"
    assert found(det, text) == [
        ("AGE_OVER_89", "92"),
        ("AGE_OVER_89", "101"),
        ("AGE_OVER_89", "95"),
    ]


def test_street_address_city_zip(det: PatternDetector) -> None:
    text = "Lives at 4521 North Maple Avenue Apt. 3B, Springfield, IL 62704-1234 with family."
    assert found(det, text) == [
        ("STREET_ADDRESS", "4521 North Maple Avenue Apt. 3B"),
        ("LOCATION", "Springfield"),
        ("ZIP_CODE", "62704-1234"),
    ]


def test_names_after_titles_and_labels(det: PatternDetector) -> None:
    text = "Seen by Dr. Alice Walker; Pt. Jones reports pain. Signed by Mark O'Neil, MD."
    assert found(det, text) == [
        ("PERSON", "Alice Walker"),
        ("PERSON", "Jones"),
        ("PERSON", "Mark O'Neil"),
    ]


def test_physician_credential_is_not_maryland(det: PatternDetector) -> None:
    assert ("LOCATION", "Jane Roe") not in found(det, "Referred by Jane Roe, MD, yesterday.")


def test_ip_url_mac(det: PatternDetector) -> None:
    text = "from 192.168.10.4 and 2001:db8::1 via https://portal.example.org/x?id=3 on 00:1A:2B:3C:4D:5E"
    assert found(det, text) == [
        ("IP_ADDRESS", "192.168.10.4"),
        ("IP_ADDRESS", "2001:db8::1"),
        ("URL", "https://portal.example.org/x?id=3"),
        ("DEVICE_ID", "00:1A:2B:3C:4D:5E"),
    ]


def test_times_are_not_ipv6(det: PatternDetector) -> None:
    assert found(det, "at 10:30:15 today") == []


def test_deny_list_terms(det: PatternDetector) -> None:
    d = PatternDetector(deny_list={"PERSON": ["Bubba"]})
    assert [(c.entity, c.source) for c in d.detect("bubba came in")] == [("PERSON", "deny")]


def test_entities_filter(det: PatternDetector) -> None:
    only = PatternDetector(entities=frozenset({"EMAIL_ADDRESS"}))
    assert {c.entity for c in only.detect("a@b.com 617-555-0123 123-45-6789")} == {"EMAIL_ADDRESS"}


def test_age_sex_shorthand_but_not_temperatures(det: PatternDetector) -> None:
    text = "Pt is a 94F with CHF; (92M) brother. Tmax 101F overnight, T 99F, temp: 102F."
    assert found(det, text) == [("AGE_OVER_89", "94"), ("AGE_OVER_89", "92")]


def test_international_addresses_postcodes_and_schemes(det: PatternDetector) -> None:
    text = "ZIP: 4032, postal code PH36 9QH, Suite 026, Via Leopardi 83, Favoritenstrasse 36"
    assert found(det, text) == [
        ("ZIP_CODE", "4032"),
        ("ZIP_CODE", "PH36 9QH"),
        ("STREET_ADDRESS", "Suite 026"),
        ("STREET_ADDRESS", "Via Leopardi 83"),
        ("STREET_ADDRESS", "Favoritenstrasse 36"),
    ]
    assert found(det, "site:https://www.example.tn/") == [("URL", "https://www.example.tn/")]
    assert found(det, "give 5 units, Unit 5 of insulin, room 3, floor 2") == []
