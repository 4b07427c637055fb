"""LOCATION: health-care facilities (``St. Mary's Hospital``, ``Lakeside Medical Center``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope, city_span
from safeguard.pii.types import Candidate

_FACILITY = re.compile(
    r"(?P<v>(?:(?:St\.?|Saint|Mount|Mt\.?)[ \t]+)?(?:[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+[ \t]+){1,3}"
    r"(?:Hospital|Medical[ \t]+Center|Health[ \t]+Center|Clinic|Infirmary|Hospice"
    r"|Nursing[ \t]+Home|Rehabilitation[ \t]+Center|Urgent[ \t]+Care|Health[ \t]+System))\b"
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _FACILITY.finditer(text):
        span = city_span(text, *m.span("v"))
        if span is not None and span[1] - span[0] > 8:
            yield Candidate(span[0], span[1], "LOCATION", 0.6, "pattern", "facility")
