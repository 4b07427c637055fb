"""Detection-side Unicode normalisation on text from a tiny GPT-2 with a byte-level BPE tokenizer.

Homoglyph, zero-width and whitespace edits at rate 0.3 erase the ``gumbel`` watermark when
the text is tokenized as it is; ``detect_text`` normalises by default and recovers the clean
text exactly, so the p-value equals that of the unattacked text (not merely nearly: the
normalisation inverts each of these attacks character for character on text without
genuine Cyrillic or Greek words).
"""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safeguard.watermark import Watermarker, WatermarkKey, normalize_text
from safeguard.watermark.evaluation.attacks import homoglyphs, whitespace, zero_width
from safeguard.watermark.normalize import CONFUSABLES

ATTACKS = {"homoglyphs": homoglyphs, "zero-width": zero_width, "whitespace": whitespace}


@pytest.fixture(scope="module")
def marked(lm):
    """(watermarker, tokenizer, texts): four 200-token gumbel generations, decoded."""
    model, tok = lm
    wm = Watermarker(WatermarkKey.from_secret(b"\x41" * 32, "gumbel").bind(tok))
    tok.padding_side = "left"
    enc = tok(
        ["The river", "A small library", "Patient is", "The market"],
        return_tensors="pt",
        padding=True,
    )
    torch.manual_seed(5)
    out = wm.generate(
        model,
        **enc,
        do_sample=True,
        max_new_tokens=200,
        min_new_tokens=200,
        pad_token_id=tok.pad_token_id,
    )
    width = enc["input_ids"].shape[1]
    texts = [tok.decode(row[width:], skip_special_tokens=True) for row in out]
    return wm, tok, texts


@pytest.mark.parametrize("name", list(ATTACKS))
def test_normalisation_restores_detection_after_unicode_attacks(marked, name):
    wm, tok, texts = marked
    rng = np.random.default_rng(6)
    for text in texts:
        clean = wm.detect_text(text, tok)
        assert clean.p_value < 1e-6, clean.p_value
        attacked = ATTACKS[name](text, 0.3, rng=rng)
        assert attacked != text
        raw = wm.detect_text(attacked, tok, normalize=False)
        fixed = wm.detect_text(attacked, tok)
        # without normalisation the evidence is gone (homoglyphs, zero-width: p of 0.03-0.9)
        # or many orders of magnitude weaker (whitespace: p from 1e-64 to 1e-13 and the like);
        # with it, nothing is lost
        assert raw.p_value > 1e-3 or raw.p_value > clean.p_value * 1e6, (raw.p_value, clean.p_value)
        assert normalize_text(attacked) == text
        assert fixed.p_value == clean.p_value and fixed.num_scored == clean.num_scored


def test_normalisation_is_a_no_op_on_model_output(marked):
    # the untrained model's text holds U+FFFD and control characters: still untouched
    wm, tok, texts = marked
    for text in texts:
        assert normalize_text(text) == text
        assert (
            wm.detect_text(text, tok).p_value == wm.detect_text(text, tok, normalize=False).p_value
        )


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_text_is_unchanged(text):
    assert normalize_text(text) == text


def test_what_normalisation_maps_and_what_it_keeps():
    assert (
        normalize_text("\uff28\uff45\uff4c\uff4c\uff4f\uff0c\u3000\U0001d41d\uff59") == "Hello, dy"
    )
    assert normalize_text("a\u2028b\u2029c\u0085d\u00a0e\u202ff") == "a\nb\nc\nd e f"
    assert normalize_text("so\u00adft\u200bly\ufeff") == "softly"
    # every table entry maps back inside a Latin word
    for glyph, letter in CONFUSABLES.items():
        assert normalize_text(f"x{glyph}x") == f"x{letter}x"
        assert letter in string.ascii_letters
    # genuine Russian and Greek text is kept, including short all-look-alike words
    russian = (
        "\u043e\u043d \u0441\u043a\u0430\u0437\u0430\u043b, \u0447\u0442\u043e \u0430 \u0438 \u043e"
    )
    greek = "\u03bf \u03ba\u03cc\u03c3\u03bc\u03bf\u03c2 \u03b5\u03af\u03bd\u03b1\u03b9 \u03bc\u03b5\u03b3\u03ac\u03bb\u03bf\u03c2"
    assert normalize_text(russian) == russian
    assert normalize_text(greek) == greek
    # characters a model writes on its own are not rewritten (NFKC is not applied to them)
    assert (
        normalize_text("caf\u00e9 \u2026 \ufb01 x\u00b2 \u2014")
        == "caf\u00e9 \u2026 \ufb01 x\u00b2 \u2014"
    )
