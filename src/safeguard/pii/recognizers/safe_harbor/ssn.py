"""US_SSN: ``123-45-6789`` (valid area, group and serial), higher after a context word."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _SSN.finditer(text):
        ctx = scope.has_context(text, m.start(), "US_SSN")
        base = 0.6 if m.group(1) == "-" else 0.3
        yield Candidate(m.start(), m.end(), "US_SSN", 0.95 if ctx else base, "pattern", "ssn")
