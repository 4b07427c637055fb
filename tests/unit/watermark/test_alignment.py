"""Tests of safeguard.watermark.alignment (EXP / EXP-edit statistics and p-values).

Statistical tests use fixed seeds and state their level; each one fails if the
sampler, the statistic or the p-value formula is wrong by more than chance at
that level would allow.
"""

from __future__ import annotations

import doctest
import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from safeguard.watermark import alignment as al
from safeguard.watermark.alignment import (
    PermutationResult,
    exp_edit_statistic,
    exp_statistic,
    key_span,
    null_statistics,
    num_resamples_for,
    permutation_test,
)

LEVEL = 1e-3  # significance level of every statistical test below

# --------------------------------------------------------------------------- #
# Reference implementations, written straight from the definitions


def ref_edit(costs: np.ndarray, gamma: float) -> float:
    """O(m·L) scalar DP: free start, free end, insertion and deletion cost gamma."""
    m, n = costs.shape
    length = key_span(m, n)
    d = np.zeros((m + 1, length + 1))
    for i in range(1, m + 1):
        d[i, 0] = i * gamma
        for j in range(1, length + 1):
            d[i, j] = min(
                d[i - 1, j] + gamma,
                d[i, j - 1] + gamma,
                d[i - 1, j - 1] + costs[i - 1, (j - 1) % n],
            )
    return float(d[m].min())


def ref_exp(costs: np.ndarray) -> float:
    m, n = costs.shape
    return min(sum(costs[i, (s + i) % n] for i in range(m)) for s in range(n))


def brute_edit(costs: np.ndarray, gamma: float) -> float:
    """Forward recursion over explicit paths from every start (tiny inputs only)."""
    m, n = costs.shape
    length = key_span(m, n)

    @functools.cache
    def go(i: int, j: int) -> float:
        # text tokens i.. remain, next unrolled key position is j; stop once the text is consumed
        if i == m:
            return 0.0
        best = gamma + go(i + 1, j)  # token i left unaligned
        if j < length:
            best = min(best, costs[i, j % n] + go(i + 1, j + 1))  # token i aligned with j
            best = min(best, gamma + go(i, j + 1))  # key position j skipped
        return best

    return min(go(0, s) for s in range(length))


costs_strategy = st.tuples(
    st.integers(1, 7), st.integers(1, 6), st.integers(0, 2**32 - 1), st.sampled_from([1.0, 8.0])
)


@settings(max_examples=60, deadline=None)
@given(costs_strategy, st.sampled_from([0.0, 0.2, 1.0, 3.0, 25.0]))
def test_exp_edit_statistic_matches_reference_dp(spec, gamma):
    m, n, seed, spread = spec
    costs = np.log1p(-np.random.default_rng(seed).random((m, n))) * spread
    assert exp_edit_statistic(costs, gamma) == pytest.approx(ref_edit(costs, gamma), abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.7]))
def test_reference_dp_matches_explicit_enumeration(m, n, seed, gamma):
    costs = np.log1p(-np.random.default_rng(seed).random((m, n))) * 3
    assert ref_edit(costs, gamma) == pytest.approx(brute_edit(costs, gamma), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_exp_statistic_matches_definition(m, n, seed):
    costs = np.log1p(-np.random.default_rng(seed).random((m, n)))
    assert exp_statistic(costs) == pytest.approx(ref_exp(costs), abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 12), st.integers(1, 10), st.integers(2, 9), st.integers(0, 2**32 - 1))
def test_vectorised_float32_kernel_matches_reference_per_column(m, n, width, seed):
    """The batched anti-diagonal DP (as used for null keys) equals the scalar DP per column."""
    rng = np.random.default_rng(seed)
    gamma = float(rng.choice([0.0, 0.5, 2.0]))
    mats = [np.log1p(-rng.random((m, n))) for _ in range(width)]
    cube = np.concatenate([al._observed_cube(c, "exp-edit", gamma) for c in mats], axis=2)
    got = al._edit_kernel(cube.astype(np.float32), gamma, key_span(m, n))
    want = np.array([ref_edit(c, gamma) for c in mats])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)


def test_edit_statistic_handles_watermark_with_edits():
    rng = np.random.default_rng(3)
    m, n = 30, 40
    costs = np.log1p(-rng.random((m, n)))
    # plant an alignment starting at key 35 that wraps, with one deletion (key 5 skipped)
    js = [(35 + i + (i >= 10)) % n for i in range(m)]
    for i, j in enumerate(js):
        costs[i, j] = -6.0
    assert exp_edit_statistic(costs, 1.0) <= -6.0 * m + 1.0
    # the plain exp statistic only sees the 10 tokens before the deletion or the 20 after
    assert exp_statistic(costs) > exp_edit_statistic(costs, 1.0) + 30


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_edit_statistic_bounds(gamma):
    costs = np.log1p(-np.random.default_rng(0).random((15, 9)))
    s = exp_edit_statistic(costs, gamma)
    assert s <= 15 * gamma  # all insertions
    assert s >= costs.min(axis=1).sum() + 0.0  # each token's best cost, no gap can help more


def test_null_cube_keeps_equality_pattern_of_repeated_tokens():
    tok = np.array([0, 1, 0, 2, 1, 0, 3, 3])
    n, width = 5, 3
    for direction, offset in ((-1, -2), (+1, 0)):
        cube = al._null_cube(np.random.SFC64(7), tok, n, width, direction, 0.0)
        for b in range(width):
            table: dict[tuple[int, int], float] = {}
            for x in range(n):
                for r in range(tok.size):
                    cell = ((x + direction * r + offset) % n, int(tok[r]))
                    assert table.setdefault(cell, cube[x, r, b]) == cube[x, r, b]
            assert len(table) == n * 4
            # the (token, key position) draws are all distinct
            assert len(set(table.values())) == n * 4


# --------------------------------------------------------------------------- #
# Null distribution and p-values


def test_exp_null_matches_closed_form_for_distinct_tokens():
    """Distinct tokens: exp null statistic is -max of n i.i.d. Gamma(m) sums."""
    m, n = 40, 16
    null = null_statistics(np.arange(m), n, method="exp", num_resamples=2000, rng=11)
    cdf = lambda x: 1.0 - stats.gamma.cdf(-x, m) ** n  # noqa: E731  P(phi_null <= x)
    assert stats.kstest(null, cdf).pvalue > LEVEL


@pytest.mark.parametrize("method", ["exp", "exp-edit"])
def test_null_sampler_matches_explicit_random_keys_with_repeats(method):
    """Per-token Exp(1) draws == costs from full random keys over a vocabulary (two-sample KS)."""
    rng = np.random.default_rng(5)
    vocab, m, n = 12, 25, 10
    tokens = rng.integers(vocab, size=m)  # many repeats
    tok = np.unique(tokens, return_inverse=True)[1]
    fn = exp_statistic if method == "exp" else (lambda c: exp_edit_statistic(c, 0.5))
    explicit = np.array([fn(np.log1p(-rng.random((n, vocab))[:, tokens].T)) for _ in range(600)])
    sampled = null_statistics(tok, n, method=method, gamma=0.5, num_resamples=1500, rng=6)
    assert stats.ks_2samp(explicit, sampled).pvalue > LEVEL
    # and the equality pattern matters: ignoring repeats gives a different null
    distinct = null_statistics(np.arange(m), n, method=method, gamma=0.5, num_resamples=1500, rng=7)
    assert stats.ks_2samp(explicit, distinct).pvalue < LEVEL


def _exp_min_sample(xi: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    n, vocab = xi.shape
    shift = int(rng.integers(n))
    probs = rng.dirichlet(np.full(vocab, 0.2), size=length)
    return np.argmax(np.log(xi[(shift + np.arange(length)) % n]) / probs, axis=1)


@pytest.mark.parametrize("method", ["exp", "exp-edit"])
def test_p_values_uniform_under_null_and_fpr_within_binomial_interval(method):
    """Unwatermarked texts and watermarked texts under a wrong key give U(0,1) p-values.

    p = (1 + g)/(T + 1) is discrete; p - U/(T + 1) with U ~ U(0, 1) is exactly
    uniform under the null, so a KS test at level 1e-3 applies. The realised
    false-positive rate at alpha = 0.02 must lie in the two-sided 99.9% binomial
    interval around 0.02.
    """
    rng = np.random.default_rng(2024 if method == "exp" else 2025)
    vocab, m, n, texts = 20, 24, 16, 1000
    res = 0.02  # T = 49
    total = num_resamples_for(res)
    ps = []
    for k in range(texts):
        xi = rng.random((n, vocab))
        if k % 2:
            tokens = rng.integers(vocab, size=m)  # unwatermarked
        else:
            tokens = _exp_min_sample(rng.random((n, vocab)), m, rng)  # other key
        costs = np.log1p(-xi[:, tokens].T)
        tok = np.unique(tokens, return_inverse=True)[1]
        r = permutation_test(costs, tok, method=method, gamma=0.5, resolution=res, rng=k)
        ps.append(r.p_value)
    ps = np.array(ps)
    randomised = ps - rng.random(texts) / (total + 1)
    assert stats.kstest(randomised, "uniform").pvalue > LEVEL
    fp = int((ps <= 0.02).sum())
    lo, hi = stats.binom.interval(1 - LEVEL, texts, 0.02)
    assert lo <= fp <= hi


def test_watermarked_text_is_detected_and_attacked_text_still_detected():
    rng = np.random.default_rng(9)
    vocab, n, m = 200, 64, 80
    xi = rng.random((n, vocab))
    tokens = _exp_min_sample(xi, m, rng)
    tok = np.unique(tokens, return_inverse=True)[1]
    costs = np.log1p(-xi[:, tokens].T)
    for method in ("exp", "exp-edit"):
        r = permutation_test(costs, tok, method=method, resolution=0.01, rng=1)
        assert r.p_value == r.min_p_value == 0.01
    # 30% substitutions, 10% deletions, 10% insertions: exp-edit still detects
    att = tokens.copy()
    sub = rng.choice(m, size=24, replace=False)
    att[sub] = rng.integers(vocab, size=24)
    att = np.delete(att, rng.choice(m, size=8, replace=False))
    for pos in rng.integers(0, att.size, size=8):
        att = np.insert(att, pos, rng.integers(vocab))
    costs = np.log1p(-xi[:, att].T)
    tok = np.unique(att, return_inverse=True)[1]
    assert permutation_test(costs, tok, method="exp-edit", resolution=0.01, rng=2).p_value == 0.01


# --------------------------------------------------------------------------- #
# Permutation-test mechanics


@pytest.fixture(scope="module")
def text():
    rng = np.random.default_rng(1)
    tokens = rng.integers(30, size=40)
    costs = np.log1p(-rng.random((32, 30))[:, tokens].T)
    return costs, np.unique(tokens, return_inverse=True)[1]


def test_result_fields_and_reproducibility(text):
    costs, tok = text
    a = permutation_test(costs, tok, resolution=0.01, rng=np.random.default_rng(3))
    b = permutation_test(costs, tok, resolution=0.01, rng=np.random.default_rng(3))
    c = permutation_test(costs, tok, resolution=0.01, rng=3, num_threads=2)
    assert isinstance(a, PermutationResult)
    assert a == b == c
    assert a.num_resamples == 99 and a.min_p_value == pytest.approx(0.01)
    assert a.statistic == pytest.approx(exp_edit_statistic(costs, al.DEFAULT_GAMMA))
    assert not a.approximate and not a.stopped_early
    assert a.p_value in {k / 100 for k in range(1, 101)}
    with pytest.raises(AttributeError):
        a.p_value = 0.5  # type: ignore[misc]


def test_p_value_counts_null_statistics(text):
    costs, tok = text
    for method in ("exp", "exp-edit"):
        r = permutation_test(costs, tok, method=method, gamma=0.5, resolution=0.01, rng=4)
        # the same draws, seen through null_statistics
        seeds_rng = np.random.default_rng(4)
        null = null_statistics(
            tok, costs.shape[1], method=method, gamma=0.5, num_resamples=99, rng=seeds_rng
        )
        g = int((null <= np.float32(r.statistic)).sum())
        assert r.p_value == pytest.approx((1 + g) / 100)


def test_early_stopping_is_besag_clifford_and_agrees_with_full_test(text):
    costs, tok = text
    full = permutation_test(costs, tok, resolution=1e-3, rng=8)
    null = null_statistics(tok, costs.shape[1], num_resamples=999, rng=8)
    hits = np.flatnonzero(null <= np.float32(full.statistic))
    for h in (1, 5, 20):
        r = permutation_test(costs, tok, resolution=1e-3, rng=8, early_stop=h)
        if hits.size >= h:
            stop = int(hits[h - 1]) + 1
            assert r.num_resamples == stop
            assert r.p_value == pytest.approx(h / stop)
            assert r.stopped_early == (stop < 999)
        else:
            assert r == full
    # a strongly watermarked text never stops early and reaches the minimum p-value
    wm = costs.copy()
    wm[np.arange(40), np.arange(40) % 30] = -8.0
    r = permutation_test(wm, tok, method="exp", resolution=1e-3, rng=8, early_stop=10)
    assert r.p_value == r.min_p_value and not r.stopped_early and r.num_resamples == 999


def test_cached_null_table(text):
    costs, tok = text
    al._cached_table.cache_clear()
    r = permutation_test(costs, tok, resolution=0.01, cached_null=True)
    assert r.approximate  # this text repeats tokens
    distinct = np.arange(40)
    r2 = permutation_test(costs, distinct, resolution=0.01, cached_null=True)
    assert not r2.approximate
    assert al._cached_table.cache_info().hits == 1
    table = al._cached_table("exp-edit", 40, 32, al.DEFAULT_GAMMA, 99)
    assert r2.p_value == pytest.approx((1 + (table <= np.float32(r2.statistic)).sum()) / 100)


def test_num_resamples_for():
    assert num_resamples_for(1e-3) == 999
    assert num_resamples_for(1e-4) == 9999
    assert num_resamples_for(0.01) == 99
    assert num_resamples_for(0.6) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": -0.1}, "`gamma`"),
        ({"gamma": float("nan")}, "`gamma`"),
        ({"resolution": 0.0}, "`resolution`"),
        ({"resolution": 1.0}, "`resolution`"),
        ({"method": "gumbel"}, "`method`"),
        ({"early_stop": 0}, "`early_stop`"),
        ({"num_threads": 0}, "`num_threads`"),
        ({"rng": "seed"}, "`rng`"),
    ],
)
def test_bad_arguments_raise_value_error(text, kwargs, match):
    costs, tok = text
    with pytest.raises(ValueError, match=match):
        permutation_test(costs, tok, **kwargs)


def test_bad_costs_and_token_index_raise():
    with pytest.raises(ValueError, match="2-D"):
        exp_statistic(np.zeros(5))
    with pytest.raises(ValueError, match="non-empty"):
        exp_edit_statistic(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        exp_statistic(np.array([[-np.inf, 0.0]]))
    with pytest.raises(ValueError, match="`gamma`"):
        exp_edit_statistic(np.zeros((2, 2)), gamma=-1)
    with pytest.raises(ValueError, match="`token_index`"):
        permutation_test(np.zeros((3, 4)), np.arange(4))
    with pytest.raises(ValueError, match="`token_index`"):
        permutation_test(np.zeros((3, 4)), np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="`token_index`"):
        permutation_test(np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]))


def test_doctests():
    result = doctest.testmod(al, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 6 and result.failed == 0
