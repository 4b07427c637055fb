"""Detection statistics and p-values (pure numpy/scipy).

>>> round(gamma_pvalue(10.0, 10), 4)   # score equal to its null mean
0.4579
>>> holm([0.01, 0.04, 0.03])
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special

__all__ = ["gamma_pvalue", "holm", "min_tokens_for_fpr"]


def gamma_pvalue(score: float, num_scored: int) -> float:
    """Exact p-value of a Gumbel-max score: ``P(Gamma(N, 1) >= score)``.

    Under the null each scored token contributes ``-log(1 - u)`` with ``u`` uniform, an
    Exp(1) variable, so the sum of ``N`` of them is Gamma(N, 1) and the upper tail is
    the regularised incomplete gamma ``Q(N, S) = e^{-S} sum_{i<N} S^i / i!``.

    Args:
        score: The observed sum ``S`` (>= 0).
        num_scored: The number ``N`` of independent terms; ``N = 0`` gives p = 1.
    """
    if num_scored <= 0:
        return 1.0
    return float(special.gammaincc(num_scored, max(score, 0.0)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error control over several keys).

    Adjusted ``p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` over the ascending order.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.maximum.accumulate(adjusted)
    out = np.empty(m)
    out[order] = adjusted
    return [float(x) for x in out]


def min_tokens_for_fpr(fpr: float, excess_per_token: float = 0.5, limit: int = 100_000) -> int:
    """Fewest scored tokens at which a typical watermarked text reaches ``p <= fpr``.

    A watermarked token's expected Gumbel score exceeds the null mean of 1 by an amount
    that grows with the model's entropy; ``0.5`` is typical at about one nat per token.
    This is the length below which detection at ``fpr`` is unlikely, used to warn.

    >>> min_tokens_for_fpr(1e-3)
    50
    """
    lo, hi = 1, 1
    while gamma_pvalue((1 + excess_per_token) * hi, hi) > fpr:
        hi *= 2
        if hi > limit:
            return limit
    lo = hi // 2
    while lo < hi:
        mid = (lo + hi) // 2
        if gamma_pvalue((1 + excess_per_token) * mid, mid) <= fpr:
            hi = mid
        else:
            lo = mid + 1
    return max(lo, 1)
