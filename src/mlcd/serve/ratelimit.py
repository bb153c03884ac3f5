"""A token bucket per client (the token's name): ``rate`` requests per second, bursts of
``2 * rate``. Per worker process, in memory: a limit on what one leaked token can do, not
an exact quota across a fleet."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Token buckets keyed by client; ``rate <= 0`` turns limiting off."""

    def __init__(self, rate: float, burst: float | None = None, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Spend one request of ``client``'s budget: 0.0 if allowed, else the seconds to wait
        before the next one would be."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return (1.0 - tokens) / self.rate
            if len(self._buckets) >= self.max_clients and client not in self._buckets:
                self._buckets.clear()  # a flood of names cannot grow memory without bound
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0
