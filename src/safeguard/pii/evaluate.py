"""Span-level precision, recall and F2 of a scrubber on labelled text, and a Safe Harbor matrix.

Matching is on alphanumeric characters (blanks and punctuation at span edges do not count):

- **recall** (``overall``): a gold span is found when the union of predicted spans covers
  *all* of its alphanumeric characters, i.e. nothing of it would leak. ``lenient``: any
  shared character is enough.
- **precision**: a predicted span is correct when at least half of its alphanumeric
  characters lie inside gold spans (``lenient``: any do).
- **typed** scores additionally require the entity type to match (after ``entity_map``).

- **characters**: the share of gold alphanumeric characters that the predictions cover
  (recall), and of predicted alphanumeric characters that lie in gold spans (precision).
  Partial masks count in part, so a name with one word left is half found, not lost.

F2 weighs recall four times as much as precision: ``F2 = 5PR / (4P + R)``.

:func:`safe_harbor_gold` makes gold spans honest for HIPAA Safe Harbor before scoring: a
year alone is not an identifier (so a date's year need not be masked), nor are US states,
countries or titles ("Dr.", "Mrs.").
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safeguard.pii.synthetic import LabelledExample, read_labelled_jsonl

__all__ = [
    "SAFE_HARBOR",
    "EntityScores",
    "EvaluationReport",
    "Scores",
    "evaluate_predictions",
    "evaluate_scrubber",
    "f_beta",
    "load_labelled",
    "safe_harbor_gold",
    "safe_harbor_matrix",
]

Span = tuple[int, int, str]

#: The 18 HIPAA Safe Harbor identifiers (45 CFR 164.514(b)(2)(i)) and the entity types
#: that cover them in text; an empty tuple means the identifier cannot occur in plain text.
SAFE_HARBOR: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("A", "Names", ("PERSON",)),
    ("B", "Geographic subdivisions smaller than a state (incl. ZIP)", ("STREET_ADDRESS", "LOCATION", "ZIP_CODE")),
    ("C", "Date elements (except year); ages over 89", ("DATE_TIME", "AGE_OVER_89")),
    ("D", "Telephone numbers", ("PHONE_NUMBER",)),
    ("E", "Fax numbers", ("FAX_NUMBER",)),
    ("F", "E-mail addresses", ("EMAIL_ADDRESS",)),
    ("G", "Social security numbers", ("US_SSN",)),
    ("H", "Medical record numbers", ("MEDICAL_RECORD_NUMBER",)),
    ("I", "Health plan beneficiary numbers", ("HEALTH_PLAN_NUMBER",)),
    ("J", "Account numbers", ("ACCOUNT_NUMBER", "CREDIT_CARD")),
    ("K", "Certificate/license numbers", ("LICENSE_NUMBER", "DEA_NUMBER")),
    ("L", "Vehicle identifiers and serial numbers, incl. plates", ("VEHICLE_ID",)),
    ("M", "Device identifiers and serial numbers", ("DEVICE_ID",)),
    ("N", "Web URLs", ("URL",)),
    ("O", "IP addresses", ("IP_ADDRESS",)),
    ("P", "Biometric identifiers", ()),
    ("Q", "Full-face photographs and comparable images", ()),
    ("R", "Any other unique identifying number, characteristic or code", ("NPI",)),
)  # fmt: skip


def f_beta(precision: float, recall: float, beta: float = 2.0) -> float:
    """F-beta score; 0 when both are 0.

    >>> round(f_beta(0.5, 1.0), 4)
    0.8333
    """
    b2 = beta * beta
    denom = b2 * precision + recall
    return 0.0 if denom == 0 else (1 + b2) * precision * recall / denom


@dataclass(frozen=True)
class Scores:
    """Precision, recall and F2 with their counts."""

    precision: float
    recall: float
    f2: float
    gold: int
    found: int
    predicted: int
    correct: int

    @classmethod
    def from_counts(cls, gold: int, found: int, predicted: int, correct: int) -> Scores:
        p = correct / predicted if predicted else 1.0
        r = found / gold if gold else 1.0
        return cls(p, r, f_beta(p, r), gold, found, predicted, correct)


@dataclass(frozen=True)
class EntityScores:
    """Per gold entity type: recall (any type / same type); per predicted type: precision."""

    support: int
    recall: float
    typed_recall: float
    predicted: int
    precision: float


@dataclass(frozen=True)
class EvaluationReport:
    """Scores of one system on one labelled set."""

    overall: Scores
    typed: Scores
    lenient: Scores
    per_entity: dict[str, EntityScores] = field(default_factory=dict)
    n_docs: int = 0
    characters: Scores | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _alnum_positions(text: str, start: int, end: int) -> list[int]:
    return [i for i in range(start, end) if text[i].isalnum()]


def _covered(positions: list[int], mask: Sequence[bool]) -> tuple[int, int]:
    hit = sum(1 for i in positions if mask[i])
    return hit, len(positions)


def _mask(n: int, spans: Sequence[Span], entity: str | None = None) -> list[bool]:
    m = [False] * n
    for s, e, t in spans:
        if entity is None or t == entity:
            for i in range(max(0, s), min(n, e)):
                m[i] = True
    return m


def evaluate_predictions(
    texts: Sequence[str],
    gold: Sequence[Sequence[Span]],
    predicted: Sequence[Sequence[Span]],
    *,
    entity_map: Mapping[str, str] | None = None,
) -> EvaluationReport:
    """Score predicted spans against gold spans, document by document.

    Args:
        texts: The documents.
        gold: Gold spans ``(start, end, entity)`` per document.
        predicted: Predicted spans per document (any overlaps allowed).
        entity_map: Renames predicted entity types before typed matching (e.g. Presidio's
            ``US_DRIVER_LICENSE`` to ``LICENSE_NUMBER``).
    """
    if not len(texts) == len(gold) == len(predicted):
        raise ValueError(
            f"texts ({len(texts)}), gold ({len(gold)}) and predicted ({len(predicted)}) must "
            "have the same length"
        )
    emap = dict(entity_map or {})
    counts: defaultdict[str, int] = defaultdict(int)
    per_gold: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # support, found, typed
    per_pred: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # predicted, correct
    for text, gspans, pspans in zip(texts, gold, predicted, strict=True):
        pspans = [(s, e, emap.get(t, t)) for s, e, t in pspans]
        pmask = _mask(len(text), pspans)
        gmask = _mask(len(text), gspans)
        _count_characters(text, gmask, pmask, counts)
        _count_gold(text, gspans, pspans, pmask, counts, per_gold)
        _count_predicted(text, gspans, pspans, gmask, counts, per_pred)
    overall = Scores.from_counts(counts["gold"], counts["found"], counts["pred"], counts["correct"])
    typed = Scores.from_counts(
        counts["gold"], counts["typed_found"], counts["pred"], counts["typed_correct"]
    )
    lenient = Scores.from_counts(
        counts["gold"], counts["found_lenient"], counts["pred"], counts["correct_lenient"]
    )
    characters = Scores.from_counts(
        counts["char_gold"], counts["char_found"], counts["char_pred"], counts["char_found"]
    )
    return EvaluationReport(
        overall,
        typed,
        lenient,
        _per_entity(per_gold, per_pred),
        n_docs=len(texts),
        characters=characters,
    )


def _count_characters(
    text: str, gmask: list[bool], pmask: list[bool], counts: defaultdict[str, int]
) -> None:
    """Alphanumeric characters in gold spans, in predicted spans, and in both."""
    for i, ch in enumerate(text):
        if ch.isalnum() and (gmask[i] or pmask[i]):
            counts["char_gold"] += gmask[i]
            counts["char_found"] += gmask[i] and pmask[i]
            counts["char_pred"] += pmask[i]


def _count_gold(
    text: str,
    gspans: Sequence[Span],
    pspans: Sequence[Span],
    pmask: list[bool],
    counts: defaultdict[str, int],
    per_gold: dict[str, list[int]],
) -> None:
    """Recall: a gold span is found when predictions cover all its alphanumeric characters."""
    for t, hit, tot, thit in _coverage(text, gspans, pspans, pmask):
        counts["gold"] += 1
        counts["found"] += hit == tot
        counts["found_lenient"] += hit > 0
        counts["typed_found"] += thit == tot
        g = per_gold[t]
        g[0] += 1
        g[1] += hit == tot
        g[2] += thit == tot


def _count_predicted(
    text: str,
    gspans: Sequence[Span],
    pspans: Sequence[Span],
    gmask: list[bool],
    counts: defaultdict[str, int],
    per_pred: dict[str, list[int]],
) -> None:
    """Precision: a predicted span is correct when gold covers at least half of it."""
    for t, hit, tot, thit in _coverage(text, pspans, gspans, gmask):
        counts["pred"] += 1
        counts["correct"] += 2 * hit >= tot
        counts["correct_lenient"] += hit > 0
        counts["typed_correct"] += 2 * thit >= tot
        p = per_pred[t]
        p[0] += 1
        p[1] += 2 * hit >= tot


def _coverage(
    text: str, spans: Sequence[Span], other: Sequence[Span], other_mask: list[bool]
) -> Iterator[tuple[str, int, int, int]]:
    """Per span with alphanumeric characters: its type, how many of them ``other`` covers,
    how many there are, and how many ``other`` spans of the same type cover."""
    typed_masks: dict[str, list[bool]] = {}
    for s, e, t in spans:
        pos = _alnum_positions(text, s, e)
        if not pos:
            continue
        hit, tot = _covered(pos, other_mask)
        if t not in typed_masks:
            typed_masks[t] = _mask(len(text), other, t)
        thit, _ = _covered(pos, typed_masks[t])
        yield t, hit, tot, thit


def _per_entity(
    per_gold: dict[str, list[int]], per_pred: dict[str, list[int]]
) -> dict[str, EntityScores]:
    per_entity: dict[str, EntityScores] = {}
    for t in sorted(set(per_gold) | set(per_pred)):
        sup, found, tfound = per_gold.get(t, [0, 0, 0])
        npred, correct = per_pred.get(t, [0, 0])
        per_entity[t] = EntityScores(
            support=sup,
            recall=found / sup if sup else float("nan"),
            typed_recall=tfound / sup if sup else float("nan"),
            predicted=npred,
            precision=correct / npred if npred else float("nan"),
        )
    return per_entity


_YEAR = re.compile(r"(?<![\d/.-])(?:19|20)\d{2}(?![\d/.-]?\d)")
_WEEKDAY = re.compile(r"(?i)^(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?\.?$")
_TITLE = re.compile(r"^(?:(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Sir|Dame|Rev|Sr|Sra)\.?\s+)+")


@functools.cache
def _not_places() -> frozenset[str]:
    from safeguard.pii.patterns import US_STATES
    from safeguard.pii.recognizers.wordlists import word_list

    return frozenset(
        {s.lower() for s in (*US_STATES, *US_STATES.values())} | word_list("countries")
    )


_NOT_PHI_WORD = re.compile(r"\b(?:[a-z]+|nan)\b")


def _cut(text: str, s: int, e: int, cuts: list[tuple[int, int]], t: str) -> list[Span]:
    """The pieces of ``text[s:e]`` outside ``cuts``, trimmed to alphanumeric edges."""
    pieces, pos = [], s
    for a, b in sorted(cuts):
        if a > pos:
            pieces.append((pos, a))
        pos = max(pos, b)
    pieces.append((pos, e))
    out = []
    for a, b in pieces:
        while a < b and not text[a].isalnum():
            a += 1
        while b > a and not text[b - 1].isalnum():
            b -= 1
        if b > a and not _WEEKDAY.match(text[a:b]):
            out.append((a, b, t))
    return out


@functools.cache
def _stop_words() -> frozenset[str]:
    from safeguard.pii.recognizers.wordlists import word_list

    return word_list("stop_words")


@functools.cache
def _place_regex(extra: frozenset[str]) -> re.Pattern[str]:
    names = sorted(_not_places() | extra, key=len, reverse=True)
    body = "|".join(re.escape(n) for n in names if len(n) > 2)
    return re.compile(r"(?<!\w)(?:" + body + r")(?!\w)(?:\s*\([^)]*\))?", re.IGNORECASE)


def safe_harbor_gold(
    text: str, spans: Sequence[Span], *, extra_not_places: frozenset[str] = frozenset()
) -> list[Span]:
    """Gold spans reduced to what HIPAA Safe Harbor requires removing.

    Drops dates that are a year or a weekday alone and cuts a year out of a longer date
    ("November 9" of "November 9, 2026" remains); cuts US state names, countries and
    lower-case function words ("the corner of", "and") out of addresses and places, and
    drops places that are only that; trims titles off names. ``extra_not_places`` adds
    country spellings (lower case) to the shipped list.

    >>> safe_harbor_gold("Dr. Ann Lee, Ohio, 3 May 2024", [(0, 11, "PERSON"),
    ...     (13, 17, "LOCATION"), (19, 29, "DATE_TIME")])
    [(4, 11, 'PERSON'), (19, 24, 'DATE_TIME')]
    >>> t = "5 Elm St, Lyon, France"
    >>> [t[a:b] for a, b, _ in safe_harbor_gold(t, [(0, len(t), "STREET_ADDRESS")])]
    ['5 Elm St, Lyon']
    """
    out: list[Span] = []
    places = _place_regex(frozenset(extra_not_places))
    for s, e, t in spans:
        value = text[s:e]
        if t == "PERSON":
            m = _TITLE.match(value)
            out.extend(_cut(text, s + (m.end() if m else 0), e, [], t))
        elif t == "DATE_TIME":
            if _WEEKDAY.match(value.strip()):
                continue
            out.extend(
                _cut(text, s, e, [(m.start() + s, m.end() + s) for m in _YEAR.finditer(value)], t)
            )
        elif t in ("LOCATION", "STREET_ADDRESS", "ZIP_CODE"):
            cuts = [(m.start() + s, m.end() + s) for m in places.finditer(value)]
            cuts += [
                (m.start() + s, m.end() + s)
                for m in _NOT_PHI_WORD.finditer(value)
                if m.group() == "nan" or m.group() in _stop_words()
            ]
            pieces = _cut(text, s, e, cuts, t)
            # keep one span when only edges were cut (strict recall counts spans)
            if pieces:
                out.append(
                    (pieces[0][0], pieces[-1][1], t)
                    if len(pieces) > 1 and not _inner_cut(text, pieces)
                    else pieces[0]
                )
                if len(pieces) > 1 and _inner_cut(text, pieces):
                    out.extend(pieces[1:])
        elif any(c.isalnum() for c in value):
            out.append((s, e, t))
    return out


def _inner_cut(text: str, pieces: list[Span]) -> bool:
    """Whether something alphanumeric was cut between consecutive pieces."""
    return any(any(ch.isalnum() for ch in text[a[1] : b[0]]) for a, b in itertools.pairwise(pieces))


def evaluate_scrubber(
    scrubber: Any, examples: Sequence[LabelledExample], *, batch_size: int = 256
) -> EvaluationReport:
    """Run ``scrubber.analyze_batch`` over labelled examples and score it."""
    texts = [ex.text for ex in examples]
    predicted: list[list[Span]] = []
    for i in range(0, len(texts), batch_size):
        for findings in scrubber.analyze_batch(texts[i : i + batch_size]):
            predicted.append([(f.start, f.end, f.entity) for f in findings])
    return evaluate_predictions(texts, [list(ex.spans) for ex in examples], predicted)


def load_labelled(path: str | Path) -> list[LabelledExample]:
    """Read labelled JSONL (``{"text": ..., "spans": [{"start", "end", "entity"}]}`` per line)."""
    return read_labelled_jsonl(path)


def safe_harbor_matrix(
    report: EvaluationReport, policy_entities: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per Safe Harbor identifier: covering entity types, policy coverage, recall.

    ``recall`` pools the gold spans of the identifier's entity types (None without data).
    """
    rows = []
    for code, name, entities in SAFE_HARBOR:
        support = sum(report.per_entity[e].support for e in entities if e in report.per_entity)
        found = sum(
            round(report.per_entity[e].recall * report.per_entity[e].support)
            for e in entities
            if e in report.per_entity and report.per_entity[e].support
        )
        rows.append(
            {
                "code": code,
                "identifier": name,
                "entities": list(entities),
                "in_policy": bool(entities) and all(e in policy_entities for e in entities),
                "support": support,
                "recall": (found / support) if support else None,
            }
        )
    return rows


def format_scores(name: str, s: Scores) -> str:  # pragma: no cover - formatting helper
    return f"{name}: P {s.precision:.3f} R {s.recall:.3f} F2 {s.f2:.3f} (gold {s.gold}, predicted {s.predicted})"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m safeguard.pii.evaluate LABELLED.jsonl [--policy NAME]``: print scores as JSON."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m safeguard.pii.evaluate",
        description="Span-level precision/recall/F2 of a policy's scrubber on labelled JSONL.",
    )
    parser.add_argument("labelled", help="JSONL with `text` and `spans` [{start, end, entity}]")
    parser.add_argument("--policy", default="healthcare-hipaa", help="policy name or YAML path")
    parser.add_argument("--no-ner", action="store_true", help="patterns only")
    args = parser.parse_args(argv)
    from safeguard.pii import Scrubber

    examples = load_labelled(args.labelled)
    scrubber = Scrubber.from_policy(args.policy, use_ner=not args.no_ner)
    report = evaluate_scrubber(scrubber, examples)
    out = report.to_dict()
    out["safe_harbor"] = safe_harbor_matrix(report, scrubber.config.all_entities)
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
