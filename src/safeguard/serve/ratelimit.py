"""A token-bucket rate limiter, one bucket per tenant.

>>> now = [0.0]
>>> bucket = TokenBucket(rate=1.0, burst=2, clock=lambda: now[0])
>>> bucket.acquire(), bucket.acquire(), bucket.acquire()
(0.0, 0.0, 1.0)
>>> now[0] = 1.0
>>> bucket.acquire()
0.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


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

    def acquire(self) -> float:
        """Take one token. Returns 0 on success, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate
