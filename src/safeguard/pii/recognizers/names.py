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

import functools
import itertools
import re
from collections.abc import Iterator

from safeguard.pii.recognizers._words import (
    dose_follows,
    is_common,
    is_drug,
    is_surname_after_given,
    shape,
    tokens,
)
from safeguard.pii.recognizers.lexicon import STREET_SUFFIXES
from safeguard.pii.recognizers.wordlists import word_list
from safeguard.pii.types import Candidate

__all__ = [
    "age_after_name_candidates",
    "given_name_candidates",
    "name_after_cue_candidates",
    "name_before_verb_candidates",
    "surname_pair_candidates",
]

PAIR_SCORE = 0.6
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
    words = [(s, e, w) for s, e, w, _ in tokens(text)]
    n = len(words)
    i = 0
    while i < n:
        s, e, w = words[i]
        kind = shape(w)
        if kind == "other" or not _is_given(w) or not _ok_name_word(w) or dose_follows(text, e):
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
            if shape(nw) != kind or dose_follows(text, ne):
                break
            if not _ok_name_word(nw) and not (
                len(nw) > 1 and not is_drug(nw) and is_surname_after_given(nw)
            ):
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
                and not pw.endswith(("'s", "’s"))
            ):
                yield Candidate(ps, e, "PERSON", PAIR_SCORE, "lexicon", "given-name:surname-first")
                i += 1
                continue
        if kind == "title" or (kind == "upper" and len(w) > 2):
            yield Candidate(s, e, "PERSON", SINGLE_SCORE, "lexicon", "given-name:single")
        i += 1


@functools.cache
def _not_surname_context() -> frozenset[str]:
    return (
        frozenset(w.lower() for w in STREET_SUFFIXES)
        | word_list("org_words")
        | word_list("facility_words")
        | word_list("cities")
        | word_list("countries")
    )


def surname_pair_candidates(text: str) -> Iterator[Candidate]:
    """PERSON candidates for a capitalised word followed by a listed surname.

    For given names no list holds ("Thiago Alves", "Edda Greco"): the first word must not be
    a common word, a drug, a place, a street or an organisation word; the second must be a
    US Census surname and none of those either. Both words are capitalised (all-capital pairs are headers more often than names).

    >>> [t[c.start:c.end] for t in ["Thiago Alves\\\\nPrincipal"] for c in surname_pair_candidates(t)]
    ['Thiago Alves']
    """
    words = [(s, e, w) for s, e, w, _ in tokens(text)]
    blocked = _not_surname_context()
    for (s, e, w), (ns, ne, nw) in itertools.pairwise(words):
        kind = shape(w)
        if kind != "title" or shape(nw) != kind or text[e:ns] not in (" ", "\t", "  "):
            continue
        if len(w) < 3 or not _is_surname(nw) or not _ok_name_word(w) or not _ok_name_word(nw):
            continue
        if w.lower() in blocked or nw.lower() in blocked or dose_follows(text, ne):
            continue
        yield Candidate(s, ne, "PERSON", SINGLE_SCORE, "lexicon", "surname-pair")


#: A sentence or line start, a capitalised word, then a verb that takes a person subject.
_NAME_VERB = re.compile(
    r"(?:^|(?<=[\n.!?:])|(?<=\\n))[ \t\"'(]*(?P<v>[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'’-]{2,})[ \t]+(?P<verb>[a-z]+)\b"
)


def name_before_verb_candidates(text: str) -> Iterator[Candidate]:
    """PERSON candidates: a capitalised word opening a sentence or line before a person verb.

    "Henrik lives at ...", "Kovalev began writing ...": the verb comes from
    ``data/person_verbs.txt``; the word must not be a common word, a drug, a place or an
    organisation word.

    >>> [t[c.start:c.end] for t in ["Seen today.\\nHenrik lives alone."] for c in name_before_verb_candidates(t)]
    ['Henrik']
    """
    verbs = word_list("person_verbs")
    blocked = _not_surname_context()
    for m in _NAME_VERB.finditer(text):
        w = m.group("v")
        if m.group("verb") not in verbs or not _ok_name_word(w) or w.lower() in blocked:
            continue
        yield Candidate(*m.span("v"), "PERSON", SINGLE_SCORE, "lexicon", "name-before-verb")


_AGE_IS = re.compile(
    r"\b(?P<who>[A-Z][a-z'’-]+|[Hh]e|[Ss]he|[Pp]atient|[Pp]t)[ \t]+(?:is|was|turned|turns)[ \t]+"
    r"(?P<v>9\d|1[01]\d)(?![\d.,]\d|[ \t]*(?:%|/|mg|kg|lb|bpm|mm|cm|percent|degrees|°))"
)


def age_after_name_candidates(text: str) -> Iterator[Candidate]:
    """AGE_OVER_89 candidates: "Albert is 91", "she turned 100" (not "HR is 92", "Sat was 95%").

    >>> [t[c.start:c.end] for t in ["Albert is 91; HR is 92"] for c in age_after_name_candidates(t)]
    ['91']
    """
    for m in _AGE_IS.finditer(text):
        who = m.group("who")
        if (
            who[0].isupper()
            and who.lower() not in ("he", "she", "patient", "pt")
            and not _ok_name_word(who)
        ):
            continue
        yield Candidate(*m.span("v"), "AGE_OVER_89", 0.6, "pattern", "age-after-name")


_NAME_RUN = re.compile(
    r"(?P<v>[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'’]+(?:-[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'’]+)?"
    r"(?:[ \t]+(?:[A-Z]\.?(?![\w.])|(?:van|von|der|den|de|da|di|del|ten|ter|le|la|bin|al)(?!\w)"
    r"|[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'’]+(?:-[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'’]+)?)){0,4})"
)
_SPEAKER = re.compile(r"(?m)^[ \t]*(?P<v>[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'’-]+):[ \t]*[\"“]")


@functools.cache
def _cue_regex() -> re.Pattern[str]:
    cues = sorted(word_list("name_cues"), key=len, reverse=True)
    body = "|".join(re.escape(c).replace(r"\ ", r"\s+") for c in cues)
    return re.compile(r"(?i)(?<![\w'’])(?:" + body + r")[,:]?[ \t]+$")


def name_after_cue_candidates(text: str) -> Iterator[Candidate]:
    """PERSON candidates after an introduction, letter, credit or speech cue, and speakers.

    Cues come from ``data/name_cues.txt`` ("my name is", "Dear", "directed by", "said"); the
    name is one to five capitalised words (initials and particles inside), cut at the first
    common word. A capitalised word opening a line before a colon and a quote is a speaker.

    >>> t = 'My name is Milorad S Musić but everyone calls me Milorad.\\nDitte: "Who?"'
    >>> [t[c.start:c.end] for c in name_after_cue_candidates(t)]
    ['Milorad S Musić', 'Milorad', 'Ditte']
    """
    cue = _cue_regex()
    for m in _NAME_RUN.finditer(text):
        s = m.start("v")
        if not cue.search(text, max(0, s - 24), s):
            continue
        words = [(w.start(), w.end(), w.group()) for w in re.finditer(r"\S+", m.group("v"))]
        keep = []
        for ws, we, w in words:
            if is_common(w) or is_drug(w.rstrip(".")):
                break
            keep.append((ws, we))
        while keep and len(m.group("v")[keep[-1][0] : keep[-1][1]]) <= 2:
            keep.pop()  # a trailing initial or particle
        if keep:
            yield Candidate(
                s + keep[0][0], s + keep[-1][1], "PERSON", 0.5, "lexicon", "name-after-cue"
            )
    for m in _SPEAKER.finditer(text):
        if _ok_name_word(m.group("v")):
            yield Candidate(*m.span("v"), "PERSON", SINGLE_SCORE, "lexicon", "speaker")
