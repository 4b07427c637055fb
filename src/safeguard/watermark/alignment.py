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
from dataclasses import dataclass

import numpy as np

from safeguard.errors import ConfigError
from safeguard.watermark.alignment_kernels import DEFAULT_GAMMA as DEFAULT_GAMMA
from safeguard.watermark.alignment_kernels import Method as Method
from safeguard.watermark.alignment_kernels import (
    _check_costs,
    _check_gamma,
    _check_method,
    _check_token_index,
    observed_statistic,
)
from safeguard.watermark.alignment_kernels import _edit_kernel as _edit_kernel
from safeguard.watermark.alignment_kernels import _exp_kernel as _exp_kernel
from safeguard.watermark.alignment_kernels import _observed_cube as _observed_cube
from safeguard.watermark.alignment_kernels import key_span as key_span
from safeguard.watermark.alignment_null import _cached_table, _resolve_threads, count_null_hits
from safeguard.watermark.alignment_null import _null_cube as _null_cube
from safeguard.watermark.alignment_null import null_statistics as null_statistics

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

#: Default resolution of the permutation test: ``T = 999`` null keys.
DEFAULT_RESOLUTION = 1e-3


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
    return observed_statistic(arr, "exp", 0.0)


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
    return observed_statistic(arr, "exp-edit", g)


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
    arr, tok, g = _check_inputs(costs, token_index, method, gamma)
    m, n = arr.shape
    total = num_resamples_for(resolution)
    h = _check_early_stop(early_stop)
    threads = _resolve_threads(num_threads)
    observed = observed_statistic(arr, method, g)
    if cached_null:
        table = _cached_table(method, m, n, g, total)
        hits = int(np.searchsorted(table, np.float32(observed), side="right"))
        seen, stopped, approximate = total, False, bool(np.unique(tok).size < m)
    else:
        seen, hits, stopped = count_null_hits(
            observed, tok, n, method, g, total, rng=rng, early_stop=h, num_threads=threads
        )
        approximate = False
    p_value = hits / seen if stopped else (hits + 1) / (total + 1)
    return PermutationResult(
        statistic=observed,
        p_value=float(p_value),
        num_resamples=int(seen),
        min_p_value=1.0 / (total + 1),
        approximate=approximate,
        stopped_early=stopped and seen < total,
        method=method,
        gamma=g,
    )


def _check_inputs(
    costs: np.ndarray, token_index: np.ndarray, method: str, gamma: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Checked ``(costs, token_index, gamma)``; ``gamma`` is 0 for ``exp``."""
    _check_method(method)
    arr = _check_costs(costs)
    tok = _check_token_index(token_index, arr.shape[0])
    return arr, tok, _check_gamma(gamma) if method == "exp-edit" else 0.0


def _check_early_stop(early_stop: int | None) -> int | None:
    if early_stop is not None and int(early_stop) < 1:
        raise ConfigError(
            f"`early_stop` (={early_stop!r}) must be an int >= 1 (Besag-Clifford h, "
            "typically 10-20) or None to run all resamples"
        )
    return None if early_stop is None else int(early_stop)
