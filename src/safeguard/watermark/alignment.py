"""Alignment statistics and permutation p-values of the EXP and EXP-edit watermarks.

Implements the detection side of Kuditipudi, Thickstun, Hashimoto & Liang,
"Robust Distortion-free Watermarks for Language Models" (2023,
arXiv:2307.15593, Section 2): the test statistic ``φ`` of the detection
algorithm for the exponential-minimum sampling decoder (EXP), its variant with
the Levenshtein alignment cost ``d_γ`` (EXP-edit, robust to insertions and
deletions), and the permutation test that turns ``φ`` into the p-value
``(1 + #{φ_t ≤ φ}) / (T + 1)``. The equations implemented are written out
below.

Key and costs. The key is ``n`` uniform vectors ``ξ_0 .. ξ_{n-1}`` over the
vocabulary; the ``i``-th token of a text generated from shift ``τ`` is
``y_i = argmax_v log(ξ_{(τ+i) mod n, v}) / p_v``. Aligning token ``y_i`` with
key position ``j`` costs ``C[i, j] = log(1 - ξ_{j, y_i})`` (``≤ 0``, very
negative when the text is watermarked). Callers pass the ``(m, n)`` matrix ``C``
computed from the real key.

Statistics (smaller means "more watermarked").

* ``exp``: ``φ = min_s Σ_i C[i, (s + i) mod n]`` (the EXP alignment cost
  ``d(y, ξ) = Σ_i log(1 - ξ_{i, y_i})`` minimised over the key shifts).
* ``exp-edit``: the Levenshtein cost ``d_γ`` with base cost ``C``, generalised so
  that one dynamic programme handles every shift: the whole text
  ``y_0 .. y_{m-1}`` is aligned monotonically with the cyclic key sequence
  ``ξ_s, ξ_{s+1}, ...`` read from a free start ``s``; an aligned pair costs
  ``C[i, j]``, a text token left unaligned (insertion) costs ``γ``, a skipped
  key position inside the alignment (deletion) costs ``γ``, and the key may end
  anywhere. The key is unrolled to ``L = n + 2m`` positions
  (:func:`key_span`), so every start gets at least ``2m + 1`` key positions:
  enough for texts in which up to half of the original tokens were deleted.
  The paper's reference code instead runs one fixed-length Levenshtein
  programme per shift.

The programme, over ``i = 0..m`` text tokens and ``j = 0..L`` unrolled key
positions consumed, is ``D[0, j] = 0`` (free start), ``D[i, 0] = iγ`` and
``D[i, j] = min(D[i-1, j] + γ, D[i, j-1] + γ, D[i-1, j-1] + C[i-1, (j-1) mod n])``
with statistic ``min_j D[m, j]`` (free end). Writing ``G[i, j] = D[i, j] - γ(i + j)`` makes
both gap moves free and a match cost ``C - 2γ``, so each anti-diagonal
``i + j = d`` is two element-wise minima and one subtraction, vectorised over
resamples: no sequential scan along a row.

p-values. Under the null hypothesis the text is independent of
the key, so with a fresh uniform key the costs are ``-E`` with ``E ~ Exp(1)``
independent per (distinct token, key position). :func:`permutation_test` draws
``T`` such null keys, restricted to the text's distinct tokens (the equality
pattern of repeated tokens is kept through ``token_index``), and returns
``p = (1 + #{φ_null ≤ φ}) / (T + 1)``. Optional sequential stopping follows
Besag & Clifford (1991, "Sequential Monte Carlo p-values", Biometrika 78):
stop as soon as ``h`` null statistics are ``≤ φ``, giving ``p = h / ℓ`` after
``ℓ`` draws, or ``(g + 1) / (T + 1)`` if fewer than ``h`` were seen; the
result is a valid p-value.

Numerics. Null statistics are computed in float32 from 24-bit uniforms
(``E = -log((k + 1/2) / 2^24)``, so ``E ≤ 17.3``: the Exp(1) tail beyond it
has probability 3e-8) and can differ from a float64 computation by ~1e-4; the
observed statistic is float64. A null statistic within that distance of the
observed one has probability ~0.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> costs = np.log1p(-rng.random((20, 16)))      # an unwatermarked text
>>> result = permutation_test(costs, np.arange(20), resolution=0.01, rng=1)
>>> result.num_resamples, result.min_p_value
(99, 0.01)
>>> bool(result.p_value > 0.01)
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from safeguard.errors import ConfigError

__all__ = [
    "DEFAULT_GAMMA",
    "DEFAULT_RESOLUTION",
    "Method",
    "PermutationResult",
    "exp_edit_statistic",
    "exp_statistic",
    "key_span",
    "null_statistics",
    "num_resamples_for",
    "permutation_test",
]

Method = Literal["exp", "exp-edit"]

#: Insertion/deletion cost of ``exp-edit``, chosen by the power simulation in
#: ``benchmarks/watermark_exp_detect.py``: 200-token texts, 30% substitutions +
#: 10% insertions + 10% deletions, n = 256, T = 999. At 2.5 nats/token every
#: γ ≥ 1 detects all texts at p < 0.01 (γ = 0: 37%); at 1.25 nats/token the
#: fraction detected was 0.44 / 0.54 / 0.56 / 0.48 / 0.42 for γ = 2 / 3 / 4 /
#: 6 / 8 (50 texts; exp: 0.18). Larger γ forbids the gaps that realign edited
#: text, smaller γ lets null keys align too well.
DEFAULT_GAMMA = 4.0
#: Default resolution of the permutation test: ``T = 999`` null keys.
DEFAULT_RESOLUTION = 1e-3

_METHODS: tuple[str, ...] = ("exp", "exp-edit")
_CHUNK = 128  # resamples per work item: the DP's rolling diagonals stay in L2 cache
_CHUNK_BYTES = 32 << 20  # cap on a work item's (n, m, width) float32 cost cube
_GEN_BLOCK = 1 << 18  # float32s converted per step when drawing Exp(1)
_LOG_2_24 = 24.0 * math.log(2.0)


@dataclass(frozen=True, kw_only=True)
class PermutationResult:
    """The outcome of :func:`permutation_test`.

    Attributes:
        statistic: The observed statistic ``φ`` (float64); smaller is more
            watermarked.
        p_value: ``(1 + #{φ_null ≤ φ}) / (T + 1)``, or ``h / ℓ`` when stopped
            early; with ``approximate=True`` it is computed from the cached
            all-tokens-distinct null table.
        num_resamples: Null statistics actually compared (``ℓ`` when stopped
            early, else ``T``).
        min_p_value: The smallest p-value reachable at the requested
            resolution, ``1 / (T + 1)``.
        approximate: True when the p-value came from the cached null table and
            the text repeats a token, so the table's null (all tokens distinct)
            is not exactly the text's null.
        stopped_early: True when sequential stopping ended the test before
            ``T`` resamples.
        method: ``"exp"`` or ``"exp-edit"``.
        gamma: The insertion/deletion cost used (``exp-edit``), else 0.
    """

    statistic: float
    p_value: float
    num_resamples: int
    min_p_value: float
    approximate: bool
    stopped_early: bool
    method: Method
    gamma: float


# --------------------------------------------------------------------------- #
# Validation


def _check_costs(costs: np.ndarray) -> np.ndarray:
    arr = np.asarray(costs, dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError(
            f"`costs` must be 2-D of shape (m, n) = (text length, key length), got shape "
            f"{arr.shape}; pass C[i, j] = log1p(-xi[j, tokens[i]])"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ConfigError(
            f"`costs` (shape {arr.shape}) must have at least one text token and one key "
            "position; detection needs a non-empty text"
        )
    if not np.all(np.isfinite(arr)):
        raise ConfigError(
            "`costs` contains non-finite values (nan or -inf); costs are log1p(-xi) with "
            "xi in [0, 1): check that the key's uniforms are < 1"
        )
    return arr


def _check_gamma(gamma: float) -> float:
    g = float(gamma)
    if not (math.isfinite(g) and g >= 0.0):
        raise ConfigError(
            f"`gamma` (={gamma!r}) must be a finite number >= 0; it is the insertion/deletion "
            f"cost of exp-edit (default {DEFAULT_GAMMA})"
        )
    return g


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ConfigError(f"`method` (={method!r}) must be one of {_METHODS}")


def _check_token_index(token_index: np.ndarray, m: int) -> np.ndarray:
    tok = np.asarray(token_index)
    if tok.shape != (m,):
        raise ConfigError(
            f"`token_index` must have shape (m,) = ({m},) to match `costs`, got {tok.shape}; "
            "pass np.unique(tokens, return_inverse=True)[1]"
        )
    if tok.size and not np.issubdtype(tok.dtype, np.integer):
        raise ConfigError(
            f"`token_index` must be integers (dtype {tok.dtype} given); pass "
            "np.unique(tokens, return_inverse=True)[1]"
        )
    tok = tok.astype(np.int64)
    if tok.min() < 0:
        raise ConfigError(
            f"`token_index` has a negative entry ({int(tok.min())}); entries index the "
            "text's distinct tokens, from np.unique(tokens, return_inverse=True)[1]"
        )
    return tok


def num_resamples_for(resolution: float) -> int:
    """Number of null keys ``T = ceil(1 / resolution) - 1`` for a p-value resolution.

    Args:
        resolution: The requested resolution in ``(0, 1)``; the smallest reachable
            p-value is then ``1 / (T + 1) ≈ resolution``.

    Returns:
        ``T ≥ 1``.

    Raises:
        ConfigError: If ``resolution`` is not in ``(0, 1)``.

    >>> num_resamples_for(1e-3), num_resamples_for(0.05)
    (999, 19)
    """
    r = float(resolution)
    if not (0.0 < r < 1.0):
        raise ConfigError(
            f"`resolution` (={resolution!r}) must be in (0, 1); e.g. 1e-3 gives 999 null keys "
            "and a smallest p-value of 1e-3"
        )
    return max(1, math.ceil(1.0 / r - 1e-9) - 1)


def key_span(m: int, n: int) -> int:
    """Length ``L = n + 2m`` of the unrolled key used by ``exp-edit``.

    Starts range over all ``L`` positions (positions ``≥ n`` repeat a start
    modulo ``n``), so each start modulo ``n`` can use at least ``2m + 1``
    consecutive key positions.

    Args:
        m: Text length.
        n: Key length.

    Returns:
        ``n + 2m``.
    """
    return int(n) + 2 * int(m)


# --------------------------------------------------------------------------- #
# Kernels. A "cube" R has shape (n, m, B): B columns of aligned costs (one per
# resample), with a layout chosen so each statistic reads contiguous slices.


def _edit_kernel(cube: np.ndarray, gamma: float, positions: int) -> np.ndarray:
    """Free-start Levenshtein statistics from a cube of shifted negated costs.

    Args:
        cube: ``(n, m, B)`` with ``cube[x, r, b] = -C_b[r, (x - r - 2) mod n] + 2γ``.
        gamma: Insertion/deletion cost.
        positions: Unrolled key length ``L``; the DP has columns ``j = 0 .. L``
            (``j`` key positions consumed).

    Returns:
        ``(B,)`` statistics ``min_j D[m, j]``.
    """
    n, m, width = cube.shape
    length = positions + 1
    dt = cube.dtype
    prev2 = np.full((m + 1, width), np.inf, dtype=dt)  # diagonal d - 2
    prev1 = np.full((m + 1, width), np.inf, dtype=dt)  # diagonal d - 1
    cur = np.full((m + 1, width), np.inf, dtype=dt)
    tmp = np.empty((m, width), dtype=dt)
    best = np.full(width, np.inf, dtype=dt)
    prev1[0] = 0.0  # diagonal 0 is the single cell G[0, 0] = 0
    minimum, subtract = np.minimum, np.subtract
    for d in range(1, m + length):
        lo = max(1, d - length + 1)
        hi = min(m, d - 1)
        if lo <= hi:
            t = tmp[: hi - lo + 1]
            # match: G[i-1, j-1] - (E + 2γ) with token i-1 and key position j-1
            subtract(prev2[lo - 1 : hi], cube[d % n, lo - 1 : hi], out=t)
            # free insertion G[i-1, j] and free deletion G[i, j-1]
            minimum(prev1[lo - 1 : hi], prev1[lo : hi + 1], out=cur[lo : hi + 1])
            minimum(cur[lo : hi + 1], t, out=cur[lo : hi + 1])
        if d <= m:
            cur[d] = 0.0  # G[d, 0]: d insertions before any key position
        if d < length:
            cur[0] = -gamma * d  # G[0, d]: free start at key position d
        if d >= m and d - m < length:
            np.minimum(best, cur[m] + dt.type(gamma * d), out=best)  # D[m, d - m]
        prev2, prev1, cur = prev1, cur, prev2
    return best


def _exp_kernel(cube: np.ndarray) -> np.ndarray:
    """``exp`` statistics from a cube ``(n, m, B)`` with ``cube[s, i] = -C[i, (s+i) mod n]``."""
    return -cube.sum(axis=1, dtype=cube.dtype).max(axis=0)


def _observed_cube(costs: np.ndarray, method: str, gamma: float) -> np.ndarray:
    m, n = costs.shape
    rows = np.arange(m)
    x = np.arange(n)[:, None]
    if method == "exp":
        cols = (x + rows[None, :]) % n
        return (-costs[rows[None, :], cols])[:, :, None]
    cols = (x - rows[None, :] - 2) % n
    return (2.0 * gamma - costs[rows[None, :], cols])[:, :, None]


def exp_statistic(costs: np.ndarray) -> float:
    """The ``exp`` statistic ``φ = min_s Σ_i C[i, (s + i) mod n]``.

    Args:
        costs: ``(m, n)`` alignment costs ``C[i, j] = log1p(-ξ[j, y_i])``.

    Returns:
        ``φ`` (float64); smaller is more watermarked.

    Raises:
        ConfigError: If ``costs`` is not a non-empty finite 2-D array.

    >>> import numpy as np
    >>> c = np.zeros((3, 4)); c[0, 1] = c[1, 2] = c[2, 3] = -5.0  # aligned at shift 1
    >>> exp_statistic(c)
    -15.0
    """
    arr = _check_costs(costs)
    return float(_exp_kernel(_observed_cube(arr, "exp", 0.0))[0])


def exp_edit_statistic(costs: np.ndarray, gamma: float = DEFAULT_GAMMA) -> float:
    """The ``exp-edit`` free-start Levenshtein statistic (module docstring).

    Args:
        costs: ``(m, n)`` alignment costs ``C[i, j] = log1p(-ξ[j, y_i])``.
        gamma: Insertion/deletion cost ``γ ≥ 0``.

    Returns:
        ``min`` over starts and monotone alignments of the cost (float64);
        smaller is more watermarked. Never above ``m·γ`` (all insertions).

    Raises:
        ConfigError: If ``costs`` is not a non-empty finite 2-D array or ``gamma < 0``.

    >>> import numpy as np
    >>> c = np.zeros((3, 8)); c[0, 2] = c[1, 4] = c[2, 5] = -5.0  # one key position skipped
    >>> exp_edit_statistic(c, gamma=1.0)  # three matches and one deletion
    -14.0
    >>> exp_edit_statistic(c, gamma=10.0)  # the deletion is too expensive: -5 - 5 + 0
    -10.0
    """
    arr = _check_costs(costs)
    g = _check_gamma(gamma)
    m, n = arr.shape
    return float(_edit_kernel(_observed_cube(arr, "exp-edit", g), g, key_span(m, n))[0])


# --------------------------------------------------------------------------- #
# Null statistics


def _fill_exponential(bitgen: np.random.BitGenerator, out: np.ndarray, offset: float) -> None:
    """Fill a contiguous float32 array with ``Exp(1) + offset`` from 24-bit uniforms."""
    flat = out.reshape(-1)
    const = np.float32(_LOG_2_24 + offset)
    half = np.float32(0.5)
    for start in range(0, flat.size, _GEN_BLOCK):
        block = flat[start : start + _GEN_BLOCK]
        k = block.size
        bits = bitgen.random_raw((k + 1) // 2).view(np.uint32)[:k]
        np.right_shift(bits, 8, out=bits)
        np.copyto(block, bits, casting="unsafe")
        np.add(block, half, out=block)
        np.log(block, out=block)
        np.subtract(const, block, out=block)


def _null_cube(
    bitgen: np.random.BitGenerator,
    token_index: np.ndarray,
    n: int,
    width: int,
    direction: int,
    offset: float,
) -> np.ndarray:
    """Draw ``(n, m, width)`` null costs ``E[(x + direction·r + o) mod n, token_index[r]] + offset``.

    Columns of a text's first occurrences are i.i.d.; a repeated token's column
    is the first occurrence's column rolled so that the same (token, key
    position) pair always gets the same draw.
    """
    m = token_index.shape[0]
    cube = np.empty((n, m, width), dtype=np.float32)
    _, first = np.unique(token_index, return_index=True)
    first_of = np.empty(int(token_index.max()) + 1, dtype=np.int64)
    first_of[token_index[first]] = first
    firsts = first_of[token_index]
    repeats = np.flatnonzero(firsts != np.arange(m))
    if repeats.size == 0:
        _fill_exponential(bitgen, cube, offset)
        return cube
    unique_cols = np.sort(first)
    block = np.empty((n, unique_cols.size, width), dtype=np.float32)
    _fill_exponential(bitgen, block, offset)
    cube[:, unique_cols] = block
    for r in repeats:
        r0 = int(firsts[r])
        k = (direction * (int(r) - r0)) % n  # cube[x, r] = cube[(x + k) mod n, r0]
        cube[: n - k, r] = cube[k:, r0]
        cube[n - k :, r] = cube[:k, r0]
    return cube


def _exp_null(
    bitgen: np.random.BitGenerator, token_index: np.ndarray, n: int, width: int
) -> np.ndarray:
    """``(width,)`` null ``exp`` statistics, exactly, without an ``(n, m)`` cube.

    ``S[s] = Σ_i E[(s + i) mod n, token_index[i]]``. A token occurring once
    contributes one distinct entry to each shift's sum, so the singletons'
    part of ``S`` is i.i.d. ``Gamma(#singletons, 1)`` over shifts; only the
    ``n`` draws of each repeated token are materialised and added, rolled.
    """
    counts = np.bincount(token_index)
    single = int((counts[token_index] == 1).sum())
    sums = np.zeros((n, width), dtype=np.float64)
    if single:
        np.random.Generator(bitgen).standard_gamma(single, size=(n, width), out=sums)
    repeated = np.flatnonzero(counts > 1)
    if repeated.size:
        draws = np.empty((repeated.size, n, width), dtype=np.float32)
        _fill_exponential(bitgen, draws, 0.0)
        row_of = np.full(counts.size, -1, dtype=np.int64)
        row_of[repeated] = np.arange(repeated.size)
        for i in np.flatnonzero(counts[token_index] > 1):
            e = draws[row_of[token_index[i]]]
            k = int(i) % n  # sums[s] += e[(s + i) mod n]
            sums[: n - k] += e[k:]
            sums[n - k :] += e[:k]
    return (-sums.max(axis=0)).astype(np.float32)


def _null_chunk(
    seed: np.random.SeedSequence,
    token_index: np.ndarray,
    n: int,
    width: int,
    method: str,
    gamma: float,
) -> np.ndarray:
    bitgen = np.random.SFC64(seed)
    m = token_index.shape[0]
    if method == "exp":
        return _exp_null(bitgen, token_index, n, width)
    cube = _null_cube(bitgen, token_index, n, width, -1, 2.0 * gamma)
    return _edit_kernel(cube, gamma, key_span(m, n))


def _resolve_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ConfigError(
        f"`rng` (={rng!r}) must be a numpy Generator, an int seed or None; "
        "pass np.random.default_rng(seed) for reproducible p-values"
    )


def _resolve_threads(num_threads: int | None) -> int:
    if num_threads is None:
        return max(1, os.cpu_count() or 1)
    if isinstance(num_threads, bool) or int(num_threads) < 1:
        raise ConfigError(
            f"`num_threads` (={num_threads!r}) must be an int >= 1, or None for the CPU count"
        )
    return int(num_threads)


def _chunk_width(m: int, n: int) -> int:
    """Resamples per work item: ``_CHUNK``, fewer for long texts (memory cap)."""
    return max(1, min(_CHUNK, _CHUNK_BYTES // (4 * m * n)))


def _chunk_seeds(rng: np.random.Generator, total: int, width: int) -> list[np.random.SeedSequence]:
    entropy = rng.integers(0, 2**63, size=4, dtype=np.int64).tolist()
    return np.random.SeedSequence(entropy).spawn(-(-total // width))


def _run_chunks(
    work: Callable[[int, int], np.ndarray],
    total: int,
    width: int,
    num_threads: int,
    keep_going: Callable[[np.ndarray], bool],
) -> None:
    """Run ``work(chunk_id, width)`` over chunks in order, feeding ``keep_going``.

    Chunks are computed ``num_threads`` at a time but delivered in order; once
    ``keep_going`` returns False no further chunk is started.
    """
    widths = [min(width, total - start) for start in range(0, total, width)]
    if num_threads == 1 or len(widths) == 1:
        for cid, w in enumerate(widths):
            if not keep_going(work(cid, w)):
                return
        return
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        pending: list[Future[np.ndarray]] = []
        nxt = 0
        while nxt < len(widths) and len(pending) < num_threads + 1:
            pending.append(pool.submit(work, nxt, widths[nxt]))
            nxt += 1
        while pending:
            stats = pending.pop(0).result()
            if not keep_going(stats):
                for fut in pending:
                    fut.cancel()
                return
            if nxt < len(widths):
                pending.append(pool.submit(work, nxt, widths[nxt]))
                nxt += 1


def null_statistics(
    token_index: np.ndarray,
    n: int,
    *,
    method: Method = "exp-edit",
    gamma: float = DEFAULT_GAMMA,
    num_resamples: int = 999,
    rng: np.random.Generator | int | None = None,
    num_threads: int | None = 1,
) -> np.ndarray:
    """Statistics of a text scored against ``num_resamples`` fresh random keys.

    The null costs are ``-E`` with ``E ~ Exp(1)`` drawn per (distinct token,
    key position), so repeated tokens keep their equality pattern; nothing of
    vocabulary size is materialised. The output depends only on ``rng``'s
    state, not on ``num_threads``.

    Args:
        token_index: ``(m,)`` index of each position's token among the text's
            distinct tokens (``np.unique(tokens, return_inverse=True)[1]``).
        n: Key length.
        method: ``"exp"`` or ``"exp-edit"``.
        gamma: Insertion/deletion cost (``exp-edit`` only).
        num_resamples: Number of null keys ``T ≥ 1``.
        rng: Generator (or seed) driving the draws.
        num_threads: Worker threads (numpy releases the GIL); None uses every
            CPU. Default 1: on the 2-core reference machine 2 threads gave no
            gain, the work being memory-bound.

    Returns:
        ``(num_resamples,)`` float32 null statistics.

    Raises:
        ConfigError: On a bad ``method``, ``gamma``, ``n``, ``num_resamples`` or ``token_index``.

    >>> stats = null_statistics(np.arange(50), 64, method="exp", num_resamples=5, rng=0)
    >>> stats.shape, bool(np.all(stats < 0))
    ((5,), True)
    """
    _check_method(method)
    g = _check_gamma(gamma) if method == "exp-edit" else 0.0
    if int(n) < 1:
        raise ConfigError(f"`n` (={n!r}) must be >= 1: the number of key positions")
    if int(num_resamples) < 1:
        raise ConfigError(f"`num_resamples` (={num_resamples!r}) must be >= 1")
    tok = np.asarray(token_index)
    if tok.ndim != 1 or tok.size < 1:
        raise ConfigError(f"`token_index` must be a non-empty 1-D array, got shape {tok.shape}")
    tok = _check_token_index(tok, tok.shape[0])
    total = int(num_resamples)
    width = _chunk_width(tok.size, int(n))
    seeds = _chunk_seeds(_resolve_rng(rng), total, width)
    out = np.empty(total, dtype=np.float32)
    filled = [0]

    def work(cid: int, width: int) -> np.ndarray:
        return _null_chunk(seeds[cid], tok, int(n), width, method, g)

    def collect(stats: np.ndarray) -> bool:
        out[filled[0] : filled[0] + stats.size] = stats
        filled[0] += stats.size
        return True

    _run_chunks(work, total, width, _resolve_threads(num_threads), collect)
    return out


@lru_cache(maxsize=32)
def _cached_table(method: str, m: int, n: int, gamma: float, total: int) -> np.ndarray:
    seed = np.random.SeedSequence([m, n, total, round(gamma * 1e6), _METHODS.index(method)])
    table = null_statistics(
        np.arange(m),
        n,
        method=method,  # type: ignore[arg-type]
        gamma=gamma,
        num_resamples=total,
        rng=np.random.Generator(np.random.PCG64(seed)),
    )
    table.sort()
    table.setflags(write=False)
    return table


def permutation_test(
    costs: np.ndarray,
    token_index: np.ndarray,
    *,
    method: Method = "exp-edit",
    gamma: float = DEFAULT_GAMMA,
    resolution: float = DEFAULT_RESOLUTION,
    rng: np.random.Generator | int | None = None,
    early_stop: int | None = None,
    cached_null: bool = False,
    num_threads: int | None = 1,
) -> PermutationResult:
    """p-value of a text's alignment with a key by a permutation test against fresh keys.

    Args:
        costs: ``(m, n)`` costs ``C[i, j] = log1p(-ξ[j, y_i])`` from the real key.
        token_index: ``(m,)`` index of each token among the text's distinct
            tokens, ``np.unique(tokens, return_inverse=True)[1]``.
        method: ``"exp"`` or ``"exp-edit"``.
        gamma: Insertion/deletion cost of ``exp-edit`` (ignored by ``exp``).
        resolution: Requested p-value resolution in ``(0, 1)``; uses
            ``T = ceil(1/resolution) - 1`` null keys (1e-3 → 999).
        rng: Generator or seed for the null keys; fix it for reproducible
            p-values. Results do not depend on ``num_threads``.
        early_stop: Besag–Clifford ``h``: stop once ``h`` null statistics are
            ``≤ φ`` (then ``p = h/ℓ``); 10–20 makes clearly unwatermarked
            texts cheap and keeps ``p`` valid. With ``h ≥ 1`` the decision
            ``p ≤ α`` is the same as the full test's for ``α < h/(T+1)``.
            None runs all ``T`` resamples.
        cached_null: Use a null table built once per ``(method, m, n, γ, T)``
            with all tokens distinct (deterministic seed, kept in memory). Fast
            for many texts; ``approximate`` is True when the text repeats a token.
        num_threads: Worker threads; None uses every CPU (see
            :func:`null_statistics`).

    Returns:
        A :class:`PermutationResult`.

    Raises:
        ConfigError: If an argument is out of range (the message names it).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> xi = rng.random((32, 50))                  # key: 32 positions, vocabulary 50
    >>> p = rng.dirichlet(np.full(50, 0.3), size=40)
    >>> tokens = np.argmax(np.log(xi[np.arange(40) % 32]) / p, axis=1)  # shift 0
    >>> costs = np.log1p(-xi[:, tokens].T)
    >>> tok = np.unique(tokens, return_inverse=True)[1]
    >>> permutation_test(costs, tok, method="exp", resolution=0.01, rng=0).p_value
    0.01
    """
    _check_method(method)
    arr = _check_costs(costs)
    m, n = arr.shape
    tok = _check_token_index(token_index, m)
    g = _check_gamma(gamma) if method == "exp-edit" else 0.0
    total = num_resamples_for(resolution)
    if early_stop is not None and int(early_stop) < 1:
        raise ConfigError(
            f"`early_stop` (={early_stop!r}) must be an int >= 1 (Besag-Clifford h, "
            "typically 10-20) or None to run all resamples"
        )
    threads = _resolve_threads(num_threads)
    if method == "exp":
        observed = float(_exp_kernel(_observed_cube(arr, "exp", 0.0))[0])
    else:
        observed = float(_edit_kernel(_observed_cube(arr, "exp-edit", g), g, key_span(m, n))[0])
    min_p = 1.0 / (total + 1)

    if cached_null:
        table = _cached_table(method, m, n, g, total)
        count = int(np.searchsorted(table, np.float32(observed), side="right"))
        return PermutationResult(
            statistic=observed,
            p_value=(1 + count) / (total + 1),
            num_resamples=total,
            min_p_value=min_p,
            approximate=bool(np.unique(tok).size < m),
            stopped_early=False,
            method=method,
            gamma=g,
        )

    width = _chunk_width(m, n)
    seeds = _chunk_seeds(_resolve_rng(rng), total, width)
    thresh = np.float32(observed)
    h = None if early_stop is None else int(early_stop)
    state = {"seen": 0, "hits": 0, "stopped": False}

    def work(cid: int, width: int) -> np.ndarray:
        return _null_chunk(seeds[cid], tok, n, width, method, g)

    def consume(stats: np.ndarray) -> bool:
        hits = stats <= thresh
        if h is not None and state["hits"] + int(hits.sum()) >= h:
            # the h-th hit, in draw order, is where sequential sampling stops
            where = np.flatnonzero(hits)[h - state["hits"] - 1]
            state["seen"] += int(where) + 1
            state["hits"] = h
            state["stopped"] = True
            return False
        state["seen"] += stats.size
        state["hits"] += int(hits.sum())
        return True

    _run_chunks(work, total, width, threads, consume)
    seen, hits = state["seen"], state["hits"]
    p_value = hits / seen if state["stopped"] else (hits + 1) / (total + 1)
    return PermutationResult(
        statistic=observed,
        p_value=float(p_value),
        num_resamples=int(seen),
        min_p_value=min_p,
        approximate=False,
        stopped_early=bool(state["stopped"]) and seen < total,
        method=method,
        gamma=g,
    )
