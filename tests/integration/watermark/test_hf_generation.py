"""Watermarked generation through transformers on a tiny GPT-2 loaded with from_pretrained.

Statistical tests state their level; seeds are fixed, so each run is deterministic.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy import stats
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper

from safeguard.errors import WatermarkError
from safeguard.watermark import Watermarker, WatermarkKey

TEMPERATURE, TOP_K = 0.7, 20
NUM_KEYS = 2000
ALPHA = 1e-3  # level of every chi-square test below


def final_distribution(model, input_ids, temperature=TEMPERATURE, top_k=TOP_K):
    """The model's next-token distribution after temperature and top-k, computed independently."""
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits[:, -1]
    scores = TopKLogitsWarper(top_k)(
        input_ids, TemperatureLogitsWarper(temperature)(input_ids, logits)
    )
    return torch.softmax(scores.double(), dim=-1)[0].numpy()


def chi_square_p(counts, probs):
    support = probs > 0
    expected = probs[support] * counts.sum()
    observed = counts[support]
    small = expected < 5  # pool sparse cells so the chi-square approximation holds
    if small.any():
        expected = np.append(expected[~small], expected[small].sum())
        observed = np.append(observed[~small], observed[small].sum())
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["gumbel", "exp"])  # exp-edit generates exactly as exp
def test_distortion_free_after_temperature_and_top_k(lm, scheme):
    """First- and second-token frequencies over 2,000 fresh keys match the final distribution."""
    model, tok = lm
    enc = tok(["The river"], return_tensors="pt")
    prompt = enc["input_ids"]
    width = prompt.shape[1]
    rng = np.random.default_rng(2024)
    torch.manual_seed(0)
    pairs = []
    for _ in range(NUM_KEYS):
        wm = Watermarker(WatermarkKey.from_secret(rng.bytes(32), scheme))
        out = wm.generate(
            model,
            **enc,
            do_sample=True,
            max_new_tokens=2,
            temperature=TEMPERATURE,
            top_k=TOP_K,
            pad_token_id=tok.pad_token_id,
        )
        pairs.append((int(out[0, width]), int(out[0, width + 1])))
    first = np.array([a for a, _ in pairs])
    second = np.array([b for _, b in pairs])
    vocab = model.config.vocab_size

    p1 = final_distribution(model, prompt)
    assert chi_square_p(np.bincount(first, minlength=vocab), p1) > ALPHA
    # The test has power: the same samples reject the distribution without temperature.
    assert (
        chi_square_p(
            np.bincount(first, minlength=vocab), final_distribution(model, prompt, temperature=1.0)
        )
        < ALPHA
    )

    # Second token: its marginal is sum_y1 p1(y1) p(. | prompt, y1).
    p2 = np.zeros(vocab)
    for y1 in np.flatnonzero(p1):
        p2 += p1[y1] * final_distribution(model, torch.cat([prompt, torch.tensor([[y1]])], dim=1))
    assert chi_square_p(np.bincount(second, minlength=vocab), p2) > ALPHA


@pytest.mark.parametrize("scheme", ["gumbel", "exp-edit"])
def test_power_at_temperature_one(lm, scheme):
    """200-token watermarked generations are detected (p < 1e-3) in at least 95% of cases."""
    model, tok = lm
    wm = Watermarker(WatermarkKey.generate(scheme).bind(tok))
    prompts = [
        "The river",
        "A small library",
        "Patient is",
        "The market",
        "Trains ran",
        "She wrote",
        "The road",
        "Each team",
    ]
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(1)
    out = wm.generate(
        model,
        **enc,
        do_sample=True,
        max_new_tokens=200,
        min_new_tokens=200,
        temperature=1.0,
        top_k=0,
        pad_token_id=tok.pad_token_id,
    )
    width = enc["input_ids"].shape[1]
    options = {"resolution": 5e-4} if scheme != "gumbel" else {}
    ps = [wm.detect(row[width:], false_positive_rate=1e-3, **options).p_value for row in out]
    assert np.mean(np.array(ps) < 1e-3) >= 0.95, ps
    wrong = Watermarker(WatermarkKey.generate(scheme))
    assert np.median([wrong.detect(row[width:], **options).p_value for row in out[:4]]) > 0.01


def test_text_round_trip_with_the_bound_tokenizer(lm, tiny_lm_dir):
    from safeguard.watermark.tokenizer import load_tokenizer

    model, tok = lm
    wm = Watermarker(WatermarkKey.generate("gumbel").bind(tok))
    enc = tok(["The museum opened"], return_tensors="pt")
    out = wm.generate(
        model,
        **enc,
        do_sample=True,
        max_new_tokens=120,
        min_new_tokens=120,
        pad_token_id=tok.pad_token_id,
    )
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert wm.detect_text(text, tok).p_value < 1e-6
    assert (
        wm.detect_text(text, load_tokenizer(tiny_lm_dir), prompt="The museum opened").p_value < 1e-6
    )


@pytest.mark.filterwarnings("ignore::safeguard.watermark.keys.LegacyPRFWarning")
@pytest.mark.parametrize("prf_version", [1, 2])
def test_batch_with_left_padding_equals_one_by_one(lm, prf_version):
    """gumbel is a function of (key, context, distribution): padding a batch must not change a row.

    Every step is keyed here (``skip_repeated_context=False``): a repeated context is otherwise
    sampled from torch's generator, whose stream a batch consumes differently from one row.
    Both PRF versions generate and detect (version 1 for existing key files).
    """
    model, tok = lm
    wm = Watermarker(
        WatermarkKey.from_secret(
            b"left-padding-test-key-0123456789", "gumbel", context_width=4,
            skip_repeated_context=False, prf_version=prf_version,
        )
    )  # fmt: skip
    prompts = [
        "The",
        "A small library on the corner",
        "Children read adventure",
    ]  # first is shorter than h
    enc = tok(prompts, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any()
    batched = wm.generate(
        model,
        **enc,
        do_sample=True,
        max_new_tokens=30,
        min_new_tokens=30,
        pad_token_id=tok.pad_token_id,
    )
    width = enc["input_ids"].shape[1]
    for r, prompt in enumerate(prompts):
        single = tok([prompt], return_tensors="pt")
        alone = wm.generate(
            model,
            **single,
            do_sample=True,
            max_new_tokens=30,
            min_new_tokens=30,
            pad_token_id=tok.pad_token_id,
        )
        assert batched[r, width:].tolist() == alone[0, single["input_ids"].shape[1] :].tolist()
        # and detection with the unpadded prompt reproduces the generation contexts exactly
        res = wm.detect(batched[r, width:], prompt_ids=single["input_ids"][0])
        assert res.num_scored >= 25 and res.p_value < 1e-6


def test_one_key_repeated_prompt_gives_different_texts_until_the_memory_is_cleared(lm, caplog):
    """gumbel remembers the contexts earlier texts used: samples of one prompt differ (in one
    batch and across calls), and clearing the memory reproduces a seeded generation exactly.
    With ``context_memory=0`` every sample of a prompt is the same text, and a warning says so."""
    model, tok = lm
    secret = b"context-memory-test-key-01234567"
    enc = tok(["The river"], return_tensors="pt")
    width = enc["input_ids"].shape[1]
    kwargs = dict(do_sample=True, max_new_tokens=12, pad_token_id=tok.pad_token_id)

    wm = Watermarker(WatermarkKey.from_secret(secret, "gumbel"))
    torch.manual_seed(5)
    many = wm.generate(model, **enc, num_return_sequences=6, **kwargs)
    assert len({tuple(r[width:].tolist()) for r in many}) == 6
    assert wm.scheme.memory.repeats >= 5  # rows 2-6 met row 1's first context
    # every row is still watermarked where its contexts were new
    assert wm.detect(many[0, width:], prompt_ids=enc["input_ids"][0]).p_value < 1e-3

    wm.clear_context_memory()
    torch.manual_seed(6)
    first = wm.generate(model, **enc, **kwargs)
    torch.manual_seed(6)
    second = wm.generate(model, **enc, **kwargs)
    assert first[0, width:].tolist() != second[0, width:].tolist()
    wm.clear_context_memory()
    assert wm.scheme.memory.lookups == 0
    torch.manual_seed(6)
    again = wm.generate(model, **enc, **kwargs)
    assert again.tolist() == first.tolist()

    fixed = Watermarker(WatermarkKey.from_secret(secret, "gumbel", context_memory=0))
    assert fixed.scheme.memory is None
    with caplog.at_level(logging.WARNING, logger="safeguard.watermark.hf"):
        same = fixed.generate(model, **enc, num_return_sequences=3, **kwargs)
    assert len({tuple(r[width:].tolist()) for r in same}) == 1
    assert "context_memory is 0" in caplog.text


@pytest.mark.slow
def test_two_texts_under_one_key_are_independent_samples(lm):
    """Over 2,000 keys, two samples of the same prompt under one key: the second sample's first
    token follows the model's distribution and equals the first sample's as often as two
    independent draws do (sum of p squared; binomial test at level 1e-3). Without the memory
    they would always be equal."""
    model, tok = lm
    enc = tok(["The river"] * 2, return_tensors="pt")
    width = enc["input_ids"].shape[1]
    p = final_distribution(model, enc["input_ids"][:1])
    rng = np.random.default_rng(77)
    torch.manual_seed(1)
    first, second = [], []
    for _ in range(NUM_KEYS):
        wm = Watermarker(WatermarkKey.from_secret(rng.bytes(32), "gumbel"))
        out = wm.generate(
            model, **enc, do_sample=True, max_new_tokens=1, temperature=TEMPERATURE,
            top_k=TOP_K, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        first.append(int(out[0, width]))
        second.append(int(out[1, width]))
    first, second = np.array(first), np.array(second)
    vocab = model.config.vocab_size
    assert chi_square_p(np.bincount(first, minlength=vocab), p) > ALPHA
    assert chi_square_p(np.bincount(second, minlength=vocab), p) > ALPHA
    equal = int((first == second).sum())
    assert stats.binomtest(equal, NUM_KEYS, float((p**2).sum())).pvalue > ALPHA


def test_exp_rows_get_their_own_shift(lm):
    model, tok = lm
    wm = Watermarker(WatermarkKey.generate("exp"))
    enc = tok(["The river"] * 4, return_tensors="pt")
    torch.manual_seed(3)
    out = wm.generate(
        model, **enc, do_sample=True, max_new_tokens=40, pad_token_id=tok.pad_token_id
    )
    rows = {tuple(r.tolist()) for r in out}
    assert len(rows) == 4  # same prompt, same key, different shifts -> different texts
    for row in out:
        assert wm.detect(row[enc["input_ids"].shape[1] :], resolution=1e-2).p_value <= 0.02


def test_watermarking_config_route_and_pipeline(lm):
    from transformers import pipeline

    model, tok = lm
    wm = Watermarker(WatermarkKey.generate("gumbel"))
    enc = tok(["The river"], return_tensors="pt")
    out = model.generate(
        **enc,
        watermarking_config=wm.watermarking_config(),
        do_sample=True,
        max_new_tokens=80,
        min_new_tokens=80,
        pad_token_id=tok.pad_token_id,
    )
    assert (
        wm.detect(out[0, enc["input_ids"].shape[1] :], prompt_ids=enc["input_ids"][0]).p_value
        < 1e-6
    )
    pipe = pipeline("text-generation", model=model, tokenizer=tok)
    generated = pipe(
        "The river",
        watermarking_config=wm.watermarking_config(),
        do_sample=True,
        max_new_tokens=80,
        min_new_tokens=80,
        return_full_text=False,
    )
    text = generated[0]["generated_text"]
    assert wm.detect_text(text, tok, prompt="The river").p_value < 1e-4  # re-tokenised text
    # the config's serialised forms carry the key id, never the secret
    cfg = wm.watermarking_config()
    assert wm.key.key_id in cfg.to_json_string() and wm.key._secret.hex() not in repr(cfg)


@pytest.mark.parametrize(
    "kwargs",
    [{"do_sample": False}, {"do_sample": True, "num_beams": 2}, {}],
    ids=["greedy", "beam", "default-greedy"],
)
def test_greedy_and_beam_search_are_refused(lm, kwargs):
    model, tok = lm
    wm = Watermarker(WatermarkKey.generate("gumbel"))
    enc = tok(["The river"], return_tensors="pt")
    with pytest.raises(WatermarkError, match="do_sample=True"):
        wm.generate(model, **enc, max_new_tokens=3, pad_token_id=tok.pad_token_id, **kwargs)
    with pytest.raises(WatermarkError, match="do_sample=True"):
        model.generate(
            **enc,
            watermarking_config=wm.watermarking_config(),
            max_new_tokens=3,
            pad_token_id=tok.pad_token_id,
            **kwargs,
        )


def test_right_padding_is_refused(lm):
    model, tok = lm
    wm = Watermarker(WatermarkKey.generate("gumbel"))
    enc = tok(["The", "A small library"], return_tensors="pt", padding=True, padding_side="right")
    with pytest.raises(Exception, match="left padding"):
        wm.generate(model, **enc, do_sample=True, max_new_tokens=3, pad_token_id=tok.pad_token_id)


def test_processor_never_modifies_scores_in_place(lm):
    from safeguard.watermark.hf import WatermarkLogitsProcessor

    wm = Watermarker(WatermarkKey.generate("gumbel"))
    proc = WatermarkLogitsProcessor(wm.scheme)
    scores = torch.randn(2, 50)
    before = scores.clone()
    out = proc(torch.randint(0, 50, (2, 6)), scores)
    assert torch.equal(scores, before)
    assert ((out == 0).sum(dim=1) == 1).all() and torch.isinf(out).sum() == 2 * 49


@pytest.mark.filterwarnings("ignore::safeguard.watermark.keys.LegacyPRFWarning")
@pytest.mark.parametrize("prf_version", [1, 2])
def test_sparse_and_dense_selection_agree(prf_version):
    """Top-k sampling reads uniforms only on the support; the choice equals the dense rule."""
    from safeguard.watermark.hf import WatermarkLogitsProcessor

    wm = Watermarker(WatermarkKey.from_secret(b"\x5a" * 32, prf_version=prf_version))
    proc = WatermarkLogitsProcessor(wm.scheme)
    gen = torch.Generator().manual_seed(5)
    for _ in range(50):
        scores = torch.randn(3, 4000, generator=gen) * 3
        kth = scores.topk(10, dim=1).values[:, -1:]
        sparse_scores = scores.masked_fill(scores < kth, float("-inf"))
        a, b = (
            torch.randint(0, 2**32, (3,), generator=gen),
            torch.randint(0, 2**32, (3,), generator=gen),
        )
        sparse = proc.select(sparse_scores, a, b)
        from safeguard.watermark import prf_torch

        u = prf_torch.uniform_matrix(wm.scheme.token_key, a, b, 4000)
        probs = torch.softmax(sparse_scores.double(), dim=1)
        dense = torch.where(
            probs > 0, -torch.log(u) / probs.clamp_min(1e-300), float("inf")
        ).argmin(dim=1)
        assert torch.equal(sparse, dense)


def test_generation_logs_never_show_the_secret(lm, caplog):
    model, tok = lm
    key = WatermarkKey.generate("exp", key_len=8)
    wm = Watermarker(key)
    enc = tok(["The river"], return_tensors="pt")
    with caplog.at_level(logging.DEBUG):
        wm.generate(
            model,
            **enc,
            do_sample=True,
            max_new_tokens=12,
            min_new_tokens=12,
            pad_token_id=tok.pad_token_id,
        )
    assert "no longer distortion-free" in caplog.text  # 12 tokens > key_len 8: warned
    assert key._secret.hex() not in caplog.text


def test_light_tokenizer_ignores_saved_truncation(lm, tmp_path):
    """A tokenizer saved after a truncated call must not truncate texts at detection time."""
    from safeguard.watermark.tokenizer import load_tokenizer

    _, tok = lm
    tok(["a fairly long sentence " * 20], truncation=True, max_length=8)
    tok.save_pretrained(tmp_path)
    text = "The river rose slowly through the night and the fields were under water " * 5
    light = load_tokenizer(tmp_path)
    assert (
        len(light(text)["input_ids"]) == len(tok(text, add_special_tokens=False)["input_ids"]) > 8
    )
