"""The ``privacy:`` section of a policy (owned by :mod:`safeguard.privacy`; extended there)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from safeguard.policy._base import Section


class PrivacyPolicy(Section):
    """The differential-privacy budget and mechanism a training run must respect.

    Attributes:
        target_epsilon: The total epsilon a run (or a series of runs on the same data) may spend.
        target_delta: Delta; ``None`` derives one from the dataset size (at most 1/(10 N)).
        max_grad_norm: Per-sample (or per-unit) clipping bound C.
        accountant: The accountant used to report epsilon.
        unit: The unit of privacy (``example`` or ``patient`` / ``user`` with ``group_by``).
    """

    target_epsilon: float = Field(default=8.0, gt=0.0)
    target_delta: float | None = Field(default=None, gt=0.0, lt=1.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    accountant: Literal["prv", "rdp", "gdp"] = "prv"
    unit: Literal["example", "user"] = "example"
    group_by: str | None = None
