"""ASGI middleware of the service: a request id per request, one log line, no bare 500."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from safeguard.serve.api_errors import error_body

__all__ = ["RequestContext"]

#: The logger of :mod:`safeguard.serve.app`, whose name operators and tests filter on.
log = logging.getLogger("safeguard.serve.app")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
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
            await _send_internal_error(send_with_id, send, request_id)
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


async def _send_internal_error(send_start: Any, send: Any, request_id: str) -> None:
    """A JSON 500 in the one error shape, for an exception before the response started."""
    body = json.dumps(error_body(request_id, 500, "internal error; see the server log")).encode()
    await send_start(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
