"""Token buckets: ``rate`` requests a second per key, bursts of up to ``burst``.

A key's bucket starts full and refills continuously; a request takes one token or
is refused with the seconds until one is back (the ``Retry-After`` the server
sends, rounded up to whole seconds as HTTP wants). Buckets of keys unseen for a
while are dropped, so keys of unauthenticated callers (their addresses) cannot
grow the table without bound.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 10_000


class RateLimiter:
    def __init__(self, rate: float = 10.0, burst: int = 20, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> (tokens, when counted); oldest use first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when allowed, else the seconds until one is back."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1.0 - 1e-9:  # the wait we announced has passed, give or take a float's error
                self._buckets[key] = (max(0.0, tokens - 1.0), now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
            return wait
