"""One-run audits (Steinke, Nasr & Jagielski 2023) of our DP-SGD on a tiny linear model.

Each audit has 1000 canaries, 200 guesses fixed in advance, and a 95% confidence lower bound:
on a correct implementation the bound exceeds the accountant's ε with probability ≤ 5% per run.
Seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import pytest

from safeguard.privacy._audit_dpsgd import audit_dp_sgd

SIGMA = 1.5  # with q = 0.05, 100 steps, δ = 1e-5: PRV ε ≈ 1.69, where a lower bound can bite


@pytest.mark.parametrize("seed", [0, 1])
def test_correct_training_never_beats_the_accountant(seed):
    result = audit_dp_sgd(noise_multiplier=SIGMA, seed=seed, num_real=200)
    assert result.claimed_epsilon == pytest.approx(1.69, abs=0.03)
    assert result.details["ledger_steps"] == 100
    assert result.passed and result.epsilon_lower_bound <= result.claimed_epsilon


def test_audit_catches_noise_smaller_than_accounted():
    def shrink_noise(run):
        run.optimizer.noise_multiplier = SIGMA / 10  # the accountant's claim stays at σ

    result = audit_dp_sgd(noise_multiplier=SIGMA, seed=0, num_real=200, tamper=shrink_noise)
    assert not result.passed
    assert result.epsilon_lower_bound > result.claimed_epsilon + 1.0


def test_non_private_training_leaks_measurably_more():
    dp = audit_dp_sgd(noise_multiplier=SIGMA, seed=2, num_real=200)
    plain = audit_dp_sgd(noise_multiplier=SIGMA, seed=2, num_real=200, private=False)
    assert plain.epsilon_lower_bound > dp.epsilon_lower_bound + 1.5
    assert plain.num_correct > dp.num_correct
