"""The demo's steps against a stand-in for the CLI: the exact command lines each step runs,
and what it reads back into the summary. No model, no Presidio."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from safeguard.demo import steps
from safeguard.demo.runner import StepRunner
from safeguard.demo.steps import NEW_TOKENS, POLICY, PROMPTS, DemoRun
from safeguard.demo.summary import DemoSummary


class FakeCLI:
    """Records each command line and does what the real verb would leave behind."""

    def __init__(self, rc: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.rc = rc

    def __call__(self, argv: list[str]) -> int:
        self.calls.append(argv)
        opt = {a: b for a, b in itertools.pairwise(argv) if a.startswith("--")}
        if argv[:2] == ["manifest", "keygen"]:
            Path(argv[2]).write_text("private")
        elif argv[0] == "scrub":
            report = {"entities": {"PERSON": 3, "DATE_TIME": 2}, "records": {"changed": 2}}
            Path(opt["--report"]).write_text(json.dumps(report))
        elif argv[0] == "train":
            Path(opt["--out"]).mkdir(parents=True, exist_ok=True)
            report = {"epsilon": 6.5, "delta": 1e-5, "steps": 4, "unit_of_privacy": "record"}
            (Path(opt["--out"]) / "privacy_report.json").write_text(json.dumps(report))
        elif argv[0] == "keygen":
            Path(opt["--out"]).write_text(json.dumps({"key_id": "k1", "scheme": "gumbel"}))
        elif argv[0] == "detect":
            p = 1e-9 if argv[1].endswith("generations.jsonl") else 0.4
            print(json.dumps({"p_value": p}) + "\n" + json.dumps({"p_value": p}))
        elif argv[:2] == ["manifest", "verify"]:
            print("  ok  something\nchain verified" if self.rc == 0 else "FAILED: broken")
            return self.rc
        return 0


def _demo(tmp_path: Path, cli: FakeCLI) -> DemoRun:
    for sub in ("data", "keys", "manifests"):
        (tmp_path / sub).mkdir()
    run = StepRunner(tmp_path, total=9, echo=lambda line: None, verbs=cli)
    return DemoRun(
        out=tmp_path, run=run, summary=DemoSummary(out_dir=str(tmp_path)), notes=6, seed=3
    )


def test_write_notes_is_seeded_and_labelled(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert steps.write_notes(a, tmp_path / "a.labels.jsonl", notes=6, seed=1) == 6
    steps.write_notes(b, tmp_path / "b.labels.jsonl", notes=6, seed=1)
    assert a.read_text() == b.read_text()
    records = [json.loads(line) for line in a.read_text().splitlines()]
    labels = [json.loads(line) for line in (tmp_path / "a.labels.jsonl").read_text().splitlines()]
    assert [r["note_id"] for r in records] == [f"N{i:04d}" for i in range(6)]
    assert {r["patient_id"] for r in records} == {"P0000", "P0001", "P0002"}
    for record, label in zip(records, labels, strict=True):
        assert label["text"] == record["text"]
        assert label["spans"] and all(
            0 <= s["start"] < s["end"] <= len(record["text"]) for s in label["spans"]
        )


def test_dataset_step_makes_a_key_once_and_a_signed_dataset_manifest(tmp_path: Path) -> None:
    cli = FakeCLI()
    d = _demo(tmp_path, cli)
    steps.dataset_step(d)
    out = str(tmp_path)
    assert cli.calls == [
        ["manifest", "keygen", f"{out}/keys/signer.key"],
        [
            "manifest", "dataset", f"{out}/data/raw_notes.jsonl",
            "-o", f"{out}/manifests/raw.dataset.json",
            "--signing-key", f"{out}/keys/signer.key",
            "--license", "CC0-1.0", "--name", "fictional-clinical-notes",
        ],
    ]  # fmt: skip
    assert d.summary.notes == 6 and d.raw.exists() and d.labels.exists()
    steps.dataset_step(d)  # the signing key is kept between runs
    assert [c[:2] for c in cli.calls[2:]] == [["manifest", "dataset"]]


def test_scrub_step_reads_the_report(tmp_path: Path) -> None:
    cli = FakeCLI()
    d = _demo(tmp_path, cli)
    report = steps.scrub_step(d)
    out = str(tmp_path)
    assert cli.calls == [
        [
            "scrub", f"{out}/data/raw_notes.jsonl", f"{out}/data/clean_notes.jsonl",
            "--policy", POLICY, "--field", "text",
            "--report", f"{out}/data/scrub_report.json", "--no-progress", "--force",
        ]
    ]  # fmt: skip
    assert report["entities"] == {"PERSON": 3, "DATE_TIME": 2}
    s = d.summary
    assert (s.pii_found, s.pii_by_entity, s.records_changed, s.quarantined) == (
        5,
        {"PERSON": 3, "DATE_TIME": 2},
        2,
        0,
    )


def test_train_step_reads_the_privacy_report_and_the_policy(tmp_path: Path) -> None:
    cli = FakeCLI()
    d = _demo(tmp_path, cli)
    steps.train_step(d, tmp_path / "model-base")
    out = str(tmp_path)
    assert cli.calls == [
        [
            "train", "--policy", POLICY, "--model", f"{out}/model-base",
            "--data", f"{out}/data/clean_notes.jsonl", "--out", f"{out}/model-dp",
            "--epochs", "1", "--batch-size", "16", "--max-length", "48", "--seed", "3",
            "--no-progress", "--manifest", f"{out}/manifests/training.json",
            "--signing-key", f"{out}/keys/signer.key",
        ]
    ]  # fmt: skip
    s = d.summary
    assert (s.epsilon_spent, s.delta, s.dp_steps, s.unit_of_privacy) == (6.5, 1e-5, 4, "record")
    assert s.epsilon_budget == 8.0 and s.fpr == 1e-4  # from healthcare-hipaa


def test_generate_step_keygen_watermarked_and_plain(tmp_path: Path) -> None:
    cli = FakeCLI()
    d = _demo(tmp_path, cli)
    steps.generate_step(d)
    out = str(tmp_path)
    common = [
        "--model", f"{out}/model-dp", "--key", f"{out}/keys/watermark.json",
        "--prompts", f"{out}/data/prompts.jsonl",
        "--max-new-tokens", str(NEW_TOKENS), "--min-new-tokens", str(NEW_TOKENS // 2),
        "--seed", "3",
    ]  # fmt: skip
    assert cli.calls == [
        [
            "keygen", "--policy", POLICY, "--tokenizer", f"{out}/model-dp",
            "--out", f"{out}/keys/watermark.json", "--force",
        ],
        [
            "generate", *common, "--out", f"{out}/generations.jsonl",
            "--manifest", f"{out}/manifests/generation.json",
            "--signing-key", f"{out}/keys/signer.key",
        ],
        ["generate", *common, "--no-watermark", "--out", f"{out}/plain.jsonl"],
    ]  # fmt: skip
    prompts = [json.loads(line)["prompt"] for line in d.out.joinpath("data/prompts.jsonl").open()]
    assert prompts == PROMPTS
    assert (d.summary.watermark_key_id, d.summary.watermark_scheme) == ("k1", "gumbel")


def test_detect_step_collects_p_values_of_both_sets(tmp_path: Path) -> None:
    cli = FakeCLI()
    d = _demo(tmp_path, cli)
    steps.detect_step(d)
    out = str(tmp_path)
    assert [c[:2] for c in cli.calls] == [
        ["detect", f"{out}/generations.jsonl"],
        ["detect", f"{out}/plain.jsonl"],
    ]
    assert cli.calls[0][2:] == [
        "--key", f"{out}/keys/watermark.json", "--tokenizer", f"{out}/model-dp",
        "--policy", POLICY, "--prompt-field", "prompt",
    ]  # fmt: skip
    assert d.summary.watermarked_p_values == [1e-9, 1e-9]
    assert d.summary.plain_p_values == [0.4, 0.4]


@pytest.mark.parametrize("rc", [0, 1])
def test_verify_step_reads_the_exit_code_and_the_verdict(tmp_path: Path, rc: int) -> None:
    cli = FakeCLI(rc)
    d = _demo(tmp_path, cli)
    steps.verify_step(d)
    out = str(tmp_path)
    assert cli.calls == [
        [
            "manifest", "verify", f"{out}/manifests/generation.json",
            "--pubkey", f"{out}/keys/signer.key.pub", "--chain", "--policy", POLICY,
        ]
    ]  # fmt: skip
    assert d.summary.chain_verified is (rc == 0)
    assert d.summary.chain_detail == ("chain verified" if rc == 0 else "FAILED: broken")


@pytest.mark.parametrize("rc", [1, 0])
def test_tamper_step_drops_a_record_from_a_copy_and_expects_a_failure(
    tmp_path: Path, rc: int
) -> None:
    cli = FakeCLI(rc)
    d = _demo(tmp_path, cli)
    d.clean.write_text('{"text": "a"}\n{"text": "b"}\n')
    d.model_dp.mkdir()
    (d.model_dp / "weights").write_text("w")
    d.gens.write_text("{}\n")
    steps.tamper_step(d)
    tampered = tmp_path / "tamper"
    assert (tampered / "data" / "clean_notes.jsonl").read_text() == '{"text": "b"}\n'
    assert d.clean.read_text() == '{"text": "a"}\n{"text": "b"}\n'  # the original is untouched
    assert (tampered / "model-dp" / "weights").exists() and (
        tampered / "generations.jsonl"
    ).exists()
    assert cli.calls == [
        [
            "manifest", "verify", f"{tampered}/manifests/generation.json",
            "--pubkey", f"{tampered}/keys/signer.key.pub", "--chain", "--policy", POLICY,
        ]
    ]  # fmt: skip
    assert d.summary.tamper_detected is (rc == 1)
    assert (tmp_path / "logs" / "tamper.log").exists()
