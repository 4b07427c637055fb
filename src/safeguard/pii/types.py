"""Public types of the PII module: results (plain frozen dataclasses; no Presidio types), the
recognizers' :class:`Candidate`, and the :class:`Scrubber` protocol the file engines accept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Candidate", "Finding", "ScrubResult", "Scrubber"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A span proposed by one recognizer, before thresholds and overlap resolution.

    Attributes:
        start: Offset of the first character.
        end: Offset one past the last character.
        entity: Entity type, e.g. ``PHONE_NUMBER``.
        score: Confidence in [0, 1].
        source: ``pattern``, ``ner`` or ``deny`` (deny-list terms); used to rank overlaps.
        recognizer: Name of the rule that proposed it (for explanations and tests).
    """

    start: int
    end: int
    entity: str
    score: float
    source: str = "pattern"
    recognizer: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected identifier, by offsets into the original text (the value is not stored).

    Attributes:
        entity: Entity type, e.g. ``PERSON`` or ``MEDICAL_RECORD_NUMBER``.
        start: Offset of the first character in the original text.
        end: Offset one past the last character.
        score: Recognizer confidence in [0, 1].
        recognizer: Rule or model that found it (``ner``, ``labelled:MEDICAL_RECORD_NUMBER``...).
        operator: Operator applied to it (empty when only analysed).
    """

    entity: str
    start: int
    end: int
    score: float
    recognizer: str = ""
    operator: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"Finding span ({self.start}, {self.end}) must have 0 <= start <= end")

    @property
    def length(self) -> int:
        """Number of characters covered."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class ScrubResult:
    """The scrubbed text and what was found in the original.

    Attributes:
        text: The transformed text.
        findings: Findings on the *original* text, in text order, non-overlapping.
        key_id: Id of the key used by keyed operators, if any (never the key).
    """

    text: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    key_id: str | None = None

    @property
    def changed(self) -> bool:
        """Whether anything was found (and so, except with ``keep``, replaced)."""
        return bool(self.findings)

    @property
    def entity_counts(self) -> dict[str, int]:
        """Number of findings per entity type."""
        return dict(Counter(f.entity for f in self.findings))


@runtime_checkable
class Scrubber(Protocol):
    """What the file engines (:mod:`safeguard.pii.stream`, :mod:`safeguard.scale.ray_engine`)
    need of a scrubber: :class:`safeguard.pii.Scrubber` is one; so is any object with these.

    ``config`` has ``to_dict()`` and ``policy_name`` (the report's policy section); an
    optional ``key`` attribute with a ``key_id`` names the pseudonym key in the report.
    """

    config: Any

    def scrub(self, text: str, *, patient_id: str | None = None) -> ScrubResult: ...

    def scrub_batch(
        self, texts: Sequence[str], *, patient_ids: Sequence[str | None] | None = None
    ) -> Sequence[ScrubResult]: ...

    def report_fields(self) -> dict[str, Any]: ...
