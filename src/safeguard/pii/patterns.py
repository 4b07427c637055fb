"""Pattern recognizers for the HIPAA Safe Harbor identifiers (pure Python, regex + checksums).

:class:`PatternDetector` scans a text with every rule of
:data:`~safeguard.pii.recognizers.safe_harbor.PATTERN_RULES` (one module per identifier under
:mod:`safeguard.pii.recognizers.safe_harbor`) and returns :class:`Candidate` spans with a
score in [0, 1]. Identifiers that have a format (card numbers, NPI, DEA, VIN, SSN, phone,
e-mail, IP, dates, street addresses) are matched by shape and validated where a check digit
exists; identifiers that are just "some number" (medical record, health-plan, account,
licence, device numbers) are matched only after a label (``MRN:``, ``Member ID``, ``Acct #``,
``S/N``), and the span is the value, not the label.

Context words raise a score only on a *whole-word* match in a window before the candidate
(``"lic"`` never matches inside ``"public"``), unlike Presidio's default substring matching.
Word lists are data files in ``safeguard/pii/data/`` (:mod:`safeguard.pii.recognizers.lexicon`).

This module imports nothing outside the standard library and :mod:`safeguard.pii`; the
Presidio adapter (:mod:`safeguard.pii._presidio`) wraps it in one ``EntityRecognizer``. The
names below stay importable from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from safeguard.pii.recognizers.lexicon import (
    DEFAULT_CONTEXT,
    NAME_STOPWORDS,
    NER_PERSON_STOPWORDS,
    US_STATES,
)
from safeguard.pii.recognizers.lexicon import (
    MONTH as _MONTH,
)
from safeguard.pii.recognizers.lexicon import (
    MONTH_RE as _MONTH_RE,
)
from safeguard.pii.recognizers.lexicon import (
    STREET_SUFFIXES as _STREET_SUFFIXES,
)
from safeguard.pii.recognizers.rules import Scope, whole_word_regex
from safeguard.pii.recognizers.safe_harbor import PATTERN_ENTITIES, PATTERN_RULES
from safeguard.pii.recognizers.safe_harbor.dates import DATE_NUMERIC as _DATE_NUMERIC
from safeguard.pii.recognizers.safe_harbor.dates import DATE_SHORT as _DATE_SHORT
from safeguard.pii.recognizers.safe_harbor.labelled import compile_labels
from safeguard.pii.types import Candidate

__all__ = [
    "DEFAULT_CONTEXT",
    "NAME_STOPWORDS",
    "NER_PERSON_STOPWORDS",
    "PATTERN_ENTITIES",
    "US_STATES",
    "Candidate",
    "PatternDetector",
    "whole_word_regex",
]

# Kept importable under their old private names (resolve, recognizers and tests use them).
_REEXPORTED = (_DATE_NUMERIC, _DATE_SHORT, _MONTH, _MONTH_RE, _STREET_SUFFIXES)


@dataclass(frozen=True, kw_only=True)
class PatternDetector:
    """All pattern recognizers, configured once and applied to many texts.

    Args:
        entities: Entity types to report (others are not searched for).
        context_words: Extra context words per entity, added to :data:`DEFAULT_CONTEXT`.
        deny_list: Terms always reported as the given entity (whole word, case-insensitive).
        context_window: Characters before a candidate searched for context words.
    """

    entities: frozenset[str] = frozenset(PATTERN_ENTITIES)
    context_words: Mapping[str, Sequence[str]] = field(default_factory=dict)
    deny_list: Mapping[str, Sequence[str]] = field(default_factory=dict)
    context_window: int = 40

    def __post_init__(self) -> None:
        if self.context_window < 0:
            raise ValueError(f"`context_window` (={self.context_window}) must be >= 0")
        ctx: dict[str, re.Pattern[str] | None] = {}
        for entity in set(DEFAULT_CONTEXT) | set(self.context_words):
            words = [*DEFAULT_CONTEXT.get(entity, ()), *self.context_words.get(entity, ())]
            ctx[entity] = whole_word_regex(words)
        deny = []
        for entity, terms in self.deny_list.items():
            rx = whole_word_regex(terms)
            if rx is not None:
                deny.append((entity, rx))
        scope = Scope(
            entities=frozenset(self.entities),
            window=self.context_window,
            context=ctx,
            labelled=compile_labels(self.context_words),
            deny=deny,
        )
        object.__setattr__(self, "_scope", scope)

    def detect(self, text: str) -> list[Candidate]:
        """Every candidate span in ``text`` (unresolved: spans may overlap)."""
        scope: Scope = self._scope  # type: ignore[attr-defined]
        out: list[Candidate] = []
        for rule in PATTERN_RULES:
            if rule.entities and not scope.wants(*rule.entities):
                continue
            out.extend(c for c in rule.detect(text, scope) if c.entity in self.entities)
        return out
