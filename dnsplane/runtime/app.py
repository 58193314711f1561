"""The asyncio runtime: one process running planner, enactors, collector, verifier,
health checks and the embedded DNS server against the real store and provider.

Actors' ``handle`` and the store and provider calls of their steps run in worker threads
(``asyncio.to_thread``), one event at a time per actor, so neither a slow disk nor a large plan
(seconds of handling at 100,000 endpoints) holds the event loop that answers DNS. What the loop
reads of an actor's state (``instance.json``'s health, foreign and quarantined endpoints) it reads
from copies. Enactors wake as soon as the planner publishes, and also every
``enactor_period`` seconds (another process may have published).

Fleet reload (SIGHUP, ``dnsplane reload``): the fleet file is read again and validated whole
(``runtime/reload.py``); a valid one reaches the actors as one ``FleetChanged`` event each
(enactors and verifier, then planner) and the health checks follow its targets from their next
round; a refused one changes nothing. Each outcome is logged and kept in ``instance.json``
(``reload``) for ``dnsplane reload`` and ``status``.

Supervision (I8: no failure stops an actor for good). Whatever a command, a DNS query or an
actor's own ``handle`` raises, the round ends with a ``Failed`` reply fed back to the actor
(``Interpreter.run``, which carries out every actor's ``Step``, turns any exception into one;
``feed`` does the same for what ``handle`` raises), so its ``busy`` flag clears; if ``handle``
raises on that ``Failed`` too, the actor's
state is reset to a fresh one (the planner keeps its health observations). A failed round is
logged once, by the actor; the next round comes after an exponential backoff (the actor's period
doubled per consecutive failed round, capped at ``BACKOFF_CAP``), reset by the first round that
succeeds. Each actor's last successful round, last error (with its time) and consecutive
failures are written to ``instance.json`` (``actors``) and shown by ``dnsplane status``. The
health loop and the other background tasks are restarted the same way if they raise.

The verifier's DNS view: asked from the worker thread that carries out its request, on one UDP
socket (``dnsplane.runtime.dnsview``), never on the event loop that answers it; at most
``MAX_QUERIES_IN_FLIGHT`` endpoints (two queries each) are unanswered at once; an endpoint whose
query times out or fails is ``TIMEOUT``/``ERROR`` this round (the verifier reports it, repairs
nothing on it); only records of the asked type at the asked name count as its addresses (a CNAME
there answers none), only TXT at the marker name as its marker. Once a whole window of queries in
flight has timed out in a row, the rest of that batch is TIMEOUT without asking (a silent server
must not hold a round of 10,000 endpoints for minutes).

The operators' dials (``dnsplane pin`` / ``drain``, kept in the store) reach the planner as
``DialsChanged``: at start, before its first plan, and whenever the store's change; expired ones are
removed from the store and journalled (the planner has already let them go on its own clock).

The zone guard (the fleet file's ``guard:``): a plan the planner holds is journalled ("held"),
shown in ``instance.json`` (``hold``), and released when ``dnsplane confirm GENERATION`` journals a
confirmation of it (fed to the planner as ``HoldConfirmed``) or its window passes.

The operator's freeze (``dnsplane freeze``, kept in the store): read at start and every
``OPERATORS_POLL`` seconds after; while it holds, the interpreter's ``WriteGate`` refuses every
automated write (``execute.py``) and the enactors, the collector and the verifier skip their rounds
(``held`` in ``instance.json``), while the planner goes on planning and DNS goes on answering.
``instance.json``'s ``frozen`` says so, with ``quiet`` once no write that started before the freeze
is still in flight (``dnsplane freeze`` waits for that). When it is lifted the enactors wake at once.

The embedded server is told which endpoints the fleet declares (at start and on every applied
reload): until one has been written for the first time it is answered SERVFAIL, never NXDOMAIN
(``dnsplane.dns.server``).

Limits: one zone per process; the verifier queries the embedded server it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from dnsplane.config import Fleet, ServeConfig
from dnsplane.dns.ratelimit import RateLimit
from dnsplane.dns.server import SERIAL_FILE, DnsServer
from dnsplane.dns.transfer import policy_of
from dnsplane.errors import InvalidConfig
from dnsplane.execute import Actor, Interpreter, WriteGate
from dnsplane.histogram import Histogram
from dnsplane.model import Dial, Endpoint, EndpointKey, Generation, Observed, marker_name, zone_order
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import (
    NOTHING,
    DialsChanged,
    Event,
    Failed,
    FleetChanged,
    HealthObserved,
    HoldConfirmed,
    Published,
    Resolution,
    Resolve,
    Step,
    Tick,
    request,
)
from dnsplane.protocol.ownership import Ownership
from dnsplane.protocol.planner import HEAD_CHECK, Hold, Planner
from dnsplane.protocol.verifier import Verifier
from dnsplane.providers.base import Provider
from dnsplane.providers.embedded import EmbeddedProvider
from dnsplane.runtime import dnsview
from dnsplane.runtime.alerts import FAILING_ROUNDS, UNREPAIRED_ROUNDS, Alerts
from dnsplane.runtime.datadir import installation_owner
from dnsplane.runtime.demo import DemoTargets, write_json_atomic
from dnsplane.runtime.health import HealthChecker
from dnsplane.runtime.providers import dns_view, open_provider
from dnsplane.runtime.reload import Outcome, diff, reread
from dnsplane.runtime.secondaries import SecondaryWatch
from dnsplane.services import Services
from dnsplane.store.base import Freeze, OperatorAction
from dnsplane.store.sqlite import SqliteStore

T = TypeVar("T")
log = logging.getLogger("dnsplane.runtime")

BACKOFF_CAP = 30.0  # seconds: the longest wait between two rounds of a failing actor (or its period, if longer)
MAX_QUERIES_IN_FLIGHT = 64  # endpoints the verifier queries at once (two queries each)
QUERY_TIMEOUT = 2.0  # seconds per verifier query
HEALTH_GRACE = 5.0  # seconds: at start, how long the planner waits for every checked target's first check
SECONDARY_GRACE = 10.0  # seconds a secondary may be behind the primary before it is alerted stale
OPERATORS_POLL = 0.25  # seconds between two reads of the operators' freeze and dials from the store
STATUS_INTERVAL = 1.0  # seconds: instance.json is rewritten at most this often for actor status alone
STATUS_ENDPOINTS_PER_SECOND = 2000  # ...and less often for big fleets (10,000 endpoints: ~30 ms a write)


@dataclass
class Options:
    data_dir: Path
    dns_host: str = "127.0.0.1"
    dns_port: int = 5353
    enactors: int = 3
    planner_period: float = 0.5
    enactor_period: float = 1.0
    health_period: float = 1.0
    health_grace: float = HEALTH_GRACE  # seconds the planner waits for first health checks at start
    head_check: float = HEAD_CHECK  # seconds between an idle planner's checks of the plan at the store's head; 0: off
    collector_period: float = 10.0
    verifier_period: float = 5.0
    rate_limit: RateLimit | None = None  # UDP RRL (``--rrl``); None: the fleet's serve.rrl, if any
    # the embedded server's UDP answering processes (dnsplane.dns.worker); 0: none; None: ``workers_for``
    dns_workers: int | None = None
    api_host: str | None = None  # the HTTP API and /metrics (runtime/api.py); None: none (`up` listens by default)
    api_port: int = 8053
    api_token: str | None = None  # bearer token for the API's writes; None: writes refused
    services: Services | None = None  # the blast-radius graph (``up --services``): the dashboard draws it
    verify_rate: float = 100.0  # endpoints a second each secondary is asked about (runtime/secondaries.py)
    verify_servers: tuple[tuple[str, int], ...] = ()  # more authoritative servers to watch (Route 53's, ...)
    repair_rate: float = 100.0  # the verifier's repairs a second at most, as a budget per round; 0: no limit
    alert_webhook: str | None = None  # where alerts are POSTed as JSON (runtime/alerts.py); None: log and metric only


WORKERS_FROM = 10_000  # endpoints from which ``up`` answers UDP from a worker process by default


def workers_for(endpoints: int) -> int:
    """UDP answering workers by default: one for a fleet of ``WORKERS_FROM`` endpoints or more. In this
    process, DNS answers share the interpreter with the actors: at 100,000 endpoints the garbage
    collector's full passes over the growing heap (whichever thread triggers them) and the handling of
    each applied batch stopped answering for up to 4.5 s; a worker holds only the zone, frozen for the
    collector, and answers between the chunks of a change it applies (bench/scale_e2e.py)."""
    return 1 if endpoints >= WORKERS_FROM else 0


def rate_limit_of(serve: ServeConfig) -> RateLimit | None:
    """The fleet file's ``serve.rrl`` as the server's settings (None: off)."""
    return None if serve.rrl_per_second is None else RateLimit(serve.rrl_per_second, serve.rrl_slip)


async def cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them to end. A cancellation can be lost (Python 3.11's
    ``asyncio.wait_for`` swallows one that arrives as its inner future completes), so every task
    still running after a moment is cancelled again: shutdown must not hang on one of them."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


def backoff(period: float, failures: int) -> float:
    """Seconds to wait before the next round after ``failures`` consecutive failed rounds."""
    if failures <= 0:
        return period
    return min(period * 2 ** min(failures - 1, 32), max(period, BACKOFF_CAP))


def _by_provider(observed: Observed) -> Resolution:
    """What the provider holds, as the verifier's DNS view where no DNS server is asked (Route 53)."""
    records = observed.records
    addrs = tuple(records.addresses()) if records else ()
    marker = observed.marker.to_text() if observed.marker else None
    return Resolution("NOERROR" if addrs else "NXDOMAIN", addrs, marker, observed)


def _resolution(key: EndpointKey, observed: Observed, qname: dns.name.Name, mname: dns.name.Name,
                answer: dnsview.Outcome, txt: dnsview.Outcome) -> Resolution:
    """One endpoint as DNS answers it: its address query's and its marker query's outcomes (``dnsview.ask``)."""
    for outcome in (answer, txt):
        if isinstance(outcome, dns.exception.Timeout):  # dnspython's, not the built-in TimeoutError
            return Resolution("TIMEOUT", (), None, observed)
        if isinstance(outcome, Exception):  # a malformed answer, a refused socket
            log.debug("verifier query failed", extra={"fields": {"endpoint": str(key), "error": repr(outcome)}})
            return Resolution("ERROR", (), None, observed)
    assert isinstance(answer, dns.message.Message) and isinstance(txt, dns.message.Message)
    if (answer.flags | txt.flags) & dns.flags.TC:  # truncated, and TCP failed too: not what the server holds
        return Resolution("TRUNCATED", (), None, observed)
    # Only records of the asked type at the asked name: a CNAME there (and its target's records,
    # which BIND adds) answers no address of the endpoint's own.
    want = dns.rdatatype.from_text(key.rtype)
    addresses = tuple(rd.to_text() for rrset in answer.answer if rrset.rdtype == want and rrset.name == qname
                      for rd in rrset)
    marker = None
    for rrset in txt.answer:
        if rrset.rdtype != dns.rdatatype.TXT or rrset.name != mname:
            continue
        for rd in rrset:
            marker = b"".join(rd.strings).decode(errors="replace")
    return Resolution(dns.rcode.to_text(answer.rcode()), addresses, marker, observed)


@dataclass
class ActorStatus:
    """What ``instance.json`` says of one actor (or background task): is it alive, is it failing."""

    name: str
    period: float
    rounds: int = 0
    last_round: float | None = None  # when the last round ended, ok or not
    last_ok: float | None = None  # when the last round without a failure ended
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0  # consecutive failed rounds
    next_round: float | None = None  # when the next round is due at the latest
    held: str | None = None  # why the last round was skipped (the operator's freeze), None if it ran

    def finish(self, now: float, failure: Failed | None) -> float:
        """Record a round that ended at ``now``; return the seconds to wait before the next one."""
        self.rounds += 1
        self.last_round = now
        self.held = None
        if failure is None:
            if self.failures:
                log.info("recovered after %d failed rounds", self.failures,
                         extra={"fields": {"actor": self.name, "last_error": self.last_error}})
            self.failures = 0
            self.last_ok = now
            delay = self.period
        else:
            self.failures += 1
            self.last_error = failure.error
            self.last_error_at = now
            delay = backoff(self.period, self.failures)
            if failure.retryable:
                delay = min(max(delay, failure.retry_after), max(self.period, BACKOFF_CAP))
        self.next_round = now + delay
        return delay

    def hold(self, now: float, why: str) -> float:
        """Record a round skipped at ``now`` for ``why`` (the actor is well, and not let act); return
        the seconds to the next one."""
        self.rounds += 1
        self.last_round = self.last_ok = now
        self.held = why
        self.failures = 0
        self.next_round = now + self.period
        return self.period

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period, "rounds": self.rounds, "last_round": self.last_round, "last_ok": self.last_ok,
            "last_error": self.last_error, "last_error_at": self.last_error_at, "failures": self.failures,
            "next_round": self.next_round, "held": self.held,
        }


class OwnStore:
    """A connection to the store of its own, on a thread of its own: its calls never wait behind the actors'
    use of the shared connection (held for seconds by one read at 100,000 endpoints), nor for a thread of
    the default pool (busy with the actors' steps under load). The operators' poll has one (a freeze takes
    hold at once), the HTTP API's reads another (their latency is the dashboard's)."""

    def __init__(self, path: Path, name: str) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._store: SqliteStore | None = None  # opened on that thread, at the first call

    async def call(self, read: Callable[[SqliteStore], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, read)

    def _run(self, read: Callable[[SqliteStore], T]) -> T:
        if self._store is None:
            self._store = SqliteStore(self._path)
        return read(self._store)

    def close(self) -> None:
        if self._store is not None:
            self._thread.submit(self._store.close).result(10)
        self._thread.shutdown(wait=False)


class HealthStats:
    """Health check results by outcome, and their durations (a Prometheus histogram)."""

    BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def __init__(self) -> None:
        self.results = {"up": 0, "down": 0, "unknown": 0}
        self.durations = Histogram(self.BUCKETS)

    def add(self, took: Sequence[float], results: Sequence[tuple[bool | None, str]]) -> None:
        for ok, _ in results:
            self.results["unknown" if ok is None else "up" if ok else "down"] += 1
        for t in took:
            self.durations.add(t)


@dataclass
class App:
    fleet: Fleet
    options: Options
    demo: DemoTargets | None = None
    store: SqliteStore = field(init=False)
    provider: Provider = field(init=False)
    server: DnsServer | None = field(init=False)
    interpreter: Interpreter = field(init=False)
    last_reload: Outcome | None = field(default=None, init=False)  # the last fleet reload, in instance.json
    reload_requested: asyncio.Event = field(default_factory=asyncio.Event, init=False)  # SIGHUP sets it
    preflight: list[dict[str, str]] = field(default_factory=list, init=False)  # zone preflight findings, at start

    def __post_init__(self) -> None:
        data = self.options.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(data / "store.sqlite")
        # I7: the fleet file's ``owner:``, else the id generated once for this data dir
        self.owner = installation_owner(data, self.fleet.owner, self.store)
        self.provider = open_provider(self.fleet, data, self.store)
        # dnsplane serves DNS itself only for the embedded provider; otherwise the provider does.
        self.server = None
        if isinstance(self.provider, EmbeddedProvider):
            self.server = DnsServer([self.provider], self.options.dns_host, self.options.dns_port,
                                    rate_limit=self.options.rate_limit or rate_limit_of(self.fleet.serve),
                                    workers=workers_for(len(self.fleet.endpoints)) if self.options.dns_workers is None
                                    else self.options.dns_workers,
                                    transfer=policy_of(self.fleet.serve), serial_file=data / SERIAL_FILE)
            # never NXDOMAIN for what is about to be served: SERVFAIL for each endpoint until first written
            self.server.declare(e.key for e in self.fleet.endpoints)
        # the verifier's ``Resolve`` runs, like every request, in a worker thread, its DNS queries too
        # (``_resolve_from_thread``)
        self.gate = WriteGate()
        self.gate.set(self.store.frozen())  # a freeze survives restarts: no actor starts before it is read
        self.interpreter = Interpreter(self.store, self.provider, self._resolve_from_thread, self.gate)
        zone = self.fleet.zone
        self.planner = Planner("planner", zone, self.fleet.endpoints, zone_guard=self.fleet.guard,
                               health_grace=self.options.health_grace,
                               head_check=self.options.head_check)
        batch = min(1000, self.provider.capabilities.max_batch)
        ordered = self.provider.capabilities.ordered_reads
        n = self.options.enactors
        ownership = self.ownership()  # one for all (frozen): each copy took ~0.5 s and its own sets at 100,000
        self.enactors = [Enactor(f"enactor-{i + 1}", zone, batch, ordered, (i, n), ownership=ownership)
                         for i in range(n)]
        # the dials too: a planner that planned once without a drain in force would put the target back
        self.alerts = Alerts(zone, self.options.alert_webhook)
        self.health_stats = HealthStats()  # for /metrics: check results and latency
        watched = [*(self.fleet.serve.notify if self.server is not None else ()), *self.options.verify_servers]
        per_round = round(self.options.verify_rate * self.options.verifier_period)
        self.secondaries = (SecondaryWatch(watched, [], per_round, SECONDARY_GRACE, self.alerts.emit) if watched
                            else None)
        self.services = self.options.services
        self._problems: dict[EndpointKey, tuple[str, int]] = {}  # the verifier's findings alerted: problem, rounds
        self.api_address: tuple[str, int] | None = None  # where the HTTP API listens
        self.api_error: str | None = None  # why it does not
        self._order_of: Fleet | None = None
        self._order: list[EndpointKey] = []
        self._by_key: dict[EndpointKey, Endpoint] = {}
        self._target_ids: frozenset[str] = frozenset()  # every target id of that fleet (a drain's "void")
        self._operators = OwnStore(self.options.data_dir / "store.sqlite", "operators")
        self.reads = OwnStore(self.options.data_dir / "store.sqlite", "api-reads")  # the HTTP API's
        self._hold: Hold | None = None  # the zone guard's hold as instance.json last showed it
        self._hold_journalled: Generation | None = None
        self.dials = tuple(self.store.dials())
        self.planner.handle(DialsChanged(time.time(), self.dials))
        self.collector = Collector("collector")
        rate = self.options.repair_rate
        budget = max(1, math.ceil(rate * self.options.verifier_period)) if rate else 0  # repairs a round at most
        self.verifier = Verifier("verifier", max_repairs=budget, zone_ordered=ordered, zone=zone, ownership=ownership)
        self.wake = [asyncio.Event() for _ in self.enactors]
        self.actors: dict[str, ActorStatus] = {}
        self._handling: dict[str, threading.Lock] = {}  # actor name -> held while it handles an event
        self._status_written = 0.0
        self._instance_unwritten = False
        self.ready = asyncio.Event()  # first round of health checks done
        self._unknown_checks: dict[str, str] = {}  # target -> detail of its check's current unknown streak
        self.started = asyncio.Event()  # DNS server listening, instance.json written

    def ownership(self) -> Ownership:
        """This installation's owner id, and the current fleet's managed and adopted endpoints (I7)."""
        return Ownership.of_fleet(self.owner, self.fleet.endpoints)

    # ------------------------------------------------------------- driving actors

    async def feed(self, actor: Actor, event: Event) -> Failed | None:
        """Feed an event and every reply until the actor is quiet; return the round's first ``Failed``.

        Never raises for what the actor or its commands raise, and never leaves the actor waiting
        for a reply: every request ends in its reply or in a ``Failed`` fed back to the actor."""
        first: Failed | None = None
        reply: Event | None = event
        while reply is not None:
            # in a worker thread, like the step it returns: a plan of 100,000 endpoints is seconds of
            # handling, and on the event loop DNS answers waited for it
            step, failure = await asyncio.to_thread(self._handle_alone, actor, reply)
            first = first or failure
            if not step.effects and step.request is None:
                break
            reply = await asyncio.to_thread(self.interpreter.run, actor.name, step, time.time())
            if isinstance(reply, Failed):
                first = first or reply
            elif isinstance(reply, Published):
                for w in self.wake:
                    w.set()
        return first

    def _handle_alone(self, actor: Actor, event: Event) -> tuple[Step, Failed | None]:
        """``_handle``, one event at a time per actor: the planner is fed by its own loop and by the
        health loop, each from a worker thread."""
        with self._handling.setdefault(actor.name, threading.Lock()):
            return self._handle(actor, event)

    def _handle(self, actor: Actor, event: Event) -> tuple[Step, Failed | None]:
        """``actor.handle(event)``; if it raises (a bug in the actor), the actor gets a ``Failed``
        instead, and if that raises too, its state is reset (``reset``)."""
        try:
            return actor.handle(event), None
        except Exception as err:
            failure = Failed(time.time(), f"{type(err).__name__} in {actor.name} handling "
                             f"{type(event).__name__}: {err}", True, 0.0)
            log.error("actor raised; it is told its round failed", exc_info=log.isEnabledFor(logging.DEBUG),
                      extra={"fields": {"actor": actor.name, "error": failure.error}})
        if not isinstance(event, Failed):
            try:
                return actor.handle(failure), failure
            except Exception as err:
                log.error("actor raised on Failed too; its state is reset", exc_info=log.isEnabledFor(logging.DEBUG),
                          extra={"fields": {"actor": actor.name, "error": f"{type(err).__name__}: {err}"}})
        self.reset(actor)
        return NOTHING, failure

    def reset(self, actor: Actor) -> None:
        """Give ``actor`` the state of a fresh one (the planner keeps its health observations): a
        restarted actor re-reads everything it needs, as after a process restart. The enactors and
        the verifier own the endpoints of the current fleet (``self.fleet``), even if the actor failed
        on the ``FleetChanged`` that said so."""
        match actor:
            case Enactor() | Verifier():
                actor.reset(self.ownership())
            case Planner() | Collector():
                actor.reset()

    def status_interval(self) -> float:
        return max(STATUS_INTERVAL, len(self.fleet.endpoints) / STATUS_ENDPOINTS_PER_SECOND)

    def status_of(self, name: str, period: float) -> ActorStatus:
        status = self.actors.get(name)
        if status is None:
            status = self.actors[name] = ActorStatus(name, period)
        return status

    async def loop(self, actor: Actor, period: float, wake: asyncio.Event | None = None) -> None:
        status = self.status_of(actor.name, period)
        writes = not isinstance(actor, Planner)  # the planner only plans: it goes on under a freeze
        while True:
            freeze = self.gate.freeze
            if writes and freeze is not None:
                status.hold(time.time(), f"frozen by {freeze.by}")
                self.status_changed()
                await self._pause(period, wake)
                continue
            try:
                failure = await self.feed(actor, Tick(time.time()))
            except Exception as err:  # feed guards every step; this is the last net, for a bug in feed itself
                log.error("actor round failed", exc_info=True, extra={"fields": {"actor": actor.name}})
                failure = Failed(time.time(), f"{type(err).__name__}: {err}", True, 0.0)
                self.reset(actor)
            failing = status.failures
            delay = status.finish(time.time(), failure)
            self.status_changed(force=bool(failure) or bool(failing))
            if status.failures == FAILING_ROUNDS:
                self.alerts.emit("failing", f"{actor.name}: {status.failures} rounds failed in a row",
                                 actor=actor.name, error=status.last_error)
            if actor is self.verifier and failure is None:
                self.verifier_alerts()
            if failure is not None:
                await asyncio.sleep(delay)  # backoff: a publish does not wake a failing enactor early
            else:
                await self._pause(period, wake)

    def verifier_alerts(self) -> None:
        """Alert on what the verifier's round found new, what is right again since, and what is still wrong
        ``UNREPAIRED_ROUNDS`` rounds after it was found (once; rounds that deferred it over the repair
        budget do not count)."""
        found = dict(self.verifier.last_problems)
        deferred = self.verifier.deferred_keys  # over the repair budget: not a round that failed to repair it
        for key, problem in found.items():
            seen = self._problems.get(key)
            if seen is None or seen[0] != problem:
                self._problems[key] = (str(problem), 1)
                self.alerts.emit("finding", f"{key}: {problem}", endpoint=str(key), problem=str(problem))
            elif key not in deferred:
                rounds = seen[1] + 1
                self._problems[key] = (seen[0], rounds)
                if rounds == UNREPAIRED_ROUNDS:
                    self.alerts.emit("unrepaired", f"{key}: {problem} still there after {rounds} verifier rounds",
                                     endpoint=str(key), problem=str(problem), rounds=rounds)
        for key in [k for k in self._problems if k not in found]:
            was, _ = self._problems.pop(key)
            self.alerts.emit("repaired", f"{key}: right again (was {was})", endpoint=str(key), problem=was)

    @staticmethod
    async def _pause(period: float, wake: asyncio.Event | None) -> None:
        """``period`` seconds, or less if ``wake`` is set meanwhile (a publish, an unfreeze)."""
        if wake is None:
            await asyncio.sleep(period)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), period)
        wake.clear()

    async def secondaries_loop(self) -> None:
        """Ask the secondaries about the next sample of endpoints every verifier period (``SecondaryWatch``)."""
        watch = self.secondaries
        assert watch is not None
        while True:
            watch.follow(self.endpoint_order())  # the fleet of now (a reload may change it)
            await asyncio.to_thread(watch.round, self.provider)
            await asyncio.sleep(self.options.verifier_period)

    async def operator_loop(self) -> None:
        """Follow the operators' freeze and dials in the store (every ``OPERATORS_POLL`` s). The freeze: shut
        or open the write gate, say so in the log and in ``instance.json``, and once shut, say when no
        write is in flight any more. The dials: remove and journal the expired ones, and feed the planner
        a ``DialsChanged`` when they changed (the planner expires them by itself, on its own clock)."""
        told_quiet = self.gate.quiet()
        while True:
            # on a thread and a connection of its own: under load the default pool is busy with the actors'
            # steps, and the shared connection held by a long read (seconds at 100,000 endpoints); a freeze
            # must take hold at once all the same
            freeze, dials, confirmed = await self._operators.call(self._operators_now)
            if freeze != self.gate.freeze:
                self.gate.set(freeze)
                told_quiet = False
                if freeze is not None:
                    self.alerts.emit("frozen", f"frozen by {freeze.by}: no automated write until `dnsplane unfreeze`",
                                     by=freeze.by, reason=freeze.reason)
                else:
                    self.alerts.emit("unfrozen", "unfrozen: automated writes resume")
                    for w in self.wake:
                        w.set()
                self.write_instance()
            if freeze is not None and not told_quiet and self.gate.quiet():
                told_quiet = True
                log.info("freeze in force: no automated write in flight")
                self.write_instance()
            if dials != self.dials:
                self.dials = dials
                await self.feed(self.planner, DialsChanged(time.time(), dials))
                self.write_instance()
            hold = self.planner.hold
            if hold != self._hold:
                if hold is not None and (self._hold is None or self._hold.generation != hold.generation):
                    self.alerts.emit("held", f"the zone guard holds generation {hold.generation}: it would change "
                                     f"{hold.changed} of {hold.existing} endpoints", generation=hold.generation,
                                     changed=hold.changed, existing=hold.existing)
                self._hold = hold
                self.write_instance()
            if hold is not None and confirmed == hold.generation and self.planner.confirmed != hold.generation:
                await self.feed(self.planner, HoldConfirmed(time.time(), hold.generation))
            await asyncio.sleep(OPERATORS_POLL)

    def _operators_now(self, store: SqliteStore) -> tuple[Freeze | None, tuple[Dial, ...], Generation | None]:
        """One call on the operators' thread: expire dials, read the freeze and the dials; journal a plan the
        zone guard has just started to hold, and say whether the one it holds has been confirmed."""
        for d in store.expire_dials(time.time(), "dnsplane"):
            log.info("%s expired", d.describe(), extra={"fields": {"kind": d.kind, "subject": d.subject}})
        hold = self.planner.hold
        confirmed = None
        if hold is not None:
            if self._hold_journalled != hold.generation:
                self._hold_journalled = hold.generation
                guard = self.fleet.guard
                store.record_action(OperatorAction(
                    time.time(), "planner", "held", f"would change {hold.changed} of {hold.existing} endpoints, "
                    f"more than {guard.describe() if guard else 'the guard allows'}", str(hold.generation)))
            if store.confirmation(hold.generation, hold.since) is not None:
                confirmed = hold.generation
        return store.frozen(), tuple(store.dials()), confirmed

    def hold_json(self) -> dict[str, Any] | None:
        hold, guard = self._hold, self.fleet.guard
        if hold is None:
            return None
        release = hold.since + guard.release_after if guard is not None and guard.release_after is not None else None
        return {"generation": hold.generation, "since": hold.since, "changed": hold.changed,
                "existing": hold.existing, "limit": guard.describe() if guard else "", "release_at": release}

    def dials_json(self) -> list[dict[str, Any]]:
        kept_in = dict(self.planner.kept_in)
        return [{"kind": d.kind, "subject": d.subject, "targets": list(d.targets), "at": d.at, "by": d.by,
                 "reason": d.reason, "until": d.until, "kept_in": [str(k) for k in kept_in.get(d.subject, ())],
                 "void": self.void(d)}
                for d in self.dials]

    def void(self, dial: Dial) -> str | None:
        """Why the running fleet leaves ``dial`` nothing to act on (the planner ignores it), or None: a pin of an
        endpoint no longer in the fleet, or whose pinned targets all left it (``planner.serving``); a drain of
        a target in no endpoint."""
        if dial.kind == "pin":
            try:
                endpoint = self.fleet_by_key.get(EndpointKey.parse(dial.subject))
            except ValueError:
                endpoint = None
            if endpoint is None:
                return "the endpoint is not in the fleet"
            if not {t.id for t in endpoint.targets} & set(dial.targets):
                return "none of the pinned targets is in the endpoint any more"
            return None
        self.endpoint_order()  # once per fleet: this runs at every status write, for every drain in force
        if dial.subject not in self._target_ids:
            return "the target is in no endpoint of the fleet"
        return None

    def frozen_json(self) -> dict[str, Any] | None:
        freeze: Freeze | None = self.gate.freeze
        if freeze is None:
            return None
        return {"at": freeze.at, "by": freeze.by, "reason": freeze.reason, "quiet": self.gate.quiet()}

    async def supervise(self, name: str, period: float, body: Callable[[], Awaitable[None]]) -> None:
        """Run a background task (the health loop, the demo) and start it again, after a backoff, if it
        raises: one line in the log, its error in ``instance.json``."""
        status = self.status_of(name, period)
        while True:
            try:
                await body()
                return
            except Exception as err:
                log.error("task failed; restarting it", exc_info=log.isEnabledFor(logging.DEBUG),
                          extra={"fields": {"task": name, "error": f"{type(err).__name__}: {err}"}})
                delay = status.finish(time.time(), Failed(time.time(), f"{type(err).__name__}: {err}", True, 0.0))
                self.status_changed(force=True)
                await asyncio.sleep(delay)

    def status_changed(self, force: bool = False) -> None:
        """Rewrite ``instance.json`` for a change of actor status: at once when an actor fails or
        recovers, else at most every ``status_interval`` seconds (``STATUS_INTERVAL``, longer for a
        big fleet: the file lists every endpoint, and it is written on the event loop)."""
        now = time.monotonic()
        if force or now - self._status_written >= self.status_interval():
            self.write_instance()

    async def health_loop(self) -> None:
        """A round of health checks every ``health_period`` seconds, until cancelled.

        The checks run on ``HealthChecker``'s own thread and event loop (their timeouts measure the
        target, not this loop's load); a check that fails for a local reason is unknown, which the
        planner never moves weight for. The loop never stops by itself: a round that raises (a bug,
        instance.json unwritable for want of file descriptors) is logged once per distinct error,
        counted in the health task's status, and the next round comes a period later.
        """
        checker = HealthChecker()  # now, while file descriptors are free: its loop needs some
        status = self.status_of("health", self.options.health_period)
        last_error: str | None = None
        try:
            while True:
                failure = None
                try:
                    await self.health_round(checker)
                    last_error = None
                except Exception as err:
                    text = f"{type(err).__name__}: {err}"
                    failure = Failed(time.time(), text, True, 0.0)
                    if text != last_error:
                        log.error("health round failed; checking again next period",
                                  exc_info=log.isEnabledFor(logging.DEBUG), extra={"fields": {"error": text}})
                    last_error = text
                with contextlib.suppress(Exception):
                    status.finish(time.time(), failure)  # the delay it offers is ignored: health never backs off
                await asyncio.sleep(self.options.health_period)
        finally:
            checker.close()

    async def health_round(self, checker: HealthChecker) -> None:
        targets = [t for t in self.fleet.targets().values() if t.check is not None]  # a reload may change them
        results = await checker.round([t.check for t in targets if t.check is not None])
        now = time.time()
        self.health_stats.add(checker.took, results)

        def view() -> dict[str, tuple[bool | None, str]]:
            return {tid: (h.healthy, h.check) for tid, h in self.planner.health_snapshot().items()}

        before = view()
        unknown = self._unknown_checks
        for t, (ok, detail) in zip(targets, results, strict=True):
            if ok is None and unknown.get(t.id) != detail:
                log.warning("health check unknown (a local failure, not the target's); weight unchanged",
                            extra={"fields": {"target": t.id, "detail": detail}})
                unknown[t.id] = detail
            elif ok is not None and unknown.pop(t.id, None) is not None:
                log.info("health check known again", extra={"fields": {"target": t.id, "detail": detail}})
            await self.feed(self.planner, HealthObserved(now, t.id, ok, detail))
        if not self.ready.is_set() or before != view():
            try:
                self.write_instance()
            except OSError as err:  # e.g. no file descriptor for the temporary file: next change tries again
                log.warning("instance.json not written", extra={"fields": {"error": str(err)}})
        self.ready.set()

    # ------------------------------------------------------------- fleet reload (SIGHUP, `dnsplane reload`)

    def request_reload(self) -> None:
        """SIGHUP: re-read the fleet file soon; requests that arrive during a reload make one more."""
        self.reload_requested.set()

    async def reload_loop(self) -> None:
        while True:
            await self.reload_requested.wait()
            self.reload_requested.clear()
            try:
                await self.reload()
            except Exception:  # recording the outcome failed (disk full?): the next SIGHUP tries again
                log.exception("fleet reload: the outcome could not be recorded")

    async def reload(self) -> Outcome:
        """Re-read the fleet file, validate it whole, then apply it or refuse it, and record the outcome.

        Applying is one ``FleetChanged`` event to each enactor, the verifier and the planner (no
        actor's field is set from here), and the new fleet for the health loop and ``instance.json``;
        refusing changes nothing at all.
        """
        started = time.time()
        old = self.fleet
        try:
            new = await asyncio.to_thread(reread, old)
            change = diff(old, new)
        except Exception as err:  # a refused file, or a bug in reading it: either way nothing changes
            text = str(err) if isinstance(err, InvalidConfig) else f"reload failed: {type(err).__name__}: {err}"
            outcome = Outcome(started, time.time(), False, text)
            log.error("fleet reload refused; the running fleet is unchanged",
                      extra={"fields": {"fleet": old.source, "error": text}})
        else:
            self.fleet = new
            if self.server is not None:  # endpoints added answer SERVFAIL, not NXDOMAIN, until first written
                self.server.declare(e.key for e in new.endpoints)
            # I7: endpoints removed from the file are released (never written, verified or recreated
            # again) and new ones become writable, in the enactors and the verifier first; then the
            # planner, so that no plan of a new endpoint reaches an enactor that does not manage it yet.
            # ``feed`` never raises: an actor that fails on the event is reset from ``self.fleet``.
            released: list[Actor] = [*self.enactors, self.verifier]
            for actor in (*released, self.planner):
                await self.feed(actor, FleetChanged(time.time(), new.endpoints, new.guard))
            outcome = Outcome(started, time.time(), True,
                              f"{new.source}: {change.summary()}; {len(new.endpoints)} endpoints",
                              len(change.added), len(change.changed), len(change.removed))
            log.info("fleet reloaded", extra={"fields": {
                "fleet": new.source, "endpoints": len(new.endpoints), "added": len(change.added),
                "changed": len(change.changed), "removed": len(change.removed)}})
        self.last_reload = outcome
        self.write_instance()
        return outcome

    def listen_for_reload(self) -> bool:
        """Make SIGHUP request a reload; False where signals cannot be caught (not the main thread)."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_reload)
        except (ValueError, RuntimeError, NotImplementedError) as err:
            log.warning("SIGHUP will not reload the fleet here", extra={"fields": {"error": str(err)}})
            return False
        return True

    # ------------------------------------------------------------- verifier's DNS view

    async def resolve(self, keys: Sequence[EndpointKey]) -> Event:
        """The verifier's ``Resolve`` as the interpreter carries it out: ``Resolved``, or ``Failed`` for
        whatever the provider's read or a query raised (the verifier must hear back: it is the last
        actor that may fall silent)."""
        reply = await asyncio.to_thread(self.interpreter.run, "verifier", request(Resolve(tuple(keys))), time.time())
        assert reply is not None  # a request always has its reply
        return reply

    def _resolve_from_thread(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
        """The interpreter's resolver, called in a worker thread: the provider read and the DNS queries
        (``dnsview.ask``: one socket, pipelined) both here, never on the event loop, which answers them.
        Raises what the read raises (the interpreter makes it ``Failed``)."""
        observed = self.provider.read(keys)
        where = self.dns_address()
        if where is None:  # no DNS server to ask from here (Route 53): judge by the provider's state
            return {k: _by_provider(observed[k]) for k in keys}
        names = [(dns.name.from_text(k.name), dns.name.from_text(marker_name(k))) for k in keys]
        questions = [q for k, (qname, mname) in zip(keys, names, strict=True)
                     for q in ((qname, dns.rdatatype.from_text(k.rtype)), (mname, dns.rdatatype.TXT))]
        # a window of MAX_QUERIES_IN_FLIGHT endpoints, two queries each: 10,000 endpoints must not send
        # 20,000 queries at once
        got = dnsview.ask(questions, *where, timeout=QUERY_TIMEOUT, window=2 * MAX_QUERIES_IN_FLIGHT)
        return {k: _resolution(k, observed[k], qname, mname, got[2 * i], got[2 * i + 1])
                for i, (k, (qname, mname)) in enumerate(zip(keys, names, strict=True))}

    def dns_address(self) -> tuple[str, int] | None:
        embedded = (self.options.dns_host, self.server.port) if self.server else ("", 0)
        return dns_view(self.fleet, embedded)

    # ------------------------------------------------------------- lifecycle

    def foreign(self) -> dict[str, str]:
        """Endpoints refused as not this installation's (I7), and why, as the actors last saw them."""
        found: dict[str, str] = {}
        actors: list[Verifier | Enactor] = [self.verifier, *self.enactors]
        for actor in actors:
            for key, why in list(actor.foreign.items()):  # a copy: the actor may be handling an event
                found.setdefault(str(key), why)
        return found

    def quarantined(self) -> dict[str, str]:
        """Endpoints whose write the provider rejected (``Rejected``), and why, as the actors last saw them."""
        found: dict[str, str] = {}
        for enactor in self.enactors:  # copies: the actors may be handling events meanwhile
            for key, why in list(enactor.quarantined.items()):
                found.setdefault(str(key), why)
        for key, held in list(self.verifier.quarantined.items()):
            found.setdefault(str(key), held.reason)
        return found

    def write_instance(self) -> None:
        """Write ``instance.json``; a failure to write it (a full disk) or to build it (a bug in a part of
        the status) is logged once, never raised: it must not stop the actor whose round asked for it
        (a status part that raised once stopped every enactor's loop for good)."""
        self._status_written = time.monotonic()
        try:
            self._write_instance()
        except Exception as err:  # robustness boundary: the status is not worth an actor
            if not self._instance_unwritten:
                log.warning("cannot write instance.json", exc_info=not isinstance(err, OSError),
                            extra={"fields": {"error": f"{type(err).__name__}: {err}"}})
            self._instance_unwritten = True
        else:
            self._instance_unwritten = False

    def _write_instance(self) -> None:
        down = self.demo.down() if self.demo else []
        write_json_atomic(self.options.data_dir / "instance.json", {
            "pid": os.getpid(),
            "dns": list(self.dns_address() or ()),
            "provider": self.fleet.provider.kind,
            # what the provider was opened with: `status` opens the same, whatever the file says now
            "provider_options": dict(self.fleet.provider.options),
            "zone": self.fleet.zone,
            # absolute: `dnsplane drain` and `pin` check against it from wherever they run
            "fleet": self.fleet.source if self.fleet.source.startswith("<") else os.path.abspath(self.fleet.source),
            "demo_ports": self.demo.ports if self.demo else {},
            "down": down,
            "endpoints": {str(ep.key): [t.id for t in ep.targets] for ep in self.fleet.endpoints[:10_000]},
            "reload": self.last_reload.to_json() if self.last_reload else None,
            "owner": self.owner,
            "foreign": self.foreign(),
            "contested": {str(k): why for k, why in list(self.verifier.contested.items())},
            "quarantined": self.quarantined(),
            "preflight": self.preflight,
            "frozen": self.frozen_json(),  # the operator's freeze: quiet once no write is in flight
            "dials": self.dials_json(),  # pins and drains; kept_in: where a drain's guard keeps the target in
            "hold": self.hold_json(),
            "secondaries": self.secondaries.to_json() if self.secondaries else {},  # what each secondary serves
            "api": self.api_url(),  # the HTTP API and /metrics; None: not listening (api_error says why, if asked)
            "api_error": self.api_error,  # the plan the zone guard holds until `dnsplane confirm` (or its window)
            "provider_stats": self.provider.stats(),  # API calls by kind and by round, where the provider counts them
            "actors": {name: status.to_json() for name, status in sorted(self.actors.items())},
            "written_at": time.time(),  # with status_interval: `status` tells a stalled loop from a quiet one
            "status_interval": self.status_interval(),
            "health": {  # healthy: true / false / null (unknown); check: the newest result, "unknown" included
                tid: {"healthy": h.healthy, "detail": h.detail, "check": h.check}
                for tid, h in sorted(self.planner.health_snapshot().items())
            },
        })

    def endpoint_order(self) -> list[EndpointKey]:
        """The fleet's endpoint keys in zone order (the API's pages), computed once per fleet."""
        fleet = self.fleet
        if self._order_of is not fleet:
            self._order = sorted((e.key for e in fleet.endpoints), key=zone_order)
            self._by_key = {e.key: e for e in fleet.endpoints}
            self._target_ids = frozenset(t.id for e in fleet.endpoints for t in e.targets)
            self._order_of = fleet
        return self._order

    @property
    def fleet_by_key(self) -> dict[EndpointKey, Endpoint]:
        self.endpoint_order()
        return self._by_key

    async def start_api(self) -> asyncio.Task[None] | None:
        """The HTTP API (``Options.api_host``); one warning line and none if it cannot listen."""
        host = self.options.api_host
        if host is None:
            return None
        from dnsplane.runtime import api

        try:
            self.api_address, task = await api.start(self, host, self.options.api_port, self.options.api_token)
        except OSError as err:
            self.api_error = f"{host}:{self.options.api_port}: {err.strerror or err}"
            log.warning("HTTP API not started: cannot listen", extra={"fields": {"error": self.api_error}})
            return None
        except Exception as err:  # a bug in the API must not keep DNS from being served
            self.api_error = f"{type(err).__name__}: {err}"
            log.error("HTTP API not started", exc_info=True, extra={"fields": {"error": self.api_error}})
            return None
        return task

    def api_url(self) -> str | None:
        if self.api_address is None:
            return None
        host, port = self.api_address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def run(self, stop: asyncio.Event) -> None:
        if self.server is not None:
            await self.server.start()
        api_task = await self.start_api()
        hup = self.listen_for_reload()  # before instance.json names this pid to `dnsplane reload`
        self.write_instance()
        self.started.set()
        tasks = [
            asyncio.create_task(self.supervise("health", self.options.health_period, self.health_loop), name="health"),
            asyncio.create_task(self.loop(self.planner, self.options.planner_period), name="planner"),
            asyncio.create_task(self.loop(self.collector, self.options.collector_period), name="collector"),
            asyncio.create_task(self.loop(self.verifier, self.options.verifier_period), name="verifier"),
            asyncio.create_task(self.reload_loop(), name="reload"),
            asyncio.create_task(self.supervise("operators", OPERATORS_POLL, self.operator_loop), name="operators"),
            asyncio.create_task(self.supervise("alerts", 1.0, self.alerts.run), name="alerts"),
        ]
        tasks += [
            asyncio.create_task(self.loop(e, self.options.enactor_period, w), name=e.name)
            for e, w in zip(self.enactors, self.wake, strict=True)
        ]
        if api_task is not None:
            tasks.append(api_task)
        if self.secondaries is not None:
            tasks.append(asyncio.create_task(
                self.supervise("secondaries", self.options.verifier_period, self.secondaries_loop), name="secondaries"))
        if self.demo is not None:
            control = self.options.data_dir / "demo"
            demo = self.demo
            tasks.append(asyncio.create_task(
                self.supervise("demo", 1.0, lambda: demo.follow(control, self.write_instance)), name="demo"))
        try:
            await stop.wait()
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await cancel_all(tasks)
            if self.server is not None:
                await self.server.stop()
            if self.demo is not None:
                await self.demo.stop()
            with contextlib.suppress(FileNotFoundError):
                (self.options.data_dir / "instance.json").unlink()
            self.store.close()
            self._operators.close()
            self.reads.close()
            self.provider.close()
