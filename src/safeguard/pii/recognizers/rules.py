"""What a Safe Harbor pattern rule is, and what every rule may use while scanning a text.

A rule is a function ``detect(text, scope) -> Iterator[Candidate]`` in its own module under
:mod:`safeguard.pii.recognizers.safe_harbor`, listed with the entities it can report in
:data:`~safeguard.pii.recognizers.safe_harbor.PATTERN_RULES`. The :class:`Scope` carries the
configuration of one :class:`~safeguard.pii.patterns.PatternDetector`: wanted entities,
context words, label regexes and deny-list terms.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from safeguard.pii.recognizers.lexicon import CITY_STOP
from safeguard.pii.types import Candidate

__all__ = ["PatternRule", "Scope", "city_span", "trim", "whole_word_regex"]


@dataclass(frozen=True)
class Scope:
    """The configuration a rule reads: wanted entities, context and label regexes, deny terms.

    Attributes:
        entities: Entity types to report.
        window: Characters before a candidate searched for context words.
        context: Per entity, a whole-word regex of its context words (or ``None``).
        labelled: ``(entity, label + value regex)`` pairs for label-introduced identifiers.
        deny: ``(entity, whole-word regex)`` pairs of deny-list terms.
    """

    entities: frozenset[str]
    window: int
    context: Mapping[str, re.Pattern[str] | None]
    labelled: Sequence[tuple[str, re.Pattern[str]]] = ()
    deny: Sequence[tuple[str, re.Pattern[str]]] = ()

    def has_context(self, text: str, start: int, entity: str) -> bool:
        """Whether a context word of ``entity`` ends within ``window`` characters before ``start``."""
        rx = self.context.get(entity)
        if rx is None:
            return False
        return bool(rx.search(text, max(0, start - self.window), start))

    def wants(self, *entities: str) -> bool:
        """Whether any of ``entities`` is reported."""
        return any(e in self.entities for e in entities)


@dataclass(frozen=True)
class PatternRule:
    """One pattern rule: its name, the entities it can report (empty: any) and its function."""

    name: str
    entities: tuple[str, ...]
    detect: Callable[[str, Scope], Iterator[Candidate]]


def whole_word_regex(words: Iterable[str]) -> re.Pattern[str] | None:
    """A case-insensitive regex matching any of ``words`` as whole words (None if empty).

    >>> bool(whole_word_regex(["lic"]).search("public"))
    False
    >>> bool(whole_word_regex(["lic"]).search("lic #A123"))
    True
    """
    alts = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    if not alts:
        return None
    body = "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in alts)
    return re.compile(r"(?<![A-Za-z0-9])(?:" + body + r")(?![A-Za-z0-9])", re.IGNORECASE)


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without surrounding spaces, punctuation, brackets and quotes."""
    while end > start and text[end - 1] in " \t\n.,;:!?)]}'\"":
        end -= 1
    while start < end and text[start] in " \t\n([{'\"":
        start += 1
    return start, end


def city_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without leading stop words ("Lives in"); None if nothing is left."""
    words = list(re.finditer(r"\S+", text[start:end]))
    while words and words[0].group().rstrip(".,") in CITY_STOP:
        words.pop(0)
    if not words:
        return None
    return start + words[0].start(), start + words[-1].end()
