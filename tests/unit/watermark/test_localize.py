"""Localisation of watermarked spans in mixed documents (``gumbel``), without a model.

Watermarked tokens are simulated as in ``test_detection``: random next-token distributions
and the exponential-minimum rule with the key's PRF, many sequences in parallel. Mixed
documents come from the dilution attack, so their true boundaries are known.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from safeguard.errors import ConfigError, UsageError
from safeguard.watermark import LocalizationResult, Span, Watermarker, WatermarkKey, prf
from safeguard.watermark.evaluation.attacks import dilute
from safeguard.watermark.localize import localize_scores, scan_windows

VOCAB = 200


def simulate_gumbel_batch(
    wm: Watermarker, batch: int, length: int, rng: np.random.Generator, scale: float = 4.0
) -> np.ndarray:
    """``batch`` watermarked sequences of ``length`` tokens (after ``h`` random context tokens).

    Logits are normal with standard deviation ``scale``; at 4.0 a watermarked token scores
    about 2.4 on average (1.0 under the null). Repeated contexts fall back to plain sampling,
    as in generation.
    """
    h = wm.scheme.config.context_width
    seqs = rng.integers(0, VOCAB, size=(batch, h + length))
    seen: list[set[tuple[int, int]]] = [set() for _ in range(batch)]
    vocab = np.arange(VOCAB)
    for t in range(h, h + length):
        logits = rng.normal(size=(batch, VOCAB)) * scale
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        a, b = prf.context_words(wm.scheme.context_key, seqs[:, t - h : t])
        u = prf.uniforms(wm.scheme.token_key, a[:, None], b[:, None], vocab[None, :])
        marked = np.argmin(-np.log(u) / p, axis=1)
        plain = (p.cumsum(axis=1) > rng.random((batch, 1))).argmax(axis=1)
        for r in range(batch):
            pair = (int(a[r]), int(b[r]))
            seqs[r, t] = plain[r] if pair in seen[r] else marked[r]
            seen[r].add(pair)
    return seqs[:, h:]


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


@pytest.fixture(scope="module")
def wm() -> Watermarker:
    return Watermarker(WatermarkKey.from_secret(b"\x31" * 32, "gumbel"))


def test_spans_found_with_small_boundary_error(wm):
    # 100 documents of 600 tokens: 50 with one 150-token watermarked span, 50 with two
    # (at least 100 human tokens apart). Claim at a family-wise rate of 1e-3: the right number
    # of spans in >= 95% of documents, and every boundary within 20 tokens in >= 85% of them
    # (measured with this seed: 100 and 98 documents).
    rng = np.random.default_rng(11)
    marked = simulate_gumbel_batch(wm, 100, 300, rng)
    right_count = close = 0
    for d in range(100):
        spans = 1 + d % 2
        ids, mask = dilute(
            marked[d, : 150 * spans],
            rng.integers(0, VOCAB, size=600),
            150 * spans / 600,
            rng=rng,
            num_spans=spans,
            min_gap=100,
        )
        assert ids.size == 600
        res = wm.localize(ids, false_positive_rate=1e-3)
        truth = runs(mask)
        found = [(s.start, s.end) for s in res.spans]
        assert all(s.p_value <= 1e-3 for s in res.spans)
        if len(found) == len(truth):
            right_count += 1
            error = max(
                max(abs(a - c), abs(b - e)) for (a, b), (c, e) in zip(truth, found, strict=True)
            )
            close += error <= 20
    assert right_count >= 95, right_count
    assert close >= 85, close


def test_whole_watermarked_document_is_one_span(wm):
    rng = np.random.default_rng(12)
    ids = simulate_gumbel_batch(wm, 1, 300, rng)[0]
    res = wm.localize(ids)
    assert len(res.spans) == 1
    assert res.spans[0].start <= 10 and res.spans[0].end >= 290
    assert res.mask().sum() == res.spans[0].end - res.spans[0].start


def test_family_wise_error_on_unwatermarked_documents(wm):
    # 400 unwatermarked 600-token documents (half from a 30-token alphabet, so with many
    # repeated contexts) at alpha = 0.05: the number with any span must not exceed the upper
    # end of the 99.9% binomial interval of Bin(400, 0.05) (36); Bonferroni keeps the true
    # rate at or below alpha (11 of 400 with this seed, 2.75%).
    alpha = 0.05
    rng = np.random.default_rng(13)
    flagged = 0
    for d in range(400):
        alphabet = 30 if d % 2 else VOCAB
        res = wm.localize(rng.integers(0, alphabet, size=600), false_positive_rate=alpha)
        assert res.windows_tested > 200 and res.num_tokens == 600
        flagged += res.is_watermarked
    assert flagged <= stats.binom.ppf(0.9995, 400, alpha), flagged


def test_window_p_values_are_exact_under_the_null():
    # Every window's p-value is uniform under the null (KS over 200 documents' windows of one size).
    rng = np.random.default_rng(14)
    ps = []
    for _ in range(200):
        starts, sizes, p = scan_windows(rng.exponential(size=200), min_window=16)
        ps.append(p[(sizes == 32) & (starts % 64 == 0)])
    assert stats.kstest(np.concatenate(ps), "uniform").pvalue > 1e-3


def test_span_positions_include_the_context_of_the_first_scored_token():
    terms = np.full(301, 0.7)
    terms[100:200] = 2.5
    res = localize_scores(
        np.arange(4, 305), terms, num_tokens=305, context_width=4, false_positive_rate=1e-3
    )
    assert [(s.start, s.end) for s in res.spans] == [(100, 204)]
    d = res.to_dict()
    assert d["spans"][0]["start"] == 100 and d["method"] == "bonferroni" and d["is_watermarked"]
    assert isinstance(res, LocalizationResult) and isinstance(res.spans[0], Span)


def test_short_and_bad_input(wm):
    res = wm.localize([1, 2, 3, 4, 5, 6])
    assert res.spans == () and res.num_scored == 2 and res.windows_tested == 1
    with pytest.raises(ConfigError, match="min_window"):
        wm.localize(np.arange(50), min_window=0)
    with pytest.raises(UsageError, match="empty"):
        wm.localize([])
    exp = Watermarker(WatermarkKey.from_secret(b"\x32" * 32, "exp"))
    with pytest.raises(UsageError, match="gumbel scheme only"):
        exp.localize(np.arange(50))
