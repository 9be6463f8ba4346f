"""A token bucket per key, for what the gateway sends or stores about rejected messages. Pure.

Hand-written (20 lines) because it runs on the writer thread for every rejected message and needs
no locking, clock of its own or async: ``take`` is a dict lookup and two float operations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class PerKeyLimiter:
    """``burst`` events at once per key, then one every ``every_s``; at most ``max_keys`` keys tracked.

    When more keys than that are live (a flood of distinct topics), the table is reset: the limit is
    then per period rather than per key, which still bounds memory and output.
    """

    def __init__(self, burst: int, every_s: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = float(burst)
        self.rate = 1.0 / every_s
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self.refused = 0

    def take(self, key: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            self.refused += 1
            return False
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()
        self._buckets[key] = (tokens - 1.0, now)
        return True


class EveryFewSeconds:
    """True at most once per ``period_s`` (an outage logs a line now and then, not one per request)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._next = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.period_s
            return True
