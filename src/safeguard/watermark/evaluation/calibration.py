"""The calibration stage of the study: p-values of held-out human text under many keys, the
observed false-positive share at each level (overall and per fixed key), and the ROC curves
of the watermarked texts against that null.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safeguard.watermark.evaluation import metrics
from safeguard.watermark.evaluation._common import Progress
from safeguard.watermark.evaluation.config import EvalConfig
from safeguard.watermark.evaluation.corpus import Setup
from safeguard.watermark.evaluation.detectors import detector
from safeguard.watermark.evaluation.report import (
    HEADLINE_ATTACK,
    PERMUTATION_SCHEMES,
    attack_label,
)


def null_section(
    config: EvalConfig, setup: Setup, scheme: str, progress: Progress
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(p_null, entry)``: a scheme's p-values on human text and its report ``null`` entry."""
    progress.stage(f"null: {scheme} on human text")
    p_null, levels, keys = _null_pvalues(config, setup, scheme, progress)
    entry: dict[str, Any] = {
        "n": int(p_null.size),
        "keys": keys,
        "texts": int(p_null.size // keys),
        "checks": [c.to_dict() for c in metrics.fpr_check(p_null, levels)],
        "p_values": p_null.tolist(),
    }
    if keys >= 2:  # the rate under each fixed key, as a deployment sees it
        entry["per_key"] = metrics.per_key_spread(p_null.reshape(keys, -1), levels)
    return p_null, entry


def _null_pvalues(
    config: EvalConfig, setup: Setup, scheme: str, progress: Progress
) -> tuple[np.ndarray, tuple[float, ...], int]:
    """``(p-values, levels checked, keys)``; key by key, texts in order within a key.

    Permutation-tested schemes use one key on at most ``permutation_null`` texts and are
    checked at levels ≥ 1e-2 only (their resolution is 1e-3).
    """
    human_prompts = [h[0] for h in setup.human]
    human_texts = [h[1] for h in setup.human]
    if scheme in PERMUTATION_SCHEMES:
        n = min(config.permutation_null, len(human_texts))
        det = detector(scheme, config.seed, setup.vocab_size, 0)
        p_null = det.pvalues(human_prompts[:n], human_texts[:n])
        return p_null, tuple(lv for lv in config.levels if lv >= 1e-2), 1
    keys = config.synthid_null_keys if scheme == "synthid" else config.null_keys
    chunks = []
    for k in progress.bar(range(keys), f"null {scheme}", keys):
        det = detector(scheme, config.seed, setup.vocab_size, 1000 + k)
        chunks.append(det.pvalues(human_prompts, human_texts))
    return np.concatenate(chunks), config.levels, keys


def roc_entries(report: dict[str, Any], scheme: str, p_null: np.ndarray) -> dict[str, Any]:
    """A scheme's ``roc`` entry, and ``roc_substitute_0.3`` after the headline attack."""
    fpr_grid, tpr_grid, auc = metrics.roc(np.asarray(report["schemes"][scheme]["p_values"]), p_null)
    out = {"roc": thin_roc(fpr_grid, tpr_grid, auc)}
    sub = np.asarray(
        report["attacks"]
        .get(attack_label(*HEADLINE_ATTACK), {})
        .get(scheme, {})
        .get("p_values", [])
    )
    if sub.size:
        f2, t2, a2 = metrics.roc(sub, p_null)
        out["roc_substitute_0.3"] = thin_roc(f2, t2, a2)
    return out


def thin_roc(fpr: np.ndarray, tpr: np.ndarray, auc: float, points: int = 200) -> dict[str, Any]:
    """The ROC's corners (every point where TPR changes) plus a log-spaced sample of FPR."""
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    change = np.flatnonzero(np.diff(tpr) != 0)
    positive = fpr[fpr > 0]
    grid = np.geomspace(positive.min(), 1.0, points) if positive.size else np.array([], dtype=float)
    sampled = np.searchsorted(fpr, grid).clip(0, len(fpr) - 1)
    idx = np.unique(np.concatenate([[0, len(fpr) - 1], change, change + 1, sampled]))
    return {"fpr": fpr[idx].tolist(), "tpr": tpr[idx].tolist(), "auc": float(auc)}
