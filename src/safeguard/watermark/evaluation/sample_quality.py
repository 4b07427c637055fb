"""The quality stage of the study: perplexity under the model and self-BLEU of watermarked
samples against unwatermarked samples from the same prompts, each with a two-sample test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from safeguard.watermark.evaluation import quality
from safeguard.watermark.evaluation._common import Progress, as_dict
from safeguard.watermark.evaluation.config import EvalConfig
from safeguard.watermark.evaluation.corpus import Setup
from safeguard.watermark.evaluation.generation import Texts


def quality_section(
    config: EvalConfig, setup: Setup, texts: Texts, progress: Progress
) -> dict[str, Any]:
    """The report's ``quality`` section: ``plain``, then one entry per scheme."""
    progress.stage("quality: perplexity and self-BLEU")
    plain_ppl = _perplexity(setup, setup.prompts, texts.plain)
    out: dict[str, Any] = {
        "plain": {
            "perplexity_mean": float(np.mean(plain_ppl)),
            "self_bleu": float(quality.self_bleu([g.tolist() for g in texts.plain])),
        }
    }
    for scheme in config.schemes:
        ppl = _perplexity(setup, texts.prompts_of[scheme], texts.gens[scheme])
        test = quality.compare(
            np.log(ppl), np.log(plain_ppl[: len(ppl)]), alpha=config.alpha, seed=config.seed
        )
        bleu = quality.compare_self_bleu(
            [g.tolist() for g in texts.gens[scheme]],
            [g.tolist() for g in texts.plain[: len(ppl)]],
            alpha=config.alpha,
            seed=config.seed,
        )
        out[scheme] = {
            "perplexity_mean": float(np.mean(ppl)),
            "log_perplexity_test": as_dict(test),
            "self_bleu_test": as_dict(bleu),
        }
    return out


def _perplexity(
    setup: Setup, prompts: Sequence[np.ndarray], gens: Sequence[np.ndarray]
) -> np.ndarray:
    """Perplexity of each continuation under the model, given its prompt."""
    return quality.perplexity(
        setup.model,
        [np.concatenate([p, g]) for p, g in zip(prompts, gens, strict=True)],
        prompt_lengths=[len(p) for p in prompts],
    )
