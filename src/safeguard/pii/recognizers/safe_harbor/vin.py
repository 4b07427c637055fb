"""VEHICLE_ID: 17-character vehicle identification numbers passing the VIN check digit."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.checksums import vin_valid
from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_VIN = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-HJ-NPR-Z0-9]*\d)(?=[A-HJ-NPR-Z0-9]*[A-Z])[A-HJ-NPR-Z0-9]{17}(?![A-Za-z0-9])"
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _VIN.finditer(text):
        if vin_valid(m.group()):
            yield Candidate(m.start(), m.end(), "VEHICLE_ID", 0.85, "pattern", "vin")
