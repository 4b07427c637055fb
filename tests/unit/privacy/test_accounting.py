"""Accounting arithmetic: pinned values, agreement with Opacus, monotonicity."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeguard.privacy import accounting, audit, config, ledger
from safeguard.privacy.ledger import compute_epsilon

ANCHOR = [(1.0, 0.01, 300)]  # q = 0.01, σ = 1, 300 steps (ANCHORS.md), δ = 1e-5


@pytest.mark.parametrize("module", [accounting, audit, config])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_pinned_anchor_values():
    assert compute_epsilon("rdp", ANCHOR, 1e-5) == pytest.approx(1.45, abs=0.005)
    assert compute_epsilon("prv", ANCHOR, 1e-5) == pytest.approx(1.08, abs=0.005)
    assert compute_epsilon("gdp", ANCHOR, 1e-5) == pytest.approx(0.83, abs=0.005)


HISTORIES = [
    [(1.0, 0.01, 300)],
    [(0.8, 0.05, 200)],
    [(2.0, 0.1, 50)],
    [(1.1, 0.02, 100), (3.0, 0.01, 400)],
    [(0.6, 1.0, 3)],
]


@pytest.mark.parametrize("history", HISTORIES)
def test_rdp_equals_opacus_independent_implementation(history):
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = list(history)
    assert accounting.rdp_epsilon(history, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


@pytest.mark.parametrize("history", [h for h in HISTORIES if len(h) == 1])
def test_gdp_equals_opacus_on_constant_histories(history):
    with pytest.warns(UserWarning):
        from opacus.accountants import GaussianAccountant

        acc = GaussianAccountant()
    acc.history = list(history)
    assert accounting.gdp_epsilon(history, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)


def test_gdp_mu_composes_as_root_sum_of_squares():
    a, b = [(1.0, 0.01, 300)], [(2.0, 0.05, 100)]
    assert accounting.gdp_mu(a + b) == pytest.approx(
        math.hypot(accounting.gdp_mu(a), accounting.gdp_mu(b))
    )


def test_prv_below_rdp_on_anchor_and_edge_cases():
    for history in HISTORIES[:3]:
        assert compute_epsilon("prv", history, 1e-5) <= compute_epsilon("rdp", history, 1e-5) + 1e-9
    assert compute_epsilon("prv", [], 1e-5) == 0.0
    assert compute_epsilon("rdp", [(0.0, 0.1, 1)], 1e-5) == math.inf
    assert compute_epsilon("rdp", [(1.0, 0.0, 10)], 1e-5) == 0.0


@settings(max_examples=12, deadline=None)
@given(
    sigma=st.floats(0.7, 5.0),
    q=st.floats(0.001, 0.2),
    steps=st.integers(1, 2000),
)
def test_rdp_monotone_in_steps_and_noise(sigma, q, steps):
    e = accounting.rdp_epsilon([(sigma, q, steps)], 1e-5)
    assert e >= 0
    assert accounting.rdp_epsilon([(sigma, q, steps + 50)], 1e-5) >= e - 1e-9
    assert accounting.rdp_epsilon([(sigma * 1.5, q, steps)], 1e-5) <= e + 1e-9


def test_history_compression_keeps_order():
    h = [(1.0, 0.1, 1)] * 5 + [(2.0, 0.1, 1)] + [(1.0, 0.1, 1)]
    assert accounting.compress_history(h) == [(1.0, 0.1, 5), (2.0, 0.1, 1), (1.0, 0.1, 1)]


def test_ledger_module_is_importable_without_torch():
    assert ledger.GENESIS == "0" * 64
