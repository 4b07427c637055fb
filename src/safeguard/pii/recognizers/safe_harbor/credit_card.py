"""CREDIT_CARD: 12-19 digits passing the Luhn check (12 digits: Maestro prefixes only)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.checksums import luhn_valid
from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_CARD = re.compile(r"(?<![\d-])[2-6]\d{3}(?:[ -]?\d){8,15}(?![\d-])")
_MAESTRO = ("50", "56", "57", "58", "6")


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if not 12 <= len(digits) <= 19 or not luhn_valid(digits):
            continue
        if len(digits) == 12 and not digits.startswith(_MAESTRO):
            continue
        ctx = scope.has_context(text, m.start(), "CREDIT_CARD")
        yield Candidate(m.start(), m.end(), "CREDIT_CARD", 1.0 if ctx else 0.8, "pattern", "card")
