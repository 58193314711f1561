"""The explorer's state space, compiled: states as tuples of part numbers, every move computed once.

``dnsplane.sim.statespace.World`` is one state as objects (the production actors, the memory store
and provider, the monitor) and its moves. Searching with Worlds means copying and re-running
actor code on every transition: about 100 µs each, 6 million transitions for the default
configuration. ``MemoSpace`` keeps a state as the World's identity instead (``World.fingerprint``:
the store's, provider's and monitor's part numbers, the health script's progress, the faults
used, the last-known-good, each actor's part number, and the enactors' slots, each its part
number with its in-flight and applied rows, sorted for symmetry), and keeps, for each part number,
the object first seen with it (its representative). It is the ``dnsplane.sim.search.Space`` the
explorer searches.

A move reads the mover (its state and pending request) and a few parts of the rest, which
depend on the request it delivers (``REQUEST_READS``: the store's head for ``ReadHead``, the
provider for ``ReadMarkers`` and ``Resolve``, the provider and the monitor for a ``WriteBatch``
and the checks after it, ...) and on the effects the actor answers with (``EFFECT_READS``:
``Begin`` and ``Finish`` read the mover's own rows, ...). Both tables are derived from what each
command class declares it reads and writes (``READS``, ``WRITES``, ``COLLECTS``). Which effects run
is decided by the reply, so by the first set; the first run of a move records what its effects read,
and the result is kept under both sets of values. Nothing else can influence the move: other actors
are not read (the interpreter runs one actor's commands against the store and the provider), time
is always 0 and the configuration is fixed; a request or effect type not in the tables counts
as reading everything. So the first time a move meets given values, a World is built from the
representatives, the move runs with the production code, and the parts it changed are numbered
(``_run``; a move that changes another enactor's rows would be refused there); every later
time the move is a dictionary lookup and a new tuple. The default configuration has about 6
million transitions and needs about 40,000 runs.

Two states with one identity have the same future (that is what the identity's reductions
promise, see dnsplane/sim/explore.py), so running a move on representatives instead of
the objects a path really built gives the same successors, and the same verdicts: the monitor's
part holds everything its checks read (``monitor_part``).

The reductions' forced moves (``World.forced``) and self-loops (``World._returns_here``) are
decided here from the parts' attributes (``_Actor``), in the same order as ``World``, so that
both reach the same settled states (checked by tests/sim/test_explore.py).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, get_args

from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.legacy import CleanedUp
from dnsplane.protocol.messages import (
    Command,
    Effect,
    Event,
    HeadRead,
    LoadChanges,
    LoadDesired,
    ReadHead,
    ReadWatermark,
    Request,
    Resource,
)
from dnsplane.sim.identity import actor_part, monitor_part
from dnsplane.sim.invariants import Monitor, Violation
from dnsplane.sim.statespace import (
    DELIVER,
    HEALTH,
    TICK,
    Config,
    Crash,
    Deliver,
    HealthChange,
    Move,
    RaiseInRequest,
    Tick,
    World,
    actor_faults,
    in_flight,
    moved,
    provider_faults,
)
from dnsplane.sim.vocabulary import HUMAN_FAULTS
from dnsplane.sim.world import COMMANDS, SentBatch
from dnsplane.store.memory import MemoryStore

State = tuple[int, ...]
Rows = tuple[int | None, int | None]  # an enactor's in-flight and applied generations
_FIXED = 6  # store, provider, monitor, health script progress, faults used, last-known-good
_INDEX = {"sid": 0, "pid": 1, "mid": 2, "env": 3, "faults": 4, "lkg": 5}
_HEALTH = HealthChange()


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
    working: int | None  # an enactor's generation in flight (an I3 reference: ``in_flight``)


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
    row: Rows | None
    violations: tuple[Violation, ...]
    moved: bool  # an automated write moved the provider's write token (every other pending SentBatch: ``moved``)


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
    None: (),  # a tick: only the actor
    # a reply in hand (reply latency): feeding it reads only the actor; the effects it answers with are
    # recorded by the first run (``EFFECT_READS``)
    **{e: () for e in (*get_args(Event), CleanedUp)},
    **{c: _parts(c, effect=False) for c in COMMANDS if issubclass(c, Request)},
}
# Effects run after the actor handled the reply: what they read.
EFFECT_READS: dict[type, tuple[str, ...]] = {c: _parts(c, effect=True) for c in COMMANDS if issubclass(c, Effect)}


class MemoSpace:
    """The parts, their representatives and the memo of one search over one configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.template = World(config)
        names = list(self.template.actors)
        self.names = names
        self.enactor_names = [n for n in names if n.startswith("enactor")]
        self.others = [n for n in names if not n.startswith("enactor")]
        self.n_others = len(self.others)
        self.planner_pos = _FIXED + self.others.index("planner")
        nf = _FIXED + self.n_others
        # actor name -> (index in the state, an enactor's slot?); keyed by Any: the hot path indexes it with move[0]
        self.where: dict[Any, tuple[int, bool]] = {n: (_FIXED + i, False) for i, n in enumerate(self.others)}
        self.where.update({n: (nf + j, True) for j, n in enumerate(self.enactor_names)})
        self.layout = [(n, *self.where[n]) for n in names]  # (name, index in the state, an enactor's slot?)
        self.deliver = {n: Deliver(n) for n in names}  # one instance per move: built once, not per state
        self.tick = {n: Tick(n) for n in names}
        self.table: dict[Any, int] = {}
        self.reps: list[Any] = []
        self.memo: dict[Any, _Done] = {}
        self.effects: dict[Any, tuple[str, ...]] = {}  # a move's own reads -> what its effects read
        self.nf = _FIXED + self.n_others
        self.stores: dict[tuple[int, Any], MemoryStore] = {}
        self.watermarks: dict[tuple[int, Any], tuple[int, int]] = {}
        self.heads: dict[int, int] = {}
        self.script_len = len(self.template.script)
        self.reduce = config.reduce
        self.safe = config.protocol == "safe"
        self.misses = 0
        self.moved_ids: dict[int, int] = {}  # an actor's part -> the part once the token its SentBatch read moved

    # -- the search's interface (dnsplane.sim.search.Space) ------------------------------------------

    def start(self) -> State:
        """The planner's first tick (it loads the empty store), settled."""
        root = World(self.config)
        root.apply(self.tick["planner"])
        if self.reduce:
            root.settle()
        return self.encode(root)

    def successor(self, s: State, move: Move) -> tuple[State, tuple[Violation, ...]]:
        """``step``, then the forced moves after it (``settle``, inlined: one call per transition)."""
        s, found = self.step(s, move)
        if self.reduce:
            forced, step = self.forced, self.step
            while (m := forced(s)) is not None:
                nxt, more = step(s, m)
                if more:
                    found += more
                if nxt == s:  # an idle actor whose own code raised on its tick (I8): its tick, forced forever
                    break
                s = nxt
        return s, found

    def describe(self, path: list[tuple[State, Move]]) -> list[str]:
        """A path's text: each move as it ``describe``s itself, with the forced moves after it.

        Each state is materialised with its enactors in sorted order (symmetry), so the enactor a
        name stands for may change from one state to the next; the text follows each enactor from the
        first state on (``shown``: a materialised name -> the name the text gives it), so that
        "enactor-1's ReadHead runs" and "enactor-1 receives HeadRead" are one enactor."""
        out = []
        shown = {n: n for n in self.enactor_names}
        rename = re.compile("|".join(re.escape(n) for n in sorted(self.enactor_names, key=len, reverse=True)))
        for parent, move in path:
            w = self.materialize(parent)
            label = w.describe_and_apply(move)
            text = "; ".join([label, *w.settle()]) if self.reduce else label
            out.append(rename.sub(partial(_shown_as, shown), text) if rename.pattern else text)
            # the next state's enactor j is the one of ``w`` with its slot (any one of equal slots)
            rows = w.store.actor_rows(self.enactor_names)
            slots = {n: self._slot(self._actor_id(w.actors[n], w.pending.get(n)), r)
                     for n, r in zip(self.enactor_names, rows, strict=True)}
            left = list(self.enactor_names)
            nxt = {}
            for name, slot in zip(self.enactor_names, sorted(slots.values()), strict=True):
                match = next(n for n in left if slots[n] == slot)
                left.remove(match)
                nxt[name] = shown[match]
            shown = nxt
        return out

    # -- parts ------------------------------------------------------------------------------------

    def _intern(self, part: Any, rep: Any) -> int:
        n = self.table.get(part)
        if n is None:
            n = self.table[part] = len(self.reps)
            self.reps.append(rep)
        return n

    def _actor_id(self, actor: Any, pending: Any) -> int:
        part = ("actor", actor_part(actor, pending))
        n = self.table.get(part)
        if n is None:
            busy = bool(getattr(actor, "busy", False))
            idle = (pending is None and not busy and bool(getattr(actor, "synced", False))
                    and not getattr(actor, "dirty", True))
            rep = _Actor(actor, pending, type(actor), busy, None if pending is None else type(pending),
                         int(getattr(actor, "applied_upto", 0) or 0), int(getattr(actor, "collected_below", 0) or 0),
                         idle, in_flight(actor, pending))
            n = self._intern(part, rep)
        return n

    def _slot(self, aid: int, row: Rows) -> int:
        part = ("slot", aid, row)
        n = self.table.get(part)
        if n is None:
            n = self._intern(part, (aid, row))
        return n

    def encode(self, w: World) -> State:
        """A World's state (every part numbered; a new part's object becomes its representative)."""
        sid = self._intern(("store", w.store_part()), w.store)
        pid = self._intern(("provider", w.provider_part()), w.provider)
        mid = self._intern(("monitor", monitor_part(w.monitor)), _clean(w.monitor))
        out = [sid, pid, mid, w.env, w.faults, w.lkg]
        out.extend(self._actor_id(w.actors[n], w.pending.get(n)) for n in self.others)
        rows = w.store.actor_rows(self.enactor_names)
        out.extend(sorted(self._slot(self._actor_id(w.actors[n], w.pending.get(n)), r)
                          for n, r in zip(self.enactor_names, rows, strict=True)))
        return tuple(out)

    def _store(self, sid: int, rows: tuple[Rows, ...]) -> MemoryStore:
        """The store of ``sid`` with these enactor rows (built once; worlds copy it before writing)."""
        key = (sid, rows)
        store = self.stores.get(key)
        if store is None:
            store = self.stores[key] = self.reps[sid].fork(dict(zip(self.enactor_names, rows, strict=True)))
        return store

    def materialize(self, s: State) -> World:
        """A World in state ``s``, built from the representatives (enactor slots in sorted order)."""
        reps = self.reps
        slots = [reps[x] for x in s[_FIXED + self.n_others:]]
        by_name = dict(zip(self.others, s[_FIXED:_FIXED + self.n_others], strict=True))
        by_name.update(zip(self.enactor_names, (aid for aid, _ in slots), strict=True))
        actors, pending = {}, {}
        for name in self.names:
            rep: _Actor = reps[by_name[name]]
            actors[name] = rep.actor
            if rep.pending is not None:
                pending[name] = rep.pending
        store = self._store(s[0], tuple(row for _, row in slots))
        return self.template.with_parts(actors, pending, store, reps[s[1]], reps[s[2]], s[3], s[4], s[5])

    # -- moves ------------------------------------------------------------------------------------

    def _actors(self, s: State) -> list[tuple[str, _Actor, Rows | None]]:
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

    def _all_moves(self, s: State) -> list[Move]:
        """``World.moves`` on the parts (same moves, same order)."""
        out: list[Move] = []
        acts = self._actors(s)
        deliver, tick = self.deliver, self.tick
        for name, a, _ in acts:
            if a.pending is not None:
                out.append(deliver[name])
            elif not a.busy:
                out.append(tick[name])
        if s[3] < self.script_len:
            out.append(_HEALTH)
        if s[4] < self.config.faults:
            for name, a, _ in acts:
                out += actor_faults(name, a.pending)
            out += provider_faults(self.reps[s[1]], self.template.keys, self.config.fence_window)
        return out

    def forced(self, s: State) -> Move | None:
        """``World.forced`` on the parts' attributes (same order, same conditions)."""
        if not self.reduce or s[4] < self.config.faults:
            return None
        acts = self._actors(s)
        for name, a, _ in acts:
            if a.pending is None and not a.busy and name != "planner":
                return self.tick[name]
        head = self._head(s[0])
        for name, a, row in acts:
            if a.ptype is LoadChanges and a.kind is Enactor and row is not None:
                upto = a.pending.upto
                if row[0] is not None and row[0] >= upto and upto <= head:
                    return self.deliver[name]
        planner: _Actor = self.reps[s[self.planner_pos]]
        if planner.planner_idle and s[3] < self.script_len:
            return _HEALTH
        if planner.planner_idle and self.safe:
            for name, a, _ in acts:
                if (a.ptype is LoadDesired and name == "verifier") or (a.ptype is ReadHead and head > a.applied_upto) \
                        or (a.ptype is HeadRead and a.pending.head == head > a.applied_upto):
                    return self.deliver[name]
        return None

    def moves(self, s: State) -> list[Move]:
        """``World.reduced_moves`` on the parts: the forced move alone, or every move but self-loops."""
        if self.reduce and s[4] >= self.config.faults:
            f = self.forced(s)
            if f is not None:
                return [f]
            return [m for m in self._all_moves(s) if not self._returns_here(s, m)]
        return self._all_moves(s)

    def _returns_here(self, s: State, move: Move) -> bool:
        kind = move.kind
        if kind == TICK:
            if move[0] != "planner":
                return False
            p = self.reps[s[self.planner_pos]].actor
            return bool(p.synced and not p.dirty)
        if type(move) is not Deliver or not self.config.merge_local:
            return False
        pos, enactor = self.where[move.actor]
        reps = self.reps
        a: _Actor = reps[reps[s[pos]][0]] if enactor else reps[s[pos]]
        if a.ptype is ReadHead and a.kind is Enactor:
            return self._head(s[0]) <= a.applied_upto
        if a.ptype is ReadWatermark and a.kind is Collector:
            w, oldest = self._watermark(s)
            return w <= a.collected_below and oldest >= w
        return False

    def _head(self, sid: int) -> int:
        h = self.heads.get(sid)
        if h is None:
            h = self.heads[sid] = int(self.reps[sid].head())
        return h

    def _rows_of(self, s: State) -> tuple[Rows, ...]:
        reps = self.reps
        return tuple(reps[x][1] for x in s[_FIXED + self.n_others:])

    def _watermark(self, s: State) -> tuple[int, int]:
        """The store's low watermark and its oldest plan (what a collector's ``WatermarkRead`` says)."""
        key = (s[0], self._rows_of(s))
        found = self.watermarks.get(key)
        if found is None:
            store = self._store(*key)
            found = self.watermarks[key] = (int(store.low_watermark(0.0)), int(store.oldest_plan()))
        return found

    # -- applying a move --------------------------------------------------------------------------

    def step(self, s: State, move: Move) -> tuple[State, tuple[Violation, ...]]:
        """The successor of ``s`` by ``move`` (not settled), and what the checks found on the way.

        Memoised in two steps: the move's own reads (``REQUEST_READS`` of the mover's pending
        request) decide the reply and so which effects run; the first run records their reads
        (``EFFECT_READS``), and the result is kept under both."""
        reps = self.reps
        kind = move.kind
        row = None
        if kind in HUMAN_FAULTS:
            reads: tuple[str, ...]
            pos, aid, reads = -1, -1, ("pid", "mid", "faults")
        else:
            pos, enactor = self.where["planner" if kind == HEALTH else move[0]]  # move[0]: the actor moved
            if enactor:
                aid, row = reps[s[pos]]
            else:
                aid = s[pos]
            if kind == TICK:
                reads = ()
            elif kind == HEALTH:
                reads = ("env",)
            else:
                reads = REQUEST_READS.get(reps[aid].ptype, EVERYTHING)
                if kind != DELIVER:  # a crash or a raise; before it ran the reply is Failed, whatever the state
                    assert isinstance(move, Crash | RaiseInRequest)
                    reads = (*reads, "faults") if move.after else ("faults",)
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
        if done.moved:
            self._token_moved(out, pos)
        if row is not None or done.moved:
            nf = self.nf
            out[nf:] = sorted(out[nf:])
        return tuple(out), done.violations

    def _token_moved(self, out: list[int], pos: int) -> None:
        """``World._token_moved`` on the parts: every actor but the mover (at ``pos``) that holds a
        ``SentBatch`` whose token had not moved gets the same batch with ``moved`` set."""
        reps = self.reps
        for i in range(_FIXED, len(out)):
            if i == pos:
                continue
            if i >= self.nf:
                aid, row = reps[out[i]]
                new = self._moved(aid)
                if new != aid:
                    out[i] = self._slot(new, row)
            else:
                out[i] = self._moved(out[i])

    def _moved(self, aid: int) -> int:
        new = self.moved_ids.get(aid)
        if new is None:
            a: _Actor = self.reps[aid]
            p = a.pending
            new = (self._actor_id(a.actor, moved(p)) if type(p) is SentBatch and p.has_token and not p.moved
                   else aid)
            self.moved_ids[aid] = new
        return new

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
        self.misses += 1
        w = self.materialize(s)
        token = w.provider.write_token() if self.config.fence_window else None  # only a SentBatch reads it
        w.apply(move)
        own = w.owned
        sid = self._intern(("store", w.store_part()), w.store) if "store" in own else s[0]
        pid = self._intern(("provider", w.provider_part()), w.provider) if "provider" in own else s[1]
        mid = self._intern(("monitor", monitor_part(w.monitor)), _clean(w.monitor)) if "monitor" in own else s[2]
        rows = w.store.actor_rows(self.enactor_names)
        before = self._rows_of(s)  # in slot order, which is the materialised enactors' order
        mover: str | None = "planner" if type(move) is HealthChange else getattr(move, "actor", None)
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
            tuple(w.monitor.violations) if "monitor" in own else (),
            token is not None and w.wrote_provider and w.provider.write_token() != token)
        return done, tuple(dict.fromkeys(effects))

    def settle(self, s: State) -> tuple[State, tuple[Violation, ...]]:
        """The forced moves from ``s`` to closure (``successor`` does this after every move)."""
        found: tuple[Violation, ...] = ()
        while True:
            move = self.forced(s)
            if move is None:
                return s, found
            s, v = self.step(s, move)
            if v:
                found += v


def _shown_as(shown: dict[str, str], found: re.Match[str]) -> str:
    return shown[found.group(0)]


def _clean(mon: Monitor) -> Monitor:
    """A representative monitor: the verdicts belong to the move that found them, not to the part."""
    if not mon.violations:
        return mon
    rep = copy.copy(mon)
    rep.violations, rep.seen = [], set()
    return rep
