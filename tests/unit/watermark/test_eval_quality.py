"""Quality statistics and the two-sample tests that the watermark does not move them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from safeguard.errors import DataError
from safeguard.watermark.evaluation.quality import (
    bleu,
    compare,
    compare_self_bleu,
    distinct_n,
    perplexity,
    self_bleu,
    self_bleu_scores,
)

# --------------------------------------------------------------------------- #
# BLEU and diversity


def test_bleu_identical_and_disjoint():
    text = [5, 9, 2, 7, 7, 1, 3]
    assert bleu(text, [text]) == 1.0
    assert bleu(text, [[100, 101, 102, 103, 104, 105, 106]]) == 0.0
    assert bleu(text, [[100, 101], text]) == 1.0  # any one reference can match


def test_bleu_hand_cases():
    # p1 = 3/4, p2 = (2+1)/(3+1), p3 = (1+1)/(2+1), p4 = (0+1)/(1+1); no brevity penalty
    expected = (0.75 * 0.75 * (2 / 3) * 0.5) ** 0.25
    assert bleu([1, 2, 3, 4], [[1, 2, 3, 5]]) == pytest.approx(expected)
    # short hypothesis: all precisions 1, brevity penalty exp(1 - 4/2)
    assert bleu([1, 2], [[1, 2, 3, 4]]) == pytest.approx(math.exp(-1.0))
    # clipping: "1" occurs once in the reference, four times in the hypothesis
    assert bleu([1, 1, 1, 1], [[1, 2, 3, 4]], max_n=1) == pytest.approx(0.25)
    # closest reference length (tie -> shorter) sets the brevity penalty
    assert bleu([1, 2, 3], [[1, 2, 3, 4, 5], [1, 2, 3, 9]], max_n=1) == pytest.approx(
        math.exp(1 - 4 / 3)
    )


def test_self_bleu_hand_case_and_brute_force():
    texts = [[1, 2, 3, 4], [1, 2, 3, 4], [7, 8, 9, 10]]
    np.testing.assert_allclose(self_bleu_scores(texts), [1.0, 1.0, 0.0])
    assert self_bleu(texts) == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    rand = [rng.integers(0, 12, size=rng.integers(5, 15)) for _ in range(7)]
    brute = [bleu(rand[i], [rand[j] for j in range(7) if j != i]) for i in range(7)]
    np.testing.assert_allclose(self_bleu_scores(rand), brute)
    # small vocabulary (many repeats and ties), varied lengths, an empty text
    small = [rng.integers(0, 6, size=n) for n in (0, 1, 3, 8, 8, 13, 20, 4, 5)]
    brute = [bleu(small[i], [small[j] for j in range(9) if j != i], max_n=3) for i in range(9)]
    np.testing.assert_allclose(self_bleu_scores(small, max_n=3), brute, atol=1e-12)
    brute = [bleu(rand[i], [rand[j] for j in range(7) if j != i]) for i in range(7)]
    sub = self_bleu_scores(rand, sample=3, seed=1)
    assert sub.shape == (3,) and set(np.round(sub, 12)) <= set(np.round(brute, 12))
    with pytest.raises(DataError, match="2 texts"):
        self_bleu([[1, 2]])


def test_distinct_n():
    assert distinct_n([[1, 2, 1, 2]], 1) == 0.5
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(3 / 4)
    assert distinct_n([[1]], 2) == 0.0


# --------------------------------------------------------------------------- #
# two-sample tests


def test_compare_false_rejections_within_binomial_bound():
    # 200 seeded repetitions under "same distribution" at alpha = 0.05
    alpha, reps = 0.05, 200
    rng = np.random.default_rng(123)
    pvals = []
    for seed in range(reps):
        a, b = rng.exponential(size=25), rng.exponential(size=25)
        pvals.append(compare(a, b, alpha=alpha, n_perm=199, seed=seed, n_boot=10).p_value)
    rejections = sum(p <= alpha for p in pvals)
    # P(Binomial(200, 0.05) outside [lo, hi]) < 0.002
    lo, hi = stats.binom.ppf(0.001, reps, alpha), stats.binom.isf(0.001, reps, alpha)
    assert lo <= rejections <= hi, rejections
    # roughly uniform overall (KS at 0.1% on the discrete permutation p-values)
    assert stats.kstest(pvals, "uniform").pvalue > 1e-3


def test_compare_detects_a_shift():
    rng = np.random.default_rng(7)
    rejected = 0
    for seed in range(20):
        a, b = rng.normal(1.5, 1, size=30), rng.normal(0, 1, size=30)
        res = compare(a, b, alpha=0.01, n_perm=999, seed=seed, n_boot=200)
        rejected += res.moved
    # power at a 1.5 SD shift with 30 + 30 values is about 0.999
    assert rejected >= 19
    res = compare(a, b, alpha=0.01, n_perm=999, statistic="perplexity")
    assert res.statistic == "perplexity" and res.ci_low <= res.difference <= res.ci_high
    assert res.cross_check_p_value < 0.01
    assert res.to_dict()["n_a"] == 30


def test_compare_rejects_bad_input():
    with pytest.raises(DataError, match="`a`"):
        compare([1.0], [1.0, 2.0])
    with pytest.raises(DataError, match="`b`"):
        compare([1.0, 2.0], [1.0, float("inf")])


def test_compare_self_bleu_same_and_different_sets():
    rng = np.random.default_rng(0)
    a = [rng.integers(0, 50, size=30) for _ in range(16)]
    b = [rng.integers(0, 50, size=30) for _ in range(16)]
    same = compare_self_bleu(a, b, alpha=0.05, n_boot=49, seed=0)
    assert not same.moved and same.statistic == "self-BLEU"
    base = rng.integers(0, 50, size=30)
    repetitive = [
        np.where(rng.random(30) < 0.2, rng.integers(0, 50, size=30), base) for _ in range(16)
    ]
    diff = compare_self_bleu(repetitive, b, alpha=0.05, n_boot=49, seed=0)
    assert diff.moved and diff.p_value == pytest.approx(1 / 50)
    assert diff.mean_a > diff.mean_b and diff.ci_low > 0


# --------------------------------------------------------------------------- #
# perplexity


def test_perplexity_equals_exp_mean_nll_on_tiny_gpt2():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_positions=64, n_layer=1, n_embd=16, n_head=2)
    model = transformers.GPT2LMHeadModel(config).eval()
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 50, size=n) for n in (12, 7, 20)]
    prompts = [3, 2, 5]
    got = perplexity(model, seqs, prompt_lengths=prompts, batch_size=2)
    for s, p, value in zip(seqs, prompts, got, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor(s)[None]).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        nll = [-float(logp[t - 1, s[t]]) for t in range(p, len(s))]
        assert value == pytest.approx(math.exp(np.mean(nll)), rel=1e-5)
    with pytest.raises(DataError, match="prompt length"):
        perplexity(model, seqs, prompt_lengths=0)


def test_doctests():
    import doctest

    from safeguard.watermark.evaluation import quality

    result = doctest.testmod(quality)
    assert result.attempted >= 4 and result.failed == 0
