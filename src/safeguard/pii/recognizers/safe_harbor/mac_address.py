"""DEVICE_ID: MAC addresses (``00:1A:2B:3C:4D:5E``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_MAC = re.compile(
    r"(?<![0-9A-Fa-f:-])[0-9A-Fa-f]{2}(?:([:-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}(?![0-9A-Fa-f])"
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for m in _MAC.finditer(text):
        yield Candidate(m.start(), m.end(), "DEVICE_ID", 0.7, "pattern", "mac")
