"""Detection statistics: exact Gamma p-values, Holm adjustment, permutation p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sstats

from safeguard.watermark.stats import gamma_pvalue, holm, min_tokens_for_fpr


@pytest.mark.parametrize("n", [1, 5, 50, 400])
def test_gamma_pvalue_matches_closed_form_and_scipy(n):
    for s in [0.0, 0.5 * n, n, 1.5 * n, 3.0 * n]:
        expected = sstats.gamma(a=n).sf(s)
        assert gamma_pvalue(s, n) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    # e^{-S} sum_{i<N} S^i / i! for small N
    if n <= 5:
        s = 3.3
        closed = math.exp(-s) * sum(s**i / math.factorial(i) for i in range(n))
        assert gamma_pvalue(s, n) == pytest.approx(closed, rel=1e-12)


def test_gamma_pvalue_is_uniform_under_the_null():
    # Sums of -log(1-u) for uniform u: p-values must be uniform (KS at level 0.001, fixed seed).
    rng = np.random.default_rng(1)
    u = rng.random((4000, 30))
    p = np.array([gamma_pvalue(float(s), 30) for s in -np.log1p(-u).sum(axis=1)])
    assert sstats.kstest(p, "uniform").pvalue > 1e-3


def test_gamma_pvalue_edge_cases():
    assert gamma_pvalue(10.0, 0) == 1.0
    assert gamma_pvalue(-1.0, 3) == 1.0
    assert 0 <= gamma_pvalue(2000.0, 200) < 1e-200  # may underflow to 0.0


def test_holm_against_hand_computation():
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.5]) == [0.5]
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 x 0.8 caps at 1, and adjusted values never decrease


def test_min_tokens_grows_as_fpr_shrinks():
    assert min_tokens_for_fpr(1e-2) < min_tokens_for_fpr(1e-3) < min_tokens_for_fpr(1e-6)
