"""Cities from a gazetteer: GeoNames cities of at least 15,000 people (``data/cities.txt``).

A run of one to four capitalised (or all-capital) words that is a listed city is a
LOCATION. Guards: a one-word city that is a common English or clinical word (``Mobile``,
``Reading``, ``Normal``) or a drug name never counts; one that is also a given name
(``Florence``, ``Austin``) counts only after a place preposition (``in``, ``from``, ``to``,
``near``, ``at``) or before a comma and a capitalised word ("Austin, TX"). US states and
countries are not in the list's scope (Safe Harbor allows them).

Pure Python; ``source="lexicon"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.patterns import Candidate
from safeguard.pii.recognizers._words import WORD, is_common, is_drug, shape
from safeguard.pii.recognizers.wordlists import word_list

__all__ = ["city_candidates"]

CITY_SCORE = 0.5
_PREP = re.compile(r"(?i)\b(?:in|from|to|near|at|of|outside|around|visiting|lives|live|moved)[ \t]+$")
_COMMA_PLACE = re.compile(r",[ \t]*[A-Z]")
_JOIN = re.compile(r"[ \t]+|[ \t]*-[ \t]*|\.[ \t]+")


def city_candidates(text: str) -> Iterator[Candidate]:
    """LOCATION candidates for listed cities (longest match first).

    >>> [t[c.start:c.end] for t in ["Moved from Sun City to Tucson."] for c in city_candidates(t)]
    ['Sun City', 'Tucson']
    """
    cities = word_list("cities")
    words = [
        (m.start(), m.end(), m.group())
        for m in WORD.finditer(text)
    ]
    n = len(words)
    i = 0
    while i < n:
        s, e, w = words[i]
        if shape(w) not in ("title", "upper"):
            i += 1
            continue
        best = None
        for k in range(min(n, i + 4) - 1, i - 1, -1):
            seg_end = words[k][1]
            phrase = text[s:seg_end]
            if "\n" in phrase or any(shape(x[2]) not in ("title", "upper", "lower") for x in words[i : k + 1]):
                continue
            if k > i and not all(_JOIN.fullmatch(text[words[j][1] : words[j + 1][0]]) for j in range(i, k)):
                continue
            if phrase.lower() in cities:
                best = (k, seg_end)
                break
        if best is None:
            i += 1
            continue
        k, end = best
        if shape(words[k][2]) == "lower":  # "Sun city": last word must be capitalised too
            i += 1
            continue
        if k == i and not _single_ok(text, s, end, w):
            i += 1
            continue
        yield Candidate(s, end, "LOCATION", CITY_SCORE, "lexicon", "city")
        i = k + 1


def _single_ok(text: str, start: int, end: int, word: str) -> bool:
    if is_common(word) or is_drug(word) or len(word) < 3:
        return False
    if word.lower() in word_list("given_names") or word.lower() in word_list("surnames"):
        return bool(_PREP.search(text, max(0, start - 16), start)) or bool(
            _COMMA_PLACE.match(text, end)
        )
    return True


#: Facility words that end a facility name ("Mass General", "Trumpington Street Surgery");
#: "Health", "Medical" and "Center" only do so inside the patterns' longer shapes.
_NOT_FINAL = frozenset({"health", "healthcare", "medical", "nursing", "center", "centre"})


def facility_candidates(text: str) -> Iterator[Candidate]:
    """LOCATION candidates for named health-care facilities.

    >>> [t[c.start:c.end] for t in ["INR at Mass General lab; GP at Bruntsfield Medical Practice"]
    ...  for c in facility_candidates(t)]
    ['Mass General', 'Bruntsfield Medical Practice']
    """
    facility = word_list("facility_words")
    words = [(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]
    for k, (s, e, w) in enumerate(words):
        lw = w.lower()
        if lw not in facility or lw in _NOT_FINAL or shape(w) not in ("title", "upper"):
            continue
        i = k
        while i > 0 and k - i < 3:
            ps, pe, pw = words[i - 1]
            if shape(pw) not in ("title", "upper") or text[pe : words[i][0]] not in (" ", "\t"):
                break
            if is_common(pw) and pw.lower() not in facility:
                break
            i -= 1
        if i == k or words[i][2].lower() in facility:
            continue
        yield Candidate(words[i][0], e, "LOCATION", CITY_SCORE, "lexicon", "facility")
