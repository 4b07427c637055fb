"""Token buckets: one per tenant for requests, one per client address for failed authentications.

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
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["FailureThrottle", "TokenBucket"]


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
