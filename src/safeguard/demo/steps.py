"""The demo's steps, one function each, in the order :func:`safeguard.demo.run.run_demo`
runs them. Each reads and writes the files named by :class:`DemoRun` and fills its
:class:`~safeguard.demo.summary.DemoSummary`."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeguard.demo.runner import StepRunner
from safeguard.demo.summary import DemoSummary

__all__ = [
    "NEW_TOKENS",
    "POLICY",
    "PROMPTS",
    "DemoRun",
    "build_base_model",
    "dataset_step",
    "detect_step",
    "generate_step",
    "recall_step",
    "scrub_step",
    "tamper_step",
    "train_step",
    "verify_step",
    "write_notes",
]

POLICY = "healthcare-hipaa"

#: Tokens generated per prompt: long enough that detection at the policy's 1e-4 false-positive
#: rate does not depend on a lucky key, even after repeated contexts are skipped.
NEW_TOKENS = 200

#: Prompts for generation: the openings of fictional notes.
PROMPTS = [
    "Patient presented to the clinic with",
    "Discharge summary: the patient",
    "History of present illness:",
    "Assessment and plan:",
    "The nurse explained",
    "Follow-up visit for",
    "Vital signs were",
    "The physician reviewed",
]


@dataclass
class DemoRun:
    """One run of the demo: where it writes, how it runs verbs, and what it has measured."""

    out: Path
    run: StepRunner
    summary: DemoSummary
    notes: int
    seed: int

    @property
    def raw(self) -> Path:
        return self.out / "data" / "raw_notes.jsonl"

    @property
    def labels(self) -> Path:
        return self.out / "data" / "raw_notes.labels.jsonl"

    @property
    def clean(self) -> Path:
        return self.out / "data" / "clean_notes.jsonl"

    @property
    def report(self) -> Path:
        return self.out / "data" / "scrub_report.json"

    @property
    def signer(self) -> Path:
        return self.out / "keys" / "signer.key"

    @property
    def manifests(self) -> Path:
        return self.out / "manifests"

    @property
    def base(self) -> Path:
        return self.out / "model-base"

    @property
    def model_dp(self) -> Path:
        return self.out / "model-dp"

    @property
    def wm_key(self) -> Path:
        return self.out / "keys" / "watermark.json"

    @property
    def gens(self) -> Path:
        return self.out / "generations.jsonl"

    @property
    def plain(self) -> Path:
        return self.out / "plain.jsonl"


def write_notes(path: Path, labels_path: Path, *, notes: int, seed: int) -> int:
    """Fictional clinical notes: seeded labelled sentences grouped per patient."""
    from safeguard.pii.synthetic import LabelledExample, generate_examples, write_labelled_jsonl

    per_note = 3
    examples = generate_examples(notes * per_note, seed=seed)
    labelled = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(notes):
            text, spans = "", []
            for ex in examples[i * per_note : (i + 1) * per_note]:
                offset = len(text) + (1 if text else 0)
                text = f"{text} {ex.text}" if text else ex.text
                spans += [(s + offset, e + offset, ent) for s, e, ent in ex.spans]
            record = {
                "patient_id": f"P{i % max(1, notes // 2):04d}",
                "note_id": f"N{i:04d}",
                "text": text,
            }
            fh.write(json.dumps(record) + "\n")
            labelled.append(LabelledExample(text=text, spans=tuple(spans), template=-1))
    write_labelled_jsonl(labelled, labels_path)
    return notes


def dataset_step(d: DemoRun) -> None:
    """Fictional clinical notes, a signing key (kept between runs), the dataset manifest."""
    d.summary.notes = write_notes(d.raw, d.labels, notes=d.notes, seed=d.seed)
    if not d.signer.exists():
        d.run.verb("keys", ["manifest", "keygen", str(d.signer)])
    d.run.verb(
        "dataset",
        [
            *("manifest", "dataset", str(d.raw), "-o", str(d.manifests / "raw.dataset.json")),
            *("--signing-key", str(d.signer), "--license", "CC0-1.0"),
            *("--name", "fictional-clinical-notes"),
        ],
    )


def scrub_step(d: DemoRun) -> dict[str, Any]:
    """``safeguard scrub`` with the policy; returns the scrub report."""
    d.run.verb(
        "scrub",
        [
            *("scrub", str(d.raw), str(d.clean), "--policy", POLICY, "--field", "text"),
            *("--report", str(d.report), "--no-progress", "--force"),
        ],
    )
    scrub_report: dict[str, Any] = json.loads(d.report.read_text())
    s = d.summary
    s.pii_by_entity = dict(scrub_report.get("entities", {}))
    s.pii_found = sum(s.pii_by_entity.values())
    s.records_changed = int(scrub_report.get("records", {}).get("changed", 0))
    s.quarantined = int(scrub_report.get("records", {}).get("quarantined", 0))
    return scrub_report


def recall_step(d: DemoRun, scrub_report: dict[str, Any]) -> None:
    """Recall measured on the notes' own labels; the signed scrub manifest records it."""
    from safeguard.pii import Scrubber
    from safeguard.pii.evaluate import evaluate_scrubber, load_labelled
    from safeguard.provenance import scrub_predicate_from_report, write_manifest

    evaluation = evaluate_scrubber(Scrubber.from_policy(POLICY), load_labelled(d.labels))
    overall = evaluation.overall
    d.summary.measured_recall, d.summary.measured_precision = overall.recall, overall.precision
    (d.out / "data" / "scrub_evaluation.json").write_text(
        json.dumps(evaluation.to_dict(), indent=2)
    )
    measured_on = {
        "dataset": d.labels.name,
        "kind": "synthetic-templates",
        "documents": d.summary.notes,
        "sha256": hashlib.sha256(d.labels.read_bytes()).hexdigest(),
        "metric": "strict span recall",
    }
    predicate = scrub_predicate_from_report(
        scrub_report, measured_recall=overall.recall, measured_on=measured_on
    )
    write_manifest("scrub", [d.clean], predicate, d.manifests / "scrub.json", signing_key=d.signer)


def build_base_model(d: DemoRun) -> Path:
    """A tiny base model, built offline."""
    from safeguard.demo.tiny_lm import build_tiny_lm

    return build_tiny_lm(d.base, seed=d.seed)


def train_step(d: DemoRun, base: Path) -> None:
    """``safeguard train`` (DP-SGD) on the scrubbed notes, with its signed training manifest;
    the epsilon spent is read from the privacy report, the budget from the policy."""
    from safeguard.policy import load_policy

    d.run.verb(
        "train",
        [
            *("train", "--policy", POLICY, "--model", str(base), "--data", str(d.clean)),
            *("--out", str(d.model_dp), "--epochs", "1", "--batch-size", "16"),
            *("--max-length", "48", "--seed", str(d.seed), "--no-progress"),
            *("--manifest", str(d.manifests / "training.json"), "--signing-key", str(d.signer)),
        ],
    )
    dp_report = json.loads((d.model_dp / "privacy_report.json").read_text())
    s = d.summary
    s.epsilon_spent = float(dp_report["epsilon"])
    s.delta = float(dp_report["delta"])
    s.dp_steps = int(dp_report.get("steps", 0))
    s.unit_of_privacy = str(dp_report.get("unit_of_privacy", ""))
    policy = load_policy(POLICY)
    s.epsilon_budget = policy.privacy.target_epsilon if policy.privacy else float("nan")
    s.fpr = policy.watermark.false_positive_rate if policy.watermark else 1e-3


def generate_step(d: DemoRun) -> None:
    """A watermark key, watermarked generation with its signed manifest, and plain sampling."""
    prompts = d.out / "data" / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    d.run.verb(
        "keygen",
        [
            *("keygen", "--policy", POLICY, "--tokenizer", str(d.model_dp)),
            *("--out", str(d.wm_key), "--force"),
        ],
    )
    common = [
        *("--model", str(d.model_dp), "--key", str(d.wm_key), "--prompts", str(prompts)),
        *("--max-new-tokens", str(NEW_TOKENS), "--min-new-tokens", str(NEW_TOKENS // 2)),
        *("--seed", str(d.seed)),
    ]
    d.run.verb(
        "generate",
        [
            *("generate", *common, "--out", str(d.gens)),
            *("--manifest", str(d.manifests / "generation.json"), "--signing-key", str(d.signer)),
        ],
    )
    d.run.verb("generate", ["generate", *common, "--no-watermark", "--out", str(d.plain)])
    key_info = json.loads(d.wm_key.read_text())
    d.summary.watermark_key_id, d.summary.watermark_scheme = key_info["key_id"], key_info["scheme"]


def detect_step(d: DemoRun) -> None:
    """``safeguard detect`` on the watermarked and the plain texts; p-values into the summary."""
    s = d.summary
    for source, sink in ((d.gens, s.watermarked_p_values), (d.plain, s.plain_p_values)):
        _, stdout = d.run.verb(
            "detect",
            [
                *("detect", str(source), "--key", str(d.wm_key), "--tokenizer", str(d.model_dp)),
                *("--policy", POLICY, "--prompt-field", "prompt"),
            ],
            ok=(0, 1),
        )
        sink.extend(json.loads(line)["p_value"] for line in stdout.splitlines() if line.strip())


def _verify_chain(d: DemoRun, name: str, root: Path) -> tuple[int, str]:
    """``safeguard manifest verify --chain`` from the generation manifest under ``root``."""
    return d.run.verb(
        name,
        [
            *("manifest", "verify", str(root / "manifests" / "generation.json")),
            *("--pubkey", f"{root / 'keys' / 'signer.key'}.pub", "--chain", "--policy", POLICY),
        ],
        ok=(0, 1),
    )


def verify_step(d: DemoRun) -> None:
    """The whole chain verifies against the policy."""
    rc, stdout = _verify_chain(d, "verify", d.out)
    d.summary.chain_verified = rc == 0
    d.summary.chain_detail = stdout.strip().splitlines()[-1] if stdout.strip() else ""


def tamper_step(d: DemoRun) -> None:
    """A copy of the chain whose scrubbed data lost one record: verification must fail."""
    tampered = d.out / "tamper"
    tampered.mkdir(exist_ok=True)
    for sub in ("data", "manifests", "keys"):
        shutil.copytree(d.out / sub, tampered / sub, dirs_exist_ok=True)
    shutil.copytree(d.model_dp, tampered / "model-dp", dirs_exist_ok=True)
    shutil.copy(d.gens, tampered / d.gens.name)
    lines = (tampered / "data" / "clean_notes.jsonl").read_text().splitlines(keepends=True)
    (tampered / "data" / "clean_notes.jsonl").write_text("".join(lines[1:]))
    rc, _ = _verify_chain(d, "tamper", tampered)
    d.summary.tamper_detected = rc == 1
