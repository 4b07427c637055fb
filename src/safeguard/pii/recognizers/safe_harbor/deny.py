"""Deny-list terms: always reported as their entity (whole word, case-insensitive)."""

from __future__ import annotations

from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for entity, rx in scope.deny:
        for m in rx.finditer(text):
            yield Candidate(m.start(), m.end(), entity, 1.0, "deny", "deny-list")
