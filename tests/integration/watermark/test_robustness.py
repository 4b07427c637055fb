"""Robustness of exp-edit to random edits of model output (issue target: p < 0.01 at 200 tokens)."""

from __future__ import annotations

import numpy as np
import torch

from safeguard.watermark import Watermarker, WatermarkKey


def attack(
    tokens: np.ndarray, vocab: int, rng: np.random.Generator, sub=0.3, ins=0.1, dele=0.1
) -> np.ndarray:
    """Substitute a `sub` share of tokens, then insert and delete `ins`/`dele` shares, at random."""
    out = tokens.copy()
    m = len(out)
    pos = rng.choice(m, size=round(sub * m), replace=False)
    out[pos] = rng.integers(0, vocab, size=len(pos))
    keep = np.ones(m, dtype=bool)
    keep[rng.choice(m, size=round(dele * m), replace=False)] = False
    out = list(out[keep])
    for _ in range(round(ins * m)):
        out.insert(int(rng.integers(0, len(out) + 1)), int(rng.integers(0, vocab)))
    return np.array(out)


def test_exp_edit_survives_30pct_substitution_plus_10pct_indels(lm):
    model, tok = lm
    wm = Watermarker(WatermarkKey.generate("exp-edit").bind(tok))
    prompts = [
        "The river",
        "A small library",
        "Patient is",
        "The market",
        "Trains ran",
        "She wrote",
    ]
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(4)
    out = wm.generate(
        model,
        **enc,
        do_sample=True,
        max_new_tokens=200,
        min_new_tokens=200,
        pad_token_id=tok.pad_token_id,
    )
    width = enc["input_ids"].shape[1]
    rng = np.random.default_rng(4)
    vocab = model.config.vocab_size
    ps = []
    for row in out:
        edited = attack(row[width:].numpy(), vocab, rng)
        ps.append(wm.detect(edited, resolution=1e-3, seed=0).p_value)
    assert max(ps) < 0.01, ps
    # the same edits applied to unwatermarked text stay unflagged
    plain = model.generate(
        **enc, do_sample=True, max_new_tokens=200, min_new_tokens=200, pad_token_id=tok.pad_token_id
    )
    null_ps = [
        wm.detect(attack(r[width:].numpy(), vocab, rng), resolution=1e-2, seed=1).p_value
        for r in plain
    ]
    assert min(null_ps) > 0.01 or np.mean(np.array(null_ps) <= 0.01) <= 1 / 6, null_ps
