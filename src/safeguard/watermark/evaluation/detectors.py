"""Every scheme of the study behind one detector interface, and the keys it uses.

A run's keys are derived from its seed: key ``0`` of a scheme watermarks the texts and
tests them; keys ``1000 + k`` test human text for the null.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from safeguard.watermark.evaluation._common import derived_rng, derived_secret
from safeguard.watermark.evaluation.config import OUR_SCHEMES
from safeguard.watermark.evaluation.report import PERMUTATION_SCHEMES


class Detector:
    """p-values of one scheme under one key, from token ids."""

    name: str
    permutation: bool = False

    def pvalue(self, prompt: np.ndarray, gen: np.ndarray) -> float:
        raise NotImplementedError

    def prefix_pvalues(
        self, prompt: np.ndarray, gen: np.ndarray, lengths: Sequence[int], alpha: float
    ) -> np.ndarray:
        """p-values at each prefix length; entries after the first p ≤ ``alpha`` may be NaN."""
        raise NotImplementedError

    def pvalues(self, prompts: Sequence[np.ndarray], gens: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([self.pvalue(p, g) for p, g in zip(prompts, gens, strict=True)])


class OurDetector(Detector):
    """``gumbel``, ``exp`` or ``exp-edit`` through :class:`~safeguard.watermark.Watermarker`."""

    def __init__(self, scheme: str, key: Any) -> None:
        from safeguard.watermark import Watermarker

        self.name = scheme
        self.wm = Watermarker(key)
        self.permutation = scheme in PERMUTATION_SCHEMES
        self.options: dict[str, Any] = (
            {"resolution": 1e-3, "early_stop": 20, "num_threads": 1} if self.permutation else {}
        )

    def pvalue(self, prompt: np.ndarray, gen: np.ndarray) -> float:
        if gen.size == 0:
            return 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(
                self.wm.detect(
                    gen, prompt_ids=prompt, false_positive_rate=0.01, **self.options
                ).p_value
            )

    def prefix_pvalues(
        self, prompt: np.ndarray, gen: np.ndarray, lengths: Sequence[int], alpha: float
    ) -> np.ndarray:
        out = np.full(len(lengths), np.nan)
        for i, n in enumerate(lengths):
            out[i] = self.pvalue(prompt, gen[:n])
            if out[i] <= alpha and self.permutation:
                break  # the scan only needs the first detection; permutation tests are costly
        return out

    def pvalues(self, prompts: Sequence[np.ndarray], gens: Sequence[np.ndarray]) -> np.ndarray:
        if self.permutation or any(g.size == 0 for g in gens):
            return super().pvalues(prompts, gens)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = self.wm.detect_batch(
                list(gens), prompts=list(prompts), false_positive_rate=0.01, num_threads=1
            )
        return np.array([r.p_value for r in results])


class CompetitorDetector(Detector):
    """KGW or SynthID-Text through :mod:`~safeguard.watermark.evaluation.competitors`."""

    def __init__(self, competitor: Any) -> None:
        self.name = competitor.name
        self.competitor = competitor

    def pvalue(self, prompt: np.ndarray, gen: np.ndarray) -> float:
        if gen.size == 0:
            return 1.0
        return float(self.competitor.pvalue(prompt, gen))

    def prefix_pvalues(
        self, prompt: np.ndarray, gen: np.ndarray, lengths: Sequence[int], alpha: float
    ) -> np.ndarray:
        return np.asarray(self.competitor.prefix_pvalues(prompt, gen, list(lengths)), dtype=float)


def competitor(scheme: str, seed: int, index: int, vocab_size: int) -> Any:
    """Key ``index`` of a competitor scheme (``kgw`` or ``synthid``) for a run's seed."""
    from safeguard.watermark.evaluation import competitors  # imports transformers

    rng = derived_rng(seed, scheme, "key", index)
    if scheme == "kgw":
        return competitors.KGW(hashing_key=int(rng.integers(1, 2**31)), vocab_size=vocab_size)
    return competitors.SynthID(
        keys=[int(k) for k in rng.integers(0, 2**20, size=30)], vocab_size=vocab_size
    )


def our_key(scheme: str, seed: int, index: int) -> Any:
    """Key ``index`` of one of safeguard's schemes for a run's seed."""
    from safeguard.watermark import WatermarkKey

    return WatermarkKey.from_secret(derived_secret(seed, scheme, "key", index), scheme=scheme)


def detector(scheme: str, seed: int, vocab_size: int, index: int = 0) -> Detector:
    """The detector of ``scheme`` under its key ``index``."""
    if scheme in OUR_SCHEMES:
        return OurDetector(scheme, our_key(scheme, seed, index))
    return CompetitorDetector(competitor(scheme, seed, index, vocab_size))
