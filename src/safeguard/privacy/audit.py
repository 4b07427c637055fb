"""One-run privacy audit of Steinke, Nasr & Jagielski (2023) — the statistics (numpy/scipy only).

"Privacy Auditing with One (1) Training Run" (NeurIPS 2023). m canaries are each
included in the training data independently with probability ½. After one
training run the auditor scores every canary, guesses "in" for the ``k+``
highest scores and "out" for the ``k−`` lowest (abstaining on the rest; the
number of guesses r = k+ + k− is fixed before looking at the scores), and
counts the correct guesses v. If training is (ε, δ)-DP, v is stochastically
dominated by Binomial(r, e^ε/(1 + e^ε)) up to a δ term (their Thm. 3.1 /
Prop. 5.2):

    P[V ≥ v] ≤ P[Bin(r, p_ε) ≥ v] + 2 m δ · max_{1≤i≤v} P[v − i ≤ Bin(r, p_ε) < v] / i.

The empirical lower bound is the largest ε whose p-value is below 1 − confidence:
with that confidence, training is *not* (ε, δ)-DP for any smaller ε. A lower bound
above the accountant's ε means the implementation leaks more than claimed. With
r guesses the bound cannot exceed about ln(r) even for a model that memorises
every canary, so audits are run where the claimed ε is small (1–2).

>>> round(epsilon_lower_bound(num_guesses=100, num_correct=100, confidence=0.95), 2)
3.49
>>> epsilon_lower_bound(num_guesses=100, num_correct=50, confidence=0.95)
0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from safeguard.errors import ConfigError

__all__ = ["AuditResult", "audit_p_value", "epsilon_lower_bound", "guesses_from_scores"]


def audit_p_value(
    *,
    num_guesses: int,
    num_correct: int,
    epsilon: float,
    delta: float = 0.0,
    num_canaries: int | None = None,
) -> float:
    """P[≥ ``num_correct`` correct of ``num_guesses``] if training were (ε, δ)-DP.

    Args:
        num_guesses: r, guesses made (abstentions excluded).
        num_correct: v, correct guesses.
        epsilon: ε of the null hypothesis.
        delta: δ of the null hypothesis.
        num_canaries: m (needed when δ > 0).

    >>> round(audit_p_value(num_guesses=10, num_correct=10, epsilon=0.0), 6)  # (1/2)^10
    0.000977
    """
    r, v = int(num_guesses), int(num_correct)
    if not 0 <= v <= r:
        raise ConfigError(f"`num_correct` (={v}) must be in [0, num_guesses={r}]")
    if v == 0:
        return 1.0
    p = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(stats.binom.sf(v - 1, r, p))
    if delta > 0:
        m = num_canaries if num_canaries is not None else r
        i = np.arange(1, v + 1)
        below = stats.binom.cdf(v - 1, r, p) - stats.binom.cdf(v - 1 - i, r, p)
        tail += 2 * m * delta * float(np.max(below / i))
    return min(tail, 1.0)


def epsilon_lower_bound(
    *,
    num_guesses: int,
    num_correct: int,
    confidence: float = 0.95,
    delta: float = 0.0,
    num_canaries: int | None = None,
) -> float:
    """Largest ε that the observed guesses rule out at ``confidence`` (0 if none).

    Args:
        num_guesses: r, guesses made (fixed in advance).
        num_correct: v, correct guesses.
        confidence: 1 − the test's false-alarm probability, e.g. 0.95.
        delta: δ of the claim being tested.
        num_canaries: m, canaries in the run (for the δ term).
    """
    if not 0 < confidence < 1:
        raise ConfigError(
            f"`confidence` (={confidence}) must be in (0, 1); typical values are 0.95–0.99"
        )
    alpha = 1.0 - confidence

    def excess(eps: float) -> float:
        return (
            audit_p_value(
                num_guesses=num_guesses,
                num_correct=num_correct,
                epsilon=eps,
                delta=delta,
                num_canaries=num_canaries,
            )
            - alpha
        )

    if excess(0.0) >= 0:
        return 0.0
    hi = 1.0
    while excess(hi) < 0:
        hi *= 2
        if hi > 100:
            return math.inf
    return float(optimize.brentq(excess, 0.0, hi, xtol=1e-6))


def guesses_from_scores(scores: np.ndarray, num_guesses: int) -> np.ndarray:
    """Guess +1 ("in") for the top half of ``num_guesses`` scores, −1 for the bottom half, else 0.

    Args:
        scores: ``(m,)`` membership scores, higher meaning "more likely included".
        num_guesses: r, fixed in advance; ``r // 2`` positive guesses and the rest negative.

    >>> guesses_from_scores(np.array([0.1, 0.9, 0.5, 0.3]), 2).tolist()
    [-1, 1, 0, 0]
    """
    scores = np.asarray(scores, dtype=float)
    m = scores.shape[0]
    if not 0 < num_guesses <= m:
        raise ConfigError(
            f"`num_guesses` (={num_guesses}) must be in [1, {m}] (the number of canaries)"
        )
    k_pos = num_guesses // 2
    k_neg = num_guesses - k_pos
    order = np.argsort(scores, kind="stable")
    out = np.zeros(m, dtype=int)
    out[order[:k_neg]] = -1
    if k_pos:
        out[order[m - k_pos :]] = 1
    return out


@dataclass(frozen=True, kw_only=True)
class AuditResult:
    """Outcome of a one-run audit.

    Attributes:
        epsilon_lower_bound: Empirical lower bound on ε at ``confidence``.
        confidence: Confidence of the bound.
        claimed_epsilon: The accountant's ε for the audited run (at ``delta``).
        delta: δ.
        num_canaries: m.
        num_guesses: r (fixed in advance).
        num_correct: v.
        passed: ``epsilon_lower_bound ≤ claimed_epsilon`` (the claim is not contradicted).
        details: Run parameters (σ, q, steps, ...).
    """

    epsilon_lower_bound: float
    confidence: float
    claimed_epsilon: float
    delta: float
    num_canaries: int
    num_guesses: int
    num_correct: int
    passed: bool
    details: dict[str, Any]

    @classmethod
    def from_guesses(
        cls,
        *,
        guesses: np.ndarray,
        included: np.ndarray,
        claimed_epsilon: float,
        delta: float,
        confidence: float = 0.95,
        details: dict[str, Any] | None = None,
    ) -> AuditResult:
        """Score guesses (+1/−1/0) against the true inclusion mask and bound ε."""
        guesses = np.asarray(guesses)
        included = np.asarray(included, dtype=bool)
        made = guesses != 0
        correct = int(np.sum((guesses == 1) & included) + np.sum((guesses == -1) & ~included))
        r = int(made.sum())
        m = int(included.shape[0])
        lb = epsilon_lower_bound(
            num_guesses=r, num_correct=correct, confidence=confidence, delta=delta, num_canaries=m
        )
        return cls(
            epsilon_lower_bound=lb,
            confidence=confidence,
            claimed_epsilon=claimed_epsilon,
            delta=delta,
            num_canaries=m,
            num_guesses=r,
            num_correct=correct,
            passed=lb <= claimed_epsilon,
            details=dict(details or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "confidence": self.confidence,
            "claimed_epsilon": self.claimed_epsilon,
            "delta": self.delta,
            "num_canaries": self.num_canaries,
            "num_guesses": self.num_guesses,
            "num_correct": self.num_correct,
            "passed": self.passed,
            "details": self.details,
        }
