"""The small evaluation language model shipped with safeguard, its held-out human text, and
sampling continuations the same way for every scheme.

A randomly initialised model has near-uniform next-token distributions, which makes every
watermark look easy to detect. The evaluation therefore runs on a small GPT-2 (4 layers,
about 3.4 M parameters, byte-level BPE with 8,192 tokens) trained offline on public-domain
English: the King James Bible, the 1913 Webster blocks of GCIDE, the Jargon File and The
Devil's Dictionary. ``assets/lm/README.md`` is its model card (sources, licenses, training
command, held-out perplexity, entropy profile); ``benchmarks/train_eval_lm.py`` rebuilds it.

``assets/human.jsonl.gz`` holds passages of the same corpus that neither the tokenizer nor
the model saw in training: the unwatermarked (null) texts of the evaluation, and the source
of its prompts.

Importing this module loads neither torch nor transformers; the functions that need them
import them when called.

>>> len(human_texts(limit=3))
3
>>> len(prompts(2, tokens=8)) == 2
True
"""

from __future__ import annotations

import gzip
import json
import random
from functools import lru_cache
from pathlib import Path
from typing import Any

from safeguard.errors import ConfigError, missing_dependency

__all__ = ["EVAL_LM_DIR", "HUMAN_TEXTS_PATH", "human_texts", "load_eval_lm", "prompts", "sample"]

_ASSETS = Path(__file__).resolve().parent / "assets"

#: Directory of the shipped model: ``config.json``, ``model.safetensors`` (float16),
#: ``generation_config.json``, the tokenizer files and the model card.
EVAL_LM_DIR: Path = _ASSETS / "lm"

#: Held-out human passages, one JSON object ``{"id", "source", "text"}`` per line.
HUMAN_TEXTS_PATH: Path = _ASSETS / "human.jsonl.gz"


def load_eval_lm(*, dtype: Any = None) -> tuple[Any, Any]:
    """Load the evaluation model (in eval mode) and its tokenizer.

    Args:
        dtype: A ``torch.dtype`` for the weights; ``None`` means ``torch.float32``. The
            file stores float16 weights to stay small; computing in float32 is the default
            so that log-probabilities match across machines.

    Returns:
        ``(model, tokenizer)``: a ``GPT2LMHeadModel`` and a ``PreTrainedTokenizerFast``
        whose ``<|endoftext|>`` token is bos, eos and pad.

    Raises:
        DependencyError: torch or transformers is not installed.
    """
    try:
        import torch
    except ImportError as exc:
        raise missing_dependency("torch", "hf") from exc
    try:
        from transformers import AutoTokenizer, GPT2LMHeadModel
    except ImportError as exc:
        raise missing_dependency("transformers", "hf") from exc
    if dtype is None:
        dtype = torch.float32
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(
            f"`dtype` (={dtype!r}) must be a torch.dtype such as torch.float32 or None"
        )
    model = GPT2LMHeadModel.from_pretrained(EVAL_LM_DIR, dtype=dtype)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(EVAL_LM_DIR)
    return model, tokenizer


@lru_cache(maxsize=1)
def _records() -> tuple[dict[str, str], ...]:
    with gzip.open(HUMAN_TEXTS_PATH, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def human_records(limit: int | None = None) -> list[dict[str, str]]:
    """The held-out passages as ``{"id", "source", "text"}`` dicts, in file order."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"`limit` (={limit!r}) must be a non-negative int or None")
    records = _records()
    return [dict(r) for r in (records if limit is None else records[:limit])]


def human_texts(limit: int | None = None) -> list[str]:
    """The held-out human passages (at least ~120 tokens each), in file order.

    Args:
        limit: Return only the first ``limit`` passages; ``None`` returns all (~1,500).
    """
    return [r["text"] for r in human_records(limit)]


def prompts(n: int, *, tokens: int = 16, seed: int = 0) -> list[str]:
    """``n`` prompts: the first ``tokens`` tokens of distinct held-out passages.

    The passages are chosen by a seeded shuffle, so the same arguments always give the
    same prompts. Each prompt is the decoded prefix of a passage, cut at a token boundary
    of the shipped tokenizer (so re-encoding it gives back ``tokens`` tokens for plain
    text).

    Args:
        n: Number of prompts, at most the number of held-out passages.
        tokens: Length of each prompt in tokens of the shipped tokenizer (>= 1).
        seed: Seed of the passage choice.

    Raises:
        ConfigError: ``n`` or ``tokens`` is out of range.
        DependencyError: transformers is not installed.
    """
    records = _records()
    if not isinstance(n, int) or not 0 <= n <= len(records):
        raise ConfigError(f"`n` (={n!r}) must be an int in [0, {len(records)}]")
    if not isinstance(tokens, int) or tokens < 1:
        raise ConfigError(f"`tokens` (={tokens!r}) must be an int >= 1; 16 is typical")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    tokenizer = _tokenizer()
    out = []
    for i in order[:n]:
        ids = tokenizer(records[i]["text"], truncation=True, max_length=tokens)["input_ids"]
        out.append(tokenizer.decode(ids))
    return out


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise missing_dependency("transformers", "hf") from exc
    return AutoTokenizer.from_pretrained(EVAL_LM_DIR)


def sample(
    model: Any,
    prompts: Any,
    *,
    watermarker: Any = None,
    watermarking_config: Any = None,
    new_tokens: int = 200,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    progress: Any = None,
) -> list[Any]:
    """Continuations of ``prompts`` by full-vocabulary sampling (``top_k=0``), exactly ``new_tokens`` each.

    Every scheme of an evaluation is sampled through this one function, so they differ only
    in the watermark: plain sampling (neither ``watermarker`` nor ``watermarking_config``),
    a safeguard :class:`~safeguard.watermark.Watermarker`, or a transformers
    ``watermarking_config`` (KGW, SynthID-Text). Prompts of different lengths are
    left-padded within a batch; the attention mask keeps padding out of the context.

    Args:
        model: A causal LM whose generation config has a ``pad_token_id`` (or an
            ``eos_token_id``, used instead).
        prompts: Token-id sequences (lists or 1-D arrays).
        watermarker: A safeguard ``Watermarker`` to generate with.
        watermarking_config: A transformers ``watermarking_config`` to generate with.
        new_tokens: Tokens generated per prompt.
        temperature: Sampling temperature.
        seed: ``torch.manual_seed`` before the first batch.
        batch_size: Prompts per ``generate`` call.
        progress: Optional wrapper of the batch iterator, e.g. a progress bar factory
            ``progress(iterable, total)``.

    Returns:
        One int64 numpy array of generated ids per prompt (the prompt not included).
    """
    import numpy as np

    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise missing_dependency("torch", "hf") from exc
    if watermarker is not None and watermarking_config is not None:
        raise ConfigError("pass `watermarker` or `watermarking_config`, not both")
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = model.generation_config.eos_token_id
    prompts = [list(map(int, p)) for p in prompts]
    torch.manual_seed(seed)
    starts = range(0, len(prompts), batch_size)
    out: list[Any] = []
    for s in progress(starts, len(starts)) if progress else starts:
        chunk = prompts[s : s + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), int(pad), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):  # left padding
            ids[i, width - len(p) :] = torch.as_tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        kwargs: dict[str, Any] = dict(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            top_k=0,
            temperature=temperature,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=int(pad),
        )
        if watermarking_config is not None:
            kwargs["watermarking_config"] = watermarking_config
        with torch.no_grad():
            rows = (
                watermarker.generate(model, **kwargs)
                if watermarker is not None
                else model.generate(**kwargs)
            )
        out.extend(np.asarray(row[width:].tolist(), dtype=np.int64) for row in rows)
    return out
