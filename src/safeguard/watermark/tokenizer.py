"""Loading a tokenizer for detection without loading a model.

A folder with ``tokenizer.json`` is read with the light ``tokenizers`` library;
anything else goes through ``transformers.AutoTokenizer``. Both expose the same
small interface (call, ``get_vocab``, ``len``, ``decode``) so detection code does
not care which one it got, and both give the same vocabulary fingerprint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeguard.errors import DataError, missing_dependency

__all__ = ["FastTokenizer", "load_tokenizer"]


class FastTokenizer:
    """A ``tokenizers.Tokenizer`` behind the calling convention of transformers' tokenizers."""

    def __init__(self, tokenizer: Any) -> None:
        # A tokenizer.json saved after a truncated or padded call keeps those settings; detection
        # must see every token of the text, so both are switched off.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self._tok.encode(text, add_special_tokens=add_special_tokens).ids}

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)


def load_tokenizer(path: str | Path) -> Any:
    """Load the tokenizer saved in folder ``path`` (or a ``tokenizer.json`` file).

    Raises:
        DataError: The path holds no tokenizer.
    """
    location = Path(path)
    file = location if location.is_file() else location / "tokenizer.json"
    if file.is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover
            raise missing_dependency("tokenizers", "hf") from exc
        try:
            return FastTokenizer(Tokenizer.from_file(str(file)))
        except Exception as exc:
            raise DataError(f"cannot read tokenizer {str(file)!r}: {exc}") from None
    if not location.is_dir():
        raise DataError(
            f"tokenizer path {str(location)!r} does not exist; pass the model or tokenizer folder"
        )
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("transformers", "hf") from exc
    try:
        return AutoTokenizer.from_pretrained(str(location))
    except (OSError, ValueError) as exc:
        raise DataError(f"no tokenizer in {str(location)!r}: {exc}") from None
