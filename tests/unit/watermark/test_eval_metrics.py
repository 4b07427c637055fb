"""Detection metrics: hand-computed cases, scipy cross-checks and statistical checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from safeguard.watermark.evaluation.metrics import (
    bootstrap_ci,
    clopper_pearson,
    detection_curve,
    fpr_check,
    median_with_ci,
    roc,
    tokens_to_detect,
    tpr_at_fpr,
)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (7, 200), (1, 1000)])
def test_clopper_pearson_matches_scipy_binomtest(k, n):
    low, high = clopper_pearson(k, n, 0.95)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)


def test_tpr_hand_case():
    p = [1e-5, 5e-4, 2e-3, 0.02, 0.5]
    est = tpr_at_fpr(p, levels=(1e-2, 1e-3, 1e-4), n_boot=500, seed=1)
    assert [e.k for e in est] == [3, 2, 1]
    assert [e.rate for e in est] == [0.6, 0.4, 0.2]
    for e in est:
        assert e.n == 5
        assert (e.ci_low, e.ci_high) == pytest.approx(clopper_pearson(e.k, 5))
        assert 0 <= e.boot_low <= e.rate <= e.boot_high <= 1
    assert est[0].to_dict()["level"] == 1e-2


def test_tpr_bootstrap_is_deterministic_and_sensible():
    rng = np.random.default_rng(3)
    p = np.where(rng.random(400) < 0.7, 1e-6, 0.5)
    a = tpr_at_fpr(p, levels=(1e-2,), seed=5)[0]
    b = tpr_at_fpr(p, levels=(1e-2,), seed=5)[0]
    assert a == b
    # the bootstrap interval of a share is close to the exact one for large n
    assert a.boot_low == pytest.approx(a.ci_low, abs=0.02)
    assert a.boot_high == pytest.approx(a.ci_high, abs=0.02)


def test_pvalues_are_validated():
    with pytest.raises(ValueError, match="p_watermarked"):
        tpr_at_fpr([0.1, 1.5])
    with pytest.raises(ValueError, match="p_null"):
        fpr_check([])
    with pytest.raises(ValueError, match="levels"):
        fpr_check([0.5], levels=(0.0,))


def test_fpr_check_hand_case():
    p = np.full(100, 0.5)
    p[:3] = 0.005  # 3 of 100 at 1e-2
    check = fpr_check(p, levels=(1e-2, 1e-3))
    assert check[0].false_positives == 3 and check[0].rate == 0.03
    assert check[0].consistent  # 3/100 is compatible with 1%
    assert check[1].false_positives == 0 and check[1].consistent
    assert check[1].within and check[1].ci_low == 0
    # 10 of 100 at 1e-2 is not
    p[:10] = 0.005
    assert not fpr_check(p, levels=(1e-2,))[0].consistent


def test_fpr_check_max_consistent_is_the_boundary():
    for n, level in [(100, 1e-2), (500, 1e-3), (40, 1e-4), (1000, 1e-2)]:
        m = fpr_check(np.full(n, 0.9), levels=(level,))[0].max_consistent
        p = np.full(n, 0.9)
        p[:m] = 0.0
        assert fpr_check(p, levels=(level,))[0].consistent
        if m < n:
            p[: m + 1] = 0.0
            assert not fpr_check(p, levels=(level,))[0].consistent
    # few texts at a tiny level: only zero false positives is allowed
    assert fpr_check(np.full(40, 0.9), levels=(1e-4,))[0].max_consistent == 0


def test_uniform_null_pvalues_are_consistent_at_each_level():
    # with 95% two-sided intervals each check fails with probability <= 2.5%; fixed seeds
    failures = 0
    for seed in range(20):
        p = np.random.default_rng(seed).random(2000)
        failures += sum(not c.consistent for c in fpr_check(p))
    # 60 checks, each failing with prob <= 0.025: P(more than 5 failures) < 0.02
    assert failures <= 5


def test_roc_identical_and_separated():
    rng = np.random.default_rng(0)
    same = rng.random(200)
    fpr, tpr, auc = roc(same, same)
    assert auc == pytest.approx(0.5)
    np.testing.assert_allclose(fpr, tpr)
    assert fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    _, _, auc = roc(rng.random(50) * 1e-3, 0.5 + rng.random(50) / 2)
    assert auc == 1.0
    _, _, auc = roc(0.5 + rng.random(50) / 2, rng.random(50) * 1e-3)
    assert auc == 0.0


def test_roc_auc_equals_mann_whitney_with_ties():
    rng = np.random.default_rng(1)
    pw = np.round(rng.random(60) ** 2, 1)  # many ties
    p0 = np.round(rng.random(70), 1)
    _, _, auc = roc(pw, p0)
    # P(p_w < p_0) + 1/2 P(tie), via scipy's U statistic of the scores -p
    u = stats.mannwhitneyu(-pw, -p0).statistic
    assert auc == pytest.approx(u / (pw.size * p0.size))


def test_tokens_to_detect_and_curve():
    lengths = [10, 20, 30]
    p = np.array(
        [
            [0.5, 0.005, 0.001],  # detected at 20
            [0.001, 0.5, 0.5],  # detected at 10 (first hit counts)
            [0.5, 0.2, 0.02],  # never
        ]
    )
    ttd = tokens_to_detect(p, lengths, alpha=0.01)
    np.testing.assert_array_equal(ttd, [20, 10, np.inf])
    np.testing.assert_allclose(detection_curve(ttd, lengths), [1 / 3, 2 / 3, 2 / 3])
    with pytest.raises(ValueError, match="lengths"):
        tokens_to_detect(p, [10, 20])


def test_median_with_censoring():
    est = median_with_ci([10, 20, 30, np.inf, np.inf], n_boot=200)
    assert est.median == 30 and est.censored == 2 and est.n == 5
    assert est.ci_low <= 30 <= est.ci_high
    est = median_with_ci([10, 20, np.inf, np.inf], n_boot=200)
    assert math.isinf(est.median)  # half censored: only "more than the longest prefix"
    est = median_with_ci([10, np.inf, np.inf], n_boot=200)
    assert math.isinf(est.median) and math.isinf(est.ci_high)
    est = median_with_ci([5.0, 7.0, 9.0], n_boot=200)
    assert est.median == 7 and not math.isnan(est.ci_low)
    with pytest.raises(ValueError):
        median_with_ci([1.0, float("nan")])


def test_bootstrap_ci_mean_and_custom_statistic():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, size=400)
    low, high = bootstrap_ci(x, n_boot=2000, seed=0)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert low == pytest.approx(x.mean() - 1.96 * se, abs=0.03)
    assert high == pytest.approx(x.mean() + 1.96 * se, abs=0.03)
    # a statistic without an axis argument is called per resample
    low2, high2 = bootstrap_ci(x, lambda v: float(np.mean(v)), n_boot=2000, seed=0)
    assert (low2, high2) == pytest.approx((low, high))
    assert bootstrap_ci([4.0] * 5) == (4.0, 4.0)


def test_doctests():
    import doctest

    from safeguard.watermark.evaluation import metrics

    result = doctest.testmod(metrics)
    assert result.attempted >= 5 and result.failed == 0


def test_per_key_spread_finds_keys_that_flag_more_than_the_level():
    from safeguard.watermark.evaluation.metrics import per_key_spread

    rng = np.random.default_rng(20261206)
    calibrated = rng.uniform(size=(100, 1000))
    row = per_key_spread(calibrated, [0.05])[0]
    # calibrated: sd across keys matches the binomial one, dispersion not significant (a test
    # at level 0.001 with a fixed seed)
    assert abs(row["sd_rate"] / row["binomial_sd"] - 1) < 0.25 and row["dispersion_p"] > 1e-3
    # one key in ten that flags three times as often: caught, and named as the worst key
    skewed = calibrated.copy()
    skewed[::10] = rng.uniform(0, 1 / 3, size=(10, 1000))
    bad = per_key_spread(skewed, [0.05])[0]
    assert bad["dispersion_p"] < 1e-6 and bad["worst_ratio"] > 2.5
    with pytest.raises(ValueError, match="keys >= 2"):
        per_key_spread(calibrated[:1], [0.05])
