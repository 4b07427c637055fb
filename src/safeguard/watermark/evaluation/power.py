"""The power stages of the study: p-values at the full length, TPR at each false-positive
level and tokens to detect (clean and after the headline attack) on the model's texts, and
tokens to detect against entropy on a synthetic next-token source.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from safeguard.watermark.evaluation import metrics
from safeguard.watermark.evaluation._common import (
    Progress,
    derived_rng,
    finite_or_none,
    pad_nan,
    prefix_lengths,
)
from safeguard.watermark.evaluation.config import EvalConfig
from safeguard.watermark.evaluation.corpus import Setup
from safeguard.watermark.evaluation.detectors import Detector, detector
from safeguard.watermark.evaluation.generation import Texts, generate
from safeguard.watermark.evaluation.report import HEADLINE_ATTACK
from safeguard.watermark.evaluation.robustness import attack_texts


def detect_scheme(
    config: EvalConfig,
    setup: Setup,
    texts: Texts,
    scheme: str,
    lengths: Sequence[int],
    progress: Progress,
) -> dict[str, Any]:
    """A scheme's detection entries: ``p_values``, ``tokens_to_detect``, ``tpr`` and time."""
    det = detector(scheme, config.seed, setup.vocab_size)
    prompts, gens = texts.prompts_of[scheme], texts.gens[scheme]
    progress.stage(f"detecting {scheme}")
    t0 = time.perf_counter()
    p_full = det.pvalues(prompts, gens)
    entry: dict[str, Any] = {"p_values": p_full.tolist()}
    variants = {
        "clean": gens,
        "substitute 0.3": attack_texts(*HEADLINE_ATTACK, gens, setup, config, normalize=True),
    }
    entry["tokens_to_detect"] = {}
    for label, data in variants.items():
        rows = [
            _scan(det, p, g, lengths, config.alpha)
            for p, g in progress.bar(
                zip(prompts, data, strict=True), f"{scheme} {label} scan", len(prompts)
            )
        ]
        ttd = metrics.tokens_to_detect(np.stack(rows), lengths, alpha=config.alpha)
        entry["tokens_to_detect"][label] = {
            "per_text": [None if not math.isfinite(v) else float(v) for v in ttd],
            **_median_tokens(ttd, n_boot=1000, seed=config.seed),
            "curve": metrics.detection_curve(ttd, lengths).tolist(),
        }
    entry["tpr"] = [
        r.to_dict() for r in metrics.tpr_at_fpr(p_full, config.levels, seed=config.seed)
    ]
    entry["detection_seconds"] = time.perf_counter() - t0
    return entry


def _scan(
    det: Detector, prompt: np.ndarray, gen: np.ndarray, lengths: Sequence[int], alpha: float
) -> np.ndarray:
    """Prefix p-values of one text at ``lengths`` (NaN beyond its end)."""
    if gen.size < lengths[0]:
        return np.full(len(lengths), np.nan)
    return pad_nan(
        det.prefix_pvalues(prompt, gen, [n for n in lengths if n <= gen.size], alpha),
        len(lengths),
    )


def _median_tokens(ttd: np.ndarray, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Median tokens to detect with its bootstrap interval, and the share ever detected."""
    med = metrics.median_with_ci(ttd, n_boot=n_boot, seed=seed)
    return {
        "median": finite_or_none(med.median),
        "ci": [finite_or_none(med.ci_low), finite_or_none(med.ci_high)],
        "detected_share": float(np.mean(np.isfinite(ttd))),
    }


def entropy_sweep(config: EvalConfig, setup: Setup, progress: Progress) -> dict[str, Any]:
    """The report's ``entropy_sweep``: tokens to detect at each entropy of a synthetic source."""
    from safeguard.watermark.evaluation import synthetic  # imports transformers

    lengths = prefix_lengths(config.entropy_tokens, config.step)
    sweep: dict[str, Any] = {"levels": list(config.entropies), "lengths": lengths, "schemes": {}}
    models = synthetic.entropy_sweep(config.entropies, seed=config.seed)
    sweep["achieved"] = [m.source.mean_entropy(m.source.inverse_temperature) for m in models]
    sweep_cfg = replace(config, temperature=1.0)
    rng = derived_rng(config.seed, "sweep-prompts")
    prompts = [
        rng.integers(0, models[0].config.vocab_size, size=4) for _ in range(config.entropy_texts)
    ]
    for scheme in config.schemes:
        rows = []
        for level, model in zip(config.entropies, models, strict=True):
            progress.stage(f"entropy sweep: {scheme} at {level:g} nats")
            gens = generate(
                setup,
                scheme,
                prompts,
                sweep_cfg,
                Progress(None),
                model=model,
                new_tokens=config.entropy_tokens,
            )
            det = detector(scheme, config.seed, int(model.config.vocab_size))
            prefix = np.stack(
                [
                    pad_nan(det.prefix_pvalues(p, g, lengths, config.alpha), len(lengths))
                    for p, g in zip(prompts, gens, strict=True)
                ]
            )
            ttd = metrics.tokens_to_detect(prefix, lengths, alpha=config.alpha)
            rows.append({"entropy": level, **_median_tokens(ttd, n_boot=500, seed=config.seed)})
        sweep["schemes"][scheme] = rows
    return sweep
