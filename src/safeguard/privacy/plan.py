"""`DPPlan`: the numbers of one DP-SGD run, decided once before training (no torch, no opacus).

From a :class:`~safeguard.privacy.config.DPConfig`, the ledger's earlier runs and the size
of the data, a plan fixes the privacy units N, the batch size and sampling rate q, δ (and
where it came from), the length of training, σ (calibrated on the run's accountant when a
target ε is given) and how many steps the hard budget allows.
:func:`~safeguard.privacy.make_private` builds one and wires Opacus to it.

>>> from safeguard.privacy import BudgetLedger, DPConfig
>>> plan = DPPlan.build(
...     DPConfig(noise_multiplier=1.0, target_delta=1e-5, epochs=2),
...     BudgetLedger(),
...     num_units=1000,
...     loader_batch_size=10,
... )
>>> plan.sample_rate, plan.planned_steps, plan.steps_allowed
(0.01, 200, None)
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from safeguard.errors import ConfigError
from safeguard.privacy.config import DPConfig, default_delta
from safeguard.privacy.epsilon import compute_epsilon, max_steps

if TYPE_CHECKING:
    from safeguard.privacy.ledger import BudgetLedger

__all__ = ["DPPlan", "calibrate_sigma"]

log = logging.getLogger(__name__)

#: Largest σ the calibration tries before it calls a target unreachable.
_MAX_SIGMA = 1e4


@dataclass(frozen=True, kw_only=True)
class DPPlan:
    """The numbers a DP-SGD run trains and accounts with.

    Attributes:
        num_units: N, the number of privacy units (examples, or users with ``group_by``).
        batch_size: Expected logical batch size q·N.
        sample_rate: q, the probability each unit is in a batch.
        delta: δ.
        delta_source: Where δ came from (configured, the 1/(10 N) default, or the ledger).
        steps_per_epoch: Steps in one expected pass over the data (1/q, rounded).
        planned_steps: Steps the calibration assumed (``None`` without a length).
        noise_multiplier: σ (calibrated when ``target_epsilon`` was given).
        max_epsilon: The hard budget, if any.
        steps_allowed: Further steps known to fit the hard budget (``None``: no hard
            budget); the planned steps when they fit, else the exact number that fits.
    """

    num_units: int
    batch_size: int
    sample_rate: float
    delta: float
    delta_source: str
    steps_per_epoch: int
    planned_steps: int | None
    noise_multiplier: float
    max_epsilon: float | None
    steps_allowed: int | None

    @property
    def exact(self) -> bool:
        """Whether :attr:`steps_allowed` is the exact search's answer (not just the plan)."""
        return self.steps_allowed is not None and self.steps_allowed != self.planned_steps

    @classmethod
    def build(
        cls,
        config: DPConfig,
        ledger: BudgetLedger,
        *,
        num_units: int,
        loader_batch_size: int | None,
        stacklevel: int = 2,
    ) -> DPPlan:
        """Plan a run of ``config`` over ``num_units`` units, after the runs in ``ledger``.

        Args:
            config: The run's configuration.
            ledger: The ledger the run appends to; its earlier runs count toward the budget
                and fix δ when none is configured.
            num_units: N.
            loader_batch_size: The data loader's batch size (used when ``config.batch_size``
                is unset).
            stacklevel: Where a weak-δ warning points (2: the caller of ``build``).

        Raises:
            ConfigError: No batch size, a batch larger than N, δ ≥ 1/N, or a target ε that
                cannot be reached.
        """
        batch_size = _batch_size(config, num_units, loader_batch_size)
        sample_rate = batch_size / num_units
        delta, delta_source = _delta(config, ledger, num_units)
        _warn_if_weak(delta, num_units, stacklevel=stacklevel + 1)
        steps_per_epoch = max(1, round(1.0 / sample_rate))
        planned = _planned_steps(config, steps_per_epoch)
        sigma = _noise_multiplier(config, ledger, delta, sample_rate, planned)
        return cls(
            num_units=num_units,
            batch_size=batch_size,
            sample_rate=sample_rate,
            delta=delta,
            delta_source=delta_source,
            steps_per_epoch=steps_per_epoch,
            planned_steps=planned,
            noise_multiplier=sigma,
            max_epsilon=config.max_epsilon,
            steps_allowed=_allowance(config, ledger, delta, sigma, sample_rate, planned),
        )


def _batch_size(config: DPConfig, num_units: int, loader_batch_size: int | None) -> int:
    batch_size = config.batch_size or loader_batch_size
    if batch_size is None:
        raise ConfigError(
            "set `batch_size` in DPConfig: the loader has no batch_size (custom batch sampler)"
        )
    if config.group_by and config.batch_size is None:
        batch_size = min(batch_size, num_units)
    if batch_size > num_units:
        raise ConfigError(
            f"`batch_size` (={batch_size}) is larger than the number of units ({num_units})"
        )
    return batch_size


def _delta(config: DPConfig, ledger: BudgetLedger, num_units: int) -> tuple[float, str]:
    """(δ, where it came from): configured, inherited from the ledger, or 1/(10 N)."""
    if config.target_delta is None:
        delta = default_delta(num_units)
        delta_source = f"default 1/(10 N) with N = {num_units} units, rounded down"
        log.info("δ not set: using %g (%s)", delta, delta_source)
    else:
        delta = config.target_delta
        delta_source = "configured"
        if delta >= 1.0 / num_units:
            raise ConfigError(
                f"`target_delta` (={delta:g}) must be < 1/N = {1.0 / num_units:.3g} (N = {num_units} units): a δ "
                f"that large allows releasing a unit outright. Use ≤ {default_delta(num_units):g} (1/(10 N))"
            )
    if len(ledger) and ledger.runs()[0]["delta"] != delta and config.target_delta is None:
        delta = float(ledger.runs()[0]["delta"])
        delta_source = "inherited from the ledger's first run"
    return delta, delta_source


def _warn_if_weak(delta: float, num_units: int, *, stacklevel: int) -> None:
    if not (delta > 1e-3 or num_units < 100):
        return
    warnings.warn(
        f"δ = {delta:g} with N = {num_units} units of privacy: "
        + (
            f"the guarantee may fail outright with probability up to δ (1 in {1 / delta:.0f}); "
            "δ ≤ 1e-5 is usual. "
            if delta > 1e-3
            else ""
        )
        + (
            f"With only {num_units} units, DP noise dominates what can be learned. "
            if num_units < 100
            else ""
        )
        + "Train on more data, or set `target_delta` lower",
        UserWarning,
        stacklevel=stacklevel,
    )


def _planned_steps(config: DPConfig, steps_per_epoch: int) -> int | None:
    if config.steps is not None:
        return config.steps
    if config.epochs is not None:
        return max(1, round(config.epochs * steps_per_epoch))
    return None


def _noise_multiplier(
    config: DPConfig,
    ledger: BudgetLedger,
    delta: float,
    sample_rate: float,
    planned: int | None,
) -> float:
    """σ: the configured one, or the smallest that reaches ``target_epsilon`` after ``planned`` steps."""
    if config.noise_multiplier is not None:
        return float(config.noise_multiplier)
    assert planned is not None and config.target_epsilon is not None
    sigma = calibrate_sigma(
        ledger=ledger,
        accountant=config.accountant,
        target_epsilon=config.target_epsilon,
        delta=delta,
        sample_rate=sample_rate,
        steps=planned,
    )
    log.info(
        "calibrated σ = %.4f for ε = %g over %d steps at q = %.4g",
        sigma,
        config.target_epsilon,
        planned,
        sample_rate,
    )
    return sigma


def _allowance(
    config: DPConfig,
    ledger: BudgetLedger,
    delta: float,
    sigma: float,
    sample_rate: float,
    planned: int | None,
) -> int | None:
    """Further steps known to fit the hard budget; extended by an exact search only if training goes on.

    The run's accountant and δ are the ones its ``run_start`` entry will record (a ledger's
    earlier runs share δ; :meth:`BudgetLedger.start_run` refuses another).
    """
    if config.max_epsilon is None:
        return None
    prior = ledger.history() if len(ledger) else []
    if planned is not None and (
        compute_epsilon(config.accountant, [*prior, (sigma, sample_rate, planned)], delta)
        <= config.max_epsilon
    ):
        return planned
    allowed = max_steps(
        config.accountant,
        prior,
        delta,
        noise_multiplier=sigma,
        sample_rate=sample_rate,
        max_epsilon=config.max_epsilon,
    )
    if planned is not None and allowed < planned:
        log.warning(
            "the budget allows %d more steps but %d are planned; training will stop at the budget",
            allowed,
            planned,
        )
    return allowed


# --------------------------------------------------------------------------- calibration
def calibrate_sigma(
    *,
    ledger: BudgetLedger,
    accountant: str,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
) -> float:
    """Smallest σ (to 1% of ε, from below) whose ε after ``steps`` more steps is ≤ the target.

    RDP (cheap, numpy) brackets the search: RDP's ε bounds PRV's from above, so the σ that
    RDP needs is enough for PRV; a few regula-falsi steps on the run's accountant finish it.

    Raises:
        ConfigError: The ledger's earlier runs already spent the target, or even σ = 10⁴
            does not reach it.
    """
    prior = ledger.history() if len(ledger) else []

    def eps_with(acc: str, sigma: float) -> float:
        return compute_epsilon(acc, [*prior, (sigma, sample_rate, steps)], delta)

    prior_eps = compute_epsilon(accountant, prior, delta) if prior else 0.0
    if prior_eps >= target_epsilon:
        raise ConfigError(
            f"`target_epsilon` (={target_epsilon:g}) cannot be reached: the ledger's earlier runs already "
            f"spent ε = {prior_eps:.3f} at δ = {delta:g}; the nearest achievable total is just above "
            f"{prior_eps:.3f} (raise the budget only if the data owner agrees, or use new data)"
        )

    def search(acc: str, hi: float) -> tuple[float, float]:
        e_hi = eps_with(acc, hi)
        while e_hi > target_epsilon:
            hi *= 2
            if hi > _MAX_SIGMA:
                best = eps_with(acc, _MAX_SIGMA)
                raise ConfigError(
                    f"`target_epsilon` (={target_epsilon:g}) cannot be reached with {steps} steps at q = "
                    f"{sample_rate:.4g}: even σ = {_MAX_SIGMA:g} gives ε = {best:.4g}; the nearest achievable "
                    f"is ε ≈ {best:.4g} — raise `target_epsilon`, or train fewer steps / smaller batches"
                )
            e_hi = eps_with(acc, hi)
        return hi, e_hi

    def refine(acc: str, hi: float, e_hi: float) -> float:
        lo = hi * 0.7
        e_lo = eps_with(acc, lo)
        while e_lo <= target_epsilon and lo > 1e-3:
            hi, e_hi, lo = lo, e_lo, lo * 0.7
            e_lo = eps_with(acc, lo)
        for _ in range(40):
            if target_epsilon - e_hi <= 0.01 * target_epsilon or hi - lo < 1e-4:
                break
            # Regula falsi on log ε, kept inside the bracket.
            a, b = math.log(e_lo), math.log(max(e_hi, 1e-12))
            t = (a - math.log(target_epsilon)) / (a - b) if a != b else 0.5
            mid = lo + min(max(t, 0.1), 0.9) * (hi - lo)
            e = eps_with(acc, mid)
            if e <= target_epsilon:
                hi, e_hi = mid, e
            else:
                lo, e_lo = mid, e
        return hi

    if accountant == "rdp":
        hi, e_hi = search("rdp", 1.0)
        return refine("rdp", hi, e_hi)
    sigma_rdp = refine("rdp", *search("rdp", 1.0))
    hi, e_hi = search(accountant, sigma_rdp)
    return refine(accountant, hi, e_hi)
