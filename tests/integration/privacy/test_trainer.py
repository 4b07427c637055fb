"""DPTrainer: Hugging Face Trainer with Poisson sampling, accumulation mapping, save/resume, budget stop."""

from __future__ import annotations

import warnings

import pytest
import torch

from safeguard.errors import BudgetExceededError, VerificationError
from safeguard.privacy import BudgetLedger, DPConfig, DPTrainer

warnings.filterwarnings("ignore", message=".*Secure RNG.*")


def _trainer(tiny, out, *, max_steps=4, save_steps=2, config=None, accumulation=2):
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=accumulation,
        max_steps=max_steps,
        learning_rate=0.05,
        logging_steps=1,
        save_steps=save_steps,
        save_strategy="steps",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    return DPTrainer(
        model=tiny.gpt2(),
        args=args,
        train_dataset=tiny.TokenDataset(32),
        eval_dataset=tiny.TokenDataset(8, seed=1),
        dp_config=config or DPConfig(noise_multiplier=1.0, target_delta=1e-3, seed=0),
    )


def test_trains_with_logical_batches_and_writes_ledger_and_report(tiny, tmp_path):
    tr = _trainer(tiny, tmp_path)
    tr.train()
    run = tr.dp_run
    assert run.sample_rate == pytest.approx(
        4 / 32
    )  # 2 per device × 2 accumulation = logical batch 4
    assert run.ledger.steps() == tr.state.global_step == 4
    assert any("epsilon" in h for h in tr.state.log_history)
    assert (tmp_path / "privacy_ledger.jsonl").exists() and (
        tmp_path / "privacy_report.json"
    ).exists()
    assert (tmp_path / "checkpoint-2" / "dp_state.pt").exists()
    metrics = tr.evaluate()
    assert "eval_loss" in metrics and torch.isfinite(torch.tensor(metrics["eval_loss"]))


def test_resume_continues_epsilon_never_resets(tiny, tmp_path):
    tr = _trainer(tiny, tmp_path, max_steps=4)
    tr.train()
    eps_before = tr.dp_run.epsilon_spent()
    resumed = _trainer(tiny, tmp_path, max_steps=6)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    assert resumed.state.global_step == 6
    assert resumed.dp_run.ledger.steps() == 6
    assert resumed.dp_run.epsilon_spent() > eps_before
    on_disk = BudgetLedger.load(tmp_path / "privacy_ledger.jsonl")
    assert on_disk.steps() == 6 and len(on_disk.runs()) == 2


def test_resume_from_an_earlier_checkpoint_still_counts_every_step_taken(tiny, tmp_path):
    tr = _trainer(tiny, tmp_path, max_steps=4)
    tr.train()
    resumed = _trainer(tiny, tmp_path, max_steps=4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert resumed.dp_run.ledger.steps() == 6  # steps 3-4 were taken twice; both count


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_damaged_dp_state_is_refused(tiny, tmp_path, damage):
    tr = _trainer(tiny, tmp_path, max_steps=2)
    tr.train()
    state = tmp_path / "checkpoint-2" / "dp_state.pt"
    if damage == "missing":
        state.unlink()
    else:
        state.write_bytes(b"garbage")
    with pytest.raises(VerificationError, match="refusing"):
        _trainer(tiny, tmp_path, max_steps=4).train(
            resume_from_checkpoint=str(tmp_path / "checkpoint-2")
        )


def test_budget_stop_saves_model_ledger_and_report(tiny, tmp_path):
    cfg = DPConfig(
        noise_multiplier=1.0, target_delta=1e-3, max_epsilon=1.6, accountant="rdp", seed=0
    )
    tr = _trainer(tiny, tmp_path, max_steps=20, save_steps=100, config=cfg)
    with pytest.raises(BudgetExceededError):
        tr.train()
    stop = tmp_path / "budget-stop"
    assert (stop / "config.json").exists() and (stop / "privacy_report.json").exists()
    ledger = BudgetLedger.load(stop / "privacy_ledger.jsonl")
    assert 0 < ledger.steps() < 20 and ledger.epsilon_spent() <= 1.6


def test_patient_level_dp_through_the_trainer(tiny, tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=3,
        max_steps=3,
        learning_rate=0.05,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    tr = DPTrainer(
        model=tiny.gpt2(),
        args=args,
        train_dataset=tiny.TokenDataset(40, groups=10),  # 10 patients, 4 notes each
        dp_config=DPConfig(
            noise_multiplier=1.0, target_delta=1e-3, unit="user", group_by="patient_id", seed=0
        ),
    )
    tr.train()
    run = tr.dp_run
    assert run.num_units == 10 and run.sample_rate == pytest.approx(3 / 10)
    assert run.ledger.steps() == 3
    report = (tmp_path / "privacy_report.json").read_text()
    assert "patient_id" in report
