"""EMAIL_ADDRESS: ``local@domain.tld``."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield Candidate(m.start(), m.end(), "EMAIL_ADDRESS", 0.9, "pattern", "email")
