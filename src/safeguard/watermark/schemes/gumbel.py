"""``gumbel``: exponential-minimum (Gumbel-max) sampling keyed by the previous tokens.

Aaronson (2022) and Fernandez et al. (2023, "Three Bricks to Consolidate Watermarks
for LLMs"): with uniforms ``u_v = PRF(key, y_{t-h..t-1}, v)`` the next token is
``argmax_v u_v^{1/p_v}`` (equivalently ``argmin_v -log(u_v)/p_v``), which is
distributed exactly as ``p`` over the key. Detection scores

    S = sum_t -log(1 - u_{y_t})

over tokens whose ``h``-token context has not been scored before. Under the null
(text independent of the key) every term is Exp(1) and independent, so
``S ~ Gamma(N, 1)`` and ``p = Q(N, S)`` exactly (Fernandez et al., sec. III-B).

Repeated contexts: a context that recurs within one generation would reuse the same
uniforms, correlating tokens and breaking distortion-freeness across the sequence.
With ``skip_repeated_context`` (default) generation samples such a step with the
model's own randomness and detection scores each context once (first occurrence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from safeguard.errors import ConfigError
from safeguard.watermark import prf
from safeguard.watermark.result import DetectionResult
from safeguard.watermark.schemes.base import GenerationState, Scheme, SchemeConfig
from safeguard.watermark.schemes.registry import register_scheme
from safeguard.watermark.stats import gamma_pvalue, min_tokens_for_fpr

if TYPE_CHECKING:
    import torch

__all__ = ["GumbelConfig", "GumbelScheme"]


@dataclass(frozen=True, kw_only=True)
class GumbelConfig(SchemeConfig):
    """Parameters of the ``gumbel`` scheme.

    Attributes:
        context_width: Number ``h`` of previous tokens that key the PRF (1–16). Larger is
            more secure against key estimation, smaller is more robust to edits.
        skip_repeated_context: Leave steps with an already-seen context to ordinary sampling
            (generation) and score each context once (detection).
    """

    context_width: int = 4
    skip_repeated_context: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.context_width, int) or not 1 <= self.context_width <= 16:
            raise ConfigError(
                f"`context_width` (={self.context_width!r}) must be an integer in 1..16; typical values are 2-4"
            )


def sliding_contexts(seq: np.ndarray, start: int, width: int) -> np.ndarray:
    """Contexts of positions ``start..len(seq)-1``: shape ``(len(seq) - start, width)``.

    Positions before the start of ``seq`` hold :data:`~safeguard.watermark.prf.SENTINEL`.
    """
    padded = np.concatenate([np.full(width, prf.SENTINEL, dtype=np.int64), seq.astype(np.int64)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    # windows[k] covers padded[k : k + width] = seq[k - width : k]; the context of seq[t] is windows[t].
    return windows[start : len(seq)]


class GumbelScheme(Scheme):
    name = "gumbel"
    config: GumbelConfig

    def __init__(self, key: Any, config: GumbelConfig) -> None:
        super().__init__(key, config)
        self.context_key = key.prf_key("context")

    # generation side ------------------------------------------------------------------------
    def start(
        self,
        batch_size: int,
        prompt_len: int,
        pad_counts: list[int],
        generator: torch.Generator | None,
    ) -> GenerationState:
        state = super().start(batch_size, prompt_len, pad_counts, generator)
        state.data["seen"] = [set() for _ in range(batch_size)]
        return state

    def rows(
        self, state: GenerationState, input_ids: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = self.config.context_width
        length = input_ids.shape[1]
        tail = input_ids[:, -h:].detach().cpu().numpy().astype(np.int64)
        ctx = np.full((tail.shape[0], h), prf.SENTINEL, dtype=np.int64)
        ctx[:, h - tail.shape[1] :] = tail
        # Left padding is not context: the positions it occupies read as "before the start".
        first_col = length - h
        for r, pads in enumerate(state.pad_counts):
            if pads > first_col:
                ctx[r, : min(h, pads - first_col)] = prf.SENTINEL
        a, b = prf.context_words(self.context_key, ctx)
        active = np.ones(ctx.shape[0], dtype=bool)
        if self.config.skip_repeated_context:
            for r, pair in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
                seen = state.data["seen"][r]
                if pair in seen:
                    active[r] = False
                else:
                    seen.add(pair)
        return a, b, active

    # detection side -------------------------------------------------------------------------
    def scored_uniforms(self, tokens: np.ndarray, prompt: np.ndarray | None) -> np.ndarray:
        """Uniforms of the tokens that enter the statistic (shape ``(num_scored,)``)."""
        h = self.config.context_width
        if prompt is not None and len(prompt):
            seq = np.concatenate([np.asarray(prompt, dtype=np.int64), tokens])
            start = len(prompt)
        else:
            # Without the prompt the first h tokens have an unknown context: skip them.
            seq, start = tokens, min(h, len(tokens))
        if start >= len(seq):
            return np.empty(0)
        contexts = sliding_contexts(seq, start, h)
        a, b = prf.context_words(self.context_key, contexts)
        targets = seq[start:]
        if self.config.skip_repeated_context:
            combined = (a << np.uint64(32)) | b
            _, first = np.unique(combined, return_index=True)
            keep = np.sort(first)
            a, b, targets = a[keep], b[keep], targets[keep]
        return prf.uniforms(self.token_key, a, b, targets)

    def detect(
        self,
        tokens: np.ndarray,
        *,
        prompt: np.ndarray | None,
        false_positive_rate: float,
        **options: Any,
    ) -> DetectionResult:
        if options:
            raise ConfigError(
                f"unknown detection option(s) for gumbel: {', '.join(sorted(options))}"
            )
        u = self.scored_uniforms(tokens, prompt)
        score = float(-np.log1p(-u).sum())
        p_value = gamma_pvalue(score, u.size)
        warnings: list[str] = []
        needed = min_tokens_for_fpr(false_positive_rate)
        if u.size < needed:
            warnings.append(
                f"only {u.size} tokens could be scored; at a false-positive rate of {false_positive_rate:g} "
                f"detection typically needs at least {needed} (longer text, or a higher rate)"
            )
        return DetectionResult(
            p_value=p_value,
            score=score,
            num_tokens=len(tokens),
            num_scored=int(u.size),
            is_watermarked=p_value <= false_positive_rate,
            false_positive_rate=false_positive_rate,
            key_id=self.key.key_id,
            scheme=self.name,
            method="gamma-exact",
            warnings=tuple(warnings),
        )


register_scheme("gumbel", GumbelConfig, GumbelScheme)
