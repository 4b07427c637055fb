"""The DP-SGD mechanism on toy tensors: clipping bound and noise standard deviation σC/B."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from safeguard.privacy import DPConfig, make_private

warnings.filterwarnings("ignore", message=".*Secure RNG.*")


def _linear_loss(outputs, target):
    return -outputs.squeeze(-1)  # per-example gradient w.r.t. the weight is exactly the input


def _run(x, *, sigma=1.0, clip=1.0, batch_size=4, lr=1.0, seed=0):
    model = nn.Linear(x.shape[1], 1, bias=False)
    nn.init.zeros_(model.weight)
    data = torch.utils.data.TensorDataset(x, torch.zeros(len(x)))
    run = make_private(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        data_loader=torch.utils.data.DataLoader(data, batch_size=batch_size),
        config=DPConfig(
            noise_multiplier=sigma,
            max_grad_norm=clip,
            target_delta=1e-4,
            seed=seed,
            preflight=False,
        ),
        loss_fn=_linear_loss,
    )
    return model, run


@pytest.mark.parametrize("scale", [0.3, 1.0, 25.0])
def test_each_example_contributes_at_most_the_clipping_bound(scale):
    torch.manual_seed(0)
    x = torch.randn(8, 6)
    x = scale * x / x.norm(dim=1, keepdim=True)  # every per-example gradient has norm `scale`
    _model, run = _run(x, clip=1.0)
    for i in range(len(x)):
        losses = run.loss_per_example([x[i : i + 1], torch.zeros(1)], loss_fn=_linear_loss)
        losses.mean().backward()
        run.optimizer.clip_and_accumulate()
        contribution = run.model._module.weight.summed_grad
        assert float(contribution.norm()) == pytest.approx(min(scale, 1.0), rel=1e-5)
        run.optimizer.zero_grad(set_to_none=True)
        run.model._module.weight.summed_grad = None


def _noise_sample(sigma_used, *, sigma_claimed=2.0, clip=0.5, dim=4000, batch_size=4, n=40):
    x = torch.zeros(n, dim)  # zero gradients: the update is pure noise
    model, run = _run(x, sigma=sigma_claimed, clip=clip, batch_size=batch_size, seed=3)
    run.optimizer.noise_multiplier = sigma_used
    batch = next(iter(run.batches()))
    run.train_step(list(batch), loss_fn=_linear_loss)
    update = -model.weight.detach().numpy().ravel()  # lr = 1
    expected_std = sigma_claimed * clip / batch_size  # σ·C / B (B = expected batch size)
    return update, expected_std


def _variance_test(update, std):
    # Sum of squares of d independent N(0, std²) draws is std²·χ²(d); two-sided test.
    d = update.size
    stat = float(np.sum((update / std) ** 2))
    cdf = stats.chi2.cdf(stat, d)
    return 2 * min(cdf, 1 - cdf)


def test_noise_std_is_sigma_c_over_b():
    # Error rate of this check: 1e-3 (two-sided chi-square test at a fixed seed).
    update, std = _noise_sample(2.0)
    assert abs(float(np.mean(update))) < 5 * std / np.sqrt(update.size)
    assert _variance_test(update, std) > 1e-3
    assert stats.normaltest(update).pvalue > 1e-3


def test_noise_test_detects_too_little_noise():
    update, std = _noise_sample(2.0 * 0.9)  # 10% less noise than claimed
    assert _variance_test(update, std) < 1e-3
