"""The one interpreter of the actor contract: carries out a ``Step`` against a store, a provider and DNS.

An actor answers every event with a ``Step`` (``protocol/messages.py``): effects, then at most one
request. ``Interpreter.run`` carries them out, in order, synchronously, and returns the request's
reply. Every driver calls it: the asyncio runtime (from a worker thread), the simulator and the
explorer (the effects at once, the request when their scheduler delivers it, each as a ``Step`` of
its own), the test harness and the benchmarks (``drain``). What differs between drivers is only
*when* a step runs, never what it does. ``Resolve`` needs DNS: the caller passes a ``resolver``.

The operator's freeze (``dnsplane freeze``) is enforced here, at the only two places an automated
write leaves dnsplane: a ``WriteBatch`` (enactors, verifier repairs) and a ``Collect``. With a
``WriteGate`` that is shut, neither is carried out: the reply is ``Failed`` (``Frozen``, retryable).
The gate counts the writes that passed it and have not finished, so the runtime can tell when a
freeze has taken hold: shut, and nothing in flight (``WriteGate.quiet``).

Guarantee (I8): ``Interpreter.run`` never raises for what a command raises: a round that fails for
any reason ends with a ``Failed`` reply. A ``DnsplaneError`` becomes ``Failed`` as its class says
(``Retryable`` with its ``retry_after``, else not retryable); any other exception (a bug, or an
error of the machine no adapter classified yet: a full disk's ``sqlite3.OperationalError``, an
``OverflowError``, an ``OSError``) becomes ``Failed(retryable=True)``: it may well pass (the disk is
freed), and the driver's backoff, not the reply, spaces the retries. Its traceback is logged at debug
level only; the one warning line is the actor's own, when it handles the ``Failed``. The first
effect that fails ends the step: later effects and the request are not carried out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dnsplane.errors import DnsplaneError, Frozen, Retryable
from dnsplane.model import EVERY_GENERATION, Conflict, EndpointKey, Generation, Write, WriteResult, quick_init
from dnsplane.protocol.messages import (
    AdvanceHead,
    Begin,
    ChangesLoaded,
    Collect,
    Collected,
    Command,
    ContentLoaded,
    DesiredLoaded,
    Event,
    Failed,
    Finish,
    HeadPlanRead,
    HeadRead,
    Journal,
    LoadChanges,
    LoadContentAt,
    LoadDesired,
    Log,
    MarkersRead,
    Publish,
    PublishConflict,
    Published,
    ReadHead,
    ReadHeadPlan,
    ReadMarkers,
    ReadWatermark,
    Resolution,
    Resolve,
    Resolved,
    SetLastKnownGood,
    Step,
    WatermarkRead,
    WriteBatch,
    WriteDone,
)
from dnsplane.providers.base import Provider
from dnsplane.store.base import Freeze, JournalEntry, Store

log = logging.getLogger("dnsplane.runtime")

Resolver = Callable[[Sequence[EndpointKey]], dict[EndpointKey, Resolution]]


class Actor(Protocol):
    """Anything with a name and ``handle``: planner, enactor, collector, verifier."""

    name: str

    def handle(self, event: Event) -> Step: ...


class WriteGate:
    """Whether automated writes may leave the process (open) or not (shut by the operator's freeze),
    and how many that passed are still in flight. Thread-safe: writes pass from worker threads."""

    RETRY = 1.0  # seconds before an actor refused by a shut gate tries again

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._freeze: Freeze | None = None
        self._inflight = 0

    @property
    def freeze(self) -> Freeze | None:
        return self._freeze

    def set(self, freeze: Freeze | None) -> None:
        """Shut the gate for ``freeze`` (a write already past it finishes), or open it (None)."""
        with self._lock:
            self._freeze = freeze

    def quiet(self) -> bool:
        """Shut, and no write that passed before it shut is still in flight."""
        with self._lock:
            return self._freeze is not None and self._inflight == 0

    @contextlib.contextmanager
    def passing(self) -> Iterator[None]:
        """Let one write through, counted while it runs; ``Frozen`` when the gate is shut."""
        with self._lock:
            freeze = self._freeze
            if freeze is None:
                self._inflight += 1
        if freeze is not None:
            raise Frozen(by=freeze.by, reason=freeze.reason or "no reason given", retry_after=self.RETRY)
        try:
            yield
        finally:
            with self._lock:
                self._inflight -= 1


@dataclass
class Interpreter:
    store: Store
    provider: Provider
    resolver: Resolver | None = None
    gate: WriteGate = field(default_factory=WriteGate)  # open unless the runtime shuts it (a freeze)

    def run(self, actor_name: str, step: Step, now: float) -> Event | None:
        """Carry out ``step``'s effects in order, then its request; return the request's reply (None
        if it has none), or ``Failed`` as soon as a command raises."""
        one = self.one
        try:
            for cmd in step.effects:
                one(actor_name, cmd, now)
            req = step.request
            return None if req is None else one(actor_name, req, now)
        except Exception as err:  # every failure of a command is a Failed reply (I8)
            return failed(err, now)

    def one(self, actor: str, cmd: Command, now: float) -> Event | None:
        """Execute one command: a request returns its reply, an effect returns None."""
        handler = _HANDLERS.get(type(cmd))  # one dict lookup instead of a chain of isinstance checks
        if handler is None:
            handler = handler_for(type(cmd))
        return handler(self, actor, cmd, now)


def failed(err: BaseException, now: float) -> Failed:
    """The ``Failed`` reply for an error raised by a command (what ``Interpreter.run`` returns).

    A ``DnsplaneError`` says what to do next itself; any other exception is retryable (see the
    module docstring), named by its class so the log says what it was, its traceback at debug."""
    if isinstance(err, DnsplaneError):
        retry = err.retry_after if isinstance(err, Retryable) else 5.0
        return Failed(now, str(err), isinstance(err, Retryable), retry, unsent=isinstance(err, Frozen))
    if log.isEnabledFor(logging.DEBUG):
        text = "".join(traceback.format_exception(err))
        log.debug("unexpected %s in a command:\n%s", type(err).__name__, text)
    return Failed(now, f"{type(err).__name__}: {err}", True, 0.0)


# One handler per command type: (interpreter, actor, command, now) -> reply or None.
Handler = Callable[[Interpreter, str, Any, float], Event | None]


def _read_head(ex: Interpreter, actor: str, cmd: ReadHead, now: float) -> Event:
    store = ex.store
    head = store.head()
    lost = False
    at: float | None = None
    if cmd.known and cmd.known_at is not None:
        at = store.created_at(cmd.known)
        # another plan under the number, or none where no collect deleted one
        lost = at != cmd.known_at and (at is not None or cmd.known >= store.oldest_plan())
    if head == cmd.known and cmd.known_at is not None:  # the usual case: nothing new since its last round
        return HeadRead(now, head, at, lost)
    return HeadRead(now, head, store.created_at(head) if head else None, lost)


def _read_head_plan(ex: Interpreter, actor: str, cmd: ReadHeadPlan, now: float) -> Event:
    head = ex.store.head()
    return HeadPlanRead(now, head, ex.store.created_at(head) if head else None)


def _load_changes(ex: Interpreter, actor: str, cmd: LoadChanges, now: float) -> Event:
    return ChangesLoaded(now, ex.store.changed_between(cmd.after, cmd.upto))


def _read_markers(ex: Interpreter, actor: str, cmd: ReadMarkers, now: float) -> Event:
    observed = ex.provider.read_for_write(cmd.keys)
    if cmd.newer_than is None:
        return MarkersRead(now, observed)
    empty = [k for k in cmd.keys if (o := observed.get(k)) is None or (o.records is None and o.marker is None)]
    if not empty:
        return MarkersRead(now, observed)
    # After the provider read: a newer plan whose content was written, and then deleted by hand
    # before that read, is seen here
    changed = ex.store.changed_between(cmd.newer_than, EVERY_GENERATION)
    return MarkersRead(now, observed, {k: changed[k] for k in empty if k in changed})


def _load_content_at(ex: Interpreter, actor: str, cmd: LoadContentAt, now: float) -> Event:
    return ContentLoaded(now, ex.store.content_at(cmd.pairs))


@quick_init
@dataclass(frozen=True, slots=True)
class Fenced:
    """The writer's half of a ``WriteBatch``, read before its provider call (``fence_read``): the zone's
    write token (``None``: the batch has no fence, or the provider keeps none) and, for each write a newer
    plan made stale, the newest plan past the fence and the write's own generation that changed its
    endpoint."""

    token: str | None
    stale: dict[EndpointKey, Generation]


NOT_FENCED = Fenced(None, {})


def fence_read(store: Store, provider: Provider, cmd: WriteBatch) -> Fenced:
    """The store's half of ``cmd`` (see ``WriteBatch``), and the provider's write token read just before it:
    one provider read and one indexed store range read per batch (the changes after the fence: usually
    none).

    The token closes the window between this read and the provider call (docs/design.md, "The fence's
    window"): a plan published after the store read is written after the token read, and that write moves
    the token, so a write that carries it fails even when a person deletes the endpoint afterwards, or
    puts back the exact state the writer read."""
    fence = cmd.fence
    if fence is None:
        return NOT_FENCED
    token = provider.write_token()  # first: what the store shows below was published after it
    newer = store.changed_between(fence, EVERY_GENERATION)
    stale: dict[EndpointKey, Generation] = {}
    for w in cmd.writes if newer else ():
        found = newer.get(w.key)
        if found is not None and found.generation > max(fence, w.marker.generation):
            stale[w.key] = found.generation
    return Fenced(token, stale)


def _write_batch(ex: Interpreter, actor: str, cmd: WriteBatch, now: float, fenced: Fenced | None = None) -> Event:
    # The writer's half, then the provider's: here one thread call, the provider's request sent a few
    # milliseconds after the store read (the simulator passes ``fenced``, read when the request was sent, to
    # open that window); the token read before the store carries the write across it. Nothing of it under
    # a shut gate (the operator's freeze).
    with ex.gate.passing():
        if fenced is None:
            fenced = fence_read(ex.store, ex.provider, cmd)
        stale, token = fenced.stale, fenced.token
        writes = cmd.writes
        if token is not None:
            writes = tuple(Write(w.key, w.expect, w.records, w.marker, w.expect_records, token) for w in writes)
        if not stale:
            return WriteDone(now, ex.provider.apply(writes))
        sent = tuple(w for w in writes if w.key not in stale)
        results: list[WriteResult] = ex.provider.apply(sent) if sent else []
        refused = [Conflict(w.key, w.expect, newer=stale[w.key]) for w in writes if w.key in stale]
        return WriteDone(now, [*results, *refused])


def _load_desired(ex: Interpreter, actor: str, cmd: LoadDesired, now: float) -> Event:
    store = ex.store
    head = store.head()
    return DesiredLoaded(now, head, store.desired(None, head), store.health(),
                         store.created_at(head) if head else None)


def _publish(ex: Interpreter, actor: str, cmd: Publish, now: float) -> Event:
    gen = ex.store.publish(cmd.expect_head, cmd.changes, now, actor, cmd.expect_at)
    if gen is None:
        return PublishConflict(now)
    if cmd.health:  # the health this plan acted on; a crash before this line only loses the hint
        ex.store.save_health(dict(cmd.health))
    return Published(now, gen, now)


def _read_watermark(ex: Interpreter, actor: str, cmd: ReadWatermark, now: float) -> Event:
    store = ex.store
    return WatermarkRead(now, store.low_watermark(now), store.oldest_plan())


def _collect(ex: Interpreter, actor: str, cmd: Collect, now: float) -> Event:
    with ex.gate.passing():
        return Collected(now, ex.store.collect(cmd.watermark, now))


def _resolve(ex: Interpreter, actor: str, cmd: Resolve, now: float) -> Event:
    if ex.resolver is None:
        raise DnsplaneError("no resolver configured for the verifier")
    return Resolved(now, ex.resolver(cmd.keys))


def _begin(ex: Interpreter, actor: str, cmd: Begin, now: float) -> None:
    ex.store.begin(actor, cmd.generation, now)


def _finish(ex: Interpreter, actor: str, cmd: Finish, now: float) -> None:
    ex.store.finish(actor, cmd.generation, now)


def _advance_head(ex: Interpreter, actor: str, cmd: AdvanceHead, now: float) -> None:
    before = ex.store.head()
    after = ex.store.advance_head(cmd.at_least, now)
    # Warn only when the head really moved: a marker ahead of the verifier's snapshot is usually an
    # enactor's write of a plan published after the snapshot was loaded (the head is already past it).
    if after > before:
        log.warning("marker ahead of the store: head advanced past it",
                    extra={"fields": {"actor": actor, "from": before, "to": after}})


def _set_last_known_good(ex: Interpreter, actor: str, cmd: SetLastKnownGood, now: float) -> None:
    ex.store.set_last_known_good(cmd.generation)


def _journal(ex: Interpreter, actor: str, cmd: Journal, now: float) -> None:
    ex.store.record([JournalEntry(now, actor, k, action, b, a, d) for k, action, b, a, d in cmd.entries])


def _log(ex: Interpreter, actor: str, cmd: Log, now: float) -> None:
    log.log(logging.getLevelName(cmd.level.upper()), cmd.message, extra={"fields": cmd.fields})


def _unknown(ex: Interpreter, actor: str, cmd: object, now: float) -> None:
    # a command this interpreter does not carry out (the legacy design's, outside the simulator): the
    # step fails, so the actor hears back
    raise DnsplaneError(f"{type(cmd).__name__} is not a command this interpreter carries out")


_HANDLERS: dict[type, Handler] = {
    ReadHead: _read_head,
    ReadHeadPlan: _read_head_plan,
    LoadChanges: _load_changes,
    ReadMarkers: _read_markers,
    LoadContentAt: _load_content_at,
    WriteBatch: _write_batch,
    LoadDesired: _load_desired,
    Publish: _publish,
    ReadWatermark: _read_watermark,
    Collect: _collect,
    Resolve: _resolve,
    Begin: _begin,
    Finish: _finish,
    AdvanceHead: _advance_head,
    SetLastKnownGood: _set_last_known_good,
    Journal: _journal,
    Log: _log,
}


def handler_for(kind: type) -> Handler:
    """The handler of ``kind``, or of its nearest command base class (as ``isinstance`` would match)."""
    for base in kind.__mro__:
        handler = _HANDLERS.get(base)
        if handler is not None:
            return handler
    return _unknown


def handlers() -> dict[type, Handler]:
    """A copy of the command table, for executors that add or wrap commands (the simulator's)."""
    return dict(_HANDLERS)


def feed(actor: Actor, event: Event, interpreter: Interpreter, now: float) -> Event | None:
    """Feed one event to an actor and carry out its step; return the reply event."""
    return interpreter.run(actor.name, actor.handle(event), now)


def drain(actor: Actor, event: Event, interpreter: Interpreter, now: float, limit: int = 100_000) -> int:
    """Feed ``event`` and every reply until the actor asks nothing more. Returns steps taken."""
    steps = 0
    reply: Event | None = event
    while reply is not None and steps < limit:
        reply = feed(actor, reply, interpreter, now)
        steps += 1
    return steps
