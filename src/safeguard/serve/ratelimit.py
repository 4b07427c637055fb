"""Token buckets: one per tenant for requests, one per client address for failed
authentications; and a daily query budget per tenant and key.

>>> now = [0.0]
>>> bucket = TokenBucket(rate=1.0, burst=2, clock=lambda: now[0])
>>> bucket.acquire(), bucket.acquire(), bucket.acquire()
(0.0, 0.0, 1.0)
>>> now[0] = 1.0
>>> bucket.acquire()
0.0

>>> throttle = FailureThrottle(max_failures=2, window_seconds=10.0, clock=lambda: now[0])
>>> throttle.retry_after("10.0.0.1")
0.0
>>> throttle.record_failure("10.0.0.1"); throttle.record_failure("10.0.0.1")
>>> throttle.retry_after("10.0.0.1"), throttle.retry_after("10.0.0.2")
(5.0, 0.0)

>>> budget = QueryBudget({"t": 10}, clock=lambda: now[0])
>>> budget.charge("t", ["wm-a"], 8), budget.charge("t", ["wm-a", "wm-b"], 3) > 0
(0.0, True)
>>> budget.used("t", "wm-a"), budget.used("t", "wm-b")
(8, 0)
>>> now[0] = 24 * 3600.0
>>> budget.charge("t", ["wm-a"], 10), budget.used("t", "wm-a")
(0.0, 10)
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

__all__ = ["FailureThrottle", "QueryBudget", "TokenBucket"]


class TokenBucket:
    """``burst`` requests at once, refilled continuously at ``rate`` per second.

    Args:
        rate: Tokens added per second (> 0).
        burst: Bucket capacity (>= 1).
        clock: Monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate (={rate}) must be > 0 and burst (={burst}) >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token. Returns 0 on success, else the seconds until one is available."""
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def wait(self) -> float:
        """Seconds until a token is available (0 if one is now); takes none."""
        with self._lock:
            self._refill()
            return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    def full(self) -> bool:
        """Whether the bucket has refilled to ``burst`` (it then carries no history)."""
        with self._lock:
            self._refill()
            return self._tokens >= self.burst


class FailureThrottle:
    """Failed authentications per client address, as a token bucket per address.

    An address may fail ``max_failures`` times at once; the allowance refills at
    ``max_failures / window_seconds`` per second. While an address has no allowance left,
    :meth:`retry_after` is positive and the service refuses its requests (429) before it
    looks at the token, so guessing stops. At most ``max_addresses`` addresses are tracked
    (least recently failed dropped first), so a flood of addresses cannot grow memory.

    Args:
        max_failures: Failures allowed at once (>= 1).
        window_seconds: Seconds for the allowance to refill completely (> 0).
        max_addresses: Addresses tracked at most (>= 1).
        clock: Monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        max_addresses: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_seconds <= 0 or max_addresses < 1:
            raise ValueError(
                f"max_failures (={max_failures}) and max_addresses (={max_addresses}) must be "
                f">= 1 and window_seconds (={window_seconds}) > 0"
            )
        self.max_failures = max_failures
        self.window_seconds = float(window_seconds)
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: it may try now)."""
        with self._lock:
            bucket = self._buckets.get(address)
            if bucket is None:
                return 0.0
            if bucket.full():  # refilled: forget the address
                del self._buckets[address]
                return 0.0
            return bucket.wait()

    def record_failure(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        with self._lock:
            bucket = self._buckets.get(address)
            if bucket is None:
                bucket = TokenBucket(
                    self.max_failures / self.window_seconds, self.max_failures, clock=self._clock
                )
                self._buckets[address] = bucket
                while len(self._buckets) > self.max_addresses:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(address)
            bucket.acquire()

    def __len__(self) -> int:
        return len(self._buckets)


class QueryBudget:
    """Texts each (tenant, key) may have tested in any 24 hours, counted in hourly slots.

    Every text tested against a key costs that key one unit. The budget bounds what a caller
    can learn about a key by probing the detector: over a day, at most ``per_day`` answers
    per key, however the requests are spread. Slots are hours, so a unit spent at 10:59
    frees at 10:00 the next day at the latest, never later than 24 hours after it was spent.

    Counters live in memory: a restart of the service forgets them (state it to operators;
    a restart is visible in the logs).

    Args:
        per_day: Units per (tenant, key) per 24 hours.
        clock: Seconds since an epoch (injectable for tests).
    """

    def __init__(self, per_day: Mapping[str, int], clock: Callable[[], float] = time.time) -> None:
        self._per_day = dict(per_day)
        self._clock = clock
        self._slots: dict[tuple[str, str], collections.deque[list[int]]] = {}
        self._lock = threading.Lock()

    def _window(self, tenant: str, key_id: str, hour: int) -> collections.deque[list[int]]:
        slots = self._slots.setdefault((tenant, key_id), collections.deque())
        while slots and slots[0][0] <= hour - 24:
            slots.popleft()
        return slots

    def charge(self, tenant: str, key_ids: Sequence[str], n: int) -> float:
        """Spend ``n`` units on each key, all or none; seconds to wait when over (else 0)."""
        now = self._clock()
        hour = int(now // 3600)
        with self._lock:
            limit = self._per_day[tenant]
            wait = 0.0
            for key_id in key_ids:
                slots = self._window(tenant, key_id, hour)
                used = sum(c for _, c in slots)
                if used + n > limit:
                    # the earliest hour whose expiry leaves room for n more units
                    freed, at = used, hour + 1
                    for h, c in slots:
                        freed -= c
                        at = h + 24
                        if freed + n <= limit:
                            break
                    wait = max(wait, at * 3600 - now) if n <= limit else math.inf
            if wait:
                return wait
            for key_id in key_ids:
                slots = self._window(tenant, key_id, hour)
                if slots and slots[-1][0] == hour:
                    slots[-1][1] += n
                else:
                    slots.append([hour, n])
            return 0.0

    def used(self, tenant: str, key_id: str) -> int:
        """Units spent on ``key_id`` by ``tenant`` in the last 24 hours."""
        with self._lock:
            return sum(c for _, c in self._window(tenant, key_id, int(self._clock() // 3600)))
