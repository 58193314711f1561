"""Route 53 request pacing: one token bucket for every caller, the background leaving a reserve; one apply per zone.

Promises: ``ThrottleBudget.acquire`` never lets more than ``burst`` requests through at once nor
more than ``rate`` per second on average, across threads; a caller of ``acquire(reserve=r)`` (the
background: the verifier's reads) takes a request only while ``r`` more are left in the bucket, so
the writers' next ``r`` requests never wait behind it, and it waits while they keep the bucket low;
``DEFAULT_BUDGET`` (5 requests/s, Route 53's per-account limit) is shared by every provider of the
process that is not given another; ``zone_lock(id)`` is one lock per hosted zone id for the whole
process (re-entrant: an apply holds it throughout, and each of its change batches takes it again).

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

from dnsplane.errors import Permanent


class Budget(Protocol):
    """What a provider draws on before each API call: ``ThrottleBudget`` (per process) or ``SharedBudget``."""

    def acquire(self, reserve: float = 0.0) -> float:
        """Take one request, waiting until one is free and ``reserve`` more are left for others; returns the
        seconds waited."""
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

    def acquire(self, reserve: float = 0.0) -> float:
        """Take one token, leaving ``reserve`` (at most ``burst`` - 1) in the bucket; returns the seconds waited."""
        need = 1.0 + min(reserve, self.burst - 1.0)
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= need - 1e-9:  # tolerate float rounding of the refill
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return waited
                delay = (need - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay


DEFAULT_BUDGET = ThrottleBudget(5.0)  # Route 53 allows 5 API requests per second per account

_zone_locks: dict[str, threading.RLock] = {}
_zone_locks_guard = threading.Lock()


def zone_lock(hosted_zone_id: str) -> threading.RLock:
    """The process-wide lock that keeps one apply (and so one change batch) in flight per hosted zone."""
    with _zone_locks_guard:
        return _zone_locks.setdefault(hosted_zone_id, threading.RLock())


class BucketStore(Protocol):
    """Where a ``SharedBudget`` keeps its bucket (``SqliteStore`` is one)."""

    def take_request(self, account: str, rate: float, burst: float, now: float, waited: float,
                     reserve: float = 0.0) -> float:
        """In one transaction: refill ``account``'s bucket to ``now`` and take one request if one is free
        beside ``reserve`` more (0.0; counted, with the ``waited`` seconds it took), else the seconds until
        there will be."""
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

    def acquire(self, reserve: float = 0.0) -> float:
        """Take one request of the account's budget, leaving ``reserve`` (at most ``burst`` - 1) for others;
        returns the seconds waited."""
        reserve = min(reserve, self.burst - 1.0)
        waited = 0.0
        while (delay := self.store.take_request(self.account, self.rate, self.burst, self._clock(), waited,
                                                reserve)) > 0:
            self._sleep(delay)
            waited += delay
        return waited


def account_of(account: str | None) -> str:
    """The key of an account's budget: ``account`` as configured, else the access key id of the credentials
    boto3 finds, else ``default`` (no credentials: the preflight refuses to start). ``Permanent`` when
    boto3 cannot even look (a named profile that does not exist, an unreadable config file)."""
    if account:
        return account
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        key = getattr(boto3.session.Session().get_credentials(), "access_key", None)
    except BotoCoreError as exc:  # an AWS_PROFILE that does not exist, a config file that does not parse
        raise Permanent(f"route53: AWS credentials: {exc}. Check AWS_PROFILE and ~/.aws/config, or set the "
                        "provider's account: option") from exc
    return f"access key {key}" if key else "default"
