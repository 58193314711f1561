"""The explorer's state space: a ``World`` (one state, as objects), its identity, its fork, its moves.

A ``World`` holds the production actors, a ``MemoryStore``, a ``MemoryProvider``, the monitor, each
actor's pending request, how far the scripted health changes went, the faults used and the
last-known-good. ``moves()`` lists what can happen next, as typed moves (``Deliver``, ``Tick``,
``HealthChange``, ``Crash``, ``RaiseInRequest`` and the five provider-side faults), each able to
``describe`` itself for a counterexample's text; ``apply(move)`` carries one out with the production
code (the actor's ``Step`` goes through the simulator's ``Interpreter``); ``fingerprint()`` is the
state's identity and ``fork()`` a successor to apply a move to (copy on write).

The fault moves carry the simulator's names (``dnsplane.sim.vocabulary``: a move's ``kind``).

What counts toward the identity, the reductions and why each keeps every violation: the docstring of
``dnsplane.sim.explore``. Which actor fields count is declared on the actors
(``dnsplane.protocol.identity``) and read by ``dnsplane.sim.identity``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, NamedTuple, cast

from dnsplane.execute import NOT_FENCED, fence_read
from dnsplane.model import Endpoint, EndpointKey, Generation
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.legacy import LegacyEnactor
from dnsplane.protocol.messages import (
    STORE_RESOURCES,
    AdvanceHead,
    Effect,
    Failed,
    HeadRead,
    HealthObserved,
    LoadChanges,
    LoadDesired,
    Publish,
    ReadHead,
    ReadWatermark,
    Request,
    Resource,
    SetLastKnownGood,
    WriteBatch,
)
from dnsplane.protocol.messages import Tick as TickEvent
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier
from dnsplane.providers.base import Provider
from dnsplane.providers.memory import MemoryProvider
from dnsplane.sim import vocabulary
from dnsplane.sim.identity import actor_part, copy_actor, copy_reply, monitor_part, reset_round
from dnsplane.sim.invariants import MAX_HEAD, Monitor
from dnsplane.sim.vocabulary import GARBLED
from dnsplane.sim.world import COMMANDS, ZONE, SentBatch, SimExecutor, fleet
from dnsplane.store.base import Store
from dnsplane.store.memory import MemoryStore


@dataclass(frozen=True)
class Config:
    protocol: str = "safe"
    enactors: int = 2
    endpoints: int = 2
    generations: int = 4
    faults: int = 0
    targets: int = 2
    reduce: bool = True  # partial-order reduction of ticks (see dnsplane/sim/explore.py); False: every order
    # reduction 8 (dnsplane/sim/explore.py): a reply whose handling is local to its actor is fed in the move
    # that ran its request; False: every reply is held until a move of its own (to check the reduction)
    merge_local: bool = True
    # the fence's window (issue 13): a write batch's writer half (the provider's write token, then the store's
    # fence) is a move of its own before its provider call, as the simulator sends it; False: one move, as
    # the runtime's single thread call looks from outside (about 2.5 times the states)
    fence_window: bool = False
    # the verifier's repair budget per round (``Verifier.max_repairs``, the runtime's ``--repair-rate``); 0: none
    max_repairs: int = 0


# -- moves -------------------------------------------------------------------------------------------
#
# NamedTuples, so that a move hashes and compares as fast as the plain tuple it is (the memoised search
# makes a dictionary key of one per transition). The last field, ``kind``, is the move's name (the
# simulator's fault vocabulary for faults): it keeps moves of different kinds with equal fields unequal.
# Do not pass it.

DELIVER, TICK, HEALTH = "deliver", "tick", "health"


class Deliver(NamedTuple):
    """The actor's pending request runs (its reply is then the actor's item in hand), or the reply in
    hand is fed to the actor (which carries out the effects it answers with, and may ask again)."""

    actor: str
    kind: str = DELIVER

    def describe(self, world: World) -> str:
        what = world.pending[self.actor]
        if type(what) is WriteBatch and world.config.fence_window and (sent := world.send(what)) is not None:
            return f"{self.actor}'s WriteBatch reads {_READ[sent.half]}"
        if type(what) is SentBatch and what.half:
            return f"{self.actor}'s WriteBatch reads {_READ[_OTHER[what.half]]}, and is sent"
        if type(what) is SentBatch:
            moved = ", its token moved since it was read" if what.moved else ""
            return f"{self.actor}'s WriteBatch reaches the provider{moved}"
        if isinstance(what, Request):
            return f"{self.actor}'s {type(what).__name__} runs"
        return f"{self.actor} receives {reply_text(what)}"


_READ = {"token": "the write token", "store": "the store's fence"}  # the writer's two reads (``SentBatch.half``)
_OTHER = {"token": "store", "store": "token"}


def reply_text(reply: object) -> str:
    """A reply in hand for a counterexample's text: its type and its plain fields, those at their default
    left out (``HeadRead(head=3)``)."""
    plain = [f"{f.name}={value!r}" for f in fields(reply)
             if f.name != "now" and type(value := getattr(reply, f.name)) in (int, str, bool)
             and value != f.default] if is_dataclass(reply) else []
    return f"{type(reply).__name__}({', '.join(plain)})" if plain else type(reply).__name__


class Tick(NamedTuple):
    """An idle actor's timer fires."""

    actor: str
    kind: str = TICK

    def describe(self, world: World) -> str:
        return f"{self.actor} ticks"


class HealthChange(NamedTuple):
    """The next scripted health change reaches the planner."""

    kind: str = HEALTH

    def describe(self, world: World) -> str:
        tid, ok = world.script[world.env]
        return f"health: {tid} {'up' if ok else 'down'}"


class Crash(NamedTuple):
    """The actor crashes and restarts empty, losing its pending request (or ``after`` it ran), or the
    reply it had in hand."""

    actor: str
    after: bool
    kind: str = vocabulary.CRASH

    def describe(self, world: World) -> str:
        what = world.pending.get(self.actor)
        if self.after:
            return f"{self.actor} crashes after its {type(what).__name__} ran"
        if what is not None and not isinstance(what, Request):
            return f"{self.actor} crashes with {reply_text(what)} in hand, and restarts"
        return f"{self.actor} crashes and restarts"


class RaiseInRequest(NamedTuple):
    """The actor's pending request raises a ``RuntimeError``, before it ran or ``after`` it took effect."""

    actor: str
    after: bool
    kind: str = vocabulary.REQUEST_EXCEPTION

    def describe(self, world: World) -> str:
        request = type(world.pending[self.actor]).__name__
        when = "after it took effect" if self.after else "before it ran"
        return f"{self.actor}'s {request} raises RuntimeError {when}"


class EmptyRecords(NamedTuple):
    """A human deletes an endpoint's records, keeping its marker."""

    key: EndpointKey
    kind: str = vocabulary.EMPTIED

    def describe(self, world: World) -> str:
        return f"a human empties {self.key.name}"


class DeleteEndpoint(NamedTuple):
    """A human deletes the endpoint whole, records and marker: "nothing" again, equal by value to what a
    first write expects (only with ``Config.fence_window``: the race the write token closes)."""

    key: EndpointKey
    kind: str = vocabulary.ENDPOINT_DELETED

    def describe(self, world: World) -> str:
        return f"a human deletes {self.key.name}'s records and marker"


class DeleteMarker(NamedTuple):
    """A human deletes an endpoint's marker, keeping its records."""

    key: EndpointKey
    kind: str = vocabulary.MARKER_DELETED

    def describe(self, world: World) -> str:
        return f"a human deletes {self.key.name}'s marker"


class GarbleMarker(NamedTuple):
    """A human writes ``g=GARBLED`` (out of range) into an endpoint's marker."""

    key: EndpointKey
    kind: str = vocabulary.MARKER_OUT_OF_RANGE

    def describe(self, world: World) -> str:
        return f"a human writes g={GARBLED} into {self.key.name}'s marker"


class LowerMarker(NamedTuple):
    """A human sets an endpoint's marker ``g=`` back to an older ``generation``, ``d=`` to its records'
    digest, the rest of the text (``p=``, ``o=``) kept: its seal breaks (the simulator's ``marker_stale``)."""

    key: EndpointKey
    generation: Generation
    kind: str = vocabulary.MARKER_STALE

    def describe(self, world: World) -> str:
        return f"a human sets {self.key.name}'s marker back to g={self.generation}"


class RaiseMarker(NamedTuple):
    """A human raises an endpoint's marker ``g=`` by one, to ``generation`` (in range: a plan that may not
    be published yet), the rest of the text kept: its seal breaks. No plan wrote it, so it is never a head
    (the verifier's marker-ahead rule takes only a sealed marker; ``check_head``'s published bound)."""

    key: EndpointKey
    generation: Generation
    kind: str = vocabulary.MARKER_RAISED

    def describe(self, world: World) -> str:
        return f"a human raises {self.key.name}'s marker to g={self.generation}"


class RejectWrites(NamedTuple):
    """The provider rejects every write of an endpoint from now on."""

    key: EndpointKey
    kind: str = vocabulary.REJECTED

    def describe(self, world: World) -> str:
        return f"the provider rejects every write of {self.key.name} from now on"


Move = (Deliver | Tick | HealthChange | Crash | RaiseInRequest
        | EmptyRecords | DeleteEndpoint | DeleteMarker | GarbleMarker | LowerMarker | RaiseMarker | RejectWrites)
ActorMove = Deliver | Tick | Crash | RaiseInRequest  # the moves that feed one actor (``.actor``)


def actor_faults(name: str, pending: object) -> list[Move]:
    """The faults that can strike actor ``name`` with this pending request (in ``moves()`` order)."""
    request = pending is not None and isinstance(pending, Request)
    out: list[Move] = []
    if request:
        out.append(Crash(name, True))
    if name != "planner":
        out.append(Crash(name, False))
    if request:
        out += [RaiseInRequest(name, False), RaiseInRequest(name, True)]
    return out


def provider_faults(provider: MemoryProvider, keys: Sequence[EndpointKey], whole: bool = False) -> list[Move]:
    """The faults a person or the provider can make at each endpoint (in ``moves()`` order); ``whole``: a
    deletion of an endpoint whole too (``Config.fence_window``)."""
    out: list[Move] = []
    rejects = provider.rejected()
    for key in keys:
        seen = provider.read([key])[key]
        if whole and seen.records is not None and seen.marker is not None:
            out.append(DeleteEndpoint(key))
        if seen.records is not None:
            out.append(EmptyRecords(key))
        if seen.marker is not None:
            out.append(DeleteMarker(key))
            if seen.marker.generation != GARBLED:
                out.append(GarbleMarker(key))
                # every older generation: one whose content the records hold again (A -> B -> A) passes
                # the enactor's store check; one at or above a round's snapshot, the verifier's diagnosis
                out += [LowerMarker(key, Generation(g)) for g in range(1, seen.marker.generation)]
                if seen.marker.generation < MAX_HEAD:  # one above: the head's marker raised past every plan
                    out.append(RaiseMarker(key, Generation(seen.marker.generation + 1)))
        if key not in rejects:
            out.append(RejectWrites(key))
    return out


def health_script(endpoints: Sequence[Endpoint], changes: int) -> list[tuple[str, bool]]:
    """Health changes that make ``changes`` new generations, content returning to an earlier value."""
    script: list[tuple[str, bool]] = []
    i = 0
    while len(script) < changes:
        ep = endpoints[i % len(endpoints)]
        tid = ep.targets[0].id
        script.append((tid, False))
        if len(script) < changes:
            script.append((tid, True))  # back to the earlier content: A -> B -> A
        i += 1
    return script


# Requests and effects that change the store or the provider (every other request only reads), from
# what each command class declares it writes (the journal is not part of a state: the explorer's
# interpreter keeps none).
_WRITES_STORE = frozenset(c for c in COMMANDS if c.WRITES & (STORE_RESOURCES - {Resource.JOURNAL}))
_WRITES_PROVIDER = frozenset(c for c in COMMANDS if Resource.PROVIDER in c.WRITES)
_ROWS_ONLY = frozenset(c for c in COMMANDS if {Resource.ROWS} == c.WRITES)  # only the in-flight and applied rows


# Effects that change no part of a state (the journal is not kept: ``journal=False``; a log line is
# nothing): a reply whose handling runs only these, and leaves the I3 reference ``working`` as it was, is
# local to its actor (reduction 8 in dnsplane/sim/explore.py).
_LOCAL_EFFECTS = frozenset(c for c in COMMANDS if issubclass(c, Effect)
                           and not (c.WRITES - {Resource.JOURNAL}) and not c.COLLECTS)


def _local(step: Any) -> bool:
    return all(type(c) in _LOCAL_EFFECTS for c in step.effects)


class _Noted:
    """A store or provider whose read ``fence_read`` makes is noted as ``name`` in ``calls``: which of the
    writer's two reads the code makes first."""

    def __init__(self, inner: object, name: str, calls: list[str]) -> None:
        self._inner, self._name, self._calls = inner, name, calls

    def __getattr__(self, attr: str) -> Any:
        if attr in ("write_token", "changed_between"):
            self._calls.append(self._name)
        return getattr(self._inner, attr)


def moved(sent: SentBatch) -> SentBatch:
    """``sent`` after an automated write moved the token it read."""
    return replace(sent, moved=True)


def in_flight(actor: Any, pending: object) -> int | None:
    """The generation an enactor is working on, as I3 counts it: its ``working``, unless it holds a
    ``Failed`` in hand (its next step is to handle it, which drops ``working`` and reads nothing: a
    ``Begin`` the store refused, a plan collected meanwhile, references nothing)."""
    working = getattr(actor, "working", None)
    return None if working is None or type(pending) is Failed else int(working)


class World:
    """One explorer state, and the transitions out of it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.endpoints = fleet(config.endpoints, config.targets)
        self.keys = [ep.key for ep in self.endpoints]
        self.store = MemoryStore()
        self.provider = MemoryProvider(ZONE)
        self.actors: dict[str, Any] = {"planner": self._fresh("planner")}
        for i in range(config.enactors):
            name = f"enactor-{i + 1}"
            self.actors[name] = (LegacyEnactor(name, ZONE, keep=1) if config.protocol == "legacy"
                                 else Enactor(name, ZONE))
        if config.protocol == "safe":
            self.actors["collector"] = Collector()
            self.actors["verifier"] = Verifier("verifier", max_repairs=config.max_repairs)
        self.table: dict[Any, int] = {}  # parts of fingerprints -> small numbers; shared by every state of a search
        self.ids: dict[str, int] = {}  # each part's number in ``table``, until the part changes
        self.owned: set[str] = {"store", "provider", "monitor"}  # parts this state may change in place
        self._ex: SimExecutor | None = None
        self.wrote_provider = False  # set by apply(): whether the move wrote the provider
        self.effects_ran: list[type] = []  # set by apply(): the types of the effects the move ran
        self.handled: object | None = None  # set by apply(): a reply the move ran for and fed at once (local)
        self.enactors = [n for n in self.actors if n.startswith("enactor")]
        self.pending: dict[str, object] = {}
        self.env = 0  # scripted health changes done
        self.faults = 0
        self.lkg = 0
        self.monitor = Monitor(ZONE, collect=True)
        self.script = health_script(self.endpoints, config.generations - 1)

    # -- copying and hashing --------------------------------------------------------------------

    def fork(self) -> World:
        """A successor to apply one move to. Copy on write: the actors, the store, the provider and
        the monitor are shared with this state until a move changes them (``_own_*``)."""
        new = copy.copy(self)
        new.actors = dict(self.actors)  # apply() copies the one actor a move changes
        new.ids = dict(self.ids)
        new.pending = dict(self.pending)
        new.owned = set()
        self.owned = set()  # shared now: neither may change them in place
        if self.monitor.violations:  # a state's violations are its own
            new._own_monitor()
        return new

    def with_parts(self, actors: dict[str, Any], pending: dict[str, object], store: MemoryStore,
                   provider: MemoryProvider, monitor: Monitor, env: int, faults: int, lkg: int) -> World:
        """A state of this configuration made of these parts, shared (a move copies what it changes)."""
        w = copy.copy(self)
        w.actors, w.pending = actors, pending
        w.store, w.provider, w.monitor = store, provider, monitor
        w.env, w.faults, w.lkg = env, faults, lkg
        w.ids, w.owned, w._ex, w.wrote_provider = {}, set(), None, False
        return w

    def _own_store(self, rows_only: bool = False) -> MemoryStore:
        """``rows_only``: the move changes only the enactors' in-flight and applied rows, which are
        each enactor's part of the fingerprint, not the store's."""
        if "store" not in self.owned:
            self.store = self.store.fork()
            self.owned.add("store")
            self._ex = None
        if not rows_only:
            self.ids.pop("store", None)
        return self.store

    def _own_provider(self) -> MemoryProvider:
        if "provider" not in self.owned:
            self.provider = self.provider.fork()
            self.owned.add("provider")
            self._ex = None
        self.ids.pop("provider", None)
        return self.provider

    def _own_monitor(self) -> Monitor:
        if "monitor" not in self.owned:
            old = self.monitor
            mon = self.monitor = copy.copy(old)
            self._ex = None
            mon.content = {k: list(v) for k, v in old.content.items()}
            mon.highest_marker = dict(old.highest_marker)
            mon.highest_served = dict(old.highest_served)
            mon.published = set(old.published)
            mon.exempt_until = dict(old.exempt_until)
            mon.unsealed_by_hand = set(old.unsealed_by_hand)
            mon.violations = []
            mon.seen = set()
            self.owned.add("monitor")
        self.ids.pop("monitor", None)
        return self.monitor

    def fingerprint(self) -> tuple[int, ...]:
        """The state's identity: what can influence a later transition or check, nothing else.

        Each part (an actor with its pending request, the store, the provider, the monitor's
        history) is interned to a small number once, when it changes (``ids``), so a fingerprint
        is a short tuple of numbers: cheap to hash and to keep for millions of states.

        Symmetry: the enactors run the same code and nothing tells them apart but their names, so
        each enactor contributes (its state, its pending request, its in-flight and applied rows in
        the store) and these are sorted: two states that differ only by swapping the enactors have
        one fingerprint.
        """
        ids = self.ids
        sid = ids.get("store")
        if sid is None:
            sid = ids["store"] = self._intern(self.store_part())
        pid = ids.get("provider")
        if pid is None:
            pid = ids["provider"] = self._intern(self.provider_part())
        mid = ids.get("monitor")
        if mid is None:
            mid = ids["monitor"] = self._intern(monitor_part(self.monitor))
        pending = self.pending
        rows = dict(zip(self.enactors, self.store.actor_rows(self.enactors), strict=True))
        out = [sid, pid, mid, self.env, self.faults, self.lkg]
        enactors = []
        for name, actor in self.actors.items():
            aid = ids.get(name)
            if aid is None:
                aid = ids[name] = self._intern(actor_part(actor, pending.get(name)))
            if name in rows:
                enactors.append(self._intern((aid, *rows[name])))
            else:
                out.append(aid)
        enactors.sort()
        out.extend(enactors)
        return tuple(out)

    def store_part(self) -> tuple[Any, ...]:
        """The store's part of the identity: head, rows, last-known-good, the health kept for a restarted
        planner (it starts from it) — not the enactors' own rows; the plans only for legacy, which reads them;
        the oldest plan kept, which a ``Begin`` reads (the store refuses a collected generation: with reply
        latency an enactor can begin a generation read before a collect)."""
        oldest = min((p.generation for p in self.store.plans()), default=None)
        return (*self.store.fingerprint(with_plans=self.config.protocol == "legacy"), oldest)

    def provider_part(self) -> tuple[Any, ...]:
        rejects = self.provider.rejected()
        return (tuple(sorted((k, o.records.digest if o.records else None, o.marker)
                             for k, o in self.provider.read_all().items())),
                tuple(sorted(rejects)) if rejects else ())

    def _intern(self, part: Any) -> int:
        table = self.table
        n = table.get(part)
        if n is None:
            n = table[part] = len(table)
        return n

    # -- transitions ------------------------------------------------------------------------------

    def moves(self) -> Iterator[Move]:
        for name in self.actors:
            if name in self.pending:
                yield Deliver(name)
            elif not getattr(self.actors[name], "busy", False):
                yield Tick(name)
        if self.env < len(self.script):
            yield HealthChange()
        if self.faults < self.config.faults:
            for name in self.actors:
                yield from actor_faults(name, self.pending.get(name))
            yield from provider_faults(self.provider, self.keys, self.config.fence_window)

    def reduced_moves(self) -> list[Move]:
        """``moves()``, or only the one move reductions 4 to 6 force, less self-loops (dnsplane/sim/explore.py)."""
        if self.config.reduce and self.faults >= self.config.faults:
            forced = self.forced()
            if forced is not None:
                return [forced]
            return [move for move in self.moves() if not self._returns_here(move)]
        return list(self.moves())

    def forced(self) -> Move | None:
        """The one move reductions 4 to 6 force from this state, if any."""
        if self.config.reduce and self.faults >= self.config.faults:
            for name, actor in self.actors.items():
                if name != "planner" and name not in self.pending and not actor.busy:
                    return Tick(name)
            for name in self.actors:
                what = self.pending.get(name)
                if type(what) is LoadChanges and self._stable_read(name, what):
                    return Deliver(name)
            planner = self.actors["planner"]
            planner_idle = "planner" not in self.pending and not planner.busy and planner.synced and not planner.dirty
            if planner_idle and self.env < len(self.script):
                return HealthChange()
            if planner_idle and self.config.protocol == "safe":  # the head is final (reduction 6)
                head = self.store.head()
                for name in self.actors:
                    what = self.pending.get(name)
                    kind = type(what)
                    if (kind is LoadDesired and name == "verifier") or (
                            kind is ReadHead and head > self.actors[name].applied_upto) or (
                            isinstance(what, HeadRead) and what.head == head > self.actors[name].applied_upto):
                        return Deliver(name)
        return None

    def _returns_here(self, move: Move) -> bool:
        """Whether ``move``, with the forced tick after it, leads back to this very state (a self-loop:
        leaving it out loses no state). The planner's tick with nothing to publish; an enactor's
        ``ReadHead`` answered with a head it already applied; the collector's ``ReadWatermark``
        answered with a watermark it already collected below."""
        if type(move) is Tick:
            planner = self.actors["planner"]
            return move.actor == "planner" and planner.synced and not planner.dirty
        if type(move) is not Deliver or not self.config.merge_local:  # a reply held: the move changes the item
            return False
        name = move.actor
        kind = type(self.pending[name])
        actor = self.actors[name]
        if kind is ReadHead and type(actor) is Enactor:
            return self.store.head() <= actor.applied_upto
        if kind is ReadWatermark and type(actor) is Collector:
            w = self.store.low_watermark(0.0)
            return w <= actor.collected_below and self.store.oldest_plan() >= w
        return False

    def _stable_read(self, name: str, what: LoadChanges) -> bool:
        """Whether no other move can change what ``what`` returns (reduction 5 in dnsplane/sim/explore.py):
        the plans it reads are at or below the head, and the enactor's own in-flight row, which only it
        removes, holds the collector's watermark at or below ``upto``."""
        inflight = self.store.actor_rows([name])[0][0]
        return (type(self.actors[name]) is Enactor and inflight is not None and inflight >= what.upto
                and what.upto <= self.store.head())

    def settle(self) -> list[str]:
        """Apply forced moves (``forced``) until none is left; what each was, in order.

        Every state that the search keeps is settled, so a forced move and the states in between
        (an actor idle, a health change not yet seen) never become states of their own.
        """
        done: list[str] = []
        while True:
            move = self.forced()
            if move is None:
                return done
            done.append(self.describe_and_apply(move))
            if type(move) is Tick and move.actor not in self.pending:
                if any(v.short == "I8" and v.endpoint == move.actor for v in self.monitor.violations):
                    return done  # its own code raised on the tick (I8): forcing it again would raise again
                raise AssertionError(f"tick reduction: {move.actor}'s tick did not leave it waiting on a request")

    def describe_and_apply(self, move: Move) -> str:
        """``apply(move)``, and the move's text for a counterexample (with the reply it fed at once)."""
        label = move.describe(self)
        self.apply(move)
        if self.handled is not None:
            label += f", and {getattr(move, 'actor', '?')} receives {reply_text(self.handled)}"
        return label

    def apply(self, move: Move) -> None:
        """One move. The parts it writes are copied first (``_own_*``); the invariants are checked
        again only when the provider changed or plans were deleted: with the provider as it was,
        every check passed before and still passes (a new plan only adds history above every marker)."""
        self.wrote_provider = deleted = False
        self.effects_ran = []
        self.handled = None
        changed = "planner" if type(move) is HealthChange else getattr(move, "actor", None)
        if changed is not None:
            self.actors[changed] = copy_actor(self.actors[changed])
            self.ids.pop(changed, None)
        token = self.provider.write_token() if self.config.fence_window else None
        match move:
            case Deliver(actor=name):
                what = self.pending.pop(name)
                sent = self.send(what) if type(what) is WriteBatch and self.config.fence_window else None
                if sent is not None:  # the first read of its writer's half: the second and the call are later moves
                    self.pending[name] = sent
                elif type(what) is SentBatch and what.half:
                    self.pending[name] = self.read_second(what)
                elif isinstance(what, Request):
                    self._reply(name, self._request(name, what))
                    deleted = what.COLLECTS
                else:
                    self._feed(name, copy_reply(what))
            case Tick(actor=name):
                self._feed(name, TickEvent(0.0))
            case HealthChange():
                tid, ok = self.script[self.env]
                self.env += 1
                self._feed("planner", HealthObserved(0.0, tid, ok))
            case Crash(actor=name, after=after):
                self.faults += 1
                what = self.pending.pop(name, None)
                if after and isinstance(what, Request):
                    self._request(name, what)
                    deleted = what.COLLECTS
                self.actors[name] = self._fresh(name)
            case RaiseInRequest(actor=name, after=after):
                self.faults += 1
                what = self.pending.pop(name)
                reply = self._request(name, what, raises="after" if after else "before")
                deleted = after and isinstance(what, Request) and what.COLLECTS
                if reply is not None:  # None: the exception escaped the interpreter; no reply comes (I8)
                    self._reply(name, reply)
            case EmptyRecords(key=key):
                self.faults += 1
                provider = self._own_provider()
                seen = provider.read([key])[key]
                self._own_monitor().exempt(key, float("inf"))
                provider.hand_edit(key, None, seen.marker)
                self.wrote_provider = True
            case DeleteEndpoint(key=key):
                self.faults += 1
                provider = self._own_provider()
                monitor = self._own_monitor()
                monitor.exempt(key, float("inf"))  # as EmptyRecords: I1's bound needs a clock the explorer has not
                monitor.hand_edited(key, None)
                provider.hand_edit(key, None, None)
                self.wrote_provider = True
            case DeleteMarker(key=key):
                self.faults += 1
                provider = self._own_provider()
                seen = provider.read([key])[key]
                self._own_monitor().hand_edited(key, None)
                provider.hand_edit(key, seen.records, None)
                self.wrote_provider = True
            case LowerMarker(key=key, generation=generation):  # the monitor's I2 baseline restarts there
                self.faults += 1
                provider = self._own_provider()
                seen = provider.read([key])[key]
                assert seen.marker is not None
                digest = seen.marker.digest if seen.records is None else seen.records.digest
                self._own_monitor().hand_edited(key, int(generation))
                provider.hand_edit(key, seen.records, replace(seen.marker, generation=generation, digest=digest))
                self.wrote_provider = True
            case RaiseMarker(key=key, generation=generation):  # unsealed: no I2 baseline (the monitor's check)
                self.faults += 1
                provider = self._own_provider()
                seen = provider.read([key])[key]
                assert seen.marker is not None
                provider.hand_edit(key, seen.records, replace(seen.marker, generation=generation))
                self.wrote_provider = True
            case RejectWrites(key=key):  # changes no record: no check's verdict changes
                self.faults += 1
                self._own_provider().reject(key, "simulated: the server refuses this endpoint")
            case GarbleMarker(key=key):  # the rest of the marker kept (the monitor's I2 baseline too: not a generation)
                self.faults += 1
                provider = self._own_provider()
                seen = provider.read([key])[key]
                assert seen.marker is not None
                provider.hand_edit(key, seen.records, replace(seen.marker, generation=GARBLED))
                self.wrote_provider = True
        if token is not None and self.wrote_provider and self.provider.write_token() != token:
            self._token_moved(changed)
        if changed is not None:
            actor = self.actors[changed]
            if actor.busy and changed not in self.pending:  # no reply will come: it never runs again
                self._own_monitor().wedged(changed, f"{changed} is busy with no request outstanding after "
                                                    f"{move.kind}: it ignores every tick and never runs again")
            reset_round(actor, self.pending.get(changed))
        if self.wrote_provider or deleted:
            monitor = self._own_monitor()
            monitor.check(self.provider.read(self.keys))  # read, not read_all: an emptied key must show
            if deleted:
                monitor.check_references(self.referenced(), self._digest)

    def send(self, what: WriteBatch) -> SentBatch | None:
        """The first of the two reads of ``what``'s writer's half (``execute.fence_read``: the provider's write
        token and the store's fence, in the order the code makes them), as a move of its own: in the runtime
        they are two calls, and another thread's write can fall between them. ``read_second`` makes the
        other; None when there is no half (no fence)."""
        calls: list[str] = []
        fenced = fence_read(cast(Store, _Noted(self.store, "store", calls)),
                            cast(Provider, _Noted(self.provider, "token", calls)), what)
        if fenced is NOT_FENCED:
            return None
        if calls[0] == "token":
            return SentBatch(what, (), fenced.token is not None, half="token")
        return SentBatch(what, tuple(sorted(fenced.stale.items())), False, half="store")

    def read_second(self, sent: SentBatch) -> SentBatch:
        """The other read of ``sent``'s writer's half, now (``fence_read`` reads only: run again, its value
        of this read is what it reads now): the request left for the provider's call."""
        fenced = fence_read(self.store, self.provider, sent.request)
        if sent.half == "token":
            return replace(sent, stale=tuple(sorted(fenced.stale.items())), half="")
        return replace(sent, has_token=fenced.token is not None, half="")

    def _token_moved(self, mover: str | None) -> None:
        """An automated write moved the provider's write token: every other actor's batch sent with the
        token read before now carries a token the provider no longer has."""
        for name, what in self.pending.items():
            if name != mover and type(what) is SentBatch and what.has_token and not what.moved:
                self.pending[name] = moved(what)
                self.ids.pop(name, None)

    def _executor(self) -> SimExecutor:
        """An interpreter on this state's store, provider and monitor (kept until one is copied)."""
        ex = self._ex
        if ex is None:
            ex = self._ex = SimExecutor(self.store, self.provider, on_publish=self.monitor.on_publish,
                                        journal=False)
        return ex

    def _request(self, name: str, what: Any, raises: str = "") -> Any:
        """Run ``what``; with ``raises`` ("before" or "after" it took effect), it raises a RuntimeError
        there, and the reply is what the interpreter makes of that (None: it escaped)."""
        if type(what) is SentBatch and what.half:  # cut off after its call: both reads were made first
            what = self.read_second(what)
        kind = type(what)
        if raises != "before":
            if kind in _WRITES_STORE:
                self._own_store()
            if kind in _WRITES_PROVIDER:
                self._own_provider()
                self.wrote_provider = True
            if kind is Publish:
                self._own_monitor()  # the monitor keeps the history of published content
        ex = self._executor()
        if not raises:
            return ex.request(name, what, 0.0)
        ex.armed[name] = (raises, "RuntimeError")
        try:
            return ex.request(name, what, 0.0)
        except Exception:  # escaped ``Interpreter.run``: the runtime's loop logged it, the actor hears nothing
            return None
        finally:
            ex.armed.pop(name, None)

    def _fresh(self, name: str) -> Any:
        if name == "planner":
            # its head check is a read driven by time, and the explorer's clock stands still: off (the store
            # put back to a backup that it is for is the simulator's fault, ``store_rollback``)
            return Planner("planner", ZONE, self.endpoints, head_check=0.0)
        if name == "collector":
            return Collector()
        if name == "verifier":
            return Verifier("verifier", max_repairs=self.config.max_repairs)
        if self.config.protocol == "legacy":
            return LegacyEnactor(name, ZONE, keep=1)
        return Enactor(name, ZONE)

    def _reply(self, name: str, reply: Any) -> None:
        """A request of ``name`` ran and answered ``reply``: it becomes the actor's item in hand, fed by a
        later ``Deliver`` (reply latency), unless handling it is local (reduction 8 in
        dnsplane/sim/explore.py): then it is fed now, in the same move."""
        if self.config.merge_local:
            actor = self.actors[name]  # this state's own copy (``apply``)
            trial = copy_actor(actor)
            try:
                step = trial.handle(copy_reply(reply))
            except Exception:  # a bug in the actor: held, so that the Deliver that feeds it reports it (I8)
                step = None
            if step is not None and _local(step) and in_flight(trial, step.request) == in_flight(actor, reply):
                self.actors[name] = trial
                self.handled = reply
                self._run_step(name, step)
                return
        self.pending[name] = reply

    def _feed(self, name: str, event: Any) -> None:
        try:
            step = self.actors[name].handle(event)
        except Exception as err:  # a bug in the actor's own code (I8), reported with the exception
            # The actor is left as the exception left it (the runtime's recovery, a Failed or a reset, is
            # not followed): a state after a recovery may be one seen before, where the search would not
            # look at this move's finding again.
            self._own_monitor().raised(name, event, err)
            return
        self._run_step(name, step)

    def _run_step(self, name: str, step: Any) -> None:
        effects, request = step.effects, step.request
        if not effects and request is None:
            return
        failed = None
        self.effects_ran = [type(c) for c in effects]
        if effects:
            for c in effects:
                kind = type(c)
                if kind in _WRITES_STORE:
                    self._own_store(rows_only=kind in _ROWS_ONLY)
            failed = self._executor().effects(name, effects, 0.0)
            if SetLastKnownGood in self.effects_ran:  # as the store took it (it refuses a collected generation)
                lkg = self.store.fingerprint()[3]
                self.lkg = lkg if isinstance(lkg, int) else 0
            if AdvanceHead in self.effects_ran and self.store.head() > (published := self._published()):
                self._own_monitor().check_head(int(self.store.head()), published)
        if failed is not None:
            self.pending[name] = failed
        elif request is not None:
            self.pending[name] = request

    def referenced(self) -> list[tuple[str, int, EndpointKey | None]]:
        refs: list[tuple[str, int, EndpointKey | None]] = []
        for name, actor in self.actors.items():
            working = in_flight(actor, self.pending.get(name))
            if name.startswith("enactor") and working is not None:
                refs.append((f"{name} in flight", int(working), None))
        for key, seen in self.provider.read_all().items():
            marker = seen.marker  # a person's g= names no plan: garbled, or set back (its seal broken)
            if marker is not None and marker.generation != GARBLED and (not marker.prev or marker.sealed()):
                refs.append((f"the marker of {key}", int(marker.generation), key))
        if self.lkg:
            refs.append(("the verifier's last-known-good", self.lkg, None))
        return refs

    def _published(self) -> int:
        """The highest generation the planner published: the newest change row of any key (``collect``
        keeps each key's newest row). From the store, not the monitor: an ``AdvanceHead`` reads only
        the store (the memo keys its effects by the parts they read)."""
        rows = self.store.fingerprint()[2]
        assert isinstance(rows, tuple)
        return max((int(gens[-1]) for _, gens, _ in rows if gens), default=0)

    def _digest(self, key: EndpointKey, g: int) -> str | None:
        d = self.store.desired([key], Generation(g)).get(key)
        return d.records.digest if d else None
