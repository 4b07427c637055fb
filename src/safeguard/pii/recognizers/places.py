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

import functools
import re
from collections.abc import Iterator

from safeguard.pii.recognizers._words import LETTER, WORD, is_common, is_drug, shape, tokens
from safeguard.pii.recognizers.wordlists import word_list
from safeguard.pii.types import Candidate

__all__ = [
    "city_candidates",
    "country_postcode_candidates",
    "facility_candidates",
    "named_street_candidates",
    "place_after_cue_candidates",
    "street_candidates",
]

CITY_SCORE = 0.5
_PREP = re.compile(
    r"(?i)\b(?:in|from|to|near|at|of|outside|around|visiting|lives|live|moved)[ \t]+$"
)
_COMMA_PLACE = re.compile(r",[ \t]*[A-Z]")
_JOIN = re.compile(r"[ \t]+|[ \t]*-[ \t]*|\.[ \t]+")


def city_candidates(text: str) -> Iterator[Candidate]:
    """LOCATION candidates for listed cities (longest match first).

    >>> [t[c.start:c.end] for t in ["Moved from Sun City to Tucson."] for c in city_candidates(t)]
    ['Sun City', 'Tucson']
    """
    cities = word_list("cities")
    firsts = _first_words()
    words = tokens(text)
    n = len(words)
    i = 0
    while i < n:
        s, _, w, kind = words[i]
        if kind not in ("title", "upper") or w.lower() not in firsts:
            i += 1
            continue
        best = None
        for k in range(min(n, i + 4) - 1, i - 1, -1):
            seg_end = words[k][1]
            phrase = text[s:seg_end]
            if "\n" in phrase or any(x[3] == "other" for x in words[i : k + 1]):
                continue
            if k > i and not all(
                _JOIN.fullmatch(text[words[j][1] : words[j + 1][0]]) for j in range(i, k)
            ):
                continue
            if phrase.lower() in cities:
                best = (k, seg_end)
                break
        if best is None:
            i += 1
            continue
        k, end = best
        if words[k][3] == "lower":  # "Sun city": last word must be capitalised too
            i += 1
            continue
        if k == i and not _single_ok(text, s, end, w):
            i += 1
            continue
        yield Candidate(s, end, "LOCATION", CITY_SCORE, "lexicon", "city")
        i = k + 1


@functools.cache
def _first_words() -> frozenset[str]:
    return frozenset(c.split()[0].split("-")[0] for c in word_list("cities") if c.split())


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
    words = tokens(text)
    for k, (_, e, w, _) in enumerate(words):
        lw = w.lower()
        if lw not in facility or lw in _NOT_FINAL or shape(w) not in ("title", "upper"):
            continue
        i = k
        while i > 0 and k - i < 3:
            _, pe, pw, pshape = words[i - 1]
            if pshape not in ("title", "upper") or text[pe : words[i][0]] not in (" ", "\t"):
                break
            if is_common(pw) and pw.lower() not in facility:
                break
            i -= 1
        if i == k or words[i][2].lower() in facility:
            continue
        yield Candidate(words[i][0], e, "LOCATION", CITY_SCORE, "lexicon", "facility")


_CAP = rf"[A-ZÀ-ÖØ-ÞĀ-ŽΆ-ΏΑ-ΩЀ-Я][{LETTER}'’.-]*"
_PARTICLE = r"(?:de|do|da|dos|das|del|della|di|du|la|le|van|von|der|den|ul\.|u\.|al|el)"
_NUM = r"\d{1,5}[A-Za-z]?"
#: House number, street name, number: "393 Norra Bäckebo 73", "5142 Rua Katumi Kida 435".
_NUM_WORDS_NUM = re.compile(
    rf"(?:(?<=\\n)|(?<![\w.,/:-])){_NUM}[ \t]+(?:(?:{_CAP}|{_PARTICLE})[ \t]+){{1,5}}{_NUM}(?![\w/:-]|[.,]\d)"
)
#: A street-name word ending in a street morpheme, then a number: "Frørupvej 65", "Motzstr. 49".
_MORPHEME = (
    r"(?i:vej|gade|gata|gatan|vägen|veien|vegen|straat|laan|weg|gracht|kade|plein|utca|útja|út"
    r"|tie|katu|braut|gasse|ring|damm|strasse|straße|str\.|ulica|caddesi|sokak|odos|street|road)"
)
_MORPHEME_NUM = re.compile(
    rf"(?<![\w-])(?:{_CAP}[ \t]+){{0,2}}{_CAP[:-1]}*?{_MORPHEME}[ \t]+{_NUM}(?![\w/:-]|[.,]\d)"
)
#: US military mail: "Unit 4035 Box 0348", "PSC 2059, Box 1024", then "APO AE 09012".
_MILITARY = re.compile(
    r"\b(?:(?:Unit|PSC|CMR)[ \t]+\d{1,5},?[ \t]+Box[ \t]+\d{1,5}(?:\s*\\n\s*|\s+)?)?"
    r"(?:(?:APO|FPO|DPO)[ \t]+(?:AA|AE|AP)[ \t]+\d{5})?"
)


def street_candidates(text: str) -> Iterator[Candidate]:
    """STREET_ADDRESS candidates in international shapes the patterns do not cover.

    >>> [t[c.start:c.end] for t in ["at 393 Norra Bäckebo 73 and Frørupvej 65"]
    ...  for c in street_candidates(t)]
    ['393 Norra Bäckebo 73', 'Frørupvej 65']
    """
    if not any(ch.isdigit() for ch in text):
        return
    for m in _NUM_WORDS_NUM.finditer(text):
        words = WORD.findall(m.group())
        if any(is_common(w) or is_drug(w) for w in words if w[0].isupper()):
            continue
        yield Candidate(
            m.start(), m.end(), "STREET_ADDRESS", 0.5, "lexicon", "street:number-name-number"
        )
    for m in _MORPHEME_NUM.finditer(text):
        s = m.start()
        while s < m.end() and not text[s].isalpha():
            s += 1
        yield Candidate(s, m.end(), "STREET_ADDRESS", 0.5, "lexicon", "street:name-number")
    for m in _MILITARY.finditer(text):
        if m.end() - m.start() > 8:
            yield Candidate(m.start(), m.end(), "STREET_ADDRESS", 0.6, "pattern", "street:military")


#: Words after which a capitalised phrase is a place: "grew up in Parau", "lives in OFFERDAL".
_PLACE_CUE = re.compile(
    r"(?i)\b(?:grew\s+up|was\s+raised|raised|born|lives?|living|resides?|residing|moved|relocated"
    r"|originally|visiting|arrived|located|based|staying|stays|travell?ed|returned|i'?m|we'?re|is)"
    r"\s+(?:back\s+)?(?:in|from|to|at|near)\s+$"
)
_PLACE_WORD = rf"(?:{_CAP})"
_PLACE_RUN = re.compile(
    rf"{_PLACE_WORD}(?:[ \t]+(?:{_PARTICLE}|nad|pri|pod|na|sur|am|an|im|upon|on)?[ \t]*{_PLACE_WORD}){{0,3}}"
)


def place_after_cue_candidates(text: str) -> Iterator[Candidate]:
    """LOCATION candidates for capitalised phrases right after a residence or travel cue.

    >>> [t[c.start:c.end] for t in ["He grew up in Videm pri Ptuju."] for c in place_after_cue_candidates(t)]
    ['Videm pri Ptuju']
    """
    not_places = word_list("countries")
    for m in _PLACE_RUN.finditer(text):
        s = m.start()
        if not _PLACE_CUE.search(text, max(0, s - 30), s):
            continue
        words = WORD.findall(m.group())
        if not words or all(is_common(w) for w in words) or is_common(words[0]):
            continue
        if m.group().lower() in not_places or is_drug(words[0]):
            continue
        e = m.end()
        while e > s and text[e - 1] in ".'’-":
            e -= 1
        yield Candidate(s, e, "LOCATION", 0.45, "lexicon", "place-after-cue")


#: A named street without a house number: "on Inessa Mountain Street", "Elm Rd."
_NAMED_STREET = re.compile(
    rf"(?<![\w-])(?P<v>(?:{_CAP}[ \t]+){{1,3}}(?:Street|Road|Avenue|Lane|Drive|Boulevard|Terrace"
    r"|Crescent|Place|Court|Way|St\.|Rd\.|Ave\.|Blvd\.|Ln\.|Dr\.(?=\s+[a-z])))(?![\w-])"
)


def named_street_candidates(text: str) -> Iterator[Candidate]:
    """STREET_ADDRESS candidates for a capitalised street name with a street word, no number.

    >>> [t[c.start:c.end] for t in ["shows on Inessa Mountain Street were"] for c in named_street_candidates(t)]
    ['Inessa Mountain Street']
    """
    for m in _NAMED_STREET.finditer(text):
        words = WORD.findall(m.group("v"))
        s = m.start("v")
        # drop leading common words ("The Main Street" -> "Main Street")
        while words and is_common(words[0]) and len(words) > 2:
            s = text.index(words[1], s + len(words[0]))
            words.pop(0)
        if len(words) < 2 or is_common(words[0]) or is_drug(words[0]):
            continue
        yield Candidate(s, m.end("v"), "STREET_ADDRESS", 0.45, "lexicon", "street:named")


_COUNTRY_POSTCODE = re.compile(
    rf"(?P<c>{_CAP}(?:[ \t]+{_CAP}){{0,2}}(?:[ \t]+\([^)\n]{{1,20}}\))?)[ \t]+(?P<v>\d{{4,6}}|\d{{2}}-\d{{3}}|\d{{3}}[ ]\d{{2}})(?![\w-])"
)


def country_postcode_candidates(text: str) -> Iterator[Candidate]:
    """ZIP_CODE candidates for a postcode after a country name ("Cyprus 96183").

    >>> [t[c.start:c.end] for t in ["Larnaka\\nCyprus (Greek) 96183"] for c in country_postcode_candidates(t)]
    ['96183']
    """
    countries = word_list("countries")
    for m in _COUNTRY_POSTCODE.finditer(text):
        name = re.sub(r"\s*\(.*\)$", "", m.group("c")).lower()
        words = name.split()
        if any(" ".join(words[i:]) in countries for i in range(len(words))):
            yield Candidate(*m.span("v"), "ZIP_CODE", 0.6, "pattern", "postcode-after-country")
