"""LOCATION and ZIP_CODE: ``City, ST 12345`` (state code or name, optional ZIP); ``Jane Roe, MD``
without a ZIP is a physician, not a place in Maryland.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.lexicon import US_STATES
from safeguard.pii.recognizers.rules import Scope, city_span
from safeguard.pii.types import Candidate

_STATE_ALT = "|".join(sorted([*US_STATES, *(n for n in US_STATES.values())], key=len, reverse=True))
_CITY_STATE = re.compile(
    r"(?P<city>(?<![\w-])[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž.'’-]+(?:[ \t]+[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž.'’-]+){0,3}),[ \t]+"
    rf"(?P<state>{_STATE_ALT})\b(?:,?[ \t]+(?P<zip>\d{{5}}(?:-\d{{4}})?)(?!\d))?"
)
_CREDENTIAL_STATES = frozenset({"MD", "PA", "DO", "NP", "RN"})


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _CITY_STATE.finditer(text):
        if not m.group("zip") and m.group("state") in _CREDENTIAL_STATES:
            continue  # "Jane Roe, MD" is a physician, not a place in Maryland
        if m.group("zip"):
            yield Candidate(*m.span("zip"), "ZIP_CODE", 0.85, "pattern", "zip-after-state")
        span = city_span(text, *m.span("city"))
        if span is not None:
            yield Candidate(span[0], span[1], "LOCATION", 0.7, "pattern", "city-state")
