"""The ``privacy:`` section of a policy (owned by :mod:`safeguard.privacy`; extended there)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from safeguard.policy._base import Section


class PrivacyPolicy(Section):
    """The differential-privacy budget and mechanism a training run must respect.

    Attributes:
        target_epsilon: The total epsilon a run (or a series of runs on the same data) may spend;
            also the hard stop unless ``max_epsilon`` is set.
        target_delta: Delta; ``None`` derives one from the dataset size (at most 1/(10 N)).
        max_grad_norm: Per-sample (or per-unit) clipping bound C.
        accountant: The accountant used to report epsilon.
        unit: The unit of privacy (``example`` or ``patient`` / ``user`` with ``group_by``).
        group_by: The record field holding the user (patient) id when ``unit`` is ``user``.
        max_epsilon: Hard budget across runs (defaults to ``target_epsilon``).
        epochs: Default length of a training run, in expected passes over the data.
        batch_size: Default expected logical batch size.
        grad_sample_mode: How per-sample gradients are computed (``auto`` chooses).
        max_examples_per_user: With ``group_by``, at most this many of a user's examples per batch.
        allow_seeded_noise: Whether a run may draw its DP noise and batches from a fixed seed
            (reproducibility experiments). Whoever knows the seed can regenerate the noise and
            subtract it, so such a run carries no DP guarantee; off by default, and a policy
            that exists to protect real data (healthcare-hipaa) keeps it off.
    """

    target_epsilon: float = Field(default=8.0, gt=0.0)
    target_delta: float | None = Field(default=None, gt=0.0, lt=1.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    accountant: Literal["prv", "rdp", "gdp"] = "prv"
    unit: Literal["example", "user"] = "example"
    group_by: str | None = None
    max_epsilon: float | None = Field(default=None, gt=0.0)
    epochs: float | None = Field(default=None, gt=0.0)
    batch_size: int | None = Field(default=None, gt=0)
    grad_sample_mode: Literal["auto", "hooks", "functorch", "ghost", "bk"] | None = None
    max_examples_per_user: int | None = Field(default=None, ge=1)
    allow_seeded_noise: bool = False

    @model_validator(mode="after")
    def _check_unit(self) -> PrivacyPolicy:
        if self.unit == "user" and not self.group_by:
            raise ValueError(
                "`unit: user` needs `group_by`: the record field holding the user (patient) id"
            )
        if self.group_by and self.unit != "user":
            raise ValueError("`group_by` is set: set `unit: user` as well")
        if self.max_epsilon is not None and self.max_epsilon < self.target_epsilon:
            raise ValueError("`max_epsilon` must be ≥ `target_epsilon`")
        return self
