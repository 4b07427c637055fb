"""`DPConfig`: the validated description of one DP-SGD training run (no torch, no opacus)."""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from safeguard.errors import ConfigError

if TYPE_CHECKING:
    from safeguard.policy import Policy

__all__ = [
    "EPSILON_WARN_ABOVE",
    "Accountant",
    "DPConfig",
    "GradSampleMode",
    "PrivacyUnit",
    "default_delta",
    "hard_budget",
]

log = logging.getLogger(__name__)

Accountant = Literal["prv", "rdp", "gdp"]
GradSampleMode = Literal["auto", "hooks", "functorch", "ghost", "bk"]
PrivacyUnit = Literal["example", "user"]

#: Above this ε a guarantee is weak enough that the config warns.
EPSILON_WARN_ABOVE = 10.0

_ACCOUNTANTS = ("prv", "rdp", "gdp")
_MODES = ("auto", "hooks", "functorch", "ghost", "bk")
_UNITS = ("example", "user")


def default_delta(num_units: int) -> float:
    """The δ used when none is set: 1/(10·N), rounded down to one significant digit.

    Args:
        num_units: N, the number of privacy units (examples, or users with ``group_by``).

    >>> default_delta(50_000)
    2e-06
    >>> default_delta(3)
    0.03
    """
    if num_units < 1:
        raise ConfigError(f"`num_units` (={num_units}) must be ≥ 1")
    raw = 1.0 / (10.0 * num_units)
    exponent = math.floor(math.log10(raw))
    mantissa = math.floor(raw / 10.0**exponent)
    return float(f"{mantissa}e{exponent}")


def hard_budget(max_epsilon: float | None, target_epsilon: float | None) -> float | None:
    """The hard budget: ``max_epsilon``, or ``target_epsilon`` where it is unset.

    The one place the rule "max_epsilon defaults to target_epsilon" lives: a
    :class:`DPConfig`, a policy's ``privacy:`` section (:meth:`DPConfig.from_policy`) and
    ``safeguard train --target-epsilon`` (a lower target, the policy's budget) apply it.

    >>> hard_budget(None, 8)
    8.0
    >>> hard_budget(10.0, 8.0)
    10.0
    """
    if max_epsilon is not None:
        return max_epsilon
    return None if target_epsilon is None else float(target_epsilon)


@dataclass(frozen=True, kw_only=True)
class DPConfig:
    """How a model is trained with DP-SGD, and the budget it must respect.

    Exactly one of ``target_epsilon`` (the noise multiplier is then calibrated) and
    ``noise_multiplier`` is set. With ``target_epsilon``, the length of training
    (``epochs`` or ``steps``) is required, and ε counts every earlier run recorded in
    the same ledger: a budget can span several fine-tunes of the same data.

    Attributes:
        target_epsilon: Total ε after this run (including earlier runs in the ledger).
        noise_multiplier: σ, the noise std divided by ``max_grad_norm``.
        target_delta: δ; ``None`` derives 1/(10 N) from the dataset size at
            :func:`~safeguard.privacy.make_private` (and says so in the log and the ledger).
            Must be < 1/N.
        max_grad_norm: Per-unit clipping bound C.
        epochs: Length of training in passes over the data (expected, under Poisson sampling).
        steps: Length of training in optimizer steps (logical batches).
        max_epsilon: Hard budget: a step that would push ε above it is not taken and
            :class:`~safeguard.errors.BudgetExceededError` is raised. Defaults to
            ``target_epsilon``; ``None`` with ``noise_multiplier`` means no hard stop.
        accountant: Accountant that reports ε (``prv`` by default; ``rdp`` is always
            reported too, as a cross-check).
        poisson_sampling: Sample each unit independently with probability q (what the
            accountants assume). ``False`` keeps the given loader and warns.
        grad_sample_mode: How per-sample gradients are computed. ``bk``: book-keeping
            clipping (one forward, one backward; Linear, Conv1D, Embedding and LayerNorm
            layers, tied embeddings included); ``ghost``: Opacus' two-backward ghost
            clipping; ``hooks`` / ``functorch``: materialised per-sample gradients. ``auto``
            chooses bk for LoRA/adapters and full fine-tunes of Hugging Face models whose
            trainable layers bk supports; otherwise (and under ``distributed``) hooks for
            adapters, and ghost (or hooks when tied) for full fine-tunes.
        batch_size: Expected logical batch size (q·N); ``None`` takes the loader's.
        physical_batch_size: Largest batch held in memory; logical batches are split into
            virtual steps of this size (Opacus ``BatchMemoryManager``).
        group_by: Name of the field holding the user (patient) id for user-level DP.
        unit: Unit of privacy; ``user`` requires ``group_by``.
        max_examples_per_user: With ``group_by``, at most this many examples of a sampled user
            enter a batch; their gradients are summed before clipping, so each user adds at
            most C (hooks, functorch or bk; not ghost; no virtual steps).
        preflight: Run the pre-flight checks (per-sample gradients equal autograd's on a few
            examples; trainable weights change and frozen ones do not after the first step).
        secure_mode: Use a cryptographically secure RNG for noise and sampling
            (needs ``torchcsprng``).
        seed: Seed of the Poisson sampler and the DP noise, for reproducibility experiments
            only: whoever knows it can regenerate the noise and subtract it from the weights,
            so a seeded run has **no** DP guarantee. It warns, is recorded as such in the
            ledger (``dp_guarantee_void``) and in training manifests, and policies refuse it
            unless they set ``allow_seeded_noise``. ``None`` (the default) seeds both
            generators from 64 bits of the operating system's entropy (``os.urandom``),
            which are never stored; checkpoints then keep no generator state either.
    """

    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    target_delta: float | None = None
    max_grad_norm: float = 1.0
    epochs: float | None = None
    steps: int | None = None
    max_epsilon: float | None = None
    accountant: Accountant = "prv"
    poisson_sampling: bool = True
    grad_sample_mode: GradSampleMode = "auto"
    batch_size: int | None = None
    physical_batch_size: int | None = None
    group_by: str | None = None
    unit: PrivacyUnit = "example"
    max_examples_per_user: int = 1
    preflight: bool = True
    secure_mode: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        self._check_types()
        problems = [*self._budget_problems(), *self._setting_problems()]
        if problems:
            raise ConfigError("invalid DPConfig:\n  " + "\n  ".join(problems))
        object.__setattr__(self, "max_epsilon", hard_budget(self.max_epsilon, self.target_epsilon))
        self._warn()

    def _check_types(self) -> None:
        """Numbers must be numbers (a quoted YAML value is refused at once, with the fix)."""
        for name in (
            "target_epsilon",
            "noise_multiplier",
            "target_delta",
            "max_grad_norm",
            "epochs",
            "max_epsilon",
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise ConfigError(
                    f"`{name}` (={value!r}) must be a number, not {type(value).__name__}; "
                    f"write e.g. {name}=8.0 without quotes"
                )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ConfigError(f"`seed` (={self.seed!r}) must be an integer or None")

    def _budget_problems(self) -> list[str]:
        """What is wrong with ε, σ, δ, C and the length of training."""
        problems: list[str] = []
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            problems.append(
                "set exactly one of `target_epsilon` (σ is then calibrated) and `noise_multiplier` "
                f"(got target_epsilon={self.target_epsilon!r}, noise_multiplier={self.noise_multiplier!r})"
            )
        if self.target_epsilon is not None and not (
            self.target_epsilon > 0 and math.isfinite(self.target_epsilon)
        ):
            problems.append(
                f"`target_epsilon` (={self.target_epsilon!r}) must be a finite number > 0; typical values are 1–8"
            )
        if self.noise_multiplier is not None and not (
            self.noise_multiplier > 0 and math.isfinite(self.noise_multiplier)
        ):
            problems.append(
                f"`noise_multiplier` (={self.noise_multiplier!r}) must be > 0; typical values are 0.5–2 "
                "(σ = 0 is not private: train without DP instead)"
            )
        if self.target_delta is not None and not (0 < self.target_delta < 1):
            problems.append(
                f"`target_delta` (={self.target_delta!r}) must be in (0, 1) and < 1/N; "
                "leave it unset to use 1/(10 N)"
            )
        if not (self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)):
            problems.append(
                f"`max_grad_norm` (={self.max_grad_norm!r}) must be > 0; typical values are 0.1–1.0"
            )
        if self.epochs is not None and self.steps is not None:
            problems.append(
                f"set at most one of `epochs` (={self.epochs!r}) and `steps` (={self.steps!r})"
            )
        if self.epochs is not None and not self.epochs > 0:
            problems.append(f"`epochs` (={self.epochs!r}) must be > 0")
        if self.steps is not None and not (isinstance(self.steps, int) and self.steps > 0):
            problems.append(f"`steps` (={self.steps!r}) must be an integer > 0")
        if self.target_epsilon is not None and self.epochs is None and self.steps is None:
            problems.append(
                "`target_epsilon` needs the length of training to calibrate σ: set `epochs` or `steps`"
            )
        if self.max_epsilon is not None and not self.max_epsilon > 0:
            problems.append(f"`max_epsilon` (={self.max_epsilon!r}) must be > 0")
        if (
            self.max_epsilon is not None
            and self.target_epsilon is not None
            and self.max_epsilon < self.target_epsilon
        ):
            problems.append(
                f"`max_epsilon` (={self.max_epsilon}) is below `target_epsilon` (={self.target_epsilon}); "
                "training would stop before reaching its target: lower `target_epsilon`"
            )
        return problems

    def _setting_problems(self) -> list[str]:
        """What is wrong with the accountant, the mode, the batch sizes and the unit of privacy."""
        problems: list[str] = []
        if self.accountant not in _ACCOUNTANTS:
            problems.append(
                f"`accountant` (={self.accountant!r}) must be one of {', '.join(_ACCOUNTANTS)}"
            )
        if self.grad_sample_mode not in _MODES:
            problems.append(
                f"`grad_sample_mode` (={self.grad_sample_mode!r}) must be one of {', '.join(_MODES)}"
            )
        if self.unit not in _UNITS:
            problems.append(f"`unit` (={self.unit!r}) must be one of {', '.join(_UNITS)}")
        if self.batch_size is not None and not (
            isinstance(self.batch_size, int) and self.batch_size > 0
        ):
            problems.append(f"`batch_size` (={self.batch_size!r}) must be an integer > 0")
        if self.physical_batch_size is not None and not (
            isinstance(self.physical_batch_size, int) and self.physical_batch_size > 0
        ):
            problems.append(
                f"`physical_batch_size` (={self.physical_batch_size!r}) must be an integer > 0"
            )
        if self.unit == "user" and not self.group_by:
            problems.append(
                "`unit` is 'user' but `group_by` is not set: name the field holding the user id"
            )
        if self.group_by and self.unit != "user":
            problems.append(f"`group_by` (={self.group_by!r}) is set: set `unit='user'` as well")
        if not (isinstance(self.max_examples_per_user, int) and self.max_examples_per_user >= 1):
            problems.append(
                f"`max_examples_per_user` (={self.max_examples_per_user!r}) must be an integer ≥ 1"
            )
        return problems

    def _warn(self) -> None:
        """Warn about a weak ε, a seeded (void) guarantee and non-Poisson sampling.

        ``stacklevel=4``: the warning points at the code that built the config.
        """
        eps = self.max_epsilon if self.max_epsilon is not None else self.target_epsilon
        if eps is not None and eps > EPSILON_WARN_ABOVE:
            warnings.warn(
                f"ε = {eps:g} > {EPSILON_WARN_ABOVE:g}: the guarantee is weak at this level (an attacker's "
                "odds of telling whether a unit was in the data can grow by e^ε); "
                "prefer ε ≤ 8, or ≤ 1 for strong guarantees",
                UserWarning,
                stacklevel=4,
            )
        if self.seed is not None and not self.secure_mode:
            warnings.warn(
                f"`seed` (={self.seed}) fixes the DP noise and the sampled batches: anyone who knows "
                "it can regenerate the noise, so this run has no DP guarantee (the ledger and "
                "manifest say so). Use it for reproducibility experiments only",
                UserWarning,
                stacklevel=4,
            )
        if not self.poisson_sampling:
            warnings.warn(
                "`poisson_sampling=False`: the accountants assume each unit is sampled independently "
                "with probability q; with fixed-size shuffled batches the reported ε is an "
                "approximation, not a proven bound",
                UserWarning,
                stacklevel=4,
            )

    @property
    def unit_of_privacy(self) -> str:
        """Plain-language unit of privacy, stated in every report."""
        if self.unit == "user":
            return f"one user (all examples sharing a `{self.group_by}` value)"
        return "one example"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DPConfig:
        """Build from :meth:`to_dict` output; unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown DPConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_policy(cls, policy: Policy | str, **overrides: Any) -> DPConfig:
        """Build from the ``privacy:`` section of a policy (a name, a path or a Policy).

        Args:
            policy: A :class:`~safeguard.policy.Policy`, a shipped name or a YAML path.
            **overrides: Fields that take precedence over the policy (e.g. ``epochs=3``).

        Raises:
            PolicyError: The policy has no ``privacy:`` section.
        """
        from safeguard.errors import PolicyError
        from safeguard.policy import load_policy

        if isinstance(policy, str):
            policy = load_policy(policy)
        section = policy.privacy
        if section is None:
            raise PolicyError(
                f"policy {policy.name!r} has no `privacy:` section; add one to train with DP"
            )
        values: dict[str, Any] = {
            "target_epsilon": section.target_epsilon,
            "target_delta": section.target_delta,
            "max_grad_norm": section.max_grad_norm,
            "accountant": section.accountant,
            "unit": section.unit,
            "group_by": section.group_by,
        }
        for name in (
            "max_epsilon",
            "epochs",
            "steps",
            "grad_sample_mode",
            "batch_size",
            "max_examples_per_user",
        ):
            value = getattr(section, name, None)
            if value is not None:
                values[name] = value
        if overrides.get("seed") is not None and not section.allow_seeded_noise:
            raise PolicyError(
                f"policy {policy.name!r} refuses `seed` (={overrides['seed']!r}): a fixed seed lets "
                "anyone who knows it regenerate the DP noise, voiding the guarantee. Leave the seed "
                "unset (noise from the OS's entropy), or use a policy with `allow_seeded_noise: true` "
                "for a reproducibility experiment"
            )
        if "noise_multiplier" in overrides:
            # σ is given: the policy's budget still stops the run.
            values.pop("target_epsilon")
            values["max_epsilon"] = hard_budget(section.max_epsilon, section.target_epsilon)
        values.update(overrides)
        return cls(**values)
