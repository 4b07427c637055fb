"""`safeguard.privacy.plan` is pure: the run's numbers are decided without torch or opacus."""

from __future__ import annotations

import subprocess
import sys

import pytest

from safeguard.errors import ConfigError
from safeguard.privacy import BudgetLedger, DPConfig
from safeguard.privacy.epsilon import compute_epsilon
from safeguard.privacy.plan import DPPlan


def test_plan_imports_no_torch():
    code = (
        "import sys, safeguard.privacy.plan, safeguard.privacy.epsilon, safeguard.privacy.chain;"
        "bad=[m for m in ('torch','opacus','transformers') if m in sys.modules];"
        "print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _build(config, ledger=None, n=1000, loader_batch_size=10):
    return DPPlan.build(
        config, ledger or BudgetLedger(), num_units=n, loader_batch_size=loader_batch_size
    )


def test_plan_fixes_q_delta_steps_and_allowance():
    plan = _build(DPConfig(target_epsilon=2.0, epochs=1, accountant="rdp"))
    assert plan.sample_rate == 0.01 and plan.steps_per_epoch == 100 and plan.planned_steps == 100
    assert plan.delta == 1e-4 and plan.delta_source.startswith("default 1/(10 N)")
    assert plan.max_epsilon == 2.0 and plan.steps_allowed == 100 and not plan.exact
    eps = compute_epsilon("rdp", [(plan.noise_multiplier, 0.01, 100)], plan.delta)
    assert 0.99 * 2.0 <= eps <= 2.0


def test_plan_inherits_delta_and_counts_earlier_runs():
    ledger = BudgetLedger()
    first = _build(
        DPConfig(
            noise_multiplier=1.0, target_delta=1e-5, steps=10, max_epsilon=1.0, accountant="rdp"
        )
    )
    ledger.start_run(
        config={},
        dataset_size=1000,
        delta=first.delta,
        delta_source="configured",
        sample_rate=0.01,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        accountant="rdp",
        unit_of_privacy="one example",
        max_epsilon=1.0,
        planned_steps=10,
    )
    for _ in range(10):
        ledger.record_step(sample_rate=0.01, noise_multiplier=1.0, max_grad_norm=1.0)
    again = _build(
        DPConfig(noise_multiplier=1.0, steps=10_000, max_epsilon=2.0, accountant="rdp"), ledger
    )
    assert again.delta == 1e-5 and again.delta_source == "inherited from the ledger's first run"
    assert again.exact and 0 < again.steps_allowed < 10_000
    assert again.steps_allowed == ledger.steps_allowed(
        noise_multiplier=1.0, sample_rate=0.01, max_epsilon=2.0
    )


def test_plan_refuses_a_batch_larger_than_the_data_and_a_large_delta():
    with pytest.raises(ConfigError, match="larger than the number of units"):
        _build(DPConfig(noise_multiplier=1.0, batch_size=20), n=10)
    with pytest.raises(ConfigError, match="must be < 1/N"):
        _build(DPConfig(noise_multiplier=1.0, target_delta=0.01), n=1000)
