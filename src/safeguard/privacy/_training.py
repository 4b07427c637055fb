"""`PrivateTraining`: what :func:`~safeguard.privacy.make_private` returns (adapter; imports torch).

The private model, optimizer, loader and ledger, used like their non-private
counterparts or through :meth:`PrivateTraining.train_step`; checkpoints that keep the
ledger and refuse to reset ε on resume.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from opacus.optimizers import DPOptimizer
from opacus.utils.batch_memory_manager import BatchMemoryManager
from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping
from torch import nn
from torch.utils.data import DataLoader

from safeguard.errors import DataError, VerificationError
from safeguard.privacy._bk import BookKeepingModule
from safeguard.privacy._hf import (
    _base_hf_model,
    _batch_len,
    _causal_lm_batch,
    _is_causal_lm,
    _split_batch,
    _unwrap,
    per_example_loss,
)
from safeguard.privacy.config import DPConfig
from safeguard.privacy.ledger import BudgetLedger

__all__ = ["PrivateTraining", "save_private"]


# --------------------------------------------------------------------------- guard
@dataclass
class _Guard:
    """Mutable run state behind the frozen :class:`PrivateTraining`."""

    steps_allowed: int | None
    steps_taken: int = 0
    exact: bool = False
    groups: torch.Tensor | None = None
    first_step_checked: bool = False
    snapshot: dict[str, torch.Tensor] = field(default_factory=dict)
    frozen_digest: str = ""
    hooks: list[Any] = field(default_factory=list)


# --------------------------------------------------------------------------- the run object
@dataclass(frozen=True, kw_only=True)
class PrivateTraining:
    """What :func:`make_private` returns: the private model, optimizer, loader and ledger.

    Use them like their non-private counterparts (``loss.backward(); optimizer.step()``,
    with ``loss`` the batch mean of per-example losses) with grad_sample_mode
    ``hooks``/``functorch``/``bk``, or call :meth:`train_step` (needed for ghost clipping,
    and handles Hugging Face batches and virtual steps). Under ``bk`` the backward leaves
    the sum of clipped per-sample gradients in ``p.grad`` (one backward, no per-sample
    gradients kept).

    Attributes:
        model: The model wrapped for per-sample gradients.
        optimizer: Opacus ``DPOptimizer``: clips, adds noise, records each step in the ledger.
        data_loader: Poisson-sampling loader over the same dataset (logical batches).
        ledger: The budget ledger (hash-chained record of every noisy step).
        config: The configuration.
        noise_multiplier: σ in use (calibrated when ``target_epsilon`` was given).
        sample_rate: q, the probability each unit is in a batch.
        delta: δ.
        num_units: N, the number of privacy units (examples, or users).
        grad_sample_mode: The mode chosen.
        planned_steps: Steps the calibration assumed (``None`` without a length).
        accountant: The Opacus accountant kept in step with the ledger.
    """

    model: nn.Module
    optimizer: DPOptimizer
    data_loader: DataLoader
    ledger: BudgetLedger
    config: DPConfig
    noise_multiplier: float
    sample_rate: float
    delta: float
    num_units: int
    grad_sample_mode: str
    planned_steps: int | None
    accountant: Any
    _guard: _Guard = field(repr=False)
    _drop_keys: tuple[str, ...] = ()

    # ------------------------------------------------------------------ queries
    def epsilon_spent(self, delta: float | None = None) -> float:
        """ε spent so far (all runs in the ledger) by the configured accountant."""
        return self.ledger.epsilon_spent(delta)

    @property
    def steps_taken(self) -> int:
        return self._guard.steps_taken

    @property
    def steps_allowed(self) -> int | None:
        """Further steps known to fit the hard budget (``None``: no hard budget).

        When the planned steps fit, this counts down to 0 at the end of the plan; an exact
        search then decides whether more steps fit.
        """
        return (
            None
            if self._guard.steps_allowed is None
            else self._guard.steps_allowed - self._guard.steps_taken
        )

    # ------------------------------------------------------------------ training
    def batches(self) -> Iterator[Any]:
        """Iterate over one epoch of physical batches (virtual steps when configured).

        Starting the iterator leaves the global torch RNG untouched, so that a run resumed
        from a checkpoint draws the same dropout masks as the uninterrupted run.
        """
        if self.config.physical_batch_size:
            with BatchMemoryManager(
                data_loader=self.data_loader,
                max_physical_batch_size=self.config.physical_batch_size,
                optimizer=self.optimizer,
            ) as loader:
                yield from _rng_neutral_iter(loader)
        else:
            yield from _rng_neutral_iter(self.data_loader)

    def loss_per_example(
        self, batch: Any, *, loss_fn: Callable[[Any, Any], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Forward a batch and return each example's loss, shape ``(batch,)``.

        Args:
            batch: A mapping (Hugging Face style, with ``labels``) or a ``(inputs..., target)``
                sequence.
            loss_fn: ``loss_fn(outputs, target) -> (batch,)`` for non-HF models; the default
                handles Hugging Face outputs (see :func:`per_example_loss`).
        """
        self._guard.groups = None
        if (
            self.config.max_examples_per_user > 1
            and isinstance(batch, Mapping)
            and self.config.group_by
        ):
            groups = batch.get(self.config.group_by)
            if isinstance(groups, torch.Tensor):
                self._guard.groups = groups.long()
        if isinstance(self.model, BookKeepingModule):
            # Per-user clipping units for the next backward (None: one unit per example).
            self.model.groups = self._guard.groups
        args, kwargs, labels = _split_batch(batch, self._drop_keys)
        if loss_fn is None and _is_causal_lm(_base_hf_model(self.model)):
            args, kwargs, labels = _causal_lm_batch(batch, args, kwargs, labels)
        outputs = self.model(*args, **kwargs)
        if loss_fn is not None:
            return loss_fn(outputs, labels)
        if labels is None:
            raise DataError(
                "the batch has no labels: pass `labels` in the batch (HF) or a (inputs, target) pair, "
                "or give `loss_fn`"
            )
        return per_example_loss(self.model, outputs, labels)

    def train_step(
        self, batch: Any, *, loss_fn: Callable[[Any, Any], torch.Tensor] | None = None
    ) -> float:
        """Forward, backward and (at the end of a logical batch) one noisy optimizer step.

        Returns the batch's mean loss (``nan`` for an empty Poisson batch, which still takes a
        noise-only step so that accounting stays exact).

        Raises:
            BudgetExceededError: The step would exceed the hard budget; it was not taken.
        """
        if _batch_len(batch) == 0:
            self._empty_step()
            return float("nan")
        losses = self.loss_per_example(batch, loss_fn=loss_fn)
        if self.grad_sample_mode == "ghost":
            DPTensorFastGradientClipping(self.model, self.optimizer, losses, "mean").backward()
        else:
            losses.mean().backward()
        try:
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)
        return float(losses.detach().mean())

    def prepare_empty_batch(self) -> None:
        """Set zero per-sample gradients for an empty Poisson batch; the next step adds noise only."""
        for p in self.optimizer.params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            if self.grad_sample_mode in {"ghost", "bk"}:
                p.grad = torch.zeros_like(p)

    def generator_states(self) -> dict[str, Any]:
        """States of the sampling and noise generators of a seeded run (``None`` otherwise).

        An unseeded run's generators are seeded from the OS's entropy and their states are
        never exported: with them, anyone could replay the noise.
        """
        sampler = getattr(self.data_loader, "batch_sampler", None)
        gen = getattr(sampler, "generator", None)
        noise = self.optimizer.generator
        if not self._seeded:
            return {"sampler": None, "noise": None}
        return {
            "sampler": gen.get_state() if isinstance(gen, torch.Generator) else None,
            "noise": noise.get_state() if isinstance(noise, torch.Generator) else None,
        }

    def set_generator_states(self, states: Mapping[str, Any]) -> None:
        """Restore :meth:`generator_states` output."""
        sampler = getattr(self.data_loader, "batch_sampler", None)
        gen = getattr(sampler, "generator", None)
        if isinstance(gen, torch.Generator) and states.get("sampler") is not None:
            gen.set_state(states["sampler"])
        if (
            isinstance(self.optimizer.generator, torch.Generator)
            and states.get("noise") is not None
        ):
            self.optimizer.generator.set_state(states["noise"])

    def _empty_step(self) -> None:
        self.prepare_empty_batch()
        try:
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimizer, accountant, ledger and RNG states."""
        sampler = getattr(self.data_loader, "batch_sampler", None)
        gen = getattr(sampler, "generator", None)
        return {
            "module_state_dict": _unwrap(self.model).state_dict(),
            "optimizer_state_dict": self.optimizer.original_optimizer.state_dict(),
            "privacy_accountant_state_dict": self.accountant.state_dict(),
            "ledger": self.ledger.to_lines(),
            "ledger_head": self.ledger.head(),
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps_taken": self._guard.steps_taken,
            "planned_steps": self.planned_steps,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                # The DP generators' states let anyone who reads the checkpoint replay the noise
                # (and, for a Mersenne Twister, recover the noise already drawn): they are kept
                # only for a seeded run, whose guarantee is void anyway. An unseeded run resumes
                # with fresh entropy.
                "sampler": gen.get_state()
                if self._seeded and isinstance(gen, torch.Generator)
                else None,
                "noise": self.optimizer.generator.get_state()
                if self._seeded and isinstance(self.optimizer.generator, torch.Generator)
                else None,
            },
        }

    @property
    def _seeded(self) -> bool:
        return self.config.seed is not None and not self.config.secure_mode

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Save :meth:`state_dict` to ``path`` (``torch.save``, mode 0600) and the ledger beside it.

        The checkpoint holds the weights (trained on private data) and, for a seeded run, the
        generator states, so it is readable by its owner only; it is replaced atomically.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        save_private(self.state_dict(), p)
        self.ledger.save(p.with_suffix(".ledger.jsonl"))
        return p

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` into this run.

        The ledger in the checkpoint is verified and must extend this run's ledger (same first
        entries); the accountant must agree with it. A corrupt checkpoint or ledger is refused:
        resuming never resets ε.

        Raises:
            VerificationError: The checkpoint or its ledger is corrupt or inconsistent.
        """
        try:
            state = torch.load(path, weights_only=False)
        except Exception as exc:
            raise VerificationError(
                f"checkpoint {str(path)!r} cannot be read ({exc}); refusing to resume"
            ) from exc
        self.load_state_dict(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (see :meth:`load_checkpoint`)."""
        try:
            saved = BudgetLedger.from_lines(state["ledger"])
        except (KeyError, ValueError) as exc:
            raise VerificationError(
                f"checkpoint ledger is missing or corrupt ({exc}); refusing to resume"
            ) from exc
        if saved.head() != state.get("ledger_head"):
            raise VerificationError(
                "checkpoint ledger head does not match the recorded head; refusing to resume"
            )
        acc_hist = [tuple(h) for h in state["privacy_accountant_state_dict"]["history"]]
        if sum(h[2] for h in acc_hist) != saved.steps():
            raise VerificationError(
                f"checkpoint accountant has {sum(h[2] for h in acc_hist)} steps but its ledger has "
                f"{saved.steps()}; refusing to resume"
            )
        _replace_ledger(self.ledger, saved)
        _unwrap(self.model).load_state_dict(state["module_state_dict"])
        self.optimizer.original_optimizer.load_state_dict(state["optimizer_state_dict"])
        self.accountant.load_state_dict(state["privacy_accountant_state_dict"])
        self.accountant.history = [
            tuple(h) for h in self.ledger.history()
        ]  # the ledger is the record
        self._guard.steps_taken = int(state.get("steps_taken", 0))
        self._guard.first_step_checked = True
        if self.config.max_epsilon is not None:
            self._guard.steps_allowed = self._guard.steps_taken
            self._guard.exact = False
        rng = state.get("rng", {})
        if rng.get("torch") is not None:
            torch.set_rng_state(rng["torch"])
        if rng.get("numpy") is not None:
            np.random.set_state(rng["numpy"])
        if rng.get("python") is not None:
            random.setstate(rng["python"])
        sampler = getattr(self.data_loader, "batch_sampler", None)
        gen = getattr(sampler, "generator", None)
        if isinstance(gen, torch.Generator) and rng.get("sampler") is not None:
            gen.set_state(rng["sampler"])
        if isinstance(self.optimizer.generator, torch.Generator) and rng.get("noise") is not None:
            self.optimizer.generator.set_state(rng["noise"])

    def close(self) -> None:
        """Remove the hooks this wrapper installed."""
        for h in self._guard.hooks:
            h.remove()
        self._guard.hooks.clear()
        if isinstance(self.model, BookKeepingModule):
            self.model.remove_hooks()


def _rng_neutral_iter(loader: Any) -> Iterator[Any]:
    state = torch.get_rng_state()
    it = iter(loader)
    torch.set_rng_state(state)
    return it


def _is_prefix(short: list[dict[str, Any]], long: list[dict[str, Any]]) -> bool:
    return len(short) <= len(long) and all(
        a["hash"] == b["hash"] for a, b in zip(short, long, strict=False)
    )


def save_private(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` through a 0600 temporary file, then rename it."""
    from safeguard._files import open_private

    tmp = path.with_name(path.name + ".tmp")
    try:
        with open_private(tmp, "wb") as fh:
            torch.save(obj, fh)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _replace_ledger(target: BudgetLedger, saved: BudgetLedger) -> None:
    """Reconcile ``target`` (this run's ledger) with a checkpoint's ledger, conservatively.

    ``target`` normally ends with the run_start that :func:`make_private` just recorded; what
    came before it (``base``) and the checkpoint's ledger must be one history. The longer of
    the two wins: a ledger that went on past the checkpoint (training continued, then stopped)
    keeps those steps, which count even though their updates were lost.
    """
    mine = list(target.entries())
    theirs = list(saved.entries())
    starts = [i for i, e in enumerate(mine) if e["kind"] == "run_start"]
    base = mine[: starts[-1]] if starts else []
    if _is_prefix(mine, theirs) or _is_prefix(base, theirs):
        keep = theirs
    elif _is_prefix(theirs, base):
        keep = base
    else:
        raise VerificationError(
            "the checkpoint's ledger and this ledger record different histories; refusing to resume "
            "rather than restart the budget"
        )
    target._entries = [dict(e) for e in keep]
    target._eps_cache.clear()
    if target.path is not None:
        target.save(target.path)
    target.write_anchors()
