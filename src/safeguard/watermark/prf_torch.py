"""Torch twin of :mod:`safeguard.watermark.prf`: the same bits, on any device.

Every operation is the integer arithmetic of the numpy version carried out on
int64 tensors: 32-bit words live in the low half of an int64, products of two
32-bit words wrap modulo 2**64 exactly as uint64 does, and the high word is
recovered with an arithmetic shift followed by a 32-bit mask. The conversion to
float64 is exact, so uniforms are bit-identical to numpy's (tests check this
against committed vectors).
"""

from __future__ import annotations

import functools

import torch

from safeguard.watermark.prf import ROUNDS, SENTINEL, PRFKey

__all__ = [
    "context_words",
    "exponentials_from_seeds",
    "row_seed",
    "token_exponentials_from_seeds",
    "token_uniforms",
    "uniform_matrix",
    "uniforms",
]

_M0 = 0xD2511F53
_M1 = 0xCD9E8D57
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK32 = 0xFFFFFFFF


def philox4x32(
    c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, k0: int, k1: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox-4x32-10 on broadcastable int64 tensors holding 32-bit words."""
    x0, x1, x2, x3 = torch.broadcast_tensors(c0, c1, c2, c3)
    key0, key1 = k0 & _MASK32, k1 & _MASK32
    for _ in range(ROUNDS):
        p0 = x0 * _M0
        p1 = x2 * _M1
        hi0 = (p0 >> 32) & _MASK32
        hi1 = (p1 >> 32) & _MASK32
        x0, x1, x2, x3 = (hi1 ^ x1) ^ key0, p1 & _MASK32, (hi0 ^ x3) ^ key1, p0 & _MASK32
        key0 = (key0 + _W0) & _MASK32
        key1 = (key1 + _W1) & _MASK32
    return x0, x1, x2, x3


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= (1 << 63) else c


_GAMMA = _signed(0x9E3779B97F4A7C15)
_C1 = _signed(0xBF58476D1CE4E5B9)
_C2 = _signed(0x94D049BB133111EB)


def row_seed(key: PRFKey, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """64-bit row seeds (as int64 bit patterns); see :func:`safeguard.watermark.prf.row_seed`."""
    a = a.to(torch.int64)
    zero = torch.zeros((), dtype=torch.int64, device=a.device)
    w0, w1, _, _ = philox4x32(a, b.to(torch.int64), zero + key.salt, zero, key.k0, key.k1)
    return w0 | (w1 << 32)


def _mix_in_place(x: torch.Tensor) -> torch.Tensor:
    # SplitMix64's output function; logical right shifts on int64 bit patterns are an
    # arithmetic shift followed by a mask that clears the copied sign bits.
    t = torch.bitwise_right_shift(x, 30).bitwise_and_((1 << 34) - 1)
    x.bitwise_xor_(t).mul_(_C1)
    torch.bitwise_right_shift(x, 27, out=t).bitwise_and_((1 << 37) - 1)
    x.bitwise_xor_(t).mul_(_C2)
    torch.bitwise_right_shift(x, 31, out=t).bitwise_and_((1 << 33) - 1)
    return x.bitwise_xor_(t)


def _row_words(seed: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return _mix_in_place((index + 1) * _GAMMA + seed)


@functools.lru_cache(maxsize=8)
def _weyl_base(half_vocab: int, device: str) -> torch.Tensor:
    # (i + 1) * gamma for every word index i of a row: the part of the counter that does not
    # depend on the row, computed once per vocabulary size and device.
    return (torch.arange(half_vocab, dtype=torch.int64, device=device) + 1) * _GAMMA


def _to_uniform(w: torch.Tensor) -> torch.Tensor:
    return (w.to(torch.float64) + 0.5) * 2.0**-32


def _word_halves(words: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    return torch.where(odd, (words >> 32) & _MASK32, words & _MASK32)


def uniforms(key: PRFKey, a: torch.Tensor, b: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Uniforms for individual ``(a, b, token)`` triples; see :func:`safeguard.watermark.prf.uniforms`."""
    t = tokens.to(torch.int64)
    words = _row_words(row_seed(key, a, b), t >> 1)
    return _to_uniform(_word_halves(words, (t & 1).bool()))


def uniform_matrix(key: PRFKey, a: torch.Tensor, b: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Whole-vocabulary uniforms for a batch of rows ``(a, b)``.

    Args:
        key: PRF key for the token purpose.
        a, b: int64 tensors of shape ``(batch,)``.
        vocab_size: Number of token ids ``V``.

    Returns:
        float64 tensor of shape ``(batch, V)``; row ``r`` equals numpy's
        ``uniform_vector(key, a[r], b[r], V)``.
    """
    words = _row_words(
        row_seed(key, a, b)[:, None], torch.arange((vocab_size + 1) // 2, device=a.device)[None, :]
    )
    out = torch.empty((*words.shape, 2), dtype=torch.float64, device=a.device)
    out[..., 0].copy_(words & _MASK32)
    out[..., 1].copy_((words >> 32) & _MASK32)
    return out.add_(0.5).mul_(2.0**-32).reshape(a.shape[0], -1)[:, :vocab_size]


def token_uniforms(
    key: PRFKey, a: torch.Tensor, b: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Uniforms of chosen ``tokens`` of shape ``(batch, k)`` in rows ``(a, b)`` of shape ``(batch,)``."""
    t = tokens.to(torch.int64)
    words = _row_words(row_seed(key, a, b)[:, None], t >> 1)
    return _to_uniform(_word_halves(words, (t & 1).bool()))


def exponentials_from_seeds(seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``-log(u)`` over the whole vocabulary for rows given by their seeds (the generation hot path).

    Args:
        seeds: int64 tensor of shape ``(batch,)`` holding the 64-bit row seeds
            (:func:`safeguard.watermark.prf.row_seed`, reinterpreted as int64).
        vocab_size: Number of token ids ``V``.

    Returns:
        float64 tensor of shape ``(batch, V)`` of Exp(1) variates, computed in place.
    """
    base = _weyl_base((vocab_size + 1) // 2, str(seeds.device))
    words = _mix_in_place(base[None, :] + seeds[:, None])
    out = torch.empty((*words.shape, 2), dtype=torch.float64, device=seeds.device)
    out[..., 0].copy_(words & _MASK32)
    out[..., 1].copy_((words >> 32) & _MASK32)
    return out.add_(0.5).mul_(2.0**-32).log_().neg_().reshape(seeds.shape[0], -1)[:, :vocab_size]


def token_exponentials_from_seeds(seeds: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``-log(u)`` of chosen ``tokens`` of shape ``(batch, k)`` for rows with ``seeds`` of shape ``(batch,)``."""
    t = tokens.to(torch.int64)
    words = _row_words(seeds[:, None], t >> 1)
    return _to_uniform(_word_halves(words, (t & 1).bool())).log_().neg_()


def context_words(key: PRFKey, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hash contexts of shape ``(..., h)`` to two words; see :func:`safeguard.watermark.prf.context_words`."""
    ctx = context.to(torch.int64)
    h = ctx.shape[-1]
    head = min(h, 4)
    fill = torch.full(ctx.shape[:-1], SENTINEL, dtype=torch.int64, device=ctx.device)
    first = [fill] * (4 - head) + [ctx[..., i] for i in range(head)]
    s0, s1, _, _ = philox4x32(*first, key.k0, key.k1)
    rest = ctx[..., head:]
    if rest.shape[-1] % 2:
        rest = torch.cat([fill[..., None], rest], dim=-1)
    for i in range(0, rest.shape[-1], 2):
        s0, s1, _, _ = philox4x32(s0, s1, rest[..., i], rest[..., i + 1], key.k0, key.k1)
    return s0, s1
