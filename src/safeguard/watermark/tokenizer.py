"""Loading a tokenizer for detection without loading a model.

A folder with ``tokenizer.json`` is read with the light ``tokenizers`` library;
anything else goes through ``transformers.AutoTokenizer``. Both expose the same
small interface (call, ``get_vocab``, ``len``, ``decode``) so detection code does
not care which one it got, and both give the same vocabulary fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from safeguard._files import json_type
from safeguard.errors import DataError, missing_dependency

__all__ = ["FastTokenizer", "encode_record", "load_tokenizer"]


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


def encode_record(
    record: Any,
    tokenizer: Any,
    *,
    field: str = "text",
    prompt_field: str | None = None,
    clean: Callable[[str], str] | None = None,
) -> tuple[list[int], list[int] | None]:
    """Token ids of a detection record's text and (if recorded) prompt.

    One function for ``safeguard detect`` in-process and on Ray, so both report the same
    reason for the same bad record.

    Args:
        record: A parsed JSON object (one input line).
        tokenizer: From :func:`load_tokenizer`.
        field: Field holding the text.
        prompt_field: Field holding the prompt, if any (``null`` or absent: no prompt).
        clean: Applied to the text and prompt before tokenizing (Unicode normalisation).

    Returns:
        ``(ids, prompt_ids)``; ``prompt_ids`` is ``None`` without a prompt.

    Raises:
        DataError: The record is not an object, the field is missing, empty or not a string,
            the prompt is not a string, or the tokenizer cannot encode the text; the message
            names the field.
    """
    if not isinstance(record, dict):
        raise DataError(f"record is a JSON {json_type(record)}, expected an object")
    if field not in record:
        raise DataError(f"missing field {field!r}")
    text = record[field]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"field {field!r} is empty or not a string")
    prompt = record.get(prompt_field) if prompt_field else None
    if prompt is not None and not isinstance(prompt, str):
        raise DataError(
            f"field {prompt_field!r} is a JSON {json_type(prompt)}, expected a string or null"
        )
    clean = clean or (lambda t: t)
    ids = _encode(tokenizer, clean(text), field)
    return ids, (_encode(tokenizer, clean(prompt), prompt_field or "") if prompt else None)


def _encode(tokenizer: Any, text: str, field: str) -> list[int]:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no tokenizer takes it
        raise DataError(
            f"field {field!r} contains a lone surrogate (U+{ord(text[exc.start]):04X}) at "
            f"character {exc.start}; it is not valid Unicode text"
        ) from None
    try:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    except (TypeError, ValueError) as exc:
        raise DataError(f"the tokenizer cannot encode field {field!r}: {exc}") from None
