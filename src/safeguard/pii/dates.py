"""Parse a date as written in a note and write it back shifted, in the same format.

>>> shift_date_text("03/02/2024", 10)
'03/12/2024'
>>> shift_date_text("March 3, 2024", -3)
'February 29, 2024'
>>> shift_date_text("2024-01-31", 1)
'2024-02-01'
>>> shift_date_text("3rd of March", 1)
'4th of March'
>>> shift_date_text("yesterday", 1) is None
True
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["shift_date_text"]

_MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]  # fmt: skip
_MONTH_LOOKUP = {m: i + 1 for i, m in enumerate(_MONTHS)}
_MONTH_LOOKUP.update({m[:3]: i + 1 for i, m in enumerate(_MONTHS)})
_MONTH_LOOKUP["sept"] = 9

_NUM = re.compile(r"^(\d{1,4})([/.-])(\d{1,2})(?:\2(\d{2,4}))?$")
_WORDS_MDY = re.compile(
    r"^(?P<m>[A-Za-z]+)(?P<dot>\.?)(?P<sp>\s+)(?P<d>\d{1,2})(?P<ord>st|nd|rd|th)?"
    r"(?:(?P<sep>,?\s+)(?P<y>\d{4}))?$"
)
_WORDS_DMY = re.compile(
    r"^(?P<d>\d{1,2})(?P<ord>st|nd|rd|th)?(?P<sp>\s+(?:of\s+)?)(?P<m>[A-Za-z]+)(?P<dot>\.?)"
    r"(?:(?P<sep>,?\s+)(?P<y>\d{4}))?$"
)
_WORDS_MY = re.compile(r"^(?P<m>[A-Za-z]+)(?P<dot>\.?)(?P<sep>,?\s+(?:of\s+)?)(?P<y>\d{4})$")
_REF_YEAR = 2000  # a leap year, for dates written without one


def _ordinal(n: int) -> str:
    if 11 <= n % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _month_name(month: int, like: str) -> str:
    full = _MONTHS[month - 1]
    if like.lower() in _MONTHS:  # written in full ("May" counts as full)
        name = full
    elif like.lower() == "sept" and month == 9:
        name = "sept"
    else:
        name = full[:3]
    if like.isupper():
        return name.upper()
    if like[:1].isupper():
        return name.capitalize()
    return name


def _year_text(year: int, like: str) -> str:
    return f"{year % 100:02d}" if len(like) == 2 else f"{year:04d}"


def _pad(value: int, like: str) -> str:
    return f"{value:02d}" if len(like) == 2 else str(value)


def shift_date_text(text: str, days: int) -> str | None:
    """Shift a written date by ``days``, keeping its format; None if it cannot be parsed.

    Numeric dates are read month-first (US) unless the first field cannot be a month.
    A month-and-year date moves by the shift applied to the 15th of that month.
    """
    s = text.strip()
    m = _NUM.match(s)
    if m:
        a, sep, b, c = m.group(1), m.group(2), m.group(3), m.group(4)
        try:
            if len(a) == 4:  # Y-M-D
                d0 = dt.date(int(a), int(b), int(c)) if c else None
                if d0 is None:
                    return None
                d1 = d0 + dt.timedelta(days=days)
                return f"{d1.year:04d}{sep}{_pad(d1.month, b)}{sep}{_pad(d1.day, c)}"
            year = int(c) if c else _REF_YEAR
            if c and len(c) == 2:
                year += 2000 if year < 50 else 1900
            month_first = int(a) <= 12
            month, day = (int(a), int(b)) if month_first else (int(b), int(a))
            d1 = dt.date(year, month, day) + dt.timedelta(days=days)
        except ValueError:
            return None
        first, second = (d1.month, d1.day) if month_first else (d1.day, d1.month)
        out = f"{_pad(first, a)}{sep}{_pad(second, b)}"
        return out + (f"{sep}{_year_text(d1.year, c)}" if c else "")
    for rx in (_WORDS_MDY, _WORDS_DMY):
        m = rx.match(s)
        if not m:
            continue
        month = _MONTH_LOOKUP.get(m.group("m").lower())
        if month is None:
            return None
        year = int(m.group("y")) if m.group("y") else _REF_YEAR
        try:
            d1 = dt.date(year, month, int(m.group("d"))) + dt.timedelta(days=days)
        except ValueError:
            return None
        mon = _month_name(d1.month, m.group("m")) + m.group("dot")
        day = str(d1.day) + (_ordinal(d1.day) if m.group("ord") else "")
        yr = f"{m.group('sep')}{d1.year}" if m.group("y") else ""
        if rx is _WORDS_MDY:
            return f"{mon}{m.group('sp')}{day}{yr}"
        return f"{day}{m.group('sp')}{mon}{yr}"
    m = _WORDS_MY.match(s)
    if m:
        month = _MONTH_LOOKUP.get(m.group("m").lower())
        if month is None:
            return None
        d1 = dt.date(int(m.group("y")), month, 15) + dt.timedelta(days=days)
        return f"{_month_name(d1.month, m.group('m'))}{m.group('dot')}{m.group('sep')}{d1.year}"
    return None
