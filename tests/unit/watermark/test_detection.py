"""Model-free detection: calibration under the null, power on simulated watermarked text, bad input.

Watermarked text is simulated without a model: random next-token distributions, tokens
chosen by the exponential-minimum rule with the key's PRF rows, exactly as generation does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from safeguard.errors import ConfigError, DetectionError
from safeguard.watermark import ShortTextWarning, Watermarker, WatermarkKey, detect_many, prf
from safeguard.watermark.schemes.base import exponential_min_select

VOCAB = 500


def simulate_gumbel(
    key: WatermarkKey, prompt: np.ndarray, length: int, rng: np.random.Generator, scale: float = 3.0
):
    """Watermarked tokens from random peaked distributions, following the generation rule."""
    wm = Watermarker(key)
    h = wm.scheme.config.context_width
    seq = list(prompt)
    seen = set()
    for _ in range(length):
        logits = rng.normal(size=VOCAB) * scale
        p = np.exp(logits - logits.max())
        p /= p.sum()
        window = np.array(([prf.SENTINEL] * h + seq)[-h:], dtype=np.int64)[None, :]
        a, b = prf.context_words(wm.scheme.context_key, window)
        pair = (int(a[0]), int(b[0]))
        if pair in seen:
            tok = int(rng.choice(VOCAB, p=p))
        else:
            seen.add(pair)
            u = prf.uniform_vector(wm.scheme.token_key, pair[0], pair[1], VOCAB)
            tok = exponential_min_select(u, p)
        seq.append(tok)
    return np.array(seq[len(prompt) :])


def test_null_p_values_are_uniform_and_fpr_is_calibrated():
    # 1,500 human-like (key-independent) texts with repeats: KS at level 0.001; the realised
    # FPR at 0.01 must lie in its 99.9% binomial interval.
    rng = np.random.default_rng(7)
    wm = Watermarker(WatermarkKey.from_secret(b"\x11" * 32, "gumbel"))
    ps = []
    for _ in range(1500):
        text = rng.integers(0, 30, size=int(rng.integers(20, 120)))  # small alphabet: many repeats
        ps.append(wm.detect(text, false_positive_rate=0.01).p_value)
    ps = np.array(ps)
    assert stats.kstest(ps, "uniform").pvalue > 1e-3
    lo, hi = stats.binom.interval(0.999, len(ps), 0.01)
    assert lo <= (ps <= 0.01).sum() <= hi


def test_without_context_deduplication_repeats_would_inflate_scores():
    # The same repetitive text scored with and without deduplication: without it, the null is broken.
    rng = np.random.default_rng(8)
    strict = Watermarker(WatermarkKey.from_secret(b"\x12" * 32, "gumbel"))
    loose = Watermarker(
        WatermarkKey.from_secret(b"\x12" * 32, "gumbel", skip_repeated_context=False)
    )
    ps_strict, ps_loose = [], []
    for _ in range(300):
        motif = rng.integers(0, VOCAB, size=6)
        text = np.tile(motif, 30)
        ps_strict.append(strict.detect(text).p_value)
        ps_loose.append(loose.detect(text).p_value)
    assert stats.kstest(ps_strict, "uniform").pvalue > 1e-3
    assert stats.kstest(ps_loose, "uniform").pvalue < 1e-6


def test_power_and_wrong_key_on_simulated_text():
    rng = np.random.default_rng(9)
    key = WatermarkKey.from_secret(b"\x13" * 32, "gumbel")
    wrong = Watermarker(WatermarkKey.from_secret(b"\x14" * 32, "gumbel"))
    prompt = rng.integers(0, VOCAB, size=8)
    tokens = simulate_gumbel(key, prompt, 200, rng)
    res = Watermarker(key).detect(tokens, prompt_ids=prompt)
    assert res.p_value < 1e-10 and res.is_watermarked and res.num_tokens == 200
    assert res.num_scored <= 200
    # without the prompt the first h tokens are context only
    assert Watermarker(key).detect(tokens).num_scored <= 196
    assert wrong.detect(tokens, prompt_ids=prompt).p_value > 1e-3


def test_multi_key_holm():
    rng = np.random.default_rng(10)
    keys = [WatermarkKey.from_secret(bytes([i]) * 32, "gumbel") for i in range(20, 25)]
    prompt = rng.integers(0, VOCAB, size=8)
    tokens = simulate_gumbel(keys[3], prompt, 120, rng)
    res = detect_many(keys, tokens, prompt_ids=prompt, false_positive_rate=1e-3)
    assert res.is_watermarked and res.best_key_id == keys[3].key_id
    assert all(a >= r.p_value for a, r in zip(res.adjusted_p_values, res.results, strict=True))


def test_bad_input():
    wm = Watermarker(WatermarkKey.generate("gumbel"))
    with pytest.raises(DetectionError, match="empty"):
        wm.detect([])
    with pytest.raises(DetectionError, match="negative"):
        wm.detect([1, -2, 3])
    with pytest.raises(DetectionError, match="outside the vocabulary"):
        wm.detect([1, 2, 10_000], vocab_size=1000)
    with pytest.raises(DetectionError, match="1-D"):
        wm.detect(np.zeros((2, 3), dtype=int))
    with pytest.raises(DetectionError, match="integer"):
        wm.detect([0.5, 1.5])
    with pytest.raises(ConfigError, match="false_positive_rate"):
        wm.detect([1, 2, 3], false_positive_rate=0)
    with pytest.raises(DetectionError, match="empty"):
        wm.detect_text("   ", {"a": 0})


def test_short_text_warns_with_minimum_length():
    wm = Watermarker(WatermarkKey.generate("gumbel"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = wm.detect(list(range(20)), false_positive_rate=1e-4)
    assert any(
        issubclass(w.category, ShortTextWarning) and "at least" in str(w.message) for w in caught
    )
    assert res.warnings


def test_detect_batch_equals_detect_one_by_one():
    rng = np.random.default_rng(14)
    wm = Watermarker(WatermarkKey.from_secret(b"\x15" * 32, "gumbel", context_width=3))
    texts = [rng.integers(0, 40, size=int(rng.integers(1, 120))) for _ in range(300)]
    texts.append(np.tile(texts[0][:5], 20))  # repeated contexts
    prompts = [
        rng.integers(0, 40, size=int(rng.integers(0, 6))) if i % 3 else None
        for i in range(len(texts))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortTextWarning)
        single = [wm.detect(t, prompt_ids=p) for t, p in zip(texts, prompts, strict=True)]
    for threads in (1, 2):
        batch = wm.detect_batch(texts, prompts=prompts, num_threads=threads)
        for a, b in zip(single, batch, strict=True):
            assert (a.num_tokens, a.num_scored) == (b.num_tokens, b.num_scored)
            assert a.p_value == pytest.approx(b.p_value, rel=1e-12, abs=1e-300)
            assert a.score == pytest.approx(b.score, rel=1e-12)
    with pytest.raises(DetectionError, match="one prompt"):
        wm.detect_batch(texts[:3], prompts=prompts[:2])
