"""Attacks change exactly what they say, at the stated rate, reproducibly from a seed."""

from __future__ import annotations

import itertools
import unicodedata

import numpy as np
import pytest

from safeguard.errors import UsageError
from safeguard.watermark.evaluation import attacks
from safeguard.watermark.evaluation.attacks import (
    HOMOGLYPHS,
    NEWLINE_VARIANTS,
    SPACE_VARIANTS,
    ZERO_WIDTH,
    apply_attack,
    delete,
    delete_words,
    dilute,
    homoglyphs,
    insert,
    list_attacks,
    roundtrip,
    substitute,
    whitespace,
    zero_width,
)

VOCAB = 50
TEXT = (
    "The river runs past the old mill and into the valley.\n"
    "Every spring the water rises, and the farmers move their sheep to higher ground."
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def is_subsequence(small: np.ndarray, big: np.ndarray) -> bool:
    it = iter(big.tolist())
    return all(x in it for x in small.tolist())


class ToyTokenizer:
    """One token per character of a small alphabet; unknown characters map to id 0."""

    alphabet = "\x00 \nabcdefghijklmnopqrstuvwxyzTEFR.,"

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [max(self.alphabet.find(c), 0) for c in text]}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(self.alphabet[i] for i in ids)

    def __len__(self) -> int:
        return len(self.alphabet)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 1.0])
def test_substitute_changes_exactly_round_rate_n(rate):
    ids = np.random.default_rng(1).integers(0, VOCAB, size=200)
    out = substitute(ids, rate, vocab_size=VOCAB, rng=rng())
    assert out.shape == ids.shape
    assert (out != ids).sum() == round(rate * 200)
    assert out.min() >= 0 and out.max() < VOCAB


@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0])
def test_insert_adds_exactly_round_rate_n_and_keeps_order(rate):
    ids = np.arange(100) % VOCAB
    out = insert(ids, rate, vocab_size=VOCAB, rng=rng())
    assert out.size == 100 + round(rate * 100)
    assert is_subsequence(ids, out)


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_delete_removes_exactly_round_rate_n_and_keeps_order(rate):
    ids = np.arange(100)
    out = delete(ids, rate, rng=rng())
    assert out.size == 100 - round(rate * 100)
    assert np.all(np.diff(out) > 0) and np.isin(out, ids).all()


def test_seeds_reproduce_and_differ():
    ids = np.arange(300) % VOCAB
    for name in ("substitute", "insert", "delete"):
        fn = getattr(attacks, name)
        kw = {} if name == "delete" else {"vocab_size": VOCAB}
        a = fn(ids, 0.2, rng=rng(3), **kw)
        b = fn(ids, 0.2, rng=rng(3), **kw)
        c = fn(ids, 0.2, rng=rng(4), **kw)
        assert np.array_equal(a, b) and not np.array_equal(a, c)
    for fn in (delete_words, homoglyphs, zero_width, whitespace):
        assert fn(TEXT, 0.3, rng=rng(3)) == fn(TEXT, 0.3, rng=rng(3))
        assert fn(TEXT, 0.3, rng=rng(3)) != fn(TEXT, 0.3, rng=rng(4))


def test_delete_words_removes_round_rate_w_words():
    words = TEXT.split()
    out = delete_words(TEXT, 0.3, rng=rng())
    kept = out.split()
    assert len(kept) == len(words) - round(0.3 * len(words))
    it = iter(words)
    assert all(w in it for w in kept)  # the remaining words in their order
    # a removed word takes its whitespace with it: no doubled or dangling whitespace
    assert "  " not in out and out == out.strip()
    assert delete_words(TEXT, 1.0, rng=rng()) == ""


def test_homoglyphs_swap_round_rate_m_lookalikes():
    candidates = sum(ch in HOMOGLYPHS for ch in TEXT)
    out = homoglyphs(TEXT, 0.3, rng=rng())
    assert len(out) == len(TEXT)
    changed = [(a, b) for a, b in zip(TEXT, out, strict=True) if a != b]
    assert len(changed) == round(0.3 * candidates)
    assert all(b in HOMOGLYPHS[a] for a, b in changed)
    assert all(unicodedata.name(b).split()[0] in {"CYRILLIC", "GREEK"} for _, b in changed)


def test_zero_width_inserts_round_rate_c_invisible_characters():
    out = zero_width(TEXT, 0.3, rng=rng())
    inserted = [c for c in out if c in ZERO_WIDTH]
    assert len(inserted) == round(0.3 * len(TEXT))
    assert "".join(c for c in out if c not in ZERO_WIDTH) == TEXT


def test_whitespace_replaces_round_rate_s_spaces_and_newlines():
    spots = [i for i, c in enumerate(TEXT) if c in " \n"]
    out = whitespace(TEXT, 0.5, rng=rng())
    changed = [i for i, (a, b) in enumerate(zip(TEXT, out, strict=True)) if a != b]
    assert len(changed) == round(0.5 * len(spots)) and set(changed) <= set(spots)
    for i in changed:
        assert out[i] in (SPACE_VARIANTS if TEXT[i] == " " else NEWLINE_VARIANTS)
    full = whitespace(TEXT, 1.0, rng=rng())
    assert " " not in full and "\n" not in full


@pytest.mark.parametrize(("fraction", "spans", "gap"), [(0.25, 1, 0), (0.5, 2, 100), (1.0, 1, 0)])
def test_dilute_mask_marks_exactly_the_watermarked_tokens(fraction, spans, gap):
    wm_ids = np.arange(1000, 1000 + 150 * spans)
    human = np.arange(5000, 6000)
    ids, mask = dilute(wm_ids, human, fraction, rng=rng(), num_spans=spans, min_gap=gap)
    assert ids.size == round(wm_ids.size / fraction) and mask.dtype == bool
    assert np.array_equal(ids[mask], wm_ids)  # every watermarked token, in order
    assert np.array_equal(ids[~mask], human[: (~mask).sum()])
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    assert len(runs) == spans
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert start - end >= max(gap, 1)


def test_dilute_places_spans_uniformly():
    # One span of 10 among 30 human tokens: its start is uniform over 0..30.
    starts = [
        int(np.argmax(dilute(np.ones(10, int), np.zeros(30, int), 0.25, rng=rng(s))[1]))
        for s in range(3100)
    ]
    counts = np.bincount(starts, minlength=31)
    assert counts.size == 31 and counts.min() > 50 and counts.max() < 150  # expected 100 each


def test_dilute_needs_enough_human_tokens():
    with pytest.raises(UsageError, match="human"):
        dilute(np.arange(100), np.arange(50), 0.5, rng=rng())


def test_roundtrip_is_identity_on_canonical_ids():
    tok = ToyTokenizer()
    ids = np.array(tok(TEXT)["input_ids"])
    assert np.array_equal(roundtrip(ids, tok), ids)


def test_apply_attack_gives_one_interface():
    tok = ToyTokenizer()
    ids = np.array(tok(TEXT.lower())["input_ids"])
    human = np.array(tok("a quiet day at the shop " * 20)["input_ids"])
    assert list_attacks() == [
        "substitute",
        "insert",
        "delete",
        "delete-words",
        "dilute",
        "roundtrip",
        "homoglyphs",
        "zero-width",
        "whitespace",
    ]
    for name in list_attacks():
        out = apply_attack(name, ids, rate=0.2, tokenizer=tok, rng=rng(), human_ids=human)
        assert out.ndim == 1 and out.dtype == np.int64 and out.max() < len(tok)
    out = apply_attack("substitute", ids, rate=0.2, tokenizer=tok, rng=rng())
    assert (out != ids).sum() == round(0.2 * ids.size)
    assert apply_attack(
        "dilute", ids, rate=0.5, tokenizer=tok, rng=rng(), human_ids=human
    ).size == (2 * ids.size)
    # the toy tokenizer has no Cyrillic: every homoglyph becomes id 0
    out = apply_attack("homoglyphs", ids, rate=1.0, tokenizer=tok, rng=rng())
    assert out.size == ids.size and (out == 0).sum() == sum(c in HOMOGLYPHS for c in TEXT.lower())


def test_bad_names_and_rates_are_clear_errors():
    tok = ToyTokenizer()
    with pytest.raises(UsageError, match=r"unknown attack 'paraphrase'.*substitute.*whitespace"):
        apply_attack("paraphrase", [1, 2], rate=0.1, tokenizer=tok, rng=rng())
    for bad in (-0.1, 1.5, float("nan"), "0.1", True):
        with pytest.raises(UsageError, match="rate"):
            apply_attack("delete", [1, 2], rate=bad, tokenizer=tok, rng=rng())
    with pytest.raises(UsageError, match="human_ids"):
        apply_attack("dilute", [1, 2], rate=0.5, tokenizer=tok, rng=rng())
    with pytest.raises(UsageError, match=r"< 1"):
        apply_attack("dilute", [1, 2], rate=1.0, tokenizer=tok, rng=rng(), human_ids=[3, 4])


def test_detection_side_normalisation_undoes_every_unicode_edit():
    from safeguard.watermark.normalize import CONFUSABLES, normalize_text

    for letter, glyphs in HOMOGLYPHS.items():
        assert all(CONFUSABLES[g] == letter for g in glyphs)
    assert all(unicodedata.category(c) == "Cf" for c in ZERO_WIDTH)
    assert all(unicodedata.category(c) == "Zs" for c in SPACE_VARIANTS)
    for seed in range(20):
        for fn in (homoglyphs, zero_width, whitespace):
            assert normalize_text(fn(TEXT, 0.5, rng=rng(seed))) == TEXT
