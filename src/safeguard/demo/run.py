"""The ``safeguard demo`` main job: the healthcare story end to end, offline, on embedded defaults.

Each step runs a real ``safeguard`` verb and writes its artifacts to the output folder::

    synthetic clinical notes (fictional, seeded)                         data/raw_notes.jsonl
      ├─ dataset manifest (Merkle root over the records), signed         manifests/raw.dataset.json
      ▼ safeguard scrub --policy healthcare-hipaa                         data/clean_notes.jsonl + report
      ├─ scrub manifest (policy digest, counts, input -> output digests)  manifests/scrub.json
      │  + recall measured on the notes' own labels
      ▼ safeguard train --policy healthcare-hipaa (DP-SGD, a few steps)   model-dp/ + ledger + report
      ├─ training manifest (SLSA: DP config, dataset + base model, epsilon spent)  manifests/training.json
      ▼ safeguard generate (watermarked) and plain sampling              generations.jsonl, plain.jsonl
      ├─ generation manifest (model digest, scheme + key_id)             manifests/generation.json
      ▼ safeguard detect (watermarked vs plain p-values)
      ▼ safeguard manifest verify --chain --policy healthcare-hipaa      every signature, digest and link

It ends with a summary table (also written as ``summary.json``).

How a verb runs is handed in (``verbs``): ``safeguard demo`` passes the CLI's entry point,
so verbs run in its process and libraries load once; a caller without one (a notebook)
gets ``python -m safeguard`` in a subprocess (:mod:`safeguard.demo.runner`). The demo
never imports :mod:`safeguard.cli`, which sits above it. The steps are in
:mod:`safeguard.demo.steps`, the summary and its table in :mod:`safeguard.demo.summary`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from safeguard.demo.runner import StepRunner, Verbs, demo_registry
from safeguard.demo.steps import (
    NEW_TOKENS,
    POLICY,
    PROMPTS,
    DemoRun,
    build_base_model,
    dataset_step,
    detect_step,
    generate_step,
    recall_step,
    scrub_step,
    tamper_step,
    train_step,
    verify_step,
)
from safeguard.demo.summary import DemoSummary, format_table

__all__ = ["NEW_TOKENS", "POLICY", "PROMPTS", "DemoSummary", "format_table", "run_demo"]


def run_demo(
    out_dir: str | Path = "safeguard-demo",
    *,
    notes: int = 120,
    seed: int = 0,
    echo: Callable[[str], None] = print,
    verbs: Verbs | None = None,
) -> DemoSummary:
    """Run the demo and write every artifact to ``out_dir``.

    Args:
        out_dir: Folder for every artifact.
        notes: Number of fictional clinical notes.
        seed: Seed of the notes, the base model, training and generation.
        echo: Where progress lines go.
        verbs: Runs one ``safeguard`` command line (the arguments after ``safeguard``) and
            returns its exit code; default: ``python -m safeguard`` in a subprocess.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out_dir)
    for sub in ("data", "keys", "manifests"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    run = StepRunner(out, total=9, echo=echo, verbs=verbs)
    d = DemoRun(out=out, run=run, summary=DemoSummary(out_dir=str(out)), notes=notes, seed=seed)

    with run.step("fictional clinical notes + signing key + dataset manifest"):
        dataset_step(d)
    with run.step(f"scrub PHI with the {POLICY} policy"):
        scrub_report = scrub_step(d)
    with run.step("measure recall on the notes' labels"):
        recall_step(d, scrub_report)
    with run.step("build a tiny base model (offline)"):
        base = build_base_model(d)
    with (
        run.step(f"DP fine-tune on the scrubbed notes ({POLICY} privacy budget)"),
        demo_registry(out, d.model_dp),
    ):
        train_step(d, base)
    with run.step("watermarked generation (and plain sampling to compare)"):
        generate_step(d)
    with run.step("detect: watermarked vs plain"):
        detect_step(d)
    with run.step(f"verify the whole chain against {POLICY}"):
        verify_step(d)
    with run.step("tamper with the scrubbed data and verify again"):
        tamper_step(d)

    summary = d.summary
    summary.steps = dict(run.times)
    payload = {**asdict(summary), "ok": summary.ok}
    (out / "summary.json").write_text(json.dumps(payload, indent=2))
    return summary
