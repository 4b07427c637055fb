"""transformers' KGW and SynthID-Text watermarks with exact p-values, for side-by-side studies.

Both competitors run inside ``model.generate`` through transformers' own
``watermarking_config=`` (so a study compares like with like: same model, prompts,
sampler), and both are scored here with an exact null distribution instead of the
normal approximation transformers reports:

* :class:`KGW` — Kirchenbauer et al. 2023, "A Watermark for Large Language Models"
  (ICML), Algorithm 2 ("lefthash"): the previous token seeds a permutation of the
  vocabulary whose first ``γ·V`` ids are green and get ``+δ`` on their logits. Scored
  units are the *distinct* (previous token, token) pairs of the text (the first
  generated token keyed by the last prompt token); a repeated pair carries no new
  evidence and counting it would break the null. Under the null each scored token is
  green with probability ``γ`` independently, so the green count is
  ``Binomial(T, γ)`` and the p-value is its exact upper tail (the paper's z-test, eq. 2,
  is its normal approximation).
* :class:`SynthID` — Dathathri et al. 2024, "Scalable watermarking for identifying
  large language model outputs" (Nature), tournament sampling with ``m`` layers. The
  score is the sum of g-values over scored tokens and layers, where a token is scored
  when its ``(ngram_len - 1)``-token context has not occurred before in the text (the
  generation-time repeated-context masking; the context of the first tokens is the
  zero padding the processor starts from, never the prompt). Under the null every
  g-value is a draw from the fixed sampling table with ``P(g = 1) = q`` (the table's
  share of ones, ≈ 1/2) and different layers index different table entries, so the sum
  is ``Binomial(m·T, q)`` and the p-value is its exact upper tail. (The paper's Bayesian
  detector must be trained per key and is not used.)

The green lists and g-values come from the same functions generation uses: KGW's green
list is recomputed here from its definition (the same seeded ``torch.randperm`` call,
checked against transformers' ``WatermarkDetector`` in the tests); SynthID's g-values
and repetition mask come from the public ``compute_g_values`` /
``compute_context_repetition_mask`` of transformers' processor.

Both draw their randomness from a ``torch.Generator`` on the generation device, so
detection must use the device the text was generated on (``device=``, default CPU).

Needs torch and transformers (``pip install 'safeguard[hf]'``).
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from scipy import stats

from safeguard.errors import ConfigError, DetectionError, missing_dependency

try:
    import torch
    from transformers import SynthIDTextWatermarkingConfig, WatermarkingConfig
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_dependency("transformers", "hf") from exc

__all__ = ["KGW", "Competitor", "SynthID", "kgw_greenlist"]

#: transformers' default KGW hashing key (a public constant: pass your own in a study).
DEFAULT_KGW_KEY = 15485863
_U64 = 2**64 - 1


@runtime_checkable
class Competitor(Protocol):
    """What a study needs from a watermark that runs through ``watermarking_config=``."""

    name: str

    def generation_config(self, model_config: Any) -> Any:
        """The ``watermarking_config=`` for ``model.generate`` on a model with this config."""
        ...

    def prefix_pvalues(
        self, prompt_ids: Any, generated_ids: Any, lengths: Sequence[int]
    ) -> np.ndarray:
        """Exact p-values of the first ``lengths[j]`` generated tokens; shape ``(len(lengths),)``."""
        ...

    def pvalue(self, prompt_ids: Any, generated_ids: Any) -> float:
        """Exact p-value of the whole generated text."""
        ...


# --------------------------------------------------------------------------- #
# shared helpers


def _ids(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise DetectionError(
            f"`{name}` must be one sequence of integer token ids (1-D); got shape {arr.shape}, dtype {arr.dtype}"
        )
    return arr.astype(np.int64)


def _lengths(lengths: Sequence[int], available: int) -> np.ndarray:
    lens = np.asarray(list(lengths), dtype=np.int64)
    if lens.size == 0 or lens.min() < 1 or lens.max() > available:
        raise DetectionError(
            f"`lengths` must be prefix lengths in 1..{available} (the generated tokens); got {list(lengths)}"
        )
    return lens


def _vocab_of(model_config: Any) -> int:
    getter = getattr(model_config, "get_text_config", None)
    cfg = getter() if callable(getter) else model_config
    vocab = getattr(cfg, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 2:
        raise ConfigError(
            f"model config has no usable `vocab_size` (={vocab!r}); pass a transformers model config"
        )
    return vocab


# --------------------------------------------------------------------------- #
# KGW


def kgw_greenlist(
    previous_token: int,
    *,
    vocab_size: int,
    greenlist_ratio: float,
    hashing_key: int,
    device: str = "cpu",
) -> np.ndarray:
    """Green ids after ``previous_token`` under KGW lefthash (shape ``(int(γ·V),)``).

    The definition transformers' ``WatermarkLogitsProcessor`` generates with: a
    ``torch.Generator`` on ``device`` seeded with ``hashing_key · previous_token mod
    (2^64 - 1)`` draws ``randperm(vocab_size)``; its first ``int(γ·V)`` entries are green.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed((hashing_key * int(previous_token)) % _U64)
    perm = torch.randperm(vocab_size, generator=generator, device=device)
    return perm[: int(vocab_size * greenlist_ratio)].cpu().numpy()


class KGW:
    """KGW lefthash watermark (transformers' ``WatermarkingConfig``) with an exact binomial test.

    Args:
        greenlist_ratio: ``γ``, the green share of the vocabulary.
        bias: ``δ``, added to green logits at generation.
        seeding_scheme: Only ``"lefthash"`` is scored exactly here (``selfhash`` makes
            the green list depend on the candidate token and is not supported).
        context_width: Passed to transformers; its lefthash seed uses the last token only,
            so scoring is over (previous token, token) pairs for any width.
        hashing_key: The secret integer key. Never shown in ``repr``.
        vocab_size: The model's vocabulary; otherwise taken from the model config given
            to :meth:`generation_config`.
        device: Device the text is generated on (the seeded permutation depends on it).
        cache_size: Green lists kept in memory (one per previous token).
    """

    name = "kgw"

    def __init__(
        self,
        greenlist_ratio: float = 0.25,
        bias: float = 2.0,
        seeding_scheme: Literal["lefthash"] = "lefthash",
        context_width: int = 1,
        hashing_key: int = DEFAULT_KGW_KEY,
        *,
        vocab_size: int | None = None,
        device: str = "cpu",
        cache_size: int = 512,
    ) -> None:
        if not 0.0 < greenlist_ratio < 1.0:
            raise ConfigError(
                f"`greenlist_ratio` (={greenlist_ratio!r}) must be in (0, 1); the paper uses 0.25-0.5"
            )
        if seeding_scheme != "lefthash":
            raise ConfigError(
                f"`seeding_scheme` (={seeding_scheme!r}) is not scored exactly here; use 'lefthash'"
            )
        if context_width < 1:
            raise ConfigError(f"`context_width` (={context_width!r}) must be >= 1")
        if not isinstance(hashing_key, numbers.Integral) or hashing_key < 1:
            raise ConfigError("`hashing_key` must be a positive integer")
        self.greenlist_ratio = float(greenlist_ratio)
        self.bias = float(bias)
        self.seeding_scheme = seeding_scheme
        self.context_width = int(context_width)
        self._hashing_key = int(hashing_key)
        self.vocab_size = vocab_size
        self.device = device
        self._cache_size = cache_size
        self._masks: OrderedDict[int, np.ndarray] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"KGW(greenlist_ratio={self.greenlist_ratio}, bias={self.bias}, "
            f"seeding_scheme={self.seeding_scheme!r}, context_width={self.context_width}, "
            f"vocab_size={self.vocab_size})"
        )

    def generation_config(self, model_config: Any) -> WatermarkingConfig:
        """transformers' ``WatermarkingConfig`` for this key; records the model's vocabulary."""
        vocab = _vocab_of(model_config)
        if self.vocab_size is not None and self.vocab_size != vocab:
            raise ConfigError(
                f"KGW was set up for vocab_size={self.vocab_size} but the model has {vocab}; "
                "use one KGW object per vocabulary"
            )
        self.vocab_size = vocab
        return WatermarkingConfig(
            greenlist_ratio=self.greenlist_ratio,
            bias=self.bias,
            hashing_key=self._hashing_key,
            seeding_scheme=self.seeding_scheme,
            context_width=self.context_width,
        )

    def _vocab(self) -> int:
        if self.vocab_size is None:
            raise ConfigError(
                "KGW does not know the vocabulary size; pass `vocab_size=` or call "
                "`generation_config(model.config)` first"
            )
        return self.vocab_size

    def green_mask(self, previous_token: int) -> np.ndarray:
        """Boolean mask over the vocabulary of the tokens green after ``previous_token``."""
        prev = int(previous_token)
        mask = self._masks.get(prev)
        if mask is None:
            vocab = self._vocab()
            mask = np.zeros(vocab, dtype=bool)
            mask[
                kgw_greenlist(
                    prev,
                    vocab_size=vocab,
                    greenlist_ratio=self.greenlist_ratio,
                    hashing_key=self._hashing_key,
                    device=self.device,
                )
            ] = True
            self._masks[prev] = mask
            if len(self._masks) > self._cache_size:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(prev)
        return mask

    def green_tokens(self, prompt_ids: Any, generated_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per generated token: ``(scored, green)`` boolean arrays, shape ``(len(generated),)``.

        ``scored`` is True at the first occurrence of each (previous token, token) pair;
        ``green`` is the token's colour (computed for every token).
        """
        prompt = _ids(prompt_ids, "prompt_ids")
        gen = _ids(generated_ids, "generated_ids")
        if prompt.size == 0:
            raise DetectionError(
                "`prompt_ids` is empty; KGW keys the first generated token by the last prompt token"
            )
        seq = np.concatenate([prompt[-1:], gen])
        seen: set[tuple[int, int]] = set()
        scored = np.zeros(gen.size, dtype=bool)
        green = np.zeros(gen.size, dtype=bool)
        for t in range(gen.size):
            pair = (int(seq[t]), int(seq[t + 1]))
            scored[t] = pair not in seen
            seen.add(pair)
            green[t] = self.green_mask(pair[0])[pair[1]]
        return scored, green

    def prefix_pvalues(
        self, prompt_ids: Any, generated_ids: Any, lengths: Sequence[int]
    ) -> np.ndarray:
        """Exact ``P(Binomial(T, γ) >= green)`` over distinct pairs of each prefix."""
        scored, green = self.green_tokens(prompt_ids, generated_ids)
        idx = _lengths(lengths, scored.size) - 1
        n = np.cumsum(scored)[idx]
        g = np.cumsum(green & scored)[idx]
        return stats.binom.sf(g - 1, n, self.greenlist_ratio)

    def pvalue(self, prompt_ids: Any, generated_ids: Any) -> float:
        gen = _ids(generated_ids, "generated_ids")
        return float(self.prefix_pvalues(prompt_ids, gen, [gen.size])[0])

    def pvalues(self, prompts: Sequence[Any], generated: Sequence[Any]) -> np.ndarray:
        """:meth:`pvalue` of many texts; each green list is drawn once for the whole batch."""
        seqs = []
        for prompt_ids, generated_ids in zip(prompts, generated, strict=True):
            prompt = _ids(prompt_ids, "prompt_ids")
            if prompt.size == 0:
                raise DetectionError(
                    "`prompt_ids` is empty; KGW keys the first generated token by the last "
                    "prompt token"
                )
            seqs.append(np.concatenate([prompt[-1:], _ids(generated_ids, "generated_ids")]))
        vocab = self._vocab()
        masks: dict[int, np.ndarray] = {}
        for prev in np.unique(np.concatenate([q[:-1] for q in seqs])) if seqs else []:
            mask = np.zeros(vocab, dtype=bool)
            mask[
                kgw_greenlist(
                    int(prev),
                    vocab_size=vocab,
                    greenlist_ratio=self.greenlist_ratio,
                    hashing_key=self._hashing_key,
                    device=self.device,
                )
            ] = True
            masks[int(prev)] = mask
        out = np.empty(len(seqs))
        for i, q in enumerate(seqs):
            pairs = np.unique(np.stack([q[:-1], q[1:]], axis=1), axis=0)
            green = sum(int(masks[int(a)][int(b)]) for a, b in pairs)
            out[i] = stats.binom.sf(green - 1, len(pairs), self.greenlist_ratio)
        return out

    def normal_pvalues(
        self, prompt_ids: Any, generated_ids: Any, lengths: Sequence[int]
    ) -> np.ndarray:
        """The p-value transformers' ``WatermarkDetector`` reports, for comparison only.

        Its default counts every pair, repeats included, and takes the normal tail of
        ``z = (g - γT) / sqrt(T γ (1 - γ))`` — an approximation that is anti-conservative
        in the far tail.
        """
        _, green = self.green_tokens(prompt_ids, generated_ids)
        lens = _lengths(lengths, green.size)
        n = lens.astype(np.float64)
        g = np.cumsum(green)[lens - 1].astype(np.float64)
        gamma = self.greenlist_ratio
        z = (g - gamma * n) / np.sqrt(n * gamma * (1 - gamma))
        return stats.norm.sf(z)


# --------------------------------------------------------------------------- #
# SynthID-Text


class SynthID:
    """SynthID-Text tournament watermark (transformers' processor) with an exact binomial test.

    Args:
        ngram_len: Context length + 1 of the keyed hash.
        keys: One integer key per tournament layer (the secret; never shown in ``repr``).
            Without it, ``num_layers`` keys are drawn from ``seed``.
        num_layers: Layers when ``keys`` is not given.
        seed: Seed for drawn keys.
        context_history_size, sampling_table_seed, sampling_table_size: As in
            ``SynthIDTextWatermarkingConfig``.
        vocab_size: The model's vocabulary, only checked against :meth:`generation_config`;
            detection does not need it.
        device: Device the text is generated on (the sampling table is drawn there).
    """

    name = "synthid"

    def __init__(
        self,
        ngram_len: int = 5,
        keys: Sequence[int] | None = None,
        *,
        num_layers: int = 30,
        seed: int = 0,
        context_history_size: int = 1024,
        sampling_table_seed: int = 0,
        sampling_table_size: int = 2**16,
        vocab_size: int | None = None,
        device: str = "cpu",
    ) -> None:
        if ngram_len < 2:
            raise ConfigError(f"`ngram_len` (={ngram_len!r}) must be >= 2; the paper uses 5")
        if keys is None:
            keys = [int(k) for k in np.random.default_rng(seed).integers(0, 2**20, size=num_layers)]
        self._keys = [int(k) for k in keys]
        if not self._keys:
            raise ConfigError("`keys` is empty; SynthID needs one key per tournament layer")
        self.ngram_len = int(ngram_len)
        self.context_history_size = context_history_size
        self.sampling_table_seed = sampling_table_seed
        self.sampling_table_size = sampling_table_size
        self.vocab_size = vocab_size
        self.device = device
        self._processor: Any = None

    def __repr__(self) -> str:
        return (
            f"SynthID(ngram_len={self.ngram_len}, layers={self.num_layers}, "
            f"vocab_size={self.vocab_size})"
        )

    @property
    def num_layers(self) -> int:
        return len(self._keys)

    def _config(self) -> SynthIDTextWatermarkingConfig:
        return SynthIDTextWatermarkingConfig(
            ngram_len=self.ngram_len,
            keys=list(self._keys),
            context_history_size=self.context_history_size,
            sampling_table_seed=self.sampling_table_seed,
            sampling_table_size=self.sampling_table_size,
        )

    def generation_config(self, model_config: Any) -> SynthIDTextWatermarkingConfig:
        """transformers' ``SynthIDTextWatermarkingConfig``; records the model's vocabulary."""
        vocab = _vocab_of(model_config)
        if self.vocab_size is not None and self.vocab_size != vocab:
            raise ConfigError(
                f"SynthID was set up for vocab_size={self.vocab_size} but the model has {vocab}"
            )
        self.vocab_size = vocab
        return self._config()

    @property
    def processor(self) -> Any:
        """transformers' SynthID processor for this key (built once)."""
        if self._processor is None:
            # g-values and the repetition mask do not depend on the vocabulary (transformers'
            # SynthID processor ignores it), so detection works before generation_config()
            self._processor = self._config().construct_processor(
                self.vocab_size or 0, torch.device(self.device)
            )
        return self._processor

    @property
    def q(self) -> float:
        """``P(g = 1)`` under the null: the sampling table's share of ones."""
        return float(self.processor.sampling_table.double().mean())

    def scored_gvalues(self, generated_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per generated token: ``(scored, g_sum)``, the repetition mask and the layer sum of g."""
        gen = _ids(generated_ids, "generated_ids")
        proc = self.processor
        pad = np.zeros(self.ngram_len - 1, dtype=np.int64)
        seq = torch.from_numpy(np.concatenate([pad, gen])).to(self.device)[None]
        with torch.no_grad():
            g = proc.compute_g_values(seq)[0]  # (len(gen), layers)
            mask = proc.compute_context_repetition_mask(seq)[0].bool()  # (len(gen),)
        return mask.cpu().numpy(), g.sum(dim=1).cpu().numpy().astype(np.int64)

    def prefix_pvalues(
        self, prompt_ids: Any, generated_ids: Any, lengths: Sequence[int]
    ) -> np.ndarray:
        """Exact ``P(Binomial(m·T, q) >= score)`` of each prefix; the prompt is not used."""
        del prompt_ids  # the processor's context starts from zero padding, never the prompt
        scored, g_sum = self.scored_gvalues(generated_ids)
        idx = _lengths(lengths, scored.size) - 1
        n = np.cumsum(scored)[idx] * self.num_layers
        s = np.cumsum(g_sum * scored)[idx]
        return stats.binom.sf(s - 1, n, self.q)

    def pvalue(self, prompt_ids: Any, generated_ids: Any) -> float:
        gen = _ids(generated_ids, "generated_ids")
        return float(self.prefix_pvalues(prompt_ids, gen, [gen.size])[0])

    def pvalues(self, prompts: Sequence[Any], generated: Sequence[Any]) -> np.ndarray:
        """:meth:`pvalue` of many texts; texts of equal length share one batched g-value pass."""
        del prompts  # the processor's context starts from zero padding, never the prompt
        gens = [_ids(g, "generated_ids") for g in generated]
        out = np.empty(len(gens))
        by_length: dict[int, list[int]] = {}
        for i, g in enumerate(gens):
            by_length.setdefault(g.size, []).append(i)
        proc = self.processor
        for idx in by_length.values():
            for start in range(0, len(idx), 256):
                chunk = idx[start : start + 256]
                pad = np.zeros((len(chunk), self.ngram_len - 1), dtype=np.int64)
                batch = np.concatenate([pad, np.stack([gens[i] for i in chunk])], axis=1)
                seq = torch.from_numpy(batch).to(self.device)
                with torch.no_grad():
                    g = proc.compute_g_values(seq).sum(dim=2).cpu().numpy()
                    mask = proc.compute_context_repetition_mask(seq).bool().cpu().numpy()
                n = mask.sum(axis=1) * self.num_layers
                score = (g * mask).sum(axis=1)
                out[chunk] = stats.binom.sf(score - 1, n, self.q)
        return out
