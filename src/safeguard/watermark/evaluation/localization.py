"""The localisation stage of the study (``gumbel``): watermarked spans found in documents
that mix a watermarked text into human text, and spans wrongly found in human-only ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from safeguard.watermark.evaluation import attacks, metrics
from safeguard.watermark.evaluation._common import Progress, derived_rng
from safeguard.watermark.evaluation.config import EvalConfig
from safeguard.watermark.evaluation.corpus import Setup
from safeguard.watermark.evaluation.detectors import our_key


def localization(
    config: EvalConfig, setup: Setup, watermarked: Sequence[np.ndarray], progress: Progress
) -> dict[str, Any]:
    """The report's ``localization`` section."""
    from safeguard.watermark import Watermarker

    progress.stage("localisation on mixed documents")
    wm = Watermarker(our_key("gumbel", config.seed, 0))
    human = [h for _, h in setup.human]
    found, errors = _mixed_documents(config, wm, human, watermarked)
    false_docs = 0
    for i in range(config.localize_docs):
        doc = np.concatenate([human[(2 * i + 1) % len(human)], human[(2 * i + 2) % len(human)]])
        if wm.localize(doc, false_positive_rate=config.alpha).spans:
            false_docs += 1
    check = metrics.fpr_check(
        np.array([0.0] * false_docs + [1.0] * (config.localize_docs - false_docs)), (config.alpha,)
    )
    return {
        "documents": config.localize_docs,
        "watermarked_tokens": int(watermarked[0].size),
        "found_share": found / config.localize_docs,
        "boundary_error_median": float(np.median(errors)) if errors else None,
        "boundary_error_p90": float(np.quantile(errors, 0.9)) if errors else None,
        "human_documents_with_spans": false_docs,
        "family_wise_check": check[0].to_dict(),
    }


def _mixed_documents(
    config: EvalConfig, wm: Any, human: Sequence[np.ndarray], watermarked: Sequence[np.ndarray]
) -> tuple[int, list[int]]:
    """``(documents whose span was found, boundary errors of the best overlapping spans)``."""
    rng = derived_rng(config.seed, "localize")
    found, errors = 0, []
    for i in range(config.localize_docs):
        gen = watermarked[i % len(watermarked)]
        host = np.concatenate([human[(2 * i) % len(human)], human[(2 * i + 1) % len(human)]])
        doc, mask = attacks.dilute(gen, host, gen.size / (gen.size + host.size), rng=rng)
        result = wm.localize(doc, false_positive_rate=config.alpha)
        truth = np.flatnonzero(mask)
        t0, t1 = int(truth[0]), int(truth[-1]) + 1
        hits = [s for s in result.spans if s.start < t1 and s.end > t0]
        if hits:
            found += 1
            best = max(hits, key=lambda s: min(s.end, t1) - max(s.start, t0))
            errors.append(abs(best.start - t0) + abs(best.end - t1))
    return found, errors
