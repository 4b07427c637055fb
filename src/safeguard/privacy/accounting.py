"""Privacy accounting arithmetic for the Poisson-subsampled Gaussian mechanism (numpy/scipy only).

This module is the independent cross-check of the accountant that a training run
uses (Opacus' PRV accountant by default): an auditor can recompute every figure
of a budget ledger from its recorded ``(noise_multiplier, sample_rate, steps)``
history with nothing but numpy and scipy.

* Rényi DP of the sampled Gaussian mechanism, Mironov, Talwar & Zhang (2019),
  "Rényi Differential Privacy of the Sampled Gaussian Mechanism", Sec. 3.3:
  the integer-order binomial expansion (their Eq. for A_α) and the
  fractional-order series with erfc terms.
* RDP → (ε, δ) with the conversion of Balle et al. (2020), "Hypothesis Testing
  Interpretations and Renyi Differential Privacy", Thm. 21:
  ε = RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1).
* Gaussian DP (Dong, Roth & Su 2022, "Gaussian Differential Privacy", Cor. 5.4,
  the CLT for Poisson subsampling): μ = q·sqrt(T·(exp(1/σ²) − 1)), and
  δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) (their Cor. 2.13).

A history is a sequence of ``(noise_multiplier, sample_rate, steps)`` triples,
the same shape Opacus accountants keep.

>>> round(rdp_epsilon([(1.0, 0.01, 300)], delta=1e-5), 2)
1.45
>>> round(gdp_epsilon([(1.0, 0.01, 300)], delta=1e-5), 2)
0.83
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "DEFAULT_RDP_ORDERS",
    "History",
    "compress_history",
    "gdp_delta",
    "gdp_epsilon",
    "gdp_mu",
    "rdp_epsilon",
    "rdp_sampled_gaussian",
    "rdp_to_epsilon",
]

#: ``(noise_multiplier, sample_rate, steps)`` triples.
History = Sequence[tuple[float, float, int]]

#: The Rényi orders searched, the same grid Opacus uses so the two agree.
DEFAULT_RDP_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
)


def compress_history(history: Iterable[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Merge consecutive entries with the same (σ, q) into one.

    >>> compress_history([(1.0, 0.1, 1), (1.0, 0.1, 2), (2.0, 0.1, 1)])
    [(1.0, 0.1, 3), (2.0, 0.1, 1)]
    """
    out: list[tuple[float, float, int]] = []
    for sigma, q, steps in history:
        if steps <= 0:
            continue
        if out and out[-1][0] == sigma and out[-1][1] == q:
            out[-1] = (sigma, q, out[-1][2] + int(steps))
        else:
            out.append((float(sigma), float(q), int(steps)))
    return out


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _log_sub(a: float, b: float) -> float:
    """log(exp(a) − exp(b)) for a ≥ b."""
    if b == -math.inf:
        return a
    if a == b:
        return -math.inf
    if a < b:
        raise ValueError("log-subtraction would be negative")
    return a + math.log1p(-math.exp(b - a))


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    # A_α = Σ_k C(α,k) (1−q)^(α−k) q^k exp((k² − k) / (2σ²)), summed in log space.
    total = -math.inf
    for k in range(alpha + 1):
        term = (
            math.log(special.binom(alpha, k))
            + k * math.log(q)
            + (alpha - k) * math.log1p(-q)
            + (k * k - k) / (2 * sigma**2)
        )
        total = _log_add(total, term)
    return total


def _log_erfc(x: float) -> float:
    return float(special.log_ndtr(-x * math.sqrt(2.0))) + math.log(2.0)


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    # Two alternating series (Mironov et al. 2019, Sec. 3.3) split at z0, the point where
    # the two Gaussians' densities cross under the mixture.
    pos0 = pos1 = neg0 = neg1 = -math.inf
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    log_coef = 0.0  # log |C(α, i)|
    sign = 1.0
    i = 0
    while True:
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log1p(-q)
        log_t1 = log_coef + j * math.log(q) + i * math.log1p(-q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
        if sign > 0:
            pos0, pos1 = _log_add(pos0, log_s0), _log_add(pos1, log_s1)
        else:
            neg0, neg1 = _log_add(neg0, log_s0), _log_add(neg1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30 or i > 10_000:
            break
        factor = alpha - i + 1
        if factor == 0:
            break
        sign *= 1.0 if factor > 0 else -1.0
        log_coef += math.log(abs(factor)) - math.log(i)
    return _log_add(_log_sub(pos0, neg0), _log_sub(pos1, neg1))


def rdp_sampled_gaussian(
    q: float, sigma: float, steps: int, orders: Sequence[float] = DEFAULT_RDP_ORDERS
) -> np.ndarray:
    """Rényi DP of ``steps`` compositions of the Poisson-subsampled Gaussian mechanism.

    Args:
        q: Sampling rate in [0, 1].
        sigma: Noise multiplier (noise std / clipping bound), ≥ 0.
        steps: Number of compositions.
        orders: Rényi orders α > 1.

    Returns:
        RDP values, shape ``(len(orders),)``.

    >>> float(rdp_sampled_gaussian(1.0, 2.0, 1, orders=[2.0])[0])  # α / (2σ²) without subsampling
    0.25
    """
    orders_arr = np.asarray(orders, dtype=float)
    if q == 0:
        return np.zeros_like(orders_arr)
    if sigma == 0:
        return np.full_like(orders_arr, np.inf)
    if q == 1.0:
        return steps * orders_arr / (2 * sigma**2)
    out = np.empty_like(orders_arr)
    for n, alpha in enumerate(orders_arr):
        if float(alpha).is_integer():
            log_a = _log_a_int(q, sigma, int(alpha))
        else:
            log_a = _log_a_frac(q, sigma, float(alpha))
        out[n] = log_a / (alpha - 1)
    return out * steps


def rdp_to_epsilon(rdp: np.ndarray, orders: Sequence[float], delta: float) -> tuple[float, float]:
    """Convert RDP curves to (ε, best order) at ``delta`` (Balle et al. 2020, Thm. 21).

    >>> eps, order = rdp_to_epsilon(np.array([0.25 * a for a in (2.0, 3.0)]), [2.0, 3.0], 1e-5)
    >>> round(eps, 3), order
    (5.552, 3.0)
    """
    orders_arr = np.asarray(orders, dtype=float)
    rdp = np.asarray(rdp, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        eps = (
            rdp
            - (math.log(delta) + np.log(orders_arr)) / (orders_arr - 1)
            + np.log((orders_arr - 1) / orders_arr)
        )
    eps = np.where(np.isnan(eps), np.inf, eps)
    best = int(np.argmin(eps))
    return float(max(eps[best], 0.0)), float(orders_arr[best])


def rdp_epsilon(
    history: History, delta: float, orders: Sequence[float] = DEFAULT_RDP_ORDERS
) -> float:
    """ε at ``delta`` of a history by the RDP accountant (an upper bound).

    Args:
        history: ``(noise_multiplier, sample_rate, steps)`` triples.
        delta: Target δ in (0, 1).
        orders: Rényi orders.
    """
    total = np.zeros(len(orders))
    for sigma, q, steps in compress_history(history):
        total = total + rdp_sampled_gaussian(q, sigma, steps, orders)
    if not np.any(total):
        return 0.0
    return rdp_to_epsilon(total, orders, delta)[0]


def gdp_mu(history: History) -> float:
    """Gaussian-DP μ of a history by the Poisson-subsampling CLT (Dong et al. 2022, Cor. 5.4).

    μ composes as the root of the sum of squares. The CLT is an approximation that is
    accurate when q is small and the number of steps large; report it next to, not instead
    of, an upper-bounding accountant.

    >>> round(gdp_mu([(1.0, 0.01, 300)]), 4)
    0.227
    """
    total = 0.0
    for sigma, q, steps in compress_history(history):
        if sigma == 0:
            return math.inf
        total += q**2 * steps * math.expm1(1.0 / sigma**2)
    return math.sqrt(total)


def gdp_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of μ-GDP (Dong et al. 2022, Cor. 2.13).

    >>> round(gdp_delta(1.0, 1.0), 4)
    0.1269
    """
    if mu == 0:
        return 0.0
    return float(
        stats.norm.cdf(-epsilon / mu + mu / 2)
        - math.exp(epsilon) * stats.norm.cdf(-epsilon / mu - mu / 2)
    )


def gdp_epsilon(history: History, delta: float) -> float:
    """ε at ``delta`` of a history under the Gaussian-DP CLT approximation."""
    mu = gdp_mu(history)
    if mu == 0:
        return 0.0
    if math.isinf(mu):
        return math.inf
    if gdp_delta(mu, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(mu, hi) > delta:
        hi *= 2
        if hi > 1e6:
            return math.inf
    return float(optimize.brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, hi, xtol=1e-10))
