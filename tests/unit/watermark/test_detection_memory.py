"""Detection memory: each (context, token) pair scored once per key; per-key FPR is binomial.

The statistical tests run the same stream of null texts under many fixed keys and test
the per-key false-positive counts against independent Binomial(n, alpha) counts with the
chi-square dispersion statistic D = sum_k (c_k - n alpha)^2 / (n alpha (1 - alpha)) ~ chi2(K).
Seeds are fixed, so each test is deterministic; the stated rates are how often a test at
that threshold would fail for a correct detector on a fresh seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

import numpy as np
import pytest
from scipy import stats

from safeguard.errors import ConfigError, DetectionError
from safeguard.watermark import DetectionMemory, Watermarker, WatermarkKey

VOCAB = 5000


def _key(i: int, scheme: str = "gumbel") -> WatermarkKey:
    return WatermarkKey.from_secret(hashlib.sha256(f"memory-test/{i}".encode()).digest(), scheme)


def _near_duplicates(n: int, seed: int) -> list[np.ndarray]:
    """Texts of 4 snippets of 30 tokens drawn from a pool of 40: each snippet in ~100 texts."""
    rng = np.random.default_rng(seed)
    pool = [rng.integers(0, VOCAB, 30) for _ in range(40)]
    return [np.concatenate([pool[j] for j in rng.integers(0, 40, 4)]) for _ in range(n)]


def _counts(
    texts: list[np.ndarray], keys: int, alpha: float, memory: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per key: texts flagged at ``alpha``, and texts with at least one scored pair."""
    flagged, tested = [], []
    for i in range(keys):
        key = _key(i)
        extra = {"memory": DetectionMemory(key.key_id, capacity=1 << 16)} if memory else {}
        res = Watermarker(key).detect_batch(
            texts, false_positive_rate=alpha, num_threads=1, **extra
        )
        flagged.append(sum(r.p_value <= alpha for r in res))
        tested.append(sum(r.num_scored > 0 for r in res))
    return np.asarray(flagged), np.asarray(tested)


def _dispersion_p(counts: np.ndarray, n: np.ndarray | int, alpha: float) -> float:
    """Upper tail of D = sum (c_k - n_k alpha)^2 / (n_k alpha (1 - alpha)) ~ chi2(K)."""
    n = np.broadcast_to(np.asarray(n, dtype=float), counts.shape)
    d = np.sum((counts - n * alpha) ** 2 / (n * alpha * (1 - alpha)))
    return float(stats.chi2.sf(d, counts.size))


def test_near_duplicates_are_over_dispersed_without_memory_and_binomial_with_it():
    # 100 fixed keys x 1,000 near-duplicate texts, alpha = 0.05 and 0.01. With the memory a
    # text whose pairs were all scored before has no new evidence (p = 1, "too short to
    # test"); every other text's p-value is uniform given all earlier answers, so a key's
    # count is Binomial(n_k, alpha) with n_k its texts with a scored pair: the rate over all
    # texts is at most alpha, and the dispersion test at 1e-3 fails a correct detector 0.1%
    # of the time per level. Without the memory the counts move in blocks of shared snippets
    # (p far below 1e-6 on this corpus).
    texts = _near_duplicates(1000, seed=20261206)
    for alpha in (0.05, 0.01):
        stateless, _ = _counts(texts, 100, alpha, memory=False)
        assert _dispersion_p(stateless, 1000, alpha) < 1e-6
        remembered, tested = _counts(texts, 100, alpha, memory=True)
        assert _dispersion_p(remembered, tested, alpha) > 1e-3
        # The worst of 100 binomial keys is >= 2x alpha at 0.01 with probability 0.14; at
        # 2.5x (25/1000) with probability 0.003.
        assert remembered.max() <= 2.5 * 1000 * alpha


def test_one_fixed_key_over_a_long_repetitive_stream():
    # One key for a whole deployment: 20,000 texts, each two stock phrases from a pool of 60
    # (every phrase in ~670 texts) around 20 new tokens. Under this one key the false-
    # positive count at 0.01 is Binomial(n, 0.01) over the n texts with a scored pair
    # (mean ~200, sd ~14); the band is +-3 sd (a correct detector falls outside it 0.27% of
    # the time). Without the memory the stock phrases' scores are shared by hundreds of texts.
    rng = np.random.default_rng(7)
    pool = [rng.integers(0, VOCAB, 25) for _ in range(60)]
    texts = [
        np.concatenate([pool[rng.integers(60)], rng.integers(0, VOCAB, 20), pool[rng.integers(60)]])
        for _ in range(20000)
    ]
    key = _key(1000)
    memory = DetectionMemory(key.key_id)
    res = Watermarker(key).detect_batch(
        texts, false_positive_rate=0.01, num_threads=1, memory=memory
    )
    tested = sum(r.num_scored > 0 for r in res)
    flagged = sum(r.p_value <= 0.01 for r in res)
    assert tested > 19000
    assert abs(flagged - 0.01 * tested) <= 3 * np.sqrt(tested * 0.01 * 0.99)
    assert memory.skipped > 20000 * 40  # the stock phrases were scored once each


def test_repeat_gets_the_same_answer_and_a_near_copy_only_its_new_pairs():
    key = _key(1)
    wm = Watermarker(key)
    memory = DetectionMemory(key.key_id, capacity=1 << 12)
    rng = np.random.default_rng(0)
    text = rng.integers(0, VOCAB, 120)
    first = wm.detect(text, memory=memory)
    again = wm.detect(text, memory=memory)
    assert (again.p_value, again.num_scored) == (first.p_value, first.num_scored)
    plain = wm.detect(text)  # a first sighting scores as without a memory
    assert first.num_scored == plain.num_scored
    assert first.p_value == pytest.approx(plain.p_value, rel=1e-12)
    copy = text.copy()
    copy[60:] = rng.integers(0, VOCAB, 60)
    near = wm.detect(copy, memory=memory)
    # Its first 60 tokens were scored with the original: only positions 60-119 are new.
    assert near.num_scored <= 60 < wm.detect(copy).num_scored
    # Within one batch: a text twice gets one answer; order decides who scores a shared pair.
    memory2 = DetectionMemory(key.key_id)
    a, b, c = wm.detect_batch([text, copy, text], memory=memory2)
    assert a == c and a.p_value == first.p_value
    assert b.num_scored == near.num_scored


def test_a_probe_learns_each_pair_once():
    # A caller who asks about the same pair twice (the key-recovery probe of issue 14 section
    # 2 needs two answers per context) gets nothing new the second time.
    key = _key(2)
    wm = Watermarker(key)
    memory = DetectionMemory(key.key_id)
    prompt = np.array([1, 2, 3, 4])
    first = wm.detect([10, 11], prompt_ids=prompt, memory=memory)
    second = wm.detect([10, 12], prompt_ids=prompt, memory=memory)  # same first pair
    assert first.num_scored == 2
    assert second.num_scored == 1


def test_memory_is_bound_to_its_key_and_scheme():
    key, other = _key(3), _key(4)
    memory = DetectionMemory(key.key_id)
    with pytest.raises(DetectionError, match="belongs to key"):
        Watermarker(other).detect([1, 2, 3, 4, 5, 6], memory=memory)
    exp_key = _key(5, "exp")
    with pytest.raises(ConfigError, match="gumbel"):
        Watermarker(exp_key).detect([1, 2, 3], memory=DetectionMemory(exp_key.key_id))
    with pytest.raises(ConfigError, match="DetectionMemory"):
        Watermarker(key).detect([1, 2, 3], memory=[1, 2, 3])
    with pytest.raises(ConfigError, match="no detection memory for key"):
        Watermarker(key).detect([1, 2, 3], memory={other.key_id: DetectionMemory(other.key_id)})
    with pytest.raises(ConfigError, match="capacity"):
        DetectionMemory(key.key_id, capacity=0)
    with pytest.raises(ConfigError, match="key_id"):
        DetectionMemory("")


def test_save_load_round_trip_private_and_refuses_hostile_files(tmp_path):
    key = _key(6)
    wm = Watermarker(key)
    memory = DetectionMemory(key.key_id, capacity=1 << 12)
    rng = np.random.default_rng(1)
    texts = [rng.integers(0, VOCAB, 80) for _ in range(5)]
    answers = wm.detect_batch(texts, memory=memory)
    path = memory.save(tmp_path / "m.npz")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = DetectionMemory.load(path, key_id=key.key_id)
    assert (loaded.pairs, loaded.texts) == (memory.pairs, memory.texts)
    assert wm.detect_batch(texts, memory=loaded) == answers  # repeats answered as before
    fresh = rng.integers(0, VOCAB, 80)
    assert wm.detect(fresh, memory=loaded).num_scored == wm.detect(fresh, memory=memory).num_scored
    with pytest.raises(DetectionError, match="belongs to key"):
        DetectionMemory.load(path, key_id=_key(7).key_id)
    for bad in (b"", b"not a zip", path.read_bytes()[:100]):
        (tmp_path / "bad.npz").write_bytes(bad)
        with pytest.raises(DetectionError, match="not a detection memory"):
            DetectionMemory.load(tmp_path / "bad.npz")
    # Well-formed archives with damaged contents are refused too, never half-loaded.
    good = dict(np.load(path, allow_pickle=False))
    header = json.loads(str(good["header"]))
    for name, value in (
        ("header", np.array(json.dumps({k: v for k, v in header.items() if k != "pairs"}))),
        ("bits", good["bits"][:-1]),
        ("digests", good["digests"][:, :8]),
        ("answers", good["answers"][:-1]),
    ):
        np.savez(tmp_path / "damaged.npz", **{**good, name: value})
        with pytest.raises(DetectionError, match="damaged detection memory"):
            DetectionMemory.load(tmp_path / "damaged.npz")
    # A missing file is a new, empty memory (the threat model: deleting it forgets pairs).
    assert DetectionMemory.open(tmp_path / "none.npz", key.key_id).pairs == 0


def test_over_capacity_loses_power_not_validity():
    # A filter at 3.4x its capacity (112,000 pairs in one for 32,768) reads ~10% of never-seen
    # pairs as seen and skips them. Skipping does not depend on a pair's uniform, so
    # p-values stay uniform: the count at 0.05 stays within 3 binomial sd (0.27% error rate).
    key = _key(8)
    memory = DetectionMemory(key.key_id, capacity=1 << 15)
    rng = np.random.default_rng(2)
    texts = [rng.integers(0, VOCAB, 60) for _ in range(2000)]
    wm = Watermarker(key)
    res = [
        r
        for i in range(0, 2000, 100)  # in batches: within one batch, pairs are compared exactly
        for r in wm.detect_batch(texts[i : i + 100], false_positive_rate=0.05, memory=memory)
    ]
    assert memory.over_capacity
    tested = sum(r.num_scored > 0 for r in res)
    flagged = sum(r.p_value <= 0.05 for r in res)
    assert abs(flagged - 0.05 * tested) <= 3 * np.sqrt(tested * 0.05 * 0.95)
    assert np.mean([r.num_scored for r in res[-500:]]) < 54  # of 56: false hits cost power
