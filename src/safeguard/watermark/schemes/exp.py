"""``exp`` and ``exp-edit``: Kuditipudi, Thickstun, Hashimoto & Liang (2023),
"Robust Distortion-free Watermarks for Language Models".

The key is a sequence of ``n`` uniform vectors ``xi_0..xi_{n-1}`` over the vocabulary
(here PRF rows ``(j, 0)``, read on demand rather than stored). Each generated sequence
draws a fresh shift ``tau``; its ``i``-th token is the exponential-minimum choice under
``xi_{(tau + i) mod n}`` (the paper's EXP decoder, distortion-free for up to ``n``
tokens per sequence).

Detection needs no shift: with costs ``C[i, j] = log(1 - xi_{j, y_i})`` the ``exp``
statistic is the best cyclic alignment ``min_s sum_i C[i, (s + i) mod n]`` and the
``exp-edit`` statistic the cheapest Levenshtein alignment of the text against the key
sequence from any start, with insertion and deletion cost ``gamma`` (the paper's
edit-distance test, Section 2.4, generalised to a free start). p-values come from a
permutation test against fresh random keys, ``p = (1 + #{phi_null <= phi}) / (T + 1)``
(the paper's Algorithm 3), computed by :mod:`safeguard.watermark.alignment`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from safeguard.errors import ConfigError
from safeguard.watermark import prf
from safeguard.watermark.alignment import DEFAULT_GAMMA
from safeguard.watermark.result import DetectionResult
from safeguard.watermark.schemes.base import GenerationState, Scheme, SchemeConfig
from safeguard.watermark.schemes.registry import register_scheme

if TYPE_CHECKING:
    import torch

__all__ = ["ExpConfig", "ExpEditConfig", "ExpEditScheme", "ExpScheme"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ExpConfig(SchemeConfig):
    """Parameters of ``exp``.

    Attributes:
        key_len: Length ``n`` of the key sequence (the paper's default 256). Generations
            longer than ``n`` tokens reuse key positions and are no longer distortion-free.
            Every text under one key reads the same cyclic sequence from a random shift,
            so texts overlap on key positions and resemble each other unless ``n`` is much
            longer than a text (self-BLEU of 64 texts of 200 tokens on the shipped
            evaluation LM: 0.71 at 256, 0.56 at 1024, 0.43 at 4096, against 0.34 for plain
            sampling); detection time grows with ``n + 2m`` (``benchmarks/RESULTS.md``).
            For diverse texts under one key, prefer ``gumbel``.
    """

    key_len: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.key_len, int) or not 8 <= self.key_len <= 65536:
            raise ConfigError(
                f"`key_len` (={self.key_len!r}) must be an integer in 8..65536; the default is 256"
            )


@dataclass(frozen=True, kw_only=True)
class ExpEditConfig(ExpConfig):
    """Parameters of ``exp-edit``.

    Attributes:
        key_len: As for ``exp``.
        gamma: Cost of an insertion or a deletion in the alignment (>= 0); the default
            was chosen by measuring power under substitutions plus insertions and deletions.
    """

    gamma: float = DEFAULT_GAMMA

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.gamma, (int, float)) or self.gamma < 0:
            raise ConfigError(
                f"`gamma` (={self.gamma!r}) must be a number >= 0; the default is {DEFAULT_GAMMA}"
            )


class ExpScheme(Scheme):
    name: ClassVar[str] = "exp"
    config: ExpConfig

    # generation side ------------------------------------------------------------------------
    def start(
        self,
        batch_size: int,
        prompt_len: int,
        pad_counts: list[int],
        generator: torch.Generator | None,
    ) -> GenerationState:
        import torch

        state = super().start(batch_size, prompt_len, pad_counts, generator)
        # A fresh shift per sequence (from torch's RNG, so torch.manual_seed reproduces it).
        state.data["shift"] = torch.randint(
            0, self.config.key_len, (batch_size,), generator=generator
        )
        state.data["warned"] = False
        return state

    def rows(
        self, state: GenerationState, input_ids: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        step = input_ids.shape[1] - state.prompt_len
        n = self.config.key_len
        if step >= n and not state.data["warned"]:
            log.warning(
                "generating token %d with a %s key of length %d: key positions repeat, so tokens beyond %d "
                "are no longer distortion-free; use a longer key_len",
                step + 1,
                self.name,
                n,
                n,
            )
            state.data["warned"] = True
        a = (state.data["shift"] + np.uint64(step)) % np.uint64(n)
        return a, np.zeros_like(a), np.ones(a.shape[0], dtype=bool)

    # detection side -------------------------------------------------------------------------
    def cost_matrix(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Costs ``C[i, j] = log(1 - xi_{j, y_i})`` of shape ``(m, n)`` and each position's unique-token index."""
        uniq, inverse = np.unique(np.asarray(tokens, dtype=np.int64), return_inverse=True)
        j = np.arange(self.config.key_len, dtype=np.uint64)[:, None]
        grid = prf.uniforms(self.token_key, j, np.uint64(0), uniq[None, :])  # (n, U)
        costs = np.log1p(-grid).T[inverse]  # (m, n)
        return costs.astype(np.float64), inverse

    def _gamma(self) -> float:
        return 0.0

    def detect(
        self,
        tokens: np.ndarray,
        *,
        prompt: np.ndarray | None,
        false_positive_rate: float,
        resolution: float | None = None,
        seed: int | None = None,
        use_cache: bool = False,
        early_stop: int | None = None,
        num_threads: int | None = 1,
        **options: Any,
    ) -> DetectionResult:
        from safeguard.watermark import alignment

        if options:
            raise ConfigError(
                f"unknown detection option(s) for {self.name}: {', '.join(sorted(options))}"
            )
        resolution = resolution if resolution is not None else min(1e-3, false_positive_rate / 10)
        if not 0 < resolution < 1:
            raise ConfigError(
                f"`resolution` (={resolution!r}) must be in (0, 1); e.g. 1e-3 for 999 resamples"
            )
        costs, inverse = self.cost_matrix(tokens)
        result = alignment.permutation_test(
            costs,
            inverse,
            method=self.name,
            gamma=self._gamma(),
            resolution=resolution,
            rng=np.random.default_rng(_null_seed(tokens) if seed is None else seed),
            early_stop=early_stop,
            cached_null=use_cache,
            num_threads=num_threads,
        )
        num_resamples = result.num_resamples
        warnings: list[str] = []
        if result.min_p_value > false_positive_rate:
            warnings.append(
                f"the smallest p-value {num_resamples} resamples can give is {result.min_p_value:.3g}, above the "
                f"false-positive rate {false_positive_rate:g}: nothing can be flagged; pass a finer `resolution`"
            )
        return DetectionResult(
            p_value=float(result.p_value),
            score=float(result.statistic),
            num_tokens=len(tokens),
            num_scored=len(tokens),
            is_watermarked=result.p_value <= false_positive_rate,
            false_positive_rate=false_positive_rate,
            key_id=self.key.key_id,
            scheme=self.name,
            method="permutation-cached" if result.approximate else "permutation",
            min_p_value=float(result.min_p_value),
            approximate=bool(result.approximate),
            warnings=tuple(warnings),
        )


def _null_seed(tokens: np.ndarray) -> int:
    """The default seed of a text's null sample: a digest of its tokens.

    A fixed seed would give every text of ``m`` distinct tokens the same null statistics,
    so the Monte Carlo error of their p-values would be shared (one draw for a whole
    corpus); a seed per text makes that error independent across texts while the same
    text still gets the same p-value every time. Pass ``seed`` to choose it.

    >>> _null_seed(np.array([1, 2, 3])) == _null_seed(np.array([1, 2, 3]))
    True
    """
    digest = hashlib.blake2b(
        np.asarray(tokens, dtype="<i8").tobytes(), digest_size=8, person=b"exp-null"
    ).digest()
    return int.from_bytes(digest, "little")


class ExpEditScheme(ExpScheme):
    name: ClassVar[str] = "exp-edit"
    config: ExpEditConfig

    def _gamma(self) -> float:
        return float(self.config.gamma)


register_scheme("exp", ExpConfig, ExpScheme)
register_scheme("exp-edit", ExpEditConfig, ExpEditScheme, prf_family="exp")  # same uniforms as exp
