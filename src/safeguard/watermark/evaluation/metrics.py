"""Detection metrics from calibrated p-values (pure numpy/scipy).

Every detector in a study returns a p-value per text, so a decision at level ``α`` is
``p <= α`` and its false-positive rate is ``α`` by construction. This module turns the
p-values of a study into the numbers a report shows:

* :func:`tpr_at_fpr` — true-positive rate at chosen levels, with exact (Clopper–Pearson)
  and bootstrap intervals;
* :func:`fpr_check` — the observed false-positive share on unwatermarked text against
  the level it should not exceed;
* :func:`roc` — the ROC curve and its area from p-values used as scores;
* :func:`tokens_to_detect`, :func:`detection_curve`, :func:`median_with_ci` — how many
  tokens a text needs before it is detected, with texts never detected kept as ``inf``;
* :func:`bootstrap_ci` — a percentile bootstrap interval of any statistic.

>>> est = tpr_at_fpr([1e-5, 2e-3, 0.5, 1e-4], levels=(1e-2,), n_boot=200)[0]
>>> (est.k, est.n, est.rate)
(3, 4, 0.75)
>>> fpr, tpr, auc = roc([0.01, 0.02], [0.5, 0.9])
>>> auc
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "FPRCheck",
    "MedianEstimate",
    "RateEstimate",
    "bootstrap_ci",
    "clopper_pearson",
    "detection_curve",
    "fpr_check",
    "median_with_ci",
    "per_key_spread",
    "roc",
    "tokens_to_detect",
    "tpr_at_fpr",
]

DEFAULT_LEVELS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)


# --------------------------------------------------------------------------- #
# validation helpers


def _pvalues(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty; pass at least one p-value")
    if np.isnan(arr).any() or arr.min() < 0 or arr.max() > 1:
        raise ValueError(
            f"`{name}` must hold p-values in [0, 1]; got values from {np.nanmin(arr)} to "
            f"{np.nanmax(arr)}{' and NaN' if np.isnan(arr).any() else ''}"
        )
    return arr


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` (={confidence!r}) must be in (0, 1); typical value 0.95")
    return float(confidence)


def _check_levels(levels: Sequence[float]) -> list[float]:
    out = [float(x) for x in levels]
    if not out or any(not 0 < x < 1 for x in out):
        raise ValueError(f"`levels` (={levels!r}) must be false-positive rates in (0, 1)")
    return out


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided Clopper–Pearson interval of a binomial share ``k / n``.

    The bounds are the ``(1 - c)/2`` and ``(1 + c)/2`` quantiles of
    ``Beta(k, n - k + 1)`` and ``Beta(k + 1, n - k)``, with 0 and 1 at the edges.

    >>> lo, hi = clopper_pearson(0, 10)
    >>> (lo, round(hi, 4))
    (0.0, 0.3085)
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n and n > 0; got k={k}, n={n}")
    tail = (1.0 - _check_confidence(confidence)) / 2.0
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


# --------------------------------------------------------------------------- #
# bootstrap


def bootstrap_ci(
    values: Any,
    statistic: Callable[..., Any] = np.mean,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(values)``.

    Texts are resampled with replacement ``n_boot`` times. ``statistic`` is called once
    on a ``(n_boot, n)`` array with ``axis=1`` when it accepts that (numpy reductions
    do), otherwise once per resample. Infinite values are allowed (e.g. censored
    tokens-to-detect): the bounds are then taken as order statistics of the resampled
    statistics (no interpolation), so an ``inf`` bound means that share of resamples
    had an infinite statistic.

    Args:
        values: The observations, 1-D.
        statistic: A reduction of a 1-D array to a number.
        n_boot: Number of resamples.
        seed: Seed of the resampling.
        confidence: Coverage of the interval.

    Returns:
        ``(low, high)``.
    """
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError("`values` is empty; the bootstrap needs at least one observation")
    if n_boot < 1:
        raise ValueError(f"`n_boot` (={n_boot}) must be >= 1; typical values are 1000-10000")
    tail = (1.0 - _check_confidence(confidence)) / 2.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_boot, arr.size))
    samples = arr[idx]
    try:
        boot = np.asarray(statistic(samples, axis=1), dtype=float)
        if boot.shape != (n_boot,):
            raise TypeError
    except TypeError:
        boot = np.array([float(statistic(row)) for row in samples])
    if np.all(np.isfinite(boot)):
        low, high = np.quantile(boot, [tail, 1.0 - tail])
    else:
        low = np.quantile(boot, tail, method="lower")
        high = np.quantile(boot, 1.0 - tail, method="higher")
    return float(low), float(high)


# --------------------------------------------------------------------------- #
# rates at a level


@dataclass(frozen=True, kw_only=True)
class RateEstimate:
    """The share of texts with ``p <= level``, with two intervals.

    Attributes:
        level: The decision level ``α`` (the false-positive rate it buys).
        rate: ``k / n``.
        k: Texts with ``p <= level``.
        n: Texts.
        ci_low, ci_high: Exact two-sided Clopper–Pearson interval.
        boot_low, boot_high: Percentile bootstrap interval over texts.
    """

    level: float
    rate: float
    k: int
    n: int
    ci_low: float
    ci_high: float
    boot_low: float
    boot_high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tpr_at_fpr(
    p_watermarked: Any,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[RateEstimate]:
    """True-positive rate at each false-positive level.

    The p-values are calibrated, so flagging ``p <= α`` has false-positive rate ``α``
    without any threshold fitted on null text; the TPR at ``α`` is the share of
    watermarked texts with ``p <= α``.

    The bootstrap resamples texts with replacement; for a share this is the same as
    drawing the resampled count from ``Binomial(n, k / n)``, which is what is done.
    When ``k`` is 0 or ``n`` the bootstrap interval collapses to a point; the
    Clopper–Pearson interval does not and is the one to quote.

    Args:
        p_watermarked: One p-value per watermarked text.
        levels: Decision levels ``α``.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.
        confidence: Coverage of both intervals.
    """
    p = _pvalues(p_watermarked, "p_watermarked")
    confidence = _check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0
    rng = np.random.default_rng(seed)
    out = []
    for level in _check_levels(levels):
        k = int(np.count_nonzero(p <= level))
        n = p.size
        low, high = clopper_pearson(k, n, confidence)
        boot = rng.binomial(n, k / n, size=n_boot) / n
        b_low, b_high = np.quantile(boot, [tail, 1.0 - tail])
        out.append(
            RateEstimate(
                level=level,
                rate=k / n,
                k=k,
                n=n,
                ci_low=low,
                ci_high=high,
                boot_low=float(b_low),
                boot_high=float(b_high),
            )
        )
    return out


@dataclass(frozen=True, kw_only=True)
class FPRCheck:
    """The observed false-positive share at one level and whether it is consistent with it.

    Attributes:
        level: The nominal false-positive rate ``α``.
        false_positives: Null texts with ``p <= α``.
        n: Null texts.
        rate: ``false_positives / n``.
        ci_low, ci_high: Two-sided Clopper–Pearson interval of the rate.
        consistent: ``ci_low <= α``: the data do not show a rate above ``α``.
        within: ``ci_low <= α <= ci_high``: the data do not show a rate different from
            ``α`` either way (a conservative detector can fail this and still be valid).
        max_consistent: The largest count of false positives out of ``n`` that would
            still be consistent; with few texts this is the only honest statement.
    """

    level: float
    false_positives: int
    n: int
    rate: float
    ci_low: float
    ci_high: float
    consistent: bool
    within: bool
    max_consistent: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _max_consistent(n: int, level: float, confidence: float) -> int:
    # ci_low(k) <= level  <=>  P(Binomial(n, level) >= k) >= (1 - confidence) / 2
    tail = (1.0 - confidence) / 2.0
    k = int(stats.binom.isf(tail, n, level))
    while k < n and stats.binom.sf(k, n, level) >= tail:
        k += 1
    while k > 0 and stats.binom.sf(k - 1, n, level) < tail:
        k -= 1
    return k


def fpr_check(
    p_null: Any,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    confidence: float = 0.95,
) -> list[FPRCheck]:
    """Check the false-positive rate of a detector on unwatermarked (null) text.

    For each level ``α`` the false positives are the null texts with ``p <= α``. The
    rule is one-sided because valid p-values may be conservative: the check passes
    (``consistent``) when the two-sided Clopper–Pearson interval at ``confidence``
    reaches down to ``α`` (``ci_low <= α``), i.e. a one-sided exact binomial test at
    level ``(1 - confidence) / 2`` does not reject "rate <= α". ``within`` reports the
    two-sided statement as well.

    With ``n`` null texts the smallest non-zero share is ``1 / n``: when ``n·α`` is
    well below one (say ``α = 1e-4`` with a few hundred texts) zero false positives
    is the expected outcome and the check can only say "0 or few of n" — the
    ``max_consistent`` field gives the count the level allows (often 0 or 1) and
    ``ci_high`` shows how large a rate the data still cannot exclude (about
    ``3.7 / n`` for 0 of ``n`` at 95%). Such a check bounds gross miscalibration
    only; it does not confirm ``α`` itself.

    Args:
        p_null: One p-value per unwatermarked text.
        levels: Nominal false-positive rates.
        confidence: Coverage of the interval.
    """
    p = _pvalues(p_null, "p_null")
    confidence = _check_confidence(confidence)
    out = []
    for level in _check_levels(levels):
        k = int(np.count_nonzero(p <= level))
        low, high = clopper_pearson(k, p.size, confidence)
        out.append(
            FPRCheck(
                level=level,
                false_positives=k,
                n=p.size,
                rate=k / p.size,
                ci_low=low,
                ci_high=high,
                consistent=low <= level,
                within=low <= level <= high,
                max_consistent=_max_consistent(p.size, level, confidence),
            )
        )
    return out


def per_key_spread(
    p_by_key: Any, levels: Sequence[float] = DEFAULT_LEVELS
) -> list[dict[str, float | int]]:
    """How the false-positive rate varies from one fixed key to another.

    A deployment runs one key for months, so the rate that matters is the rate *under its
    key*, not the rate averaged over keys. With every key tested on the same ``n`` human
    texts, a calibrated detector gives each key a Binomial(n, α) count of false positives;
    texts whose scores are correlated under a key (shared n-grams, repeated text) spread
    the per-key counts wider. The dispersion statistic ``D = Σ_k (c_k − n α)² / (n α (1 − α))``
    is χ²(K) under that binomial model; ``dispersion_p`` is its upper tail (small: the
    per-key rates vary more than a calibrated detector's would).

    Args:
        p_by_key: ``(K, n)`` p-values: row ``k`` is every human text under key ``k``.
        levels: Nominal rates.

    Returns:
        One dict per level: ``level``, ``keys``, ``texts``, ``mean_rate``, ``sd_rate``,
        ``binomial_sd`` (the sd a calibrated detector would show), ``worst_rate``,
        ``worst_ratio`` (worst rate / level), ``dispersion_p``.

    >>> rng = np.random.default_rng(0)
    >>> row = per_key_spread(rng.uniform(size=(50, 1000)), [0.05])[0]
    >>> round(row["mean_rate"], 2), row["dispersion_p"] > 0.01
    (0.05, True)
    """
    p = np.asarray(p_by_key, dtype=float)
    if p.ndim != 2 or p.shape[0] < 2 or p.shape[1] < 1:
        raise ValueError(f"`p_by_key` must be (keys >= 2, texts >= 1); got shape {p.shape}")
    keys, n = p.shape
    out = []
    for level in _check_levels(levels):
        rates = np.count_nonzero(p <= level, axis=1) / n
        var = level * (1 - level) / n
        d = float(np.sum((rates - level) ** 2) / var)
        out.append(
            {
                "level": level,
                "keys": keys,
                "texts": n,
                "mean_rate": float(rates.mean()),
                "sd_rate": float(rates.std(ddof=1)),
                "binomial_sd": float(np.sqrt(var)),
                "worst_rate": float(rates.max()),
                "worst_ratio": float(rates.max() / level),
                "dispersion_p": float(stats.chi2.sf(d, keys)),
            }
        )
    return out


# --------------------------------------------------------------------------- #
# ROC


def roc(p_watermarked: Any, p_null: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve and its area, with p-values as scores (lower p = more watermarked).

    The threshold runs over every distinct p-value; a text is flagged when
    ``p <= threshold``, so tied texts switch together and the curve takes a diagonal
    step across ties. The area (trapezoids) equals the Mann–Whitney probability
    ``P(p_w < p_0) + ½ P(p_w = p_0)`` for one watermarked and one null text.

    Returns:
        ``(fpr, tpr, auc)``; ``fpr`` and ``tpr`` start at 0 and end at 1.
    """
    pw = _pvalues(p_watermarked, "p_watermarked")
    p0 = _pvalues(p_null, "p_null")
    thresholds = np.unique(np.concatenate([pw, p0]))
    tpr = np.searchsorted(np.sort(pw), thresholds, side="right") / pw.size
    fpr = np.searchsorted(np.sort(p0), thresholds, side="right") / p0.size
    fpr = np.concatenate([[0.0], fpr])
    tpr = np.concatenate([[0.0], tpr])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return fpr, tpr, auc


# --------------------------------------------------------------------------- #
# tokens to detect


def tokens_to_detect(
    prefix_pvalues: Any, lengths: Sequence[int], alpha: float = 0.01
) -> np.ndarray:
    """First prefix length at which each text reaches ``p <= alpha``.

    Args:
        prefix_pvalues: Shape ``(texts, len(lengths))``: the p-value of each text's
            first ``lengths[j]`` tokens.
        lengths: Increasing prefix lengths.
        alpha: Decision level.

    Returns:
        Shape ``(texts,)``: the first length with ``p <= alpha`` scanning in order, or
        ``inf`` for a text never detected within ``lengths[-1]`` tokens (right-censored).
    """
    p = np.asarray(prefix_pvalues, dtype=float)
    if p.ndim == 1:
        p = p[None]
    lens = np.asarray(lengths, dtype=float)
    if p.ndim != 2 or p.shape[1] != lens.size:
        raise ValueError(
            f"`prefix_pvalues` must have shape (texts, {lens.size}) to match `lengths`; got {p.shape}"
        )
    if lens.size and np.any(np.diff(lens) <= 0):
        raise ValueError(f"`lengths` must increase strictly; got {list(lengths)}")
    hit = p <= alpha
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), lens[first], np.inf)


def detection_curve(ttd: Any, lengths: Sequence[int]) -> np.ndarray:
    """Share of texts detected within each length (``ttd <= length``); shape ``(len(lengths),)``."""
    t = np.asarray(ttd, dtype=float).ravel()
    if t.size == 0:
        raise ValueError("`ttd` is empty")
    lens = np.asarray(lengths, dtype=float)
    return (t[None, :] <= lens[:, None]).mean(axis=1)


@dataclass(frozen=True, kw_only=True)
class MedianEstimate:
    """Median of possibly censored values with a bootstrap interval.

    Attributes:
        median: The sample median; ``inf`` when half or more of the values are
            censored (see :func:`median_with_ci`).
        ci_low, ci_high: Percentile bootstrap interval (order statistics; may be ``inf``).
        n: Values.
        censored: Values that are ``inf``.
    """

    median: float
    ci_low: float
    ci_high: float
    n: int
    censored: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median(arr: np.ndarray, axis: int | None = None) -> Any:
    # np.median averages the two middle values; inf + finite stays inf and no nan arises
    # because values are never -inf.
    return np.median(arr, axis=axis)


def median_with_ci(
    values: Any, *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> MedianEstimate:
    """Median tokens-to-detect with a bootstrap interval, keeping censored texts.

    ``inf`` marks a text never detected within the longest prefix: its true value is
    somewhere above that length, so it is ranked above every finite value rather than
    dropped (dropping would flatter a weak detector). The median is the usual sample
    median (mean of the two middle values for even ``n``); it is finite only when more
    than half of the texts were detected, and is ``inf`` otherwise — meaning "more than
    the longest prefix", which is all the data can say. Interval bounds are order
    statistics of the bootstrap medians and are ``inf`` in the same sense.
    """
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError("`values` is empty")
    if np.isnan(arr).any() or (arr == -np.inf).any():
        raise ValueError("`values` must be numbers or +inf (censored); got NaN or -inf")
    low, high = bootstrap_ci(arr, _median, n_boot=n_boot, seed=seed, confidence=confidence)
    return MedianEstimate(
        median=float(_median(arr)),
        ci_low=low,
        ci_high=high,
        n=int(arr.size),
        censored=int(np.count_nonzero(np.isinf(arr))),
    )
