"""Alignment costs and statistics of the EXP and EXP-edit watermarks: input checks, the
unrolled key length, and the vectorised kernels of :mod:`safeguard.watermark.alignment`.

A "cube" ``R`` has shape ``(n, m, B)``: ``B`` columns of aligned costs (one per resample, or
the single observed text), laid out so each statistic reads contiguous slices. ``exp``
takes the best cyclic shift of summed costs; ``exp-edit`` runs the free-start Levenshtein
programme of the :mod:`~safeguard.watermark.alignment` docstring one anti-diagonal at a
time.

>>> import numpy as np
>>> c = np.zeros((3, 4)); c[0, 1] = c[1, 2] = c[2, 3] = -5.0  # aligned at shift 1
>>> float(observed_statistic(c, "exp", 0.0))
-15.0
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from safeguard.errors import ConfigError

__all__ = ["DEFAULT_GAMMA", "Method", "key_span", "observed_statistic"]

Method = Literal["exp", "exp-edit"]

#: Insertion/deletion cost of ``exp-edit``, chosen by the power simulation in
#: ``benchmarks/watermark_exp_detect.py``: 200-token texts, 30% substitutions +
#: 10% insertions + 10% deletions, n = 256, T = 999. At 2.5 nats/token every
#: γ ≥ 1 detects all texts at p < 0.01 (γ = 0: 37%); at 1.25 nats/token the
#: fraction detected was 0.44 / 0.54 / 0.56 / 0.48 / 0.42 for γ = 2 / 3 / 4 /
#: 6 / 8 (50 texts; exp: 0.18). Larger γ forbids the gaps that realign edited
#: text, smaller γ lets null keys align too well.
DEFAULT_GAMMA = 4.0

METHODS: tuple[str, ...] = ("exp", "exp-edit")


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
    if method not in METHODS:
        raise ConfigError(f"`method` (={method!r}) must be one of {METHODS}")


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
# Kernels


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


def observed_statistic(costs: np.ndarray, method: str, gamma: float) -> float:
    """The statistic of checked ``costs`` under ``method`` (``gamma``: exp-edit's gap cost)."""
    if method == "exp":
        return float(_exp_kernel(_observed_cube(costs, "exp", 0.0))[0])
    m, n = costs.shape
    cube = _observed_cube(costs, "exp-edit", gamma)
    return float(_edit_kernel(cube, gamma, key_span(m, n))[0])
