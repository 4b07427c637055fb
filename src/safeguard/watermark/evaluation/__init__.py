"""Watermark evaluation: attacks, metrics, quality checks and the `safeguard eval` runner.

The pieces are plain modules so that a study can use any of them alone:

* :mod:`~safeguard.watermark.evaluation.attacks` — token-, word- and Unicode-level edits;
* :mod:`~safeguard.watermark.evaluation.metrics` — TPR at a chosen FPR, ROC, tokens to
  detect, bootstrap intervals, binomial checks of the false-positive rate;
* :mod:`~safeguard.watermark.evaluation.quality` — perplexity and self-BLEU, with a
  two-sample test that the watermark does not move them;
* :mod:`~safeguard.watermark.evaluation.synthetic` — a next-token source whose entropy is
  set by the caller, for power curves against entropy;
* :mod:`~safeguard.watermark.evaluation.competitors` — transformers' KGW and SynthID-Text
  with exact p-values, run side by side on the same model and prompts;
* :mod:`~safeguard.watermark.evaluation.lm` — the small evaluation language model shipped
  with the package, its held-out human text, and sampling continuations for any scheme;
* :mod:`~safeguard.watermark.evaluation.runner` — the study behind ``safeguard eval``;
  its stages live in ``config``, ``corpus``, ``detectors``, ``generation``, ``power``,
  ``robustness``, ``calibration``, ``sample_quality`` and ``localization``;
* :mod:`~safeguard.watermark.evaluation.report` — its report: JSON, Markdown tables, plots.

Importing this package imports nothing heavy; each module states what it needs.
"""
