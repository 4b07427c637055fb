"""DPConfig validation, defaults and policy loading."""

from __future__ import annotations

import pytest

from safeguard.errors import ConfigError, PolicyError
from safeguard.privacy import DPConfig, default_delta


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        DPConfig(target_epsilon=-1, max_grad_norm=0, accountant="moments", grad_sample_mode="ew")
    msg = str(info.value)
    for needle in (
        "`target_epsilon` (=-1)",
        "`max_grad_norm` (=0) must be > 0; typical values are 0.1–1.0",
        "`accountant` (='moments')",
        "`grad_sample_mode` (='ew')",
        "set `epochs` or `steps`",
    ):
        assert needle in msg


def test_exactly_one_of_epsilon_and_sigma():
    with pytest.raises(ConfigError, match="exactly one"):
        DPConfig(max_grad_norm=1.0)
    with pytest.raises(ConfigError, match="exactly one"):
        DPConfig(target_epsilon=3, noise_multiplier=1.0, epochs=1)


def test_max_epsilon_defaults_to_target_and_cannot_be_below():
    assert DPConfig(target_epsilon=3, epochs=1).max_epsilon == 3
    assert DPConfig(noise_multiplier=1.0).max_epsilon is None
    with pytest.raises(ConfigError, match="below `target_epsilon`"):
        DPConfig(target_epsilon=3, epochs=1, max_epsilon=2)


def test_user_unit_requires_group_by():
    with pytest.raises(ConfigError, match="group_by"):
        DPConfig(noise_multiplier=1.0, unit="user")
    cfg = DPConfig(noise_multiplier=1.0, unit="user", group_by="patient_id")
    assert "patient_id" in cfg.unit_of_privacy
    assert DPConfig(noise_multiplier=1.0).unit_of_privacy == "one example"


def test_warns_above_epsilon_ten_and_without_poisson():
    with pytest.warns(UserWarning, match="ε = 12"):
        DPConfig(target_epsilon=12, epochs=1)
    with pytest.warns(UserWarning, match="Poisson|independently"):
        DPConfig(noise_multiplier=1.0, poisson_sampling=False)


def test_round_trip_dict():
    cfg = DPConfig(
        target_epsilon=2.5, target_delta=1e-6, epochs=3, accountant="rdp", physical_batch_size=4
    )
    assert DPConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        DPConfig.from_dict({**cfg.to_dict(), "lr": 1})


def test_from_policy_and_overrides():
    cfg = DPConfig.from_policy("default", epochs=2)
    assert cfg.target_epsilon == 8.0 and cfg.accountant == "prv" and cfg.epochs == 2
    cfg2 = DPConfig.from_policy("default", noise_multiplier=1.2)
    assert cfg2.noise_multiplier == 1.2 and cfg2.target_epsilon is None and cfg2.max_epsilon == 8.0
    with pytest.raises(PolicyError, match="no `privacy:` section"):
        DPConfig.from_policy("moderation", epochs=1)


def test_healthcare_policy_is_patient_level():
    cfg = DPConfig.from_policy("healthcare-hipaa", epochs=1)
    assert cfg.unit == "user" and cfg.group_by == "patient_id"


@pytest.mark.parametrize(("n", "expected"), [(1000, 1e-4), (50_000, 2e-6), (7, 0.01)])
def test_default_delta_is_at_most_one_tenth_over_n(n, expected):
    d = default_delta(n)
    assert d == pytest.approx(expected)
    assert d <= 1 / (10 * n)
