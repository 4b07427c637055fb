"""The small evaluation language model shipped with safeguard, and its held-out human text.

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

__all__ = ["EVAL_LM_DIR", "HUMAN_TEXTS_PATH", "human_texts", "load_eval_lm", "prompts"]

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
