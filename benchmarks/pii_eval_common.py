"""Shared pieces of the side-by-side PII benchmarks (vanilla Presidio vs safeguard).

Systems, scores and timing used by ``pii_eval_presidio_sentences.py`` and
``pii_eval_clinical_notes.py``: recall is measured on Safe Harbor gold spans
(:func:`safeguard.pii.evaluate.safe_harbor_gold`: a year alone, US states, countries and
titles are not identifiers), precision against every labelled span.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from safeguard.pii import Scrubber
from safeguard.pii._presidio import vanilla_analyzer, vanilla_candidates
from safeguard.pii.evaluate import EvaluationReport, evaluate_predictions, f_beta

Span = tuple[int, int, str]
VANILLA_THRESHOLD = 0.3


@dataclass
class SystemRun:
    name: str
    predictions: list[list[Span]]
    docs_per_s: float
    recall: EvaluationReport  # against Safe Harbor gold
    precision: EvaluationReport  # against all labelled spans

    def row(self, base: float) -> str:
        p = self.precision.overall.precision
        r = self.recall.overall.recall
        rc = self.recall.characters.recall if self.recall.characters else float("nan")
        f2 = f_beta(p, rc)
        return (
            f"| {self.name} | {p:.3f} | {r:.3f} | **{rc:.3f}** | {f2:.3f} | "
            f"{self.recall.lenient.recall:.3f} | {self.docs_per_s:.0f} | {self.docs_per_s / base:.2f}× |"
        )


HEADER = (
    "| system | P (spans) | R strict | R chars | F2 (P, R chars) | R lenient | docs/s | vs vanilla |\n"
    "|---|---|---|---|---|---|---|---|"
)


def systems(batch_size: int) -> dict[str, Callable[[Sequence[str]], list[list[Span]]]]:
    """vanilla Presidio, safeguard healthcare-hipaa standard, and recall-first (the policy)."""
    vanilla = vanilla_analyzer()
    vanilla.analyze_iterator(["warm-up"], language="en")
    standard = Scrubber.from_policy("healthcare-hipaa", batch_size=batch_size, recall_first=False)
    recall_first = Scrubber.from_policy(
        "healthcare-hipaa", batch_size=batch_size, recall_first=True
    )
    standard.analyze("warm-up")
    recall_first.analyze("warm-up Ann")

    def run_vanilla(xs: Sequence[str]) -> list[list[Span]]:
        return [
            [(c.start, c.end, c.entity) for c in cs if c.score >= VANILLA_THRESHOLD]
            for cs in vanilla_candidates(vanilla, xs, batch_size)
        ]

    def runner(s: Scrubber) -> Callable[[Sequence[str]], list[list[Span]]]:
        return lambda xs: [[(f.start, f.end, f.entity) for f in fs] for fs in s.analyze_batch(xs)]

    return {
        "vanilla Presidio (threshold 0.3)": run_vanilla,
        "safeguard healthcare-hipaa, standard": runner(standard),
        "safeguard healthcare-hipaa, recall-first (policy default)": runner(recall_first),
    }


def run_all(
    texts: Sequence[str],
    gold_phi: Sequence[Sequence[Span]],
    gold_all: Sequence[Sequence[Span]],
    *,
    batch_size: int = 64,
    repeats: int = 1,
) -> list[SystemRun]:
    """Run every system (alternating, best docs/s of ``repeats``) and score it."""
    fns = systems(batch_size)
    best = dict.fromkeys(fns, 0.0)
    preds: dict[str, list[list[Span]]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            preds[name] = fn(texts)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - t0))
    return [
        SystemRun(
            name,
            preds[name],
            best[name],
            evaluate_predictions(texts, gold_phi, preds[name]),
            evaluate_predictions(texts, gold_all, preds[name]),
        )
        for name in fns
    ]


def per_entity_table(runs: Sequence[SystemRun]) -> list[str]:
    lines = [
        "| gold entity | gold | " + " | ".join(r.name.split(",")[-1].strip() for r in runs) + " |",
        "|---|---|" + "---|" * len(runs),
    ]
    ref = runs[-1].recall.per_entity
    for ent, sc in ref.items():
        if sc.support:
            cells = []
            for r in runs:
                v = r.recall.per_entity.get(ent)
                cells.append(f"{v.recall:.3f}" if v and v.support else "–")
            lines.append(f"| {ent} | {sc.support} | " + " | ".join(cells) + " |")
    return lines


def show_errors(
    texts: Sequence[str],
    gold_phi: Sequence[Sequence[Span]],
    gold_all: Sequence[Sequence[Span]],
    pred: Sequence[Sequence[Span]],
    limit: int,
) -> list[str]:
    """Missed gold characters and predictions outside any label (for development sets only)."""
    out: list[str] = []
    for text, gp, ga, pp in zip(texts, gold_phi, gold_all, pred, strict=True):
        covered = [False] * len(text)
        for s, e, _ in pp:
            for i in range(s, e):
                covered[i] = True
        labelled = [False] * len(text)
        for s, e, _ in ga:
            for i in range(s, e):
                labelled[i] = True
        for s, e, t in gp:
            missed = "".join(
                ch if not covered[i] and ch.isalnum() else "_" for i, ch in enumerate(text[s:e], s)
            )
            if missed.strip("_"):
                out.append(
                    f"MISS {t}: {text[s:e]!r} (left: {missed!r})  in {text[max(0, s - 40) : e + 40]!r}"
                )
        for s, e, t in pp:
            alnum = [i for i in range(s, e) if text[i].isalnum()]
            if alnum and 2 * sum(labelled[i] for i in alnum) < len(alnum):
                out.append(f"FP   {t}: {text[s:e]!r}  in {text[max(0, s - 40) : e + 40]!r}")
    return out[:limit]


def write_report(
    title: str,
    texts: Sequence[str],
    gold_phi: Sequence[Sequence[Span]],
    gold_all: Sequence[Sequence[Span]],
    runs: Sequence[SystemRun],
    errors: int,
) -> None:
    """Print the side-by-side table (speeds relative to the first system), the per-entity
    table and, with ``errors`` > 0, that many misses and false positives of the last system."""
    import sys

    base = runs[0].docs_per_s
    lines = [title, "", HEADER, *(r.row(base) for r in runs), "", *per_entity_table(runs)]
    sys.stdout.write("\n".join(lines) + "\n")
    if errors:
        found = show_errors(texts, gold_phi, gold_all, runs[-1].predictions, errors)
        sys.stdout.write("\n".join(found) + "\n")
