"""The first stage of the study: the model, its tokenizer, the held-out human documents and
the prompts cut from them, plus what a report records about the model and the machine.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeguard.errors import UsageError
from safeguard.watermark.evaluation import lm
from safeguard.watermark.evaluation._common import Progress, derived_rng, torch_module
from safeguard.watermark.evaluation.config import EvalConfig


@dataclass
class Setup:
    """What every later stage works on."""

    model: Any
    tokenizer: Any
    model_name: str
    prompts: list[np.ndarray]
    human: list[tuple[np.ndarray, np.ndarray]]  # (prompt, continuation) token ids
    vocab_size: int


def load_setup(config: EvalConfig, progress: Progress) -> Setup:
    """Load the model and cut ``config.texts`` prompts from the held-out human documents."""
    model, tokenizer, name = _load_model(config)
    progress.stage(
        f"model: {name}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    )
    human = _human_documents(config, tokenizer)
    order = derived_rng(config.seed, "prompts").permutation(len(human))
    prompts = [human[i][0] for i in order[: config.texts]]
    vocab = int(getattr(model.config, "vocab_size", len(tokenizer)))
    return Setup(model, tokenizer, name, prompts, human, vocab)


def _load_model(config: EvalConfig) -> tuple[Any, Any, str]:
    """``(model, tokenizer, name)``: the shipped LM, or the folder ``config.model``."""
    torch = torch_module()
    if config.model is None:
        model, tokenizer = lm.load_eval_lm()
        return model, tokenizer, "safeguard evaluation LM (shipped)"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(config.model)
    if not path.is_dir():
        raise UsageError(
            f"`--model` (={config.model!r}) is not a directory; pass a folder saved with "
            "save_pretrained (model and tokenizer)"
        )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer, str(path)


def _human_documents(config: EvalConfig, tokenizer: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Held-out human passages as ``(prompt, continuation)`` token ids of the run's lengths."""
    need = config.prompt_tokens + config.new_tokens
    # Human passages are tokenized whole and cut to length here, never fed whole to the model.
    tokenizer.model_max_length = max(int(getattr(tokenizer, "model_max_length", 0) or 0), 10**9)
    human: list[tuple[np.ndarray, np.ndarray]] = []
    buffer: list[int] = []
    for text in lm.human_texts():
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        # Passages shorter than a text are joined with their successors into one document.
        buffer.extend(
            ids if not buffer else tokenizer("\n\n" + text, add_special_tokens=False)["input_ids"]
        )
        if len(buffer) >= need:
            arr = np.asarray(buffer[:need], dtype=np.int64)
            human.append((arr[: config.prompt_tokens], arr[config.prompt_tokens :]))
            buffer = []
    if len(human) < config.texts:
        raise UsageError(
            f"only {len(human)} human documents of {need} tokens are available; lower "
            "`texts`, `new_tokens` or `prompt_tokens`"
        )
    return human


def model_section(config: EvalConfig, setup: Setup) -> dict[str, Any]:
    """The report's ``model`` entry (the plain samples' entropy is added later)."""
    return {
        "name": setup.model_name,
        "vocab_size": setup.vocab_size,
        "parameters": int(sum(p.numel() for p in setup.model.parameters())),
        "weights_sha256": weights_digest(config),
    }


def weights_digest(config: EvalConfig) -> str | None:
    """SHA-256 of the model's safetensors file, so a report names the exact weights."""
    folder = Path(config.model) if config.model is not None else lm.EVAL_LM_DIR
    path = folder / "model.safetensors"
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def environment() -> dict[str, Any]:
    """Versions of Python and the libraries the numbers depend on."""
    env = {"python": platform.python_version(), "machine": platform.machine()}
    for mod in ("torch", "transformers", "numpy"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - reporting only
            env[mod] = None
    try:
        from safeguard import __version__

        env["safeguard"] = __version__
    except Exception:  # pragma: no cover
        pass
    return env
