"""A tiny language model built offline: a byte-level BPE tokenizer trained on the bundled
corpus and a small randomly initialised GPT-2, saved with ``save_pretrained``.

The model has not been trained, so its text is not fluent; its next-token
distributions are peaked (a wide initialisation) so that sampling behaves more like a
real model's than a uniform one would. It exists so the demo, the notebooks and the
tests can exercise the real ``from_pretrained(path)`` code paths without any download.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from safeguard.errors import missing_dependency

__all__ = ["build_tiny_lm", "corpus_lines"]

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>"]


def corpus_lines() -> list[str]:
    """Lines of the bundled public corpus (written for this project)."""
    text = resources.files("safeguard.demo").joinpath("data/corpus.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def build_tiny_lm(
    path: str | Path,
    *,
    vocab_size: int = 1024,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    initializer_range: float = 0.3,
    seed: int = 0,
) -> Path:
    """Train a tokenizer, build a GPT-2 and save both to ``path``; returns ``path``.

    ``AutoTokenizer.from_pretrained(path)`` and ``AutoModelForCausalLM.from_pretrained(path)``
    load them back. Building takes about a second.
    """
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("transformers", "hf") from exc

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        padding_side="left",
    )
    fast.save_pretrained(out)
    eos, pad = fast.convert_tokens_to_ids("<|endoftext|>"), fast.convert_tokens_to_ids("<|pad|>")
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=512,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        initializer_range=initializer_range,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.pad_token_id = pad
    model.save_pretrained(out)
    (out / "safeguard_tiny_lm.json").write_text(
        json.dumps({"seed": seed, "note": "untrained; for tests and demos"})
    )
    return out
