"""`safeguard train` end to end: the real entry point on a tiny local model and JSONL data."""

from __future__ import annotations

import json
import warnings

import pytest

from safeguard.cli.main import main
from safeguard.privacy import BudgetLedger

warnings.filterwarnings("ignore", message=".*Secure RNG.*")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from safeguard.demo.tiny_lm import build_tiny_lm

    return build_tiny_lm(
        tmp_path_factory.mktemp("lm") / "tiny", vocab_size=300, n_layer=1, n_embd=32
    )


def _data(path, n=48, patients=12, broken=True):
    with path.open("w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "text": f"patient note {i} seen today, stable.",
                        "patient_id": f"p{i % patients}",
                    }
                )
                + "\n"
            )
        if broken:
            fh.write("{not json\n")
            fh.write(json.dumps({"text": "no patient id here"}) + "\n")
            fh.write('{"text": "lone \\ud800 surrogate", "patient_id": "p1"}\n')
    if broken:
        with path.open("ab") as fh:
            fh.write(b'{"text": "bad \xff byte", "patient_id": "p2"}\n')
    return path


def _train(model_dir, data, out, *extra):
    return main(
        [
            "train",
            "--policy",
            "healthcare-hipaa",
            "--model",
            str(model_dir),
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--max-length",
            "12",
            "--no-progress",
            "--plot-points",
            "3",
            *extra,
        ]
    )


def test_train_writes_model_ledger_report_and_quarantine(model_dir, tmp_path, capsys):
    import os
    import stat

    out = tmp_path / "out"
    data = _data(tmp_path / "d.jsonl")
    # Unusable records stop the run before any budget is spent...
    assert _train(model_dir, data, out, "--batch-size", "2", "--target-epsilon", "3") == 2
    err = capsys.readouterr().err
    assert "4 records" in err and "--allow-quarantine" in err and "Traceback" not in err
    assert not (out / "privacy_ledger.jsonl").exists()
    # ...unless the user says to train on the rest.
    assert (
        _train(
            model_dir,
            data,
            out,
            "--batch-size",
            "2",
            "--target-epsilon",
            "3",
            "--allow-quarantine",
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 6 and 2.9 <= summary["epsilon"] <= 3.0
    assert json.loads((out / "privacy_report.json").read_text())["max_epsilon"] == 8.0
    assert "patient_id" in summary["unit_of_privacy"]
    for name in (
        "config.json",
        "privacy_ledger.jsonl",
        "privacy_report.json",
        "privacy_epsilon.png",
        "dp_checkpoint.pt",
    ):
        assert (out / name).exists(), name
    quarantined = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert {q["line"] for q in quarantined} == {49, 50, 51, 52}
    reasons = " ".join(q["reason"] for q in quarantined)
    assert "lone surrogate" in reasons and "invalid UTF-8" in reasons
    assert stat.S_IMODE(os.stat(out / "quarantine.jsonl").st_mode) == 0o600
    report = json.loads((out / "privacy_report.json").read_text())
    assert (
        report["records_quarantined"] == 4
        and report["unit_of_privacy"] == summary["unit_of_privacy"]
    )


def test_lora_resume_keeps_the_budget_and_a_new_run_cannot_exceed_it(model_dir, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "schema_version: 1\nname: fast\nprivacy:\n  target_epsilon: 3.0\n  accountant: rdp\n"
        "  unit: user\n  group_by: patient_id\n"
    )
    out = tmp_path / "out"
    data = _data(tmp_path / "d.jsonl", broken=False)
    assert _train(model_dir, data, out, "--lora", "--policy", str(policy)) == 0
    first = BudgetLedger.load(out / "privacy_ledger.jsonl")
    assert (out / "adapter_config.json").exists()
    assert first.steps() == 3 and 2.9 < first.epsilon_spent() <= 3.0
    # Resuming a finished run takes no step and keeps ε.
    assert _train(model_dir, data, out, "--lora", "--resume", "--policy", str(policy)) == 0
    assert BudgetLedger.load(out / "privacy_ledger.jsonl").epsilon_spent() == pytest.approx(
        first.epsilon_spent()
    )
    # A new fine-tune of the same data in the same folder counts the earlier run: the total stays
    # within the policy's ε (σ is calibrated for what is left).
    assert _train(model_dir, data, out, "--lora", "--policy", str(policy)) == 0
    both = BudgetLedger.load(out / "privacy_ledger.jsonl")
    assert len(both.runs()) == 2 and both.steps() == 6
    assert first.epsilon_spent() < both.epsilon_spent() <= 3.0
    assert both.runs()[1]["noise_multiplier"] > 5 * both.runs()[0]["noise_multiplier"]


def test_bad_input_exit_codes(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{}\n")
    assert _train(model_dir, empty, out) == 2
    assert "no usable records" in capsys.readouterr().err
    assert _train(model_dir, _data(tmp_path / "d.jsonl"), tmp_path / "fresh", "--resume") == 1
    (out / "privacy_ledger.jsonl").write_text("tampered\n")
    assert _train(model_dir, _data(tmp_path / "d.jsonl"), out) == 1
    assert "refusing" in capsys.readouterr().err


def test_train_writes_a_signed_training_manifest(model_dir, tmp_path, capsys):
    signer = tmp_path / "signer.key"
    assert main(["manifest", "keygen", str(signer)]) == 0
    data = _data(tmp_path / "clean.jsonl", broken=False)
    out, manifest = tmp_path / "model-dp", tmp_path / "manifests" / "training.json"
    manifest.parent.mkdir()
    assert (
        _train(model_dir, data, out, "--manifest", str(manifest), "--signing-key", str(signer)) == 0
    )
    capsys.readouterr()
    assert main(["manifest", "verify", str(manifest), "--pubkey", f"{signer}.pub"]) == 0
    statement = json.loads(
        __import__("base64").b64decode(json.loads(manifest.read_text())["payload"])
    )
    ledger = BudgetLedger.load(out / "privacy_ledger.jsonl")
    spent = [
        b
        for b in statement["predicate"]["runDetails"]["byproducts"]
        if b.get("name") == "privacy-ledger"
    ]
    assert spent and abs(spent[0]["annotations"]["epsilon_spent"] - ledger.epsilon_spent()) < 1e-6
    # a manifest inside the folder it digests is refused before training
    assert (
        _train(model_dir, data, tmp_path / "m2", "--manifest", str(tmp_path / "m2" / "t.json")) == 2
    )
