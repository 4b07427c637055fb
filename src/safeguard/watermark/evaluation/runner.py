"""The watermark evaluation study behind ``safeguard eval``.

One run generates text on one model and one set of prompts under every scheme asked for
(safeguard's ``gumbel`` / ``exp`` / ``exp-edit`` and transformers' KGW and SynthID-Text),
then measures, on the same texts:

* power: p-values at the full length, TPR at each false-positive level, tokens to reach
  p ≤ α (prefix scan) with a bootstrap interval on the median, ROC curves;
* robustness: the same after each attack of :mod:`~safeguard.watermark.evaluation.attacks`
  (token substitution / insertion / deletion, word deletion, dilution in human text,
  decode → re-encode, Unicode attacks with and without detection-side normalisation);
* calibration: p-values of human text (held-out passages never seen by the model or the
  keys) under many keys, with the observed false-positive share at each level and its
  binomial interval;
* quality: perplexity under the model and self-BLEU of watermarked vs unwatermarked
  samples from the same prompts, each with a two-sample test at a stated level;
* power against entropy on a synthetic next-token source whose entropy is swept;
* localisation of watermarked spans in mixed documents (``gumbel``).

Results are returned as a dict and written by :func:`write_report` as ``report.json``,
``report.md`` and PNG plots. Needs the ``hf`` and ``plots`` extras (torch, transformers,
matplotlib).

This module assembles the report; each stage lives in its own module:
:mod:`~safeguard.watermark.evaluation.config` (what a run measures),
:mod:`~safeguard.watermark.evaluation.corpus` (model, human documents, prompts),
:mod:`~safeguard.watermark.evaluation.detectors` (every scheme behind one interface),
:mod:`~safeguard.watermark.evaluation.generation` (samples and their entropy),
:mod:`~safeguard.watermark.evaluation.power` (p-values, TPR, tokens to detect, the entropy
sweep), :mod:`~safeguard.watermark.evaluation.robustness` (attacks),
:mod:`~safeguard.watermark.evaluation.calibration` (the null and ROC),
:mod:`~safeguard.watermark.evaluation.sample_quality` (perplexity and self-BLEU tests) and
:mod:`~safeguard.watermark.evaluation.localization` (spans in mixed documents).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from safeguard.watermark.evaluation._common import Progress, prefix_lengths
from safeguard.watermark.evaluation.adversary import adversary_section
from safeguard.watermark.evaluation.calibration import null_section, roc_entries
from safeguard.watermark.evaluation.config import (
    COMPETITOR_SCHEMES,
    DEFAULT_ATTACKS,
    OUR_SCHEMES,
    EvalConfig,
    quick_config,
)
from safeguard.watermark.evaluation.corpus import Setup, environment, load_setup, model_section
from safeguard.watermark.evaluation.generation import (
    Texts,
    generate,
    generate_scheme,
    mean_entropy,
)
from safeguard.watermark.evaluation.localization import localization
from safeguard.watermark.evaluation.power import detect_scheme, entropy_sweep
from safeguard.watermark.evaluation.report import format_markdown, write_report
from safeguard.watermark.evaluation.robustness import robustness
from safeguard.watermark.evaluation.sample_quality import quality_section

__all__ = [
    "COMPETITOR_SCHEMES",
    "DEFAULT_ATTACKS",
    "OUR_SCHEMES",
    "EvalConfig",
    "format_markdown",
    "quick_config",
    "run_eval",
    "write_report",
]

log = logging.getLogger(__name__)


def run_eval(
    config: EvalConfig | None = None, *, echo: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the study; returns the report as a JSON-serialisable dict (see :func:`write_report`)."""
    config = config or EvalConfig()
    progress = Progress(echo)
    started = time.perf_counter()
    setup = load_setup(config, progress)
    report: dict[str, Any] = {
        "config": config.to_dict(),
        "environment": environment(),
        "model": model_section(config, setup),
        "schemes": {},
        "attacks": {},
        "null": {},
        "quality": {},
    }
    lengths = prefix_lengths(config.new_tokens, config.step)
    report["lengths"] = lengths
    texts = _generate_all(config, setup, report, progress)
    for scheme in config.schemes:
        report["schemes"][scheme].update(
            detect_scheme(config, setup, texts, scheme, lengths, progress)
        )
    report["attacks"].update(robustness(config, setup, texts, progress))
    for scheme in config.schemes:
        p_null, report["null"][scheme] = null_section(config, setup, scheme, progress)
        report["schemes"][scheme].update(roc_entries(report, scheme, p_null))
    report["quality"].update(quality_section(config, setup, texts, progress))
    if config.entropies:
        report["entropy_sweep"] = entropy_sweep(config, setup, progress)
    if "gumbel" in config.schemes:
        report["adversary"] = adversary_section(config, setup, progress)
    if config.localize_docs and "gumbel" in config.schemes:
        report["localization"] = localization(config, setup, texts.gens["gumbel"], progress)
    report["seconds"] = time.perf_counter() - started
    progress.stage(f"done in {report['seconds']:.0f} s")
    return report


def _generate_all(
    config: EvalConfig, setup: Setup, report: dict[str, Any], progress: Progress
) -> Texts:
    """Plain samples, then each scheme's; records their entropies and generation times."""
    progress.stage("generating unwatermarked samples")
    texts = Texts(plain=generate(setup, None, setup.prompts, config, progress))
    report["model"]["entropy_plain"] = mean_entropy(
        setup, setup.prompts, texts.plain, config.temperature
    )
    for scheme in config.schemes:
        report["schemes"][scheme] = generate_scheme(config, setup, texts, scheme, progress)
    return texts
