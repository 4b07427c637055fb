"""Public result types of the scrubber (plain frozen dataclasses; no Presidio types)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Finding", "ScrubResult"]


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
