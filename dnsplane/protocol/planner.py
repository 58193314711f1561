"""The planner: health observations in, numbered plans out.

Guarantees:
- health starts unknown. The store keeps the health the planner last acted on (sent
  with each ``Publish``, read back with ``DesiredLoaded``); a restarted planner starts
  from it, so a target known down before a restart is not served again after it;
- an endpoint is not planned until each of its checked targets has been observed
  since the planner started, or ``health_grace`` seconds have passed (then the kept
  health stands; a target with none kept is unknown and counts as healthy: fail
  open). Its records meanwhile stay as the store and the enactors hold them;
- a target's first known observation decides an unknown state; from a known state
  it changes only after ``rise`` consecutive good or ``fall`` consecutive bad
  observations (hysteresis). An unknown observation (a check that failed for a
  reason on dnsplane's side) counts toward neither: unknown never moves weight.
  Targets without a health check are always healthy;
- weights are proportional to the capacity of the healthy targets;
- when every target of an endpoint is unhealthy it fails open (keeps them all)
  or, with ``fail_open: false``, keeps what it last published: it never plans an
  empty record set (I1), and never fewer than ``min_targets`` members;
- one generation never moves more than ``max_weight_shift`` of an endpoint's
  weight; the rest follows in later generations;
- a plan holds only the endpoints whose content changed, and a new generation
  is published only when something changed;
- generations come from the store's compare-and-swap on the head: when another
  planner published first, this one reloads and plans again.
- an operator's dials (``DialsChanged``: ``dnsplane pin`` and ``drain``, see ``model.Dial``) shape
  the goal until they expire (checked at each ``Tick``, on the events' clock): a pinned endpoint is
  served from its pinned targets only, a drained target leaves its endpoints; the guards above still
  hold (``serving``): never empty, never fewer healthy targets than ``min_targets`` (a drain that would
  go below is not applied there, and ``kept_in`` says where), and the shift limit paces the change;
- with a zone guard (``model.ZoneGuard``, the fleet file's ``guard:``), a plan that would change more
  of the published endpoints at once than it allows is not published but held (``hold``): planned
  again at every tick (it may shrink below the limit, and go out), and published once an operator
  confirms it (``HoldConfirmed`` for the generation it would be) or the guard's ``release_after`` has
  passed since it was first held;
- a ``FleetChanged`` event (a fleet file reloaded and validated whole) replaces the
  fleet: new and changed endpoints are planned at the next tick, endpoints gone from
  it are planned no more, and a target removed from an endpoint leaves it at once
  (the shift limit paces only the targets that remain).

Cost: a tick recomputes only the endpoints of targets whose state changed
(and endpoints still moving toward their goal), not the whole fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import assert_never

from dnsplane.errors import InvalidPlan
from dnsplane.model import (
    NO_GENERATION,
    WEIGHT_SCALE,
    Dial,
    Endpoint,
    EndpointKey,
    Generation,
    HealthRecord,
    Member,
    RecordSet,
    Target,
    ZoneGuard,
    validate_record_set,
)
from dnsplane.protocol.identity import CONFIG, NOTE
from dnsplane.protocol.messages import (
    NOTHING,
    DesiredLoaded,
    DialsChanged,
    Effect,
    Event,
    Failed,
    FleetChanged,
    HeadPlanRead,
    HealthObserved,
    HoldConfirmed,
    LoadDesired,
    Log,
    Publish,
    PublishConflict,
    Published,
    ReadHeadPlan,
    Step,
    Tick,
    effects,
    request,
)


@dataclass
class TargetHealth:
    """What the planner knows of one target's health.

    ``healthy`` is None while unknown: never observed since this planner started and nothing
    kept by the store. The first known observation of an unknown target decides its state
    (hysteresis filters noise around a known state; from unknown there is none to hold). From a
    known state, a flip needs ``rise`` good or ``fall`` bad observations in a row. An unknown
    observation (``ok`` None) changes nothing: not the state, not the streaks.

    ``observed``: a known observation arrived since this planner started (a state restored from
    the store is not one). ``decided``: the direction of the newest streak that reached its
    threshold since this planner started, so a state restored after the first observations
    (the store read late) is rebased exactly as if it had been restored first.
    """

    healthy: bool | None = None
    good_streak: int = 0
    bad_streak: int = 0
    last_detail: str = field(default="", metadata=NOTE)
    last_seen: float | None = field(default=None, metadata=NOTE)
    last_result: str = ""  # "ok" | "down" | "unknown": the newest observation, for status
    observed: bool = False
    decided: bool | None = None
    since: float | None = None  # when ``healthy`` was last set

    def observe(self, ok: bool | None, rise: int, fall: int, now: float | None = None) -> bool:
        """Record one observation; return True when the state changed (from unknown, or flipped)."""
        self.last_result = "unknown" if ok is None else "ok" if ok else "down"
        if ok is None:
            return False
        self.observed = True
        if ok:
            self.good_streak += 1
            self.bad_streak = 0
            if self.good_streak >= rise:
                self.decided = True
        else:
            self.bad_streak += 1
            self.good_streak = 0
            if self.bad_streak >= fall:
                self.decided = False
        if self.healthy is None:
            self.healthy, self.since = ok, now
            return True
        if ok != self.healthy and (self.good_streak >= rise if ok else self.bad_streak >= fall):
            self.healthy, self.since = ok, now
            return True
        return False

    def restore(self, kept: HealthRecord) -> bool:
        """Start from the state the store kept, as if it had been restored before this run's
        observations; return True when the state changed."""
        before = self.healthy
        state = kept.healthy if not self.observed or self.decided is None else self.decided
        if state != before:
            self.healthy = state
            self.since = kept.since if state == kept.healthy else self.since
        return state != before


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """What the planner knows of one target, as ``status`` and ``instance.json`` show it."""

    healthy: bool | None  # the state it acts on; None: unknown
    check: str  # the newest observation: "ok", "down" or "unknown" ("" before the first)
    detail: str  # what the newest check said


class PlannerPhase(Enum):
    """Where the planner stands with the store, and what it waits for (``busy``: LOADING or PUBLISHING)."""

    UNSYNCED = "the store's plans not loaded (at start, or after a publish conflicted): a Tick loads them"
    LOADING = "the store's head and plans (LoadDesired)"
    IDLE = "in sync with the store: a Tick plans what changed"
    PUBLISHING = "a plan's publication (Publish)"
    CHECKING = "the plan at the store's head (ReadHeadPlan): is it the one this planner knows"


HEAD_CHECK = 60.0  # seconds between an idle planner's checks that the plan at the store's head is its own

# Python 3.11 reads an enum member through its class slowly (``EnumType.__getattr__``): the paths the
# simulator runs at every step read these module constants.
_UNSYNCED, _LOADING, _IDLE, _PUBLISHING, _CHECKING = (PlannerPhase.UNSYNCED, PlannerPhase.LOADING, PlannerPhase.IDLE,
                                                      PlannerPhase.PUBLISHING, PlannerPhase.CHECKING)


NO_PIN: frozenset[str] = frozenset()


def serving(endpoint: Endpoint, up: Callable[[str], bool], pinned: frozenset[str] = NO_PIN,
            drained: frozenset[str] = NO_PIN) -> tuple[tuple[Target, ...], list[Target], list[Target]]:
    """The operators' dials applied to ``endpoint``: (the targets it may be served from: all, or the
    pinned ones; the healthy ones among them, drained ones out; the drained ones kept in by the guard,
    because without them fewer than the floor, ``min_targets`` and never none, would be healthy).

    ``up(target_id)``: healthy or unknown. A pin that names none of the endpoint's targets (a fleet
    reloaded since) is void. ``dnsplane drain`` refuses a drain that this keeps in anywhere."""
    targets = endpoint.targets
    if pinned:
        ours = tuple(t for t in targets if t.id in pinned)
        targets = ours or targets
    healthy = [t for t in targets if up(t.id)]
    kept_in: list[Target] = []
    if drained:
        staying = [t for t in healthy if t.id not in drained]
        floor = max(1, endpoint.policy.min_targets)
        if len(staying) < floor:
            going = sorted((t for t in healthy if t.id in drained), key=lambda t: (-t.capacity, t.id))
            kept_in = going[: floor - len(staying)]
            staying += kept_in
        healthy = [t for t in healthy if t in staying]
    return targets, healthy, kept_in


def goal_weights(endpoint: Endpoint, health: dict[str, TargetHealth], pinned: frozenset[str] = NO_PIN,
                 drained: frozenset[str] = NO_PIN, kept_in: list[Target] | None = None) -> dict[str, int] | None:
    """Weights the endpoint should have now, or None for "keep what was published". ``kept_in`` gets the
    drained targets the floor keeps in (``serving``)."""
    # unknown (never observed, nothing kept) counts as healthy: fail open, as before health was known
    def up(tid: str) -> bool:
        return (h := health.get(tid)) is None or h.healthy is not False

    if pinned or drained:
        targets, healthy, kept = serving(endpoint, up, pinned, drained)
        if kept_in is not None:
            kept_in.extend(kept)
    else:
        targets = endpoint.targets
        healthy = [t for t in targets if up(t.id)]
    if not healthy:
        if not endpoint.policy.fail_open:
            return None
        healthy = list(targets)  # fail open, as Route 53 does
    if len(healthy) < endpoint.policy.min_targets:
        spare = sorted((t for t in targets if t not in healthy), key=lambda t: (-t.capacity, t.id))
        healthy += spare[: endpoint.policy.min_targets - len(healthy)]
    total = sum(t.capacity for t in healthy)
    return {t.id: max(1, round(WEIGHT_SCALE * t.capacity / total)) for t in healthy}


def limit_shift(old: dict[str, int], goal: dict[str, int], max_shift: float) -> dict[str, int]:
    """Move from ``old`` toward ``goal`` by at most ``max_shift`` of the total weight."""
    if not old or max_shift >= 1.0:
        return goal
    old_total = sum(old.values()) or 1
    goal_total = sum(goal.values()) or 1
    ids = set(old) | set(goal)
    old_share = {i: old.get(i, 0) / old_total for i in ids}
    goal_share = {i: goal.get(i, 0) / goal_total for i in ids}
    shift = sum(abs(goal_share[i] - old_share[i]) for i in ids) / 2
    if shift <= max_shift + 1e-9:
        return goal
    step = max_shift / shift
    out = {}
    for i in sorted(ids):
        share = old_share[i] + (goal_share[i] - old_share[i]) * step
        weight = round(share * WEIGHT_SCALE)
        if weight > 0:
            out[i] = weight
    return out or goal


def render(endpoint: Endpoint, weights: dict[str, int]) -> RecordSet:
    by_id: dict[str, Target] = {t.id: t for t in endpoint.targets}
    members = [Member(tid, by_id[tid].addresses, w) for tid, w in weights.items() if w > 0]
    return RecordSet.of(endpoint.ttl, members, endpoint.policy.answer)


@dataclass(frozen=True, slots=True)
class Hold:
    """A plan the zone guard holds: it would be published as ``generation`` and change ``changed`` of the
    ``existing`` published endpoints; held since ``since``."""

    generation: Generation
    since: float
    changed: int
    existing: int


@dataclass
class Planner:
    name: str = field(metadata=CONFIG)
    zone: str = field(metadata=CONFIG)
    endpoints: tuple[Endpoint, ...] = field(metadata=CONFIG)
    head: Generation = NO_GENERATION
    phase: PlannerPhase = PlannerPhase.UNSYNCED
    health: dict[str, TargetHealth] = field(default_factory=dict)
    published: dict[EndpointKey, RecordSet] = field(default_factory=dict)
    dirty: set[EndpointKey] = field(default_factory=set)
    inflight: tuple[tuple[EndpointKey, RecordSet], ...] = ()
    by_target: dict[str, list[Endpoint]] = field(default_factory=dict, metadata=CONFIG)
    by_key: dict[EndpointKey, Endpoint] = field(default_factory=dict, metadata=CONFIG)
    # Health gating: an endpoint is not planned until each of its checked targets has been observed
    # or ``health_grace`` seconds have passed since the planner's first event (``started``).
    health_grace: float = 0.0
    started: float | None = None
    now: float = 0.0  # the newest event's time
    gate_open: bool = False  # the grace is over: nothing is held any more
    kept: dict[str, HealthRecord] = field(default_factory=dict)  # the health the store holds
    unsaved: set[str] = field(default_factory=set)  # targets whose acted-on health the store lacks
    saving: tuple[tuple[str, HealthRecord], ...] = ()  # sent with the Publish in flight
    # when the plan at ``head`` was created, as the store said: what the next Publish expects there (a store
    # put back to a backup, or lifted by AdvanceHead, shows the number under content this planner never saw)
    head_at: float | None = None
    # An idle planner with nothing to publish asks the store every ``head_check`` seconds whether the plan at
    # its head is still the one it knows (a store put back to a backup under it: it reloads); 0: never
    head_check: float = field(default=HEAD_CHECK, metadata=CONFIG)
    checked_at: float | None = None  # when it last knew the head was its own (a publish, a load, a check)
    # The operators' pins and drains (``DialsChanged``), and what of them is in force at ``now``: pinned
    # targets per endpoint, drained targets, and when the next one in force expires (checked at each Tick)
    dials: tuple[Dial, ...] = ()
    pins: dict[EndpointKey, frozenset[str]] = field(default_factory=dict)
    drains: frozenset[str] = NO_PIN
    dials_expire: float | None = None
    kept_in: dict[str, tuple[EndpointKey, ...]] = field(default_factory=dict, metadata=NOTE)  # drains held back
    zone_guard: ZoneGuard | None = field(default=None, metadata=CONFIG)
    hold: Hold | None = None  # the plan the zone guard holds, if any
    confirmed: Generation | None = None  # an operator confirmed the held plan of this generation

    def __post_init__(self) -> None:
        self._index()
        self.dirty = set(self.by_key)

    @classmethod
    def from_snapshot(cls, name: str, zone: str, endpoints: tuple[Endpoint, ...], head: Generation,
                      published: Mapping[EndpointKey, RecordSet],
                      health: Mapping[str, bool | None] | None = None) -> Planner:
        """A planner in sync with a snapshot of the store: ``published`` is the content at ``head``,
        ``health`` what is known of targets (True up, False down, None unknown; a target not in it is
        unknown too, and counts as healthy). It plans on from there as one that had loaded the
        snapshot: ``goal`` is what it would publish now (``dnsplane plan``), its next Tick publishes
        what differs from ``published``."""
        planner = cls(name, zone, endpoints)
        planner.phase = _IDLE
        planner.head = head
        planner.published = dict(published)
        planner.health = {tid: TargetHealth(healthy=ok) for tid, ok in (health or {}).items()}
        return planner

    @property
    def synced(self) -> bool:
        """It has loaded the store's plans (and no publish has conflicted since)."""
        phase = self.phase
        return phase is _IDLE or phase is _PUBLISHING or phase is _CHECKING

    @property
    def busy(self) -> bool:
        """It waits for a reply, and ignores its ticks meanwhile."""
        phase = self.phase
        return phase is _LOADING or phase is _PUBLISHING or phase is _CHECKING

    def health_snapshot(self) -> dict[str, TargetSnapshot]:
        """What it knows of each target it has health for, by target id."""
        # over a copy: the runtime reads it while the planner may be handling an event in another thread
        return {tid: TargetSnapshot(h.healthy, h.last_result, h.last_detail) for tid, h in list(self.health.items())}

    def reset(self) -> None:
        """Forget everything but the health observations, as a restarted process that kept them: the
        state of a fresh planner of the same fleet and settings, which loads the store again at its next
        Tick."""
        fresh = Planner(self.name, self.zone, self.endpoints, health_grace=self.health_grace,
                        head_check=self.head_check, zone_guard=self.zone_guard)
        fresh.health = self.health
        fresh.dials, fresh.pins, fresh.drains = self.dials, self.pins, self.drains  # dials are the operators'
        fresh.dials_expire = self.dials_expire
        vars(self).update(vars(fresh))

    def _head_known(self) -> None:
        """The store just said the plan at its head is the one this planner knows: the next check is due
        ``head_check`` seconds from now (with no check, nothing to note)."""
        if self.head_check > 0:
            self.checked_at = self.now

    def _settled(self) -> None:
        """A reply ended the wait: idle, in sync with the store or not as before."""
        self.phase = _IDLE if self.synced else _UNSYNCED

    def _index(self) -> None:
        self.by_key = {}
        by_target: dict[str, list[Endpoint]] = {}
        self.by_target = by_target
        for ep in self.endpoints:
            self.by_key[ep.key] = ep
            for t in ep.targets:
                eps = by_target.get(t.id)
                if eps is None:
                    by_target[t.id] = [ep]
                else:
                    eps.append(ep)

    def handle(self, event: Event) -> Step:
        self.now = event.now
        if self.started is None and not isinstance(event, DialsChanged):
            # the health grace runs from the first event of the run; the dials ``up`` hands over while it
            # starts (before its preflight, which may wait for a server) are not one
            self.started = event.now
        match event:
            case HealthObserved(target_id=tid, ok=ok, now=now, detail=detail):
                return self._on_health(tid, ok, now, detail)
            case FleetChanged(endpoints=endpoints, guard=guard):
                self.zone_guard = guard
                return self._on_fleet_changed(endpoints)
            case DialsChanged(dials=dials):
                self.dials = dials
                return self._dial()
            case HoldConfirmed(generation=generation):
                if self.hold is None or self.hold.generation != generation:
                    return effects(Log("warning", "confirmation of a plan not held: ignored", {
                        "actor": self.name, "confirmed": generation,
                        "held": None if self.hold is None else self.hold.generation}))
                self.confirmed = generation
                return NOTHING
            case Tick():
                return self._on_tick()
            case DesiredLoaded(head=head, desired=desired, health=kept, head_at=head_at):
                self.phase = _IDLE
                self.head, self.head_at = head, head_at
                self._head_known()
                self.published = {k: d.records for k, d in desired.items()}
                self.dirty = set(self.by_key)
                self._restore(kept)
                return self._plan()
            case Published(generation=gen, created_at=created_at):
                self._settled()
                self.head, self.head_at = gen, created_at
                self._head_known()
                for key, rs in self.inflight:
                    self.published[key] = rs
                count = len(self.inflight)
                self.inflight = ()
                for tid, record in self.saving:
                    self.kept[tid] = record
                    if (h := self.health.get(tid)) is not None and h.healthy == record.healthy:
                        self.unsaved.discard(tid)
                self.saving = ()
                return effects(Log("info", "plan published", {"actor": self.name, "generation": gen, "changes": count}))
            case HeadPlanRead(head=head, created_at=created_at):
                if head == self.head and created_at == self.head_at:
                    self.phase = _IDLE
                    self._head_known()
                    return NOTHING
                # Not the plan it published or loaded last: the store was put back to a backup (or lifted
                # past markers of plans it lost), or another planner published. Reload, then plan again.
                self.phase = _LOADING
                return Step((Log("warning", "the plan at the store's head is not the one the planner knows: "
                                 "reloading", {"actor": self.name, "head": head, "known": self.head}),),
                            LoadDesired())
            case PublishConflict():
                # Another planner took the number; reload what it published, then plan again.
                self.phase = _LOADING
                self._requeue_inflight()
                return request(LoadDesired())
            case Failed(error=error):
                self._settled()
                self._requeue_inflight()
                return effects(Log("warning", "planner step failed; will retry", {"actor": self.name, "error": error}))
            case _:
                return NOTHING

    def _on_tick(self) -> Step:
        expire = self.dials_expire
        if expire is not None and self.now >= expire:
            dialled = self._dial()
            return self._on_tick_after_dials().after(dialled.effects)
        return self._on_tick_after_dials()

    def _dial(self) -> Step:
        """Put in force the dials active at ``now``; mark dirty the endpoints whose pins or drains changed."""
        now = self.now
        pins: dict[EndpointKey, frozenset[str]] = {}
        drains: set[str] = set()
        for d in self.dials:
            if d.active(now):
                if d.kind == "pin":
                    pins[EndpointKey.parse(d.subject)] = frozenset(d.targets)
                else:
                    drains.add(d.subject)
        expiries = [d.until for d in self.dials if d.until is not None and d.until > now]
        self.dials_expire = min(expiries, default=None)
        changed_pins = {k for k in set(pins) | set(self.pins) if pins.get(k) != self.pins.get(k)}
        changed_drains = drains ^ self.drains
        if not changed_pins and not changed_drains:
            return NOTHING
        self.pins, self.drains = pins, frozenset(drains)
        self.dirty.update(k for k in changed_pins if k in self.by_key)
        for tid in changed_drains:
            self.dirty.update(ep.key for ep in self.by_target.get(tid, ()))
        return effects(Log("info", "dials in force", {"actor": self.name, "pins": sorted(map(str, pins)),
                                                      "drains": sorted(drains)}))

    def _on_tick_after_dials(self) -> Step:
        phase = self.phase
        if phase is _IDLE:  # the usual case, decided without the match's reads of enum members
            step = self._plan()
            if self.phase is _IDLE and self.head_check > 0:
                if self.checked_at is None:
                    self.checked_at = self.now
                elif self.now - self.checked_at >= self.head_check:
                    self.phase = _CHECKING
                    return Step(step.effects, ReadHeadPlan())
            return step
        match phase:
            case PlannerPhase.UNSYNCED:
                self.phase = _LOADING
                return request(LoadDesired())
            case PlannerPhase.LOADING | PlannerPhase.PUBLISHING | PlannerPhase.CHECKING:
                return NOTHING  # waiting for a reply
            case PlannerPhase.IDLE:
                return self._plan()
            case _:
                assert_never(phase)

    def _requeue_inflight(self) -> None:
        self.dirty.update(k for k, _ in self.inflight)
        self.inflight = ()
        self.unsaved.update(tid for tid, _ in self.saving)  # not saved: sent again with the next publish
        self.saving = ()

    def _restore(self, kept: dict[str, HealthRecord]) -> None:
        """Start from the health the store kept (a restart), for targets this fleet checks."""
        self.kept = dict(kept)
        checked = {t.id for ep in self.endpoints for t in ep.targets if t.check is not None}
        for tid, record in kept.items():
            if tid not in checked:
                continue  # no check any more: such a target is healthy, whatever was kept
            state = self.health.get(tid)
            if state is None:
                state = self.health[tid] = TargetHealth(healthy=record.healthy, since=record.since)
            elif state.restore(record):
                self.dirty.update(ep.key for ep in self.by_target.get(tid, ()))
            if state.healthy != record.healthy:
                self.unsaved.add(tid)
        for tid, state in self.health.items():
            if tid not in kept and state.healthy is not None:
                self.unsaved.add(tid)

    def _grace_over(self) -> Step:
        """One line when the grace ends with checked targets never observed: what they count as."""
        health = self.health
        unseen = sorted({t.id for ep in self.endpoints for t in ep.targets
                         if t.check is not None and ((h := health.get(t.id)) is None or not h.observed)})
        if not unseen:
            return NOTHING
        kept_down = [tid for tid in unseen if (h := health.get(tid)) is not None and h.healthy is False]
        return effects(Log("warning", "health grace over before every target was checked: kept health stands, "
                    "unknown targets count as healthy", {"actor": self.name, "unchecked": len(unseen),
                                                         "examples": unseen[:10], "kept_down": kept_down[:10]}))

    def _held(self, ep: Endpoint) -> bool:
        """True while ``ep`` waits for its targets' first observations (within the grace)."""
        if self.gate_open:
            return False
        if self.started is None or self.now - self.started >= self.health_grace:
            self.gate_open = True
            return False
        health = self.health
        return any(t.check is not None and ((h := health.get(t.id)) is None or not h.observed) for t in ep.targets)

    def _on_fleet_changed(self, endpoints: tuple[Endpoint, ...]) -> Step:
        """Take ``endpoints`` as the fleet from now on (a reloaded fleet file, validated whole).

        | endpoint in the new fleet            | what happens                                        |
        |--------------------------------------|-----------------------------------------------------|
        | new                                  | planned at the next tick once its new targets are   |
        |                                      | observed (at most ``health_grace`` from now), as at |
        |                                      | start; until then unknown                           |
        | changed (ttl, targets, policy, ...)  | planned again at the next tick (shift limit kept)   |
        | unchanged                            | nothing                                             |
        | gone (in the old fleet only)         | no longer planned; its records stay as last         |
        |                                      | written (the enactors and verifier release it)      |

        A target whose health check changed starts again as never observed (its streaks were
        counted against another check, and its endpoints wait for it as for a new target); a
        target in no endpoint any more is forgotten. Nothing is
        published from here: a publish may be in flight, so the next ``Tick`` plans.
        """
        old = self.by_key
        old_checks = {t.id: t.check for ep in self.endpoints for t in ep.targets}
        self.endpoints = tuple(endpoints)
        self._index()
        new_checks = {t.id: t.check for ep in self.endpoints for t in ep.targets}
        added = [k for k in self.by_key if k not in old]
        changed = [k for k, ep in self.by_key.items() if k in old and old[k] != ep]
        removed = [k for k in old if k not in self.by_key]
        for tid in list(self.health):
            if tid not in new_checks or new_checks[tid] != old_checks.get(tid):
                del self.health[tid]
        if any(check is not None and old_checks.get(tid) != check for tid, check in new_checks.items()):
            # Targets checked for the first time: their endpoints wait for those first observations,
            # as at start, for at most ``health_grace`` from now (other targets are observed already).
            self.started, self.gate_open = self.now, False
        self.dirty.difference_update(removed)
        self.dirty.update(added)
        self.dirty.update(changed)
        return effects(Log("info", "fleet changed", {
            "actor": self.name, "endpoints": len(self.by_key), "added": len(added), "changed": len(changed),
            "removed": len(removed),
        }))

    def _on_health(self, tid: str, ok: bool | None, now: float, detail: str) -> Step:
        eps = self.by_target.get(tid)
        if not eps:
            return NOTHING
        state = self.health.get(tid)
        if state is None:  # targets start unknown; state is kept only once observed
            state = self.health[tid] = TargetHealth()
        state.last_seen = now
        state.last_detail = detail
        policy = eps[0].policy
        if not state.observe(ok, policy.rise, policy.fall, now):
            if ok is not None and not self.gate_open:
                self.dirty.update(ep.key for ep in eps)  # a first observation may release an endpoint
            return NOTHING
        self.dirty.update(ep.key for ep in eps)
        # Against what the store will keep once the publish in flight lands (its ``saving``), not what it
        # kept before: a target that flips back while its new state is on its way must be sent again
        kept = next((record for t, record in self.saving if t == tid), None) or self.kept.get(tid)
        if kept is None or kept.healthy != state.healthy:
            self.unsaved.add(tid)
        else:
            self.unsaved.discard(tid)
        verdict = "healthy" if state.healthy else "unhealthy"
        return effects(Log("info", f"target {tid} is {verdict}", {"actor": self.name, "target": tid, "detail": detail}))

    def goal(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, RecordSet]:
        """The content the planner wants for ``keys`` now (after shift limits)."""
        return {key: rs for key, (rs, _) in self._goal(keys).items()}

    def _goal(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, tuple[RecordSet, bool]]:
        """Per key: the content for now, and whether the shift limit held it short of its goal.
        Equal contents are one object (a fleet's endpoints mostly share a few: at 100,000 endpoints a
        record set each was about 300 bytes an endpoint, held in ``published`` and in the plan)."""
        out = {}
        shared: dict[RecordSet, RecordSet] = {}
        pins, drains = self.pins, self.drains
        kept_in: dict[str, list[EndpointKey]] = {}
        for key in keys:
            ep = self.by_key[key]
            pinned = pins.get(key, NO_PIN) if pins else NO_PIN
            kept: list[Target] = []
            weights = goal_weights(ep, self.health, pinned, drains, kept)
            for t in kept:
                kept_in.setdefault(t.id, []).append(key)
            old = self.published.get(key)
            if weights is None:
                if old is not None:
                    continue
                weights = {t.id: t.capacity for t in ep.targets}  # never published: all of them
            limited = weights
            if old is not None and ep.policy.max_weight_shift < 1.0:
                # A target no longer in the endpoint (fleet reloaded, or edited before a restart)
                # leaves at once: it has no definition to render and no health check any more.
                ours = {t.id for t in ep.targets}
                limited = limit_shift({m.target_id: m.weight for m in old.members if m.target_id in ours},
                                      weights, ep.policy.max_weight_shift)
            rs = render(ep, limited)
            out[key] = (shared.setdefault(rs, rs), limited != weights)
        if drains or self.kept_in:
            for tid in drains:
                was = {k for k in self.kept_in.get(tid, ()) if k not in out}
                now_in = was | set(kept_in.get(tid, ()))
                if now_in:
                    self.kept_in[tid] = tuple(sorted(now_in))
                else:
                    self.kept_in.pop(tid, None)
            for tid in [t for t in self.kept_in if t not in drains]:
                del self.kept_in[tid]
        return out

    def _guard_holds(self, changes: list[tuple[EndpointKey, RecordSet]], logs: list[Effect]) -> bool:
        """Whether the zone guard holds ``changes`` back (they stay dirty: planned again at the next tick).
        Released by a confirmation of the generation they would be, or once held ``release_after``."""
        guard = self.zone_guard
        assert guard is not None
        published = self.published
        existing = len(published)
        changed = sum(1 for key, _ in changes if key in published)
        if not guard.trips(changed, existing):
            if self.hold is not None:
                logs.append(Log("info", "zone guard: the held plan shrank within the limit", {
                    "actor": self.name, "changed": changed, "existing": existing}))
            self.hold = None
            return False
        generation = Generation(self.head + 1)
        hold = self.hold
        if hold is None or hold.generation != generation:
            hold = Hold(generation, self.now, changed, existing)
            logs.append(Log("warning", "zone guard: plan held", {
                "actor": self.name, "generation": generation, "changed": changed, "existing": existing,
                "limit": guard.describe(), "release_after": guard.release_after}))
        else:
            hold = Hold(generation, hold.since, changed, existing)
        self.hold = hold
        if self.confirmed == generation:
            why = "confirmed"
        elif guard.release_after is not None and self.now - hold.since >= guard.release_after:
            why = "released after its window"
        else:
            self.dirty.update(key for key, _ in changes)
            return True
        logs.append(Log("warning", f"zone guard: held plan {why}", {"actor": self.name, "generation": generation,
                                                                   "changed": changed}))
        self.hold = None
        self.confirmed = None
        return False

    def _plan(self) -> Step:
        if not self.dirty:
            return NOTHING
        keys, self.dirty = self.dirty & self.by_key.keys(), set()  # a reload may have removed some
        logs: list[Effect] = []
        if not self.gate_open:
            held = {k for k in keys if self._held(self.by_key[k])}
            if held:  # not planned before its targets are observed: planned again at each tick
                self.dirty |= held
                keys -= held
            elif self.gate_open and self.health_grace > 0:  # the grace ran out just now
                logs.extend(self._grace_over().effects)
        changes: list[tuple[EndpointKey, RecordSet]] = []
        for key, (rs, held_back) in self._goal(keys).items():
            old = self.published.get(key)
            if old is not None and old.digest == rs.digest:
                continue
            try:
                validate_record_set(key, rs, self.zone)
            except InvalidPlan as err:
                logs.append(Log("error", "planned record set refused", {"actor": self.name, "error": str(err)}))
                continue
            changes.append((key, rs))
            if held_back:  # the shift limit held it back: keep moving on later ticks
                self.dirty.add(key)
        if not changes:
            self.hold = None  # nothing to publish: what was held shrank to nothing
            return Step(tuple(logs))
        if self.zone_guard is not None and self._guard_holds(changes, logs):
            return Step(tuple(logs))
        changes.sort()
        self.inflight = tuple(changes)
        self.phase = _PUBLISHING
        health = self.health
        self.saving = tuple(
            (tid, HealthRecord(h.healthy, h.since if h.since is not None else self.now))
            for tid in sorted(self.unsaved) if (h := health.get(tid)) is not None and h.healthy is not None
        )
        return Step(tuple(logs), Publish(self.head, self.inflight, self.saving, self.head_at))
