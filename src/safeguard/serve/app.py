"""The FastAPI application: ``POST /v1/detect``, ``GET /v1/keys``, ``GET /healthz``.

Order of checks on a detection request (the cheapest refusal first): client address
throttled after failed authentications (429 + ``Retry-After``) → bearer token from the header,
before any byte of the body is read (401) → tenant rate limit (429 + ``Retry-After``) →
tenant's detection requests in flight (429 + ``Retry-After``) → body size (413, declared
``Content-Length`` first, then read incrementally, never past the limit) → then, in a worker
thread so that the event loop keeps serving ``/healthz`` and other tenants: JSON values
counted on the raw bytes (413) → JSON (400) → counts of texts, prompts and key ids (413/422)
→ schema (422) → characters (413) → back on the loop: key ids (404) → detection in a worker
thread. Every response carries ``X-Request-ID``; every error has the same JSON shape
(:class:`~safeguard.serve.models.ErrorResponse`). One log line per request gives the
request id, tenant, counts, status and latency, never a text, a token or a key secret.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from safeguard.errors import missing_dependency

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_dependency("fastapi", "serve") from exc

from pydantic import ValidationError

from safeguard import __version__
from safeguard.serve.config import Limits, ServerConfig, hash_token
from safeguard.serve.engine import detect_texts
from safeguard.serve.keystore import KeyRing
from safeguard.serve.models import (
    DetectRequest,
    DetectResponse,
    ErrorResponse,
    HealthResponse,
    KeyInfo,
    KeysResponse,
)
from safeguard.serve.ratelimit import FailureThrottle, QueryBudget, TokenBucket

__all__ = ["ApiError", "create_app"]

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ERRORS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
}


class ApiError(Exception):
    """An HTTP error with a message for the caller."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.details = details


def _error_response(
    request: Request,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: list[dict[str, str]] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    body = {
        "request_id": request_id,
        "error": {"status": status, "code": _ERRORS.get(status, "error"), "message": message},
    }
    if details:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_details(exc: ValidationError | RequestValidationError) -> list[dict[str, str]]:
    # Only location and message: pydantic's ``input`` would echo the caller's text.
    return [
        {"loc": ".".join(str(p) for p in e.get("loc", ())) or "<body>", "msg": str(e.get("msg"))}
        for e in exc.errors()[:20]
    ]


class _RequestContext:
    """ASGI middleware: a request id per request (``X-Request-ID``), one log line, no bare 500.

    The id is the caller's ``X-Request-ID`` when it is short and plain, else a new one. Route
    code adds counts to ``request.state.log``; they are logged with the status and latency.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["log"] = info = {}
        status = [0]
        start = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode("ascii")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # never the exception text in logs: it may quote input
            log.error(
                "request_id=%s unhandled %s in %s %s",
                request_id,
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
            )
            if status[0]:
                raise
            body = json.dumps(
                {
                    "request_id": request_id,
                    "error": {
                        "status": 500,
                        "code": "internal_error",
                        "message": "internal error; see the server log",
                    },
                }
            ).encode()
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            fields = " ".join(f"{k}={v}" for k, v in info.items())
            log.info(
                "request_id=%s %s %s status=%d ms=%.1f %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
                status[0] or 500,
                1000 * (time.perf_counter() - start),
                fields,
            )


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
    default_fpr = _default_fpr(config)
    limits = config.limits
    tenants = {t.name: t for t in config.tenants}
    token_hashes = [(t.token_sha256.encode("ascii"), t.name) for t in config.tenants]
    buckets = {
        t.name: TokenBucket(t.rate_limit.requests_per_second, t.rate_limit.burst, clock=clock)
        for t in config.tenants
    }
    in_flight = dict.fromkeys(tenants, 0)  # detection requests per tenant (event loop only)
    budget = QueryBudget({name: t.texts_per_key_per_day for name, t in tenants.items()})
    throttle = FailureThrottle(
        config.auth_throttle.max_failures,
        config.auth_throttle.window_seconds,
        max_addresses=config.auth_throttle.max_addresses,
        clock=clock,
    )
    bearer = HTTPBearer(auto_error=False, description="A tenant token from the server config.")

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
    )

    # ------------------------------------------------------------------ plumbing
    app.add_middleware(_RequestContext)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(
            request, exc.status, exc.message, headers=exc.headers, details=exc.details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(
            exc.status_code, str(exc.detail)
        )
        return _error_response(
            request, exc.status_code, message, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(
            request, 422, "the request is invalid", details=_validation_details(exc)
        )

    # ------------------------------------------------------------------ auth + rate limit
    async def tenant_of(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> str:
        # Only headers are used here: FastAPI reads no body for these routes, so a caller
        # without a valid token never has its body read.
        address = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(address)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            request.state.log["auth"] = "throttled"
            raise ApiError(
                429,
                f"too many failed authentications from this address (more than "
                f"{throttle.max_failures} in {throttle.window_seconds:g} s); retry after "
                f"{retry} s with a valid token",
                headers={"Retry-After": str(retry)},
            )
        unauthorized = ApiError(
            401,
            "missing or invalid bearer token; send `Authorization: Bearer <token>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
        found = None
        if credentials is not None and credentials.credentials:
            presented = hash_token(credentials.credentials).encode("ascii")
            for stored, name in token_hashes:  # every hash compared, in constant time each
                if hmac.compare_digest(presented, stored):
                    found = name
        if found is None:
            throttle.record_failure(address)
            request.state.log["auth"] = "failed"
            raise unauthorized
        request.state.log["tenant"] = found
        wait = buckets[found].acquire()
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"rate limit of {tenants[found].rate_limit.requests_per_second:g} requests/s "
                f"(burst {tenants[found].rate_limit.burst}) exceeded; retry after {retry} s",
                headers={"Retry-After": str(retry)},
            )
        return found

    # ------------------------------------------------------------------ routes
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
        for key_id in ring.keys_of(tenant):
            entry = ring.get(tenant, key_id)
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
        responses={
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
        },
    )
    async def detect(request: Request, tenant: str = Depends(tenant_of)) -> Any:
        """Test a batch of texts for the caller's watermarks.

        Each text is tokenized with the tokenizer bound to each key. The response gives per
        text whether it is flagged at the false-positive rate and (with the tenant's
        ``statistics`` detail) the p-values; never per-token values.
        """
        cap = tenants[tenant].max_in_flight
        if in_flight[tenant] >= cap:
            raise ApiError(
                429,
                f"this tenant already has {cap} detection requests in flight, its limit "
                "(`max_in_flight`); wait for one to finish, then retry",
                headers={"Retry-After": "1"},
            )
        in_flight[tenant] += 1
        try:
            return await _detect(request, tenant)
        finally:
            in_flight[tenant] -= 1

    async def _detect(request: Request, tenant: str) -> JSONResponse:
        body = await _read_body(request, limits.max_body_bytes)
        req = await run_in_threadpool(_parse_request, body, config)
        fpr = req.false_positive_rate if req.false_positive_rate is not None else default_fpr
        if fpr > config.max_false_positive_rate:
            raise ApiError(
                422,
                f"`false_positive_rate` (={fpr:g}) is above this server's maximum "
                f"({config.max_false_positive_rate:g}); ask for a smaller rate",
            )
        key_ids = list(dict.fromkeys(req.key_ids)) if req.key_ids else list(ring.keys_of(tenant))
        entries = []
        for key_id in key_ids:
            entry = ring.get(tenant, key_id)
            if entry is None:
                raise ApiError(404, f"key {key_id} is not available to this caller")
            entries.append(entry)
        wait = budget.charge(tenant, key_ids, len(req.texts))
        if wait:
            per_day = tenants[tenant].texts_per_key_per_day
            retry = "86400" if math.isinf(wait) else str(max(1, math.ceil(wait)))
            raise ApiError(
                429,
                f"this tenant's budget of {per_day} texts per key per 24 hours "
                "(`texts_per_key_per_day`) would be exceeded by this request; it bounds how "
                f"far a key can be probed. Retry after {retry} s, or send fewer texts",
                headers={"Retry-After": retry},
            )
        texts = [t if t.strip() else "" for t in req.texts]
        info = request.state.log
        info.update(
            texts=len(texts),
            chars=sum(map(len, texts)),
            keys=len(entries),
        )
        outcomes = await run_in_threadpool(
            detect_texts,
            entries,
            texts,
            prompts=req.prompts,
            false_positive_rate=fpr,
            num_threads=config.detect_threads,
        )
        results = _result_dicts(texts, outcomes, tenants[tenant].detail == "decision")
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

    return app


# ---------------------------------------------------------------------- helpers


#: p-values are reported rounded up to this grid: still valid p-values (rounding up keeps
#: P(p ≤ α) ≤ α), and too coarse to read single tokens' values from.
P_VALUE_GRID = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, *(10.0**-k for k in range(3, 31)))


def coarse_p_value(p: float) -> float:
    """``p`` rounded up to :data:`P_VALUE_GRID` (below 1e-30: 1e-30).

    >>> coarse_p_value(0.37), coarse_p_value(0.012), coarse_p_value(3.1e-7), coarse_p_value(0.0)
    (0.5, 0.02, 1e-06, 1e-30)
    """
    for bound in reversed(P_VALUE_GRID):
        if p <= bound:
            return bound
    return 1.0


def _result_dicts(
    texts: list[str], outcomes: list[Any], decision_only: bool
) -> list[dict[str, Any]]:
    """Per-text results in the shape of :class:`TextResult` (unset fields left out).

    What a caller learns is aggregate and coarse: a verdict per text; with ``statistics``
    detail, p-values rounded up to :data:`P_VALUE_GRID` and token counts, never scores.
    A text with fewer than ``MIN_SCORED_TOKENS`` scored tokens that is not flagged is
    "too short to test", without statistics.
    """
    results: list[dict[str, Any]] = []
    for i, (text, outcome) in enumerate(zip(texts, outcomes, strict=True)):
        if not text:
            results.append(
                {
                    "index": i,
                    "is_watermarked": None,
                    "error": "the text is empty; there is nothing to test",
                }
            )
            continue
        if outcome.result is None:
            results.append({"index": i, "is_watermarked": None, "error": outcome.error})
            continue
        multi = outcome.result
        verdict = multi.verdict
        entry: dict[str, Any] = {
            "index": i,
            "is_watermarked": multi.is_watermarked,
            "verdict": verdict,
        }
        if not decision_only and verdict != "too short to test":
            entry.update(
                p_value=coarse_p_value(min(multi.adjusted_p_values)),
                best_key_id=multi.best_key_id,
                results=[
                    {
                        "key_id": r.key_id,
                        "scheme": r.scheme,
                        "verdict": r.verdict,
                        "p_value": coarse_p_value(r.p_value),
                        "adjusted_p_value": coarse_p_value(adj),
                        "num_tokens": r.num_tokens,
                        "num_scored": r.num_scored,
                        "method": r.method,
                        "min_p_value": r.min_p_value,
                        "approximate": r.approximate,
                        "warnings": list(r.warnings),
                    }
                    for r, adj in zip(multi.results, multi.adjusted_p_values, strict=True)
                ],
            )
        results.append(entry)
    return results


def _default_fpr(config: ServerConfig) -> float:
    if config.false_positive_rate is not None:
        return config.false_positive_rate
    if config.policy:
        from safeguard.policy import load_policy

        policy = load_policy(config.policy)
        if policy.watermark is not None:
            return float(policy.watermark.false_positive_rate)
    return 1e-3


async def _read_body(request: Request, limit: int) -> bytes:
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


def _parse_json(body: bytes) -> Any:
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
            422, "the request body does not match the schema", details=_validation_details(exc)
        ) from None
    _check_limits(req, config)
    return req


def _most_values(lim: Limits) -> int:
    """JSON values a request within ``lim`` can hold: texts, prompts, key ids, 4 members."""
    return 2 * lim.max_texts + lim.max_keys + 4


def _check_value_count(body: bytes, lim: Limits) -> None:
    """Refuse (413) a body with more strings or separators than any request within ``lim``.

    A scan of the raw bytes at C speed, before anything is parsed: escaped backslashes and
    quotes are dropped, the remaining quotes delimit the strings, and commas outside strings
    separate JSON values. A valid request within the limits has at most
    :func:`_most_values` strings and fewer commas than that, so nothing it could send is
    refused here; ``{"texts": [1, 1, ...]}`` with half a million items is refused in a few
    milliseconds instead of being parsed and validated item by item.
    """
    most = _most_values(lim)
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


def _check_counts(payload: Any, lim: Limits) -> None:
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


def _check_limits(req: DetectRequest, config: ServerConfig) -> None:
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
