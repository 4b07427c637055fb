"""PHONE_NUMBER and FAX_NUMBER: NANP numbers (with country code, extension) and ``+``-prefixed
international numbers; a fax word before the number makes it a fax unless a phone word is nearer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_PHONE = re.compile(
    r"(?<![\w+])(?P<p>(?P<cc>\+1[\s.-]?|\+1(?=\()|001[\s.-]|1[\s.-])?"
    r"(?:\(\d{3}\)[\s.-]?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
    r"|(?P<bare>(?<![\d-])[2-9]\d{9}))"
    r"(?P<ext>[ \t]*(?:x|ext\.?|extension|#)[ \t]*\d{1,6})?(?![\w-]*\d)"
)
_PHONE_INTL = re.compile(r"(?<![\w+])\+(?!1[\s.(-])\d{1,3}(?:[\s.-]\(?\d{1,5}\)?){2,5}(?!\d)")


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _PHONE.finditer(text):
        s, e = m.start(), m.end()
        fax = scope.has_context(text, s, "FAX_NUMBER") and not _nearer_phone_label(text, s, scope)
        ctx = fax or scope.has_context(text, s, "PHONE_NUMBER")
        if m.group("bare"):
            score = 0.6 if ctx else 0.3
        else:
            score = 0.75 if (m.group("cc") or m.group("ext")) else 0.6
            score = min(1.0, score + (0.25 if ctx else 0.0))
        yield Candidate(s, e, "FAX_NUMBER" if fax else "PHONE_NUMBER", score, "pattern", "phone")
    if "+" in text:
        for m in _PHONE_INTL.finditer(text):
            fax = scope.has_context(text, m.start(), "FAX_NUMBER")
            yield Candidate(
                m.start(), m.end(), "FAX_NUMBER" if fax else "PHONE_NUMBER", 0.6,
                "pattern", "phone-intl",
            )  # fmt: skip


def _nearer_phone_label(text: str, start: int, scope: Scope) -> bool:
    """Whether a phone word sits between the last 'fax' word and the number."""
    window = text[max(0, start - scope.window) : start].lower()
    fax_at = max(window.rfind("fax"), window.rfind("facsimile"))
    tail = window[fax_at + 3 :]
    return bool(re.search(r"\b(?:phone|tel|telephone|cell|mobile|call)\b", tail))
