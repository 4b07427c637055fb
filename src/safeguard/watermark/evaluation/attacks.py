"""Edits an adversary (or an ordinary editor) makes to watermarked text, as pure seeded functions.

Every attack takes a ``numpy.random.Generator`` and nothing else random, so a study is
reproduced by its seeds. ``rate`` is always in ``[0, 1]`` and its meaning is exact:

============== ==================================================================================
attack         what ``rate`` controls
============== ==================================================================================
substitute     ``round(rate * n)`` distinct positions, chosen uniformly, get a uniformly random
               id different from the original (``n`` = number of tokens)
insert         ``round(rate * n)`` random ids are inserted at uniformly random places; the
               original tokens keep their order (output length ``n + round(rate * n)``)
delete         ``round(rate * n)`` distinct positions, chosen uniformly, are removed
delete-words   ``round(rate * w)`` of the ``w`` whitespace-separated words are removed, each
               with the whitespace that follows it (or precedes it, for the last word)
dilute         human tokens are added so that they make up the share ``rate`` of the output
               (the watermarked tokens stay contiguous in one or more spans)
roundtrip      ignored: decode, then re-encode with the same tokenizer
homoglyphs     ``round(rate * m)`` of the ``m`` Latin letters that have a Cyrillic or Greek
               look-alike are replaced by one (chosen uniformly among the look-alikes)
zero-width     ``round(rate * c)`` invisible characters (U+200B, U+200C, U+200D, U+2060,
               U+FEFF) are inserted at uniformly random places among the ``c`` characters
whitespace     ``round(rate * s)`` of the ``s`` spaces and newlines are replaced: spaces by a
               Unicode space separator (U+00A0, U+2002, U+2009, U+3000, ...), newlines by
               U+2028, U+2029 or U+0085
============== ==================================================================================

Token attacks work on id arrays; text attacks on strings. :func:`apply_attack` gives every
attack one token-id interface (text attacks decode, attack and re-encode with the tokenizer
passed in). Imports numpy only.

>>> rng = np.random.default_rng(0)
>>> ids = np.arange(10)
>>> int((substitute(ids, 0.3, vocab_size=50, rng=rng) != ids).sum())
3
>>> sorted(list_attacks())[:3]
['delete', 'delete-words', 'dilute']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from safeguard.errors import UsageError

__all__ = [
    "ATTACKS",
    "HOMOGLYPHS",
    "NEWLINE_VARIANTS",
    "SPACE_VARIANTS",
    "ZERO_WIDTH",
    "Attack",
    "apply_attack",
    "delete",
    "delete_words",
    "dilute",
    "homoglyphs",
    "insert",
    "list_attacks",
    "roundtrip",
    "substitute",
    "whitespace",
    "zero_width",
]

#: Latin letters and the Cyrillic / Greek letters that render (nearly) the same.
HOMOGLYPHS: dict[str, tuple[str, ...]] = {
    "a": ("\u0430",),  # Cyrillic a
    "c": ("\u0441", "\u03f2"),  # Cyrillic es, Greek lunate sigma
    "e": ("\u0435",),  # Cyrillic ie
    "h": ("\u04bb",),  # Cyrillic shha
    "i": ("\u0456", "\u03b9"),  # Cyrillic dotted i, Greek iota
    "j": ("\u0458",),  # Cyrillic je
    "o": ("\u043e", "\u03bf"),  # Cyrillic o, Greek omicron
    "p": ("\u0440", "\u03c1"),  # Cyrillic er, Greek rho
    "s": ("\u0455",),  # Cyrillic dze
    "x": ("\u0445", "\u03c7"),  # Cyrillic ha, Greek chi
    "y": ("\u0443",),  # Cyrillic u
    "A": ("\u0410", "\u0391"),
    "B": ("\u0412", "\u0392"),
    "C": ("\u0421",),
    "E": ("\u0415", "\u0395"),
    "H": ("\u041d", "\u0397"),
    "I": ("\u0406", "\u0399"),
    "J": ("\u0408",),
    "K": ("\u041a", "\u039a"),
    "M": ("\u041c", "\u039c"),
    "N": ("\u039d",),
    "O": ("\u041e", "\u039f"),
    "P": ("\u0420", "\u03a1"),
    "S": ("\u0405",),
    "T": ("\u0422", "\u03a4"),
    "X": ("\u0425", "\u03a7"),
    "Y": ("\u04ae", "\u03a5"),
    "Z": ("\u0396",),
}

#: Invisible format characters inserted by :func:`zero_width`.
ZERO_WIDTH: tuple[str, ...] = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")

#: Unicode space separators that replace an ASCII space in :func:`whitespace`.
SPACE_VARIANTS: tuple[str, ...] = (
    "\u00a0",  # no-break space
    "\u2002",  # en space
    "\u2003",  # em space
    "\u2007",  # figure space
    "\u2009",  # thin space
    "\u202f",  # narrow no-break space
    "\u205f",  # medium mathematical space
    "\u3000",  # ideographic space
)

#: Line breaks that replace ``"\n"`` in :func:`whitespace`.
NEWLINE_VARIANTS: tuple[str, ...] = ("\u2028", "\u2029", "\u0085")


def _check_rate(rate: float, name: str = "rate") -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise UsageError(f"`{name}` (={rate!r}) must be a number in [0, 1]; e.g. 0.1 for 10%")
    return float(rate)


def _ids(ids: Any, name: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise UsageError(f"`{name}` must be a 1-D sequence of integer token ids; got {arr.shape}")
    return arr.astype(np.int64)


def _check_vocab(vocab_size: int) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise UsageError(f"`vocab_size` (={vocab_size!r}) must be an integer >= 2")
    if vocab_size < 2:
        raise UsageError(f"`vocab_size` (={vocab_size!r}) must be >= 2")
    return int(vocab_size)


# token level ---------------------------------------------------------------------------------
def substitute(ids: Any, rate: float, *, vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    """Replace ``round(rate * n)`` uniformly chosen positions by random different ids.

    Each replacement is uniform over the ``vocab_size - 1`` ids other than the original.

    Returns:
        A new array of the same length ``n``.
    """
    rate, vocab_size = _check_rate(rate), _check_vocab(vocab_size)
    out = _ids(ids).copy()
    k = round(rate * out.size)
    pos = rng.choice(out.size, size=k, replace=False)
    draw = rng.integers(0, vocab_size - 1, size=k)
    out[pos] = draw + (draw >= out[pos])  # skip the original id
    return out


def insert(ids: Any, rate: float, *, vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    """Insert ``round(rate * n)`` uniformly random ids at uniformly random places.

    The inserted positions are a uniform subset of the ``n + k`` output positions; the
    original tokens fill the rest in their order.
    """
    rate, vocab_size = _check_rate(rate), _check_vocab(vocab_size)
    arr = _ids(ids)
    k = round(rate * arr.size)
    total = arr.size + k
    new = np.zeros(total, dtype=bool)
    new[rng.choice(total, size=k, replace=False)] = True
    out = np.empty(total, dtype=np.int64)
    out[new] = rng.integers(0, vocab_size, size=k)
    out[~new] = arr
    return out


def delete(ids: Any, rate: float, *, rng: np.random.Generator) -> np.ndarray:
    """Remove ``round(rate * n)`` uniformly chosen positions (the rest keep their order)."""
    rate = _check_rate(rate)
    arr = _ids(ids)
    keep = np.ones(arr.size, dtype=bool)
    keep[rng.choice(arr.size, size=round(rate * arr.size), replace=False)] = False
    return arr[keep]


def dilute(
    watermarked_ids: Any,
    human_ids: Any,
    watermarked_fraction: float,
    *,
    rng: np.random.Generator,
    num_spans: int = 1,
    min_gap: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste watermarked tokens into human text (copy-paste dilution).

    All ``W = len(watermarked_ids)`` watermarked tokens are used, cut into ``num_spans``
    contiguous pieces of (nearly) equal length, in order; ``H = round(W (1 - f) / f)``
    human tokens (the first ``H`` of ``human_ids``) surround them. The pieces go between
    human tokens at places drawn uniformly among all arrangements in which consecutive pieces
    are at least ``min_gap`` human tokens apart.

    Args:
        watermarked_ids: Watermarked token ids, 1-D.
        human_ids: Unwatermarked token ids, 1-D, at least ``H`` long.
        watermarked_fraction: ``f`` in (0, 1], the share of watermarked tokens in the output.
        rng: Source of randomness.
        num_spans: Number of watermarked pieces (>= 1).
        min_gap: Fewest human tokens between two pieces.

    Returns:
        ``(ids, mask)``: the mixed document and a boolean array, True at watermarked positions.

    Raises:
        UsageError: A bad fraction, too few human tokens, or more pieces than tokens.
    """
    f = _check_rate(watermarked_fraction, "watermarked_fraction")
    if f == 0:
        raise UsageError("`watermarked_fraction` (=0) must be > 0; use the human text alone")
    wm, human = _ids(watermarked_ids, "watermarked_ids"), _ids(human_ids, "human_ids")
    if not isinstance(num_spans, int) or not 1 <= num_spans <= max(wm.size, 1):
        raise UsageError(
            f"`num_spans` (={num_spans!r}) must be an integer in 1..{wm.size} (one piece per span)"
        )
    if not isinstance(min_gap, int) or min_gap < 0:
        raise UsageError(f"`min_gap` (={min_gap!r}) must be an integer >= 0")
    num_human = round(wm.size * (1 - f) / f)
    free = num_human - (num_spans - 1) * min_gap
    if num_human > human.size or free < 0:
        raise UsageError(
            f"diluting {wm.size} watermarked tokens to a share of {f:g} needs {num_human} human "
            f"tokens (and >= {(num_spans - 1) * min_gap} for the gaps); `human_ids` has {human.size}"
        )
    pieces = np.array_split(wm, num_spans)
    # Stars and bars: a uniform composition of `free` human tokens into num_spans + 1 gaps.
    bars = np.sort(rng.choice(free + num_spans, size=num_spans, replace=False))
    gaps = np.diff(np.concatenate([[-1], bars, [free + num_spans]])) - 1
    gaps[1:-1] += min_gap
    parts, mask_parts, used = [], [], 0
    for i, piece in enumerate(pieces):
        parts += [human[used : used + gaps[i]], piece]
        mask_parts += [np.zeros(gaps[i], dtype=bool), np.ones(piece.size, dtype=bool)]
        used += gaps[i]
    parts.append(human[used : used + gaps[-1]])
    mask_parts.append(np.zeros(gaps[-1], dtype=bool))
    return np.concatenate(parts).astype(np.int64), np.concatenate(mask_parts)


def roundtrip(ids: Any, tokenizer: Any) -> np.ndarray:
    """Decode ``ids`` and re-encode the text with the same tokenizer (no special tokens).

    A byte-level BPE tokenizer is the identity on its own canonical encodings; model output
    need not be canonical, so this alone can change the ids.
    """
    text = tokenizer.decode([int(t) for t in _ids(ids)], skip_special_tokens=True)
    return np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)


# text level ----------------------------------------------------------------------------------
def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise UsageError(f"`text` must be a string; got {type(text).__name__}")
    return text


def delete_words(text: str, rate: float, *, rng: np.random.Generator) -> str:
    """Remove ``round(rate * w)`` of the ``w`` whitespace-separated words, chosen uniformly.

    A removed word takes the whitespace after it with it (the last word, the whitespace
    before it), so the remaining text reads naturally.
    """
    rate, text = _check_rate(rate), _check_text(text)
    words = [m.span() for m in re.finditer(r"\S+", text)]
    k = round(rate * len(words))
    drop = set(rng.choice(len(words), size=k, replace=False).tolist())
    cut = np.zeros(len(text), dtype=bool)
    for i in drop:
        start, end = words[i]
        if i + 1 < len(words):
            end = words[i + 1][0]  # the word and the whitespace after it
        elif i > 0:
            start = words[i - 1][1]  # last word: the whitespace before it
        cut[start:end] = True
    return "".join(ch for ch, c in zip(text, cut, strict=True) if not c)


def homoglyphs(text: str, rate: float, *, rng: np.random.Generator) -> str:
    """Replace ``round(rate * m)`` of the ``m`` letters that have a look-alike in :data:`HOMOGLYPHS`."""
    rate, text = _check_rate(rate), _check_text(text)
    where = [i for i, ch in enumerate(text) if ch in HOMOGLYPHS]
    chars = list(text)
    for i in rng.choice(len(where), size=round(rate * len(where)), replace=False):
        options = HOMOGLYPHS[chars[where[i]]]
        chars[where[i]] = options[int(rng.integers(len(options)))]
    return "".join(chars)


def zero_width(text: str, rate: float, *, rng: np.random.Generator) -> str:
    """Insert ``round(rate * c)`` characters of :data:`ZERO_WIDTH` among the ``c`` characters.

    The inserted positions are a uniform subset of the output positions.
    """
    rate, text = _check_rate(rate), _check_text(text)
    k = round(rate * len(text))
    total = len(text) + k
    new = np.zeros(total, dtype=bool)
    new[rng.choice(total, size=k, replace=False)] = True
    picks = iter(rng.integers(len(ZERO_WIDTH), size=k).tolist())
    rest = iter(text)
    return "".join(ZERO_WIDTH[next(picks)] if n else next(rest) for n in new.tolist())


def whitespace(text: str, rate: float, *, rng: np.random.Generator) -> str:
    """Replace ``round(rate * s)`` of the ``s`` spaces and newlines by Unicode variants.

    Spaces become one of :data:`SPACE_VARIANTS`, newlines one of :data:`NEWLINE_VARIANTS`.
    """
    rate, text = _check_rate(rate), _check_text(text)
    where = [i for i, ch in enumerate(text) if ch in " \n"]
    chars = list(text)
    for i in rng.choice(len(where), size=round(rate * len(where)), replace=False):
        options = SPACE_VARIANTS if chars[where[i]] == " " else NEWLINE_VARIANTS
        chars[where[i]] = options[int(rng.integers(len(options)))]
    return "".join(chars)


# one interface -------------------------------------------------------------------------------
AttackLevel = Literal["token", "text", "document"]


@dataclass(frozen=True)
class Attack:
    """One registered attack with the common token-id interface.

    Attributes:
        name: Registry name (``delete-words``, ``zero-width``, ...).
        level: ``token`` (edits ids), ``text`` (decodes, edits text, re-encodes) or
            ``document`` (mixes in other text).
        description: What ``rate`` controls.
        run: ``run(ids, rate, tokenizer, rng, human_ids) -> ids``.
    """

    name: str
    level: AttackLevel
    description: str
    run: Callable[[np.ndarray, float, Any, np.random.Generator, np.ndarray | None], np.ndarray]


def _text_attack(fn: Callable[..., str]) -> Callable[..., np.ndarray]:
    def run(
        ids: np.ndarray,
        rate: float,
        tokenizer: Any,
        rng: np.random.Generator,
        human_ids: np.ndarray | None,
    ) -> np.ndarray:
        text = tokenizer.decode([int(t) for t in ids], skip_special_tokens=True)
        edited = fn(text, rate, rng=rng)
        return np.asarray(tokenizer(edited, add_special_tokens=False)["input_ids"], dtype=np.int64)

    return run


def _dilute_run(
    ids: np.ndarray,
    rate: float,
    tokenizer: Any,
    rng: np.random.Generator,
    human_ids: np.ndarray | None,
) -> np.ndarray:
    if human_ids is None:
        raise UsageError("the `dilute` attack needs `human_ids` (unwatermarked tokens to mix in)")
    if rate >= 1:
        raise UsageError(f"`rate` (={rate!r}) for `dilute` is the human share; it must be < 1")
    return dilute(ids, human_ids, 1 - rate, rng=rng)[0]


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack(
            "substitute",
            "token",
            "round(rate*n) positions get a random different id",
            lambda ids, rate, tok, rng, _h: substitute(ids, rate, vocab_size=len(tok), rng=rng),
        ),
        Attack(
            "insert",
            "token",
            "round(rate*n) random ids inserted",
            lambda ids, rate, tok, rng, _h: insert(ids, rate, vocab_size=len(tok), rng=rng),
        ),
        Attack(
            "delete",
            "token",
            "round(rate*n) positions removed",
            lambda ids, rate, tok, rng, _h: delete(ids, rate, rng=rng),
        ),
        Attack("delete-words", "text", "round(rate*w) words removed", _text_attack(delete_words)),
        Attack("dilute", "document", "human tokens make up the share rate", _dilute_run),
        Attack(
            "roundtrip",
            "text",
            "decode and re-encode (rate ignored)",
            lambda ids, rate, tok, rng, _h: roundtrip(ids, tok),
        ),
        Attack(
            "homoglyphs",
            "text",
            "round(rate*m) look-alike letters swapped",
            _text_attack(homoglyphs),
        ),
        Attack(
            "zero-width",
            "text",
            "round(rate*c) invisible characters inserted",
            _text_attack(zero_width),
        ),
        Attack(
            "whitespace",
            "text",
            "round(rate*s) spaces/newlines replaced by Unicode variants",
            _text_attack(whitespace),
        ),
    )
}


def list_attacks() -> list[str]:
    """Names of the registered attacks, in registry order."""
    return list(ATTACKS)


def apply_attack(
    name: str,
    ids: Any,
    *,
    rate: float,
    tokenizer: Any,
    rng: np.random.Generator,
    human_ids: Any = None,
) -> np.ndarray:
    """Run attack ``name`` on token ids and return the attacked ids.

    Args:
        name: One of :func:`list_attacks`.
        ids: Token ids, 1-D.
        rate: In ``[0, 1]``; its meaning per attack is in the module docstring.
        tokenizer: Decodes and encodes for text attacks; ``len(tokenizer)`` is the vocabulary
            size for token attacks.
        rng: Source of randomness.
        human_ids: Unwatermarked ids for ``dilute``.

    Raises:
        UsageError: Unknown name (the message lists the valid ones) or a bad rate.
    """
    if name not in ATTACKS:
        raise UsageError(f"unknown attack {name!r}; valid names: {', '.join(ATTACKS)}")
    rate = _check_rate(rate)
    human = None if human_ids is None else _ids(human_ids, "human_ids")
    return ATTACKS[name].run(_ids(ids), rate, tokenizer, rng, human)
