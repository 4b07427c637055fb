"""What every scheme provides: a config, generation-side row words, and detection.

Generation (torch, driven by :mod:`safeguard.watermark.hf`): at each step the scheme
names, per batch row, the PRF row ``(a, b)`` whose uniforms decide the token, and
whether the step is watermarked at all (a scheme may leave a step to ordinary
sampling, e.g. a repeated context). The token is then chosen by the exponential-
minimum rule :func:`exponential_min_select` on the final distribution.

Detection (numpy): the scheme recomputes the same rows from the tokens alone and
turns the uniforms of the observed tokens into a test statistic and a p-value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from safeguard.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from safeguard.watermark.prf import PRFKey
    from safeguard.watermark.result import DetectionResult

__all__ = ["GenerationState", "Scheme", "SchemeConfig", "SchemeKey", "exponential_min_select"]


class SchemeKey(Protocol):
    """What a scheme needs of a key (a :class:`~safeguard.watermark.WatermarkKey`)."""

    key_id: str
    params: Any

    def prf_key(self, purpose: str, family: str | None = None) -> PRFKey: ...


@dataclass(frozen=True, kw_only=True)
class SchemeConfig:
    """Base of scheme configs: frozen, validated, round-trips through dicts."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SchemeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid parameters: {', '.join(sorted(known)) or '(none)'}"
            )
        return cls(**data)


@dataclass
class GenerationState:
    """Per-``generate`` state the scheme keeps between steps (one entry per batch row)."""

    batch_size: int
    prompt_len: int
    pad_counts: list[int]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


class Scheme:
    """Base class of scheme implementations.

    Subclasses set :attr:`name`, take ``(key, config, prf_family=...)``, and implement
    :meth:`start`, :meth:`rows` and :meth:`detect`. Build them through the registry
    (``get_scheme(name).build(key)``), which validates the parameters and names the PRF
    family; built directly, the family is looked up by :attr:`name`.
    """

    name: ClassVar[str]
    supports_memory: ClassVar[bool] = False

    def __init__(
        self, key: SchemeKey, config: SchemeConfig, *, prf_family: str | None = None
    ) -> None:
        if prf_family is None:
            from safeguard.watermark.schemes.registry import get_scheme

            prf_family = get_scheme(self.name).prf_family
        self.key = key
        self.config = config
        self.prf_family = prf_family
        self.token_key = key.prf_key("token", prf_family)

    # generation side ------------------------------------------------------------------------
    def start(
        self,
        batch_size: int,
        prompt_len: int,
        pad_counts: list[int],
        generator: torch.Generator | None,
    ) -> GenerationState:
        return GenerationState(batch_size, prompt_len, pad_counts)

    def rows(
        self, state: GenerationState, input_ids: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PRF rows ``(a, b)`` (uint64 words) and an ``active`` mask, numpy arrays of shape ``(batch,)``.

        Rows are a handful of integers per step, so they are computed with numpy on the
        host. The vocabulary-wide draw is made by :mod:`safeguard.watermark.prf_torch`: with
        a PRF version 2 key, AES on the host and one row copied to the model's device per
        sequence and step; with a version 1 key, SplitMix64 in torch on the device.
        """
        raise NotImplementedError

    # detection side -------------------------------------------------------------------------
    def detect(
        self,
        tokens: np.ndarray,
        *,
        prompt: np.ndarray | None,
        false_positive_rate: float,
        **options: Any,
    ) -> DetectionResult:
        raise NotImplementedError


def exponential_min_select(uniforms: np.ndarray, probs: np.ndarray) -> int:
    """The exponential-minimum (Gumbel-max) rule: ``argmin_v -log(u_v) / p_v`` over ``p_v > 0``.

    With ``u`` i.i.d. uniform, ``-log(u_v)`` are i.i.d. Exp(1) and the index of the
    smallest ``Exp(1)/p_v`` is distributed exactly as ``p`` (the exponential race);
    equivalently ``argmax_v u_v^{1/p_v}`` (Aaronson 2022; Kuditipudi et al. 2023, eq. for
    the EXP decoder).

    Args:
        uniforms: Shape ``(V,)``, values in (0, 1).
        probs: Shape ``(V,)``, a probability vector (zeros allowed).

    >>> exponential_min_select(np.array([0.2, 0.9, 0.5]), np.array([0.0, 0.5, 0.5]))
    1
    """
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        race = np.where(p > 0, -np.log(uniforms) / np.where(p > 0, p, 1.0), np.inf)
    return int(np.argmin(race))
