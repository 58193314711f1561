"""The simulated world: a fleet, in-memory store and provider, and the commands carried out against them.

``SimExecutor`` is ``dnsplane.execute.Interpreter`` itself (a subclass: the same
store and provider calls, the same replies, an effect that raises ends the step
with ``Failed`` and skips the rest). It differs in deliberate ways only:

- a step's effects (``effects``) and its request (``request``) are carried out
  separately, so that the driver can deliver the request later, in an order its
  scheduler chooses (effects apply at once, as in the runtime);
- it also executes the legacy protocol's ``ForceWrite`` and ``CleanUp``, which
  exist only here: the runtime refuses them, so they can never reach a real
  provider; it keeps no journal when asked not to (``journal=False``), logs
  nothing (the trace says it), and tells the driver what was published;
- ``armed`` (the ``request_exception`` fault) makes the next command of an actor
  that calls the store or the provider raise an exception that is *not* a
  ``DnsplaneError`` (``RuntimeError``, ``AttributeError``, ``OverflowError``,
  ``KeyError``, ``struct.error``: what the real system raised on a CNAME at a
  marker name, a hand-written marker ``g=99999999999999999999``, a message too
  big to pack), before the command ran or after it took effect whole (a write
  the provider applied, then the reply failed to parse). It is a fault of the
  request, not of one call, so it is checked per command, here.

Store outages, throttling and latency spikes are not here: they are the store's
and the provider's own (``flaky.FlakyStore``, ``flaky.FlakyProvider``), which the
driver hands this executor instead of the memory ones when its schedule has them.
What becomes of an exception is decided by ``Interpreter.run``, which ``request``
and ``effects`` go through: whatever a command raises ends the step with
``Failed``. An exception that escapes ``run`` anyway is the caller's to model
(the simulator and the explorer treat it as the runtime's loop did before
issue 8: logged, the actor gets no reply, and I8 reports it).

Which commands call the store or the provider is derived from each command
class's ``READS``/``WRITES`` (``CALLS_WORLD``, ``PROVIDER_CALLS``,
``PROVIDER_WRITES``, ``COLLECTING``), never listed by hand.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from typing import Any

from dnsplane.errors import DnsplaneError
from dnsplane.execute import Fenced, Interpreter, handler_for, handlers
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
    STORE_RESOURCES,
    AdvanceHead,
    Begin,
    Command,
    Effect,
    Event,
    Failed,
    Journal,
    Log,
    Publish,
    Published,
    Request,
    Resolution,
    Resource,
    SetLastKnownGood,
    Step,
    WriteBatch,
    WriteDone,
)
from dnsplane.providers.base import Provider
from dnsplane.providers.memory import MemoryProvider
from dnsplane.sim.flaky import FlakyProvider, FlakyStore
from dnsplane.store.memory import MemoryStore

ZONE = "sim.test."


@dataclasses.dataclass(frozen=True, slots=True)
class SentBatch(Request[WriteDone]):
    """The explorer's ``WriteBatch`` once its writer's half (``execute.fence_read``: two reads, the provider's
    write token and the store's fence, separate calls in the runtime) ran, each read in a move of its own:
    what is left is the provider's call. ``half`` names the one read made so far ("token" or "store", in
    the order ``fence_read`` makes them), "" once both are. It keeps what the reads found as values a state
    can count: ``stale`` as sorted pairs, and of the token only whether one was read (``has_token``) and
    whether an automated write has moved it since (``moved``, set by the explorer on every pending
    ``SentBatch`` that read one when a move writes the provider: statespace.py). Reply: the runtime's
    handler on ``request`` with that half, the token as the provider has it now, or one it never has when
    it moved."""

    READS = frozenset({Resource.PROVIDER})
    WRITES = frozenset({Resource.PROVIDER})
    request: WriteBatch
    stale: tuple[tuple[EndpointKey, Generation], ...]
    has_token: bool
    moved: bool = False
    half: str = ""


MOVED = "moved"  # a token no provider has: what a SentBatch whose token moved carries to the provider
COMMANDS: tuple[type[Command], ...] = (*REQUEST_CLASSES, *EFFECT_CLASSES, *LEGACY_REQUESTS,  # every command class
                                       SentBatch)


_WORLD = STORE_RESOURCES | {Resource.PROVIDER}


def calls_world(kind: type[Command]) -> bool:
    """Whether commands of ``kind`` call the store or the provider (``READS``/``WRITES``)."""
    return bool((kind.READS | kind.WRITES) & _WORLD)


# Sets of exact types (one hash lookup each), derived from the command classes' declarations:
# commands that call the store or the provider (an armed ``request_exception`` raises in the first of them)
CALLS_WORLD = frozenset(c for c in COMMANDS if calls_world(c))
# requests that delete plans (what referenced them must still be there: I3)
COLLECTING = frozenset(c for c in COMMANDS if c.COLLECTS)
# requests the scheduler treats as the provider's (a latency spike stretches them), and those among them
# that write (a slow actor's writes take long; a write can time out after it was applied). A request that
# collects plans is the store's: the legacy ``CleanUp`` deletes records too, as part of its collection,
# against the provider itself (never throttled nor stretched, as a store call)
PROVIDER_CALLS = frozenset(c for c in COMMANDS if Resource.PROVIDER in c.READS | c.WRITES) - COLLECTING
PROVIDER_WRITES = frozenset(c for c in PROVIDER_CALLS if Resource.PROVIDER in c.WRITES)


# The exceptions a request raised in the real world that are not a DnsplaneError (issue 8), as the
# ``request_exception`` fault and the explorer's "raise" move inject them.
EXCEPTIONS: dict[str, Callable[[], Exception]] = {
    "RuntimeError": lambda: RuntimeError("simulated: a bug in a request"),
    "AttributeError": lambda: AttributeError("'CNAME' object has no attribute 'address'"),
    "OverflowError": lambda: OverflowError("Python int too large to convert to SQLite INTEGER"),
    "KeyError": lambda: KeyError("members"),
    "struct.error": lambda: struct.error("'H' format requires 0 <= number <= 65535"),
}


# The simulated fleet's policy unless a scenario sets its own (``fleet: {policy: ...}``): a flip acts at
# once (rise and fall 1) and one generation may move all of an endpoint's weight
SIM_POLICY = Policy(rise=1, fall=1, max_weight_shift=1.0)


def fleet(endpoints: int, targets: int, policy: Policy | None = None) -> tuple[Endpoint, ...]:
    """``endpoints`` endpoints ``e0.sim.test. A`` …, each with ``targets`` load balancers of its own, all
    under ``policy`` (None: ``SIM_POLICY``)."""
    policy = policy or SIM_POLICY
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

    ``silent`` (the ``dns_silent`` fault; None: every query is answered) says which endpoints' queries
    get no answer now: each is resolved as the runtime's resolver reports a query that timed out,
    ``Resolution("TIMEOUT", (), None, observed)`` (``runtime/app.py``), the provider still read.
    """

    LIMIT = 4096  # entries per cache before it starts again (long explorations)

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.addresses: dict[int, tuple[RecordSet, tuple[str, ...]]] = {}
        self.texts: dict[int, tuple[Marker, str]] = {}
        self.silent: Callable[[EndpointKey], bool] | None = None

    def __call__(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
        out = {}
        addresses, texts = self.addresses, self.texts
        silent = self.silent
        for key, seen in self.provider.read(keys).items():
            if silent is not None and silent(key):
                out[key] = Resolution("TIMEOUT", (), None, seen)  # the runtime's: the query timed out
                continue
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


# A command handler of the simulator's interpreter: the runtime's, or one of the simulator's own below. Its
# reply is Any: the legacy CleanUp's CleanedUp is not an event of the safe protocol's ``Event`` union.
SimHandler = Callable[["SimExecutor", str, Any, float], Any]


class SimExecutor(Interpreter):
    """The runtime's ``Interpreter`` against the simulator's store and provider (memory ones, or the flaky
    wrappers of ``flaky``), with the legacy commands, and the ``request_exception`` fault (``armed``)."""

    def __init__(
        self,
        store: MemoryStore | FlakyStore,
        provider: MemoryProvider | FlakyProvider,
        on_publish: Callable[[Generation, tuple[tuple[EndpointKey, RecordSet], ...]], None] | None = None,
        on_cleanup: Callable[[tuple[EndpointKey, ...]], None] | None = None,
        journal: bool = True,
        armed: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(store, provider, Resolver(provider))
        # the legacy cleanup deletes records at the provider itself: never throttled (see PROVIDER_CALLS)
        self.memory_provider = provider.inner if isinstance(provider, FlakyProvider) else provider
        self.editor = provider  # ForceWrite's unconditional write goes through it (throttled when flaky)
        self.on_publish, self.on_cleanup, self.journal = on_publish, on_cleanup, journal
        # actor -> (when: "before" | "after" the command took effect, exception name in EXCEPTIONS): its next
        # command that calls the store or the provider raises that exception (the ``request_exception``
        # fault; the driver's ``FaultInjector`` hands its own dict)
        self.armed: dict[str, tuple[str, str]] = {} if armed is None else armed
        self.exceptions = 0  # armed exceptions raised
        self.began = False  # set when a ``Begin`` ran (the driver asks after ``effects``)
        self.lkg_set: Generation | None = None  # the last ``SetLastKnownGood`` that took effect (the driver asks too)
        # actor -> the writer's half of its ``WriteBatch`` about to run (write token and store fence), read when
        # the request was sent (``execute.fence_read``; the driver's ``_send_write``): its provider call runs
        # later, as in the runtime
        self.fenced: dict[str, Fenced] = {}
        # the runtime's command table, with the simulator's own commands added (built once, not matched per call)
        # the simulator's commands reply with its own events too
        table: dict[type, SimHandler] = {kind: handler for kind, handler in handlers().items()}
        table[Log] = _nothing
        table[AdvanceHead] = _advance_head
        if not journal:
            # no journal is kept; a flaky store is still asked (an outage fails a journal write)
            table[Journal] = _record_nothing if isinstance(store, FlakyStore) else _nothing
        table[ForceWrite] = _force_write
        table[Begin] = _begin_and_note
        table[WriteBatch] = _write_batch_sent
        table[SentBatch] = _sent_batch
        table[SetLastKnownGood] = _set_last_known_good_and_note
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

    def one(self, actor: str, cmd: Command, now: float) -> Event | None:
        kind = type(cmd)
        if self.armed and actor in self.armed and (kind in CALLS_WORLD or calls_world(kind)):
            return self._raise(actor, cmd, now)
        handler = self._table.get(kind)
        if handler is None:  # a subclass of a command type (none exist today): as ``isinstance`` would match
            handler = next((h for base in kind.__mro__ if (h := self._table.get(base)) is not None), None)
            if handler is None:
                handler = handler_for(kind)  # a command this interpreter does not carry out: the step fails
        return handler(self, actor, cmd, now)

    def _raise(self, actor: str, cmd: Command, now: float) -> Event | None:
        """The armed exception, before ``cmd`` ran or after it took effect (and its reply is lost)."""
        when, name = self.armed.pop(actor)
        self.exceptions += 1
        if when == "after":
            self.one(actor, cmd, now)
        raise EXCEPTIONS[name]()

    def _legacy_cleanup(self, keep_from: Generation, now: float) -> CleanedUp:
        """Delete plans below ``keep_from`` *and the records those plans created* (the failed design).

        An endpoint whose marker names a plan below ``keep_from`` (deleted now or before) holds records
        that a deleted plan created: they are deleted with it, leaving the endpoint empty. The store is
        this executor's (an outage fails the cleanup before anything changed); the records are deleted
        at the provider itself.
        """
        gone = {p.generation for p in self.store.plans() if p.generation < keep_from}
        deleted = self.store.collect(keep_from, now) if gone else 0
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


def _record_nothing(ex: Interpreter, actor: str, cmd: Journal, now: float) -> None:
    ex.store.record(())  # the journal is not kept, but the store is asked: an outage fails the write


def _force_write(ex: SimExecutor, actor: str, cmd: ForceWrite, now: float) -> Event:
    # the legacy design's unconditional write
    ex.editor.hand_edit(cmd.key, cmd.records, cmd.marker)
    ex.memory_provider.writes += 1
    return WriteDone(now, [])


def _cleanup(ex: SimExecutor, actor: str, cmd: CleanUp, now: float) -> CleanedUp:
    return ex._legacy_cleanup(cmd.keep_from, now)


_RUNTIME_PUBLISH = handlers()[Publish]
_RUNTIME_BEGIN = handlers()[Begin]


def _begin_and_note(ex: SimExecutor, actor: str, cmd: Begin, now: float) -> Event | None:
    reply = _RUNTIME_BEGIN(ex, actor, cmd, now)
    ex.began = True
    return reply


# the runtime's handler, which takes the writer's half of the batch as an optional fifth argument
_RUNTIME_WRITE_BATCH: Callable[..., Event | None] = handlers()[WriteBatch]


def _write_batch_sent(ex: SimExecutor, actor: str, cmd: WriteBatch, now: float) -> Event | None:
    # with the writer's half the driver read when the request was sent (none: read now, as the runtime does)
    return _RUNTIME_WRITE_BATCH(ex, actor, cmd, now, ex.fenced.pop(actor, None))


def _sent_batch(ex: SimExecutor, actor: str, cmd: SentBatch, now: float) -> Event | None:
    token = (MOVED if cmd.moved else ex.provider.write_token()) if cmd.has_token else None
    return _RUNTIME_WRITE_BATCH(ex, actor, cmd.request, now, Fenced(token, dict(cmd.stale)))


_RUNTIME_SET_LKG = handlers()[SetLastKnownGood]


def _set_last_known_good_and_note(ex: SimExecutor, actor: str, cmd: SetLastKnownGood, now: float) -> Event | None:
    reply = _RUNTIME_SET_LKG(ex, actor, cmd, now)
    ex.lkg_set = cmd.generation
    return reply


def _publish_and_tell(ex: SimExecutor, actor: str, cmd: Publish, now: float) -> Event | None:
    reply = _RUNTIME_PUBLISH(ex, actor, cmd, now)
    if isinstance(reply, Published) and ex.on_publish is not None:
        ex.on_publish(reply.generation, cmd.changes)
    return reply
