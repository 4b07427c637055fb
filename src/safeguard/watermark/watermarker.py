"""The public entry point: :class:`Watermarker` wraps generation and detection for one key."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from safeguard.errors import ConfigError, DetectionError, UsageError
from safeguard.watermark.keys import WatermarkKey
from safeguard.watermark.localize import LocalizationResult, localize_scores
from safeguard.watermark.memory import DetectionMemory
from safeguard.watermark.normalize import normalize_text
from safeguard.watermark.result import DetectionResult, MultiKeyResult
from safeguard.watermark.schemes import get_scheme
from safeguard.watermark.schemes.base import Scheme
from safeguard.watermark.stats import holm

__all__ = ["ShortTextWarning", "Watermarker", "as_token_array", "detect_many"]


class ShortTextWarning(UserWarning):
    """The text is too short for the requested false-positive rate."""


def _check_fpr(false_positive_rate: float) -> float:
    if not isinstance(false_positive_rate, (int, float)) or not 0 < false_positive_rate < 1:
        raise ConfigError(
            f"`false_positive_rate` (={false_positive_rate!r}) must be in (0, 1); typical values are 1e-2 to 1e-6"
        )
    return float(false_positive_rate)


def as_token_array(
    token_ids: Any, *, vocab_size: int | None = None, name: str = "token_ids"
) -> np.ndarray:
    """Validate token ids (list, numpy or torch; 1-D) and return an int64 array."""
    if hasattr(token_ids, "detach"):
        token_ids = token_ids.detach().cpu().numpy()
    arr = np.asarray(token_ids)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise DetectionError(
            f"`{name}` must be one sequence of token ids (1-D); got shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DetectionError(f"`{name}` must hold integer token ids; got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise DetectionError(f"`{name}` holds a negative id ({int(arr.min())}); token ids are >= 0")
    if vocab_size is not None and arr.size and arr.max() >= vocab_size:
        raise DetectionError(
            f"`{name}` holds id {int(arr.max())}, outside the vocabulary of {vocab_size} tokens; "
            "was the text tokenized with another tokenizer?"
        )
    return arr


def _tokens_and_prompt(
    token_ids: Any, prompt_ids: Any, vocab_size: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated 1-D id arrays for a text (non-empty) and its optional prompt."""
    tokens = as_token_array(token_ids, vocab_size=vocab_size)
    if tokens.size == 0:
        raise DetectionError("`token_ids` is empty; there is nothing to test")
    prompt = (
        None
        if prompt_ids is None
        else as_token_array(prompt_ids, vocab_size=vocab_size, name="prompt_ids")
    )
    return tokens, prompt


class Watermarker:
    """Generation and detection with one :class:`WatermarkKey`.

    >>> key = WatermarkKey.from_secret(bytes(32), "gumbel")
    >>> wm = Watermarker(key)
    >>> wm.detect(list(range(60)), false_positive_rate=1e-3).is_watermarked
    False
    """

    def __init__(self, key: WatermarkKey) -> None:
        if not isinstance(key, WatermarkKey):
            raise ConfigError(f"Watermarker needs a WatermarkKey; got {type(key).__name__}")
        self.key = key
        self.scheme: Scheme = get_scheme(key.scheme).build(key)

    def __repr__(self) -> str:
        return f"Watermarker(key_id={self.key.key_id!r}, scheme={self.key.scheme!r})"

    # generation -----------------------------------------------------------------------------
    def generate(self, model: Any, /, **generate_kwargs: Any) -> Any:
        """``model.generate(**generate_kwargs)`` with the watermark embedded.

        Requires ``do_sample=True`` (in the call or the model's generation config) and
        ``num_beams=1``; temperature, top-k and top-p are honoured. Batched prompts must be
        left-padded; the ``attention_mask`` tells padding from context.

        Raises:
            WatermarkError: Greedy decoding or beam search was requested.
        """
        from safeguard.watermark.hf import watermarked_generate

        return watermarked_generate(self.scheme, model, **generate_kwargs)

    def clear_context_memory(self) -> None:
        """Forget the contexts earlier texts used (``gumbel``; a no-op for other schemes).

        A ``gumbel`` Watermarker leaves a context that an earlier text of the same Watermarker
        used to the model's own sampling (``context_memory`` in the key's parameters), so texts
        under one key are as diverse as the model's samples. The same seed therefore gives a
        different text the second time; clear the memory first to reproduce a generation
        exactly.
        """
        memory = getattr(self.scheme, "memory", None)
        if memory is not None:
            memory.clear()

    def watermarking_config(self, *, pad_token_id: int | None = None) -> Any:
        """A ``watermarking_config=`` for ``model.generate`` (or a ``pipeline`` call).

        Left padding is recognised as a leading run of ``pad_token_id`` (pass the
        tokenizer's); :meth:`generate` reads the attention mask instead.
        """
        from safeguard.watermark.hf import SafeguardWatermarkingConfig

        return SafeguardWatermarkingConfig(self.scheme, pad_token_id=pad_token_id)

    # detection ------------------------------------------------------------------------------
    def detect(
        self,
        token_ids: Any,
        *,
        prompt_ids: Any = None,
        false_positive_rate: float = 1e-3,
        vocab_size: int | None = None,
        **options: Any,
    ) -> DetectionResult:
        """Test token ids for this key's watermark. Needs no model.

        Args:
            token_ids: The generated tokens (without the prompt), 1-D.
            prompt_ids: The prompt, if known: its last tokens are context for the first
                generated ones and are never scored. Without it, the first ``h`` tokens of a
                ``gumbel`` text are only context.
            false_positive_rate: Rate at which unwatermarked text is flagged.
            vocab_size: If given, ids at or above it are rejected.
            **options: Scheme options (``gumbel``: ``memory``, a :class:`DetectionMemory` of
                this key or a mapping of key ids to memories, so each (context, token) pair is scored once over every text it
                has seen, which makes the false-positive count under one key binomial on any
                stream of texts; ``exp``/``exp-edit``: ``resolution``, ``seed``,
                ``use_cache``).

        Raises:
            DetectionError: Empty input or invalid ids.
        """
        fpr = _check_fpr(false_positive_rate)
        tokens, prompt = _tokens_and_prompt(token_ids, prompt_ids, vocab_size)
        memory = self._memory(options)
        if memory is not None:
            options["memory"] = memory
        result = self.scheme.detect(tokens, prompt=prompt, false_positive_rate=fpr, **options)
        for message in result.warnings:
            warnings.warn(message, ShortTextWarning, stacklevel=2)
        return result

    def detect_batch(
        self,
        texts: Sequence[Any],
        *,
        prompts: Sequence[Any] | None = None,
        false_positive_rate: float = 1e-3,
        num_threads: int | None = None,
        **options: Any,
    ) -> list[DetectionResult]:
        """Detect many token sequences; the same results as :meth:`detect` one by one.

        Schemes with a vectorised detector (``gumbel``) score the whole batch in one pass
        per thread; ``num_threads`` (default: every core) splits the batch.
        """
        fpr = _check_fpr(false_positive_rate)
        arrays = [as_token_array(t) for t in texts]
        for i, arr in enumerate(arrays):
            if arr.size == 0:
                raise DetectionError(f"text {i} of the batch is empty; there is nothing to test")
        prompt_arrays = (
            [None if p is None else as_token_array(p, name="prompt_ids") for p in prompts]
            if prompts is not None
            else [None] * len(arrays)
        )
        if len(prompt_arrays) != len(arrays):
            raise DetectionError(
                f"{len(prompt_arrays)} prompts for {len(arrays)} texts; pass one prompt (or None) per text"
            )
        batch = getattr(self.scheme, "detect_batch", None)
        memory = self._memory(options)
        if memory is not None and batch is not None and not options:
            # In order, one pass: each text scores only pairs no earlier text scored.
            return batch(arrays, prompts=prompt_arrays, false_positive_rate=fpr, memory=memory)
        if memory is not None:
            options["memory"] = memory
        if batch is None or options:
            return [
                self.scheme.detect(t, prompt=p, false_positive_rate=fpr, **options)
                for t, p in zip(arrays, prompt_arrays, strict=True)
            ]
        threads = max(1, min(num_threads or os.cpu_count() or 1, len(arrays) // 256 or 1))
        bounds = np.linspace(0, len(arrays), threads + 1).astype(int)
        chunks = [(arrays[a:b], prompt_arrays[a:b]) for a, b in itertools.pairwise(bounds)]
        if threads == 1:
            return batch(arrays, prompts=prompt_arrays, false_positive_rate=fpr)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = pool.map(lambda c: batch(c[0], prompts=c[1], false_positive_rate=fpr), chunks)
            return [r for part in parts for r in part]

    def _memory(self, options: dict[str, Any]) -> DetectionMemory | None:
        """Pop and check a ``memory=`` option (a :class:`DetectionMemory` of this key)."""
        memory = options.pop("memory", None)
        if isinstance(memory, Mapping):  # one memory per key, for calls over several keys
            if self.key.key_id not in memory:
                raise ConfigError(
                    f"no detection memory for key {self.key.key_id}; memories were given for "
                    + (", ".join(sorted(map(str, memory))) or "no key")
                )
            memory = memory[self.key.key_id]
        if memory is None:
            return None
        if not isinstance(memory, DetectionMemory):
            raise ConfigError(f"`memory` must be a DetectionMemory; got {type(memory).__name__}")
        if not getattr(self.scheme, "supports_memory", False):
            raise ConfigError(
                f"a detection memory is for `gumbel` keys (one score per (context, token) pair); "
                f"this key's scheme is {self.key.scheme!r}"
            )
        memory.check_key(self.key.key_id)
        return memory

    def detect_text(
        self,
        text: str,
        tokenizer: Any,
        *,
        prompt: str | None = None,
        false_positive_rate: float = 1e-3,
        normalize: bool = True,
        **options: Any,
    ) -> DetectionResult:
        """Tokenize ``text`` with ``tokenizer`` (checked against the key's binding) and test it.

        Args:
            text: The generated text (without the prompt).
            tokenizer: The tokenizer used at generation.
            prompt: The prompt, if known (context only, never scored).
            false_positive_rate: Rate at which unwatermarked text is flagged.
            normalize: Undo Unicode edits before tokenizing (default on): remove zero-width
                and other format characters, map Unicode spaces and line breaks to ASCII,
                and map Cyrillic/Greek/fullwidth look-alikes of Latin letters back
                (:func:`~safeguard.watermark.normalize.normalize_text`). ASCII text is left
                unchanged, so unattacked model output scores exactly as without it; pass
                ``False`` to test the text byte for byte.
            **options: Scheme options, as for :meth:`detect`.
        """
        ids, prompt_ids = self._encode_text(text, tokenizer, prompt, normalize)
        return self.detect(
            ids,
            prompt_ids=prompt_ids,
            false_positive_rate=false_positive_rate,
            vocab_size=len(tokenizer),
            **options,
        )

    def _encode_text(
        self, text: str, tokenizer: Any, prompt: str | None, normalize: bool
    ) -> tuple[list[int], list[int] | None]:
        if not isinstance(text, str):
            raise DetectionError(f"`text` must be a string; got {type(text).__name__}")
        if not text.strip():
            raise DetectionError("`text` is empty; there is nothing to test")
        self.key.check_tokenizer(tokenizer)
        if normalize:
            text = normalize_text(text)
            prompt = normalize_text(prompt) if prompt else prompt
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else None
        return ids, prompt_ids

    # localisation ---------------------------------------------------------------------------
    def localize(
        self,
        token_ids: Any,
        *,
        prompt_ids: Any = None,
        false_positive_rate: float = 1e-3,
        min_window: int = 16,
        vocab_size: int | None = None,
    ) -> LocalizationResult:
        """Find the watermarked spans of a mixed document (``gumbel`` keys only). Needs no model.

        Windows of several sizes are tested with exact Gamma p-values, Bonferroni-adjusted
        over all windows, so on unwatermarked text the probability of reporting any span is
        at most ``false_positive_rate``; significant windows are turned into spans whose
        edges follow the per-token evidence (:mod:`safeguard.watermark.localize`).

        Args:
            token_ids: The document's tokens, 1-D.
            prompt_ids: The prompt, if known (context only).
            false_positive_rate: Family-wise rate of reporting a span on unwatermarked text.
            min_window: Smallest window in scored tokens; sizes double from it.
            vocab_size: If given, ids at or above it are rejected.

        Returns:
            A :class:`LocalizationResult`; span positions index ``token_ids``.

        Raises:
            UsageError: The key's scheme is not ``gumbel``, or the input is invalid.
        """
        fpr = _check_fpr(false_positive_rate)
        token_scores = getattr(self.scheme, "token_scores", None)
        if token_scores is None:
            raise UsageError(
                f"localisation supports the gumbel scheme only; key {self.key.key_id!r} uses "
                f"{self.key.scheme!r} (use detect() for a whole-text test)"
            )
        tokens, prompt = _tokens_and_prompt(token_ids, prompt_ids, vocab_size)
        positions, terms = token_scores(tokens, prompt)
        return localize_scores(
            positions,
            terms,
            num_tokens=int(tokens.size),
            context_width=self.scheme.config.context_width,
            false_positive_rate=fpr,
            min_window=min_window,
            key_id=self.key.key_id,
        )

    def localize_text(
        self,
        text: str,
        tokenizer: Any,
        *,
        prompt: str | None = None,
        false_positive_rate: float = 1e-3,
        min_window: int = 16,
        normalize: bool = True,
    ) -> LocalizationResult:
        """:meth:`localize` on text; span positions index the tokens of the (normalised) text.

        ``tokenizer.decode(ids[span.start:span.end])`` gives a span's text, where ``ids`` is
        the encoding of ``normalize_text(text)`` (or of ``text`` with ``normalize=False``).
        """
        ids, prompt_ids = self._encode_text(text, tokenizer, prompt, normalize)
        return self.localize(
            ids,
            prompt_ids=prompt_ids,
            false_positive_rate=false_positive_rate,
            min_window=min_window,
            vocab_size=len(tokenizer),
        )


def detect_many(
    keys: Sequence[WatermarkKey],
    token_ids: Any,
    *,
    prompt_ids: Any = None,
    false_positive_rate: float = 1e-3,
    **options: Any,
) -> MultiKeyResult:
    """Test one text against several keys, controlling the family-wise error with Holm's method."""
    if not keys:
        raise ConfigError("`keys` is empty; pass at least one WatermarkKey")
    fpr = _check_fpr(false_positive_rate)
    results = tuple(
        Watermarker(k).detect(token_ids, prompt_ids=prompt_ids, false_positive_rate=fpr, **options)
        for k in keys
    )
    return holm_combine(results, fpr)


def holm_combine(results: Sequence[DetectionResult], false_positive_rate: float) -> MultiKeyResult:
    """One text's results under several keys, Holm-adjusted: flagged when any adjusted p is."""
    adjusted = holm([r.p_value for r in results])
    best = int(np.argmin(adjusted))
    return MultiKeyResult(
        results=tuple(results),
        adjusted_p_values=tuple(adjusted),
        is_watermarked=adjusted[best] <= false_positive_rate,
        best_key_id=results[best].key_id,
        false_positive_rate=false_positive_rate,
    )
