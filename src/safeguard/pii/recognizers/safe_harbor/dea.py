"""DEA_NUMBER: two letters and seven digits passing the DEA check digit."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.checksums import dea_valid
from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_DEA = re.compile(r"(?<![A-Za-z0-9])[ABCDEFGHJKLMPRSTUX][A-Z9]\d{7}(?![A-Za-z0-9])")


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _DEA.finditer(text):
        if dea_valid(m.group()):
            ctx = scope.has_context(text, m.start(), "DEA_NUMBER")
            yield Candidate(
                m.start(), m.end(), "DEA_NUMBER", 0.95 if ctx else 0.7, "pattern", "dea"
            )
