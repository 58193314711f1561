"""Route 53 request pacing: a token bucket shared by every caller, and one change batch in flight per zone.

Promises: ``ThrottleBudget.acquire`` never lets more than ``burst`` requests through at once nor
more than ``rate`` per second on average, across threads; ``DEFAULT_BUDGET`` (5 requests/s,
Route 53's per-account limit) is shared by every provider of the process that is not given
another; ``zone_lock(id)`` is one lock per hosted zone id for the whole process.

``SharedBudget`` keeps the same promise across processes: its bucket is a row of a store shared by
them (``BucketStore``: the SQLite store's ``request_budget`` table, one row per account, refilled and
drawn in one transaction), keyed by the AWS account (``account_of``: the fleet's ``account:`` option,
else the credentials' access key id). It also counts what ``dnsplane status`` shows: requests made,
how many waited, and for how long.

Limits: ``ThrottleBudget`` is per process; ``SharedBudget`` reaches the processes that share its store
file (on one host: SQLite), and uses the wall clock, which they share; time and sleep come in as
``clock``/``sleep`` so tests run without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Budget(Protocol):
    """What a provider draws on before each API call: ``ThrottleBudget`` (per process) or ``SharedBudget``."""

    def acquire(self) -> float:
        """Take one request, waiting until one is free; returns the seconds waited."""
        ...


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


class BucketStore(Protocol):
    """Where a ``SharedBudget`` keeps its bucket (``SqliteStore`` is one)."""

    def take_request(self, account: str, rate: float, burst: float, now: float, waited: float) -> float:
        """In one transaction: refill ``account``'s bucket to ``now`` and take one request if one is free
        (0.0; counted, with the ``waited`` seconds it took), else the seconds until one will be."""
        ...


class SharedBudget:
    """``ThrottleBudget``'s contract for every process whose provider draws on the same ``store`` and
    ``account``: ``rate`` requests/s together, bursts of ``burst``."""

    def __init__(self, store: BucketStore, account: str, rate: float = 5.0, burst: float | None = None, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.store, self.account, self.rate = store, account, rate
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._clock, self._sleep = clock, sleep

    def acquire(self) -> float:
        """Take one request of the account's budget; returns the seconds waited."""
        waited = 0.0
        while (delay := self.store.take_request(self.account, self.rate, self.burst, self._clock(), waited)) > 0:
            self._sleep(delay)
            waited += delay
        return waited


def account_of(account: str | None) -> str:
    """The key of an account's budget: ``account`` as configured, else the access key id of the credentials
    boto3 finds, else ``default`` (no credentials: the preflight refuses to start)."""
    if account:
        return account
    import boto3

    key = getattr(boto3.session.Session().get_credentials(), "access_key", None)
    return f"access key {key}" if key else "default"
