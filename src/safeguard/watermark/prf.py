"""The keyed, counter-based pseudorandom function shared by generation and detection.

One PRF serves every scheme. It maps ``(key, a, b, token id)`` to a uniform in
(0, 1), with random access: generation draws the whole vocabulary for one
``(a, b)`` at once, detection reads the single entry of the token it sees.
``(a, b)`` are two 32-bit words chosen by the scheme (a keyed hash of the
previous tokens for ``gumbel``, the key position for ``exp``).

Construction (version 1):

* The 256-bit secret is expanded with HMAC-SHA256 into a :class:`PRFKey` per
  scheme and purpose: a 64-bit Philox key and a 32-bit salt. The secret never
  leaves this step.
* A row seed ``s(a, b)`` is the first two output words of one Philox-4x32-10
  block (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011)
  with counter ``(a, b, salt, 0)``: a 64-bit keyed pseudorandom value per row.
* Token ``v`` reads 64-bit word ``i = v >> 1`` of the row, the SplitMix64
  output ``mix(s + (i + 1) * 0x9E3779B97F4A7C15)`` (Steele, Lea & Flood,
  "Fast splittable pseudorandom number generators", OOPSLA 2014); even tokens
  take its low 32 bits ``w``, odd tokens its high 32 bits, and
  ``u = (w + 0.5) / 2**32``, exact in float64 and strictly inside (0, 1).
  SplitMix64 costs a few integer operations per two tokens, which keeps
  whole-vocabulary draws cheap during generation.

The torch twin in :mod:`safeguard.watermark.prf_torch` performs the same
integer operations on int64 tensors and yields identical bits; test vectors are
committed in ``tests/data/watermark/prf_vectors.json``.

>>> key = derive_prf_key(bytes(32), "gumbel", "token")
>>> u = uniforms(key, 7, 11, np.array([0, 1, 2, 50256]))
>>> u.shape, bool(((u > 0) & (u < 1)).all())
((4,), True)
>>> bool(np.array_equal(uniform_vector(key, 7, 11, 50257)[[0, 1, 2, 50256]], u))
True
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PRF_VERSION",
    "SENTINEL",
    "PRFKey",
    "context_words",
    "derive_prf_key",
    "philox4x32",
    "row_seed",
    "splitmix64",
    "uniform_vector",
    "uniforms",
    "words_to_uniform",
]

#: Version of the PRF construction; stored in every key file.
PRF_VERSION = 1

#: Stand-in for a context position before the start of the sequence (or left padding).
SENTINEL = 0xFFFFFFFF

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
ROUNDS = 10


@dataclass(frozen=True)
class PRFKey:
    """Key material for one scheme and purpose, derived from a secret.

    Attributes:
        k0: First 32-bit word of the Philox key.
        k1: Second 32-bit word of the Philox key.
        salt: 32-bit word placed in the last counter slot.
    """

    k0: int
    k1: int
    salt: int

    def __repr__(self) -> str:  # key material never appears in reprs
        return "PRFKey(<redacted>)"


def derive_prf_key(secret: bytes, scheme: str, purpose: str) -> PRFKey:
    """Derive the PRF key of ``scheme`` for ``purpose`` from a secret.

    Args:
        secret: The watermark key's secret bytes (32 bytes).
        scheme: Registered scheme name, e.g. ``"gumbel"``.
        purpose: Domain separator within the scheme, e.g. ``"token"`` or ``"context"``.

    Returns:
        The derived :class:`PRFKey`.
    """
    label = f"safeguard/prf/v{PRF_VERSION}/{scheme}/{purpose}".encode()
    digest = hmac.new(secret, label, hashlib.sha256).digest()
    k0, k1, salt = (int.from_bytes(digest[i : i + 4], "little") for i in (0, 4, 8))
    return PRFKey(k0=k0, k1=k1, salt=salt)


def philox4x32(
    c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, k0: int, k1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox-4x32 with 10 rounds on broadcastable arrays of 32-bit counter words.

    Args:
        c0, c1, c2, c3: Counter words, any integer dtype with values in [0, 2**32),
            broadcastable to a common shape ``S``.
        k0, k1: The two 32-bit key words.

    Returns:
        Four uint64 arrays of shape ``S`` holding 32-bit output words.

    Known-answer test from the Random123 distribution (counter and key all 0xFFFFFFFF):

    >>> f = np.array([0xFFFFFFFF], dtype=np.uint64)
    >>> [hex(int(w[0])) for w in philox4x32(f, f, f, f, 0xFFFFFFFF, 0xFFFFFFFF)]
    ['0x408f276d', '0x41c83b0e', '0xa20bc7c6', '0x6d5451fd']
    """
    x0, x1, x2, x3 = (
        np.array(a, dtype=np.uint64)
        for a in np.broadcast_arrays(*(np.asarray(c) for c in (c0, c1, c2, c3)))
    )
    p0, p1 = np.empty_like(x0), np.empty_like(x0)
    key0, key1 = k0 & 0xFFFFFFFF, k1 & 0xFFFFFFFF
    for _ in range(ROUNDS):
        # new x0 = hi(M1*x2) ^ x1 ^ k0, x1 = lo(M1*x2), x2 = hi(M0*x0) ^ x3 ^ k1, x3 = lo(M0*x0)
        np.multiply(x0, _M0, out=p0)
        np.multiply(x2, _M1, out=p1)
        np.right_shift(p1, _SHIFT32, out=x0)
        x0 ^= x1
        x0 ^= np.uint64(key0)
        np.bitwise_and(p1, _MASK32, out=x1)
        np.right_shift(p0, _SHIFT32, out=x2)
        x2 ^= x3
        x2 ^= np.uint64(key1)
        np.bitwise_and(p0, _MASK32, out=x3)
        key0 = (key0 + _W0) & 0xFFFFFFFF
        key1 = (key1 + _W1) & 0xFFFFFFFF
    return x0, x1, x2, x3


def row_seed(key: PRFKey, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """The 64-bit keyed seed of row ``(a, b)``: Philox words 0 and 1 of counter ``(a, b, salt, 0)``.

    Returns:
        uint64 array of the broadcast shape of ``a`` and ``b``.
    """
    w0, w1, _, _ = philox4x32(a, b, np.uint64(key.salt), np.uint64(0), key.k0, key.k1)
    return w0 | (w1 << _SHIFT32)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function (a bijective 64-bit mixer) on uint64 arrays."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _C1
        x = x ^ (x >> np.uint64(27))
        x = x * _C2
        return x ^ (x >> np.uint64(31))


def _row_words(seed: np.ndarray, index: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return splitmix64(seed + (index + np.uint64(1)) * _GAMMA)


def words_to_uniform(w: np.ndarray) -> np.ndarray:
    """Map 32-bit words (in a uint64 array) to float64 uniforms ``(w + 0.5) / 2**32``."""
    return (w.astype(np.float64) + 0.5) * 2.0**-32


def uniforms(
    key: PRFKey, a: np.ndarray | int, b: np.ndarray | int, tokens: np.ndarray
) -> np.ndarray:
    """Uniforms for individual ``(a, b, token)`` triples (random access, used by detection).

    Args:
        key: Derived PRF key.
        a, b: 32-bit words, scalars or arrays broadcastable with ``tokens``.
        tokens: Token ids, shape ``S``, non-negative.

    Returns:
        float64 array of shape ``S`` with values in (0, 1).
    """
    t = np.asarray(tokens, dtype=np.uint64)
    words = _row_words(row_seed(key, a, b), t >> np.uint64(1))
    odd = (t & np.uint64(1)).astype(bool)
    return words_to_uniform(np.where(odd, words >> _SHIFT32, words & _MASK32))


def uniform_vector(key: PRFKey, a: int, b: int, vocab_size: int) -> np.ndarray:
    """All ``vocab_size`` uniforms of row ``(a, b)`` (the generation-side draw).

    Returns:
        float64 array of shape ``(vocab_size,)``; entry ``v`` equals ``uniforms(key, a, b, [v])``.
    """
    index = np.arange((vocab_size + 1) // 2, dtype=np.uint64)
    words = _row_words(row_seed(key, np.uint64(a), np.uint64(b)), index)
    pair = np.stack([words & _MASK32, words >> _SHIFT32], axis=1).reshape(-1)[:vocab_size]
    return words_to_uniform(pair)


def context_words(key: PRFKey, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash token contexts to two 32-bit words (the ``(a, b)`` of :func:`uniforms`).

    Up to four tokens form one Philox counter (left-filled with :data:`SENTINEL`),
    whose first two output words are the hash. Longer contexts are absorbed two
    tokens at a time: the running two words and the next two tokens form the next
    counter. Positions before the start of the sequence also hold :data:`SENTINEL`
    (no token id reaches it).

    Args:
        key: PRF key derived for the ``"context"`` purpose.
        context: Integer array of shape ``(..., h)``: the ``h`` previous tokens, oldest
            first; values in [0, 2**32).

    Returns:
        Two uint64 arrays of shape ``(...)``.
    """
    ctx = np.asarray(context, dtype=np.uint64)
    h = ctx.shape[-1]
    head = min(h, 4)
    first = [np.full(ctx.shape[:-1], SENTINEL, dtype=np.uint64)] * (4 - head)
    first += [ctx[..., i] for i in range(head)]
    s0, s1, _, _ = philox4x32(*first, key.k0, key.k1)
    rest = ctx[..., head:]
    if rest.shape[-1] % 2:
        pad = np.full((*rest.shape[:-1], 1), SENTINEL, dtype=np.uint64)
        rest = np.concatenate([pad, rest], axis=-1)
    for i in range(0, rest.shape[-1], 2):
        s0, s1, _, _ = philox4x32(s0, s1, rest[..., i], rest[..., i + 1], key.k0, key.k1)
    return s0, s1
