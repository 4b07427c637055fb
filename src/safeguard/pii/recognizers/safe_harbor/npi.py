"""NPI: ten digits passing the NPI check digit, higher after a context word."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.checksums import npi_valid
from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_NPI = re.compile(r"(?<![\d-])[12]\d{9}(?![\d-])")


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _NPI.finditer(text):
        if npi_valid(m.group()):
            ctx = scope.has_context(text, m.start(), "NPI")
            yield Candidate(m.start(), m.end(), "NPI", 0.95 if ctx else 0.4, "pattern", "npi")
