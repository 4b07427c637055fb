"""Request and response bodies of the HTTP API (pydantic, unknown fields refused)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from safeguard.serve.config import KEY_ID_PATTERN

__all__ = [
    "DetectRequest",
    "DetectResponse",
    "ErrorBody",
    "ErrorResponse",
    "HealthResponse",
    "KeyInfo",
    "KeyResult",
    "KeysResponse",
    "TextResult",
]

KeyId = Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)]


class DetectRequest(BaseModel):
    """``POST /v1/detect``: texts to test for watermarks.

    Attributes:
        texts: The texts (generated text only, without the prompt).
        prompts: The prompt of each text, if recorded (one per text, ``null`` allowed); its last
            tokens are context for the first generated ones and are never scored.
        key_ids: Keys to test; default: every key of the caller. Several keys are
            Holm-corrected so that ``false_positive_rate`` holds per text.
        false_positive_rate: Rate at which unwatermarked text is flagged; default from the
            server's policy.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    texts: list[str] = Field(min_length=1)
    prompts: list[str | None] | None = None
    key_ids: list[KeyId] | None = Field(default=None, min_length=1)
    false_positive_rate: float | None = Field(default=None, gt=0, lt=1)


Verdict = Literal["watermarked", "not watermarked", "too short to test"]


class KeyResult(BaseModel):
    """One key's test of one text: aggregate, coarse statistics only.

    p-values are rounded up to a fixed grid (1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, then powers
    of ten): still valid p-values, too coarse to read a single token's value from. Scores and
    per-token values are never returned.
    """

    key_id: str
    scheme: str
    verdict: Verdict
    p_value: float
    adjusted_p_value: float
    num_tokens: int
    num_scored: int
    method: str
    min_p_value: float
    approximate: bool
    warnings: list[str]


class TextResult(BaseModel):
    """The outcome for one text, at the index it had in the request.

    ``is_watermarked`` is ``null`` and ``error`` says why when the text could not be tested.
    ``verdict`` is ``too short to test`` (and no statistics are given) when the text is not
    flagged and fewer than 16 of its tokens could be scored: no evidence either way. With the
    tenant's ``detail: decision`` only ``index``, ``is_watermarked``, ``verdict`` and
    ``error`` are returned.
    """

    index: int
    is_watermarked: bool | None
    verdict: Verdict | None = None
    p_value: float | None = None
    best_key_id: str | None = None
    results: list[KeyResult] | None = None
    error: str | None = None


class DetectResponse(BaseModel):
    """``POST /v1/detect`` response."""

    request_id: str
    false_positive_rate: float
    key_ids: list[str]
    flagged: int
    errors: int
    results: list[TextResult]


class KeyInfo(BaseModel):
    """Public facts about a key (never its secret)."""

    key_id: str
    scheme: str
    tokenizer: str


class KeysResponse(BaseModel):
    """``GET /v1/keys`` response: the caller's keys."""

    keys: list[KeyInfo]


class HealthResponse(BaseModel):
    """``GET /healthz`` response."""

    status: Literal["ok"]
    version: str


class ErrorBody(BaseModel):
    """What went wrong."""

    status: int
    code: str
    message: str
    details: list[dict[str, str]] | None = None


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx response."""

    request_id: str
    error: ErrorBody


def finite(x: float) -> float | None:
    """``x`` if finite, else ``None`` (JSON has no inf/nan)."""
    return x if math.isfinite(x) else None
