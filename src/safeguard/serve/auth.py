"""Who is calling: the bearer token checked against the tenants' hashes, from headers only.

FastAPI reads no body for the routes that depend on :func:`tenant_dependency`, so a caller
without a valid token never has a byte of its body read. A client address with too many
failed authentications is refused (429) before its token is looked at, so a correct guess
is not recognised while it is throttled.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from safeguard.serve.api_errors import ApiError
from safeguard.serve.config import ServerConfig, hash_token
from safeguard.serve.quota import TenantQuota
from safeguard.serve.ratelimit import FailureThrottle

__all__ = ["Authenticator", "tenant_dependency"]


class Authenticator:
    """Bearer tokens → tenant names, with failed attempts throttled per client address.

    Args:
        config: The server configuration (tenants' token hashes, ``auth_throttle``).
        clock: Monotonic clock of the throttle.
    """

    def __init__(self, config: ServerConfig, clock: Callable[[], float]) -> None:
        self._hashes = [(t.token_sha256.encode("ascii"), t.name) for t in config.tenants]
        self.throttle = FailureThrottle(
            config.auth_throttle.max_failures,
            config.auth_throttle.window_seconds,
            max_addresses=config.auth_throttle.max_addresses,
            clock=clock,
        )

    def tenant(self, request: Request, token: str | None) -> str:
        """The tenant whose token is ``token``; 429 while the address is throttled, else 401."""
        address = request.client.host if request.client else "unknown"
        wait = self.throttle.retry_after(address)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            request.state.log["auth"] = "throttled"
            raise ApiError(
                429,
                f"too many failed authentications from this address (more than "
                f"{self.throttle.max_failures} in {self.throttle.window_seconds:g} s); retry "
                f"after {retry} s with a valid token",
                headers={"Retry-After": str(retry)},
            )
        found = None
        if token:
            presented = hash_token(token).encode("ascii")
            for stored, name in self._hashes:  # every hash compared, in constant time each
                if hmac.compare_digest(presented, stored):
                    found = name
        if found is None:
            self.throttle.record_failure(address)
            request.state.log["auth"] = "failed"
            raise ApiError(
                401,
                "missing or invalid bearer token; send `Authorization: Bearer <token>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request.state.log["tenant"] = found
        return found


def tenant_dependency(auth: Authenticator, quota: TenantQuota) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency: the calling tenant, after its token and its rate limit."""
    bearer = HTTPBearer(auto_error=False, description="A tenant token from the server config.")

    async def tenant_of(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> str:
        token = credentials.credentials if credentials is not None else None
        tenant = auth.tenant(request, token)
        quota.take_request(tenant)
        return tenant

    return tenant_of
