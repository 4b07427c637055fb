"""Names from given-name lists: a listed given name next to a name-shaped word.

``Sophie Martin``, ``LUCAS BROWN``, ``luis fernandez``, ``Halvorsen, Ingrid``: a word from
the US Census given-name list (``data/given_names.txt``) followed by one or two words of the
same case shape, or preceded by a surname and a comma. Lower-case pairs need both words on
the lists (given name, then surname). A given name alone counts only when capitalised and
not a common English word (``Will``, ``Grace`` and ``May`` never count alone). Drug names
and words followed by a dose are never names (``Lasix 10 mg``).

Pure Python; candidates have ``source="lexicon"`` (ranked with NER, below validated patterns).
"""

from __future__ import annotations

from collections.abc import Iterator

from safeguard.pii.patterns import Candidate
from safeguard.pii.recognizers._words import WORD, dose_follows, is_common, is_drug, shape
from safeguard.pii.recognizers.wordlists import word_list

__all__ = ["given_name_candidates"]

PAIR_SCORE = 0.5
SINGLE_SCORE = 0.4


def _is_given(word: str) -> bool:
    return word.lower() in word_list("given_names")


def _is_surname(word: str) -> bool:
    return word.lower() in word_list("surnames")


def _ok_name_word(word: str) -> bool:
    return not is_common(word) and not is_drug(word)


def given_name_candidates(text: str) -> Iterator[Candidate]:
    """PERSON candidates built around listed given names.

    >>> [text[c.start:c.end] for text in ["Met Sophie Martin today."]
    ...  for c in given_name_candidates(text)]
    ['Sophie Martin']
    """
    words = [(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]
    n = len(words)
    i = 0
    while i < n:
        s, e, w = words[i]
        kind = shape(w)
        if kind == "other" or not _is_given(w) or not _ok_name_word(w) or dose_follows(text, e):
            i += 1
            continue
        # "Surname, Given": the surname before a comma
        if i > 0:
            ps, pe, pw = words[i - 1]
            between = text[pe:s]
            if (
                between.strip() == ","
                and "\n" not in between
                and shape(pw) == kind
                and kind != "lower"
                and _ok_name_word(pw)
            ):
                yield Candidate(ps, e, "PERSON", PAIR_SCORE, "lexicon", "given-name:surname-first")
                i += 1
                continue
        # "Given [I.] Surname [Surname]"
        j = i + 1
        end = e
        taken = 0
        prev = w
        while j < n and taken < 2:
            ns, ne, nw = words[j]
            gap = text[end:ns]
            if not (gap in (" ", "\t") or (gap == ". " and len(prev) == 1)):
                break
            if shape(nw) != kind or not _ok_name_word(nw) or dose_follows(text, ne):
                break
            if len(nw) > 1:
                if (kind == "lower" or taken == 1) and not _is_surname(nw):
                    break
                taken += 1
            end = ne
            prev = nw
            j += 1
        if len(prev) == 1:  # a trailing initial is not part of the name
            end = words[j - 2][1] if j - 2 > i else e
        if end > e:
            yield Candidate(s, end, "PERSON", PAIR_SCORE, "lexicon", "given-name:pair")
            i = j
            continue
        if kind == "title" or (kind == "upper" and len(w) > 2):
            yield Candidate(s, e, "PERSON", SINGLE_SCORE, "lexicon", "given-name:single")
        i += 1
