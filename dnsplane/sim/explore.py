"""The explorer: every interleaving of a small configuration, breadth first, with state hashing.

Where the simulator samples delivery orders with a seeded scheduler, the
explorer enumerates them all. A state is the actors' state, the store's, the
provider's, each actor's pending completion (its outstanding request), how far
the scripted health changes went and how many faults were used. From a state the
transitions are:

- deliver any actor's pending completion (run its request against the store or
  provider, feed the reply to the actor, apply the effects it returns at once);
- tick any idle actor;
- the next scripted health change (it makes the planner publish a new
  generation, up to ``generations``; the script includes content returning to
  an earlier value, A → B → A);
- when ``faults`` > 0, a fault: an actor crashes (losing its pending request, or
  after it ran — e.g. a write the provider acknowledged) and restarts empty; an
  actor's pending request raises an exception that is not a ``DnsplaneError``
  (a ``RuntimeError``; before it ran, or after it took effect), which the
  runtime's ``Executor.run`` turns into a ``Failed`` reply the actor handles; or
  a human empties an endpoint's records, deletes its marker, or writes its
  marker's ``g=`` out of range (``2**63 - 1``, as a provider that keeps markers as
  columns holds it; as TXT text ``Marker.from_text`` reads it as no marker, which
  deleting it covers); or the provider starts to reject every write of an endpoint
  (``Rejected``: a CNAME at the name, a record set too big for a message), for good.

Every new state is checked for I1, I2, I5 (on the provider) and, after a step
that deleted plans, I3 (references computed from actor state); after every move
of an actor, I8: an actor left busy with no request outstanding never runs
again (an exception that escaped the executor, or a ``Failed`` it ignored). Breadth first,
so the first violation found comes with a shortest path to it.

Time does not pass in the explorer (leases never expire): it explores orders,
not durations. Liveness (I4, I6) is the simulator's job.

Cost. The search itself runs in ``dnsplane.sim.search``: a state is kept as its
identity (``World.fingerprint``: a short tuple of part numbers) and each move is
computed once per distinct value of what it reads (the mover, and the parts its
request and effects read: the store's head for ``ReadHead``, the provider for
``ReadMarkers``, ...), on a ``World`` built from each part's representative;
every later occurrence is a dictionary lookup. The default configuration's 6
million transitions need about 40,000 runs of the production code. That module's
docstring says why reusing a move's result across states is exact, and
tests/sim/test_explore.py checks it: from every state of small configurations,
each memoised move gives what running the code again gives, and the counts
equal those of a search over ``World`` objects along real paths.

A ``World`` is copied only where a move writes (copy on write): records,
markers, plans, endpoints and messages are frozen and shared; an actor is copied
when a move feeds it, the store, the provider and the monitor when a move writes
them. The invariants are checked again after a move that wrote the provider or
deleted plans: with the provider unchanged every check that passed before still
passes (a new plan only adds history above every marker), and every violation
appears at such a move.

Reductions, and why each keeps every violation that exists
----------------------------------------------------------

A violation is a property of the provider's records and markers (I1, I2, I5),
of the store's rows at referenced generations (I3), and of the monitor's
history. Each reduction below only merges states, or skips orders, that agree
on all of these and on every future the full search would explore from them.

1. *State identity leaves out what cannot influence the future.* Counters and
   statistics (``stats``, ``deleted``, ``total``), logs, the journal (not even
   written: ``journal=False``), timestamps (always 0), plan metadata, and the
   verifier's diagnostics (``last_problems``, ``expected_before``) are written
   but never read by a decision. Two states that differ only there have the
   same successors and the same checks.
2. *Dead fields.* While an actor is idle or waiting on the request that starts
   its round (enactor: ``ReadHead``; legacy enactor and verifier:
   ``LoadDesired``; collector: ``ReadWatermark``) the fields that the previous
   round left (``DEAD``: e.g. the enactor's ``sent``, the verifier's ``desired``
   snapshot and ``head``, the collector's ``asked``) are overwritten by every
   path before any read, so they are left out of the fingerprint (classic
   dead-variable reduction: the merged states are bisimilar), and set back to
   their defaults when the actor enters that phase (``_reset_dead``), so that
   what the previous round left does not tell states apart later either.
3. *Symmetry of the enactors.* They run the same code with the same
   configuration; their names appear only as keys of their own store rows
   (in flight, applied), and the store uses those rows symmetrically (min/max
   for the watermark). Each enactor contributes (state, pending request, its
   store rows) and the contributions are sorted, so swapped states are one
   state. A path is recorded from the state actually reached, so paths stay
   real.
4. *Partial-order reduction of local moves* (4 to 6 only once no fault is left to
   inject: a crash of the ticked actor would not commute with its tick). A tick
   of an idle enactor, collector or verifier changes only that actor (it
   becomes busy with one pending request; no effect, no store or provider
   access), no other move reads or changes that actor's state, nothing can
   disable it, and no invariant looks at it (I3's references are an
   enactor's ``working`` generation, which a tick does not set). So it commutes
   with every move of the others, and exploring only it from such a state loses
   no reachable combination of the others' states (a persistent set of one).
   The same holds for the next health change while the planner is idle, in
   sync and has nothing left to publish (then its own tick is a no-op; the
   health change touches only the planner's health table; the planner's later
   tick, which publishes, is still interleaved freely). Every tick turns an idle
   actor busy and every health change advances the script, so no cycle is made
   of forced moves only (the cycle proviso holds). Forced moves are applied to
   closure (``settle``): the search keeps only settled states; invariants are
   still checked after each single move that could change their verdict.
5. *Stable reads.* An enactor's ``LoadChanges(after, upto)`` is forced once
   its in-flight row (written by the ``Begin`` that came with the request) is
   at or above ``upto`` and ``upto`` is at or below the head. Then no other move
   changes its reply: plans are only added above the head, and the collector
   deletes only rows older than each endpoint's newest row at or below the
   watermark, which that in-flight row (removed only by this enactor) holds at
   or below ``upto``; the newest row at or below ``upto`` of every endpoint that
   changed in the range is kept, so the reply is the same. The reply changes
   only the enactor's own state and leaves ``working`` (an I3 reference) as it
   was, so the move is invisible to every check, commutes with every move of
   the others, and nothing disables it: a persistent set of one, like a tick.
   The store's collect is conditional on the watermark, so a collector that
   read a higher watermark before the ``Begin`` is refused.

6. *Reads of a final head.* Once the planner has seen the whole health script
   and is idle, in sync, with nothing to publish, the head never moves again
   (only the planner publishes; the verifier's ``AdvanceHead`` names a marker,
   and every marker was written from a head already read, so it is a no-op;
   a marker a human garbled to ``g=2**63-1`` is out of range, which the verifier
   never takes for a head; were it taken, the check after that ``AdvanceHead``
   itself reports it, before any reduced move).
   Then the verifier's ``LoadDesired`` is a stable read: the head, and each
   endpoint's newest row at or below it, which the collector keeps (its
   watermark is at most the newest applied generation, so at most the head);
   the reply changes only the verifier. So is an enactor's ``ReadHead`` when
   the head is past what it applied (so the reply starts a round; a reply that
   leaves it idle would make a cycle of forced moves): its ``Begin`` at the
   head cannot lower the watermark, now or later (every part of the minimum
   is at most the head), so the collector sees the same; its ``working``
   becomes the head, whose content every endpoint keeps (its newest row).

7. *Self-loops* are left out: a move that, with the forced tick after it,
   leads back to the same state (``_returns_here``) adds no state.

Checked by tests/sim/test_explore.py: on small configurations the reduced and
the full search reach the same provider/store states and the same violations.
``Config(reduce=False)`` turns 4 to 7 off (1–3 are exact).

Because forced ticks may come earlier than needed, a path in the reduced graph
can be longer than the shortest one: when the reduced search finds the
violation it looks for, the search is run again over every order to report the
truly shortest path (legacy default: 18 steps).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from typing import Any

from dnsplane.model import EndpointKey, Generation, RecordSet
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.legacy import LegacyEnactor
from dnsplane.protocol.messages import (
    STORE_RESOURCES,
    AdvanceHead,
    HealthObserved,
    LoadChanges,
    LoadDesired,
    Publish,
    ReadHead,
    ReadWatermark,
    Request,
    Resource,
    SetLastKnownGood,
    Tick,
)
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier
from dnsplane.providers.memory import MemoryProvider
from dnsplane.sim.invariants import MAX_HEAD, Monitor, Violation
from dnsplane.sim.world import COMMANDS, GARBLED, HUMAN_FAULTS, ZONE, SimExecutor, fleet
from dnsplane.store.memory import MemoryStore

SKIP = frozenset({"stats", "deleted", "endpoints", "by_target", "by_key", "name", "zone", "batch_size", "keep",
                  "total", "last_problems", "expected_before", "last_seen", "last_detail"})


@dataclass(frozen=True)
class Config:
    protocol: str = "safe"
    enactors: int = 2
    endpoints: int = 2
    generations: int = 4
    faults: int = 0
    targets: int = 2
    reduce: bool = True  # partial-order reduction of ticks (see the module docstring); False: every order


@dataclass
class Report:
    config: Config
    states: int
    transitions: int
    elapsed: float
    complete: bool
    violation: Violation | None
    path: list[str]

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.config.protocol, "states": self.states, "transitions": self.transitions,
            "elapsed_s": round(self.elapsed, 3), "complete": self.complete,
            "violation": self.violation.to_json() if self.violation else None, "path": self.path,
        }


_SHARED = frozenset({"endpoints", "by_target", "by_key", "name", "zone", "batch_size", "keep"})


def _key_sort(item: tuple[Any, Any]) -> Any:
    return item[0]


def _canon(value: Any) -> Any:
    t = type(value)
    if t is RecordSet:  # before the frozen-dataclass fast path, which ``_copy`` may have taught RecordSet
        return value.digest
    if _IMMUTABLE.get(t) and t is not tuple and t is not frozenset:  # atoms and frozen dataclasses
        return value
    if t is dict:
        items = [(k, _canon(v)) for k, v in value.items()]
        try:
            items.sort(key=_key_sort)
        except TypeError:
            items.sort(key=repr)
        return tuple(items)
    if t is list or t is tuple:
        return tuple(_canon(v) for v in value)
    if t is set or t is frozenset:
        return frozenset(_canon(v) for v in value)
    if _immutable(t):
        return value
    if is_dataclass(value):
        return (t.__name__, *(_canon(v) for k, v in value.__dict__.items() if k not in SKIP))
    return value


# Dead fields: while an actor is idle or waiting on the request that starts its round, these fields
# hold what the previous round left; every path overwrites them before reading them again, so they
# are not part of the state's identity (see "Dead fields" in the module docstring).
DEAD: dict[str, tuple[type, frozenset[str]]] = {
    "Enactor": (ReadHead, SKIP | {"sent", "in_batch", "unchecked"}),
    "LegacyEnactor": (LoadDesired, SKIP | {"plan", "queue", "working"}),
    "Verifier": (LoadDesired, SKIP | {"head", "desired", "queue", "all_right"}),
    "Collector": (ReadWatermark, SKIP | {"asked"}),
}


def _reset_dead(actor: Any, pending: object) -> None:
    """Give an actor that just entered its dead phase the defaults of its dead fields (it is this
    state's own copy). They are overwritten before any read (reduction 2), so this changes no
    future; it makes the identity canonical once the actor leaves the phase and the fields count
    again, instead of carrying whatever the previous round left."""
    dead = DEAD.get(type(actor).__name__)
    if dead is None or not ((pending is None and not actor.busy) or type(pending) is dead[0]):
        return
    defaults = _DEFAULTS.get(type(actor))
    if defaults is None:
        defaults = _DEFAULTS[type(actor)] = tuple(
            (f.name, f.default_factory if f.default_factory is not MISSING else _constant(f.default))
            for f in fields(actor) if f.name in dead[1] and f.name not in SKIP)
    for name, make in defaults:
        setattr(actor, name, make())


_DEFAULTS: dict[type, tuple[tuple[str, Callable[[], Any]], ...]] = {}


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value
_FIELDS: dict[tuple[type, bool], tuple[str, ...]] = {}  # (actor class, dead fields left out?) -> fields


def actor_part(actor: Any, pending: object) -> tuple[Any, ...]:
    """An actor's part of the identity: its live fields and its pending request."""
    return (_actor_fp(actor, pending), None if pending is None else _canon(pending))


def monitor_part(mon: Monitor) -> tuple[Any, ...]:
    """The monitor's part: what later checks read (the content history too, so that two states with
    one identity judge every future write alike)."""
    return (tuple(sorted(mon.highest_served.items())), tuple(sorted(mon.exempt_until)),
            tuple(sorted((k, tuple(v)) for k, v in mon.content.items())),
            tuple(sorted(mon.highest_marker.items())), tuple(sorted(mon.published)))


def _actor_fp(actor: Any, pending: object = None) -> tuple[Any, ...]:
    t = type(actor)
    name = t.__name__
    dead = DEAD.get(name)
    is_dead = dead is not None and ((pending is None and not actor.busy) or type(pending) is dead[0])
    fields = _FIELDS.get((t, is_dead))
    if fields is None:
        skip = dead[1] if is_dead and dead is not None else SKIP
        fields = _FIELDS[(t, is_dead)] = tuple(k for k in actor.__dict__ if k not in skip)
    d = actor.__dict__
    return (name, *[_canon(d[k]) for k in fields])


class World:
    """One explorer state, and the transitions out of it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.endpoints = fleet(config.endpoints, config.targets)
        self.keys = [ep.key for ep in self.endpoints]
        self.store = MemoryStore()
        self.provider = MemoryProvider(ZONE)
        self.actors: dict[str, Any] = {"planner": Planner("planner", ZONE, self.endpoints)}
        for i in range(config.enactors):
            name = f"enactor-{i + 1}"
            self.actors[name] = (LegacyEnactor(name, ZONE, keep=1) if config.protocol == "legacy"
                                 else Enactor(name, ZONE))
        if config.protocol == "safe":
            self.actors["collector"] = Collector()
            self.actors["verifier"] = Verifier("verifier")
        self.table: dict[Any, int] = {}  # parts of fingerprints -> small numbers; shared by every state of a search
        self.ids: dict[str, int] = {}  # each part's number in ``table``, until the part changes
        self._own: set[str] = {"store", "provider", "monitor"}  # parts this state may change in place
        self._ex: SimExecutor | None = None
        self.wrote_provider = False  # set by apply(): whether the move wrote the provider
        self.effects_ran: list[type] = []  # set by apply(): the types of the effects the move ran
        self.enactors = frozenset(n for n in self.actors if n.startswith("enactor"))
        self.pending: dict[str, object] = {}
        self.env = 0  # scripted health changes done
        self.faults = 0
        self.lkg = 0
        self.monitor = Monitor(ZONE, collect=True)
        self.script = health_script(self.endpoints, config.generations - 1)

    # -- copying and hashing --------------------------------------------------------------------

    def clone(self) -> World:
        """A successor to apply one move to. Copy on write: the actors, the store, the provider and
        the monitor are shared with this state until a move changes them (``_own_*``)."""
        new = copy.copy(self)
        new.actors = dict(self.actors)  # apply() copies the one actor a move changes
        new.ids = dict(self.ids)
        new.pending = dict(self.pending)
        new._own = set()
        self._own = set()  # shared now: neither may change them in place
        if self.monitor.violations:  # a state's violations are its own
            new._own_monitor()
        return new

    def _own_store(self, rows_only: bool = False) -> MemoryStore:
        """``rows_only``: the move changes only the enactors' in-flight and applied rows, which are
        each enactor's part of the fingerprint, not the store's."""
        if "store" not in self._own:
            self.store = _clone_with_lock(self.store)
            self._own.add("store")
            self._ex = None
        if not rows_only:
            self.ids.pop("store", None)
        return self.store

    def _own_provider(self) -> MemoryProvider:
        if "provider" not in self._own:
            self.provider = _clone_with_lock(self.provider)
            self._own.add("provider")
            self._ex = None
        self.ids.pop("provider", None)
        return self.provider

    def _own_monitor(self) -> Monitor:
        if "monitor" not in self._own:
            old = self.monitor
            mon = self.monitor = copy.copy(old)
            self._ex = None
            mon.content = {k: list(v) for k, v in old.content.items()}
            mon.highest_marker = dict(old.highest_marker)
            mon.highest_served = dict(old.highest_served)
            mon.published = set(old.published)
            mon.exempt_until = dict(old.exempt_until)
            mon.violations = []
            mon.seen = set()
            self._own.add("monitor")
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
        inflight, applied, pending = self.store._inflight, self.store._applied, self.pending
        out = [sid, pid, mid, self.env, self.faults, self.lkg]
        enactors = []
        for name, actor in self.actors.items():
            aid = ids.get(name)
            if aid is None:
                aid = ids[name] = self._intern(actor_part(actor, pending.get(name)))
            if name in self.enactors:
                f = inflight.get(name)
                enactors.append(self._intern((aid, None if f is None else f[0], applied.get(name))))
            else:
                out.append(aid)
        enactors.sort()
        out.extend(enactors)
        return tuple(out)

    def store_part(self) -> tuple[Any, ...]:
        """The store's part of the identity: head, rows, last-known-good, the health kept for a restarted
        planner (it starts from it) — not the enactors' own rows."""
        store = self.store
        rows = tuple((k, tuple(store._gens[k]), tuple(rs.digest for rs in store._sets[k])) for k in sorted(store._gens))
        plans = tuple(store._plans) if self.config.protocol == "legacy" else ()  # only legacy reads them
        health = tuple(sorted(store._health.items())) if store._health else ()
        return (int(store.head()), plans, rows, store._lkg, health)

    def provider_part(self) -> tuple[Any, ...]:
        rejects = self.provider._rejects
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

    def moves(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        for name in self.actors:
            if name in self.pending:
                yield f"{name} receives the reply to {type(self.pending[name]).__name__}", ("deliver", name)
            elif not getattr(self.actors[name], "busy", False):
                yield f"{name} ticks", ("tick", name)
        if self.env < len(self.script):
            tid, ok = self.script[self.env]
            yield f"health: {tid} {'up' if ok else 'down'}", ("health",)
        if self.faults < self.config.faults:
            for name in self.actors:
                if name in self.pending and isinstance(self.pending[name], Request):
                    yield f"{name} crashes after its {type(self.pending[name]).__name__} ran", ("crash", name, True)
                if name != "planner":
                    yield f"{name} crashes and restarts", ("crash", name, False)
                if name in self.pending and isinstance(self.pending[name], Request):
                    request = type(self.pending[name]).__name__
                    yield f"{name}'s {request} raises RuntimeError before it ran", ("raise", name, False)
                    yield f"{name}'s {request} raises RuntimeError after it took effect", ("raise", name, True)
            for ep in self.endpoints:
                seen = self.provider.read([ep.key])[ep.key]
                if seen.records is not None:
                    yield f"a human empties {ep.key.name}", ("empty", ep.key)
                if seen.marker is not None:
                    yield f"a human deletes {ep.key.name}'s marker", ("unmark", ep.key)
                    if seen.marker.generation != GARBLED:
                        yield f"a human writes g={GARBLED} into {ep.key.name}'s marker", ("garble", ep.key)
                if ep.key not in self.provider._rejects:
                    yield f"the provider rejects every write of {ep.key.name} from now on", ("reject", ep.key)

    def reduced_moves(self) -> list[tuple[str, tuple[Any, ...], bool]]:
        """``moves()``, or only the tick of one idle actor when the tick reduction applies (docstring)."""
        if self.config.reduce and self.faults >= self.config.faults:
            forced = self.forced()
            if forced is not None:
                return [forced]
            return [(label, move, False) for label, move in self.moves() if not self._returns_here(move)]
        return [(label, move, False) for label, move in self.moves()]

    def forced(self) -> tuple[str, tuple[Any, ...], bool] | None:
        """The one move reductions 4 to 6 force from this state, if any."""
        if self.config.reduce and self.faults >= self.config.faults:
            for name, actor in self.actors.items():
                if name != "planner" and name not in self.pending and not actor.busy:
                    return (f"{name} ticks", ("tick", name), True)
            for name in self.actors:
                what = self.pending.get(name)
                if type(what) is LoadChanges and self._stable_read(name, what):
                    return (f"{name} receives the reply to LoadChanges", ("deliver", name), True)
            planner = self.actors["planner"]
            planner_idle = "planner" not in self.pending and not planner.busy and planner.synced and not planner.dirty
            if planner_idle and self.env < len(self.script):
                tid, ok = self.script[self.env]
                return (f"health: {tid} {'up' if ok else 'down'}", ("health",), True)
            if planner_idle and self.config.protocol == "safe":  # the head is final (reduction 6)
                head = self.store.head()
                for name in self.actors:
                    kind = type(self.pending.get(name))
                    if (kind is LoadDesired and name == "verifier") or (
                            kind is ReadHead and head > self.actors[name].applied_upto):
                        return (f"{name} receives the reply to {kind.__name__}", ("deliver", name), True)
        return None

    def _returns_here(self, move: tuple[Any, ...]) -> bool:
        """Whether ``move``, with the forced tick after it, leads back to this very state (a self-loop:
        leaving it out loses no state). The planner's tick with nothing to publish; an enactor's
        ``ReadHead`` answered with a head it already applied; the collector's ``ReadWatermark``
        answered with a watermark it already collected below."""
        if move[0] == "tick":
            planner = self.actors["planner"]
            return move[1] == "planner" and planner.synced and not planner.dirty
        if move[0] != "deliver":
            return False
        name = move[1]
        kind = type(self.pending[name])
        actor = self.actors[name]
        if kind is ReadHead and type(actor) is Enactor:
            return self.store.head() <= actor.applied_upto
        if kind is ReadWatermark and type(actor) is Collector:
            return self.store.low_watermark(0.0) <= actor.collected_below
        return False

    def label(self, move: tuple[Any, ...]) -> str:
        """How ``moves()`` names ``move`` from this state."""
        return next(label for label, m in self.moves() if m == move)

    def _stable_read(self, name: str, what: LoadChanges) -> bool:
        """Whether no other move can change what ``what`` returns (reduction 5 in the docstring):
        the plans it reads are at or below the head, and the enactor's own in-flight row, which
        only it removes, holds the collector's watermark at or below ``upto``."""
        row = self.store._inflight.get(name)
        return (type(self.actors[name]) is Enactor and row is not None and row[0] >= what.upto
                and what.upto <= self.store.head())

    def settle(self) -> list[str]:
        """Apply forced moves (``reduced_moves``) until none is left; their labels, in order.

        Every state that the search keeps is settled, so a forced move and the states in between
        (an actor idle, a health change not yet seen) never become states of their own.
        """
        done: list[str] = []
        while True:
            forced = self.forced()
            if forced is None:
                return done
            label, move, _ = forced
            self.apply(move)
            if move[0] == "tick" and move[1] not in self.pending:
                raise AssertionError(f"tick reduction: {move[1]}'s tick did not leave it waiting on a request")
            done.append(label)

    def apply(self, move: tuple[Any, ...]) -> None:
        """One move. The parts it writes are copied first (``_own_*``); the invariants are checked
        again only when the provider changed or plans were deleted: with the provider as it was,
        every check passed before and still passes (a new plan only adds history above every marker)."""
        self.wrote_provider = deleted = False
        self.effects_ran = []
        changed = "planner" if move[0] == "health" else None if move[0] in HUMAN_FAULTS else move[1]
        if changed is not None:
            self.actors[changed] = _copy_actor(self.actors[changed])
            self.ids.pop(changed, None)
        match move:
            case ("deliver", name):
                what = self.pending.pop(name)
                if isinstance(what, Request):
                    reply = self._request(name, what)
                    deleted = what.COLLECTS
                else:
                    reply = what
                self._feed(name, reply)
            case ("tick", name):
                self._feed(name, Tick(0.0))
            case ("health",):
                tid, ok = self.script[self.env]
                self.env += 1
                self._feed("planner", HealthObserved(0.0, tid, ok))
            case ("crash", name, after):
                self.faults += 1
                what = self.pending.pop(name, None)
                if after and isinstance(what, Request):
                    self._request(name, what)
                    deleted = what.COLLECTS
                self.actors[name] = self._fresh(name)
            case ("raise", name, after):
                self.faults += 1
                what = self.pending.pop(name)
                reply = self._request(name, what, raises="after" if after else "before")
                deleted = after and isinstance(what, Request) and what.COLLECTS
                if reply is not None:  # None: the exception escaped the executor; no reply comes (I8)
                    self._feed(name, reply)
            case ("empty", key):
                self.faults += 1
                provider = self._own_provider()
                seen = provider.read([key])[key]
                self._own_monitor().exempt(key, float("inf"))
                provider.hand_edit(key, None, seen.marker)
                self.wrote_provider = True
            case ("unmark", key):
                self.faults += 1
                provider = self._own_provider()
                seen = provider.read([key])[key]
                self._own_monitor().hand_edited(key, None)
                provider.hand_edit(key, seen.records, None)
                self.wrote_provider = True
            case ("reject", key):  # changes no record: no check's verdict changes
                self.faults += 1
                self._own_provider().reject(key, "simulated: the server refuses this endpoint")
            case ("garble", key):  # the rest of the marker kept (the monitor's I2 baseline too: not a generation)
                self.faults += 1
                provider = self._own_provider()
                seen = provider.read([key])[key]
                assert seen.marker is not None
                provider.hand_edit(key, seen.records, replace(seen.marker, generation=GARBLED))
                self.wrote_provider = True
        if changed is not None:
            actor = self.actors[changed]
            if actor.busy and changed not in self.pending:  # no reply will come: it never runs again
                self._own_monitor().wedged(changed, f"{changed} is busy with no request outstanding after "
                                                    f"{move[0]}: it ignores every tick and never runs again")
            _reset_dead(actor, self.pending.get(changed))
        if self.wrote_provider or deleted:
            monitor = self._own_monitor()
            monitor.check(self.provider.read(self.keys))  # read, not read_all: an emptied key must show
            if deleted:
                monitor.check_references(self.referenced(), self._digest)

    def _executor(self) -> SimExecutor:
        """An executor on this state's store, provider and monitor (kept until one is copied)."""
        ex = self._ex
        if ex is None:
            ex = self._ex = SimExecutor(self.store, self.provider, on_publish=self.monitor.on_publish,
                                        journal=False)
        return ex

    def _request(self, name: str, what: Any, raises: str = "") -> Any:
        """Run ``what``; with ``raises`` ("before" or "after" it took effect), it raises a RuntimeError
        there, and the reply is what the runtime's executor makes of that (None: it escaped)."""
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
        except Exception:  # escaped ``Executor.run``: the runtime's loop logged it, the actor hears nothing
            return None
        finally:
            ex.armed.pop(name, None)

    def _fresh(self, name: str) -> Any:
        if name == "planner":
            return Planner("planner", ZONE, self.endpoints)
        if name == "collector":
            return Collector()
        if name == "verifier":
            return Verifier("verifier")
        if self.config.protocol == "legacy":
            return LegacyEnactor(name, ZONE, keep=1)
        return Enactor(name, ZONE)

    def _feed(self, name: str, event: Any) -> None:
        step = self.actors[name].handle(event)
        effects, request = step.effects, step.request
        if not effects and request is None:
            return
        failed = None
        self.effects_ran = [type(c) for c in effects]
        if effects:
            for c in effects:
                if isinstance(c, SetLastKnownGood):
                    self.lkg = int(c.generation)
                kind = type(c)
                if kind in _WRITES_STORE:
                    self._own_store(rows_only=kind in _ROWS_ONLY)
            failed = self._executor().effects(name, effects, 0.0)
            if AdvanceHead in self.effects_ran and self.store.head() > MAX_HEAD:  # reads only the store
                self._own_monitor().check_head(int(self.store.head()))
        if failed is not None:
            self.pending[name] = failed
        elif request is not None:
            self.pending[name] = request

    def referenced(self) -> list[tuple[str, int, EndpointKey | None]]:
        refs: list[tuple[str, int, EndpointKey | None]] = []
        for name, actor in self.actors.items():
            working = getattr(actor, "working", None)
            if name.startswith("enactor") and working is not None:
                refs.append((f"{name} in flight", int(working), None))
        for key, seen in self.provider.read_all().items():
            if seen.marker is not None and seen.marker.generation != GARBLED:  # a person's g= names no plan
                refs.append((f"the marker of {key}", int(seen.marker.generation), key))
        if self.lkg:
            refs.append(("the verifier's last-known-good", self.lkg, None))
        return refs

    def _digest(self, key: EndpointKey, g: int) -> str | None:
        d = self.store.desired([key], Generation(g)).get(key)
        return d.records.digest if d else None


# Requests and effects that change the store or the provider (every other request only reads), from
# what each command class declares it writes (the journal is not part of a state: the explorer's
# interpreter keeps none).
_WRITES_STORE = frozenset(c for c in COMMANDS if c.WRITES & (STORE_RESOURCES - {Resource.JOURNAL}))
_WRITES_PROVIDER = frozenset(c for c in COMMANDS if Resource.PROVIDER in c.WRITES)
_ROWS_ONLY = frozenset(c for c in COMMANDS if {Resource.ROWS} == c.WRITES)  # only the in-flight and applied rows

_IMMUTABLE: dict[type, bool] = {t: True for t in (int, str, float, bool, type(None), bytes, tuple, frozenset)}


def _immutable(t: type) -> bool:
    """Atoms, tuples and frozen dataclasses are shared, never copied (see "Cost" in the module docstring)."""
    known = _IMMUTABLE.get(t)
    if known is None:
        params = getattr(t, "__dataclass_params__", None)
        known = _IMMUTABLE[t] = bool(params is not None and params.frozen) or issubclass(t, tuple)
    return known


def _copy(value: Any) -> Any:
    """A deep copy of the mutable parts only: dicts, lists, sets and non-frozen dataclasses."""
    t = type(value)
    if _immutable(t):
        return value
    if t is dict:
        return {k: _copy(v) for k, v in value.items()}
    if t is list:
        return [_copy(v) for v in value]
    if t is set:
        return set(value)
    if t is deque:
        return deque((_copy(v) for v in value), value.maxlen)
    if hasattr(value, "__dict__") and is_dataclass(value):
        new = object.__new__(t)
        new.__dict__.update({k: v if k in _SHARED else _copy(v) for k, v in value.__dict__.items()})
        return new
    return copy.deepcopy(value)


# Actors whose fields hold atoms, frozen values, or dicts, lists and sets of them (checked by
# tests/sim/test_explore.py): copying one field deep is a full copy. Others go through ``_copy``.
_FLAT_ACTORS = (Enactor, Verifier, Collector)
_ONE_LEVEL: dict[type, Callable[[Any], Any]] = {dict: dict.copy, list: list.copy, set: set.copy}
# Fields of those actors whose values are mutable (the verifier's ``Quarantine`` counts its rounds down in
# place): copied deep (``_copy``), or a successor's change would show in its parent. Usually empty.
_DEEP_FIELDS = frozenset({"quarantined"})


def _copy_actor(actor: Any) -> Any:
    t = type(actor)
    if t not in _FLAT_ACTORS:
        return _copy(actor)
    new = object.__new__(t)
    one = _ONE_LEVEL
    new.__dict__.update({k: (_copy(v) if k in _DEEP_FIELDS else one[type(v)](v) if type(v) in one else v)
                         for k, v in actor.__dict__.items()})
    return new


def _dict_of_lists(d: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
    return {k: list(v) for k, v in d.items()}


def _dict_of_dicts(d: dict[Any, dict[Any, Any]]) -> dict[Any, dict[Any, Any]]:
    return {k: dict(v) for k, v in d.items()}


# Fields of MemoryStore / MemoryProvider whose shape is known (values immutable one level down);
# any other field falls back to ``_copy``.
_FIELD_COPY: dict[str, Any] = {
    "_plans": dict, "_gens": _dict_of_lists, "_sets": _dict_of_lists, "_by_gen": _dict_of_dicts,
    "_gen_order": list, "_multi": set, "_inflight": dict, "_applied": dict, "_journal": _dict_of_lists,
    "_records": dict, "_markers": dict,
}


def _clone_with_lock(obj: Any) -> Any:
    new = object.__new__(type(obj))
    d = new.__dict__
    for k, v in obj.__dict__.items():
        if k == "_lock":
            d[k] = threading.Lock()
        elif k == "_listeners":
            d[k] = []
        else:
            f = _FIELD_COPY.get(k)
            d[k] = f(v) if f is not None else _copy(v)
    return new


def health_script(endpoints: Any, changes: int) -> list[tuple[str, bool]]:
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


Progress = Callable[[int, int, int, float], None]  # (states, transitions, depth, seconds)


def explore(config: Config, max_states: int = 20_000_000, look_for: str = "I1",
            max_seconds: float | None = None, progress: Progress | None = None) -> Report:
    """Breadth-first search; stops at the first violation of ``look_for`` ("any": of any invariant), with a
    shortest path to it, or when every state was seen. Other violations found on the way are reported if
    ``look_for`` is never violated. ``progress`` is called every 20,000 states.

    Each state keeps only its parent and the move that reached it; a path's labels are made by
    replaying its moves from the start (the search is deterministic)."""
    started = time.perf_counter()
    from dnsplane.sim.search import search

    states, transitions, complete, found, path, other, other_path = search(
        config, World, max_states, look_for, max_seconds, progress)
    if found is not None and config.reduce:  # the reduced graph's path may carry early ticks: search every order
        full = explore(replace(config, reduce=False), max_states, look_for)
        if full.violation is not None and full.violation.short == found.short:
            return Report(config, states + full.states, transitions + full.transitions,
                          time.perf_counter() - started, False, full.violation, full.path)
    elapsed = time.perf_counter() - started
    if found is not None:
        return Report(config, states, transitions, elapsed, False, found, path)
    return Report(config, states, transitions, elapsed, complete, other, other_path)
