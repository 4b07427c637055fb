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

    python benchmarks/pii_eval_presidio_sentences.py -n 600 --seed 101 --errors 80   # development
    python benchmarks/pii_eval_presidio_sentences.py -n 600                           # held-out seed
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pii_eval_common import run_all, write_report

from safeguard.pii.evaluate import safe_harbor_gold
from safeguard.pii.patterns import US_STATES
from safeguard.pii.recognizers.wordlists import word_list

#: The held-out seed: generated once, after development, never inspected (no --errors).
HELDOUT_SEED = 20261206

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


def safe_harbor_spans(sample, countries: set[str]) -> tuple[list, list]:
    """(Safe Harbor gold spans, every labelled span) of one presidio-evaluator sample."""
    spans = [
        (sp.start_position, sp.end_position, sp.entity_type, sp.entity_value) for sp in sample.spans
    ]
    gold_all = [(a, b, t) for a, b, t, _ in spans]
    phi = [(a, b, m) for a, b, t, v in spans if (m := _phi(t, v, countries))]
    return safe_harbor_gold(sample.full_text, phi), gold_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=HELDOUT_SEED)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--errors", type=int, default=0, help="print N misses/false positives (dev seeds only)"
    )
    args = ap.parse_args(argv)
    if args.errors and args.seed == HELDOUT_SEED:
        sys.stderr.write("refusing to print errors on the held-out seed: develop on another seed\n")
        return 2
    try:
        from presidio_evaluator.data_generator import PresidioSentenceFaker
    except ImportError as exc:
        sys.stderr.write(
            f"presidio-evaluator is not importable ({exc}); `pip install presidio-evaluator`\n"
        )
        return 2
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, random_seed=args.seed)
        samples = faker.generate_new_fake_sentences(args.n)
    countries = set(word_list("countries"))
    texts = [s.full_text for s in samples]
    gold_phi, gold_all = [], []
    for s in samples:
        phi, every = safe_harbor_spans(s, countries)
        gold_phi.append(phi)
        gold_all.append(every)

    runs = run_all(texts, gold_phi, gold_all, batch_size=args.batch_size, repeats=args.repeats)
    kind = "held-out" if args.seed == HELDOUT_SEED else "development"
    write_report(
        f"presidio-evaluator sentences, {kind} seed {args.seed} (n={args.n}, "
        f"{sum(len(g) for g in gold_phi)} Safe Harbor gold spans of {sum(len(g) for g in gold_all)} labelled):",
        texts,
        gold_phi,
        gold_all,
        runs,
        args.errors,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
