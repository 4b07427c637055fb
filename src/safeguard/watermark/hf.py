"""Hugging Face transformers adapter: watermarked ``model.generate``.

transformers appends the processor built by a ``watermarking_config=`` after every
other logits processor and warper (temperature, top-k, top-p, ...), so the processor
here sees the final sampling distribution ``p``. It picks the token with the
scheme's exponential-minimum rule and returns scores that are ``-inf`` everywhere
but at that token, so the sampler's ``multinomial`` draws it with probability 1.
Steps a scheme leaves unwatermarked are returned unchanged and sampled as usual.

    generate(**inputs, watermarking_config=cfg, do_sample=True)
      └─ logits ─► processors ─► warpers (T, top-k, top-p) ─► WatermarkLogitsProcessor ─► multinomial
                                                              │ rows (a, b) from the scheme
                                                              │ u = PRF(key, a, b, ·) on the support of p
                                                              │   (v2: AES on the host, one row copied to the device)
                                                              └ token = argmin -log(u_v) / p_v
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from safeguard.errors import ConfigError, WatermarkError, missing_dependency
from safeguard.watermark import prf_torch

try:
    from transformers import LogitsProcessor
    from transformers.generation.configuration_utils import BaseWatermarkingConfig
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_dependency("transformers", "hf") from exc

if TYPE_CHECKING:
    from safeguard.watermark.schemes.base import GenerationState, Scheme

__all__ = [
    "SafeguardWatermarkingConfig",
    "WatermarkLogitsProcessor",
    "leading_pad_counts",
    "watermarked_generate",
]

log = logging.getLogger(__name__)

#: Below this share of the vocabulary, uniforms are computed only for tokens with p > 0.
SPARSE_SUPPORT_FRACTION = 0.125

_WHY_SAMPLING = (
    "a sampling watermark chooses each token with keyed randomness from the model's distribution; "
    "greedy decoding and beam search choose tokens by a deterministic rule, so there is no sampling "
    "step to key and the output would no longer follow the model's distribution. "
    "Pass do_sample=True and num_beams=1"
)


def _check_generation_config(generation_config: Any, scheme: Scheme) -> None:
    if generation_config is None:
        return
    if not getattr(generation_config, "do_sample", False):
        raise WatermarkError(f"do_sample=False under a watermark: {_WHY_SAMPLING}")
    if (getattr(generation_config, "num_beams", 1) or 1) > 1:
        raise WatermarkError(
            f"beam search (num_beams={generation_config.num_beams}) under a watermark: {_WHY_SAMPLING}"
        )
    repeats = getattr(generation_config, "num_return_sequences", 1) or 1
    if scheme.name == "gumbel" and repeats > 1 and getattr(scheme, "memory", None) is None:
        log.warning(
            "num_return_sequences=%d with a gumbel key whose context_memory is 0: the watermark is a "
            "deterministic function of the context, so samples of the same prompt come out identical; "
            "use a key with context_memory > 0 (the default) for several samples per prompt",
            repeats,
        )


def _caller_generation_config() -> Any:
    """The ``generation_config`` of the ``generate`` call that is building our processor, if visible."""
    frame = inspect.currentframe()
    try:
        depth = 0
        while frame is not None and depth < 8:
            candidate = frame.f_locals.get("generation_config")
            if candidate is not None and hasattr(candidate, "do_sample"):
                return candidate
            frame = frame.f_back
            depth += 1
        return None
    finally:
        del frame


def leading_pad_counts(input_ids: torch.Tensor, pad_token_id: int | None) -> list[int]:
    """Number of leading ``pad_token_id`` tokens in each row (left padding)."""
    if pad_token_id is None:
        return [0] * input_ids.shape[0]
    is_pad = (input_ids == pad_token_id).to(torch.int64)
    run = torch.cumprod(is_pad, dim=1).sum(dim=1)
    return [int(x) for x in run.tolist()]


class WatermarkLogitsProcessor(LogitsProcessor):
    """Chooses each token by the scheme's keyed exponential-minimum rule on the final distribution.

    One processor serves one ``generate`` call (it keeps per-row state such as the shift
    of ``exp`` or the contexts ``gumbel`` has already used). Scores are never modified in
    place.
    """

    def __init__(
        self,
        scheme: Scheme,
        *,
        pad_counts: list[int] | None = None,
        pad_token_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.scheme = scheme
        self.pad_counts = pad_counts
        self.pad_token_id = pad_token_id
        self.generator = generator
        self.state: GenerationState | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.state is None:
            pads = self.pad_counts
            if pads is None or len(pads) != input_ids.shape[0]:
                pads = leading_pad_counts(input_ids, self.pad_token_id)
            self.state = self.scheme.start(
                input_ids.shape[0], input_ids.shape[1], pads, self.generator
            )
        a, b, active = self.scheme.rows(self.state, input_ids)
        if not active.any():
            return scores
        chosen = self.select(scores, a, b)
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(1, chosen[:, None], 0.0)
        if active.all():
            return forced
        return torch.where(torch.from_numpy(active).to(scores.device)[:, None], forced, scores)

    def select(self, scores: torch.Tensor, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
        """Token per row: ``argmin_v -log(u_v) / p_v`` over the support of ``p = softmax(scores)``.

        Args:
            scores: Final scores of shape ``(batch, V)`` (``-inf`` outside the support).
            a, b: PRF rows (32-bit words) of shape ``(batch,)``.

        Returns:
            Token ids of shape ``(batch,)``.
        """
        key = self.scheme.token_key
        vocab = scores.shape[1]
        # With p = softmax(s), argmin_v E_v / p_v = argmin_v (log E_v - s_v): the normaliser is
        # common to every token, and a token at -inf (outside the support) never wins.
        if bool(torch.isfinite(scores.amin(dim=1)).all()):
            support = vocab  # every score finite (full-vocabulary sampling): no count needed
        else:
            support = int(torch.isfinite(scores).sum(dim=1).max())
        if support <= SPARSE_SUPPORT_FRACTION * vocab:
            s_top, idx = scores.topk(support, dim=1)
            race = prf_torch.token_log_exponentials(key, a, b, idx).sub_(s_top.to(torch.float64))
            return idx.gather(1, race.argmin(dim=1, keepdim=True)).squeeze(1)
        race = prf_torch.log_exponentials(key, a, b, vocab, scores.device)
        return race.sub_(scores.to(torch.float64)).argmin(dim=1)


class SafeguardWatermarkingConfig(BaseWatermarkingConfig):
    """A ``watermarking_config=`` for ``model.generate`` that embeds a safeguard watermark.

    Build it with :meth:`safeguard.watermark.Watermarker.watermarking_config`. Its dict
    and JSON forms carry the scheme and the key id, never the secret.
    """

    def __init__(self, scheme: Scheme, **processor_options: Any) -> None:
        # processor_options: pad_counts, pad_token_id, generator (see WatermarkLogitsProcessor)
        self._scheme = scheme
        self._options = processor_options

    def validate(self) -> None:
        return None

    def construct_processor(self, vocab_size: int, device: Any = None) -> WatermarkLogitsProcessor:
        _check_generation_config(_caller_generation_config(), self._scheme)
        return WatermarkLogitsProcessor(self._scheme, **self._options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self._scheme.name,
            "key_id": self._scheme.key.key_id,
            "library": "safeguard",
        }

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __iter__(self):  # type: ignore[override]
        yield from self.to_dict().items()

    def __deepcopy__(self, memo: dict[int, Any]) -> SafeguardWatermarkingConfig:
        # generate() deep-copies its GenerationConfig; the scheme (and its key) is shared, not copied.
        return SafeguardWatermarkingConfig(self._scheme, **self._options)


def watermarked_generate(scheme: Scheme, model: Any, /, **kwargs: Any) -> Any:
    """``model.generate(**kwargs)`` with the watermark, after checking the decoding mode.

    Left padding is read from ``attention_mask`` so padded positions never act as context.
    """
    if "watermarking_config" in kwargs:
        raise ConfigError(
            "pass either Watermarker.generate(...) or watermarking_config=..., not both"
        )
    merged = (
        dict(model.generation_config.to_dict()) if getattr(model, "generation_config", None) else {}
    )
    merged.update(
        {k: v for k, v in kwargs.items() if k in ("do_sample", "num_beams", "num_return_sequences")}
    )
    if "generation_config" in kwargs and kwargs["generation_config"] is not None:
        gc = kwargs["generation_config"]
        merged.update(
            {k: getattr(gc, k) for k in ("do_sample", "num_beams", "num_return_sequences")}
        )
        merged.update(
            {
                k: v
                for k, v in kwargs.items()
                if k in ("do_sample", "num_beams", "num_return_sequences")
            }
        )

    class _View:
        do_sample = merged.get("do_sample", False)
        num_beams = merged.get("num_beams", 1)
        num_return_sequences = merged.get("num_return_sequences", 1)

    _check_generation_config(_View, scheme)
    pad_counts = None
    mask = kwargs.get("attention_mask")
    if mask is not None:
        mask = torch.as_tensor(mask)
        if mask.dim() == 2 and mask.shape[1] > 0:
            if bool((mask[:, -1] == 0).any()):
                raise ConfigError(
                    "`attention_mask` has padding on the right; decoder-only generation needs left padding "
                    "(tokenizer.padding_side = 'left')"
                )
            pad_counts = (mask == 0).sum(dim=1).tolist()
            repeats = int(merged.get("num_return_sequences") or 1)
            if repeats > 1:
                pad_counts = [c for c in pad_counts for _ in range(repeats)]
    pad_token_id = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
    config = SafeguardWatermarkingConfig(scheme, pad_counts=pad_counts, pad_token_id=pad_token_id)
    return model.generate(**kwargs, watermarking_config=config)
