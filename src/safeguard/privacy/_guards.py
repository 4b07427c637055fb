"""The budget guard on a DP optimizer (adapter; imports torch and opacus).

:func:`_attach_guards` wraps the Opacus ``DPOptimizer`` of a :class:`PrivateTraining`:
no noisy step beyond the hard budget, every step recorded in the accountant and the
ledger, the first step checked (trainable weights changed, frozen ones untouched), user
gradients summed before clipping, and a cheaper accumulation under ghost and bk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from safeguard.errors import BudgetExceededError, PrivacyError
from safeguard.privacy._hf import _unwrap
from safeguard.privacy._preflight import _check_first_step, _frozen_digest
from safeguard.privacy._training import PrivateTraining

__all__: list[str] = []


def _attach_guards(run: PrivateTraining) -> None:
    """Wrap ``run.optimizer``'s noise, step, clipping and accumulation (see the module doc)."""
    opt = run.optimizer
    trainable = [(n, p) for n, p in _unwrap(run.model).named_parameters() if p.requires_grad]
    if run.grad_sample_mode in {"ghost", "bk"}:
        opt.accumulate = _cloning_accumulate(opt)  # type: ignore[method-assign]
    if run.config.max_examples_per_user > 1 and run.grad_sample_mode != "bk":
        opt.clip_and_accumulate = _per_user_clip(run, opt.clip_and_accumulate)  # type: ignore[method-assign]
    opt.add_noise = _guarded_add_noise(run, trainable, opt.add_noise)  # type: ignore[method-assign]
    opt.attach_step_hook(_step_hook(run))
    opt.step = _checked_step(run, trainable, opt.step)  # type: ignore[method-assign]


def _guarded_add_noise(
    run: PrivateTraining, trainable: list[tuple[str, Any]], original: Callable[[], None]
) -> Callable[[], None]:
    """``add_noise`` that refuses a step beyond the budget and snapshots the first step."""
    opt = run.optimizer
    guard = run._guard

    def add_noise() -> None:
        if guard.steps_allowed is not None and guard.steps_taken >= guard.steps_allowed:
            _extend_allowance(run)
        if guard.steps_allowed is not None and guard.steps_taken >= guard.steps_allowed:
            for p in opt.params:
                p.summed_grad = None
                p.grad_sample = None
            raise BudgetExceededError(
                f"the next step would exceed the budget ε ≤ {run.config.max_epsilon:g} (spent "
                f"ε = {run.ledger.epsilon_spent():.4f} at δ = {run.delta:g} after {run.ledger.steps()} steps, "
                f"{run.ledger.accountant} accountant); the step was not taken. Save the model and stop, "
                "or raise the budget only if the data owner agrees"
            )
        if not guard.first_step_checked:
            guard.snapshot = {n: p.detach().clone() for n, p in trainable}
            guard.frozen_digest = _frozen_digest(_unwrap(run.model))
        original()

    return add_noise


def _step_hook(run: PrivateTraining) -> Callable[[Any], None]:
    """Record each noisy step in the accountant and the ledger."""

    def step_hook(optim: Any) -> None:
        run.accountant.step(noise_multiplier=optim.noise_multiplier, sample_rate=run.sample_rate)
        run.ledger.record_step(
            sample_rate=run.sample_rate,
            noise_multiplier=optim.noise_multiplier,
            max_grad_norm=optim.max_grad_norm,
        )
        run._guard.steps_taken += 1

    return step_hook


def _checked_step(
    run: PrivateTraining, trainable: list[tuple[str, Any]], original: Callable[..., Any]
) -> Callable[..., Any]:
    """``step`` that runs the first-step pre-flight check after the first noisy step."""
    guard = run._guard

    def step(closure: Callable[[], float] | None = None) -> Any:
        out = original(closure)
        if not guard.first_step_checked and guard.snapshot:
            guard.first_step_checked = True
            if run.config.preflight:
                _check_first_step(run, trainable)
        return out

    return step


def _per_user_clip(run: PrivateTraining, original: Callable[[], None]) -> Callable[[], None]:
    """``clip_and_accumulate`` that sums each user's per-example gradients before clipping.

    User-level DP with several examples per user: the clipping bound then holds per user.
    """
    opt = run.optimizer
    guard = run._guard

    def clip_and_accumulate() -> None:
        groups = guard.groups
        guard.groups = None
        if groups is not None:
            users = int(groups.max()) + 1 if groups.numel() else 0
            for p in opt.params:
                gs = p.grad_sample
                if gs is None:
                    continue
                if isinstance(gs, list) or gs.shape[0] != groups.shape[0]:
                    raise PrivacyError(
                        "per-user aggregation: per-sample gradients do not line up with the batch's users"
                    )
                agg = torch.zeros((users, *gs.shape[1:]), dtype=gs.dtype, device=gs.device)
                p.grad_sample = agg.index_add_(0, groups.to(gs.device), gs)
        original()

    return clip_and_accumulate


def _cloning_accumulate(opt: Any) -> Callable[[], None]:
    """``accumulate`` of the fast-gradient-clipping optimizer with a clone for its deepcopy.

    Opacus' fast-gradient-clipping optimizer copies each p.grad with copy.deepcopy, whose
    per-tensor Python overhead is a visible part of a small model's step; a clone is the
    same copy (the clipped sum is kept apart from p.grad, which zero_grad may zero in place).
    """

    def accumulate() -> None:
        for p in opt.params:
            if p.summed_grad is not None:
                p.summed_grad.add_(p.grad.detach())
            else:
                p.summed_grad = p.grad.detach().clone()

    return accumulate


def _extend_allowance(run: PrivateTraining) -> None:
    """Replace the planned allowance by the exact number of steps that fit the budget (once)."""
    guard = run._guard
    if guard.exact or run.config.max_epsilon is None:
        return
    more = run.ledger.steps_allowed(
        noise_multiplier=run.noise_multiplier,
        sample_rate=run.sample_rate,
        max_epsilon=run.config.max_epsilon,
    )
    guard.steps_allowed = guard.steps_taken + more
    guard.exact = True
