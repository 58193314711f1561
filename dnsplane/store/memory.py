"""An in-memory plan store with exactly the semantics of ``SqliteStore``.

Guarantees:
- the same results as ``SqliteStore`` for every call sequence
  (tests/store/test_store_conformance.py runs both side by side);
- deterministic: no clock reads, no randomness, no threads started; time comes
  in as the ``now`` arguments, so the simulator can drive it on its own clock;
- ``changed_between`` costs O(changes in range), ``desired`` for k keys O(k log n);
- safe to call from several threads (one lock around every call).

Limits:
- nothing survives the process; one instance is one store (no sharing between
  processes). Use ``SqliteStore`` for anything that must outlive a run.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from dnsplane.errors import GenerationOutOfRange, InvalidPlan, PlanCollected
from dnsplane.model import (
    MAX_GENERATION,
    NO_GENERATION,
    Desired,
    Dial,
    EndpointKey,
    Generation,
    HealthRecord,
    RecordSet,
)
from dnsplane.store.base import INFLIGHT_TTL, WRITE_ACTIONS, Freeze, JournalEntry, OperatorAction, PlanInfo, Store

log = logging.getLogger(__name__)


def check_unique_keys(changes: Sequence[tuple[EndpointKey, RecordSet]]) -> None:
    """A plan names each endpoint at most once; a second entry is a planner bug."""
    seen: set[EndpointKey] = set()
    for k, _ in changes:
        if k in seen:
            raise InvalidPlan(endpoint=str(k), reason="endpoint appears twice in one plan")
        seen.add(k)


def check_generation(g: int, what: str) -> None:
    """Refuse a head past ``MAX_GENERATION`` (a hand-written marker's ``g=``): stores keep generations
    in 64 bits, and a head at their end would make every later publish overflow."""
    if not 0 <= g <= MAX_GENERATION:
        raise GenerationOutOfRange(generation=g, limit=MAX_GENERATION,
                                   reason=f"{what} refused: no head goes past the generation bound")


class MemoryStore(Store):
    """Plans, in-flight registrations and the journal held in dictionaries."""

    def __init__(self, owner: str = "") -> None:
        self.owner = owner  # the installation's owner id: given (``Store.owner_id``)
        self._lock = threading.Lock()
        self._head = 0
        self._plans: dict[int, PlanInfo] = {}  # insertion order == generation order
        # per key: ascending generations, and what each set (a frozen ``Desired``, built once at publish:
        # every read hands out the same one)
        self._gens: dict[EndpointKey, list[int]] = {}
        self._sets: dict[EndpointKey, list[Desired]] = {}
        # per generation: the keys that still have a change row there (the "generation index")
        self._by_gen: dict[int, dict[EndpointKey, None]] = {}
        self._gen_order: list[int] = []  # ascending keys of _by_gen
        self._multi: set[EndpointKey] = set()  # keys with two or more change rows
        self._inflight: dict[str, tuple[int, float]] = {}
        self._applied: dict[str, int] = {}
        self._lkg: int | None = None
        self._journal: dict[EndpointKey, list[JournalEntry]] = {}
        self._health: dict[str, HealthRecord] = {}
        self._freeze: Freeze | None = None
        self._actions: list[OperatorAction] = []
        self._dials: dict[tuple[str, str], Dial] = {}

    # -- plans -------------------------------------------------------------

    def head(self) -> Generation:
        with self._lock:
            return Generation(self._head)

    def publish(
        self, expect_head: Generation, changes: Sequence[tuple[EndpointKey, RecordSet]], now: float, planner: str,
        expect_at: float | None = None,
    ) -> Generation | None:
        check_unique_keys(changes)
        with self._lock:
            if self._head != expect_head:
                return None
            if expect_at is not None and self._head and self._created_at_unlocked(self._head) != expect_at:
                return None
            g = self._head + 1
            check_generation(g, "publish")
            self._add_plan_unlocked(g, changes, now, planner)
            return Generation(g)

    def oldest_plan(self) -> Generation:
        with self._lock:
            return Generation(next(iter(self._plans), 0))  # insertion order is generation order

    def created_at(self, generation: Generation) -> float | None:
        with self._lock:
            return self._created_at_unlocked(int(generation))

    def _created_at_unlocked(self, g: int) -> float | None:
        info = self._plans.get(g)
        return None if info is None else info.created_at

    def advance_head(self, at_least: Generation, now: float) -> Generation:
        check_generation(at_least, "advance_head")
        with self._lock:
            if self._head < at_least:
                self._add_plan_unlocked(int(at_least), (), now, "advance_head")
            return Generation(self._head)

    def _add_plan_unlocked(
        self, g: int, changes: Sequence[tuple[EndpointKey, RecordSet]], now: float, planner: str
    ) -> None:
        self._head = g
        self._plans[g] = PlanInfo(Generation(g), now, planner, len(changes))
        if not changes:
            return
        index: dict[EndpointKey, None] = {}
        generation = Generation(g)
        for k, rs in changes:
            gens = self._gens.get(k)
            if gens is None:
                self._gens[k] = [g]
                self._sets[k] = [Desired(generation, rs)]
            else:
                gens.append(g)  # g is above every stored generation: the list stays sorted
                self._sets[k].append(Desired(generation, rs))
                self._multi.add(k)
            index[k] = None
        self._by_gen[g] = index
        self._gen_order.append(g)

    def desired(self, keys: Iterable[EndpointKey] | None, at: Generation) -> dict[EndpointKey, Desired]:
        with self._lock:
            out: dict[EndpointKey, Desired] = {}
            for k in self._gens if keys is None else keys:
                d = self._newest_unlocked(k, at)
                if d is not None:
                    out[k] = d
            return out

    def _newest_unlocked(self, k: EndpointKey, at: int) -> Desired | None:
        gens = self._gens.get(k)
        if gens is None:
            return None
        i = bisect.bisect_right(gens, at) - 1
        if i < 0:
            return None
        return self._sets[k][i]

    def content_at(self, pairs: Sequence[tuple[EndpointKey, Generation]]) -> dict[EndpointKey, Desired]:
        with self._lock:
            out = {}
            for k, g in pairs:
                found = self._newest_unlocked(k, g)
                if found is not None:
                    out[k] = found
            return out

    def changed_between(self, after: Generation, upto: Generation) -> dict[EndpointKey, Desired]:
        with self._lock:
            out: dict[EndpointKey, Desired] = {}
            lo = bisect.bisect_right(self._gen_order, after)
            hi = bisect.bisect_right(self._gen_order, upto)
            for g in self._gen_order[lo:hi]:
                for k in self._by_gen[g]:
                    out[k] = self._newest_unlocked(k, upto)  # type: ignore[assignment]  # k has a row <= upto
            return out

    def plans(self) -> list[PlanInfo]:
        with self._lock:
            return list(self._plans.values())

    # -- enactors, verifier, collector --------------------------------------

    def begin(self, actor: str, generation: Generation, now: float) -> None:
        with self._lock:
            if self._plans and generation < (oldest := min(self._plans)):
                raise PlanCollected(generation=generation, oldest=oldest)
            self._inflight[actor] = (int(generation), now)

    def finish(self, actor: str, generation: Generation, now: float) -> None:
        with self._lock:
            self._inflight.pop(actor, None)
            if generation <= self._head:  # else a plan this store never published (``Store.finish``)
                self._applied[actor] = max(self._applied.get(actor, 0), int(generation))

    def set_last_known_good(self, generation: Generation) -> None:
        with self._lock:
            if self._plans and generation < (oldest := min(self._plans)):
                raise PlanCollected(generation=generation, oldest=oldest)
            self._lkg = int(generation)

    def low_watermark(self, now: float) -> Generation:
        with self._lock:
            return self._low_watermark_unlocked(now)

    def _low_watermark_unlocked(self, now: float) -> Generation:
        w = max(self._applied.values(), default=NO_GENERATION)
        for g, since in self._inflight.values():
            if now - since <= INFLIGHT_TTL:
                w = min(w, g)
        if self._lkg is not None:
            w = min(w, self._lkg)
        return Generation(w)

    def collect(self, watermark: Generation, now: float) -> int:
        with self._lock:
            current = self._low_watermark_unlocked(now)
            if current < watermark:
                log.info("collect skipped: watermark %d moved back to %d", watermark, current)
                return 0
            doomed = [g for g in self._plans if g < watermark]
            for g in doomed:
                del self._plans[g]
            for k in list(self._multi):
                gens = self._gens[k]
                keep_from = bisect.bisect_right(gens, watermark) - 1  # newest row <= watermark
                if keep_from <= 0:
                    continue
                for g in gens[:keep_from]:
                    self._drop_index_unlocked(g, k)
                del gens[:keep_from]
                del self._sets[k][:keep_from]
                if len(gens) < 2:
                    self._multi.discard(k)
            return len(doomed)

    def _drop_index_unlocked(self, g: int, k: EndpointKey) -> None:
        index = self._by_gen[g]
        del index[k]
        if not index:
            del self._by_gen[g]
            i = bisect.bisect_left(self._gen_order, g)
            del self._gen_order[i]

    def applied(self) -> dict[str, Generation]:
        with self._lock:
            return {a: Generation(g) for a, g in sorted(self._applied.items())}

    # -- health the planner acted on ------------------------------------------

    def save_health(self, records: Mapping[str, HealthRecord]) -> None:
        with self._lock:
            self._health.update(records)

    def health(self) -> dict[str, HealthRecord]:
        with self._lock:
            return dict(self._health)

    # -- the operator's freeze -----------------------------------------------

    def set_freeze(self, freeze: Freeze | None, action: OperatorAction) -> Freeze | None:
        with self._lock:
            was = self._freeze
            if (was is None) != (freeze is None):
                self._freeze = freeze
                self._actions.append(action)
            return was

    def frozen(self) -> Freeze | None:
        with self._lock:
            return self._freeze

    def operator_actions(self) -> list[OperatorAction]:
        with self._lock:
            return list(self._actions)

    def record_action(self, action: OperatorAction) -> None:
        with self._lock:
            self._actions.append(action)

    def confirmation(self, generation: Generation, since: float) -> OperatorAction | None:
        with self._lock:
            return next((a for a in reversed(self._actions) if a.action == "confirm"
                         and a.subject == str(generation) and a.at >= since), None)

    def set_dial(self, dial: Dial, action: OperatorAction,
                 check: Callable[[list[Dial]], None] | None = None) -> Dial | None:
        with self._lock:
            if check is not None:
                check([self._dials[k] for k in sorted(self._dials)])
            was = self._dials.get((dial.kind, dial.subject))
            self._dials[dial.kind, dial.subject] = dial
            self._actions.append(action)
            return was

    def lift_dial(self, kind: str, subject: str, action: OperatorAction) -> Dial | None:
        with self._lock:
            was = self._dials.pop((kind, subject), None)
            if was is not None:
                self._actions.append(action)
            return was

    def expire_dials(self, now: float, by: str) -> list[Dial]:
        with self._lock:
            gone = [d for d in self._dials.values() if not d.active(now)]
            for d in gone:
                del self._dials[d.kind, d.subject]
                self._actions.append(OperatorAction(now, by, "expired", d.describe(), d.subject))
            return gone

    def dials(self) -> list[Dial]:
        with self._lock:
            return [self._dials[k] for k in sorted(self._dials)]

    # -- journal -----------------------------------------------------------

    def record(self, entries: Sequence[JournalEntry]) -> None:
        with self._lock:
            for e in entries:
                self._journal.setdefault(e.key, []).append(e)

    def history(self, key: EndpointKey) -> list[JournalEntry]:
        with self._lock:
            return list(self._journal.get(key, ()))

    def last_writes(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, JournalEntry]:
        out = {}
        with self._lock:
            for key in keys:
                entry = next((e for e in reversed(self._journal.get(key, ())) if e.action in WRITE_ACTIONS), None)
                if entry is not None:
                    out[key] = entry
        return out

    def recent_journal(self, limit: int) -> list[JournalEntry]:
        with self._lock:
            every = [e for entries in self._journal.values() for e in entries]
        return sorted(every, key=lambda e: e.at)[-limit:] if limit > 0 else []

    # -- copies and identity, for the explorer ------------------------------

    def fork(self, actor_rows: Mapping[str, tuple[int | None, int | None]] | None = None) -> MemoryStore:
        """An independent copy (its own lock), cheap: plans, record sets and journal entries are
        frozen and shared, only the containers are copied. With ``actor_rows`` (actor -> (in-flight
        generation, applied generation), ``None`` where it has none), the copy's in-flight and applied
        rows are exactly those, begun at time 0 (a model checker keeps each actor's rows with the actor)."""
        new = object.__new__(MemoryStore)
        new.owner = self.owner
        new._lock = threading.Lock()
        with self._lock:
            new._head = self._head
            new._plans = dict(self._plans)
            new._gens = {k: list(v) for k, v in self._gens.items()}
            new._sets = {k: list(v) for k, v in self._sets.items()}
            new._by_gen = {g: dict(v) for g, v in self._by_gen.items()}
            new._gen_order = list(self._gen_order)
            new._multi = set(self._multi)
            if actor_rows is None:
                new._inflight = dict(self._inflight)
                new._applied = dict(self._applied)
            else:
                new._inflight = {a: (g, 0.0) for a, (g, _) in actor_rows.items() if g is not None}
                new._applied = {a: done for a, (_, done) in actor_rows.items() if done is not None}
            new._lkg = self._lkg
            new._journal = {k: list(v) for k, v in self._journal.items()}
            new._health = dict(self._health)
            new._freeze = self._freeze
            new._actions = list(self._actions)
            new._dials = dict(self._dials)
        return new

    def last_known_good(self) -> Generation | None:
        """The last-known-good kept by ``set_last_known_good`` (None: never set)."""
        with self._lock:
            return None if self._lkg is None else Generation(self._lkg)

    def restore(self, backup: MemoryStore) -> None:
        """Put ``backup`` (a ``fork`` taken earlier) back in place of everything this store holds, as an
        operator restoring a backup does: every plan published since it was taken is gone, and the head
        it had hands their generations out again (the simulator's ``store_rollback``). Callers holding
        this store keep holding it."""
        copy = backup.fork()
        with self._lock:
            for name in ("_head", "_plans", "_gens", "_sets", "_by_gen", "_gen_order", "_multi", "_inflight",
                         "_applied", "_lkg", "_journal", "_health", "_freeze", "_actions", "_dials"):
                setattr(self, name, getattr(copy, name))

    def actor_rows(self, actors: Sequence[str]) -> tuple[tuple[int | None, int | None], ...]:
        """Each actor's (in-flight generation, applied generation), ``None`` where it has no row."""
        inflight, applied = self._inflight, self._applied
        return tuple((inflight[a][0] if a in inflight else None, applied.get(a)) for a in actors)

    def fingerprint(self, with_plans: bool = False) -> tuple[object, ...]:
        """What the store holds that a later call can read back, as a hashable value: the head, each
        key's change rows (generations and record-set digests), the last-known-good and the health kept
        for a restarted planner; the plans' generations with ``with_plans`` (only ``plans()`` reads them).
        Not the actors' in-flight and applied rows (``actor_rows``: a model checker keeps them with each
        actor), nor plan metadata or the journal, which no decision reads."""
        rows = tuple((k, tuple(self._gens[k]), tuple(d.records.digest for d in self._sets[k]))
                     for k in sorted(self._gens))
        plans = tuple(self._plans) if with_plans else ()
        health = tuple(sorted(self._health.items())) if self._health else ()
        return (self._head, plans, rows, self._lkg, health)
