"""The simulated world: a fleet, in-memory store and provider, and the commands carried out against them.

``SimExecutor`` is ``dnsplane.execute.Executor`` itself (a subclass: the same
store and provider calls, the same replies, an effect that raises ends the step
with ``Failed`` and skips the rest). It differs in two deliberate ways:

- the final request of a step is not run at once but handed back, so that the
  driver can deliver it later, in an order its scheduler chooses (effects apply
  at once, as in the runtime);
- it also executes the legacy protocol's ``ForceWrite`` and ``CleanUp``, which
  exist only here: the runtime refuses them, so they can never reach a real
  provider.

Fault hooks (``store_down``, ``throttled``) let the driver make store and
provider calls fail with the same ``Retryable`` errors real ones raise; ``None``
(the default) means never (and costs no call per command). ``armed`` makes the
next store or provider call of an actor raise an exception that is *not* a
``DnsplaneError`` (``RuntimeError``, ``AttributeError``, ``OverflowError``,
``KeyError``, ``struct.error``: what the real system raised on a CNAME at a marker
name, a hand-written marker ``g=99999999999999999999``, a message too big to
pack), before the call or after it took effect (a write the provider applied,
then the reply failed to parse). What becomes of it is decided by the runtime's
``Executor.run``, which ``request`` and ``effects`` go through: whatever a command
raises ends the step with ``Failed``. An exception that escapes ``run`` anyway is
the caller's to model (the simulator and the explorer treat it as the runtime's
loop did before issue 8: logged, the actor gets no reply, and I8 reports it).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from typing import Any

from dnsplane.errors import DnsplaneError, ProviderUnavailable, StoreUnavailable
from dnsplane.execute import Interpreter, handler_for, handlers
from dnsplane.model import (
    Endpoint,
    EndpointKey,
    Generation,
    HealthCheck,
    Marker,
    Observed,
    Policy,
    RecordSet,
    Target,
    Write,
    WriteResult,
)
from dnsplane.protocol.legacy import LEGACY_REQUESTS, CleanedUp, CleanUp, ForceWrite
from dnsplane.protocol.messages import (
    EFFECT_CLASSES,
    REQUEST_CLASSES,
    AdvanceHead,
    Begin,
    Collect,
    Command,
    Effect,
    Event,
    Failed,
    Finish,
    Journal,
    LoadChanges,
    LoadContentAt,
    LoadDesired,
    Log,
    Publish,
    Published,
    ReadHead,
    ReadMarkers,
    ReadWatermark,
    Request,
    Resolution,
    Resolve,
    SetLastKnownGood,
    Step,
    WriteBatch,
    WriteDone,
)
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.memory import MemoryStore

ZONE = "sim.test."
COMMANDS: tuple[type[Command], ...] = (*REQUEST_CLASSES, *EFFECT_CLASSES, *LEGACY_REQUESTS)  # every command class
STORE_REQUESTS = (ReadHead, LoadChanges, LoadContentAt, LoadDesired, Publish, ReadWatermark, Collect, CleanUp)
STORE_EFFECTS = (Begin, Finish, AdvanceHead, SetLastKnownGood, Journal)
# the explorer's faults that are a person's edit, or the provider's: no actor moves
HUMAN_FAULTS = frozenset({"empty", "unmark", "garble", "reject"})
GARBLED = Generation(2**63 - 1)  # the ``g=`` a person wrote into a marker in the explorer's "garble" move
_STORE_CALLS = STORE_REQUESTS + STORE_EFFECTS
PROVIDER_REQUESTS = (ReadMarkers, WriteBatch, Resolve, ForceWrite)
# the same, as sets of exact types: one hash lookup instead of an isinstance check per tuple member
STORE_REQUEST_TYPES = frozenset(STORE_REQUESTS)
PROVIDER_REQUEST_TYPES = frozenset(PROVIDER_REQUESTS)
_STORE_CALL_TYPES = frozenset(_STORE_CALLS)
_PROVIDER_TYPES = PROVIDER_REQUEST_TYPES


# The exceptions a request raised in the real world that are not a DnsplaneError (issue 8), as the
# ``request_exception`` fault and the explorer's "raise" move inject them.
EXCEPTIONS: dict[str, Callable[[], Exception]] = {
    "RuntimeError": lambda: RuntimeError("simulated: a bug in a request"),
    "AttributeError": lambda: AttributeError("'CNAME' object has no attribute 'address'"),
    "OverflowError": lambda: OverflowError("Python int too large to convert to SQLite INTEGER"),
    "KeyError": lambda: KeyError("members"),
    "struct.error": lambda: struct.error("'H' format requires 0 <= number <= 65535"),
}


def fleet(endpoints: int, targets: int) -> tuple[Endpoint, ...]:
    """``endpoints`` endpoints ``e0.sim.test. A`` …, each with ``targets`` load balancers of its own."""
    policy = Policy(rise=1, fall=1, max_weight_shift=1.0)
    out = []
    for e in range(endpoints):
        ts = tuple(
            Target(f"lb-{e}-{t}", (f"10.{e // 250}.{e % 250}.{t + 1}",), 100 * (t + 1), HealthCheck("tcp", "sim", 1))
            for t in range(targets)
        )
        out.append(Endpoint(f"e{e}.{ZONE}", "A", 60, ts, policy))
    return tuple(out)


def resolve_from(provider: MemoryProvider, keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
    """What the embedded DNS server answers ("all" view) plus the provider state, as tests/protocol/harness.py."""
    out = {}
    for key, seen in provider.read(keys).items():
        addrs = tuple(seen.records.addresses()) if seen.records else ()
        rcode = "NOERROR" if seen.records or seen.marker else "NXDOMAIN"
        out[key] = Resolution(rcode, addrs, seen.marker.to_text() if seen.marker else None, seen)
    return out


class Resolver:
    """``resolve_from(provider, keys)``, with each record set's addresses and each marker's text computed once.

    Record sets and markers are immutable and shared (the provider keeps the objects it was given), so
    the verifier's every-period ``Resolve`` mostly meets objects it has seen: they are looked up by
    identity (the object is kept with its entry, so an ``id`` is never reused while cached).
    """

    LIMIT = 4096  # entries per cache before it starts again (long explorations)

    def __init__(self, provider: MemoryProvider) -> None:
        self.provider = provider
        self.addresses: dict[int, tuple[RecordSet, tuple[str, ...]]] = {}
        self.texts: dict[int, tuple[Marker, str]] = {}

    def __call__(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
        out = {}
        addresses, texts = self.addresses, self.texts
        for key, seen in self.provider.read(keys).items():
            records, marker = seen.records, seen.marker
            if records:
                hit = addresses.get(id(records))
                if hit is None or hit[0] is not records:
                    if len(addresses) >= self.LIMIT:
                        addresses.clear()
                    hit = addresses[id(records)] = (records, tuple(records.addresses()))
                addrs = hit[1]
            else:
                addrs = ()
            if marker:
                known = texts.get(id(marker))
                if known is None or known[0] is not marker:
                    if len(texts) >= self.LIMIT:
                        texts.clear()
                    known = texts[id(marker)] = (marker, marker.to_text())
                text: str | None = known[1]
            else:
                text = None
            out[key] = Resolution("NOERROR" if records or marker else "NXDOMAIN", addrs, text, seen)
        return out


class SimProvider(MemoryProvider):
    """``MemoryProvider`` with the simulator's ``partial_write`` faults.

    ``reject(key, reason)`` (the memory provider's own) answers ``Rejected`` for ``key``'s writes.
    ``marker_only`` holds keys whose writes the provider applies only in part, and lies about it:
    the marker changes, the records that were there stay, the result is ``Applied`` (what BIND did
    with a CNAME at the name, where the write had no prerequisite to exclude it). Only over records
    already there: an endpoint with no records is left to ``reject`` (a server that ignores a first
    write entirely is I1's business, which no protocol can keep without the prerequisite).
    """

    def __init__(self, zone: str) -> None:
        super().__init__(zone)
        self.marker_only: set[EndpointKey] = set()

    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        if self.marker_only:
            writes = [self._partial(w) for w in writes]
        return super()._apply(writes)

    def _partial(self, w: Write) -> Write:
        if w.key not in self.marker_only:
            return w
        kept = self._records.get(w.key)  # one thread; _apply takes the lock next
        return w if kept is None else dataclasses.replace(w, records=kept)


class SimExecutor(Interpreter):
    """The runtime's ``Interpreter`` against a ``MemoryStore`` and a ``MemoryProvider``, with fault hooks."""

    def __init__(
        self,
        store: MemoryStore,
        provider: MemoryProvider,
        store_down: Callable[[], bool] | None = None,
        throttled: Callable[[], bool] | None = None,
        on_publish: Callable[[Generation, tuple[tuple[EndpointKey, RecordSet], ...]], None] | None = None,
        on_cleanup: Callable[[tuple[EndpointKey, ...]], None] | None = None,
        journal: bool = True,
    ) -> None:
        super().__init__(store, provider, Resolver(provider))
        self.memory_store, self.memory_provider = store, provider
        self.store_down, self.throttled = store_down, throttled
        self.on_publish, self.on_cleanup, self.journal = on_publish, on_cleanup, journal
        self.stats = {"store_failures": 0, "provider_failures": 0, "exceptions": 0}
        # actor -> (when: "before" | "after" the call took effect, exception name in EXCEPTIONS): its next
        # store or provider call raises that exception (the ``request_exception`` fault)
        self.armed: dict[str, tuple[str, str]] = {}
        self.began = False  # set when a ``Begin`` ran (the driver asks after ``effects``)
        # the runtime's command table, with the simulator's own commands added (built once, not matched per call)
        table: dict[type, Any] = handlers()  # the simulator's commands reply with its own events too
        table[Log] = _nothing
        table[AdvanceHead] = _advance_head
        if not journal:
            table[Journal] = _nothing
        table[ForceWrite] = _force_write
        table[Begin] = _begin_and_note
        table[CleanUp] = _cleanup
        if on_publish is not None:
            table[Publish] = _publish_and_tell
        self._table = table

    def effects(self, actor: str, effects: tuple[Effect, ...], now: float) -> Failed | None:
        """Carry out a step's effects now (its request is delivered later): ``Interpreter.run``, whose
        handling of what a command raises is the runtime's (an exception it lets through is raised
        here too)."""
        reply = self.run(actor, Step(effects), now)
        return reply if type(reply) is Failed else None

    def request(self, actor: str, cmd: Request[Any], now: float) -> Event | CleanedUp:
        """Carry out a step's request, when the scheduler delivers it; errors come back as ``Failed``
        (``Interpreter.run``)."""
        reply = self.run(actor, Step((), cmd), now)
        if reply is None:
            raise DnsplaneError(f"not a request: {type(cmd).__name__}")
        return reply

    def one(self, actor: str, cmd: Command, now: float) -> Event | None:  # type: ignore[override]
        kind = type(cmd)
        if self.armed and actor in self.armed and (kind in _STORE_CALL_TYPES or kind in _PROVIDER_TYPES):
            return self._raise(actor, cmd, now)
        if kind in _STORE_CALL_TYPES:
            if self.store_down is not None and self.store_down():
                self.stats["store_failures"] += 1
                raise StoreUnavailable(reason="simulated outage")
        elif kind in _PROVIDER_TYPES and self.throttled is not None and self.throttled():
            self.stats["provider_failures"] += 1
            raise ProviderUnavailable(reason="simulated throttling", retry_after=1.0)
        handler = self._table.get(kind)
        if handler is None:
            if isinstance(cmd, _STORE_CALLS + PROVIDER_REQUESTS):
                return self._slow_one(actor, cmd, now)
            handler = handler_for(kind)
        return handler(self, actor, cmd, now)

    def _raise(self, actor: str, cmd: Command, now: float) -> Event | None:
        """The armed exception, before ``cmd`` ran or after it took effect (and its reply is lost)."""
        when, name = self.armed.pop(actor)
        self.stats["exceptions"] += 1
        if when == "after":
            self.one(actor, cmd, now)
        raise EXCEPTIONS[name]()

    def before_store_call(self) -> None:
        """The simulated store outage (``one`` makes the same check inline: it runs for every command)."""
        if self.store_down is not None and self.store_down():
            self.stats["store_failures"] += 1
            raise StoreUnavailable(reason="simulated outage")

    def _slow_one(self, actor: str, cmd: Command, now: float) -> Event | None:
        """A subclass of a command type (none exist today): the checks ``isinstance`` would make."""
        if isinstance(cmd, _STORE_CALLS):
            self.before_store_call()
        if isinstance(cmd, PROVIDER_REQUESTS) and self.throttled is not None and self.throttled():
            self.stats["provider_failures"] += 1
            raise ProviderUnavailable(reason="simulated throttling", retry_after=1.0)
        for base in type(cmd).__mro__:
            handler = self._table.get(base)
            if handler is not None:
                return handler(self, actor, cmd, now)
        return None

    def _legacy_cleanup(self, keep_from: Generation, now: float) -> CleanedUp:
        """Delete plans below ``keep_from`` *and the records those plans created* (the failed design).

        An endpoint whose marker names a plan below ``keep_from`` (deleted now or before) holds records
        that a deleted plan created: they are deleted with it, leaving the endpoint empty.
        """
        gone = {p.generation for p in self.memory_store.plans() if p.generation < keep_from}
        deleted = self.memory_store.collect(keep_from, now) if gone else 0
        emptied = []
        for key, seen in self.memory_provider.read_all().items():
            if seen.marker is not None and seen.marker.generation < keep_from and seen.records is not None:
                self.memory_provider.hand_edit(key, None, None)
                emptied.append(key)
        if emptied and self.on_cleanup is not None:
            self.on_cleanup(tuple(emptied))
        return CleanedUp(now, deleted, tuple(emptied))


def observed_all(provider: MemoryProvider) -> dict[EndpointKey, Observed]:
    return provider.read_all()


def _nothing(ex: Interpreter, actor: str, cmd: object, now: float) -> None:
    return None


def _advance_head(ex: Interpreter, actor: str, cmd: AdvanceHead, now: float) -> None:
    ex.store.advance_head(cmd.at_least, now)  # the runtime's, without its log line (the trace has it)


def _force_write(ex: Interpreter, actor: str, cmd: ForceWrite, now: float) -> Event:
    provider = ex.memory_provider  # type: ignore[attr-defined]
    provider.hand_edit(cmd.key, cmd.records, cmd.marker)  # the legacy design's unconditional write
    provider.writes += 1
    return WriteDone(now, [])


def _cleanup(ex: Interpreter, actor: str, cmd: CleanUp, now: float) -> CleanedUp:
    return ex._legacy_cleanup(cmd.keep_from, now)  # type: ignore[attr-defined,no-any-return]


_RUNTIME_PUBLISH = handlers()[Publish]
_RUNTIME_BEGIN = handlers()[Begin]


def _begin_and_note(ex: Interpreter, actor: str, cmd: Begin, now: float) -> Event | None:
    reply = _RUNTIME_BEGIN(ex, actor, cmd, now)
    ex.began = True  # type: ignore[attr-defined]
    return reply


def _publish_and_tell(ex: Interpreter, actor: str, cmd: Publish, now: float) -> Event | None:
    reply = _RUNTIME_PUBLISH(ex, actor, cmd, now)
    if isinstance(reply, Published):
        ex.on_publish(reply.generation, cmd.changes)  # type: ignore[attr-defined]
    return reply
