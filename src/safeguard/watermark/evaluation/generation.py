"""The generation stage of the study: unwatermarked and watermarked continuations of the
prompts, sampled the same way for every scheme, and the entropy they were sampled at.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safeguard.watermark.evaluation import lm
from safeguard.watermark.evaluation._common import Progress, derived_secret, torch_module
from safeguard.watermark.evaluation.config import COMPETITOR_SCHEMES, OUR_SCHEMES, EvalConfig
from safeguard.watermark.evaluation.corpus import Setup
from safeguard.watermark.evaluation.detectors import competitor, our_key
from safeguard.watermark.evaluation.report import PERMUTATION_SCHEMES


@dataclass
class Texts:
    """The samples every later stage measures (generated token ids only, no prompts)."""

    plain: list[np.ndarray]
    gens: dict[str, list[np.ndarray]] = field(default_factory=dict)
    prompts_of: dict[str, list[np.ndarray]] = field(default_factory=dict)


def generate(
    setup: Setup,
    scheme: str | None,
    prompts: Sequence[np.ndarray],
    config: EvalConfig,
    progress: Progress,
    *,
    model: Any = None,
    new_tokens: int | None = None,
    key_index: int = 0,
) -> list[np.ndarray]:
    """Continuations (generated ids only) of ``prompts`` under ``scheme`` (None: plain)."""
    model = setup.model if model is None else model
    wm = watermarking_config = None
    if scheme in OUR_SCHEMES:
        from safeguard.watermark import Watermarker

        wm = Watermarker(our_key(scheme, config.seed, key_index))
    elif scheme in COMPETITOR_SCHEMES:
        watermarking_config = competitor(
            scheme, config.seed, key_index, int(model.config.vocab_size)
        ).generation_config(model.config)
    return lm.sample(
        model,
        prompts,
        watermarker=wm,
        watermarking_config=watermarking_config,
        new_tokens=config.new_tokens if new_tokens is None else new_tokens,
        temperature=config.temperature,
        seed=int.from_bytes(derived_secret(config.seed, "sample", scheme)[:4], "little"),
        batch_size=config.batch_size,
        progress=lambda it, total: progress.bar(it, f"generate {scheme or 'plain'}", total=total),
    )


def generate_scheme(
    config: EvalConfig, setup: Setup, texts: Texts, scheme: str, progress: Progress
) -> dict[str, Any]:
    """Sample ``scheme``'s texts into ``texts``; returns the scheme's first report entries."""
    n = config.texts
    if scheme in PERMUTATION_SCHEMES:
        n = min(n, config.permutation_texts)
    texts.prompts_of[scheme] = setup.prompts[:n]
    progress.stage(f"generating {n} texts with {scheme}")
    t0 = time.perf_counter()
    texts.gens[scheme] = generate(setup, scheme, texts.prompts_of[scheme], config, progress)
    return {
        "texts": n,
        "generation_seconds": time.perf_counter() - t0,
        "entropy": mean_entropy(
            setup, texts.prompts_of[scheme], texts.gens[scheme], config.temperature
        ),
        "distortion_free": scheme in OUR_SCHEMES,
    }


def mean_entropy(
    setup: Setup,
    prompts: Sequence[np.ndarray],
    gens: Sequence[np.ndarray],
    temperature: float = 1.0,
) -> float:
    """Mean entropy (nats) of the distribution sampled from (the model's at ``temperature``)
    at each generated position."""
    torch = torch_module()
    total, count = 0.0, 0
    with torch.no_grad():
        for p, g in zip(prompts, gens, strict=True):
            ids = torch.as_tensor(np.concatenate([p, g]))[None]
            logits = setup.model(ids).logits[0, len(p) - 1 : -1].double() / temperature
            logp = torch.log_softmax(logits, dim=-1)
            h = -(logp.exp() * logp).sum(-1)
            total += float(h.sum())
            count += int(h.numel())
    return total / max(count, 1)
