"""Differential privacy for fine-tuning: DP-SGD on Opacus, a budget ledger, and audits.

``import safeguard.privacy`` loads no torch or opacus: the names that need them
(:func:`make_private`, :class:`PrivateTraining`, the Trainer integration, the
DP-SGD audit) are imported on first use.

>>> from safeguard.privacy import DPConfig
>>> DPConfig(noise_multiplier=1.0, max_grad_norm=1.0).accountant
'prv'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from safeguard.privacy.config import DPConfig, default_delta
from safeguard.privacy.ledger import BudgetLedger, LedgerSummary

if TYPE_CHECKING:
    from safeguard.privacy._audit_dpsgd import audit_dp_sgd
    from safeguard.privacy._hf_trainer import DPTrainer
    from safeguard.privacy._opacus import PrivateTraining, make_private

__all__ = [
    "BudgetLedger",
    "DPConfig",
    "DPTrainer",
    "LedgerSummary",
    "PrivateTraining",
    "audit_dp_sgd",
    "default_delta",
    "make_private",
    "per_example_loss",
]

#: Lazily imported names and the adapter module that defines them.
_LAZY = {
    "make_private": "safeguard.privacy._opacus",
    "PrivateTraining": "safeguard.privacy._opacus",
    "per_example_loss": "safeguard.privacy._opacus",
    "DPTrainer": "safeguard.privacy._hf_trainer",
    "audit_dp_sgd": "safeguard.privacy._audit_dpsgd",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'safeguard.privacy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
