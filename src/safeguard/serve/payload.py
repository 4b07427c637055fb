"""The body of a detection request: read within the size limit, then checked before and after the schema.

Cheapest refusal first, and each check's cost bounded by the limits, never by the body:
:func:`read_body` stops at ``max_body_bytes`` (413); :func:`check_value_count` counts JSON
values on the raw bytes (413); :func:`parse_json` refuses NaN/Infinity and deep nesting
(400); :func:`check_counts` checks the lengths of ``texts``, ``prompts`` and ``key_ids``
before the schema validates a single item (413/422); :func:`check_limits` checks the
characters of the validated request (413/422). The order they run in is
:func:`safeguard.serve.app._parse_request`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from safeguard.serve.api_errors import ApiError
from safeguard.serve.config import Limits, ServerConfig
from safeguard.serve.models import DetectRequest

__all__ = [
    "check_counts",
    "check_limits",
    "check_value_count",
    "most_values",
    "parse_json",
    "read_body",
]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read incrementally and refused (413) as soon as it passes ``limit`` bytes."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise ApiError(415, f"Content-Type {ctype!r} is not supported; send application/json")
    too_large = ApiError(
        413, f"request body is over the limit of {limit} bytes; split the batch into smaller ones"
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length must be a non-negative integer")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, "the request body is empty; send a JSON object with `texts`")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        where = (
            f" (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise ApiError(400, f"the request body is not valid UTF-8 JSON{where}") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None


def most_values(lim: Limits) -> int:
    """JSON values a request within ``lim`` can hold: texts, prompts, key ids, 4 members."""
    return 2 * lim.max_texts + lim.max_keys + 4


def check_value_count(body: bytes, lim: Limits) -> None:
    """Refuse (413) a body with more strings or separators than any request within ``lim``.

    A scan of the raw bytes at C speed, before anything is parsed: escaped backslashes and
    quotes are dropped, the remaining quotes delimit the strings, and commas outside strings
    separate JSON values. A valid request within the limits has at most
    :func:`most_values` strings and fewer commas than that, so nothing it could send is
    refused here; ``{"texts": [1, 1, ...]}`` with half a million items is refused in a few
    milliseconds instead of being parsed and validated item by item.
    """
    most = most_values(lim)
    too_many = ApiError(
        413,
        f"the request body holds more than {most} JSON values; a request within this "
        f"server's limits has at most {lim.max_texts} texts, as many prompts and "
        f"{lim.max_keys} key ids; split the batch",
    )
    raw = body.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in body else body
    if raw.count(b'"') > 2 * most:
        raise too_many
    outside = raw.split(b'"')[::2]  # at most `most` + 1 pieces
    if sum(piece.count(b",") for piece in outside) >= most:
        raise too_many


def check_counts(payload: Any, lim: Limits) -> None:
    """Counts of the top-level lists, checked before the schema validates their items."""
    if not isinstance(payload, dict):
        return  # the schema refuses it with one error
    texts, prompts, key_ids = (payload.get(k) for k in ("texts", "prompts", "key_ids"))
    if isinstance(texts, list) and len(texts) > lim.max_texts:
        raise ApiError(
            413,
            f"`texts` has {len(texts)} entries; the limit is {lim.max_texts} per request; "
            "split the batch",
        )
    if isinstance(texts, list) and isinstance(prompts, list) and len(prompts) != len(texts):
        raise ApiError(
            422,
            f"`prompts` has {len(prompts)} entries for {len(texts)} texts; "
            "give one prompt (or null) per text",
        )
    if isinstance(key_ids, list) and len(key_ids) > lim.max_keys:
        raise ApiError(
            413, f"`key_ids` has {len(key_ids)} entries; the limit is {lim.max_keys} per request"
        )


def _is_utf8(value: str | None) -> bool:
    try:
        (value or "").encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_limits(req: DetectRequest, config: ServerConfig) -> None:
    lim = config.limits
    total = 0
    for name, values in (("texts", req.texts), ("prompts", req.prompts or [])):
        for i, value in enumerate(values):
            n = len(value or "")
            if n > lim.max_chars_per_text:
                raise ApiError(
                    413,
                    f"`{name}[{i}]` has {n} characters; the limit is {lim.max_chars_per_text} "
                    "per text; truncate or split it",
                )
            total += n
            if n and not _is_utf8(value):
                raise ApiError(
                    422, f"`{name}[{i}]` holds an unpaired surrogate; send valid Unicode text"
                )
    if total > lim.max_total_chars:
        raise ApiError(
            413,
            f"the request has {total} characters in all; the limit is {lim.max_total_chars}; "
            "split the batch",
        )
