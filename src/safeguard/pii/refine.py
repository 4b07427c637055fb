"""Recall-first refinements of NER output and of resolved findings (pure Python).

Stages, each a small function with its own tests, run by :func:`safeguard.pii.resolve.resolve`
when a policy is recall-first:

1. :func:`split_at_line_breaks`: an NER span never runs across a line break (a real one, or
   the two characters ``\\n`` of escaped text); each line's piece is judged on its own, so
   "John Smith\\n12 Elm St" keeps "John Smith" instead of losing the whole span.
2. :func:`trim_person_digits`: a PERSON span loses the tokens that hold digits at its ends
   ("Anna Berg 4" -> "Anna Berg") instead of being dropped.
3. :func:`remap_entity`: spaCy's small model tags many names as ORG, NORP or PRODUCT
   ("Sophie Martin", "Lucas Brown"); a name-shaped hit becomes PERSON and a facility-shaped
   one ("Mass General", "Lowell General Hospital") LOCATION; the rest are dropped as before.
4. :func:`drug_guard`: a name or place proposed by NER or a word list is dropped when it is
   a drug name ("Tylenol") or is followed by a dose ("Lasix 10 mg").
5. :func:`absorb_address_parts`: a street address or place absorbs the house number and
   postcode next to it ("75008 Paris", "Kungsgatan 12", "Paris 75008").
6. :func:`extend_address_block`: a street address takes in the rest of its address: the
   town after a comma on its line ("..., Petosino"), and the short lines that follow it in
   an address block ("Apt. 322", "LARNAKA", "Cyprus 96183").
"""

from __future__ import annotations

import re

from safeguard.pii.recognizers._words import WORD, dose_follows, is_common, is_drug, shape
from safeguard.pii.recognizers.wordlists import word_list
from safeguard.pii.types import Candidate

__all__ = [
    "REMAPPED_NER_ENTITIES",
    "absorb_address_parts",
    "drug_guard",
    "extend_address_block",
    "remap_entity",
    "split_at_line_breaks",
    "trim_person_digits",
    "unescape_line_breaks",
]

#: NER labels that stock Presidio throws away and a recall-first policy re-examines.
REMAPPED_NER_ENTITIES: tuple[str, ...] = ("ORGANIZATION", "NRP", "PRODUCT")


def unescape_line_breaks(text: str) -> str:
    """``text`` with escaped line breaks (the two characters ``\\n``) as a blank and a real one.

    The length is unchanged, so offsets found in the result are offsets in ``text``; NER and
    the recognizers then see the lines of JSON-escaped text as lines.

    >>> unescape_line_breaks("Ann Lee\\\\nPhone: 555")
    'Ann Lee \\nPhone: 555'
    """
    if "\\" not in text:
        return text
    return text.replace("\\r\\n", "  \n ").replace("\\n", " \n").replace("\\t", "  ")


_BREAK = re.compile(r"\r\n|\r|\n|\\n|\\r\\n")
_PARTICLES = frozenset({"de", "da", "di", "del", "della", "van", "von", "der", "den", "la", "le",
                        "du", "dos", "das", "bin", "al", "el", "ibn", "ter", "st"})  # fmt: skip


def split_at_line_breaks(text: str, cand: Candidate) -> list[Candidate]:
    """The pieces of ``cand`` between line breaks (the candidate itself if it has none).

    >>> t = "Ann Lee\\\\n12 Elm St"
    >>> [t[c.start:c.end] for c in split_at_line_breaks(t, Candidate(0, len(t), "PERSON", .5, "ner"))]
    ['Ann Lee', '12 Elm St']
    """
    span = text[cand.start : cand.end]
    if "\n" not in span and "\r" not in span and "\\" not in span:
        return [cand]
    out: list[Candidate] = []
    pos = cand.start
    for m in _BREAK.finditer(span):
        a, b = pos, cand.start + m.start()
        if b > a:
            out.append(Candidate(a, b, cand.entity, cand.score, cand.source, cand.recognizer))
        pos = cand.start + m.end()
    if cand.end > pos:
        out.append(Candidate(pos, cand.end, cand.entity, cand.score, cand.source, cand.recognizer))
    return [c for c in out if any(ch.isalnum() for ch in text[c.start : c.end])]


def trim_person_digits(text: str, cand: Candidate) -> list[Candidate]:
    """A PERSON span cut around its tokens that hold digits (other entities unchanged).

    >>> t = "Anna Berg 4 Elm"
    >>> [t[c.start:c.end] for c in trim_person_digits(t, Candidate(0, 11, "PERSON", .5, "ner"))]
    ['Anna Berg']
    """
    if cand.entity != "PERSON" or not any(ch.isdigit() for ch in text[cand.start : cand.end]):
        return [cand]
    out: list[Candidate] = []
    run_start = run_end = None
    for m in re.finditer(r"\S+", text[cand.start : cand.end]):
        s, e = cand.start + m.start(), cand.start + m.end()
        if any(ch.isdigit() for ch in m.group()):
            if run_start is not None:
                out.append(
                    Candidate(
                        run_start, run_end, cand.entity, cand.score, cand.source, cand.recognizer
                    )
                )  # type: ignore[arg-type]
            run_start = run_end = None
            continue
        run_start = s if run_start is None else run_start
        run_end = e
    if run_start is not None:
        out.append(
            Candidate(run_start, run_end, cand.entity, cand.score, cand.source, cand.recognizer)
        )  # type: ignore[arg-type]
    return out


def _words(text: str, start: int, end: int) -> list[str]:
    return [m.group() for m in WORD.finditer(text, start, end)]


def name_shaped(words: list[str]) -> bool:
    """Up to four capitalised words, one of them a listed given name or surname, none an
    organisation, facility or drug word, not all common words.

    >>> name_shaped(["Sophie", "Martin"]), name_shaped(["Acme", "Inc"]), name_shaped(["Tylenol"])
    (True, False, False)
    """
    core = [w for w in words if w.lower() not in _PARTICLES]
    if not core or len(core) > 4:
        return False
    if any(shape(w) not in ("title", "upper") for w in core):
        return False
    lowered = [w.lower() for w in core]
    if any(w in word_list("org_words") or w in word_list("facility_words") for w in lowered):
        return False
    if (
        any(is_drug(w) for w in core)
        or any(is_common(w) for w in core[:1])
        or all(is_common(w) for w in core)
    ):
        return False
    given, surnames = word_list("given_names"), word_list("surnames")
    if len(core) == 1:
        return lowered[0] in given
    return lowered[0] in given or all(w in given or w in surnames for w in lowered)


def facility_shaped(words: list[str]) -> bool:
    """Capitalised words with a health-care facility word and something before it.

    >>> facility_shaped(["Mass", "General"]), facility_shaped(["General"])
    (True, False)
    """
    if len(words) < 2 or any(shape(w) not in ("title", "upper") for w in words):
        return False
    facility = word_list("facility_words")
    return any(w.lower() in facility for w in words[1:]) and words[0].lower() not in facility


def remap_entity(text: str, cand: Candidate) -> Candidate | None:
    """An ORG/NORP/PRODUCT NER hit as LOCATION (facility), PERSON (name-shaped) or None.

    >>> t = "met Lucas Brown at Mass General"
    >>> remap_entity(t, Candidate(4, 15, "ORGANIZATION", .55, "ner")).entity
    'PERSON'
    >>> remap_entity(t, Candidate(19, 31, "ORGANIZATION", .55, "ner")).entity
    'LOCATION'
    """
    if cand.entity not in REMAPPED_NER_ENTITIES:
        return cand
    words = _words(text, cand.start, cand.end)
    if cand.entity == "ORGANIZATION" and facility_shaped(words):
        entity = "LOCATION"
    elif name_shaped(words):
        entity = "PERSON"
    else:
        return None
    return Candidate(
        cand.start,
        cand.end,
        entity,
        cand.score,
        cand.source,
        f"{cand.recognizer}:{cand.entity.lower()}",
    )


def drug_guard(text: str, cand: Candidate) -> Candidate | None:
    """A NER or word-list PERSON/LOCATION without its drug names, or None if nothing is left.

    Drug words (and a dose after them) are cut off the ends of the span; what remains is
    dropped when it is a lone word that no name list holds ("Takes Plavix" -> "Takes"), and
    so is an all-capital abbreviation of two or three letters ("PO", "IV"). Patterns pass.

    >>> t = "Lasix 10 mg; Takes Plavix; Maria Rayos; PO"
    >>> def guard(phrase):
    ...     c = drug_guard(t, Candidate(t.index(phrase), t.index(phrase) + len(phrase), "PERSON", .5, "ner"))
    ...     return c and t[c.start:c.end]
    >>> [guard(p) for p in ("Lasix", "Takes Plavix", "Maria Rayos", "PO")]
    [None, None, 'Maria Rayos', None]
    """
    if cand.entity not in ("PERSON", "LOCATION") or cand.source not in ("ner", "lexicon"):
        return cand
    spans = [(m.start(), m.end(), m.group()) for m in WORD.finditer(text, cand.start, cand.end)]
    if not spans:
        return cand
    if len(spans) == 1 and 2 <= len(spans[0][2]) <= 3 and spans[0][2].isupper():
        return None
    given = word_list("given_names")
    trimmed = False
    while (
        spans
        and is_drug(spans[0][2])
        and (len(spans) == 1 or dose_follows(text, spans[0][1]) or spans[0][2].lower() not in given)
    ):
        spans.pop(0)
        trimmed = True
    while len(spans) > 1 and is_drug(spans[-1][2]) and spans[-2][2].lower() not in given:
        spans.pop()
        trimmed = True
    if not spans:
        return None
    if trimmed and len(spans) == 1 and not _listed(spans[0][2]):
        return None
    if dose_follows(text, spans[-1][1]) and is_drug(spans[-1][2]):
        return None
    s, e = spans[0][0], spans[-1][1]
    if (s, e) == (cand.start, cand.end):
        return cand
    return Candidate(s, e, cand.entity, cand.score, cand.source, cand.recognizer)


def _listed(word: str) -> bool:
    w = word.lower()
    return w in word_list("given_names") or w in word_list("cities")


_HOUSE_BEFORE = re.compile(
    r"(?:(?<=\\n)|(?<![\w.,/-]))(\d{1,5}[A-Za-z]?|\d{3}[ ]\d{2}|\d{4,6})[ \t]*,?[ \t]+$"
)
_NUMBER_AFTER = re.compile(r",?[ \t]+(\d{1,5}[A-Za-z]?|\d{3}[ ]\d{2})(?![\w.,:/-]|[.,]\d)")
_YEAR = re.compile(r"(?:19|20)\d{2}")
_UNIT_AFTER = re.compile(
    r"[ \t]*(?:mg|mcg|ml|kg|g|units?|%|mm|cm|years?|yrs?|y/?o|days?|weeks?|months?|hours?|h|am|pm)\b",
    re.IGNORECASE,
)


def absorb_address_parts(text: str, findings: list[Candidate]) -> list[Candidate]:
    """Extend STREET_ADDRESS / LOCATION findings over an adjacent house number or postcode.

    >>> t = "lives at 75008 Paris"
    >>> [t[c.start:c.end] for c in absorb_address_parts(t, [Candidate(15, 20, "LOCATION", .5, "ner")])]
    ['75008 Paris']
    """
    out: list[Candidate] = []
    taken = [(f.start, f.end) for f in findings]

    def free(a: int, b: int) -> bool:
        return not any(s < b and a < e for s, e in taken)

    for f in findings:
        s, e = f.start, f.end
        if f.entity in ("STREET_ADDRESS", "LOCATION") and "\n" not in text[max(0, s - 12) : s]:
            m = _HOUSE_BEFORE.search(text, max(0, s - 12), s)
            if (
                m
                and free(m.start(1), s - 1)
                and not text[max(0, m.start(1) - 1) : m.start(1)].isdigit()
            ):
                s = m.start(1)
        if f.entity in ("STREET_ADDRESS", "LOCATION"):
            m = _NUMBER_AFTER.match(text, e)
            if (
                m
                and "\n" not in m.group()
                and free(e + 1, m.end(1))
                and not _UNIT_AFTER.match(text, m.end(1))
                and not _YEAR.fullmatch(m.group(1))
            ):
                e = m.end(1)
        out.append(
            f
            if (s, e) == (f.start, f.end)
            else Candidate(s, e, f.entity, f.score, f.source, f.recognizer)
        )
    return out


_LINE_BREAK = r"(?:\r?\n|\\n)"
_ADDR_TOKEN = r"(?:[A-ZÀ-ÖØ-ÞĀ-ŽΆ-ΏΑ-ΩЀ-Я∆][\w'’.-]*|\d{1,6}(?:-\d{3,4})?[A-Za-z]?|nan|#\d+)"
_SAME_LINE = re.compile(rf"(?:,?[ \t]+{_ADDR_TOKEN}){{1,6}}")
_NEXT_LINE = re.compile(
    rf"(?:[ \t]*{_LINE_BREAK}){{1,2}}[^\w\n\\]{{0,6}}[ \t]*,?[ \t]*{_ADDR_TOKEN}(?:,?[ \t]+{_ADDR_TOKEN}){{0,5}}[ \t]*(?=\r?\n|\\n|$)"
)


def extend_address_block(text: str, findings: list[Candidate]) -> list[Candidate]:
    """Extend each STREET_ADDRESS over its town (same line) and up to four address lines.

    The extension covers unlabelled text only: it stops where the next finding starts.

    >>> t = "sent to 12 Elm Road, Petosino\\n Apt. 4\\n LARNAKA\\n\\nThanks"
    >>> [t[c.start:c.end] for c in extend_address_block(t, [Candidate(8, 19, "STREET_ADDRESS", .8)])]
    ['12 Elm Road, Petosino\\n Apt. 4\\n LARNAKA']
    """
    out: list[Candidate] = []
    for idx, f in enumerate(findings):
        if f.entity != "STREET_ADDRESS":
            out.append(f)
            continue
        end = f.end
        m = _SAME_LINE.match(text, end)
        if m:
            end = m.end()
        for _ in range(4):
            m = _NEXT_LINE.match(text, end)
            if not m or ":" in m.group():
                break
            breaks = len(re.findall(_LINE_BREAK, m.group()))
            if breaks > 1 and not any(ch.isdigit() for ch in m.group()):
                break  # past a blank line only a postcode line still belongs to the address
            end = m.end()
        for later in findings[idx + 1 :]:
            if later.start < end:  # never swallow another finding: stop before it
                end = later.start
            break
        while end > f.end and not text[end - 1].isalnum():
            end -= 1
        out.append(
            f
            if end == f.end
            else Candidate(f.start, end, f.entity, f.score, f.source, f.recognizer)
        )
    return out
