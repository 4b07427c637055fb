"""The keyed pseudorandom function shared by generation and detection.

One PRF serves every scheme. It maps ``(key, a, b, token id)`` to a uniform in
(0, 1), with random access: generation draws the whole vocabulary for one
``(a, b)`` at once, detection reads the single entry of the token it sees.
``(a, b)`` are two 32-bit words chosen by the scheme (a keyed hash of the
previous tokens for ``gumbel``, the key position for ``exp``). The construction
is versioned; every key file records its version (:data:`PRF_VERSIONS`), and the
functions below take the derived key of either version.

Version 2 (current; every new key)
----------------------------------

Built on AES-128 (NIST FIPS 197), used as a pseudorandom function on distinct
128-bit blocks. ``E_k`` is AES-128 encryption of one block under key ``k``;
``LE32(x)`` is the 4-byte little-endian encoding of a 32-bit word.

* Key derivation: ``k = HMAC-SHA256(secret, "safeguard/prf/v2/<scheme>/<purpose>")``
  truncated to 16 bytes (one AES-128 key per scheme and purpose). The 256-bit
  secret never leaves this step.
* Token uniforms: ``w`` = the first 8 bytes, as a little-endian 64-bit word, of
  ``E_k(LE32(a) ‖ LE32(b) ‖ LE32(v) ‖ LE32(TOKEN_TAG))`` and
  ``u = (floor(w / 2**12) + 1/2) / 2**52``: 52 random bits, exact in float64,
  in ``[2**-53, 1 - 2**-53]`` (strictly inside (0, 1), and ``1 - u`` is exact too).
* Context words: a CBC-MAC under the ``"context"`` key of the length-prefixed
  message ``LE32(CONTEXT_TAG | h) ‖ LE32(SENTINEL)*pad ‖ LE32(t_1) ‖ ... ‖ LE32(t_h)``
  (``pad`` fills the message to whole blocks): ``x_0 = 0``,
  ``x_i = E_k(x_{i-1} XOR block_i)``; ``(a, b)`` are the first two 32-bit words of
  the last ``x``. For the default ``h = 4`` the first block is a constant, so one
  AES call per context remains.

Security argument. AES-128 is modelled as a pseudorandom permutation (PRP). By the
PRP/PRF switching lemma (Bellare & Rogaway, EUROCRYPT 2006, Lemma 1) a PRP queried on
``q`` distinct blocks is indistinguishable from a random function up to
``q(q-1)/2**129``: 2**-49 after 2**40 blocks. Every ``(a, b, v)`` gives a distinct
block, so each uniform is (computationally) independent of every other one: a
detection answer, which reveals ``u`` for the scored tokens exactly
(``score = -log1p(-u)``), says nothing about any other ``(context, token)`` pair
and nothing about the key. CBC-MAC is a PRF on prefix-free message sets (Bellare,
Kilian & Rogaway, JCSS 2000; Petrank & Rackoff, J. Cryptology 2000); the length
word in front makes the messages of different ``h`` prefix-free. Its outputs are
never shown to anyone: they only select the token block.

What remains: an attacker with detection access can still learn ``u`` of one
candidate token in one context per query and so search, query by query, for
high-scoring tokens; that costs one query per candidate and is limited by rate
limits on the detection service, not by the PRF.

Version 1 (legacy; existing key files only)
-------------------------------------------

A Philox-4x32-10 row seed ``s(a, b)`` (Salmon et al., SC 2011) expanded with the
SplitMix64 mixer (Steele, Lea & Flood, OOPSLA 2014): token ``v`` reads half of
``mix(s + (v // 2 + 1) * 0x9E3779B97F4A7C15)``, ``u = (w + 0.5) / 2**32``.
SplitMix64's mixer is invertible, so the two uniforms of tokens ``2i`` and ``2i + 1``
in one context (two detection answers) give the full 64-bit word, the row seed and
every uniform of that context: **version 1 keys leak through detection answers**
(issue 14) and are kept only to detect text they already marked. Its torch twin is
:mod:`safeguard.watermark.prf_torch`; both versions have committed test vectors in
``tests/data/watermark/``.

>>> key = derive_prf_key(bytes(32), "gumbel", "token")
>>> key.version
2
>>> u = uniforms(key, 7, 11, np.array([0, 1, 2, 50256]))
>>> u.shape, bool(((u > 0) & (u < 1)).all())
((4,), True)
>>> bool(np.array_equal(uniform_vector(key, 7, 11, 50257)[[0, 1, 2, 50256]], u))
True
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from safeguard.errors import DependencyError

__all__ = [
    "CONTEXT_TAG",
    "PRF_VERSION",
    "PRF_VERSIONS",
    "SENTINEL",
    "TOKEN_TAG",
    "AESKey",
    "PRFKey",
    "PhiloxKey",
    "aes128_encrypt",
    "context_words",
    "derive_prf_key",
    "philox4x32",
    "row_seed",
    "splitmix64",
    "uniform_matrix",
    "uniform_vector",
    "uniforms",
    "words_to_uniform",
]

#: Version of the PRF construction that new keys use; stored in every key file.
PRF_VERSION = 2

#: Versions this module implements (``1`` only for existing key files).
PRF_VERSIONS = (1, 2)

#: Stand-in for a context position before the start of the sequence (or left padding).
SENTINEL = 0xFFFFFFFF

#: Fourth word of every version-2 token block (``b"tok\x02"`` read little-endian).
TOKEN_TAG = int.from_bytes(b"tok\x02", "little")

#: High three bytes of the first word of a version-2 context message (``h`` sits in the low byte).
CONTEXT_TAG = int.from_bytes(b"\x00ctx", "little")


# ---------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhiloxKey:
    """Version-1 key material for one scheme and purpose.

    Attributes:
        k0: First 32-bit word of the Philox key.
        k1: Second 32-bit word of the Philox key.
        salt: 32-bit word placed in the last counter slot.
    """

    version: ClassVar[int] = 1
    k0: int
    k1: int
    salt: int

    def __repr__(self) -> str:  # key material never appears in reprs
        return "PhiloxKey(<redacted>)"


@dataclass(frozen=True)
class AESKey:
    """Version-2 key material for one scheme and purpose: one AES-128 key.

    Attributes:
        key: The 16 key bytes.
    """

    version: ClassVar[int] = 2
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != 16:
            raise ValueError("an AES-128 key is 16 bytes")

    def __repr__(self) -> str:  # key material never appears in reprs
        return "AESKey(<redacted>)"


#: A derived key of either version.
PRFKey = PhiloxKey | AESKey


def derive_prf_key(
    secret: bytes, scheme: str, purpose: str, version: int = PRF_VERSION
) -> PhiloxKey | AESKey:
    """Derive the PRF key of ``scheme`` for ``purpose`` from a secret.

    Args:
        secret: The watermark key's secret bytes (32 bytes).
        scheme: Scheme family, e.g. ``"gumbel"`` or ``"exp"``.
        purpose: Domain separator within the scheme, e.g. ``"token"`` or ``"context"``.
        version: PRF version (:data:`PRF_VERSIONS`); the key file says which.

    Returns:
        An :class:`AESKey` (version 2) or a :class:`PhiloxKey` (version 1).
    """
    if version not in PRF_VERSIONS:
        raise ValueError(
            f"`version` (={version!r}) must be one of {', '.join(map(str, PRF_VERSIONS))}"
        )
    label = f"safeguard/prf/v{version}/{scheme}/{purpose}".encode()
    digest = hmac.new(secret, label, hashlib.sha256).digest()
    if version == 2:
        return AESKey(digest[:16])
    k0, k1, salt = (int.from_bytes(digest[i : i + 4], "little") for i in (0, 4, 8))
    return PhiloxKey(k0=k0, k1=k1, salt=salt)


# ---------------------------------------------------------------------------------------------
# the functions schemes call (either version)
# ---------------------------------------------------------------------------------------------


def uniforms(key: PRFKey, a: Any, b: Any, tokens: Any) -> np.ndarray:
    """Uniforms for individual ``(a, b, token)`` triples (random access, used by detection).

    Args:
        key: Derived PRF key (token purpose).
        a, b: 32-bit words, scalars or arrays broadcastable with ``tokens``.
        tokens: Token ids in [0, 2**32), shape ``S``.

    Returns:
        float64 array of the broadcast shape with values in (0, 1).
    """
    if key.version == 2:
        return _uniforms_v2(key, a, b, tokens)
    return _uniforms_v1(key, a, b, tokens)


def uniform_matrix(key: PRFKey, a: Any, b: Any, vocab_size: int) -> np.ndarray:
    """Whole-vocabulary uniforms for a batch of rows (the generation-side draw).

    Args:
        key: Derived PRF key (token purpose).
        a, b: 32-bit words of shape ``(batch,)``.
        vocab_size: Number of token ids ``V``.

    Returns:
        float64 array of shape ``(batch, V)``; entry ``[r, v]`` equals
        ``uniforms(key, a[r], b[r], v)``.
    """
    a = np.atleast_1d(np.asarray(a, dtype=np.uint64))
    b = np.atleast_1d(np.asarray(b, dtype=np.uint64))
    if key.version == 2:
        return _uniform_matrix_v2(key, a, b, vocab_size)
    return _uniform_matrix_v1(key, a, b, vocab_size)


def uniform_vector(key: PRFKey, a: int, b: int, vocab_size: int) -> np.ndarray:
    """All ``vocab_size`` uniforms of row ``(a, b)``.

    Returns:
        float64 array of shape ``(vocab_size,)``; entry ``v`` equals ``uniforms(key, a, b, [v])``.
    """
    return uniform_matrix(key, [a], [b], vocab_size)[0]


def context_words(key: PRFKey, context: Any) -> tuple[np.ndarray, np.ndarray]:
    """Hash token contexts to two 32-bit words (the ``(a, b)`` of :func:`uniforms`).

    Positions before the start of the sequence hold :data:`SENTINEL` (no token id
    reaches it).

    Args:
        key: PRF key derived for the ``"context"`` purpose.
        context: Integer array of shape ``(..., h)``: the ``h`` previous tokens, oldest
            first; values in [0, 2**32).

    Returns:
        Two uint64 arrays of shape ``(...)`` holding 32-bit words.
    """
    if key.version == 2:
        return _context_words_v2(key, context)
    return _context_words_v1(key, context)


# ---------------------------------------------------------------------------------------------
# version 2: AES-128
# ---------------------------------------------------------------------------------------------

_AES: Any = None
_BLOCK = np.dtype("<u4")  # a block is four little-endian 32-bit words
_UNIT_BITS = np.uint64(0x3FF0000000000000)  # exponent of 1.0: OR-ing 52 bits gives 1 + k/2**52
_UNIT_OFFSET = 1.0 - 2.0**-53  # (1 + k/2**52) - (1 - 2**-53) = (k + 1/2) / 2**52, exactly


def _aes() -> Any:
    global _AES
    if _AES is None:
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        except ImportError:
            raise DependencyError(
                "cryptography is not installed; watermark keys of PRF version 2 use AES-128 from it: "
                "`pip install cryptography` (it comes with `pip install 'safeguard[provenance]'`)"
            ) from None
        _AES = (Cipher, algorithms.AES, modes.ECB)
    return _AES


def aes128_encrypt(key: bytes, blocks: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """AES-128 (FIPS 197) applied to every 16-byte block independently (ECB).

    A fresh OpenSSL context per call (a few microseconds), so calls from several
    threads never share one.

    Args:
        key: 16 key bytes.
        blocks: Any array whose C-order bytes are a whole number of 16-byte blocks.
        out: Optional uint8 buffer of at least ``blocks.nbytes + 15`` bytes to write into.

    Returns:
        A uint8 array of the same number of bytes, ``E_k`` of each block.

    Known answer from FIPS 197, Appendix C.1:

    >>> pt = np.frombuffer(bytes.fromhex("00112233445566778899aabbccddeeff"), np.uint8)
    >>> aes128_encrypt(bytes(range(16)), pt).tobytes().hex()
    '69c4e0d86a7b0430d8cdb78070b4c55a'
    """
    cipher_cls, aes_cls, ecb_cls = _aes()
    data = np.ascontiguousarray(blocks).reshape(-1).view(np.uint8)
    if data.size % 16:
        raise ValueError(f"AES input of {data.size} bytes is not a whole number of 16-byte blocks")
    if data.size == 0:
        return data.copy()
    if out is None:
        out = np.empty(data.size + 15, dtype=np.uint8)  # update_into wants a block of slack
    encryptor = cipher_cls(aes_cls(key), ecb_cls()).encryptor()
    written = encryptor.update_into(data, out)
    encryptor.finalize()
    return out[:written]


#: Scratch buffers up to this size are kept per thread and reused: the per-step vocabulary draw
#: of generation then writes into memory that is already mapped (fresh multi-megabyte arrays
#: cost page faults every step, more than the AES itself). Larger calls allocate afresh.
_SCRATCH_LIMIT = 16 << 20
_scratch_local = threading.local()


def _scratch(name: str, nbytes: int) -> np.ndarray:
    """A uint8 buffer of ``nbytes`` for this thread, reused across calls when small enough."""
    if nbytes > _SCRATCH_LIMIT:
        return np.empty(nbytes, dtype=np.uint8)
    buf = getattr(_scratch_local, name, None)
    if buf is None or buf.size < nbytes:
        buf = np.empty(nbytes, dtype=np.uint8)
        setattr(_scratch_local, name, buf)
    return buf[:nbytes]


def _empty_blocks(shape: tuple[int, ...]) -> np.ndarray:
    """Uninitialised token blocks of ``shape + (4,)`` words (scratch memory, overwritten next call)."""
    return (
        _scratch("blocks", int(np.prod(shape, dtype=np.int64)) * 16).view(_BLOCK).reshape(*shape, 4)
    )


def _token_uniforms(key: AESKey, blocks: np.ndarray) -> np.ndarray:
    """``u`` of each token block of ``blocks`` (shape ``(..., 4)`` words): a new float64 array.

    ``w`` is the first 64 bits (little-endian) of ``E_k(block)``; ``u = (floor(w / 2**12) + 1/2)
    / 2**52``, formed from the float64 bit pattern ``1 + floor(w / 2**12) / 2**52`` minus the
    constant ``1 - 2**-53`` (both steps exact).
    """
    shape = blocks.shape[:-1]
    encrypted = aes128_encrypt(key.key, blocks, out=_scratch("aes", blocks.nbytes + 15))
    u = np.empty(shape, dtype=np.float64)
    bits = u.view(np.uint64)
    np.right_shift(encrypted.view("<u8")[0::2].reshape(shape), np.uint64(12), out=bits)
    bits |= _UNIT_BITS
    u -= _UNIT_OFFSET
    return u


def _uniforms_v2(key: AESKey, a: Any, b: Any, tokens: Any) -> np.ndarray:
    a, b, t = np.broadcast_arrays(
        np.asarray(a, dtype=np.uint64),
        np.asarray(b, dtype=np.uint64),
        np.asarray(tokens, dtype=np.uint64),
    )
    blocks = _empty_blocks(t.shape)
    blocks[..., 0] = a
    blocks[..., 1] = b
    blocks[..., 2] = t
    blocks[..., 3] = TOKEN_TAG
    return _token_uniforms(key, blocks)


def _row_blocks(batch: int, vocab_size: int) -> np.ndarray:
    """``(batch, V, 4)`` token blocks with words 2 and 3 (token id, tag) filled in.

    Kept per thread and reused while the shape stays the same (generation asks for the same
    shape every step), so only words 0 and 1 (the row) are written per call.
    """
    nbytes = batch * vocab_size * 16
    cached = getattr(_scratch_local, "rows", None)
    if cached is not None and cached.shape == (batch, vocab_size, 4):
        return cached
    blocks = np.empty((batch, vocab_size, 4), dtype=_BLOCK)
    blocks[:, :, 2] = np.arange(vocab_size, dtype=np.uint32)
    blocks[:, :, 3] = TOKEN_TAG
    if nbytes <= _SCRATCH_LIMIT:
        _scratch_local.rows = blocks
    return blocks


def _uniform_matrix_v2(key: AESKey, a: np.ndarray, b: np.ndarray, vocab_size: int) -> np.ndarray:
    blocks = _row_blocks(a.shape[0], vocab_size)
    blocks[:, :, 0] = a[:, None]
    blocks[:, :, 1] = b[:, None]
    return _token_uniforms(key, blocks)


def _context_words_v2(key: AESKey, context: Any) -> tuple[np.ndarray, np.ndarray]:
    ctx = np.asarray(context, dtype=np.uint64)
    lead_shape, h = ctx.shape[:-1], ctx.shape[-1]
    if h > 0xFF:
        raise ValueError(f"a context of {h} tokens is longer than the 255 the encoding allows")
    pad = -(h + 1) % 4
    head = np.array([CONTEXT_TAG | h] + [SENTINEL] * pad, dtype=_BLOCK)
    message = np.empty((*lead_shape, len(head) + h), dtype=_BLOCK)
    message[..., : len(head)] = head
    message[..., len(head) :] = ctx
    blocks = message.reshape(*lead_shape, -1, 4)
    state: np.ndarray
    first = 0
    if len(head) == 4:  # the first block holds no token: one AES call for all rows
        state = np.broadcast_to(aes128_encrypt(key.key, head).view(_BLOCK), (*lead_shape, 4)).copy()
        first = 1
    else:
        state = np.zeros((*lead_shape, 4), dtype=_BLOCK)
    for i in range(first, blocks.shape[-2]):
        state ^= blocks[..., i, :]
        state = aes128_encrypt(key.key, state).view(_BLOCK).reshape(*lead_shape, 4)
    return state[..., 0].astype(np.uint64), state[..., 1].astype(np.uint64)


# ---------------------------------------------------------------------------------------------
# version 1: Philox-4x32-10 row seeds + SplitMix64 words (legacy)
# ---------------------------------------------------------------------------------------------

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


def philox4x32(
    c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, k0: int, k1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox-4x32 with 10 rounds on broadcastable arrays of 32-bit counter words (version 1).

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


def row_seed(key: PhiloxKey, a: Any, b: Any) -> np.ndarray:
    """Version 1: the 64-bit keyed seed of row ``(a, b)``, Philox words 0 and 1 of ``(a, b, salt, 0)``.

    Returns:
        uint64 array of the broadcast shape of ``a`` and ``b``.
    """
    if key.version != 1:
        raise TypeError("row seeds exist only in PRF version 1")
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
    """Version 1: map 32-bit words (in a uint64 array) to float64 uniforms ``(w + 0.5) / 2**32``."""
    return (w.astype(np.float64) + 0.5) * 2.0**-32


def _uniforms_v1(key: PhiloxKey, a: Any, b: Any, tokens: Any) -> np.ndarray:
    t = np.asarray(tokens, dtype=np.uint64)
    words = _row_words(row_seed(key, a, b), t >> np.uint64(1))
    odd = (t & np.uint64(1)).astype(bool)
    return words_to_uniform(np.where(odd, words >> _SHIFT32, words & _MASK32))


def _uniform_matrix_v1(key: PhiloxKey, a: np.ndarray, b: np.ndarray, vocab_size: int) -> np.ndarray:
    index = np.arange((vocab_size + 1) // 2, dtype=np.uint64)
    words = _row_words(row_seed(key, a, b)[:, None], index[None, :])
    pair = np.stack([words & _MASK32, words >> _SHIFT32], axis=2).reshape(a.shape[0], -1)
    return words_to_uniform(pair[:, :vocab_size])


def _context_words_v1(key: PhiloxKey, context: Any) -> tuple[np.ndarray, np.ndarray]:
    # Up to four tokens form one Philox counter (left-filled with SENTINEL), whose first two
    # output words are the hash. Longer contexts are absorbed two tokens at a time: the
    # running two words and the next two tokens form the next counter.
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
