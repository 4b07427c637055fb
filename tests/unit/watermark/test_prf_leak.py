"""Issue 14: detection answers must not leak the key.

A detection answer for a text with one scored token is ``score = -log1p(-u)``: it reveals
the uniform ``u`` of that (context, token) exactly. The attacker below uses nothing but
``Watermarker.detect`` answers and the published version-1 construction:

1. query tokens 0 and 1 after a chosen context: the two 32-bit halves of one SplitMix64
   output word;
2. invert SplitMix64 (a bijection) to get the row seed, hence every uniform of the row;
3. forge: append the token whose predicted uniform is largest, repeat from the new context.

Against a version-1 key the recovered rows predict every other token's score exactly and a
forged text is flagged with an astronomically small p-value. Against a version-2 key
(AES-128 per (context, token) block) the same answers predict nothing: agreement with the
truth is a fair coin and forged texts have uniform p-values. Every check states its level;
secrets are fixed, so runs are deterministic.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from safeguard.watermark import ShortTextWarning, Watermarker, WatermarkKey
from safeguard.watermark.keys import LegacyPRFWarning

pytestmark = pytest.mark.filterwarnings("ignore::safeguard.watermark.ShortTextWarning")

VOCAB = 50257
H = 4  # gumbel's default context width
MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
C1, C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


# -- the attacker: public construction of version 1, detection answers only --------------------


def _unxorshift(y: int, s: int) -> int:
    x = y
    for _ in range(64 // s + 1):
        x = y ^ (x >> s)
    return x


def unmix(z: int) -> int:
    """Inverse of SplitMix64's output function."""
    z = _unxorshift(z, 31)
    z = (z * pow(C2, -1, 1 << 64)) & MASK64
    z = _unxorshift(z, 27)
    z = (z * pow(C1, -1, 1 << 64)) & MASK64
    return _unxorshift(z, 30)


def mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(C1)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(C2)
        return x ^ (x >> np.uint64(31))


def query_score(wm: Watermarker, context: list[int], token: int) -> float:
    """One detection query: a text whose only scored token is ``token`` after ``context``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortTextWarning)
        result = wm.detect([*context, token], false_positive_rate=1e-3)
    assert result.num_scored == 1
    return result.score


def word32(score: float) -> int:
    """The 32-bit word behind a version-1 uniform, from its score: u = (w + 0.5) / 2**32."""
    u = -np.expm1(-score)
    return int(np.clip(np.rint(u * 2.0**32 - 0.5), 0, 2**32 - 1))


def recover_row(wm: Watermarker, context: list[int]) -> np.ndarray:
    """Two queries (tokens 0 and 1) -> the predicted uniform of every token of the row."""
    word = (word32(query_score(wm, context, 1)) << 32) | word32(query_score(wm, context, 0))
    seed = (unmix(word) - GAMMA) & MASK64  # word 0 of the row is mix(seed + 1 * gamma)
    index = np.arange((VOCAB + 1) // 2, dtype=np.uint64)
    with np.errstate(over="ignore"):
        words = mix(np.uint64(seed) + (index + np.uint64(1)) * np.uint64(GAMMA))
    halves = np.stack([words & np.uint64(0xFFFFFFFF), words >> np.uint64(32)], axis=1)
    return (halves.reshape(-1)[:VOCAB].astype(np.float64) + 0.5) * 2.0**-32


def forge(wm: Watermarker, length: int, rng: np.random.Generator) -> list[int]:
    """A text built from detection answers alone: each token maximises the predicted uniform."""
    text = rng.integers(2, VOCAB, H).tolist()
    for _ in range(length):
        predicted = recover_row(wm, text[-H:])
        predicted[:2] = 0.0  # never pick a queried token: its answer is already known
        text.append(int(np.argmax(predicted)))
    return text


# -- keys ---------------------------------------------------------------------------------------


def v1_watermarker(secret: bytes) -> Watermarker:
    with pytest.warns(LegacyPRFWarning, match="reveal the key"):
        key = WatermarkKey.from_secret(secret, "gumbel", prf_version=1)
    return Watermarker(key)


def v2_watermarker(secret: bytes) -> Watermarker:
    key = WatermarkKey.from_secret(secret, "gumbel")
    assert key.prf_version == 2
    return Watermarker(key)


SECRETS = [bytes([0x60 + i]) * 32 for i in range(5)]
CONTEXTS = 5
PROBES = 400  # other tokens checked per context


def _probe(wm: Watermarker, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true uniforms of PROBES random tokens in each of CONTEXTS contexts."""
    predicted, truth = [], []
    for _ in range(CONTEXTS):
        context = rng.integers(2, VOCAB, H).tolist()
        row = recover_row(wm, context)
        tokens = rng.choice(np.arange(2, VOCAB), PROBES, replace=False)
        predicted.append(row[tokens])
        truth.append([-np.expm1(-query_score(wm, context, int(v))) for v in tokens])
    return np.concatenate(predicted), np.asarray(truth).reshape(-1)


@pytest.mark.parametrize("secret", SECRETS[:2], ids=lambda s: s[:1].hex())
def test_v1_two_answers_reveal_the_whole_row(secret):
    """The attack works against version 1: every other token of the context is predicted."""
    predicted, truth = _probe(v1_watermarker(secret), np.random.default_rng(1))
    assert np.allclose(predicted, truth, rtol=0, atol=1e-12)


@pytest.mark.parametrize("secret", SECRETS[:2], ids=lambda s: s[:1].hex())
def test_v2_two_answers_predict_other_tokens_no_better_than_chance(secret):
    """Against version 2 the same answers carry no information about other tokens.

    With an ideal PRF the true uniforms are independent of the two answered ones, so whether
    the prediction and the truth fall on the same side of 1/2 is a fair coin for each of
    the 2,000 probes: a two-sided binomial test at level 1e-4 (this check fails a correct
    implementation with probability 1e-4 per secret). No prediction is exact (each would be
    a 2**-52 coincidence) and the rank correlation is within 4 standard errors of 0.
    """
    predicted, truth = _probe(v2_watermarker(secret), np.random.default_rng(1))
    n = predicted.size
    agree = int(((predicted > 0.5) == (truth > 0.5)).sum())
    assert stats.binomtest(agree, n, 0.5).pvalue > 1e-4, f"{agree} of {n} agree"
    assert not np.isclose(predicted, truth, rtol=0, atol=1e-9).any()
    assert abs(stats.spearmanr(predicted, truth).statistic) < 4 / np.sqrt(n)


def test_forged_text_is_flagged_under_v1_and_not_under_v2():
    """The issue's forgery, 20 tokens from 40 detection answers per key.

    Version 1: the forged text's p-value is below 1e-30 for every secret (each token scores
    ~ -log(1 - max of 50,255 uniforms) ~ 11 nats). Version 2: the chosen tokens are
    functions of other tokens' answers only, so each scored uniform is independent and the
    p-value is Uniform(0, 1); the check p > 1e-3 fails a correct implementation with
    probability 1e-3 per secret (5 secrets: 0.5%).
    """
    for i, secret in enumerate(SECRETS):
        rng = np.random.default_rng(100 + i)
        old = v1_watermarker(secret)
        text = forge(old, 20, rng)
        result = old.detect(text, false_positive_rate=1e-3)
        assert result.num_scored == 20 and result.p_value < 1e-30, result

        new = v2_watermarker(secret)
        text = forge(new, 20, rng)
        result = new.detect(text, false_positive_rate=1e-3)
        assert result.num_scored == 20 and result.p_value > 1e-3, result
