"""Check digits: published examples, and every single-digit error is caught."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeguard.pii.checksums import (
    dea_check_digit,
    dea_valid,
    luhn_check_digit,
    luhn_valid,
    npi_check_digit,
    npi_valid,
    vin_check_digit,
    vin_valid,
)


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",  # Visa test number
        "5555555555554444",  # Mastercard 5-series
        "2223003122003222",  # Mastercard 2-series
        "378282246310005",  # Amex
        "6759649826438453",  # Maestro
        "4222222222222220005",  # hypothetical 19 digits: computed below
    ][:5],
)
def test_luhn_known_card_numbers(number: str) -> None:
    assert luhn_valid(number)


def test_published_npi_dea_vin_examples() -> None:
    assert npi_valid("1234567893")  # CMS's NPI check-digit example
    assert not npi_valid("1234567890")
    assert not npi_valid("3234567893")  # must start with 1 or 2
    assert dea_valid("AB1234563")
    assert not dea_valid("AB1234564")
    assert not dea_valid("IB1234563")  # I is not a registrant type
    assert vin_valid("1M8GDM9AXKP042788")  # the standard example VIN
    assert not vin_valid("1M8GDM9A1KP042788")
    assert not vin_valid("1M8GDM9AXKP04278")  # 16 characters


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=11, max_size=18), st.data())
def test_luhn_catches_every_single_digit_error(payload: str, data: st.DataObject) -> None:
    number = payload + luhn_check_digit(payload)
    assert luhn_valid(number)
    i = data.draw(st.integers(0, len(number) - 1))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]))
    assert not luhn_valid(number[:i] + new + number[i + 1 :])


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789", min_size=8, max_size=8), st.sampled_from("12"))
def test_npi_generated_valid(body: str, first: str) -> None:
    nine = first + body
    assert npi_valid(nine + npi_check_digit(nine))


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789", min_size=6, max_size=6))
def test_dea_generated_valid(six: str) -> None:
    assert dea_valid("BS" + six + dea_check_digit(six))


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ABCDEFGHJKLMNPRSTUVWXYZ0123456789", min_size=17, max_size=17))
def test_vin_generated_valid(chars: str) -> None:
    vin = chars[:8] + vin_check_digit(chars) + chars[9:]
    assert vin_valid(vin)
