"""Shared word tests for the lexicon recognizers (pure Python)."""

from __future__ import annotations

import functools
import re

from safeguard.pii.recognizers.wordlists import word_list

#: A word: letters (accented too), inner apostrophes and hyphens.
WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿĀ-ž](?:[A-Za-zÀ-ÖØ-öø-ÿĀ-ž]|['’-](?=[A-Za-zÀ-ÖØ-öø-ÿĀ-ž]))*")

_DOSE = re.compile(
    r"[ \t]*\(?\d+(?:[.,]\d+)?[ \t]*(?:mg|mcg|µg|ug|g|ml|mL|units?|iu|IU|%|tabs?|caps?|puffs?|meq|mEq)\b"
)


@functools.cache
def _blocked() -> frozenset[str]:
    from safeguard.pii.patterns import NAME_STOPWORDS, NER_PERSON_STOPWORDS

    return (
        word_list("common_words")
        | word_list("stop_words")
        | {w.lower() for w in NAME_STOPWORDS | NER_PERSON_STOPWORDS}
    )


def is_common(word: str) -> bool:
    """An English, clinical or label word that a word list alone never makes PHI."""
    return word.lower().strip(".'’") in _blocked()


def is_drug(word: str) -> bool:
    """A drug or brand name from the shipped drug list (``Tylenol``, ``lasix``)."""
    return word.lower() in word_list("drugs")


def dose_follows(text: str, end: int) -> bool:
    """Whether a dose ("10 mg", "(5 mL)") follows ``text[:end]``: the word before is a drug."""
    return bool(_DOSE.match(text, end))


def shape(word: str) -> str:
    """``title`` (Anna, O'Neil, McAllister), ``upper`` (ANNA), ``lower`` (anna) or ``other``."""
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return "other"
    if all(c.isupper() for c in letters):
        return "upper" if len(letters) > 1 else "title"
    if letters[0].isupper():
        return "title"
    if all(c.islower() for c in letters):
        return "lower"
    return "other"
