# ruff: noqa: E402  (thread-count variables must be set before numpy is imported)
"""Hand-written clinical notes in new styles: safeguard vs vanilla Presidio, side by side.

Notes (``tests/data/pii/clinical_notes_*.txt``) were written by hand in styles the shipped
templates do not use: radiology, nursing, discharge, referral letters, triage, telephone,
pathology, home health, psychiatry, pharmacy, operative, clinic letters; lower-case and
all-caps names; names opening a line. ``--set dev`` is the development set (inspect freely);
``--set heldout`` was written before any tuning and frozen: the script refuses ``--errors``
on it.

Recall is measured on Safe Harbor gold spans (``safe_harbor_gold``); precision against
every labelled span. Throughput is analysis docs/s, best of ``--repeats`` alternating runs.

Usage::

    python benchmarks/pii_eval_clinical_notes.py --set dev --errors 50
    python benchmarks/pii_eval_clinical_notes.py --set heldout
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
from safeguard.pii.synthetic import read_marked_notes

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("dev", "heldout"), default="heldout")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--errors", type=int, default=0, help="print N misses/false positives (dev only)"
    )
    args = ap.parse_args(argv)
    if args.errors and args.set == "heldout":
        sys.stderr.write("refusing to print errors on the held-out notes: develop on --set dev\n")
        return 2
    notes = read_marked_notes(DATA / f"clinical_notes_{args.set}.txt")
    texts = [n.text for n in notes]
    gold_all = [list(n.spans) for n in notes]
    gold_phi = [safe_harbor_gold(n.text, n.spans) for n in notes]
    runs = run_all(texts, gold_phi, gold_all, batch_size=64, repeats=args.repeats)
    write_report(
        f"Clinical notes, {args.set} set ({len(texts)} notes, {sum(len(g) for g in gold_phi)} "
        f"Safe Harbor gold spans, file `tests/data/pii/clinical_notes_{args.set}.txt`):",
        texts,
        gold_phi,
        gold_all,
        runs,
        args.errors,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
