"""Hugging Face ``Trainer`` with DP-SGD: :class:`DPTrainer` (adapter; imports transformers).

The Trainer keeps its loop, logging, evaluation, LR schedule and checkpoints;
:func:`~safeguard.privacy.make_private` supplies the Poisson data loader, the
per-sample-gradient model and the DP optimizer. Mapping onto the Trainer:

* logical batch = ``per_device_train_batch_size × gradient_accumulation_steps``
  (expected size of each Poisson batch, q·N) unless ``DPConfig.batch_size`` is set;
  each logical batch is split into physical batches of
  ``per_device_train_batch_size`` inside :meth:`DPTrainer.training_step`, so the
  Trainer runs with one accumulation step and takes one noisy step per logical batch;
* the Trainer's own gradient clipping is turned off (DP-SGD clips per example);
* checkpoints get a ``dp_state.pt`` (accountant, ledger, sampler and noise RNG
  states) beside the Trainer's files; resuming verifies it and continues ε,
  never restarts it; a missing or corrupt one is refused;
* the ledger is appended to ``<output_dir>/privacy_ledger.jsonl`` as training runs,
  and a budget stop saves the model to ``<output_dir>/budget-stop`` before raising.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch

from safeguard.errors import BudgetExceededError, ConfigError, VerificationError, missing_dependency
from safeguard.privacy._hf import _batch_len
from safeguard.privacy._opacus import make_private
from safeguard.privacy._training import PrivateTraining, save_private
from safeguard.privacy.config import DPConfig
from safeguard.privacy.ledger import BudgetLedger
from safeguard.privacy.report import write_report

try:
    from transformers import Trainer
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing_dependency("transformers", "dp") from exc

__all__ = ["DP_STATE_NAME", "LEDGER_NAME", "DPTrainer"]

log = logging.getLogger(__name__)

DP_STATE_NAME = "dp_state.pt"
LEDGER_NAME = "privacy_ledger.jsonl"


def _chunks(batch: Any, size: int) -> list[Any]:
    n = _batch_len(batch)
    if n <= size:
        return [batch]
    out = []
    for start in range(0, n, size):
        out.append(
            {
                k: (v[start : start + size] if isinstance(v, torch.Tensor) else v)
                for k, v in batch.items()
            }
        )
    return out


class DPTrainer(Trainer):
    """A ``transformers.Trainer`` that trains with DP-SGD and keeps a budget ledger.

    Args:
        *args: Passed to ``Trainer`` (``model``, ``args``, ``train_dataset``, ...).
        dp_config: The :class:`DPConfig`. With ``target_epsilon`` and neither ``epochs`` nor
            ``steps``, the length comes from ``args.max_steps`` or ``args.num_train_epochs``.
        ledger: A ledger or path; default ``<output_dir>/privacy_ledger.jsonl`` (appended to:
            earlier runs on the same data count toward the budget).
        **kwargs: Passed to ``Trainer``. Without ``optimizers``, DP-SGD with momentum 0.9 at
            ``args.learning_rate`` is used (DP-Adam often fails to learn at small N).
    """

    def __init__(
        self,
        *args: Any,
        dp_config: DPConfig,
        ledger: BudgetLedger | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(dp_config, DPConfig):
            raise ConfigError(f"`dp_config` must be a DPConfig, got {type(dp_config).__name__}")
        ta = self.args
        self._physical = int(ta.per_device_train_batch_size)
        logical = dp_config.batch_size or self._physical * int(ta.gradient_accumulation_steps)
        changes: dict[str, Any] = {"batch_size": logical}
        if (
            dp_config.target_epsilon is not None
            and dp_config.epochs is None
            and dp_config.steps is None
        ):
            if ta.max_steps and ta.max_steps > 0:
                changes["steps"] = int(ta.max_steps)
            else:
                changes["epochs"] = float(ta.num_train_epochs)
        self.dp_config = dataclasses.replace(dp_config, **changes)
        if ta.max_grad_norm and ta.max_grad_norm > 0:
            log.info(
                "Trainer gradient clipping (max_grad_norm=%g) turned off: DP-SGD clips per example",
                ta.max_grad_norm,
            )
        ta.max_grad_norm = 0.0
        ta.gradient_accumulation_steps = 1
        ta.ignore_data_skip = True  # the Poisson sampler's state is restored instead
        self._ledger_arg = ledger
        self.dp_run: PrivateTraining | None = None

    # ------------------------------------------------------------------ setup
    def _ledger_path(self) -> Path:
        return Path(self.args.output_dir) / LEDGER_NAME

    def _setup_dp(self, resume: str | None) -> None:
        config = self.dp_config
        state = None
        if resume is not None:
            state = _load_dp_state(resume)
            config = dataclasses.replace(
                config,
                target_epsilon=None,
                noise_multiplier=float(state["noise_multiplier"]),
                max_epsilon=config.max_epsilon,
                preflight=False,
            )
        ledger = self._ledger_arg
        if ledger is None:
            # The default ledger is anchored in output_dir: a deleted or truncated ledger next
            # to a trained model is refused rather than restarted (safeguard.privacy.anchors).
            from safeguard.privacy.anchors import open_run_ledger

            saved_copy = Path(resume) / LEDGER_NAME if resume is not None else None
            main = self._ledger_path()
            missing = not (main.exists() and main.stat().st_size > 0)
            ledger = open_run_ledger(
                self.args.output_dir,
                ledger_name=LEDGER_NAME,
                continue_from=saved_copy
                if missing and saved_copy is not None and saved_copy.exists()
                else None,
            )
        if not isinstance(ledger, BudgetLedger):
            ledger = BudgetLedger(ledger)
        if state is not None:
            saved = BudgetLedger.from_lines(state["ledger"])
            mine = [e["hash"] for e in ledger.entries()]
            theirs = [e["hash"] for e in saved.entries()]
            if mine[: len(theirs)] != theirs:
                if theirs[: len(mine)] == mine:
                    for e in list(saved.entries())[len(mine) :]:
                        ledger._append(
                            {k: v for k, v in e.items() if k not in {"index", "prev", "hash"}}
                        )
                else:
                    raise VerificationError(
                        f"the ledger at {ledger.path} and the checkpoint's ledger disagree; refusing to resume "
                        "rather than restart the budget"
                    )
        model = self.model
        optimizer = self.optimizer
        if optimizer is None:
            optimizer = torch.optim.SGD(
                [p for p in model.parameters() if p.requires_grad],
                lr=self.args.learning_rate,
                momentum=0.9,
                weight_decay=self.args.weight_decay,
            )
        loader = torch.utils.data.DataLoader(
            self.train_dataset, batch_size=self.dp_config.batch_size, collate_fn=self.data_collator
        )
        run = make_private(
            model=model, optimizer=optimizer, data_loader=loader, config=config, ledger=ledger
        )
        if state is not None:
            run.set_generator_states(state["generators"])
            run._guard.first_step_checked = True
        self.dp_run = run
        self.optimizer = run.optimizer

    # ------------------------------------------------------------------ Trainer hooks
    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        if self.dp_run is None:
            raise ConfigError("call DPTrainer.train(); the DP loader is built there")
        return self.dp_run.data_loader

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.dp_run is None:
            raise ConfigError("call DPTrainer.train(); the DP optimizer is built there")
        self.optimizer = self.dp_run.optimizer
        return self.optimizer

    def training_step(
        self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """Forward/backward one logical (Poisson) batch in physical chunks; the Trainer then steps."""
        run = self.dp_run
        assert run is not None
        run.model.train()
        run.optimizer.zero_grad(set_to_none=True)  # the Trainer only zeroes the model's .grad
        inputs = self._prepare_inputs(inputs)
        n = _batch_len(inputs)
        if n == 0:
            run.prepare_empty_batch()
            return torch.tensor(0.0, device=self.args.device)
        from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

        total = torch.zeros((), device=self.args.device)
        # With several examples per user, a user's examples must be clipped together: no split.
        size = n if self.dp_config.max_examples_per_user > 1 else self._physical
        chunks = _chunks(inputs, size)
        for k, chunk in enumerate(chunks):
            losses = run.loss_per_example(chunk)
            if run.grad_sample_mode == "ghost":
                DPTensorFastGradientClipping(run.model, run.optimizer, losses, "mean").backward()
            else:
                losses.mean().backward()
            total = total + losses.detach().sum()
            if k < len(chunks) - 1:  # virtual step: clip and accumulate, no noise
                run.optimizer.signal_skip_step(do_skip=True)
                run.optimizer.step()
                run.optimizer.zero_grad()
        return total / n

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        run = self.dp_run
        if run is None:
            return
        folder = (
            Path(self._get_output_dir(trial=trial))
            / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        )
        folder.mkdir(parents=True, exist_ok=True)
        save_private(
            {
                "ledger": run.ledger.to_lines(),
                "ledger_head": run.ledger.head(),
                "privacy_accountant_state_dict": run.accountant.state_dict(),
                "noise_multiplier": run.noise_multiplier,
                "sample_rate": run.sample_rate,
                "generators": run.generator_states(),
            },
            folder / DP_STATE_NAME,
        )
        run.ledger.save(folder / LEDGER_NAME)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """Train with DP-SGD; ``resume_from_checkpoint`` continues the accountant and ledger.

        Raises:
            BudgetExceededError: The budget ran out; the model was saved to
                ``<output_dir>/budget-stop`` with the ledger and report first.
            VerificationError: The checkpoint's DP state is missing or corrupt.
        """
        resume = resume_from_checkpoint
        if resume is True:
            resume = get_last_checkpoint(self.args.output_dir)
            if resume is None:
                raise VerificationError(
                    f"no checkpoint found in {self.args.output_dir!r} to resume from"
                )
        self._setup_dp(str(resume) if resume else None)
        try:
            out = super().train(resume_from_checkpoint=resume, **kwargs)
        except BudgetExceededError:
            stop = Path(self.args.output_dir) / "budget-stop"
            self.save_model(str(stop))
            self._write_privacy_files(stop)
            log.error("privacy budget exhausted; model, ledger and report saved to %s", stop)
            raise
        self._write_privacy_files(Path(self.args.output_dir))
        return out

    def _write_privacy_files(self, folder: Path) -> None:
        run = self.dp_run
        if run is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        run.ledger.save(folder / LEDGER_NAME)
        write_report(run.ledger, folder / "privacy_report.json")

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self.dp_run is not None and "loss" in logs:
            logs = {**logs, "epsilon": self.dp_run.epsilon_spent()}
        super().log(logs, *args, **kwargs)


def _load_dp_state(checkpoint: str) -> dict[str, Any]:
    path = Path(checkpoint) / DP_STATE_NAME
    if not path.exists():
        raise VerificationError(
            f"{path} is missing: this checkpoint has no DP state; refusing to resume (ε would restart at 0)"
        )
    try:
        state = torch.load(path, weights_only=False)
        saved = BudgetLedger.from_lines(state["ledger"])
    except Exception as exc:
        raise VerificationError(f"{path} is corrupt ({exc}); refusing to resume") from exc
    if saved.head() != state.get("ledger_head"):
        raise VerificationError(f"{path}: ledger head mismatch; refusing to resume")
    steps = sum(h[2] for h in state["privacy_accountant_state_dict"]["history"])
    if steps != saved.steps():
        raise VerificationError(
            f"{path}: accountant ({steps} steps) and ledger ({saved.steps()}) disagree"
        )
    return state
