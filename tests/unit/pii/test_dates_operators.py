"""Date shifting and operators (no NER needed)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeguard.errors import ConfigError
from safeguard.pii.checksums import dea_valid, luhn_valid, npi_valid, vin_valid
from safeguard.pii.dates import shift_date_text
from safeguard.pii.keys import PseudonymKey
from safeguard.pii.operators import OPERATORS, DocumentContext, apply_operator, register_operator

KEY = PseudonymKey(secret=b"k" * 32)
OTHER = PseudonymKey(secret=b"j" * 32)


@pytest.mark.parametrize(
    ("text", "days", "expected"),
    [
        ("03/02/2024", 10, "03/12/2024"),
        ("3/2/24", -3, "2/28/24"),
        ("2024-02-28", 2, "2024-03-01"),
        ("12-31-1999", 1, "01-01-2000"),
        ("March 3, 2024", -3, "February 29, 2024"),
        ("Mar 3, 2024", 30, "Apr 2, 2024"),
        ("3 March 2024", 1, "4 March 2024"),
        ("March 31st", 1, "April 1st"),
        ("June 2020", 30, "July 2020"),
        ("31/12/2023", 1, "01/01/2024"),  # day first: 31 cannot be a month
    ],
)
def test_shift_keeps_format(text: str, days: int, expected: str) -> None:
    assert shift_date_text(text, days) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.dates(min_value=dt.date(1901, 1, 1), max_value=dt.date(2098, 12, 31)), st.integers(-730, 730)
)
def test_shift_round_trip(d: dt.date, days: int) -> None:
    for text in (
        f"{d.month:02d}/{d.day:02d}/{d.year}",
        d.isoformat(),
        f"{d.strftime('%B')} {d.day}, {d.year}",
    ):
        shifted = shift_date_text(text, days)
        assert shifted is not None
        assert shift_date_text(shifted, -days) == text


def test_unparseable_dates() -> None:
    assert shift_date_text("last Tuesday", 5) is None
    assert shift_date_text("02/30/2024", 5) is None


def ctx(**kw: object) -> DocumentContext:
    kw.setdefault("key", KEY)
    return DocumentContext(**kw)  # type: ignore[arg-type]


def test_tag_indices_are_per_value_within_a_document() -> None:
    c = ctx(key=None)
    out = [
        apply_operator("tag", c, "PERSON", v, {}) for v in ("John Smith", "Jane Roe", "john  smith")
    ]
    assert out == ["<PERSON_1>", "<PERSON_2>", "<PERSON_1>"]
    assert apply_operator("tag", c, "PHONE_NUMBER", "(617) 555-0123", {}) == "<PHONE_NUMBER_1>"
    assert apply_operator("tag", c, "PHONE_NUMBER", "+1-617-555-0123", {}) == "<PHONE_NUMBER_1>"
    assert apply_operator("tag", ctx(key=None), "PERSON", "Jane Roe", {}) == "<PERSON_1>"


def test_pseudonyms_consistent_across_documents_and_keyed() -> None:
    a = apply_operator("pseudonym", ctx(), "PERSON", "John Smith", {})
    b = apply_operator("pseudonym", ctx(), "PERSON", "JOHN SMITH", {})
    c = apply_operator("pseudonym", ctx(key=OTHER), "PERSON", "John Smith", {})
    d = apply_operator("pseudonym", ctx(), "LOCATION", "John Smith", {})
    assert a == b
    assert len({a, c, d}) == 3
    assert re.fullmatch(r"<PERSON_[0-9a-f]{10}>", a)
    assert "John" not in a


def test_keyed_operators_need_a_key() -> None:
    with pytest.raises(ConfigError, match="pseudonym key"):
        apply_operator("pseudonym", ctx(key=None), "PERSON", "x", {})


def test_surrogates_keep_shape_and_validity() -> None:
    c = ctx()
    phone = apply_operator("surrogate", c, "PHONE_NUMBER", "+1-617-555-0123x44", {})
    assert (
        re.fullmatch(r"\+1-[2-9]\d\d-[2-9]\d\d-\d{4}x\d\d", phone) and phone != "+1-617-555-0123x44"
    )
    card = apply_operator("surrogate", c, "CREDIT_CARD", "2223 0031 2200 3222", {})
    assert re.fullmatch(r"2\d{3} \d{4} \d{4} \d{4}", card) and luhn_valid(card.replace(" ", ""))
    assert npi_valid(apply_operator("surrogate", c, "NPI", "1234567893", {}))
    assert dea_valid(apply_operator("surrogate", c, "DEA_NUMBER", "AB1234563", {}))
    assert vin_valid(apply_operator("surrogate", c, "VEHICLE_ID", "1M8GDM9AXKP042788", {}))
    ssn = apply_operator("surrogate", c, "US_SSN", "123-45-6789", {})
    assert re.fullmatch(r"(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}", ssn)
    name = apply_operator("surrogate", c, "PERSON", "John Smith", {})
    assert len(name.split()) == 2 and name != "John Smith"
    assert apply_operator("surrogate", ctx(), "PERSON", "John Smith", {}) == name  # dataset-wide
    assert apply_operator("surrogate", c, "AGE_OVER_89", "97", {}) == "90"
    assert "@" in apply_operator("surrogate", c, "EMAIL_ADDRESS", "a@b.com", {})


def test_date_shift_is_per_patient_and_consistent() -> None:
    a1 = apply_operator("date_shift", ctx(patient_id="p1"), "DATE_TIME", "03/02/2024", {})
    a2 = apply_operator("date_shift", ctx(patient_id="p1"), "DATE_TIME", "03/12/2024", {})
    d = lambda s: dt.datetime.strptime(s, "%m/%d/%Y").date()  # noqa: E731
    assert (d(a2) - d(a1)).days == 10  # intervals within a patient are preserved
    shifts = {
        (
            d(apply_operator("date_shift", ctx(patient_id=f"p{i}"), "DATE_TIME", "03/02/2024", {}))
            - dt.date(2024, 3, 2)
        ).days
        for i in range(20)
    }
    assert len(shifts) > 10 and 0 not in shifts and all(abs(s) <= 365 for s in shifts)
    assert apply_operator("date_shift", ctx(), "DATE_TIME", "last spring", {}) == "<DATE_TIME_1>"


def test_zip3_and_redact() -> None:
    c = ctx(key=None, restricted_zip3=frozenset({"036"}))
    assert apply_operator("zip3", c, "ZIP_CODE", "02115-1234", {}) == "021XX"
    assert apply_operator("zip3", c, "ZIP_CODE", "03601", {}) == "000XX"
    assert apply_operator("redact", c, "US_SSN", "123-45-6789", {}) == "[REDACTED]"
    assert apply_operator("redact", c, "US_SSN", "123-45-6789", {"replacement": ""}) == ""


def test_operator_registry() -> None:
    assert {"redact", "tag", "pseudonym", "surrogate", "date_shift", "zip3", "keep"} <= set(
        OPERATORS
    )
    with pytest.raises(ConfigError, match="known: "):
        apply_operator("shred", ctx(), "PERSON", "x", {})
    with pytest.raises(ConfigError, match="already registered"):
        register_operator("tag", lambda *a: "")


def test_key_never_printed(tmp_path) -> None:
    key = PseudonymKey.generate()
    assert key.secret.hex() not in repr(key) and key.key_id in repr(key)
    path = key.save(tmp_path / "k.json")
    assert (path.stat().st_mode & 0o777) == 0o600
    assert PseudonymKey.load(path) == key
    with pytest.raises(ConfigError, match="does not exist"):
        PseudonymKey.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a pseudonym key file"):
        PseudonymKey.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        PseudonymKey(secret=b"short")
