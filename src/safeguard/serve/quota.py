"""What each tenant may spend: requests per second, requests in flight, texts per key per day.

The arithmetic lives in :mod:`safeguard.serve.ratelimit` (no HTTP there); this module turns
each exhausted allowance into its 429 :class:`~safeguard.serve.api_errors.ApiError` with a
``Retry-After`` and a message that names the setting. Used on the event loop only (the
in-flight counts are plain integers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from safeguard.serve.api_errors import ApiError
from safeguard.serve.config import Tenant
from safeguard.serve.ratelimit import QueryBudget, TokenBucket

__all__ = ["TenantQuota"]


def _retry(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


class TenantQuota:
    """The allowances of every tenant.

    Args:
        tenants: The configured tenants.
        clock: Monotonic clock of the rate limits (the daily budget uses wall-clock time).
    """

    def __init__(self, tenants: Sequence[Tenant], clock: Callable[[], float]) -> None:
        self.tenants = {t.name: t for t in tenants}
        self._buckets = {
            t.name: TokenBucket(t.rate_limit.requests_per_second, t.rate_limit.burst, clock=clock)
            for t in tenants
        }
        self._in_flight = dict.fromkeys(self.tenants, 0)  # detection requests per tenant
        self._budget = QueryBudget({t.name: t.texts_per_key_per_day for t in tenants})

    def take_request(self, tenant: str) -> None:
        """One request from the tenant's token bucket, or 429 when it is empty."""
        wait = self._buckets[tenant].acquire()
        if wait > 0:
            retry = _retry(wait)
            rate = self.tenants[tenant].rate_limit
            raise ApiError(
                429,
                f"rate limit of {rate.requests_per_second:g} requests/s "
                f"(burst {rate.burst}) exceeded; retry after {retry} s",
                headers={"Retry-After": retry},
            )

    @contextmanager
    def in_flight(self, tenant: str) -> Iterator[None]:
        """Hold one of the tenant's ``max_in_flight`` detection slots (429 when none is free)."""
        cap = self.tenants[tenant].max_in_flight
        if self._in_flight[tenant] >= cap:
            raise ApiError(
                429,
                f"this tenant already has {cap} detection requests in flight, its limit "
                "(`max_in_flight`); wait for one to finish, then retry",
                headers={"Retry-After": "1"},
            )
        self._in_flight[tenant] += 1
        try:
            yield
        finally:
            self._in_flight[tenant] -= 1

    def charge(self, tenant: str, key_ids: Sequence[str], texts: int) -> None:
        """Charge ``texts`` to each key's daily budget, or 429 if one would be exceeded."""
        wait = self._budget.charge(tenant, key_ids, texts)
        if wait:
            per_day = self.tenants[tenant].texts_per_key_per_day
            retry = "86400" if math.isinf(wait) else _retry(wait)
            raise ApiError(
                429,
                f"this tenant's budget of {per_day} texts per key per 24 hours "
                "(`texts_per_key_per_day`) would be exceeded by this request; it bounds how "
                f"far a key can be probed. Retry after {retry} s, or send fewer texts",
                headers={"Retry-After": retry},
            )
