"""The synthetic next-token source: calibrated entropy, determinism, and generate() with watermarks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from safeguard.errors import ConfigError
from safeguard.watermark.evaluation.synthetic import (
    SyntheticLM,
    SyntheticLMConfig,
    SyntheticSource,
    entropy_sweep,
)

torch = pytest.importorskip("torch")


def _entropy_along(model: SyntheticLM, sequences, prompt_len: int) -> float:
    with torch.no_grad():
        logp = torch.log_softmax(model(sequences).logits[:, prompt_len - 1 : -1].double(), -1)
    return float(-(logp.exp() * logp).sum(-1).mean())


@pytest.mark.parametrize("target", [0.5, 1.0, 2.0, 4.0])
def test_entropy_along_generated_text_matches_target(target):
    torch.manual_seed(0)
    (model,) = entropy_sweep([target], vocab_size=1000, seed=1)
    prompts = torch.randint(0, 1000, (4, 3))
    out = model.generate(
        input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=25
    )
    assert out.shape == (4, 28)
    assert abs(_entropy_along(model, out, 3) - target) < 0.05


@pytest.mark.parametrize("target", [0.5, 2.0, 4.0])
def test_entropy_with_spread_matches_on_average(target):
    src = SyntheticSource(vocab_size=1000, entropy=target, spread=0.3, seed=2)
    assert abs(src.mean_entropy(src.inverse_temperature) - target) < 1e-4
    rng = np.random.default_rng(0)
    hs = []
    for _ in range(1000):
        p = src.next_token_probs(rng.integers(0, 1000, size=2))
        hs.append(-(p * np.log(np.maximum(p, 1e-300))).sum())
    hs = np.asarray(hs)
    assert hs.std() > 0.05  # the entropy really varies across contexts
    # the mean over random contexts is an estimate: allow 4 standard errors (or 0.05 nats)
    assert abs(hs.mean() - target) < max(0.05, 4 * hs.std() / np.sqrt(hs.size))


def test_source_is_deterministic_and_depends_on_last_context_tokens():
    a = SyntheticSource(vocab_size=200, entropy=2.0, context=2, seed=7)
    b = SyntheticSource(vocab_size=200, entropy=2.0, context=2, seed=7)
    c = SyntheticSource(vocab_size=200, entropy=2.0, context=2, seed=8)
    p = a.next_token_probs([5, 9, 11])
    assert p.shape == (200,) and p.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(p, b.next_token_probs([5, 9, 11]))
    np.testing.assert_array_equal(p, a.next_token_probs([1, 9, 11]))  # only the last 2 count
    assert not np.array_equal(p, a.next_token_probs([9, 12]))
    assert not np.array_equal(p, c.next_token_probs([5, 9, 11]))
    np.testing.assert_array_equal(
        a.sample([1, 2], 20, rng=np.random.default_rng(3)),
        b.sample([1, 2], 20, rng=np.random.default_rng(3)),
    )


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="entropy"):
        SyntheticSource(vocab_size=20, entropy=3.5)  # log 20 = 3.0
    with pytest.raises(ConfigError, match="context"):
        SyntheticSource(vocab_size=20, entropy=1.0, context=0)


def test_generate_samples_from_the_source_distribution():
    # 4000 one-token continuations of one prompt: chi-square against next_token_probs
    model = SyntheticLM(SyntheticLMConfig(vocab_size=20, entropy=2.0, seed=4)).eval()
    torch.manual_seed(0)
    prompt = torch.tensor([[3, 7]]).repeat(4000, 1)
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=1)
    counts = np.bincount(out[:, -1].numpy(), minlength=20)
    expected = model.next_token_probs([3, 7]) * 4000
    keep = expected >= 5
    obs, exp = counts[keep], expected[keep]
    if (~keep).any():
        obs, exp = np.append(obs, counts[~keep].sum()), np.append(exp, expected[~keep].sum())
    assert stats.chisquare(obs, exp).pvalue > 1e-3  # fails by chance with probability 1e-3


def test_generate_with_our_watermark_and_kgw(tmp_path):
    from transformers import WatermarkingConfig

    from safeguard.watermark import Watermarker, WatermarkKey
    from safeguard.watermark.evaluation.competitors import KGW

    model = SyntheticLM(SyntheticLMConfig(vocab_size=500, entropy=3.0, seed=5))
    model.save_pretrained(tmp_path)
    model = SyntheticLM.from_pretrained(tmp_path).eval()
    assert model.source.entropy == 3.0
    torch.manual_seed(1)
    prompts = torch.randint(0, 500, (2, 4))
    kw = dict(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=60)

    wm = Watermarker(WatermarkKey.from_secret(bytes(range(32)), "gumbel"))
    out = wm.generate(model, **kw, do_sample=True)
    for row in range(2):
        assert wm.detect(out[row, 4:], prompt_ids=prompts[row]).p_value < 1e-6

    kgw = KGW(hashing_key=12345)
    cfg = kgw.generation_config(model.config)
    assert isinstance(cfg, WatermarkingConfig)
    out = model.generate(**kw, watermarking_config=cfg)
    for row in range(2):
        assert kgw.pvalue(prompts[row], out[row, 4:]) < 1e-4

    plain = model.generate(**kw)
    assert plain.shape == (2, 64)
    with pytest.raises(ConfigError, match="use_cache"):
        model.generate(**kw, use_cache=True)
