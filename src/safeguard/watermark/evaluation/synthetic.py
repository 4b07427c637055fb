"""A next-token source with a chosen entropy, for power curves against entropy.

A watermark's power depends above all on how much randomness each sampling step has:
the entropy of the next-token distribution. A random transformer does not let a study
set it, so this module provides a source that does, in two forms sharing one definition:

* :class:`SyntheticSource` — pure numpy: ``next_token_probs(context_ids)`` for fast
  studies without ``generate``;
* :class:`SyntheticLM` — a transformers ``PreTrainedModel`` + ``GenerationMixin``
  around the same source, so every watermark that plugs into ``model.generate``
  (safeguard's, KGW, SynthID) runs on it unchanged and power curves compare like with
  like.

Definition. The next-token distribution after a sequence depends only on its last
``context`` tokens ``c`` (fewer at the very start). A PRF of ``(seed, c)`` (numpy's
SeedSequence) draws a permutation ``π_c`` of the vocabulary and, when ``spread > 0``, a
scale ``s_c = exp(spread · N(0, 1))``. The token at rank ``k`` of ``π_c`` gets the
Zipf-like logit ``-a · s_c · log(k + 1) / τ`` (``a`` = ``zipf_exponent``)::

    context c ─► PRF(seed, c) ─► (π_c, s_c) ─► logits[π_c[k]] = -a·s_c·log(k+1)/τ ─► softmax

The temperature ``τ`` is found by bisection so that the mean entropy (nats) of the
next-token distributions equals the requested ``entropy``. With ``spread = 0`` (the
default) every distribution is a permutation of the same profile, so *every step* has
exactly that entropy (to the bisection tolerance, 1e-6 nats); with ``spread > 0`` the
entropy varies across contexts and its mean over the distribution of ``s_c`` (256
quantile points of the log-normal) is matched. Contexts reached by sampling have
hash-independent scales, so the mean along samples matches as well, up to sampling noise.

Needs torch and transformers for :class:`SyntheticLM` only (``pip install 'safeguard[hf]'``);
:class:`SyntheticSource` and :func:`profile_entropy` are numpy/scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from safeguard.errors import ConfigError

__all__ = [
    "SyntheticLM",
    "SyntheticLMConfig",
    "SyntheticSource",
    "entropy_sweep",
    "profile_entropy",
]

_TOLERANCE = 1e-6
_QUANTILES = 256


def _log_profile(vocab_size: int, zipf_exponent: float) -> np.ndarray:
    return -zipf_exponent * np.log(np.arange(1, vocab_size + 1, dtype=np.float64))


def profile_entropy(base_logits: np.ndarray, inverse_temperature: float | np.ndarray) -> Any:
    """Entropy (nats) of ``softmax(base_logits · β)`` for one or several ``β``."""
    beta = np.atleast_1d(np.asarray(inverse_temperature, dtype=np.float64))
    z = base_logits[None, :] * beta[:, None]
    logp = z - special.logsumexp(z, axis=1, keepdims=True)
    h = -(np.exp(logp) * logp).sum(axis=1)
    return h if np.ndim(inverse_temperature) else float(h[0])


class SyntheticSource:
    """The numpy next-token source (see the module docstring for the definition).

    Args:
        vocab_size: Tokens in the vocabulary (>= 2).
        entropy: Target mean entropy in nats, in ``(0, log(vocab_size))``.
        context: Tokens of history the distribution depends on (>= 1).
        seed: Seed of the PRF; two sources with equal arguments are identical.
        zipf_exponent: ``a`` of the rank profile before the temperature.
        spread: Standard deviation of ``log s_c``; 0 gives equal entropy at every step.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        entropy: float,
        context: int = 2,
        seed: int = 0,
        zipf_exponent: float = 1.0,
        spread: float = 0.0,
    ) -> None:
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ConfigError(f"`vocab_size` (={vocab_size!r}) must be an integer >= 2")
        max_h = math.log(vocab_size)
        if not 0 < entropy < max_h:
            raise ConfigError(
                f"`entropy` (={entropy!r}) must be in (0, log(vocab_size)) = (0, {max_h:.3f}) nats; "
                "raise `vocab_size` for higher entropies"
            )
        if not isinstance(context, int) or context < 1:
            raise ConfigError(f"`context` (={context!r}) must be an integer >= 1")
        if zipf_exponent <= 0 or spread < 0:
            raise ConfigError(
                f"`zipf_exponent` (={zipf_exponent!r}) must be > 0 and `spread` (={spread!r}) >= 0"
            )
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"`seed` (={seed!r}) must be a non-negative integer")
        self.vocab_size = vocab_size
        self.entropy = float(entropy)
        self.context = context
        self.seed = seed
        self.zipf_exponent = float(zipf_exponent)
        self.spread = float(spread)
        self._base = _log_profile(vocab_size, self.zipf_exponent)
        if spread > 0:
            q = (np.arange(_QUANTILES) + 0.5) / _QUANTILES
            self._scales = np.exp(spread * stats.norm.ppf(q))
        else:
            self._scales = np.ones(1)
        self.inverse_temperature = self._calibrate()

    def __repr__(self) -> str:
        return (
            f"SyntheticSource(vocab_size={self.vocab_size}, entropy={self.entropy}, "
            f"context={self.context}, seed={self.seed}, spread={self.spread})"
        )

    @property
    def temperature(self) -> float:
        """``τ`` found by the calibration."""
        return 1.0 / self.inverse_temperature

    def mean_entropy(self, inverse_temperature: float) -> float:
        """Mean entropy over contexts at ``β = 1/τ`` (exact for ``spread = 0``)."""
        return float(np.mean(profile_entropy(self._base, inverse_temperature * self._scales)))

    def _calibrate(self) -> float:
        # entropy decreases in beta; bisection on log(beta)
        lo, hi = math.log(1e-4), math.log(1e4)
        if not self.mean_entropy(math.exp(hi)) < self.entropy < self.mean_entropy(math.exp(lo)):
            raise ConfigError(
                f"`entropy` (={self.entropy}) is out of reach for vocab_size={self.vocab_size}, "
                f"zipf_exponent={self.zipf_exponent}; pick a value further from 0 and log(vocab_size)"
            )
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            h = self.mean_entropy(math.exp(mid))
            if abs(h - self.entropy) < _TOLERANCE:
                break
            if h > self.entropy:
                lo = mid
            else:
                hi = mid
        return math.exp(mid)

    def _context_key(self, context_ids: Sequence[int] | np.ndarray) -> list[int]:
        ctx = [int(t) for t in np.asarray(context_ids).ravel()[-self.context :]]
        if any(t < 0 or t >= self.vocab_size for t in ctx):
            raise ConfigError(
                f"context ids must be in [0, {self.vocab_size}); got {ctx} for this source"
            )
        return [self.seed, len(ctx), *ctx]

    def logits(self, context_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Next-token logits after ``context_ids`` (only the last ``context`` count); shape ``(vocab,)``."""
        rng = np.random.default_rng(self._context_key(context_ids))
        scale = math.exp(self.spread * rng.standard_normal()) if self.spread > 0 else 1.0
        perm = rng.permutation(self.vocab_size)
        out = np.empty(self.vocab_size, dtype=np.float64)
        out[perm] = self._base * (scale * self.inverse_temperature)
        return out

    def next_token_probs(self, context_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Next-token distribution after ``context_ids``; shape ``(vocab,)``, sums to 1."""
        w = np.exp(self.logits(context_ids))  # logits <= 0 with max 0: no overflow
        return w / w.sum()

    def sample(
        self, prompt_ids: Sequence[int], num_tokens: int, *, rng: np.random.Generator
    ) -> np.ndarray:
        """Plain (unwatermarked) sampling of ``num_tokens`` after ``prompt_ids``; shape ``(num_tokens,)``."""
        seq = [int(t) for t in prompt_ids]
        for _ in range(num_tokens):
            p = self.next_token_probs(seq)
            seq.append(int(rng.choice(self.vocab_size, p=p)))
        return np.asarray(seq[len(prompt_ids) :], dtype=np.int64)


# --------------------------------------------------------------------------- #
# transformers model

try:
    import torch
    from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutputWithPast

    _HAVE_TRANSFORMERS = True
except ImportError:  # pragma: no cover - exercised only without the extra
    _HAVE_TRANSFORMERS = False
    PretrainedConfig = object  # type: ignore[assignment,misc]
    PreTrainedModel = object  # type: ignore[assignment,misc]
    GenerationMixin = object  # type: ignore[assignment,misc]


class SyntheticLMConfig(PretrainedConfig):  # type: ignore[misc]
    """Config of :class:`SyntheticLM` (a transformers ``PretrainedConfig``).

    Args:
        vocab_size, entropy, context, seed, zipf_exponent, spread: As in :class:`SyntheticSource`.
        bos_token_id, pad_token_id: Default 0. ``eos_token_id`` defaults to ``None`` (no
            early stop) so every text has the requested length.
    """

    model_type = "safeguard-synthetic-lm"

    def __init__(
        self,
        vocab_size: int = 1000,
        entropy: float = 3.0,
        context: int = 2,
        seed: int = 0,
        zipf_exponent: float = 1.0,
        spread: float = 0.0,
        bos_token_id: int | None = 0,
        eos_token_id: int | None = None,
        pad_token_id: int | None = 0,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.entropy = entropy
        self.context = context
        self.seed = seed
        self.zipf_exponent = zipf_exponent
        self.spread = spread
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **kwargs,
        )


class SyntheticLM(PreTrainedModel, GenerationMixin):  # type: ignore[misc]
    """:class:`SyntheticSource` as a causal LM for ``model.generate``.

    Logits at position ``t`` are the source's logits after ``input_ids[:, :t + 1]``;
    shape ``(batch, seq, vocab)`` (or ``(batch, logits_to_keep, vocab)``). There are no
    weights (one dummy parameter fixes device and dtype) and no key-value cache: the
    generation config sets ``use_cache=False`` so each step sees the whole sequence, and
    ``use_cache=True`` is refused. Left padding is part of the context like any token.

    >>> model = SyntheticLM(SyntheticLMConfig(vocab_size=50, entropy=1.5))  # doctest: +SKIP
    >>> model.generate(torch.tensor([[1, 2]]), do_sample=True, max_new_tokens=5)  # doctest: +SKIP
    """

    config_class = SyntheticLMConfig
    base_model_prefix = "synthetic"
    main_input_name = "input_ids"

    def __init__(self, config: SyntheticLMConfig) -> None:
        if not _HAVE_TRANSFORMERS:  # pragma: no cover
            from safeguard.errors import missing_dependency

            raise missing_dependency("transformers", "hf")
        super().__init__(config)
        self.source = SyntheticSource(
            vocab_size=config.vocab_size,
            entropy=config.entropy,
            context=config.context,
            seed=config.seed,
            zipf_exponent=config.zipf_exponent,
            spread=config.spread,
        )
        # generate() reads the device and dtype from the parameters; this one is never used otherwise
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
            use_cache=False,
            do_sample=True,
            top_k=0,
        )
        self.post_init()

    @classmethod
    def can_generate(cls) -> bool:
        return True

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # there are no attention layers to cache; generate must not build a DynamicCache
        return False

    def next_token_probs(self, context_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The source's next-token distribution (numpy, no forward pass); shape ``(vocab,)``."""
        return self.source.next_token_probs(context_ids)

    def _init_weights(self, module: Any) -> None:  # no weights to initialise
        return None

    def get_input_embeddings(self) -> Any:
        return None

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits of shape ``(batch, seq or logits_to_keep, vocab)``; the mask is not needed."""
        del attention_mask, kwargs
        if use_cache:
            raise ConfigError(
                "SyntheticLM keeps no key-value cache; generate with use_cache=False (its default)"
            )
        ids = input_ids.detach().cpu().numpy()
        batch, length = ids.shape
        first = 0 if not logits_to_keep else max(length - int(logits_to_keep), 0)
        logits = np.empty((batch, length - first, self.source.vocab_size), dtype=np.float32)
        for b in range(batch):
            for j, t in enumerate(range(first, length)):
                logits[b, j] = self.source.logits(ids[b, : t + 1])
        out = torch.from_numpy(logits).to(device=self.anchor.device, dtype=self.anchor.dtype)
        return CausalLMOutputWithPast(logits=out)


def entropy_sweep(
    levels: Sequence[float],
    *,
    vocab_size: int = 1000,
    context: int = 2,
    seed: int = 0,
    **options: Any,
) -> list[SyntheticLM]:
    """One :class:`SyntheticLM` per entropy level (nats), sharing vocabulary, context and seed."""
    return [
        SyntheticLM(
            SyntheticLMConfig(
                vocab_size=vocab_size, entropy=float(h), context=context, seed=seed, **options
            )
        ).eval()
        for h in levels
    ]
