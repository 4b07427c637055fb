"""The FastAPI application: ``POST /v1/detect``, ``GET /v1/keys``, ``GET /healthz``.

Order of checks on a detection request (the cheapest refusal first): client address
throttled after failed authentications (429 + ``Retry-After``) → bearer token from the header,
before any byte of the body is read (401) → tenant rate limit (429 + ``Retry-After``) →
tenant's detection requests in flight (429 + ``Retry-After``) → body size (413, declared
``Content-Length`` first, then read incrementally, never past the limit) → then, in a worker
thread so that the event loop keeps serving ``/healthz`` and other tenants: JSON values
counted on the raw bytes (413) → JSON (400) → counts of texts, prompts and key ids (413/422)
→ schema (422) → characters (413) → back on the loop: key ids (404) → daily budget per key
(429) → detection in a worker thread. Every response carries ``X-Request-ID``; every error
has the same JSON shape (:class:`~safeguard.serve.models.ErrorResponse`). One log line per
request gives the request id, tenant, counts, status and latency, never a text, a token or
a key secret.

This module wires the pieces together and holds the detection route:

- :mod:`~safeguard.serve.api_errors`: :class:`ApiError`, the error shape and its handlers;
- :mod:`~safeguard.serve.middleware`: request ids, the log line, the last-resort 500;
- :mod:`~safeguard.serve.auth`: bearer token → tenant, failed logins throttled;
- :mod:`~safeguard.serve.quota`: rate limit, requests in flight, texts per key per day;
- :mod:`~safeguard.serve.payload`: the body read and checked within the limits;
- :mod:`~safeguard.serve.engine`: detection (the shared :mod:`safeguard.watermark.batch`);
- :mod:`~safeguard.serve.results`: verdicts and coarse p-values, what a caller learns.

The checks of :func:`_parse_request` and :func:`detect_texts` are looked up in this module
when a request runs, so that they can be replaced here (the tests do).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from safeguard.errors import missing_dependency

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_dependency("fastapi", "serve") from exc

from pydantic import ValidationError

from safeguard import __version__
from safeguard.serve.api_errors import ApiError, add_error_handlers, validation_details
from safeguard.serve.auth import Authenticator, tenant_dependency
from safeguard.serve.config import ServerConfig
from safeguard.serve.engine import detect_texts
from safeguard.serve.keystore import KeyEntry, KeyRing, MemorySaver
from safeguard.serve.middleware import RequestContext
from safeguard.serve.models import (
    DetectRequest,
    DetectResponse,
    ErrorResponse,
    HealthResponse,
    KeyInfo,
    KeysResponse,
)
from safeguard.serve.payload import check_counts as _check_counts
from safeguard.serve.payload import check_limits as _check_limits
from safeguard.serve.payload import check_value_count as _check_value_count
from safeguard.serve.payload import most_values as _most_values  # noqa: F401 (tests import it here)
from safeguard.serve.payload import parse_json as _parse_json
from safeguard.serve.payload import read_body as _read_body
from safeguard.serve.quota import TenantQuota
from safeguard.serve.results import P_VALUE_GRID, coarse_p_value, result_dicts

__all__ = ["P_VALUE_GRID", "ApiError", "coarse_p_value", "create_app"]

_DETECT_ERRORS = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in (
        (400, "Malformed JSON"),
        (401, "Missing or invalid bearer token"),
        (404, "A key id the caller may not use"),
        (413, "Body, texts or characters over the server's limits"),
        (415, "Body is not JSON"),
        (422, "Body does not match the schema"),
        (429, "Rate limit, requests in flight or failed logins over (see Retry-After)"),
    )
}


@dataclass(frozen=True)
class _Service:
    """What the routes share: the configuration, the keys, the tenants' allowances."""

    config: ServerConfig
    ring: KeyRing
    quota: TenantQuota
    default_fpr: float
    memories: MemorySaver


def create_app(
    config: ServerConfig,
    *,
    keyring: KeyRing | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the detection service.

    Args:
        config: The validated server configuration (:func:`~safeguard.serve.load_config`).
        keyring: Pre-loaded keys (default: loaded from ``config.key_store`` now, so that a
            bad key store fails at start-up rather than on the first request).
        clock: Monotonic clock for the rate limiters (tests inject one).

    Returns:
        A FastAPI application; run it with uvicorn (``safeguard serve``).

    Raises:
        ConfigError: The key store or tokenizers do not match the tenants' keys.
    """
    ring = keyring if keyring is not None else KeyRing.from_config(config)
    quota = TenantQuota(config.tenants, clock)
    memories = MemorySaver(ring, config.detection_memory, config.memory_save_seconds, clock)
    service = _Service(config, ring, quota, config.default_false_positive_rate(), memories)
    tenant_of = tenant_dependency(Authenticator(config, clock), quota)
    app = FastAPI(
        title="safeguard detection service",
        version=__version__,
        description=(
            "Watermark detection for moderation pipelines: calibrated p-values at a "
            "false-positive rate the caller chooses. Authenticate with `Authorization: Bearer "
            "<token>`; a tenant sees only its own keys."
        ),
        openapi_url="/openapi.json" if config.openapi else None,
        docs_url="/docs" if config.openapi else None,
        redoc_url=None,
        lifespan=_save_memories_at_shutdown(memories),
    )
    app.add_middleware(RequestContext)
    add_error_handlers(app)
    _add_routes(app, service, tenant_of)
    return app


def _save_memories_at_shutdown(memories: MemorySaver) -> Callable[[FastAPI], Any]:
    """A lifespan that writes the detection memories when the server stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        await run_in_threadpool(memories.save)

    return lifespan


def _add_routes(app: FastAPI, service: _Service, tenant_of: Callable[..., Awaitable[str]]) -> None:
    @app.get("/healthz", response_model=HealthResponse, tags=["service"])
    async def healthz() -> HealthResponse:
        """Liveness: the service is up and its keys are loaded."""
        return HealthResponse(status="ok", version=__version__)

    @app.get(
        "/v1/keys",
        response_model=KeysResponse,
        tags=["detection"],
        responses={401: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
    )
    async def keys(tenant: str = Depends(tenant_of)) -> KeysResponse:
        """The caller's keys: ids, schemes and tokenizers (never secrets)."""
        infos = []
        for key_id in service.ring.keys_of(tenant):
            entry = service.ring.get(tenant, key_id)
            if entry is not None:
                infos.append(
                    KeyInfo(key_id=key_id, scheme=entry.scheme, tokenizer=entry.tokenizer_id)
                )
        return KeysResponse(keys=infos)

    @app.post(
        "/v1/detect",
        response_model=DetectResponse,
        tags=["detection"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": DetectRequest.model_json_schema()}},
            }
        },
        responses=_DETECT_ERRORS,
    )
    async def detect(request: Request, tenant: str = Depends(tenant_of)) -> Any:
        """Test a batch of texts for the caller's watermarks.

        Each text is tokenized with the tokenizer bound to each key. The response gives per
        text whether it is flagged at the false-positive rate and (with the tenant's
        ``statistics`` detail) the p-values; never per-token values.
        """
        with service.quota.in_flight(tenant):
            return await _detect(request, tenant, service)


async def _detect(request: Request, tenant: str, service: _Service) -> JSONResponse:
    """A detection request of an authenticated tenant holding an in-flight slot."""
    config = service.config
    body = await _read_body(request, config.limits.max_body_bytes)
    req = await run_in_threadpool(_parse_request, body, config)
    fpr = req.false_positive_rate if req.false_positive_rate is not None else service.default_fpr
    if fpr > config.max_false_positive_rate:
        raise ApiError(
            422,
            f"`false_positive_rate` (={fpr:g}) is above this server's maximum "
            f"({config.max_false_positive_rate:g}); ask for a smaller rate",
        )
    key_ids, entries = _entries(service.ring, tenant, req.key_ids)
    service.quota.charge(tenant, key_ids, len(req.texts))
    texts = [t if t.strip() else "" for t in req.texts]
    info = request.state.log
    info.update(texts=len(texts), chars=sum(map(len, texts)), keys=len(entries))
    outcomes = await run_in_threadpool(
        detect_texts,
        entries,
        texts,
        prompts=req.prompts,
        false_positive_rate=fpr,
        num_threads=config.detect_threads,
    )
    await run_in_threadpool(service.memories.maybe_save)
    decision_only = service.quota.tenants[tenant].detail == "decision"
    results = result_dicts(texts, outcomes, decision_only)
    flagged = sum(bool(r["is_watermarked"]) for r in results)
    errors = sum("error" in r for r in results)
    info.update(flagged=flagged, errors=errors)
    # Built as plain JSON (the shape of DetectResponse, documented through response_model)
    # so that large batches are not validated a second time on the way out.
    return JSONResponse(
        {
            "request_id": request.state.request_id,
            "false_positive_rate": fpr,
            "key_ids": key_ids,
            "flagged": flagged,
            "errors": errors,
            "results": results,
        }
    )


def _entries(
    ring: KeyRing, tenant: str, requested: Sequence[str] | None
) -> tuple[list[str], list[KeyEntry]]:
    """The key ids to test (default: all of the tenant's) and their entries; 404 for any
    id the tenant may not use (unknown and foreign ids look the same)."""
    key_ids = list(dict.fromkeys(requested)) if requested else list(ring.keys_of(tenant))
    entries = []
    for key_id in key_ids:
        entry = ring.get(tenant, key_id)
        if entry is None:
            raise ApiError(404, f"key {key_id} is not available to this caller")
        entries.append(entry)
    return key_ids, entries


def _parse_request(body: bytes, config: ServerConfig) -> DetectRequest:
    """Body bytes → a request within the server's limits (run in a worker thread).

    Cheapest refusal first: JSON values counted on the raw bytes, then the JSON parse, then
    the counts of the top-level lists, and only then the pydantic schema, whose cost (and the
    number of errors it builds) is now bounded by the limits, not by the body.
    """
    lim = config.limits
    _check_value_count(body, lim)
    payload = _parse_json(body)
    _check_counts(payload, lim)
    try:
        req = DetectRequest.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(
            422, "the request body does not match the schema", details=validation_details(exc)
        ) from None
    _check_limits(req, config)
    return req
