"""The ``safeguard demo`` main job: the healthcare story end to end, offline, on embedded defaults.

Each step runs a real ``safeguard`` verb (in this process, so libraries load once) and
writes its artifacts to the output folder::

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
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoSummary", "format_table", "run_demo"]

log = logging.getLogger(__name__)

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
class DemoSummary:
    """What the demo measured; ``steps`` maps each step to its seconds."""

    out_dir: str
    notes: int = 0
    pii_found: int = 0
    pii_by_entity: dict[str, int] = field(default_factory=dict)
    records_changed: int = 0
    quarantined: int = 0
    measured_recall: float = float("nan")
    measured_precision: float = float("nan")
    epsilon_spent: float = float("nan")
    epsilon_budget: float = float("nan")
    delta: float = float("nan")
    dp_steps: int = 0
    unit_of_privacy: str = ""
    watermark_key_id: str = ""
    watermark_scheme: str = ""
    fpr: float = float("nan")
    watermarked_p_values: list[float] = field(default_factory=list)
    plain_p_values: list[float] = field(default_factory=list)
    chain_verified: bool = False
    chain_detail: str = ""
    tamper_detected: bool = False
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def flagged_watermarked(self) -> int:
        return sum(p <= self.fpr for p in self.watermarked_p_values)

    @property
    def flagged_plain(self) -> int:
        return sum(p <= self.fpr for p in self.plain_p_values)

    @property
    def ok(self) -> bool:
        return (
            self.chain_verified
            and self.tamper_detected
            and self.flagged_watermarked == len(self.watermarked_p_values) > 0
            # A single false flag at the policy's rate is what the rate means (8 texts at 1e-4:
            # probability ~8e-4); two or more would be a defect (~3e-7).
            and self.flagged_plain <= 1
            and self.epsilon_spent <= self.epsilon_budget
        )


@contextlib.contextmanager
def _demo_registry(out: Path, model_dp: Path) -> Any:
    """A budget registry of the demo's own, started afresh with the demo's model folder.

    The demo's notes are fictional and regenerated identically on every run, so each run is
    a new story: its DP budget must not meet the previous run's (which the per-dataset
    registry and the anchors beside the model would rightly refuse) nor a user's real
    ``~/.safeguard`` registry.
    """
    import os
    import shutil

    home = out / ".safeguard-home"
    for folder in (home, model_dp):
        if folder.exists():
            shutil.rmtree(folder)
    before = os.environ.get("SAFEGUARD_HOME")
    os.environ["SAFEGUARD_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SAFEGUARD_HOME", None)
        else:
            os.environ["SAFEGUARD_HOME"] = before


class _Runner:
    """Runs CLI verbs in-process, logs their output, times steps, and reports progress."""

    def __init__(self, out: Path, total: int, echo: Callable[[str], None]) -> None:
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.total = total
        self.done = 0
        self.echo = echo
        self.times: dict[str, float] = {}

    def step(self, name: str) -> contextlib.AbstractContextManager[None]:
        runner = self

        class _Step(contextlib.AbstractContextManager[None]):
            def __enter__(self) -> None:
                runner.done += 1
                self.start = time.perf_counter()
                runner.echo(f"[{runner.done}/{runner.total}] {name} ...")

            def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
                runner.times[name] = time.perf_counter() - self.start
                if exc_type is None:
                    runner.echo(f"      done in {runner.times[name]:.1f} s")

        return _Step()

    def cli(self, name: str, argv: Sequence[str], ok: Sequence[int] = (0,)) -> tuple[int, str]:
        from safeguard.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(argv))
            except SystemExit as exc:
                rc = int(exc.code or 0)
        text = f"$ safeguard {' '.join(argv)}\n{out.getvalue()}{err.getvalue()}(exit {rc})\n"
        with open(self.logs / f"{name}.log", "a", encoding="utf-8") as fh:
            fh.write(text)
        if rc not in ok:
            raise RuntimeError(
                f"step {name!r} failed (exit {rc}); see {self.logs / (name + '.log')}:\n{text[-2000:]}"
            )
        return rc, out.getvalue()


def _write_notes(path: Path, labels_path: Path, *, notes: int, seed: int) -> int:
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


def run_demo(
    out_dir: str | Path = "safeguard-demo",
    *,
    notes: int = 120,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> DemoSummary:
    """Run the demo and write every artifact to ``out_dir``."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out_dir)
    for sub in ("data", "keys", "manifests"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    run = _Runner(out, total=9, echo=echo)
    summary = DemoSummary(out_dir=str(out))
    raw, labels = out / "data" / "raw_notes.jsonl", out / "data" / "raw_notes.labels.jsonl"
    clean, report = out / "data" / "clean_notes.jsonl", out / "data" / "scrub_report.json"
    signer = out / "keys" / "signer.key"
    manifests = out / "manifests"

    with run.step("fictional clinical notes + signing key + dataset manifest"):
        summary.notes = _write_notes(raw, labels, notes=notes, seed=seed)
        if not signer.exists():
            run.cli("keys", ["manifest", "keygen", str(signer)])
        run.cli(
            "dataset",
            [
                "manifest",
                "dataset",
                str(raw),
                "-o",
                str(manifests / "raw.dataset.json"),
                "--signing-key",
                str(signer),
                "--license",
                "CC0-1.0",
                "--name",
                "fictional-clinical-notes",
            ],
        )

    with run.step(f"scrub PHI with the {POLICY} policy"):
        run.cli(
            "scrub",
            [
                "scrub",
                str(raw),
                str(clean),
                "--policy",
                POLICY,
                "--field",
                "text",
                "--report",
                str(report),
                "--no-progress",
                "--force",
            ],
        )
        scrub_report = json.loads(report.read_text())
        summary.pii_by_entity = dict(scrub_report.get("entities", {}))
        summary.pii_found = sum(summary.pii_by_entity.values())
        summary.records_changed = int(scrub_report.get("records", {}).get("changed", 0))
        summary.quarantined = int(scrub_report.get("records", {}).get("quarantined", 0))

    with run.step("measure recall on the notes' labels"):
        from safeguard.pii import Scrubber
        from safeguard.pii.evaluate import evaluate_scrubber, load_labelled

        evaluation = evaluate_scrubber(Scrubber.from_policy(POLICY), load_labelled(labels))
        overall = evaluation.overall
        summary.measured_recall, summary.measured_precision = overall.recall, overall.precision
        (out / "data" / "scrub_evaluation.json").write_text(
            json.dumps(evaluation.to_dict(), indent=2)
        )
        _scrub_manifest(
            scrub_report,
            clean,
            manifests / "scrub.json",
            signer,
            overall.recall,
            {
                "dataset": labels.name,
                "kind": "synthetic-templates",
                "documents": summary.notes,
                "sha256": _sha256(labels),
                "metric": "strict span recall",
            },
        )

    with run.step("build a tiny base model (offline)"):
        from safeguard.demo.tiny_lm import build_tiny_lm

        base = build_tiny_lm(out / "model-base", seed=seed)

    model_dp = out / "model-dp"
    with (
        run.step(f"DP fine-tune on the scrubbed notes ({POLICY} privacy budget)"),
        _demo_registry(out, model_dp),
    ):
        run.cli(
            "train",
            [
                "train",
                "--policy",
                POLICY,
                "--model",
                str(base),
                "--data",
                str(clean),
                "--out",
                str(model_dp),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--max-length",
                "48",
                "--seed",
                str(seed),
                "--no-progress",
                "--manifest",
                str(manifests / "training.json"),
                "--signing-key",
                str(signer),
            ],
        )
        dp_report = json.loads((model_dp / "privacy_report.json").read_text())
        summary.epsilon_spent = float(dp_report["epsilon"])
        summary.delta = float(dp_report["delta"])
        summary.dp_steps = int(dp_report.get("steps", 0))
        summary.unit_of_privacy = str(dp_report.get("unit_of_privacy", ""))
        from safeguard.policy import load_policy

        policy = load_policy(POLICY)
        summary.epsilon_budget = policy.privacy.target_epsilon if policy.privacy else float("nan")
        summary.fpr = policy.watermark.false_positive_rate if policy.watermark else 1e-3

    wm_key = out / "keys" / "watermark.json"
    gens, plain = out / "generations.jsonl", out / "plain.jsonl"
    with run.step("watermarked generation (and plain sampling to compare)"):
        prompts = out / "data" / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
        run.cli(
            "keygen",
            [
                "keygen",
                "--policy",
                POLICY,
                "--tokenizer",
                str(model_dp),
                "--out",
                str(wm_key),
                "--force",
            ],
        )
        common = [
            "--model",
            str(model_dp),
            "--key",
            str(wm_key),
            "--prompts",
            str(prompts),
            "--max-new-tokens",
            str(NEW_TOKENS),
            "--min-new-tokens",
            str(NEW_TOKENS // 2),
            "--seed",
            str(seed),
        ]
        run.cli(
            "generate",
            [
                "generate",
                *common,
                "--out",
                str(gens),
                "--manifest",
                str(manifests / "generation.json"),
                "--signing-key",
                str(signer),
            ],
        )
        run.cli("generate", ["generate", *common, "--no-watermark", "--out", str(plain)])
        key_info = json.loads(wm_key.read_text())
        summary.watermark_key_id, summary.watermark_scheme = key_info["key_id"], key_info["scheme"]

    with run.step("detect: watermarked vs plain"):
        for source, sink in ((gens, summary.watermarked_p_values), (plain, summary.plain_p_values)):
            _, stdout = run.cli(
                "detect",
                [
                    "detect",
                    str(source),
                    "--key",
                    str(wm_key),
                    "--tokenizer",
                    str(model_dp),
                    "--policy",
                    POLICY,
                    "--prompt-field",
                    "prompt",
                ],
                ok=(0, 1),
            )
            sink.extend(json.loads(line)["p_value"] for line in stdout.splitlines() if line.strip())

    with run.step(f"verify the whole chain against {POLICY}"):
        rc, stdout = run.cli(
            "verify",
            [
                "manifest",
                "verify",
                str(manifests / "generation.json"),
                "--pubkey",
                f"{signer}.pub",
                "--chain",
                "--policy",
                POLICY,
            ],
            ok=(0, 1),
        )
        summary.chain_verified = rc == 0
        summary.chain_detail = stdout.strip().splitlines()[-1] if stdout.strip() else ""

    with run.step("tamper with the scrubbed data and verify again"):
        tampered = out / "tamper"
        tampered.mkdir(exist_ok=True)
        # A copy of the chain whose scrubbed data lost one record: verification must name the link.
        import shutil

        for sub in ("data", "manifests", "keys"):
            shutil.copytree(out / sub, tampered / sub, dirs_exist_ok=True)
        shutil.copytree(model_dp, tampered / "model-dp", dirs_exist_ok=True)
        for name in ("generations.jsonl",):
            shutil.copy(out / name, tampered / name)
        lines = (tampered / "data" / "clean_notes.jsonl").read_text().splitlines(keepends=True)
        (tampered / "data" / "clean_notes.jsonl").write_text("".join(lines[1:]))
        rc, _ = run.cli(
            "tamper",
            [
                "manifest",
                "verify",
                str(tampered / "manifests" / "generation.json"),
                "--pubkey",
                f"{tampered / 'keys' / 'signer.key'}.pub",
                "--chain",
                "--policy",
                POLICY,
            ],
            ok=(0, 1),
        )
        summary.tamper_detected = rc == 1

    summary.steps = dict(run.times)
    payload = {**asdict(summary), "ok": summary.ok}
    (out / "summary.json").write_text(json.dumps(payload, indent=2))
    return summary


def _scrub_manifest(
    report: dict[str, Any],
    clean: Path,
    target: Path,
    signer: Path,
    recall: float,
    measured_on: dict[str, Any],
) -> None:
    from safeguard.provenance import scrub_predicate_from_report, write_manifest

    predicate = scrub_predicate_from_report(report, measured_recall=recall, measured_on=measured_on)
    write_manifest("scrub", [clean], predicate, target, signing_key=signer)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def format_table(summary: DemoSummary) -> str:
    """The demo's summary as a plain-text table."""

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2] if ordered else float("nan")

    top = sorted(summary.pii_by_entity.items(), key=lambda kv: -kv[1])[:4]
    rows = [
        (
            "PII/PHI found and removed",
            f"{summary.pii_found} spans in {summary.records_changed}/{summary.notes} notes "
            f"({', '.join(f'{k} {v}' for k, v in top)}); {summary.quarantined} quarantined",
        ),
        (
            "PII recall, measured",
            f"recall {summary.measured_recall:.3f}, precision {summary.measured_precision:.3f} on "
            f"this demo's {summary.notes} template notes (an upper bound, not a guarantee; "
            "unseen text: benchmarks/RESULTS.md)",
        ),
        (
            "privacy budget",
            f"epsilon spent {summary.epsilon_spent:.2f} of {summary.epsilon_budget:g} "
            f"(delta {summary.delta:.1e}, {summary.dp_steps} DP-SGD steps, unit: {summary.unit_of_privacy})",
        ),
        ("watermark", f"{summary.watermark_scheme}, key {summary.watermark_key_id}"),
        (
            "watermarked texts",
            f"{summary.flagged_watermarked}/{len(summary.watermarked_p_values)} flagged at FPR "
            f"{summary.fpr:g}; median p = {median(summary.watermarked_p_values):.1e}",
        ),
        (
            "plain texts",
            f"{summary.flagged_plain}/{len(summary.plain_p_values)} flagged; median p = "
            f"{median(summary.plain_p_values):.2f}",
        ),
        (
            "provenance chain",
            "verified: raw -> scrubbed -> DP training -> model -> text"
            if summary.chain_verified
            else f"NOT verified: {summary.chain_detail}",
        ),
        (
            "tampering",
            "detected (one record removed from the scrubbed data)"
            if summary.tamper_detected
            else "NOT detected",
        ),
        ("artifacts", summary.out_dir),
        ("time", f"{sum(summary.steps.values()):.0f} s"),
    ]
    width = max(len(a) for a, _ in rows)
    lines = [f"{a.ljust(width)} | {b}" for a, b in rows]
    rule = "-" * width + "-+-" + "-" * max(len(b) for _, b in rows)
    return "\n".join([rule, *lines, rule])
