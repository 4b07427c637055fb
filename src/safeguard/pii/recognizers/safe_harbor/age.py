"""AGE_OVER_89: ages 90-119 written as ages (``93 years old``, ``age 95``, ``101 y/o``, ``92F``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_AGE = re.compile(
    r"(?<![\d.])(?P<v>9\d|1[01]\d)(?![\d.])"
    r"(?P<tail>[\s-]*(?:years?|yrs?|y)[\s-]*(?:old|o\b)|\s?(?:yo|y/o|y\.o\.|YO|yr)\b"
    r"|(?P<sex>[MF])\b)?"
)
# "Tmax 101F" is a temperature, not a 101-year-old woman.
_TEMPERATURE = re.compile(
    r"(?i)\b(?:t|temp|temperature|tmax|tm|fever|febrile|afebrile)\b[^A-Za-z]*$"
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _AGE.finditer(text):
        before = text[max(0, m.start() - 6) : m.start()].lower()
        labelled = before.rstrip(": ").endswith(("age", "aged"))
        if m.group("sex") and _TEMPERATURE.search(text, max(0, m.start() - 16), m.start()):
            continue
        if m.group("tail") or labelled:
            yield Candidate(*m.span("v"), "AGE_OVER_89", 0.85, "pattern", "age")
