"""The explorer's search engine: states as tuples of part numbers, every move computed once.

``dnsplane.sim.explore.World`` is one state as objects (the production actors, the memory store
and provider, the monitor) and its moves. Searching with Worlds means copying and re-running
actor code on every transition: about 100 µs each, 6 million transitions for the default
configuration. This engine keeps a state as the World's identity instead (``World.fingerprint``:
the store's, provider's and monitor's part numbers, the health script's progress, the faults
used, the last-known-good, each actor's part number, and the enactors' slots, each its part
number with its in-flight and applied rows, sorted for symmetry), and keeps, for each part number,
the object first seen with it (its representative).

A move reads the mover (its state and pending request) and a few parts of the rest, which
depend on the request it delivers (``REQUEST_READS``: the store's head for ``ReadHead``, the
provider for ``ReadMarkers`` and ``Resolve``, the provider and the monitor for a ``WriteBatch``
and the checks after it, ...) and on the effects the actor answers with (``EFFECT_READS``:
``Begin`` and ``Finish`` read the mover's own rows, ...). Which effects run is decided by the
reply, so by the first set; the first run of a move records what its effects read, and the
result is kept under both sets of values. Nothing else can influence the move: other actors
are not read (the executor runs one actor's commands against the store and the provider), time
is always 0 and the configuration is fixed; a request or effect type not in the tables counts
as reading everything. So the first time a move meets given values, a World is built from the
representatives, the move runs with the production code, and the parts it changed are numbered
(``_run``; a move that changes another enactor's rows would be refused there); every later
time the move is a dictionary lookup and a new tuple. The default configuration has about 6
million transitions and needs about 40,000 runs.

Two states with one identity have the same future (that is what the identity's reductions
promise, see the explore module's docstring), so running a move on representatives instead of
the objects a path really built gives the same successors, and the same verdicts: the monitor's
part holds everything its checks read (``monitor_part``).

The reductions' forced moves (``World.forced``) and self-loops (``World._returns_here``) are
decided here from the parts' attributes (``_Actor``), in the same order as ``World``, so that
both engines reach the same settled states (checked by tests/sim/test_explore.py).
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import (
    Command,
    Effect,
    LoadChanges,
    LoadDesired,
    ReadHead,
    ReadWatermark,
    Request,
    Resource,
)
from dnsplane.sim.invariants import Monitor, Violation
from dnsplane.sim.world import COMMANDS, GARBLED, HUMAN_FAULTS
from dnsplane.store.memory import MemoryStore

State = tuple[int, ...]
Move = tuple[Any, ...]
_FIXED = 6  # store, provider, monitor, health script progress, faults used, last-known-good
_INDEX = {"sid": 0, "pid": 1, "mid": 2, "env": 3, "faults": 4, "lkg": 5}


@dataclass(frozen=True, slots=True)
class _Actor:
    """A representative actor with its pending request, and what the reductions ask of it."""

    actor: Any
    pending: Any
    kind: type
    busy: bool
    ptype: type | None
    applied_upto: int
    collected_below: int
    planner_idle: bool  # planner: no request pending, not busy, in sync, nothing to publish
    working: int | None  # an enactor's generation in flight (an I3 reference)


@dataclass(frozen=True, slots=True)
class _Done:
    """What a move changed, for the memo: each part's new number or -1 where it stayed, the mover's
    new part and (an enactor) rows, and the violations the checks found on the way."""

    sid: int
    pid: int
    mid: int
    env: int
    faults: int
    lkg: int | None
    aid: int
    row: tuple[int | None, int | None] | None
    violations: tuple[Violation, ...]


# What each request reads, as parts of the state; what it writes is then a function of these (see
# the module docstring). "head": the store's head; "sid", "pid", "mid": the store (without the
# enactors' rows), the provider, the monitor; "rows": every enactor's in-flight and applied rows;
# "aids": every enactor's part; "working": each enactor's ``working`` (an I3 reference); "lkg", "env",
# "faults": the last-known-good, the health script's progress, the faults used; "row" (effects only):
# the mover's own rows. A request or effect type not listed reads everything.
EVERYTHING = ("sid", "pid", "mid", "env", "faults", "lkg", "rows", "aids")


def _parts(kind: type[Command], effect: bool) -> tuple[str, ...]:
    """The parts a command's move depends on, from what its class declares it reads and writes (a
    write depends on what was there): the store's part for its head, plans and last-known-good (the
    head alone when a request reads nothing else), the rows (an effect's: the mover's own), the
    provider for the provider and DNS; the monitor after a provider write or a publish (its checks
    and its history of published content); after a collect, what I3 checks (every reference)."""
    touched = kind.READS | kind.WRITES
    parts: list[str] = []
    store = touched & {Resource.HEAD, Resource.PLANS, Resource.LAST_KNOWN_GOOD}
    if store == {Resource.HEAD} and not effect:
        parts.append("head")
    elif store:
        parts.append("sid")
    if Resource.ROWS in touched:
        parts.append("row" if effect else "rows")
    if touched & {Resource.PROVIDER, Resource.DNS}:
        parts.append("pid")
    if kind.WRITES & {Resource.PROVIDER, Resource.PLANS}:
        parts.append("mid")
    if Resource.LAST_KNOWN_GOOD in kind.WRITES:
        parts.append("lkg")
    if kind.COLLECTS:
        parts += [p for p in ("pid", "mid", "lkg", "working") if p not in parts]
    return tuple(parts)


REQUEST_READS: dict[type | None, tuple[str, ...]] = {
    None: (),  # a tick, or a reply already in hand (``Failed``): only the actor
    **{c: _parts(c, effect=False) for c in COMMANDS if issubclass(c, Request)},
}
# Effects run after the actor handled the reply: what they read.
EFFECT_READS: dict[type, tuple[str, ...]] = {c: _parts(c, effect=True) for c in COMMANDS if issubclass(c, Effect)}


class Search:
    """The parts, their representatives and the memo of one search (``search`` runs it)."""

    def __init__(self, config: Any, world_type: Any) -> None:
        self.config = config
        self.template = world_type(config)
        names = list(self.template.actors)
        self.names = names
        self.enactor_names = [n for n in names if n.startswith("enactor")]
        self.others = [n for n in names if not n.startswith("enactor")]
        self.n_others = len(self.others)
        self.planner_pos = _FIXED + self.others.index("planner")
        nf = _FIXED + self.n_others
        self.where = {n: (_FIXED + i, False) for i, n in enumerate(self.others)}
        self.where.update({n: (nf + j, True) for j, n in enumerate(self.enactor_names)})
        self.layout = [(n, *self.where[n]) for n in names]  # (name, index in the state, an enactor's slot?)
        self.table: dict[Any, int] = {}
        self.reps: list[Any] = []
        self.memo: dict[Any, _Done] = {}
        self.effects: dict[Any, tuple[str, ...]] = {}  # a move's own reads -> what its effects read
        self.nf = _FIXED + self.n_others
        self.stores: dict[tuple[int, Any], MemoryStore] = {}
        self.watermarks: dict[tuple[int, Any], int] = {}
        self.heads: dict[int, int] = {}
        self.script_len = len(self.template.script)
        self.reduce = config.reduce
        self.safe = config.protocol == "safe"
        self.misses = 0

    # -- parts ------------------------------------------------------------------------------------

    def _intern(self, part: Any, rep: Any) -> int:
        n = self.table.get(part)
        if n is None:
            n = self.table[part] = len(self.reps)
            self.reps.append(rep)
        return n

    def _actor_id(self, actor: Any, pending: Any) -> int:
        from dnsplane.sim.explore import actor_part

        part = ("actor", actor_part(actor, pending))
        n = self.table.get(part)
        if n is None:
            busy = bool(getattr(actor, "busy", False))
            idle = (pending is None and not busy and bool(getattr(actor, "synced", False))
                    and not getattr(actor, "dirty", True))
            rep = _Actor(actor, pending, type(actor), busy, None if pending is None else type(pending),
                         int(getattr(actor, "applied_upto", 0) or 0), int(getattr(actor, "collected_below", 0) or 0),
                         idle, getattr(actor, "working", None))
            n = self._intern(part, rep)
        return n

    def _slot(self, aid: int, row: tuple[int | None, int | None]) -> int:
        part = ("slot", aid, row)
        n = self.table.get(part)
        if n is None:
            n = self._intern(part, (aid, row))
        return n

    def encode(self, w: Any) -> State:
        """A World's state (every part numbered; a new part's object becomes its representative)."""
        from dnsplane.sim.explore import monitor_part

        sid = self._intern(("store", w.store_part()), w.store)
        pid = self._intern(("provider", w.provider_part()), w.provider)
        mid = self._intern(("monitor", monitor_part(w.monitor)), _clean(w.monitor))
        out = [sid, pid, mid, w.env, w.faults, w.lkg]
        out.extend(self._actor_id(w.actors[n], w.pending.get(n)) for n in self.others)
        rows = _rows(w.store, self.enactor_names)
        out.extend(sorted(self._slot(self._actor_id(w.actors[n], w.pending.get(n)), r)
                          for n, r in zip(self.enactor_names, rows, strict=True)))
        return tuple(out)

    def _store(self, sid: int, rows: tuple[tuple[int | None, int | None], ...]) -> MemoryStore:
        """The store of ``sid`` with these enactor rows (built once; worlds copy it before writing)."""
        from dnsplane.sim.explore import _clone_with_lock

        key = (sid, rows)
        store = self.stores.get(key)
        if store is None:
            store = _clone_with_lock(self.reps[sid])
            named = list(zip(self.enactor_names, rows, strict=True))
            store._inflight = {n: (r[0], 0.0) for n, r in named if r[0] is not None}
            store._applied = {n: r[1] for n, r in named if r[1] is not None}
            self.stores[key] = store
        return store

    def materialize(self, s: State) -> Any:
        """A World in state ``s``, built from the representatives (enactor slots in sorted order)."""
        reps = self.reps
        w = copy.copy(self.template)
        slots = [reps[x] for x in s[_FIXED + self.n_others:]]
        by_name = dict(zip(self.others, s[_FIXED:_FIXED + self.n_others], strict=True))
        by_name.update(zip(self.enactor_names, (aid for aid, _ in slots), strict=True))
        w.actors, w.pending = {}, {}
        for name in self.names:
            rep: _Actor = reps[by_name[name]]
            w.actors[name] = rep.actor
            if rep.pending is not None:
                w.pending[name] = rep.pending
        w.store = self._store(s[0], tuple(row for _, row in slots))
        w.provider, w.monitor = reps[s[1]], reps[s[2]]
        w.env, w.faults, w.lkg = s[3], s[4], s[5]
        w.ids, w._own, w._ex, w.wrote_provider = {}, set(), None, False
        return w

    # -- moves ------------------------------------------------------------------------------------

    def _actors(self, s: State) -> list[tuple[str, _Actor, tuple[int | None, int | None] | None]]:
        """(name, representative, the enactor's rows or None) in World's actor order."""
        reps = self.reps
        out = []
        for name, i, enactor in self.layout:
            if enactor:
                aid, row = reps[s[i]]
                out.append((name, reps[aid], row))
            else:
                out.append((name, reps[s[i]], None))
        return out

    def moves(self, s: State) -> list[Move]:
        out: list[Move] = []
        acts = self._actors(s)
        for name, a, _ in acts:
            if a.pending is not None:
                out.append(("deliver", name))
            elif not a.busy:
                out.append(("tick", name))
        if s[3] < self.script_len:
            out.append(("health",))
        if s[4] < self.config.faults:
            for name, a, _ in acts:
                if a.pending is not None and isinstance(a.pending, Request):
                    out.append(("crash", name, True))
                if name != "planner":
                    out.append(("crash", name, False))
                if a.pending is not None and isinstance(a.pending, Request):
                    out.append(("raise", name, False))
                    out.append(("raise", name, True))
            provider = self.reps[s[1]]
            for key in self.template.keys:
                seen = provider.read([key])[key]
                if seen.records is not None:
                    out.append(("empty", key))
                if seen.marker is not None:
                    out.append(("unmark", key))
                    if seen.marker.generation != GARBLED:
                        out.append(("garble", key))
                if key not in provider._rejects:
                    out.append(("reject", key))
        return out

    def forced(self, s: State) -> Move | None:
        """``World.forced`` on the parts' attributes (same order, same conditions)."""
        if not self.reduce or s[4] < self.config.faults:
            return None
        acts = self._actors(s)
        for name, a, _ in acts:
            if a.pending is None and not a.busy and name != "planner":
                return ("tick", name)
        head = self._head(s[0])
        for name, a, row in acts:
            if a.ptype is LoadChanges and a.kind is Enactor and row is not None:
                upto = a.pending.upto
                if row[0] is not None and row[0] >= upto and upto <= head:
                    return ("deliver", name)
        planner: _Actor = self.reps[s[self.planner_pos]]
        if planner.planner_idle and s[3] < self.script_len:
            return ("health",)
        if planner.planner_idle and self.safe:
            for name, a, _ in acts:
                if (a.ptype is LoadDesired and name == "verifier") or (a.ptype is ReadHead and head > a.applied_upto):
                    return ("deliver", name)
        return None

    def reduced_moves(self, s: State) -> list[Move]:
        if self.reduce and s[4] >= self.config.faults:
            f = self.forced(s)
            if f is not None:
                return [f]
            return [m for m in self.moves(s) if not self._returns_here(s, m)]
        return self.moves(s)

    def _returns_here(self, s: State, move: Move) -> bool:
        if move[0] == "tick":
            if move[1] != "planner":
                return False
            p = self.reps[s[self.planner_pos]].actor
            return bool(p.synced and not p.dirty)
        if move[0] != "deliver":
            return False
        for name, a, _ in self._actors(s):
            if name == move[1]:
                if a.ptype is ReadHead and a.kind is Enactor:
                    return self._head(s[0]) <= a.applied_upto
                if a.ptype is ReadWatermark and a.kind is Collector:
                    return self._watermark(s) <= a.collected_below
        return False

    def _head(self, sid: int) -> int:
        h = self.heads.get(sid)
        if h is None:
            h = self.heads[sid] = int(self.reps[sid].head())
        return h

    def _rows_of(self, s: State) -> tuple[tuple[int | None, int | None], ...]:
        reps = self.reps
        return tuple(reps[x][1] for x in s[_FIXED + self.n_others:])

    def _watermark(self, s: State) -> int:
        key = (s[0], self._rows_of(s))
        w = self.watermarks.get(key)
        if w is None:
            w = self.watermarks[key] = int(self._store(*key).low_watermark(0.0))
        return w

    # -- applying a move --------------------------------------------------------------------------

    def step(self, s: State, move: Move) -> tuple[State, tuple[Violation, ...]]:
        """The successor of ``s`` by ``move`` (not settled), and what the checks found on the way.

        Memoised in two steps: the move's own reads (``REQUEST_READS`` of the mover's pending
        request) decide the reply and so which effects run; the first run records their reads
        (``EFFECT_READS``), and the result is kept under both."""
        reps = self.reps
        kind = move[0]
        row = None
        if kind in HUMAN_FAULTS:
            reads: tuple[str, ...]
            pos, aid, reads = -1, -1, ("pid", "mid", "faults")
        else:
            pos, enactor = self.where["planner" if kind == "health" else move[1]]
            if enactor:
                aid, row = reps[s[pos]]
            else:
                aid = s[pos]
            if kind == "tick":
                reads = ()
            else:
                ptype = reps[aid].ptype if kind != "health" else None
                reads = REQUEST_READS.get(ptype, EVERYTHING)
                if kind == "health":
                    reads = ("env",)
                elif kind == "crash" or kind == "raise":  # before it ran: the reply is Failed, whatever the state
                    reads = (*reads, "faults") if move[2] else ("faults",)
        key = (move, aid, self._values(s, reads, row))
        effects = self.effects.get(key)
        done = None if effects is None else self.memo.get((key, self._values(s, effects, row)))
        if done is None:
            done, effects = self._run(s, move, pos, row)
            self.effects[key] = effects
            self.memo[(key, self._values(s, effects, row))] = done
        out = list(s)
        if done.sid >= 0:
            out[0] = done.sid
        if done.pid >= 0:
            out[1] = done.pid
        if done.mid >= 0:
            out[2] = done.mid
        if done.env >= 0:
            out[3] = done.env
        if done.faults >= 0:
            out[4] = done.faults
        if done.lkg is not None:
            out[5] = done.lkg
        if pos >= 0:
            if row is None:
                out[pos] = done.aid
            else:
                out[pos] = self._slot(done.aid, row if done.row is None else done.row)
                nf = self.nf
                out[nf:] = sorted(out[nf:])
        return tuple(out), done.violations

    def _values(self, s: State, reads: tuple[str, ...], row: Any) -> tuple[Any, ...]:
        if not reads:
            return ()
        out: list[Any] = []
        for r in reads:
            if r == "head":
                out.append(self._head(s[0]))
            elif r == "row":
                out.append(row)
            elif r == "rows":
                out.append(self._rows_of(s))
            elif r == "aids":
                out.append(tuple(self.reps[x][0] for x in s[self.nf:]))
            elif r == "working":
                reps = self.reps
                out.append(tuple(reps[reps[x][0]].working for x in s[self.nf:]))
            else:
                out.append(s[_INDEX[r]])
        return tuple(out)

    def _run(self, s: State, move: Move, pos: int, row: Any) -> tuple[_Done, tuple[str, ...]]:
        """Apply ``move`` with the production code on a World built from the representatives; what
        it changed, and what the effects it ran read."""
        from dnsplane.sim.explore import monitor_part

        self.misses += 1
        w = self.materialize(s)
        w.apply(move)
        own = w._own
        sid = self._intern(("store", w.store_part()), w.store) if "store" in own else s[0]
        pid = self._intern(("provider", w.provider_part()), w.provider) if "provider" in own else s[1]
        mid = self._intern(("monitor", monitor_part(w.monitor)), _clean(w.monitor)) if "monitor" in own else s[2]
        rows = _rows(w.store, self.enactor_names)
        before = self._rows_of(s)  # in slot order, which is the materialised enactors' order
        mover = None if pos < 0 else "planner" if move[0] == "health" else move[1]
        aid = new_row = None
        if mover is not None:
            aid = self._actor_id(w.actors[mover], w.pending.get(mover))
        for name, old, new in zip(self.enactor_names, before, rows, strict=True):
            if name == mover:
                new_row = None if new == old else new
            elif new != old:
                raise AssertionError(f"{move} changed {name}'s rows: the memo assumes a move changes only its own")
        effects: tuple[str, ...] = ()
        for t in w.effects_ran:
            effects += EFFECT_READS.get(t, EVERYTHING)
        done = _Done(
            sid if sid != s[0] else -1, pid if pid != s[1] else -1, mid if mid != s[2] else -1,
            w.env if w.env != s[3] else -1, w.faults if w.faults != s[4] else -1,
            w.lkg if w.lkg != s[5] else None, -1 if aid is None else aid, new_row,
            tuple(w.monitor.violations) if "monitor" in own else ())
        return done, tuple(dict.fromkeys(effects))

    def settle(self, s: State) -> tuple[State, tuple[Violation, ...]]:
        found: tuple[Violation, ...] = ()
        while True:
            move = self.forced(s)
            if move is None:
                return s, found
            s, v = self.step(s, move)
            if v:
                found += v

    # -- reporting --------------------------------------------------------------------------------

    def labels(self, path: list[tuple[State, Move]]) -> list[str]:
        """A path's labels: each move as ``World.label`` names it, with the forced moves after it."""
        out = []
        for parent, move in path:
            w = self.materialize(parent)
            label = w.label(move)
            w.apply(move)
            out.append("; ".join([label, *w.settle()]) if self.reduce else label)
        return out


def _rows(store: MemoryStore, names: list[str]) -> tuple[tuple[int | None, int | None], ...]:
    inflight, applied = store._inflight, store._applied
    return tuple(((inflight[n][0] if n in inflight else None), applied.get(n)) for n in names)


def _clean(mon: Monitor) -> Monitor:
    """A representative monitor: the verdicts belong to the move that found them, not to the part."""
    if not mon.violations:
        return mon
    rep = copy.copy(mon)
    rep.violations, rep.seen = [], set()
    return rep


def search(config: Any, world_type: Any, max_states: int, look_for: str, max_seconds: float | None,
           progress: Any) -> tuple[int, int, bool, Violation | None, list[str], Violation | None, list[str]]:
    """Breadth first from the start. Returns (states, transitions, complete, the violation of
    ``look_for`` found and its path, or else the first other violation and its path)."""
    started = time.perf_counter()
    eng = Search(config, world_type)
    root = world_type(config)
    root.apply(("tick", "planner"))  # the planner's first tick: load the (empty) store
    if config.reduce:
        root.settle()
    s0 = eng.encode(root)
    seen: dict[State, tuple[State | None, Move | None]] = {s0: (None, None)}
    queue: deque[tuple[State, int]] = deque([(s0, 0)])
    transitions = 0
    other: tuple[Violation, State] | None = None
    reduce = config.reduce
    step, settle, reduced_moves = eng.step, eng.settle, eng.reduced_moves
    while queue:
        s, depth = queue.popleft()
        for move in reduced_moves(s):
            nxt, found = step(s, move)
            if reduce:
                nxt, more = settle(nxt)
                if more:
                    found += more
            transitions += 1
            if nxt in seen:
                continue
            seen[nxt] = (s, move)
            if found:
                v = found[0]
                if look_for in ("any", v.short):
                    return len(seen), transitions, False, v, _path(eng, seen, nxt), None, []
                if other is None:
                    other = (v, nxt)
            n = len(seen)
            stop = n >= max_states
            if not n % 20_000:
                elapsed = time.perf_counter() - started
                if progress is not None:
                    progress(n, transitions, depth + 1, elapsed)
                stop = stop or (max_seconds is not None and elapsed > max_seconds)
            if stop:
                ov, op = (other[0], _path(eng, seen, other[1])) if other else (None, [])
                return len(seen), transitions, False, None, [], ov, op
            queue.append((nxt, depth + 1))
    ov, op = (other[0], _path(eng, seen, other[1])) if other else (None, [])
    return len(seen), transitions, True, None, [], ov, op


def _path(eng: Search, seen: dict[State, tuple[State | None, Move | None]], s: State) -> list[str]:
    steps: list[tuple[State, Move]] = []
    cur: State | None = s
    while cur is not None:
        parent, move = seen[cur]
        if parent is not None and move is not None:
            steps.append((parent, move))
        cur = parent
    return eng.labels(list(reversed(steps)))


__all__ = ["Search", "search"]
