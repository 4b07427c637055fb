"""The adversary stage of the study (``gumbel``): one key under a repetitive stream, and a
forger with detection access.

* **Stream.** A deployment's texts share phrases. Texts are cut from a pool of human
  snippets (each text 5 snippets of 40 tokens drawn from a pool of up to 200), so every
  snippet recurs in many texts; each key tests the whole stream, stateless and through a
  :class:`~safeguard.watermark.DetectionMemory`. Stateless, the per-key false-positive
  counts spread wider than a binomial (the texts share scored pairs); through the memory
  they are binomial over the texts that score a pair (:mod:`safeguard.watermark.memory`).
* **Forgery.** The strongest simple forger against a detector oracle: hill-climbing. From a
  random text it sends rounds of one-token variants and keeps the one the oracle ranks
  best; it wins if the oracle flags a text at 1e-3 within its query budget. Three oracles:
  verdicts only (the detection service's default), exact p-values (an untrusted caller
  given statistics, worse than the service's coarse grid), and p-values through a
  detection memory. Under 16 scored tokens no oracle gives a p-value (as the service).
  A forgery is *confirmed* when the key holder's stateless detector flags the full text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safeguard.watermark.evaluation import metrics
from safeguard.watermark.evaluation._common import Progress, derived_rng
from safeguard.watermark.evaluation.config import EvalConfig
from safeguard.watermark.evaluation.corpus import Setup
from safeguard.watermark.evaluation.detectors import our_key
from safeguard.watermark.result import MIN_SCORED_TOKENS

SNIPPET, PER_TEXT, POOL = 40, 5, 200
FORGERY_LEVEL = 1e-3
FORGERY_LENGTH, FORGERY_ROUND = 24, 255
ORACLES = ("decision", "p-values", "p-values through a memory")


def adversary_section(config: EvalConfig, setup: Setup, progress: Progress) -> dict[str, Any]:
    """``{"stream": ..., "forgery": ...}`` for ``gumbel``."""
    out: dict[str, Any] = {}
    if config.null_keys >= 2:
        out["stream"] = stream_section(config, setup, progress)
    if config.forgery_keys > 0:
        out["forgery"] = forgery_section(config, setup, progress)
    return out


def _stream(config: EvalConfig, setup: Setup) -> list[tuple[np.ndarray, np.ndarray]]:
    """Texts of 5 human snippets each, drawn with replacement from a pool (near-duplicates)."""
    pool = [t[:SNIPPET] for _, t in setup.human[:POOL] if len(t) >= SNIPPET]
    rng = derived_rng(config.seed, "adversary", "stream")
    return [
        (prompt, np.concatenate([pool[j] for j in rng.integers(0, len(pool), PER_TEXT)]))
        for prompt, _ in setup.human
    ]


def stream_section(config: EvalConfig, setup: Setup, progress: Progress) -> dict[str, Any]:
    """Per-key spread on the near-duplicate stream, stateless and through a memory."""
    from safeguard.watermark import DetectionMemory, Watermarker

    progress.stage("adversary: one key per deployment, on a stream of near-duplicates")
    stream = _stream(config, setup)
    prompts, texts = [p for p, _ in stream], [t for _, t in stream]
    plain, remembered, tested = [], [], []
    for k in progress.bar(range(config.null_keys), "stream keys", config.null_keys):
        wm = Watermarker(our_key("gumbel", config.seed, 1000 + k))
        plain.append([r.p_value for r in wm.detect_batch(texts, prompts=prompts, num_threads=1)])
        memory = DetectionMemory(wm.key.key_id)
        res = wm.detect_batch(texts, prompts=prompts, num_threads=1, memory=memory)
        remembered.append([r.p_value for r in res])
        tested.append(sum(r.num_scored > 0 for r in res))
    return {
        "texts": len(texts),
        "snippets": f"{PER_TEXT} x {SNIPPET} tokens from a pool of {min(POOL, len(setup.human))}",
        "stateless": metrics.per_key_spread(plain, config.levels),
        "memory": metrics.per_key_spread(remembered, config.levels),
        "memory_texts_scored": tested,
    }


def forgery_section(config: EvalConfig, setup: Setup, progress: Progress) -> dict[str, Any]:
    """Hill-climbing forgeries against each oracle, ``forgery_keys`` keys each."""
    progress.stage(
        f"adversary: forging at {FORGERY_LEVEL:g} with {config.forgery_budget} queries per key"
    )
    rows = []
    for oracle in ORACLES:
        flagged = confirmed = 0
        for k in progress.bar(
            range(config.forgery_keys), f"forger ({oracle})", config.forgery_keys
        ):
            key = our_key("gumbel", config.seed, 2000 + k)
            rng = derived_rng(config.seed, "adversary", "forgery", oracle, k)
            text = forge(key, oracle, setup.vocab_size, config.forgery_budget, rng)
            if text is not None:
                flagged += 1
                confirmed += _stateless_flags(key, text)
        rows.append(
            {
                "oracle": oracle,
                "keys": config.forgery_keys,
                "queries_per_key": config.forgery_budget,
                "flagged": flagged,
                "confirmed": confirmed,
            }
        )
    return {
        "level": FORGERY_LEVEL,
        "length": FORGERY_LENGTH,
        "blind_rate": 1 - (1 - FORGERY_LEVEL) ** config.forgery_budget,
        "rows": rows,
    }


def _stateless_flags(key: Any, text: np.ndarray) -> bool:
    from safeguard.watermark import Watermarker

    return bool(Watermarker(key).detect(text, false_positive_rate=FORGERY_LEVEL).is_watermarked)


def forge(
    key: Any, oracle: str, vocab_size: int, budget: int, rng: np.random.Generator
) -> np.ndarray | None:
    """Hill-climb for a text the oracle flags at 1e-3; the text, or None when the budget runs out.

    Args:
        key: The key under attack (only the oracle uses it).
        oracle: One of :data:`ORACLES`.
        vocab_size: Token ids are drawn below it.
        budget: Texts the forger may have tested.
        rng: The forger's randomness.
    """
    from safeguard.watermark import DetectionMemory, Watermarker

    if oracle not in ORACLES:
        raise ValueError(f"unknown oracle {oracle!r}; one of {', '.join(ORACLES)}")
    wm = Watermarker(key)
    extra = {"memory": DetectionMemory(key.key_id)} if oracle.endswith("memory") else {}
    base = rng.integers(0, vocab_size, FORGERY_LENGTH)
    best, sent = 1.0, 0
    while sent < budget:
        size = min(FORGERY_ROUND, budget - sent)
        variants = np.repeat(base[None, :], size, axis=0)
        variants[np.arange(size), rng.integers(4, FORGERY_LENGTH, size)] = rng.integers(
            0, vocab_size, size
        )
        results = wm.detect_batch(
            list(variants), false_positive_rate=FORGERY_LEVEL, num_threads=1, **extra
        )
        sent += size
        for v, r in zip(variants, results, strict=True):
            if r.is_watermarked:
                return v
        if oracle == "decision":
            continue  # verdicts only: nothing to climb on
        ps = [r.p_value if r.num_scored >= MIN_SCORED_TOKENS else 1.0 for r in results]
        j = int(np.argmin(ps))
        if ps[j] < best:
            base, best = variants[j], ps[j]
    return None
