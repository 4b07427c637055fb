"""Shared word tests for the lexicon recognizers (pure Python)."""

from __future__ import annotations

import functools
import re

from safeguard.pii.recognizers.lexicon import NAME_STOPWORDS, NER_PERSON_STOPWORDS
from safeguard.pii.recognizers.wordlists import word_list

#: A word: letters (accented, Greek, Cyrillic too), inner apostrophes and hyphens; never
#: starting right after a backslash ("\\nDonna" in escaped text is "Donna").
LETTER = "A-Za-zÀ-ÖØ-öø-ÿĀ-žΆ-ώЀ-ӿ"
WORD = re.compile(rf"(?<!\\)[{LETTER}](?:[{LETTER}]|['’-](?=[{LETTER}]))*")

_DOSE = re.compile(
    r"[ \t]*\(?\d+(?:[.,]\d+)?[ \t]*(?:mg|mcg|µg|ug|g|ml|mL|units?|iu|IU|%|tabs?|caps?|puffs?|meq|mEq)\b"
)


@functools.cache
def _blocked() -> frozenset[str]:
    return (
        word_list("common_words")
        | word_list("stop_words")
        | {w.lower() for w in NAME_STOPWORDS | NER_PERSON_STOPWORDS}
    )


def is_common(word: str) -> bool:
    """An English, clinical or label word that a word list alone never makes PHI."""
    return word.lower().strip(".'’") in _blocked()


@functools.cache
def _hard_blocked() -> frozenset[str]:
    return word_list("stop_words") | {w.lower() for w in NAME_STOPWORDS | NER_PERSON_STOPWORDS}


def is_surname_after_given(word: str) -> bool:
    """A common word that still ends a name after a given name ("Lucas Brown", "Ann King")."""
    w = word.lower()
    return w in word_list("surnames") and w not in _hard_blocked()


def is_drug(word: str) -> bool:
    """A drug or brand name from the shipped drug list (``Tylenol``, ``lasix``)."""
    return word.lower() in word_list("drugs")


def dose_follows(text: str, end: int) -> bool:
    """Whether a dose ("10 mg", "(5 mL)") follows ``text[:end]``: the word before is a drug."""
    return bool(_DOSE.match(text, end))


def shape(word: str) -> str:
    """``title`` (Anna, O'Neil, McAllister), ``upper`` (ANNA), ``lower`` (anna) or ``other``.

    >>> [shape(w) for w in ("Anna", "ANNA", "anna", "A", "aNNA")]
    ['title', 'upper', 'lower', 'title', 'other']
    """
    if word.isupper():
        return "upper" if sum(c.isalpha() for c in word) > 1 else "title"
    if word[:1].isupper():
        return "title"
    if word.islower():
        return "lower"
    return "other"


@functools.lru_cache(maxsize=16)
def tokens(text: str) -> tuple[tuple[int, int, str, str], ...]:
    """``(start, end, word, shape)`` of every word in ``text`` (cached: recognizers share it)."""
    return tuple((m.start(), m.end(), m.group(), shape(m.group())) for m in WORD.finditer(text))
