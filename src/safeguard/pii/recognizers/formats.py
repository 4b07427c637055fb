"""Format recognizers the Safe Harbor patterns lack (pure Python, regex only).

- ``datetime``: ISO 8601 timestamps (``2026-03-14T08:42:00Z``, ``2026-03-14 08:42``), a
  numeric date followed by a time of day (``12/06 23:15``) and dashed day-month-year
  (``15-AUG-2026``). The whole stamp is one DATE_TIME: a time of day with its date narrows
  an event to the minute.
- ``intl_phone``: national numbers with a trunk ``0`` or an ``00`` international prefix and
  9 to 13 digits in groups (``07700 900461``, ``0049 30 1234567``, ``(0151) 496 0123``),
  scored higher after a phone word. ``+``-prefixed numbers are matched by the patterns.
- ``postcode``: UK (``EH9 1HY``), Canadian (``K1A 0B1``), Dutch (``1012 AB``) postcodes
  in their exact shapes.
- ``obfuscated_email``: ``jsmith at gmail dot com``, ``j.smith [at] example [dot] org``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.lexicon import MONTH as _MONTH
from safeguard.pii.types import Candidate

__all__ = [
    "contextual_phone_candidates",
    "datetime_candidates",
    "intl_phone_candidates",
    "obfuscated_email_candidates",
    "postcode_candidates",
]

_TIME = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:[ \t]?(?:[AaPp]\.?[Mm]\.?))?"
_ISO = re.compile(
    r"(?<![\d-])(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    rf"(?:[T ]{_TIME}(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?(?![\d:])"
)
_DATE_THEN_TIME = re.compile(
    r"(?<![\d/.-])(?:0?[1-9]|[12]\d|3[01])[/.-](?:0?[1-9]|[12]\d|3[01])(?:[/.-](?:19|20)?\d{2})?"
    rf",?[ \t]+(?:at[ \t]+)?{_TIME}(?![\d:])"
)
_WEEKDAY_DATE = re.compile(
    r"(?<![\w/])(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)(?:day|nesday|rsday|urday|sday)?\.?,?[ \t]+"
    r"(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])(?:/(?:19|20)?\d{2})?(?![\d/])",
    re.IGNORECASE,
)
_DASHED = re.compile(
    rf"(?<![\w-])(?:0?[1-9]|[12]\d|3[01])-{_MONTH}-(?:19|20)?\d{{2}}(?![\w-])", re.IGNORECASE
)

_PHONE_WORD = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|contact|reached|reachable|on|number|fax|ph)\b[^\n]{0,12}$"
)
_NATIONAL = re.compile(
    r"(?<![\w+./-])(?:\(0\d{1,4}\)|0\d{1,4}|(?:00|\+)[1-9]\d{0,2}[ .-]?\(0\)\d{0,4}|00[1-9]\d{0,2})"
    r"(?:[ .\-/]?\(?\d{1,5}\)?){1,5}(?![\w/]|[.-]\d)"
)

_UK = r"[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[ABD-HJLNP-UW-Z]{2}"
_CA = r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ ]?\d[ABCEGHJ-NPRSTV-Z]\d"
_NL = r"[1-9]\d{3}[ ][A-Z]{2}"
_POSTCODE = re.compile(rf"(?<![\w-])(?:{_UK}|{_CA}|{_NL})(?![\w-])")

_OBF_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+[ \t]*(?:\[at\]|\(at\)|\{at\}|[ \t]at[ \t])[ \t]*"
    r"[A-Za-z0-9-]+(?:[ \t]*(?:\[dot\]|\(dot\)|\{dot\}|[ \t]dot[ \t]|\.)[ \t]*[A-Za-z0-9-]+)*"
    r"[ \t]*(?:\[dot\]|\(dot\)|\{dot\}|[ \t]dot[ \t])[ \t]*"
    r"(?:com|org|net|edu|gov|mil|info|io|co|[a-z]{2})(?![\w])",
    re.IGNORECASE,
)


def datetime_candidates(text: str) -> Iterator[Candidate]:
    """Timestamps and dates with a time of day.

    >>> [t[c.start:c.end] for t in ["at 2026-03-14T08:42:00Z, then 12/06 23:15"]
    ...  for c in datetime_candidates(t)]
    ['2026-03-14T08:42:00Z', '12/06 23:15']
    """
    if not any(ch.isdigit() for ch in text):
        return
    for rx, score, rule in ((_ISO, 0.85, "iso-datetime"), (_DATE_THEN_TIME, 0.7, "date-time"),
                            (_DASHED, 0.85, "dashed-date"), (_WEEKDAY_DATE, 0.7, "weekday-date")):  # fmt: skip
        for m in rx.finditer(text):
            yield Candidate(m.start(), m.end(), "DATE_TIME", score, "pattern", rule)


def intl_phone_candidates(text: str) -> Iterator[Candidate]:
    """National and ``00``-prefixed international phone numbers.

    >>> [t[c.start:c.end] for t in ["mobile 07700 900461"] for c in intl_phone_candidates(t)]
    ['07700 900461']
    """
    yield from contextual_phone_candidates(text)
    for m in _NATIONAL.finditer(text):
        value = m.group().rstrip(" .-/")
        digits = sum(ch.isdigit() for ch in value)
        if not 9 <= digits <= 13 or (" " not in value and "-" not in value and "." not in value):
            continue
        ctx = bool(_PHONE_WORD.search(text, max(0, m.start() - 24), m.start()))
        yield Candidate(
            m.start(), m.start() + len(value), "PHONE_NUMBER", 0.75 if ctx else 0.45, "pattern",
            "intl-phone",
        )  # fmt: skip


#: Digit groups after a phone word, any country: "call me on 96 190351", "(87) 362-625".
_AFTER_PHONE_WORD = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call(?:\s+me)?(?:\s+(?:on|at))?|reach(?:ed)?\s+(?:me\s+)?(?:on|at)|answering\s+at"
    r"|desk|office|home|work|fax|number(?:\s+is)?)\b[:.]?[ \t]*(?:\\n|\n)?[ \t]*"
    r"(?P<v>\(?\d{1,4}\)?(?:[ .-]\(?\d{2,8}\)?){1,4})(?![\w/]|[.,-]\d)"
)


def contextual_phone_candidates(text: str) -> Iterator[Candidate]:
    """Phone numbers of any national shape right after a phone word (6 to 13 digits).

    >>> [t[c.start:c.end] for t in ["You can call 934 92 965"] for c in contextual_phone_candidates(t)]
    ['934 92 965']
    """
    for m in _AFTER_PHONE_WORD.finditer(text):
        v = m.group("v")
        if 6 <= sum(ch.isdigit() for ch in v) <= 13:
            yield Candidate(*m.span("v"), "PHONE_NUMBER", 0.6, "pattern", "phone-after-word")


def postcode_candidates(text: str) -> Iterator[Candidate]:
    """UK, Canadian and Dutch postcodes.

    >>> [t[c.start:c.end] for t in ["Edinburgh EH9 1HY"] for c in postcode_candidates(t)]
    ['EH9 1HY']
    """
    for m in _POSTCODE.finditer(text):
        yield Candidate(m.start(), m.end(), "ZIP_CODE", 0.6, "pattern", "postcode")


def obfuscated_email_candidates(text: str) -> Iterator[Candidate]:
    """E-mail addresses written to dodge scrapers.

    >>> [t[c.start:c.end] for t in ["write to jsmith at gmail dot com"]
    ...  for c in obfuscated_email_candidates(t)]
    ['jsmith at gmail dot com']
    """
    lowered = text.lower()
    if "dot" not in lowered:
        return
    for m in _OBF_EMAIL.finditer(text):
        yield Candidate(m.start(), m.end(), "EMAIL_ADDRESS", 0.8, "pattern", "obfuscated-email")
