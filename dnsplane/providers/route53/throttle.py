"""Route 53 request pacing: a token bucket shared by every caller, and one change batch in flight per zone.

Promises: ``ThrottleBudget.acquire`` never lets more than ``burst`` requests through at once nor
more than ``rate`` per second on average, across threads; ``DEFAULT_BUDGET`` (5 requests/s,
Route 53's per-account limit) is shared by every provider of the process that is not given
another; ``zone_lock(id)`` is one lock per hosted zone id for the whole process.

Limits: per process only — other processes on the same account draw from the same Route 53
limit unseen; time and sleep come in as ``clock``/``sleep`` so tests run without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ThrottleBudget:
    """A token bucket shared by every caller that holds it: ``rate`` requests/s, bursts of ``burst``.

    Thread-safe. ``acquire`` blocks (through ``sleep``) until a token is free.
    """

    def __init__(
        self,
        rate: float = 5.0,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0 - 1e-9:  # tolerate float rounding of the refill
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return waited
                delay = (1.0 - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay


DEFAULT_BUDGET = ThrottleBudget(5.0)  # Route 53 allows 5 API requests per second per account

_zone_locks: dict[str, threading.Lock] = {}
_zone_locks_guard = threading.Lock()


def zone_lock(hosted_zone_id: str) -> threading.Lock:
    """The process-wide lock that keeps one change batch in flight per hosted zone."""
    with _zone_locks_guard:
        return _zone_locks.setdefault(hosted_zone_id, threading.Lock())
