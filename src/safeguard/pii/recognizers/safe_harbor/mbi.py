"""HEALTH_PLAN_NUMBER: Medicare Beneficiary Identifiers (``1EG4-TE5-MK73``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_MBI = re.compile(
    r"(?<![A-Za-z0-9])[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y]"
    r"[AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y]{2}\d{2}(?![A-Za-z0-9])"
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _MBI.finditer(text):
        yield Candidate(m.start(), m.end(), "HEALTH_PLAN_NUMBER", 0.75, "pattern", "mbi")
