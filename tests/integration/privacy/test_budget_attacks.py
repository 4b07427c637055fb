"""The privacy budget cannot be spent twice, and the DP noise cannot be predicted.

Each test plays one way an operator (or a mistake) could reset the budget of a data set
through `safeguard train`: truncating the ledger, deleting it, deleting its anchor too,
training the same data into a new folder, or swapping in another ledger. Every one must be
refused with a clear message, and ε over all runs on one data set must stay within the
policy's budget (healthcare-hipaa: ε ≤ 8).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import warnings

import pytest

from safeguard.cli.main import main
from safeguard.privacy import BudgetLedger
from safeguard.privacy.anchors import ANCHOR_NAME, registry_path
from safeguard.provenance.digest import sha256_file

warnings.filterwarnings("ignore", message=".*Secure RNG.*")

BUDGET = 8.0  # healthcare-hipaa's target_epsilon


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from safeguard.demo.tiny_lm import build_tiny_lm

    return build_tiny_lm(
        tmp_path_factory.mktemp("lm") / "tiny", vocab_size=300, n_layer=1, n_embd=32
    )


def _data(path, n=40, patients=20):
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"note {i}: stable.", "patient_id": f"p{i % patients}"}))
            fh.write("\n")
    return path


def _train(model_dir, data, out, *extra, policy="healthcare-hipaa"):
    return main(
        [
            "train",
            "--policy",
            policy,
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
            "8",
            "--no-progress",
            "--plot-points",
            "2",
            *extra,
        ]
    )


@pytest.fixture
def first_run(model_dir, tmp_path, capsys):
    """A completed run that spent ε ≈ 6 of the budget of 8 on one data set."""
    data = _data(tmp_path / "notes.jsonl")
    out = tmp_path / "run1"
    assert _train(model_dir, data, out, "--target-epsilon", "6") == 0
    capsys.readouterr()
    ledger = BudgetLedger.load(out / "privacy_ledger.jsonl")
    assert 5.5 < ledger.epsilon_spent() <= 6.0 + 1e-6
    return data, out, ledger


def _truncate(path, drop):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) - drop]))
    return len(lines) - drop


def _refused(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("drop", [1, 3])
def test_a_truncated_ledger_is_refused(model_dir, first_run, capsys, drop):
    data, out, ledger = first_run
    kept = _truncate(out / "privacy_ledger.jsonl", drop)
    assert (
        BudgetLedger.load(out / "privacy_ledger.jsonl").steps() < ledger.steps()
    )  # still a valid chain
    assert _train(model_dir, data, out) == 1
    _refused(capsys, "truncated", f"recorded {len(ledger)}")
    assert len((out / "privacy_ledger.jsonl").read_text().splitlines()) == kept  # nothing appended


def test_a_deleted_ledger_is_refused_and_the_checkpoint_copy_continues_the_budget(
    model_dir, first_run, capsys
):
    data, out, ledger = first_run
    (out / "privacy_ledger.jsonl").unlink()
    assert _train(model_dir, data, out) == 1
    _refused(capsys, "no ledger", "--ledger", "dp_checkpoint.ledger.jsonl")
    assert not (out / "privacy_ledger.jsonl").exists()
    # The operator names the earlier ledger: the new run continues its budget.
    copy = out / "dp_checkpoint.ledger.jsonl"
    assert _train(model_dir, data, out, "--ledger", str(copy)) in (0, 1)
    after = BudgetLedger.load(out / "privacy_ledger.jsonl")
    assert after.extends(ledger.anchor())
    assert after.steps() > ledger.steps()
    assert after.epsilon_spent() <= BUDGET + 1e-6


def test_deleting_the_ledger_and_its_anchor_is_still_refused(model_dir, first_run, capsys):
    data, out, _ = first_run
    for name in ("privacy_ledger.jsonl", ANCHOR_NAME, "dp_checkpoint.ledger.jsonl"):
        (out / name).unlink()
    assert _train(model_dir, data, out) == 1
    _refused(capsys, "model.safetensors", "spend the privacy budget again")


def test_the_same_data_in_a_new_folder_is_refused_unless_it_continues_the_ledger(
    model_dir, first_run, tmp_path, capsys
):
    data, out, ledger = first_run
    assert registry_path(sha256_file(data)).exists()
    fresh = tmp_path / "run2"
    assert _train(model_dir, data, fresh) == 1
    _refused(capsys, "already trained on with DP", str(out / "privacy_ledger.jsonl"))
    # Continue the budget: ε over both folders stays within the policy's budget.
    status = _train(model_dir, data, fresh, "--ledger", str(out / "privacy_ledger.jsonl"))
    assert status in (0, 1)
    both = BudgetLedger.load(fresh / "privacy_ledger.jsonl")
    assert both.extends(ledger.anchor()) and both.steps() > ledger.steps()
    assert both.epsilon_spent() <= BUDGET + 1e-6
    # The first folder's ledger is now stale: continuing from it again is refused.
    assert (
        _train(model_dir, data, tmp_path / "run3", "--ledger", str(out / "privacy_ledger.jsonl"))
        == 1
    )
    _refused(capsys, "truncated")


def test_a_deleted_output_folder_does_not_reset_the_budget(model_dir, first_run, capsys):
    data, out, _ = first_run
    shutil.rmtree(out)
    assert _train(model_dir, data, out) == 1
    _refused(capsys, "already trained on with DP")


def test_another_ledger_is_refused(model_dir, first_run, tmp_path, capsys):
    data, out, _ = first_run
    other_data = _data(tmp_path / "other.jsonl", n=24, patients=12)
    other = tmp_path / "other"
    assert _train(model_dir, other_data, other, "--target-epsilon", "1") == 0
    capsys.readouterr()
    shutil.copy(other / "privacy_ledger.jsonl", out / "privacy_ledger.jsonl")
    assert _train(model_dir, data, out) == 1
    _refused(capsys, "truncated or replaced")


def test_resume_without_the_ledger_rebuilds_it_from_the_checkpoint(model_dir, tmp_path, capsys):
    data = _data(tmp_path / "notes.jsonl")
    out = tmp_path / "run"
    assert _train(model_dir, data, out, "--target-epsilon", "2") == 0
    steps = BudgetLedger.load(out / "privacy_ledger.jsonl").steps()
    (out / "privacy_ledger.jsonl").unlink()
    assert _train(model_dir, data, out, "--resume") == 0
    assert BudgetLedger.load(out / "privacy_ledger.jsonl").steps() == steps


# ---------------------------------------------------------------- predictable noise
def _weights(out):
    return (out / "model.safetensors").read_bytes()


def test_two_default_runs_draw_different_noise_and_store_no_seed(model_dir, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(model_dir, _data(tmp_path / "da.jsonl"), a, "--target-epsilon", "2") == 0
    assert _train(model_dir, _data(tmp_path / "db.jsonl", n=41), b, "--target-epsilon", "2") == 0
    assert _weights(a) != _weights(b)
    run_start = json.loads((a / "privacy_ledger.jsonl").read_text().splitlines()[0])
    assert run_start["config"]["seed"] is None
    assert run_start["noise_source"] == "os entropy" and run_start["dp_guarantee_void"] is False
    report = json.loads((a / "privacy_report.json").read_text())
    assert report.get("dp_guarantee", "holds") == "holds"
    # The checkpoint keeps no generator state, and only its owner can read it.
    import torch

    state = torch.load(a / "dp_checkpoint.pt", weights_only=False)
    assert state["rng"]["noise"] is None and state["rng"]["sampler"] is None
    assert stat.S_IMODE(os.stat(a / "dp_checkpoint.pt").st_mode) == 0o600


def test_a_fixed_dp_seed_is_refused_by_policies_that_do_not_allow_it(model_dir, tmp_path, capsys):
    data = _data(tmp_path / "d.jsonl")
    for policy in ("healthcare-hipaa", "default"):
        assert _train(model_dir, data, tmp_path / policy, "--dp-seed", "0", policy=policy) == 2
        _refused(capsys, "allow_seeded_noise")
        assert not (tmp_path / policy / "privacy_ledger.jsonl").exists()


def test_a_seeded_run_is_reproducible_and_marked_void(model_dir, tmp_path, capsys, monkeypatch):
    policy = tmp_path / "lab.yaml"
    policy.write_text(
        "schema_version: 1\nname: lab\nprivacy: {target_epsilon: 4.0, allow_seeded_noise: true}\n"
    )
    outs = []
    for i in range(2):
        out = tmp_path / f"seeded{i}"
        data = _data(tmp_path / f"d{i}.jsonl")  # identical bytes: the registry must be told
        if i:
            monkeypatch.setenv("SAFEGUARD_HOME", str(tmp_path / "home2"))  # another lab machine
        with pytest.warns(UserWarning, match="no DP guarantee"):
            assert _train(model_dir, data, out, "--dp-seed", "7", policy=str(policy)) == 0
        outs.append(out)
    assert _weights(outs[0]) == _weights(outs[1])
    report = json.loads((outs[0] / "privacy_report.json").read_text())
    assert report["dp_guarantee"].startswith("void")
    first = json.loads((outs[0] / "privacy_ledger.jsonl").read_text().splitlines()[0])
    assert first["dp_guarantee_void"] is True and first["config"]["seed"] == 7
