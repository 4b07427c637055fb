"""Helpers shared by the stages of the evaluation study: derived seeds, prefix lengths,
progress messages and the small conversions that make numbers JSON-ready.

Everything random in a run is derived from ``config.seed`` and a label, so a stage draws
the same values whatever ran before it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from safeguard.errors import missing_dependency


def torch_module() -> Any:
    """``torch``, or the error that names the extra to install."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_dependency("torch", "hf") from exc
    return torch


def derived_secret(seed: int, *parts: Any) -> bytes:
    """32 bytes fixed by the run's seed and a label (keys, sampling seeds)."""
    return hashlib.sha256(
        ("safeguard-eval/" + "/".join(map(str, (seed, *parts)))).encode()
    ).digest()


def derived_rng(seed: int, *parts: Any) -> np.random.Generator:
    """A numpy generator fixed by the run's seed and a label."""
    return np.random.default_rng(int.from_bytes(derived_secret(seed, "rng", *parts)[:8], "little"))


def prefix_lengths(total: int, step: int) -> list[int]:
    """``step, 2 step, ...`` up to ``total``, always ending at ``total``.

    >>> prefix_lengths(25, 10)
    [10, 20, 25]
    """
    out = list(range(step, total + 1, step))
    if out[-1] != total:
        out.append(total)
    return out


def pad_nan(values: np.ndarray, n: int) -> np.ndarray:
    """``values`` cut or NaN-padded to length ``n``."""
    out = np.full(n, np.nan)
    out[: min(n, values.size)] = values[:n]
    return out


def finite_or_none(x: float) -> float | None:
    """``x`` as a float, or None where it is missing or not finite (JSON has no inf)."""
    return None if x is None or not math.isfinite(x) else float(x)


def as_dict(obj: Any) -> dict[str, Any]:
    """A result's ``to_dict()``, or its dataclass fields."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return asdict(obj)


class Progress:
    """Stage messages and tqdm bars on stderr; silent when ``echo`` is None."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo
        self.t0 = time.perf_counter()

    def stage(self, message: str) -> None:
        if self.echo is not None:
            self.echo(f"[{time.perf_counter() - self.t0:6.0f} s] {message}")

    def bar(self, iterable: Any, desc: str, total: int | None = None) -> Any:
        if self.echo is None:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
