# ruff: noqa: E402  (thread-count variables must be set before numpy is imported)
"""Out-of-domain check: the healthcare-hipaa Scrubber vs vanilla Presidio on presidio-evaluator sentences.

presidio-evaluator's ``PresidioSentenceFaker`` writes general-domain sentences (chat
messages, letters, international addresses) from its own templates: text that safeguard's
recognizers were *not* written against. Its labels are mapped to what HIPAA Safe Harbor
requires removing; gold spans Safe Harbor does not cover (organisations, nationalities, job
titles, countries and US states, years alone, weekdays, ages under 90) are not counted for
recall, but a prediction on any gold span counts as correct for precision.

presidio-evaluator is an optional tool, not a dependency. It is imported if available
(``pip install presidio-evaluator``, or an unpacked wheel on ``PYTHONPATH``); without it the
script says so and exits with code 2.

Usage::

    python benchmarks/pii_eval_presidio_sentences.py -n 2000 --seed 42
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import time

from safeguard.pii import Scrubber
from safeguard.pii._presidio import vanilla_analyzer, vanilla_candidates
from safeguard.pii.evaluate import evaluate_predictions
from safeguard.pii.patterns import US_STATES

#: presidio-evaluator label -> the entity it counts as for recall (None: not Safe Harbor PHI).
LABEL_MAP = {
    "PERSON": "PERSON",
    "STREET_ADDRESS": "STREET_ADDRESS",
    "ZIP_CODE": "ZIP_CODE",
    "GPE": "LOCATION",  # cities only: countries and US states are filtered below
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "ACCOUNT_NUMBER",
    "US_DRIVER_LICENSE": "LICENSE_NUMBER",
    "DOMAIN_NAME": "URL",
    "DATE_TIME": "DATE_TIME",  # years alone and weekdays are filtered below
    "AGE": "AGE_OVER_89",  # ages over 89 only
    "ORGANIZATION": None,
    "NRP": None,
    "TITLE": None,
}
_WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


def _phi(entity: str, value: str, countries: set[str]) -> str | None:
    mapped = LABEL_MAP.get(entity)
    v = value.strip().lower()
    if mapped == "LOCATION" and (
        v in countries or v in {s.lower() for s in (*US_STATES, *US_STATES.values())}
    ):
        return None
    if mapped == "DATE_TIME" and ((v.isdigit() and len(v) == 4) or v in _WEEKDAYS):
        return None
    if mapped == "AGE_OVER_89" and not (v.isdigit() and int(v) > 89):
        return None
    return mapped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    try:
        from presidio_evaluator.data_generator import PresidioSentenceFaker
    except ImportError as exc:
        sys.stderr.write(
            f"presidio-evaluator is not importable ({exc}); `pip install presidio-evaluator`\n"
        )
        return 2
    from faker.providers.address.en_US import Provider as Address

    countries = {c.lower() for c in Address.countries}
    faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, random_seed=args.seed)
    samples = faker.generate_new_fake_sentences(args.n)
    texts = [s.full_text for s in samples]
    gold_phi = []
    gold_all = []
    for s in samples:
        spans = [
            (sp.start_position, sp.end_position, sp.entity_type, sp.entity_value) for sp in s.spans
        ]
        gold_all.append([(a, b, t) for a, b, t, _ in spans])
        gold_phi.append([(a, b, m) for a, b, t, v in spans if (m := _phi(t, v, countries))])

    ours = Scrubber.from_policy("healthcare-hipaa", batch_size=args.batch_size)
    ours.analyze("warm-up")
    vanilla = vanilla_analyzer()
    t0 = time.perf_counter()
    pv = [
        [(c.start, c.end, c.entity) for c in cs]
        for cs in vanilla_candidates(vanilla, texts, args.batch_size)
    ]
    tv = time.perf_counter() - t0
    t0 = time.perf_counter()
    po = [[(f.start, f.end, f.entity) for f in fs] for fs in ours.analyze_batch(texts)]
    to = time.perf_counter() - t0

    def score(pred: list[list[tuple[int, int, str]]]) -> tuple[float, float, float]:
        rec = evaluate_predictions(texts, gold_phi, pred).overall
        # precision against every labelled span, PHI or not
        prec = evaluate_predictions(texts, gold_all, pred).overall.precision
        f2 = 5 * prec * rec.recall / (4 * prec + rec.recall) if prec + rec.recall else 0.0
        return prec, rec.recall, f2

    rv = evaluate_predictions(texts, gold_phi, pv)
    ro = evaluate_predictions(texts, gold_phi, po)
    lines = [
        f"presidio-evaluator sentences (n={args.n}, seed {args.seed}, "
        f"{sum(len(g) for g in gold_phi)} Safe Harbor gold spans of {sum(len(g) for g in gold_all)}):",
        "",
        "| system | P | R (strict, any type) | F2 | R lenient | docs/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, pred, rep, secs in (
        ("vanilla Presidio", pv, rv, tv),
        ("safeguard `healthcare-hipaa`", po, ro, to),
    ):
        p, r, f2 = score(pred)
        lines.append(
            f"| {name} | {p:.3f} | {r:.3f} | {f2:.3f} | {rep.lenient.recall:.3f} | {args.n / secs:.0f} |"
        )
    lines += ["", "| gold entity | gold | vanilla R | safeguard R |", "|---|---|---|---|"]
    for ent, sc in ro.per_entity.items():
        if sc.support:
            v = rv.per_entity.get(ent)
            lines.append(
                f"| {ent} | {sc.support} | {v.recall:.3f} | {sc.recall:.3f} |"
                if v
                else f"| {ent} | {sc.support} | – | {sc.recall:.3f} |"
            )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
