"""From overlapping candidates to one clean set of findings (pure Python).

Steps, in order:

1. Per-entity score thresholds.
2. Filters on NER output that fix stock failures: a ``DATE_TIME`` must carry a month or a
   day (years, durations, ZIP codes and house numbers are not dates); a ``LOCATION`` that is
   a US state or a country is not PHI under Safe Harbor; a ``PERSON`` has no digits.
3. Overlaps: candidates are ranked by (source, score, length) with deny-list terms first,
   then pattern recognizers (validated formats), then NER. Overlapping spans of the same
   entity merge into their union; a lower-ranked span of another entity is dropped when it
   lies inside a higher-ranked one (so an e-mail is never also a URL), and an NER span that
   only partly overlaps keeps its remainder ("Main Street, Boston" next to a street address
   keeps "Boston").
4. Adjacent spans of one entity separated only by blanks merge ("Dave" + "Jones").
5. Allow-list terms are dropped.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping

from safeguard.pii.patterns import (
    _DATE_NUMERIC,
    _DATE_SHORT,
    _MONTH_RE,
    NAME_STOPWORDS,
    NER_PERSON_STOPWORDS,
    US_STATES,
    Candidate,
)

__all__ = ["ner_candidate_ok", "resolve"]

_SOURCE_RANK = {"deny": 3, "pattern": 2, "ner": 1}
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


def _subtract(start: int, end: int, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pieces = [(start, end)]
    for ts, te in taken:
        nxt = []
        for ps, pe in pieces:
            if te <= ps or ts >= pe:
                nxt.append((ps, pe))
                continue
            if ps < ts:
                nxt.append((ps, ts))
            if te < pe:
                nxt.append((te, pe))
        pieces = nxt
    return pieces


def resolve(
    text: str,
    candidates: Iterable[Candidate],
    *,
    threshold: float,
    entity_thresholds: Mapping[str, float] | None = None,
    allow_list: Iterable[str] = (),
    merge_gap: int = 1,
) -> list[Candidate]:
    """Resolve candidates into non-overlapping findings, sorted by start.

    Args:
        text: The analysed text.
        candidates: Spans from every recognizer, possibly overlapping.
        threshold: Default minimum score.
        entity_thresholds: Per-entity minimum scores.
        allow_list: Finding texts to drop (case-insensitive, surrounding blanks ignored).
        merge_gap: Largest run of blanks between two same-entity spans that still merge.

    Returns:
        Non-overlapping candidates in text order.
    """
    per = entity_thresholds or {}
    kept: list[Candidate] = []
    for c in candidates:
        if c.score < per.get(c.entity, threshold) or c.end <= c.start:
            continue
        if c.source == "ner":
            c = ner_candidate_ok(text, c)  # type: ignore[assignment]
            if c is None:
                continue
        kept.append(c)
    kept.sort(key=_rank, reverse=True)

    index = _Index()
    for c in kept:
        hits = index.overlapping(c.start, c.end)
        same = [i for i in hits if index.items[i].entity == c.entity]
        if same:
            a = index.items[same[0]]
            index.replace(
                same[0],
                Candidate(
                    min(a.start, c.start), max(a.end, c.end), a.entity,
                    max(a.score, c.score), a.source, a.recognizer,
                ),
            )  # fmt: skip
            continue
        if not hits:
            index.add(c)
            continue
        if c.source != "ner":
            continue
        others = sorted((index.items[i].start, index.items[i].end) for i in hits)
        pieces = _subtract(c.start, c.end, others)
        if not pieces:
            continue
        ps, pe = max(pieces, key=lambda p: p[1] - p[0])
        piece = ner_candidate_ok(text, Candidate(ps, pe, c.entity, c.score, "ner", c.recognizer))
        if piece is not None and not index.overlapping(piece.start, piece.end):
            index.add(piece)
    accepted = list(index.items)

    accepted = _merge_overlaps(accepted)
    accepted = _merge_adjacent(text, accepted, merge_gap)
    allow = {a.strip().lower() for a in allow_list if a.strip()}
    if allow:
        accepted = [a for a in accepted if text[a.start : a.end].strip().lower() not in allow]
    return accepted


class _Index:
    """Accepted spans sorted by start, for overlap queries in O(log n + k) on short spans."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.items: list[Candidate] = []
        self.maxlen = 0

    def overlapping(self, start: int, end: int) -> list[int]:
        """Positions of accepted spans that share a character with ``[start, end)``."""
        out = []
        i = bisect.bisect_left(self.starts, end) - 1
        floor = start - self.maxlen
        while i >= 0 and self.starts[i] >= floor:
            if self.items[i].end > start:
                out.append(i)
            i -= 1
        return out

    def add(self, c: Candidate) -> None:
        i = bisect.bisect_right(self.starts, c.start)
        self.starts.insert(i, c.start)
        self.items.insert(i, c)
        self.maxlen = max(self.maxlen, c.end - c.start)

    def replace(self, i: int, c: Candidate) -> None:
        del self.starts[i]
        del self.items[i]
        self.add(c)


def _merge_overlaps(spans: list[Candidate]) -> list[Candidate]:
    spans = sorted(spans, key=lambda c: (c.start, -c.end))
    out: list[Candidate] = []
    for c in spans:
        if out and c.start < out[-1].end:
            last = out[-1]
            if last.entity == c.entity:
                out[-1] = Candidate(
                    last.start, max(last.end, c.end), last.entity,
                    max(last.score, c.score), last.source, last.recognizer,
                )  # fmt: skip
                continue
            # different entities overlapping after same-entity merges: keep the higher rank
            if _rank(c) > _rank(last):
                out[-1] = c
            continue
        out.append(c)
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
