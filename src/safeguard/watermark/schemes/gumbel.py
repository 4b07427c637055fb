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

Repeated contexts across texts: the same holds between texts. Two texts generated under
one key that reach the same ``h``-token context would draw the same uniforms there and,
where the model's distributions are alike, continue identically (a repeated prompt gives
the same text every time). The scheme therefore also remembers the contexts earlier texts
of the same :class:`~safeguard.watermark.Watermarker` used (``context_memory`` of them,
in a direct-mapped table of their 64-bit context words) and leaves a remembered context to
the model's own randomness. Every PRF row is then used at most once, so, conditionally on
everything generated before, each token is drawn exactly from the model's distribution:
over the key, texts generated one after another are jointly distributed as independent
samples of the model, not only each text on its own (exact while the table still holds
every context used; an evicted context can be used again). Detection is unchanged: a
token sampled without the watermark scores like unwatermarked text, which keeps p-values
valid and costs only the power of that token.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from safeguard.errors import ConfigError
from safeguard.watermark import prf
from safeguard.watermark.memory import DetectionMemory, pair_words, text_digest
from safeguard.watermark.result import DetectionResult
from safeguard.watermark.schemes.base import GenerationState, Scheme, SchemeConfig
from safeguard.watermark.schemes.registry import register_scheme
from safeguard.watermark.stats import gamma_pvalue, min_tokens_for_fpr

if TYPE_CHECKING:
    import torch

__all__ = ["ContextMemory", "GumbelConfig", "GumbelScheme"]

#: Default number of contexts remembered across texts (8 MiB of table per Watermarker).
DEFAULT_CONTEXT_MEMORY = 1 << 20
MAX_CONTEXT_MEMORY = 1 << 28


@dataclass(frozen=True, kw_only=True)
class GumbelConfig(SchemeConfig):
    """Parameters of the ``gumbel`` scheme.

    Attributes:
        context_width: Number ``h`` of previous tokens that key the PRF (1–16). Larger is
            more secure against key estimation, smaller is more robust to edits.
        skip_repeated_context: Leave steps with an already-seen context to ordinary sampling
            (generation) and score each context once (detection).
        context_memory: Generation only: how many contexts used by earlier texts of the same
            ``Watermarker`` are remembered and left to ordinary sampling when they recur, so
            that texts generated under one key stay as diverse as the model's own samples
            (a power of two is used, at least this large; 8 bytes each). ``0`` remembers
            contexts within each text only. Needs ``skip_repeated_context``.
    """

    context_width: int = 4
    skip_repeated_context: bool = True
    context_memory: int = DEFAULT_CONTEXT_MEMORY

    def __post_init__(self) -> None:
        if not isinstance(self.context_width, int) or not 1 <= self.context_width <= 16:
            raise ConfigError(
                f"`context_width` (={self.context_width!r}) must be an integer in 1..16; typical values are 2-4"
            )
        memory = self.context_memory
        if (
            isinstance(memory, bool)
            or not isinstance(memory, int)
            or not 0 <= memory <= MAX_CONTEXT_MEMORY
        ):
            raise ConfigError(
                f"`context_memory` (={memory!r}) must be an integer in 0..{MAX_CONTEXT_MEMORY}; "
                f"the default is {DEFAULT_CONTEXT_MEMORY} (0 remembers contexts within each text only)"
            )


class ContextMemory:
    """Contexts already used by earlier texts: a direct-mapped table of 64-bit context words.

    A word lives in slot ``word mod size`` (context words are pseudorandom, so slots are
    uniform); a newer word that lands in an occupied slot evicts the older one. Lookups
    never report a context that was not used (barring equal 64-bit words); an evicted one
    reads as unused. Thread-safe: one ``Watermarker`` may generate from several threads.
    A pickled copy (another process) starts with an empty table.

    >>> memory = ContextMemory(4)
    >>> memory.use(7), memory.use(7), memory.use(11)
    (True, False, True)
    >>> memory.lookups, memory.repeats
    (3, 1)
    """

    def __init__(self, capacity: int) -> None:
        self.size = 1 << max(0, (capacity - 1).bit_length())
        self._table: np.ndarray | None = None  # allocated on first use
        self._lock = threading.Lock()
        self.lookups = 0
        self.repeats = 0

    def use(self, word: int) -> bool:
        """Record ``word``; True if it was not in the table (the context may be watermarked)."""
        word = int(word) or 1  # 0 marks an empty slot
        with self._lock:
            if self._table is None:
                self._table = np.zeros(self.size, dtype=np.uint64)
            slot = word & (self.size - 1)
            self.lookups += 1
            if self._table[slot] == word:
                self.repeats += 1
                return False
            self._table[slot] = word
            return True

    def __getstate__(self) -> dict[str, Any]:
        # A copy in another process cannot share this table: it starts empty (and unlocked).
        return {"size": self.size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["size"])  # type: ignore[misc]

    def clear(self) -> None:
        """Forget every context and reset the counters."""
        with self._lock:
            self._table = None
            self.lookups = 0
            self.repeats = 0


class GumbelScheme(Scheme):
    name = "gumbel"
    config: GumbelConfig
    supports_memory = True

    def __init__(self, key: Any, config: GumbelConfig, *, prf_family: str | None = None) -> None:
        super().__init__(key, config, prf_family=prf_family)
        self.context_key = key.prf_key("context", self.prf_family)
        self.memory: ContextMemory | None = (
            ContextMemory(config.context_memory)
            if config.skip_repeated_context and config.context_memory > 0
            else None
        )

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
            memory = self.memory
            for r, pair in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
                seen = state.data["seen"][r]
                if pair in seen:
                    active[r] = False
                    continue
                seen.add(pair)
                # Rows of one step are checked in order, so two rows that reach the same
                # context together are told apart too (num_return_sequences).
                if memory is not None and not memory.use((pair[0] << 32) | pair[1]):
                    active[r] = False
        return a, b, active

    # detection side -------------------------------------------------------------------------
    def _batch_positions(
        self, texts: list[np.ndarray], prompts: list[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contexts, targets and text ids of every scorable position of a batch, vectorised.

        The sequences are laid end to end, each behind ``h`` sentinels, so one sliding
        window over the whole batch yields every context.
        """
        h = self.config.context_width
        seqs, starts = [], []
        for tokens, prompt in zip(texts, prompts, strict=True):
            if prompt is not None and len(prompt):
                seqs.append(np.concatenate([np.asarray(prompt, dtype=np.int64), tokens]))
                starts.append(len(prompt))
            else:
                # Without the prompt the first h tokens have an unknown context: skip them.
                seqs.append(np.asarray(tokens, dtype=np.int64))
                starts.append(min(h, len(tokens)))
        lengths = np.array([len(q) for q in seqs], dtype=np.int64)
        starts_arr = np.array(starts, dtype=np.int64)
        counts = np.maximum(lengths - starts_arr, 0)
        ids = np.repeat(np.arange(len(seqs)), counts)
        if ids.size == 0:
            return np.empty((0, h), dtype=np.int64), np.empty(0, dtype=np.int64), ids
        sentinels = np.full(h, prf.SENTINEL, dtype=np.int64)
        big = np.concatenate([part for q in seqs for part in (sentinels, q)])
        offsets = np.concatenate([[0], np.cumsum(lengths + h)[:-1]])
        # position t of text i sits at big[offsets[i] + h + t]; its context is the window at offsets[i] + t
        within = (
            np.arange(ids.size)
            - np.repeat(np.cumsum(counts) - counts, counts)
            + np.repeat(starts_arr, counts)
        )
        window_at = offsets[ids] + within
        windows = np.lib.stride_tricks.sliding_window_view(big, h)
        return windows[window_at], big[window_at + h], ids

    def batch_terms(
        self,
        texts: list[np.ndarray],
        prompts: list[np.ndarray | None],
        memory: DetectionMemory | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-token scores ``-log(1 - u)`` of every scored position of every text, with text ids.

        All texts go through the PRF in one vectorised pass. Repeated contexts within a text
        are scored once, at their first occurrence. With a ``memory``, a ``(context, token)``
        pair is scored only at its first sighting over all texts, in order, that the memory
        has seen (:mod:`safeguard.watermark.memory`), and every pair is recorded in it.

        Returns:
            ``(terms, text_ids)``, both of shape ``(total_scored,)``.
        """
        contexts, targets, ids = self._batch_positions(texts, prompts)
        if targets.size == 0:
            return np.empty(0), ids
        a, b = prf.context_words(self.context_key, contexts)
        words = (a << np.uint64(32)) | b
        if self.config.skip_repeated_context:
            # lexsort is stable: within one (text, context) group the earliest position comes first.
            order = np.lexsort((words, ids))
            sw, si = words[order], ids[order]
            first = np.ones(order.size, dtype=bool)
            first[1:] = (sw[1:] != sw[:-1]) | (si[1:] != si[:-1])
            keep = np.sort(order[first])
            a, b, words, targets, ids = a[keep], b[keep], words[keep], targets[keep], ids[keep]
        if memory is not None:
            # Whether a pair is skipped depends on context words and tokens only (the context
            # PRF), never on the pair's uniform (the token PRF): the kept terms stay Exp(1).
            keep = memory.claim(pair_words(words, targets))
            a, b, targets, ids = a[keep], b[keep], targets[keep], ids[keep]
        u = prf.uniforms(self.token_key, a, b, targets)
        return -np.log1p(-u), ids

    def token_scores(
        self, tokens: np.ndarray, prompt: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-token scores of one text with the positions they belong to (for localisation).

        The same terms as :meth:`batch_terms` (and :meth:`detect`) uses: under the null they are
        i.i.d. Exp(1), so the sum of any ``k`` of them is Gamma(k, 1).

        Args:
            tokens: Token ids, shape ``(n,)``.
            prompt: The prompt, if known (context for the first tokens, never scored).

        Returns:
            ``(positions, terms)``, both of shape ``(num_scored,)``: the index in ``tokens`` of
            each scored token (increasing) and its score ``-log(1 - u)``.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        has_prompt = prompt is not None and len(prompt) > 0
        first = 0 if has_prompt else min(self.config.context_width, len(tokens))
        contexts, targets, _ = self._batch_positions([tokens], [prompt])
        positions = first + np.arange(targets.size, dtype=np.int64)
        if targets.size == 0:
            return positions, np.empty(0)
        a, b = prf.context_words(self.context_key, contexts)
        if self.config.skip_repeated_context:
            words = (a << np.uint64(32)) | b
            _, first_seen = np.unique(words, return_index=True)
            keep = np.sort(first_seen)
            a, b, targets, positions = a[keep], b[keep], targets[keep], positions[keep]
        u = prf.uniforms(self.token_key, a, b, targets)
        return positions, -np.log1p(-u)

    def detect_batch(
        self,
        texts: list[np.ndarray],
        *,
        prompts: list[np.ndarray | None] | None = None,
        false_positive_rate: float,
        memory: DetectionMemory | None = None,
    ) -> list[DetectionResult]:
        """Detect many texts in one vectorised pass (same results as :meth:`detect` per text).

        With a ``memory`` the texts are tested in order, as if one by one: each scores only
        pairs no earlier text scored, and a text seen before gets its earlier answer.
        """
        prompts = prompts if prompts is not None else [None] * len(texts)
        if memory is not None:
            scores, counts = self._remembered_scores(texts, prompts, memory)
        else:
            terms, ids = self.batch_terms(texts, prompts)
            scores = np.bincount(ids, weights=terms, minlength=len(texts))
            counts = np.bincount(ids, minlength=len(texts))
        p_values = special.gammaincc(np.maximum(counts, 1), np.maximum(scores, 0.0))
        p_values = np.where(counts > 0, p_values, 1.0)
        needed = min_tokens_for_fpr(false_positive_rate)
        return [
            self._result(
                float(scores[i]),
                int(counts[i]),
                float(p_values[i]),
                len(texts[i]),
                false_positive_rate,
                needed,
            )
            for i in range(len(texts))
        ]

    def _remembered_scores(
        self,
        texts: list[np.ndarray],
        prompts: list[np.ndarray | None],
        memory: DetectionMemory,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and scored counts of a batch tested through ``memory``, in order."""
        memory.check_key(self.key.key_id)
        if not self.config.skip_repeated_context:
            raise ConfigError(
                "a detection memory needs `skip_repeated_context` (each context scored once)"
            )
        digests = [text_digest(t, p) for t, p in zip(texts, prompts, strict=True)]
        scores = np.zeros(len(texts))
        counts = np.zeros(len(texts), dtype=np.int64)
        with memory.lock:
            known: dict[bytes, tuple[float, int] | None] = {}
            fresh: list[int] = []  # first index in this batch of each text not seen before
            for i, digest in enumerate(digests):
                if digest not in known:
                    known[digest] = memory.recall(digest)
                    if known[digest] is None:
                        fresh.append(i)
            if fresh:
                terms, ids = self.batch_terms(
                    [texts[i] for i in fresh], [prompts[i] for i in fresh], memory
                )
                fresh_scores = np.bincount(ids, weights=terms, minlength=len(fresh))
                fresh_counts = np.bincount(ids, minlength=len(fresh))
                for j, i in enumerate(fresh):
                    known[digests[i]] = (float(fresh_scores[j]), int(fresh_counts[j]))
                    memory.remember(digests[i], *known[digests[i]])  # type: ignore[misc]
            for i, digest in enumerate(digests):
                scores[i], counts[i] = known[digest]  # type: ignore[misc]
        return scores, counts

    def _result(
        self,
        score: float,
        num_scored: int,
        p_value: float,
        num_tokens: int,
        fpr: float,
        needed: int,
    ) -> DetectionResult:
        warnings: list[str] = []
        if num_scored < needed:
            warnings.append(
                f"only {num_scored} tokens could be scored; at a false-positive rate of {fpr:g} "
                f"detection typically needs at least {needed} (longer text, or a higher rate)"
            )
        return DetectionResult(
            p_value=p_value,
            score=score,
            num_tokens=num_tokens,
            num_scored=num_scored,
            is_watermarked=p_value <= fpr,
            false_positive_rate=fpr,
            key_id=self.key.key_id,
            scheme=self.name,
            method="gamma-exact",
            warnings=tuple(warnings),
        )

    def detect(
        self,
        tokens: np.ndarray,
        *,
        prompt: np.ndarray | None,
        false_positive_rate: float,
        **options: Any,
    ) -> DetectionResult:
        memory = options.pop("memory", None)
        if options:
            raise ConfigError(
                f"unknown detection option(s) for gumbel: {', '.join(sorted(options))}"
            )
        if memory is not None:
            return self.detect_batch(
                [np.asarray(tokens, dtype=np.int64)],
                prompts=[prompt],
                false_positive_rate=false_positive_rate,
                memory=memory,
            )[0]
        terms, _ = self.batch_terms([tokens], [prompt])
        score = float(terms.sum())
        return self._result(
            score,
            int(terms.size),
            gamma_pvalue(score, terms.size),
            len(tokens),
            false_positive_rate,
            min_tokens_for_fpr(false_positive_rate),
        )


register_scheme("gumbel", GumbelConfig, GumbelScheme)
