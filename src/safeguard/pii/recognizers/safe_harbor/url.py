"""URL: with a scheme, ``www.``, or a bare host under a common top-level domain."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope, trim
from safeguard.pii.types import Candidate

_URL = re.compile(
    r"(?:(?:https?|ftp)://[^\s<>\"'`]+"
    r"|(?<![\w@.-])www\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+[^\s<>\"'`]*"
    r"|(?<![\w@.-])(?:[A-Za-z0-9-]+\.)+(?:com|org|net|edu|gov|mil|io|info|biz|us|co|health|care|med|app)(?:\.[a-z]{2})?"
    r"(?:/[^\s<>\"'`]*)?(?![\w@-]))",
    re.IGNORECASE,
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    if "." not in text:
        return
    for m in _URL.finditer(text):
        s, e = trim(text, m.start(), m.end())
        if e - s >= 4:
            yield Candidate(s, e, "URL", 0.7, "pattern", "url")
