"""The service's one error shape: :class:`ApiError`, the JSON body, and the handlers.

Every refusal, including FastAPI's own (unknown route, wrong method, invalid request) and
the middleware's last-resort 500, is answered as
``{"request_id": ..., "error": {"status", "code", "message", "details"?}}``
(:class:`~safeguard.serve.models.ErrorResponse`). Messages never quote the caller's input.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ERROR_CODES", "ApiError", "add_error_handlers", "error_body", "validation_details"]

#: The ``code`` of each status.
ERROR_CODES = {
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


def error_body(
    request_id: str, status: int, message: str, details: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The JSON body of an error response."""
    body: dict[str, Any] = {
        "request_id": request_id,
        "error": {"status": status, "code": ERROR_CODES.get(status, "error"), "message": message},
    }
    if details:
        body["error"]["details"] = details
    return body


def _error_response(
    request: Request,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: list[dict[str, str]] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    return JSONResponse(
        error_body(request_id, status, message, details), status_code=status, headers=headers
    )


def validation_details(exc: ValidationError | RequestValidationError) -> list[dict[str, str]]:
    """Location and message of the first 20 errors: pydantic's ``input`` would echo the text."""
    return [
        {"loc": ".".join(str(p) for p in e.get("loc", ())) or "<body>", "msg": str(e.get("msg"))}
        for e in exc.errors()[:20]
    ]


def add_error_handlers(app: FastAPI) -> None:
    """Answer :class:`ApiError`, HTTP errors and request validation errors in the one shape."""

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
            request, 422, "the request is invalid", details=validation_details(exc)
        )
