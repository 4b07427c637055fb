"""From overlapping candidates to one clean set of findings (pure Python).

Steps, in order:

1. Per-entity score thresholds.
2. Filters on NER output that fix stock failures: a ``DATE_TIME`` must carry a month or a
   day (years, durations, ZIP codes and house numbers are not dates); a ``LOCATION`` that is
   a US state or a country is not PHI under Safe Harbor; a ``PERSON`` has no digits.
3. Overlaps: candidates are ranked by (source, score, length) with deny-list terms first,
   then pattern recognizers (validated formats), then NER, and each character goes to the
   highest-ranked candidate covering it. Overlapping spans of the same entity merge into
   their union; a lower-ranked span of another entity disappears when it lies inside a
   higher-ranked one (so an e-mail is never also a URL) and otherwise keeps its remainder
   ("Main Street, Boston" next to a street address keeps "Boston"; an NER remainder must
   pass the filters again, so "MA 02115" minus the ZIP is not a date). No character of a
   kept candidate is left unmasked.
4. Adjacent spans of one entity separated only by blanks merge ("Dave" + "Jones").
5. Allow-list terms are dropped.

With ``recall_first`` (a policy's choice), :mod:`safeguard.pii.refine` adds stages: NER
spans are split at line breaks and PERSON spans trimmed of digit tokens before step 2;
name-shaped ORG/NORP/PRODUCT hits become PERSON and facility-shaped ORG hits LOCATION;
drug names are dropped from NER and word-list names and places; after step 4, addresses
and places absorb their house numbers and postcodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from safeguard.pii import refine
from safeguard.pii.recognizers.lexicon import (
    MONTH_RE as _MONTH_RE,
)
from safeguard.pii.recognizers.lexicon import (
    NAME_STOPWORDS,
    NER_PERSON_STOPWORDS,
    US_STATES,
)
from safeguard.pii.recognizers.safe_harbor.dates import DATE_NUMERIC as _DATE_NUMERIC
from safeguard.pii.recognizers.safe_harbor.dates import DATE_SHORT as _DATE_SHORT
from safeguard.pii.types import Candidate

__all__ = ["ner_candidate_ok", "resolve"]

_SOURCE_RANK = {"deny": 3, "pattern": 2, "ner": 1, "lexicon": 1}
_ORDINAL_DAY = re.compile(r"\b(?:[12]?\d|3[01])(?:st|nd|rd|th)\b")
_NOT_A_PLACE = {s.lower() for s in (*US_STATES, *US_STATES.values())} | {
    "us", "u.s.", "usa", "u.s.a.", "united states", "america", "the united states", "earth",
}  # fmt: skip
_TITLE_PREFIX = re.compile(r"^(?:(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Pt)\.?\s+)+")


def ner_candidate_ok(text: str, cand: Candidate) -> Candidate | None:
    """Clean or reject one NER candidate; returns the (possibly narrowed) candidate or None.

    >>> ner_candidate_ok("MA 02115", Candidate(0, 8, "DATE_TIME", 0.85, "ner")) is None
    True
    >>> ner_candidate_ok("in 2019", Candidate(3, 7, "DATE_TIME", 0.85, "ner")) is None
    True
    >>> ner_candidate_ok("on March 3", Candidate(3, 10, "DATE_TIME", 0.85, "ner")).end
    10
    """
    span = text[cand.start : cand.end]
    s, e = cand.start, cand.end
    if cand.entity == "DATE_TIME":
        if not (
            _MONTH_RE.search(span)
            or _DATE_NUMERIC.search(span)
            or _DATE_SHORT.search(span)
            or _ORDINAL_DAY.search(span)
        ):
            return None
    elif cand.entity == "LOCATION":
        if span.strip().lower() in _NOT_A_PLACE or not any(c.isupper() for c in span):
            return None
    elif cand.entity == "PERSON":
        if any(c.isdigit() for c in span) or "@" in span or not any(c.isupper() for c in span):
            return None
        words = [w.strip(".,;:'’") for w in span.split()]
        if all(w in NAME_STOPWORDS or w in NER_PERSON_STOPWORDS or w.isupper() for w in words):
            return None
        m = _TITLE_PREFIX.match(span)
        if m:
            s += m.end()
        if text[s:e].endswith(("'s", "’s")):
            e -= 2
    while e > s and not text[e - 1].isalnum():
        e -= 1
    while s < e and not text[s].isalnum():
        s += 1
    if e - s < 2:
        return None
    if (s, e) == (cand.start, cand.end):
        return cand
    return Candidate(s, e, cand.entity, cand.score, cand.source, cand.recognizer)


def _rank(c: Candidate) -> tuple[int, float, int]:
    return (_SOURCE_RANK.get(c.source, 0), c.score, c.end - c.start)


def resolve(
    text: str,
    candidates: Iterable[Candidate],
    *,
    threshold: float,
    entity_thresholds: Mapping[str, float] | None = None,
    allow_list: Iterable[str] = (),
    merge_gap: int = 1,
    recall_first: bool = False,
) -> list[Candidate]:
    """Resolve candidates into non-overlapping findings, sorted by start.

    Args:
        text: The analysed text.
        candidates: Spans from every recognizer, possibly overlapping.
        threshold: Default minimum score.
        entity_thresholds: Per-entity minimum scores.
        allow_list: Finding texts to drop (case-insensitive, surrounding blanks ignored).
        merge_gap: Largest run of blanks between two same-entity spans that still merge.
        recall_first: Run the recall-first stages of :mod:`safeguard.pii.refine`.

    Returns:
        Non-overlapping candidates in text order.
    """
    per = entity_thresholds or {}
    kept: list[Candidate] = []
    for c in candidates if not recall_first else _refined(text, candidates):
        if c.score < per.get(c.entity, threshold) or c.end <= c.start:
            continue
        if c.source == "ner":
            c = ner_candidate_ok(text, c)  # type: ignore[assignment]
            if c is None:
                continue
        if recall_first:
            c = refine.drug_guard(text, c)  # type: ignore[assignment]
            if c is None:
                continue
        kept.append(c)
    accepted = _paint(text, kept)

    accepted = _merge_adjacent(text, accepted, merge_gap)
    if recall_first:
        accepted = refine.extend_address_block(text, refine.absorb_address_parts(text, accepted))
    allow = {a.strip().lower() for a in allow_list if a.strip()}
    if allow:
        accepted = [a for a in accepted if text[a.start : a.end].strip().lower() not in allow]
    return accepted


def _refined(text: str, candidates: Iterable[Candidate]) -> Iterable[Candidate]:
    """NER candidates split at line breaks, trimmed of digits and remapped; others as they are."""
    for c in candidates:
        if c.source != "ner":
            yield c
            continue
        for piece in refine.split_at_line_breaks(text, c):
            for trimmed in refine.trim_person_digits(text, piece):
                remapped = refine.remap_entity(text, trimmed)
                if remapped is not None:
                    yield remapped


_CUT_CHARS = " \t\r\n,;:.()[]{}"


def _paint(text: str, kept: list[Candidate]) -> list[Candidate]:
    """Give every character to the highest-ranked candidate covering it; return the runs.

    A run is a maximal stretch of characters whose owners share one entity type, so
    overlapping or touching spans of one type merge, a lower-ranked span of another type
    keeps only what the higher one does not cover, and no character of a kept candidate is
    left unmasked (except NER leftovers that fail :func:`ner_candidate_ok`). Linear in the
    total length of the candidates.
    """
    if not kept:
        return []
    kept = sorted(kept, key=_rank)  # ascending: higher ranks paint over lower ones
    lo = min(c.start for c in kept)
    hi = max(c.end for c in kept)
    owner = [-1] * (hi - lo)
    for k, c in enumerate(kept):
        for i in range(c.start - lo, c.end - lo):
            owner[i] = k
    out: list[Candidate] = []
    i = 0
    n = hi - lo
    while i < n:
        k = owner[i]
        if k < 0:
            i += 1
            continue
        entity = kept[k].entity
        j = i
        top = k
        score = kept[k].score
        while j < n and owner[j] >= 0 and kept[owner[j]].entity == entity:
            if owner[j] > top:
                top = owner[j]
            score = max(score, kept[owner[j]].score)
            j += 1
        best = kept[top]
        s, e = i + lo, j + lo
        i = j
        if (s, e) != (best.start, best.end):
            while s < e and text[s] in _CUT_CHARS:
                s += 1
            while e > s and text[e - 1] in _CUT_CHARS:
                e -= 1
            if not any(ch.isalnum() for ch in text[s:e]):
                continue
            if best.source == "ner":
                cand = ner_candidate_ok(
                    text, Candidate(s, e, entity, score, "ner", best.recognizer)
                )
                if cand is None:
                    continue
                s, e = cand.start, cand.end
        out.append(Candidate(s, e, entity, score, best.source, best.recognizer))
    return out


def _merge_adjacent(text: str, spans: list[Candidate], gap: int) -> list[Candidate]:
    out: list[Candidate] = []
    for c in spans:
        if out:
            last = out[-1]
            between = text[last.end : c.start]
            if (
                last.entity == c.entity
                and len(between) <= gap
                and (between == "" or between.isspace())
                and "\n" not in between
            ):
                out[-1] = Candidate(
                    last.start, c.end, last.entity, max(last.score, c.score),
                    last.source, last.recognizer,
                )  # fmt: skip
                continue
        out.append(c)
    return out
