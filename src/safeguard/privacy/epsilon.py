"""ε of a ``(σ, q, steps)`` history under the run's accountant, and the steps a budget allows.

``rdp`` and ``gdp`` are computed by :mod:`safeguard.privacy.accounting` (numpy); ``prv``
uses Opacus' PRV accountant, imported lazily, so importing this module loads no torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from safeguard.errors import ConfigError, missing_dependency
from safeguard.privacy import accounting

__all__ = ["compute_epsilon", "max_steps"]

History = Sequence[tuple[float, float, int]]


def _opacus_epsilon(accountant: str, history: History, delta: float) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from opacus.accountants import create_accountant

            acc = create_accountant(mechanism=accountant)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_dependency("opacus", "dp") from exc
    acc.history = [tuple(h) for h in history]
    import numpy as np

    # The PRV accountant takes log(0) on the empty tails of its grid: harmless, and not the
    # user's concern (it printed a dozen RuntimeWarnings per training run).
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(acc.get_epsilon(delta=delta))


def compute_epsilon(accountant: str, history: History, delta: float) -> float:
    """ε at ``delta`` of a ``(σ, q, steps)`` history under ``accountant``.

    ``rdp`` and ``gdp`` are computed by :mod:`safeguard.privacy.accounting` (equal to
    Opacus' on constant histories; GDP also composes changing σ and q); ``prv`` uses
    Opacus' PRV accountant.
    """
    history = accounting.compress_history(history)
    if not history:
        return 0.0
    if accountant == "rdp":
        return accounting.rdp_epsilon(history, delta)
    if accountant == "gdp":
        return accounting.gdp_epsilon(history, delta)
    if accountant == "prv":
        if any(sigma == 0 for sigma, _, _ in history):
            return math.inf
        return _opacus_epsilon("prv", history, delta)
    raise ConfigError(f"`accountant` (={accountant!r}) must be one of prv, rdp, gdp")


def max_steps(
    accountant: str,
    prior: History,
    delta: float,
    *,
    noise_multiplier: float,
    sample_rate: float,
    max_epsilon: float,
    hint: int | None = None,
) -> int:
    """The most further steps at (σ, q) after ``prior`` that keep ε ≤ ``max_epsilon``.

    A doubling search, then bisection; ``hint`` (a guess, e.g. the planned number of steps)
    speeds it up. Returns 0 when even one more step would exceed the budget.

    >>> max_steps("rdp", [], 1e-5, noise_multiplier=1.0, sample_rate=0.01, max_epsilon=1.45)
    298
    """

    def fits(k: int) -> bool:
        history = [*prior, (noise_multiplier, sample_rate, k)]
        return compute_epsilon(accountant, history, delta) <= max_epsilon

    if hint is not None and hint >= 1 and fits(hint):
        lo, hi = hint, hint * 2
    elif fits(1):
        lo, hi = 1, 2
    else:
        return 0
    while fits(hi):
        lo, hi = hi, hi * 2
        if hi > 10**9:
            return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo
