"""White-box one-run audit of our DP-SGD (adapter; imports torch and opacus).

The audited pipeline is :func:`~safeguard.privacy.make_private` itself (sampling,
clipping, noise, accounting), on a tiny linear model where canaries are cheap:
each canary is an example whose gradient points along its own coordinate
("Dirac canaries", Steinke et al. 2023, Sec. 6.2) and whose norm exceeds the
clipping bound, so it contributes exactly C along that coordinate every time it
is sampled. Real examples are a logistic-regression task on other coordinates.
The auditor's score for canary j is how far coordinate j moved during training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from safeguard.privacy.audit import AuditResult, guesses_from_scores
from safeguard.privacy.config import DPConfig
from safeguard.privacy.ledger import compute_epsilon

__all__ = ["audit_dp_sgd"]

log = logging.getLogger(__name__)


def _canary_loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # target: 0/1 for real examples (logistic loss), 2 for canaries (linear loss −θ·x).
    logits = outputs.squeeze(-1)
    is_canary = target == 2
    real = nn.functional.binary_cross_entropy_with_logits(
        logits, target.clamp(max=1).float(), reduction="none"
    )
    return torch.where(is_canary, -logits, real)


def audit_dp_sgd(
    *,
    noise_multiplier: float,
    sample_rate: float = 0.05,
    steps: int = 100,
    max_grad_norm: float = 1.0,
    num_canaries: int = 1000,
    num_guesses: int = 200,
    num_real: int = 1000,
    real_dim: int = 16,
    lr: float = 1.0,
    delta: float = 1e-5,
    accountant: str = "prv",
    confidence: float = 0.95,
    private: bool = True,
    tamper: Callable[[Any], None] | None = None,
    seed: int = 0,
) -> AuditResult:
    """Train once with canaries through :func:`make_private` and bound ε empirically.

    Args:
        noise_multiplier: σ the run is configured (and accounted) with.
        sample_rate: q, the expected fraction of the data in each batch.
        steps: Noisy steps.
        max_grad_norm: Clipping bound C.
        num_canaries: m; each is included with probability ½.
        num_guesses: r, fixed in advance (half "in", half "out").
        num_real: Real (non-canary) examples.
        real_dim: Features of the real task.
        lr: SGD learning rate.
        delta: δ of the claim.
        accountant: Accountant for the claimed ε.
        confidence: Confidence of the lower bound.
        private: ``False`` trains the same model with plain SGD (no clipping, no noise), the
            reference for how much a non-private run leaks.
        tamper: Called with the :class:`PrivateTraining` before training; lets a test break the
            mechanism (e.g. shrink the noise) while the claim stays at the configured σ.
        seed: Seed of canary inclusion, data, sampling and noise.

    Returns:
        An :class:`~safeguard.privacy.audit.AuditResult` whose ``claimed_epsilon`` is the
        accountant's ε for (σ, q, steps, δ).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    included = rng.random(num_canaries) < 0.5
    data = _canary_data(rng, included, num_real, real_dim, max_grad_norm)
    n = len(data)
    batch_size = max(1, round(sample_rate * n))
    model = nn.Linear(real_dim + num_canaries, 1, bias=False)
    nn.init.zeros_(model.weight)
    start = model.weight.detach().clone()
    details: dict[str, Any] = {
        "noise_multiplier": noise_multiplier,
        "sample_rate": batch_size / n,
        "steps": steps,
        "max_grad_norm": max_grad_norm,
        "private": private,
        "seed": seed,
    }
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    if private:
        config = _audit_config(
            noise_multiplier, max_grad_norm, batch_size, delta, steps, seed, accountant
        )
        weight = _train_private(model, opt, data, config, tamper, details)
    else:
        weight = _train_plain(model, opt, data, batch_size, steps, seed)
    moved = (weight.detach() - start)[0, real_dim:].cpu().numpy()
    guesses = guesses_from_scores(moved, num_guesses)
    claimed = compute_epsilon(accountant, [(noise_multiplier, batch_size / n, steps)], delta)
    return AuditResult.from_guesses(
        guesses=guesses,
        included=included,
        claimed_epsilon=claimed,
        delta=delta,
        confidence=confidence,
        details=details,
    )


def _audit_config(
    noise_multiplier: float,
    max_grad_norm: float,
    batch_size: int,
    delta: float,
    steps: int,
    seed: int,
    accountant: str,
) -> DPConfig:
    """The audited run's configuration (seeded; GDP's run trains under RDP accounting)."""
    return DPConfig(
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        batch_size=batch_size,
        target_delta=delta,
        steps=steps,
        seed=seed,
        preflight=False,
        accountant="rdp" if accountant == "gdp" else accountant,
    )


def _canary_data(
    rng: np.random.Generator,
    included: np.ndarray,
    num_real: int,
    real_dim: int,
    max_grad_norm: float,
) -> TensorDataset:
    """Real logistic-regression examples, then the included Dirac canaries (target 2)."""
    dim = real_dim + included.size
    w_true = rng.normal(size=real_dim)
    x_real = np.zeros((num_real, dim), dtype=np.float32)
    x_real[:, :real_dim] = rng.normal(size=(num_real, real_dim))
    y_real = (x_real[:, :real_dim] @ w_true + 0.5 * rng.normal(size=num_real) > 0).astype(np.int64)
    idx = np.flatnonzero(included)
    x_can = np.zeros((idx.size, dim), dtype=np.float32)
    x_can[np.arange(idx.size), real_dim + idx] = (
        10.0 * max_grad_norm
    )  # norm > C: clipped to exactly C
    x = torch.from_numpy(np.concatenate([x_real, x_can]))
    y = torch.from_numpy(np.concatenate([y_real, np.full(idx.size, 2, dtype=np.int64)]))
    return TensorDataset(x, y)


def _train_private(
    model: nn.Linear,
    opt: torch.optim.Optimizer,
    data: TensorDataset,
    config: DPConfig,
    tamper: Callable[[Any], None] | None,
    details: dict[str, Any],
) -> torch.Tensor:
    """Train through :func:`make_private` for ``config.steps`` steps; the trained weight."""
    from safeguard.privacy._opacus import make_private

    assert config.steps is not None and config.batch_size is not None
    run = make_private(
        model=model,
        optimizer=opt,
        data_loader=DataLoader(data, batch_size=config.batch_size),
        config=config,
        loss_fn=_canary_loss,
    )
    if tamper is not None:
        tamper(run)
    taken = 0
    while taken < config.steps:
        for batch in run.data_loader:
            run.train_step(list(batch), loss_fn=_canary_loss)
            taken += 1
            if taken >= config.steps:
                break
    details["ledger_steps"] = run.ledger.steps()
    return run.model._module.weight if hasattr(run.model, "_module") else model.weight


def _train_plain(
    model: nn.Linear,
    opt: torch.optim.Optimizer,
    data: TensorDataset,
    batch_size: int,
    steps: int,
    seed: int,
) -> torch.Tensor:
    """The same training with plain SGD (Poisson batches, no clipping, no noise)."""
    x, y = data.tensors
    n = x.shape[0]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        take = torch.rand(n, generator=gen) < batch_size / n
        if not bool(take.any()):
            continue
        loss = _canary_loss(model(x[take]), y[take]).sum() / batch_size
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.weight
