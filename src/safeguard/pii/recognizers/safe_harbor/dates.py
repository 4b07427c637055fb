"""DATE_TIME: numeric dates, short ``m/d`` dates (low unless after a context word) and dates
with month names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.lexicon import MONTH as _MONTH
from safeguard.pii.recognizers.rules import Scope, trim
from safeguard.pii.types import Candidate

DATE_NUMERIC = re.compile(
    r"(?<![\d/.-])(?:"
    r"(?:0?[1-9]|1[0-2])(?P<s1>[/.-])(?:0?[1-9]|[12]\d|3[01])(?P=s1)(?:19|20)?\d{2}"
    r"|(?:0?[1-9]|[12]\d|3[01])(?P<s2>[/.-])(?:0?[1-9]|1[0-2])(?P=s2)(?:19|20)\d{2}"
    r"|(?:19|20)\d{2}(?P<s3>[/.-])(?:0?[1-9]|1[0-2])(?P=s3)(?:0?[1-9]|[12]\d|3[01])"
    r")(?![\d/.-]?\d)"
)
DATE_SHORT = re.compile(r"(?<![\d/.-])(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])(?![\d/])")
_ORD = r"(?:st|nd|rd|th)?"
_DATE_WORDS = re.compile(
    r"\b(?:"
    rf"{_MONTH}\.?\s+(?:0?[1-9]|[12]\d|3[01]){_ORD}\b(?:,?\s+(?:19|20)\d{{2}}\b)?"
    rf"|(?:0?[1-9]|[12]\d|3[01]){_ORD}\s+(?:of\s+)?{_MONTH}\b\.?(?:,?\s+(?:19|20)\d{{2}}\b)?"
    rf"|{_MONTH}\.?,?\s+(?:of\s+)?(?:19|20)\d{{2}}\b"
    r")"
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in DATE_NUMERIC.finditer(text):
        yield Candidate(m.start(), m.end(), "DATE_TIME", 0.7, "pattern", "date-numeric")
    if "/" in text:
        for m in DATE_SHORT.finditer(text):
            ctx = scope.has_context(text, m.start(), "DATE_TIME")
            yield Candidate(
                m.start(), m.end(), "DATE_TIME", 0.6 if ctx else 0.2, "pattern", "date-short"
            )
    for m in _DATE_WORDS.finditer(text):
        s, e = trim(text, m.start(), m.end())
        yield Candidate(s, e, "DATE_TIME", 0.85, "pattern", "date-words")
