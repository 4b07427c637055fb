"""KGW and SynthID-Text as library competitors: power, calibrated null, agreement with transformers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from safeguard.errors import ConfigError, DetectionError
from safeguard.watermark.evaluation.competitors import KGW, Competitor, SynthID, kgw_greenlist
from safeguard.watermark.evaluation.metrics import fpr_check
from safeguard.watermark.evaluation.synthetic import SyntheticLM, SyntheticLMConfig

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 400
PROMPT = 4
NULL_TEXTS = 40
NULL_LEVEL = 0.05


@pytest.fixture(scope="module")
def synthetic():
    """SyntheticLM at 3 nats (small vocabulary so that SynthID stays fast)."""
    torch.set_num_threads(1)
    return SyntheticLM(SyntheticLMConfig(vocab_size=VOCAB, entropy=3.0, seed=11)).eval()


@pytest.fixture(scope="module")
def null_texts(synthetic):
    """Unwatermarked texts (prompt, 60 generated tokens) sampled from the numpy source."""
    rng = np.random.default_rng(2024)
    out = []
    for _ in range(NULL_TEXTS):
        prompt = rng.integers(0, VOCAB, size=PROMPT)
        out.append((prompt, synthetic.source.sample(prompt, 60, rng=rng)))
    return out


def _generate(model, cfg, rows=3, new=60, seed=0):
    torch.manual_seed(seed)
    prompts = torch.randint(0, model.config.vocab_size, (rows, PROMPT))
    out = model.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        do_sample=True,
        top_k=0,
        max_new_tokens=new,
        watermarking_config=cfg,
    )
    return prompts.numpy(), out[:, PROMPT:].numpy()


def test_both_follow_the_protocol():
    assert isinstance(KGW(), Competitor) and isinstance(SynthID(), Competitor)
    assert KGW().name == "kgw" and SynthID().name == "synthid"


def test_keys_stay_out_of_repr():
    assert "987654" not in repr(KGW(hashing_key=987654))
    assert "123457" not in repr(SynthID(keys=[123457, 2, 3]))


def test_kgw_greenlist_agrees_with_transformers_detector(synthetic):
    from transformers import WatermarkDetector

    kgw = KGW(greenlist_ratio=0.3, hashing_key=424242)
    cfg = kgw.generation_config(synthetic.config)
    detector = WatermarkDetector(synthetic.config, "cpu", cfg, ignore_repeated_ngrams=True)
    for prev in (0, 1, 17, 399):
        theirs = detector.processor._get_greenlist_ids(torch.tensor([prev])).numpy()
        ours = kgw_greenlist(prev, vocab_size=VOCAB, greenlist_ratio=0.3, hashing_key=424242)
        np.testing.assert_array_equal(np.sort(theirs), np.sort(ours))
        assert kgw.green_mask(prev).sum() == int(VOCAB * 0.3)
    # token by token on a watermarked text: same scored pairs, same green count
    prompts, gen = _generate(synthetic, cfg, rows=2, new=50)
    for prompt, g in zip(prompts, gen, strict=True):
        scored, green = kgw.green_tokens(prompt, g)
        seq = torch.tensor(np.concatenate([prompt[-1:], g]))[None]
        n_theirs, g_theirs = detector._score_ngrams_in_passage(seq)
        assert scored.sum() == n_theirs[0]
        assert (green & scored).sum() == g_theirs[0]
        # transformers' own reported p-value (repeats counted, normal tail) is normal_pvalues
        detector_all = WatermarkDetector(synthetic.config, "cpu", cfg)
        reported = detector_all(seq, return_dict=True).p_value[0]
        assert kgw.normal_pvalues(prompt, g, [g.size])[0] == pytest.approx(reported, rel=1e-6)


def test_kgw_pvalues_exact_binomial_by_hand():
    kgw = KGW(vocab_size=VOCAB, hashing_key=99)
    prompt = np.array([5, 6])
    gen = np.array([7, 8, 7, 8, 7, 8, 9])
    scored, green = kgw.green_tokens(prompt, gen)
    # pairs: (6,7) (7,8) (8,7) (7,8)r (8,7)r (7,8)r (8,9) -> 4 distinct
    np.testing.assert_array_equal(scored, [1, 1, 1, 0, 0, 0, 1])
    p = kgw.prefix_pvalues(prompt, gen, [1, 3, 7])
    for j, length in enumerate([1, 3, 7]):
        n = scored[:length].sum()
        g = (green & scored)[:length].sum()
        assert p[j] == pytest.approx(stats.binomtest(int(g), int(n), 0.25, "greater").pvalue)
    assert kgw.pvalue(prompt, gen) == pytest.approx(p[-1])
    with pytest.raises(DetectionError, match="lengths"):
        kgw.prefix_pvalues(prompt, gen, [8])
    with pytest.raises(ConfigError, match="vocab"):
        KGW().green_mask(3)


def test_kgw_detects_and_null_is_calibrated(synthetic, null_texts):
    kgw = KGW(hashing_key=31337)
    prompts, gen = _generate(synthetic, kgw.generation_config(synthetic.config))
    for prompt, g in zip(prompts, gen, strict=True):
        p = kgw.prefix_pvalues(prompt, g, [20, 40, 60])
        assert p[-1] < 1e-4
        assert np.all(np.diff(np.log(p)) < 1.0)  # no wild jumps upward
    null_p = [kgw.pvalue(prompt, g) for prompt, g in null_texts]
    check = fpr_check(null_p, levels=(NULL_LEVEL,))[0]
    # 40 null texts at 5%: the level allows up to max_consistent (= 5) false positives
    assert check.consistent, check
    assert min(null_p) > 1e-4


def test_synthid_detects_and_null_is_calibrated(synthetic, null_texts):
    synthid = SynthID(ngram_len=3, num_layers=20, seed=5)
    cfg = synthid.generation_config(synthetic.config)
    assert isinstance(cfg, transformers.SynthIDTextWatermarkingConfig)
    assert abs(synthid.q - 0.5) < 0.01
    prompts, gen = _generate(synthetic, cfg, rows=2, new=50)
    for prompt, g in zip(prompts, gen, strict=True):
        p = synthid.prefix_pvalues(prompt, g, [10, 25, 50])
        assert p[-1] < 1e-4
        assert synthid.pvalue(prompt, g) == pytest.approx(p[-1])
    # a detector built from the same keys alone (no model config) gives the same p-values
    fresh = SynthID(ngram_len=3, num_layers=20, seed=5)
    assert fresh.pvalue(prompts[0], gen[0]) == synthid.pvalue(prompts[0], gen[0])
    null_p = [synthid.pvalue(prompt, g) for prompt, g in null_texts]
    check = fpr_check(null_p, levels=(NULL_LEVEL,))[0]
    assert check.consistent, check
    assert min(null_p) > 1e-4


def test_synthid_pvalue_by_hand(synthetic):
    synthid = SynthID(ngram_len=3, keys=[11, 22, 33], vocab_size=VOCAB)
    gen = np.array([4, 5, 6, 4, 5, 9, 9, 9])
    scored, g_sum = synthid.scored_gvalues(gen)
    # contexts (0,0) (0,4) (4,5) (5,6) (6,4) (4,5)r (5,9) (9,9): the 6th token is not scored
    assert scored.tolist() == [True, True, True, True, True, False, True, True]
    assert g_sum.min() >= 0 and g_sum.max() <= 3
    p = synthid.prefix_pvalues(None, gen, [8])[0]
    n, s = 3 * scored.sum(), int((g_sum * scored).sum())
    assert p == pytest.approx(stats.binom.sf(s - 1, n, synthid.q))


def test_kgw_on_tiny_gpt2(lm):
    model, tokenizer = lm
    kgw = KGW(hashing_key=2718)
    enc = tokenizer(["the patient was seen", "a note about"], return_tensors="pt", padding=True)
    out = model.generate(
        **enc,
        do_sample=True,
        top_k=0,
        max_new_tokens=40,
        watermarking_config=kgw.generation_config(model.config),
        pad_token_id=tokenizer.pad_token_id,
    )
    prompt_len = enc["input_ids"].shape[1]
    p = [kgw.pvalue(enc["input_ids"][i], out[i, prompt_len:]) for i in range(2)]
    # the tiny model's entropy is high, so 40 tokens carry plenty of signal
    assert max(p) < 1e-3, p


def test_batched_pvalues_equal_one_by_one(null_texts):
    """The batch paths (one green list per previous token, one g-value pass per length) agree."""
    rng = np.random.default_rng(5)
    prompts = [p for p, _ in null_texts] + [rng.integers(0, VOCAB, size=PROMPT)]
    gens = [g for _, g in null_texts] + [rng.integers(0, VOCAB, size=17)]
    gens[0] = np.concatenate([gens[0][:20], gens[0][:20]])  # repeated pairs and n-grams
    for scheme in (KGW(hashing_key=99, vocab_size=VOCAB), SynthID(seed=4)):
        one_by_one = np.array([scheme.pvalue(p, g) for p, g in zip(prompts, gens, strict=True)])
        np.testing.assert_allclose(scheme.pvalues(prompts, gens), one_by_one, rtol=1e-12)
