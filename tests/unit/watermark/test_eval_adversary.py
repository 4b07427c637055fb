"""The evaluation's adversary stage, without a model: the stream and the forger's oracles."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from safeguard.watermark.evaluation._common import Progress
from safeguard.watermark.evaluation.adversary import forge, forgery_section, stream_section
from safeguard.watermark.evaluation.config import quick_config
from safeguard.watermark.evaluation.detectors import our_key
from safeguard.watermark.evaluation.report import _adversary_lines


def _setup(n: int = 600, vocab: int = 3000):
    rng = np.random.default_rng(0)
    human = [(rng.integers(0, vocab, 16), rng.integers(0, vocab, 120)) for _ in range(n)]
    return SimpleNamespace(human=human, vocab_size=vocab)


def test_stream_is_over_dispersed_stateless_and_binomial_through_a_memory():
    # 20 keys x 600 near-duplicate texts. Stateless at 0.01 the per-key counts spread wider
    # than binomial (dispersion p < 1e-3 on this fixed corpus); through a memory the test
    # at 1e-3 would fail a correct detector 0.1% of the time.
    config = quick_config(null_keys=20, levels=(0.05, 0.01))
    out = stream_section(config, _setup(), Progress(None))
    stateless = {r["level"]: r for r in out["stateless"]}
    memory = {r["level"]: r for r in out["memory"]}
    assert stateless[0.05]["dispersion_p"] < 1e-3
    assert memory[0.05]["dispersion_p"] > 1e-3 and memory[0.01]["dispersion_p"] > 1e-3
    assert len(out["memory_texts_scored"]) == 20


def test_the_forger_climbs_p_values_but_not_verdicts_or_a_memory():
    # 4 keys, 1,000 queries each. With exact p-values the forger reaches 1e-3 on every key
    # (its competence check); verdicts only and a memory leave it a blind searcher, whose
    # texts the key holder's stateless detector confirms at most by luck (about 1e-3 a try).
    config = quick_config(forgery_keys=4, forgery_budget=1000)
    out = forgery_section(config, _setup(50), Progress(None))
    rows = {r["oracle"]: r for r in out["rows"]}
    assert rows["p-values"]["confirmed"] == 4
    assert rows["decision"]["confirmed"] <= 1
    assert rows["p-values through a memory"]["confirmed"] <= 1
    assert any(
        "Forgery with detection access" in line for line in _adversary_lines({"forgery": out})
    )


def test_forge_returns_none_when_the_budget_runs_out():
    key = our_key("gumbel", 0, 7)
    assert forge(key, "decision", 3000, 10, np.random.default_rng(1)) is None
