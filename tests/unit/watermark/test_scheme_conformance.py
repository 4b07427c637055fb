"""One conformance suite over every registered scheme.

Generation is driven through the real logits processor on toy logits (vocabulary of 20,
peaked), so thousands of keys are cheap. Levels are stated per test; seeds are fixed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from safeguard.watermark import Watermarker, WatermarkKey, list_schemes

torch = pytest.importorskip("torch")
from safeguard.watermark.hf import WatermarkLogitsProcessor  # noqa: E402

SCHEMES = list_schemes()
VOCAB = 20
LOGITS = torch.tensor([3.0, 2.2, 1.5, 1.0, 0.5] + [0.0] * 15, dtype=torch.float32)[None, :]
PROBS = torch.softmax(LOGITS.double(), dim=-1)[0].numpy()


def toy_generate(
    wm: Watermarker, steps: int, prompt: list[int], rng: np.random.Generator, sharpness: float = 1.0
):
    """Generate with the processor on random peaked logits; returns the new tokens."""
    proc = WatermarkLogitsProcessor(wm.scheme)
    ids = torch.tensor([prompt])
    for _ in range(steps):
        logits = torch.from_numpy(rng.normal(size=(1, VOCAB)) * sharpness).float()
        scores = proc(ids, logits)
        probs = torch.softmax(scores.double(), dim=-1)
        nxt = int(
            torch.multinomial(
                probs, 1, generator=torch.Generator().manual_seed(int(rng.integers(1 << 31)))
            )
        )
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return ids[0, len(prompt) :].numpy()


def test_registry_lists_the_builtin_schemes():
    assert {"gumbel", "exp", "exp-edit"} <= set(SCHEMES)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_key_round_trip_and_config(scheme, tmp_path):
    key = WatermarkKey.generate(scheme)
    loaded = WatermarkKey.load(key.save(tmp_path / "k.json"))
    assert (
        loaded.params == key.params
        and Watermarker(loaded).scheme.config == Watermarker(key).scheme.config
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_first_token_distortion_free_over_keys(scheme):
    """3,000 fresh keys: the chosen first token follows p (chi-square, level 1e-3)."""
    rng = np.random.default_rng(11)
    counts = np.zeros(VOCAB)
    for _ in range(3000):
        wm = Watermarker(WatermarkKey.from_secret(rng.bytes(32), scheme))
        proc = WatermarkLogitsProcessor(
            wm.scheme, generator=torch.Generator().manual_seed(int(rng.integers(1 << 31)))
        )
        out = proc(torch.tensor([[3, 4, 5, 6, 7]]), LOGITS)
        counts[int(out.argmax())] += 1
    assert stats.chisquare(counts, PROBS * counts.sum()).pvalue > 1e-3
    # power: a distribution with 20% less mass on the top token is rejected by the same test
    skewed = PROBS.copy()
    skewed[0] *= 0.8
    skewed /= skewed.sum()
    assert stats.chisquare(counts, skewed * counts.sum()).pvalue < 1e-3


@pytest.mark.parametrize("scheme", SCHEMES)
def test_null_p_values_uniform(scheme):
    """Key-independent texts, a fresh key each: p-values are uniform (level 1e-3), FPR at 0.05 in its 99.9% interval.

    The guarantee is over keys. (With one fixed key and a 20-token vocabulary, every text
    would reuse the same few key entries and p-values would only be uniform on average
    over keys; with real vocabularies that conditioning effect vanishes.)
    """
    rng = np.random.default_rng(12)
    params = {"key_len": 32} if "exp" in scheme else {}
    options = {} if scheme == "gumbel" else {"resolution": 1e-2}
    ps = []
    for i in range(400):
        wm = Watermarker(WatermarkKey.from_secret(rng.bytes(32), scheme, **params))
        text = rng.integers(0, VOCAB, size=40)
        extra = {**options, "seed": i} if options else {}
        ps.append(wm.detect(text, false_positive_rate=0.05, **extra).p_value)
    ps = np.array(ps)
    if (
        options
    ):  # permutation p-values live on the grid k/(T+1) with T = 99: test the discrete uniform
        observed = np.array([np.isclose(ps, k / 100).sum() for k in range(1, 101)])
        assert observed.sum() == len(ps)
        pooled = observed.reshape(10, 10).sum(axis=1)
        assert stats.chisquare(pooled, np.full(10, len(ps) / 10)).pvalue > 1e-3
    else:
        assert stats.kstest(ps, "uniform").pvalue > 1e-3
    lo, hi = stats.binom.interval(0.999, len(ps), 0.05)
    assert lo <= (ps <= 0.05).sum() <= hi


@pytest.mark.parametrize("scheme", SCHEMES)
def test_watermarked_toy_text_is_detected_and_wrong_key_is_not(scheme):
    rng = np.random.default_rng(13)
    params = {"key_len": 64} if "exp" in scheme else {}
    wm = Watermarker(WatermarkKey.from_secret(b"\x22" * 32, scheme, **params))
    wrong = Watermarker(WatermarkKey.from_secret(b"\x23" * 32, scheme, **params))
    tokens = toy_generate(wm, 60, [1, 2, 3, 4], rng, sharpness=1.5)
    options = {} if scheme == "gumbel" else {"resolution": 1e-3}
    assert wm.detect(tokens, prompt_ids=[1, 2, 3, 4], **options).p_value <= 1e-3
    assert wrong.detect(tokens, prompt_ids=[1, 2, 3, 4], **options).p_value > 1e-3
