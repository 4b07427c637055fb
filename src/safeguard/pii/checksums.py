"""Check digits of the identifiers the recognizers validate (pure Python, no dependencies).

>>> luhn_valid("4111111111111111")
True
>>> npi_valid("1234567893")
True
>>> dea_valid("AB1234563")
True
>>> vin_valid("1M8GDM9AXKP042788")
True
"""

from __future__ import annotations

__all__ = [
    "dea_check_digit",
    "dea_valid",
    "luhn_check_digit",
    "luhn_valid",
    "npi_check_digit",
    "npi_valid",
    "vin_check_digit",
    "vin_valid",
]


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn (mod 10) check (card numbers, NPIs)."""
    return digits.isdigit() and len(digits) >= 2 and _luhn_sum(digits) % 10 == 0


def luhn_check_digit(payload: str) -> str:
    """The Luhn check digit to append to ``payload``.

    >>> luhn_check_digit("411111111111111")
    '1'
    """
    return str((10 - _luhn_sum(payload + "0") % 10) % 10)


def npi_valid(npi: str) -> bool:
    """National Provider Identifier: 10 digits, first 1 or 2, Luhn over ``80840`` + NPI."""
    return len(npi) == 10 and npi[0] in "12" and luhn_valid("80840" + npi)


def npi_check_digit(first9: str) -> str:
    """The 10th digit of an NPI whose first nine digits are ``first9``."""
    return luhn_check_digit("80840" + first9)


_DEA_FIRST = set("ABCDEFGHJKLMPRSTUX")


def dea_check_digit(six: str) -> str:
    """Check digit of a DEA registration number from its first six digits."""
    d = [int(c) for c in six]
    return str((d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10)


def dea_valid(dea: str) -> bool:
    """DEA number: registrant letter, name initial (or 9), 6 digits and a check digit."""
    if len(dea) != 9:
        return False
    first, second, digits = dea[0].upper(), dea[1].upper(), dea[2:]
    if first not in _DEA_FIRST or not (second.isalpha() or second == "9") or not digits.isdigit():
        return False
    return dea_check_digit(digits[:6]) == digits[6]


_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_check_digit(vin: str) -> str:
    """The North American check digit (position 9) of a 17-character VIN."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin.upper(), _VIN_WEIGHTS, strict=True))
    rem = total % 11
    return "X" if rem == 10 else str(rem)


def vin_valid(vin: str) -> bool:
    """Whether a 17-character VIN has only legal characters and a correct check digit."""
    vin = vin.upper()
    if len(vin) != 17 or any(c not in _VIN_VALUES for c in vin):
        return False
    return vin_check_digit(vin) == vin[8]
