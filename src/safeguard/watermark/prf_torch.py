"""The PRF of :mod:`safeguard.watermark.prf` as torch tensors on any device, bit-identical.

Generation needs whole-vocabulary draws as tensors on the model's device; this module
provides them for both PRF versions, with the same bits as numpy's.

* Version 2 (AES-128): the uniforms are computed on the host by
  :func:`safeguard.watermark.prf.uniform_matrix` (OpenSSL's AES, ~0.15 ms for 50,257
  blocks with AES-NI) and copied to the device, one ``(V,)`` float64 row per sequence
  and step. There is no torch AES: one implementation means one set of bits.
* Version 1 (Philox + SplitMix64, legacy keys): the row seeds come from numpy and the
  SplitMix64 words are expanded on the device with int64 tensor arithmetic: 32-bit
  words live in the low half of an int64, products wrap modulo 2**64 exactly as uint64
  does, and logical right shifts are arithmetic shifts followed by a mask.

The conversions to float64 are exact, so uniforms equal numpy's bit for bit (tests check
this against the committed vectors).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from safeguard.watermark import prf
from safeguard.watermark.prf import PRFKey

__all__ = [
    "exponentials",
    "exponentials_from_seeds",
    "log_exponentials",
    "token_exponentials",
    "token_exponentials_from_seeds",
    "token_log_exponentials",
    "token_uniforms",
    "uniform_matrix",
    "uniforms",
]

_MASK32 = 0xFFFFFFFF


def _words(x: Any) -> np.ndarray:
    """32-bit words given as a tensor, an array or a scalar, as a uint64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.uint64)


def _device(*tensors: Any) -> torch.device:
    for t in tensors:
        if isinstance(t, torch.Tensor):
            return t.device
    return torch.device("cpu")


# -- version 1 on the device ------------------------------------------------------------------


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= (1 << 63) else c


_GAMMA = _signed(0x9E3779B97F4A7C15)
_C1 = _signed(0xBF58476D1CE4E5B9)
_C2 = _signed(0x94D049BB133111EB)


def _mix_in_place(x: torch.Tensor) -> torch.Tensor:
    # SplitMix64's output function; logical right shifts on int64 bit patterns are an
    # arithmetic shift followed by a mask that clears the copied sign bits.
    t = torch.bitwise_right_shift(x, 30).bitwise_and_((1 << 34) - 1)
    x.bitwise_xor_(t).mul_(_C1)
    torch.bitwise_right_shift(x, 27, out=t).bitwise_and_((1 << 37) - 1)
    x.bitwise_xor_(t).mul_(_C2)
    torch.bitwise_right_shift(x, 31, out=t).bitwise_and_((1 << 33) - 1)
    return x.bitwise_xor_(t)


@functools.lru_cache(maxsize=8)
def _weyl_base(half_vocab: int, device: str) -> torch.Tensor:
    # (i + 1) * gamma for every word index i of a row: the part of the counter that does not
    # depend on the row, computed once per vocabulary size and device.
    return (torch.arange(half_vocab, dtype=torch.int64, device=device) + 1) * _GAMMA


def _seeds(key: PRFKey, a: Any, b: Any, device: torch.device) -> torch.Tensor:
    seeds = prf.row_seed(key, _words(a), _words(b)).reshape(-1)
    return torch.from_numpy(seeds.view(np.int64)).to(device)


def _v1_uniforms_of(words: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    half = torch.where(odd, (words >> 32) & _MASK32, words & _MASK32)
    return (half.to(torch.float64) + 0.5) * 2.0**-32


def _v1_matrix(seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
    base = _weyl_base((vocab_size + 1) // 2, str(seeds.device))
    words = _mix_in_place(base[None, :] + seeds[:, None])
    out = torch.empty((*words.shape, 2), dtype=torch.float64, device=seeds.device)
    out[..., 0].copy_(words & _MASK32)
    out[..., 1].copy_((words >> 32) & _MASK32)
    return out.add_(0.5).mul_(2.0**-32).reshape(seeds.shape[0], -1)[:, :vocab_size]


def _v1_tokens(seeds: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    t = tokens.to(torch.int64)
    words = _mix_in_place((t >> 1).add_(1).mul_(_GAMMA).add_(seeds[..., None]))
    return _v1_uniforms_of(words, (t & 1).bool())


def exponentials_from_seeds(seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Version 1: ``-log(u)`` over the whole vocabulary for rows given by their seeds.

    Args:
        seeds: int64 tensor of shape ``(batch,)`` holding the 64-bit row seeds
            (:func:`safeguard.watermark.prf.row_seed`, reinterpreted as int64).
        vocab_size: Number of token ids ``V``.

    Returns:
        float64 tensor of shape ``(batch, V)`` of Exp(1) variates, computed in place.
    """
    return _v1_matrix(seeds, vocab_size).log_().neg_()


def token_exponentials_from_seeds(seeds: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Version 1: ``-log(u)`` of chosen ``tokens`` ``(batch, k)`` for rows with ``seeds`` ``(batch,)``."""
    return _v1_tokens(seeds, tokens).log_().neg_()


# -- either version ---------------------------------------------------------------------------


def uniform_matrix(key: PRFKey, a: Any, b: Any, vocab_size: int) -> torch.Tensor:
    """Whole-vocabulary uniforms for a batch of rows ``(a, b)``.

    Args:
        key: PRF key for the token purpose (either version).
        a, b: Row words of shape ``(batch,)`` (tensors, arrays or lists).
        vocab_size: Number of token ids ``V``.

    Returns:
        float64 tensor of shape ``(batch, V)`` on the device of ``a`` (CPU for arrays);
        row ``r`` equals numpy's ``uniform_vector(key, a[r], b[r], V)``.
    """
    device = _device(a, b)
    if key.version == 2:
        return torch.from_numpy(prf.uniform_matrix(key, _words(a), _words(b), vocab_size)).to(
            device
        )
    return _v1_matrix(_seeds(key, a, b, device), vocab_size)


def exponentials(key: PRFKey, a: Any, b: Any, vocab_size: int, device: Any) -> torch.Tensor:
    """``-log(u)`` over the whole vocabulary for rows ``(a, b)``.

    Args:
        key: PRF key for the token purpose (either version).
        a, b: Row words of shape ``(batch,)``.
        vocab_size: Number of token ids ``V``.
        device: Where the result lives (the model's device).

    Returns:
        float64 tensor of shape ``(batch, V)`` of Exp(1) variates.
    """
    if key.version == 2:
        u = torch.from_numpy(prf.uniform_matrix(key, _words(a), _words(b), vocab_size))
        return u.to(device).log_().neg_()
    return exponentials_from_seeds(_seeds(key, a, b, torch.device(device)), vocab_size)


def _log_exponentials_host(u: np.ndarray) -> torch.Tensor:
    # log(-log u) in place with numpy, whose float64 log is vectorised (about 3x torch's on CPU)
    np.log(u, out=u)
    np.negative(u, out=u)
    np.log(u, out=u)
    return torch.from_numpy(u)


def log_exponentials(key: PRFKey, a: Any, b: Any, vocab_size: int, device: Any) -> torch.Tensor:
    """``log(-log(u))`` over the whole vocabulary for rows ``(a, b)`` (the generation hot path).

    The exponential-minimum rule compares ``log E_v - s_v`` with ``E_v = -log(u_v)``. With a
    version 2 key on a CPU model both logarithms are taken by numpy on the host; on another
    device, on the device after the copy. (Logarithms may differ in the last bit between
    devices, as they always have; the uniforms, which detection reads, never do.)

    Returns:
        float64 tensor of shape ``(batch, V)`` on ``device``.
    """
    if key.version == 2:
        u = prf.uniform_matrix(key, _words(a), _words(b), vocab_size)
        if torch.device(device).type == "cpu":
            return _log_exponentials_host(u)
        return torch.from_numpy(u).to(device).log_().neg_().log_()
    return exponentials(key, a, b, vocab_size, device).log_()


def token_exponentials(key: PRFKey, a: Any, b: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``-log(u)`` of chosen ``tokens`` of shape ``(batch, k)`` in rows ``(a, b)`` of shape ``(batch,)``.

    Returns:
        float64 tensor of shape ``(batch, k)`` on the device of ``tokens``.
    """
    if key.version == 2:
        u = prf.uniforms(key, _words(a)[:, None], _words(b)[:, None], _words(tokens))
        return torch.from_numpy(u).to(tokens.device).log_().neg_()
    return token_exponentials_from_seeds(_seeds(key, a, b, tokens.device), tokens)


def token_log_exponentials(key: PRFKey, a: Any, b: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``log(-log(u))`` of chosen ``tokens`` ``(batch, k)`` in rows ``(a, b)`` ``(batch,)``; see
    :func:`log_exponentials`."""
    if key.version == 2 and tokens.device.type == "cpu":
        u = prf.uniforms(key, _words(a)[:, None], _words(b)[:, None], _words(tokens))
        return _log_exponentials_host(np.ascontiguousarray(u))
    return token_exponentials(key, a, b, tokens).log_()


def token_uniforms(key: PRFKey, a: Any, b: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Uniforms of chosen ``tokens`` of shape ``(batch, k)`` in rows ``(a, b)`` of shape ``(batch,)``."""
    if key.version == 2:
        u = prf.uniforms(key, _words(a)[:, None], _words(b)[:, None], _words(tokens))
        return torch.from_numpy(u).to(tokens.device)
    return _v1_tokens(_seeds(key, a, b, tokens.device), tokens)


def uniforms(key: PRFKey, a: Any, b: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Uniforms for individual ``(a, b, token)`` triples, all of shape ``(n,)``; see :func:`prf.uniforms`."""
    if key.version == 2:
        return torch.from_numpy(prf.uniforms(key, _words(a), _words(b), _words(tokens))).to(
            tokens.device
        )
    t = tokens.to(torch.int64)
    a_w, b_w, _ = np.broadcast_arrays(_words(a), _words(b), np.empty(tuple(t.shape), np.uint8))
    seeds = torch.from_numpy(prf.row_seed(key, a_w, b_w).view(np.int64)).to(t.device)
    words = _mix_in_place((t >> 1).add_(1).mul_(_GAMMA).add_(seeds))
    return _v1_uniforms_of(words, (t & 1).bool())
