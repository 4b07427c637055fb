"""The robustness stage of the study: each attack of
:mod:`~safeguard.watermark.evaluation.attacks` applied to every scheme's texts, and the
p-values and TPR that survive it.

Text-level Unicode attacks are run twice: with the detector's normalisation (the default
detection path) and without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from safeguard.watermark.evaluation import attacks, metrics
from safeguard.watermark.evaluation._common import Progress, derived_rng
from safeguard.watermark.evaluation.config import EvalConfig
from safeguard.watermark.evaluation.corpus import Setup
from safeguard.watermark.evaluation.detectors import detector
from safeguard.watermark.evaluation.generation import Texts
from safeguard.watermark.evaluation.report import UNICODE_ATTACKS, attack_label

_TEXT_ATTACKS = {
    "homoglyphs": attacks.homoglyphs,
    "zero-width": attacks.zero_width,
    "whitespace": attacks.whitespace,
}


def attack_texts(
    name: str,
    rate: float,
    gens: Sequence[np.ndarray],
    setup: Setup,
    config: EvalConfig,
    *,
    normalize: bool,
) -> list[np.ndarray]:
    """``gens`` after the attack ``name`` at ``rate`` (seeded by the run, the name and rate)."""
    rng = derived_rng(config.seed, "attack", name, rate)
    if name in UNICODE_ATTACKS:
        return _unicode_attack(name, rate, gens, setup.tokenizer, rng, normalize=normalize)
    human = [h for _, h in setup.human]
    result = []
    for i, g in enumerate(gens):
        extra = {}
        if name == "dilute":
            extra["human_ids"] = _dilution_host(human, i, g.size, rate)
        result.append(
            np.asarray(
                attacks.apply_attack(
                    name, g, rate=rate, tokenizer=setup.tokenizer, rng=rng, **extra
                ),
                dtype=np.int64,
            )
        )
    return result


def _unicode_attack(
    name: str,
    rate: float,
    gens: Sequence[np.ndarray],
    tok: Any,
    rng: np.random.Generator,
    *,
    normalize: bool,
) -> list[np.ndarray]:
    """Decode, edit characters, optionally normalise as the detector does, re-encode."""
    from safeguard.watermark.normalize import normalize_text

    fn = _TEXT_ATTACKS[name]
    out = []
    for g in gens:
        text = fn(tok.decode(g.tolist()), rate, rng=rng)
        if normalize:
            text = normalize_text(text)
        out.append(np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64))
    return out


def _dilution_host(human: Sequence[np.ndarray], i: int, size: int, rate: float) -> np.ndarray:
    """Human tokens enough to make up the share ``rate`` of text ``i`` once diluted."""
    need = math.ceil(size * rate / max(1e-9, 1 - rate)) + 1
    pool, j = [], 0
    while sum(h.size for h in pool) < need and j < len(human):
        pool.append(human[(i * 7919 + 13 + j) % len(human)])
        j += 1
    return np.concatenate(pool)


def attack_runs(config: EvalConfig) -> list[tuple[str, float, bool]]:
    """``(name, rate, normalize)`` of every attack run: Unicode attacks also unnormalised."""
    runs: list[tuple[str, float, bool]] = []
    for name, rate in config.attacks:
        runs.append((name, rate, True))
        if name in UNICODE_ATTACKS:
            runs.append((name, rate, False))
    return runs


def robustness(
    config: EvalConfig, setup: Setup, texts: Texts, progress: Progress
) -> dict[str, dict[str, Any]]:
    """The report's ``attacks`` section: per attack label, per scheme, p-values and TPR."""
    out: dict[str, dict[str, Any]] = {}
    for name, rate, normalize in attack_runs(config):
        label = attack_label(name, rate, normalize)
        row: dict[str, Any] = {}
        for scheme in config.schemes:
            det = detector(scheme, config.seed, setup.vocab_size)
            attacked = attack_texts(
                name, rate, texts.gens[scheme], setup, config, normalize=normalize
            )
            p = det.pvalues(texts.prompts_of[scheme], attacked)
            row[scheme] = {
                "p_values": p.tolist(),
                "median_p": float(np.median(p)),
                "tpr": [
                    r.to_dict() for r in metrics.tpr_at_fpr(p, config.levels, seed=config.seed)
                ],
                "mean_tokens": float(np.mean([a.size for a in attacked])),
            }
        out[label] = row
        progress.stage(
            f"attack {label}: "
            + ", ".join(
                f"{s} TPR@{config.levels[0]:g} {row[s]['tpr'][0]['rate']:.2f}"
                for s in config.schemes
            )
        )
    return out
