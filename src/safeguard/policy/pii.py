"""The ``pii:`` section of a policy (owned by :mod:`safeguard.pii`; extended there)."""

from __future__ import annotations

from pydantic import Field

from safeguard.policy._base import Section


class PIIPolicy(Section):
    """What counts as PII/PHI and what happens to it.

    Attributes:
        entities: Entity types to detect (e.g. ``PERSON``, ``MEDICAL_RECORD_NUMBER``).
        score_threshold: Minimum recognizer score for a finding to count.
        operators: Operator per entity type (``redact``, ``tag``, ``pseudonym``, ``surrogate``,
            ``date_shift``); ``DEFAULT`` applies to the rest.
    """

    entities: list[str] = Field(default_factory=list)
    score_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    operators: dict[str, str] = Field(default_factory=lambda: {"DEFAULT": "tag"})
