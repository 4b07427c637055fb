"""The evaluation runner, the alignment statistics and localisation after their split into
modules: the old import paths still work, and the pieces behave as documented.

Fast and torch-free: the study itself is run end to end by ``tests/e2e/test_eval_cli.py``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def test_runner_keeps_its_names():
    from safeguard.watermark.evaluation import config, report, runner

    for name in runner.__all__:
        assert hasattr(runner, name), name
    assert runner.EvalConfig is config.EvalConfig
    assert runner.quick_config is config.quick_config
    assert runner.format_markdown is report.format_markdown
    assert runner.write_report is report.write_report
    assert ("substitute", 0.3) in runner.DEFAULT_ATTACKS
    assert set(runner.OUR_SCHEMES) == {"gumbel", "exp", "exp-edit"}


def test_importing_the_runner_loads_no_model_code():
    code = (
        "import sys, safeguard.watermark.evaluation.runner\n"
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_config_errors_name_the_argument():
    from safeguard.errors import UsageError
    from safeguard.watermark.evaluation.config import EvalConfig, quick_config

    with pytest.raises(UsageError, match="unknown scheme"):
        EvalConfig(schemes=("gumbel", "nope"))
    with pytest.raises(UsageError, match="`step`"):
        quick_config(new_tokens=5, step=10)
    assert quick_config(texts=3).to_dict()["attacks"][0] == ["substitute", 0.3]


def test_common_helpers():
    from safeguard.watermark.evaluation._common import (
        derived_rng,
        derived_secret,
        finite_or_none,
        pad_nan,
        prefix_lengths,
    )

    assert prefix_lengths(20, 10) == [10, 20]
    assert prefix_lengths(25, 10) == [10, 20, 25]
    padded = pad_nan(np.array([0.5, 0.1]), 3)
    assert padded[:2].tolist() == [0.5, 0.1] and np.isnan(padded[2])
    assert pad_nan(np.arange(5.0), 2).tolist() == [0.0, 1.0]
    assert finite_or_none(float("inf")) is None and finite_or_none(2) == 2.0
    assert derived_secret(0, "a") != derived_secret(1, "a")
    assert derived_rng(0, "x").random() == derived_rng(0, "x").random()


def test_attack_runs_repeat_unicode_attacks_without_normalisation():
    from safeguard.watermark.evaluation.config import quick_config
    from safeguard.watermark.evaluation.robustness import attack_runs

    cfg = quick_config(attacks=(("substitute", 0.3), ("homoglyphs", 0.3)))
    assert attack_runs(cfg) == [
        ("substitute", 0.3, True),
        ("homoglyphs", 0.3, True),
        ("homoglyphs", 0.3, False),
    ]


def test_thin_roc_keeps_corners_and_ends():
    from safeguard.watermark.evaluation import metrics
    from safeguard.watermark.evaluation.calibration import thin_roc

    rng = np.random.default_rng(0)
    fpr, tpr, auc = metrics.roc(rng.random(50) ** 4, rng.random(2000))
    thin = thin_roc(fpr, tpr, auc, points=20)
    assert thin["fpr"][0] == fpr[0] and thin["fpr"][-1] == fpr[-1]
    kept = set(zip(thin["fpr"], thin["tpr"], strict=True))
    for c in np.flatnonzero(np.diff(tpr) != 0):  # both sides of every step
        assert (fpr[c], tpr[c]) in kept and (fpr[c + 1], tpr[c + 1]) in kept
    assert len(thin["tpr"]) < len(tpr) and thin["auc"] == auc


def test_markdown_sections_in_order():
    from safeguard.watermark.evaluation.report import format_markdown

    rate = {"rate": 1.0, "k": 2, "n": 2}
    ttd = {"median": 10.0, "ci": [10.0, None], "curve": [1.0]}
    test = {"difference": 0.0, "ci_low": -0.1, "ci_high": 0.1, "p_value": 0.5, "moved": False}
    report = {
        "config": {
            "levels": [0.01],
            "alpha": 0.01,
            "new_tokens": 20,
            "prompt_tokens": 4,
            "temperature": 0.7,
            "step": 10,
        },
        "model": {"name": "m", "vocab_size": 10, "entropy_plain": 3.0},
        "seconds": 1.0,
        "lengths": [10, 20],
        "schemes": {
            "gumbel": {
                "distortion_free": True,
                "texts": 2,
                "tokens_to_detect": {"clean": ttd, "substitute 0.3": ttd},
                "tpr": [{"level": 0.01, **rate}],
                "roc": {"auc": 1.0},
            }
        },
        "null": {"gumbel": {"n": 100, "checks": []}},
        "attacks": {"substitute 0.3": {"gumbel": {"tpr": [rate]}}},
        "quality": {
            "plain": {"perplexity_mean": 5.0, "self_bleu": 0.1},
            "gumbel": {
                "perplexity_mean": 5.0,
                "log_perplexity_test": test,
                "self_bleu_test": test,
            },
        },
    }
    md = format_markdown(report)
    heads = [line for line in md.splitlines() if line.startswith("#")]
    assert heads == [
        "# Watermark evaluation",
        "## Power, robustness and calibration",
        "## Attacks (TPR at FPR 0.01)",
        "## Quality (watermarked vs unwatermarked samples from the same prompts)",
    ]
    assert "| gumbel | yes | 2 | 10 [10, > 20] | 10 [10, > 20] | 1.00 (2/2) |" in md
    assert md.endswith("\n")


def test_alignment_reexports_its_pieces():
    from safeguard.watermark import alignment, alignment_kernels, alignment_null

    assert alignment.DEFAULT_GAMMA == alignment_kernels.DEFAULT_GAMMA == 4.0
    assert alignment.null_statistics is alignment_null.null_statistics
    assert alignment.key_span is alignment_kernels.key_span
    assert alignment._cached_table is alignment_null._cached_table
    assert alignment._edit_kernel is alignment_kernels._edit_kernel
    assert alignment._null_cube is alignment_null._null_cube


def test_observed_statistic_matches_both_statistics():
    from safeguard.watermark.alignment import exp_edit_statistic, exp_statistic
    from safeguard.watermark.alignment_kernels import observed_statistic

    costs = np.log1p(-np.random.default_rng(3).random((12, 9)))
    assert observed_statistic(costs, "exp", 0.0) == exp_statistic(costs)
    assert observed_statistic(costs, "exp-edit", 2.5) == exp_edit_statistic(costs, 2.5)


def test_sequential_hits_agree_with_the_full_null():
    from safeguard.watermark.alignment_null import count_null_hits, null_statistics

    tok = np.arange(15)
    null = null_statistics(tok, 16, method="exp-edit", gamma=4.0, num_resamples=300, rng=9)
    observed = float(np.quantile(null, 0.2))
    seen, hits, stopped = count_null_hits(
        observed, tok, 16, "exp-edit", 4.0, 300, rng=9, early_stop=None, num_threads=1
    )
    assert (seen, hits, stopped) == (300, int((null <= np.float32(observed)).sum()), False)
    seen, hits, stopped = count_null_hits(
        observed, tok, 16, "exp-edit", 4.0, 300, rng=9, early_stop=5, num_threads=2
    )
    fifth = int(np.flatnonzero(null <= np.float32(observed))[4])
    assert (seen, hits, stopped) == (fifth + 1, 5, True)


def test_localize_spans_merge_and_start_at_the_context():
    from safeguard.watermark.localize import _token_spans

    positions = np.arange(10, 110)
    spans = _token_spans([(0, 20, 0.01), (15, 40, 0.001), (70, 80, 0.02)], positions, 2)
    assert [(s.start, s.end, s.p_value) for s in spans] == [(8, 50, 0.001), (78, 90, 0.02)]
