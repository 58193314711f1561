"""Invariant checks I1–I6 and I8 of DESIGN.md, run after every step of a test, a simulation or an exploration.

A ``Monitor`` is told every plan as it is published (so it keeps the content
history even after the collector deleted the plans) and looks at the endpoints
a step touched. A violation carries the invariant's name, the endpoint, the
step, the simulated time and a readable timeline. By default the first one
raises ``InvariantViolation``; with ``collect=True`` each (invariant, endpoint)
is recorded once and the run goes on (the simulator uses this, so that the
legacy protocol's I2 stale write and the I1 empty record it leads to are both
reported).

What each check means, precisely:

- **I1 never empty**: an endpoint that ever held records or a marker has a
  non-empty record set at the provider. *Exemption*: an endpoint whose records
  a human emptied (``exempt``) is not checked until the first write by dnsplane
  lands on it or until ``repair_bound`` seconds have passed, whichever is
  first; still empty after the bound is an I1 violation (the verifier did not
  repair it in time).
- **I2 monotonic**: the marker generation never decreases (a hand edit resets
  the baseline: the human lowered it, not dnsplane; a ``g=`` raised by hand, its seal broken, sets
  none: no plan wrote it), and once an endpoint served
  the content of generation g it never again serves content that only
  generations older than g had. Generations themselves are monotonic too (``on_publish``): each plan
  is published under a generation above every plan published before it (the content history, and
  so every other check, names a plan by its generation; endpoint "the store's head").
- **I3 no live plan deleted**: after every step that deletes plans, for every
  referenced generation g and every endpoint, the store still returns the
  content that generation g had for it (``store.desired(key, g)``). Referenced:
  each endpoint's marker generation, the generation of every enactor in flight
  whose lease is live (computed from actor state by the driver: an enactor
  paused past its lease is no longer in flight; its stale writes are fenced by
  the compare-and-swap), and the verifier's last-known-good.
- **I4 convergence** (``check_converged``): once faults stop, within the stated
  bound, every endpoint holds the newest *valid* content at or below the head,
  with a marker naming that content whose seal holds (``Marker.sealed``: a marker
  edited by hand and never rewritten is not converged, even over the right content).
- **I5 validity**: everything at the provider passes ``validate_record_set``.
- **I6 idempotence** (``check_idempotent``): re-running the enactors when all
  is applied costs zero provider writes.
- **I7 ownership**: dnsplane never writes an endpoint whose state, as last
  seen, was foreign and not adopted: records without a marker, or a marker of
  another owner id (``Ownership.foreign``; ``adopted`` None: every endpoint is
  adopted, the simulator's default world). Checked when a write by dnsplane lands
  (``written``): the state before it is the one the previous step left. An
  endpoint that is foreign and not adopted at the end is exempt from I4 (a person,
  or another installation, made it not dnsplane's; its content is theirs).
  A marker of another owner sets no I2 baseline (another numbering). *One takeover*: a write by
  dnsplane that lands on a marker of another owner takes the endpoint over; at most one per endpoint
  while the verifier lives (``verifier_started``: a restart may take it once more). A second means
  two installations that both adopt it flip it for as long as both run (docs/design.md, "Ownership":
  the second is CONTESTED, left to the other).
- **I8 liveness of the safety net** (``wedged``, called by the drivers): an actor
  that is busy with no request outstanding (no reply will ever come) and is
  alive and not paused never runs again: its ticks are ignored while it is busy.
  That is how the runtime's actors wedged before issue 8 (an exception that is not
  a ``DnsplaneError`` escaped the executor, the loop logged it and the actor's
  ``busy`` flag stayed set). The simulator looks at every tick and at the end;
  the explorer after every move. Its "endpoint" is the actor's name. An actor whose own
  code raises (``raised``: ``handle`` let an exception out, which only a bug does) is
  reported under I8 too: the runtime survives it (``App._handle``: the actor is told its
  round failed, or reset) but the round is lost. *No write refused for good sent again*
  (``fence_refused``, the simulator at each write): a write the store's fence refused
  (``Conflict(newer=N)``: plan N, newer than the write and its fence, changed the endpoint) is
  never sent again by the same writer over the same state with the same fence, generation and content: the store's
  plans only grow, so it would be refused again, and a round that re-sends it spins, doing nothing
  else (no newer plan enacted), until another writer changes the endpoint (a store put back to a
  backup forgets the refusals: the plan that refused may be lost). *The collector's progress*
  (``check_collected``, the simulator at the end, after I6): a collector round run at
  quiet leaves the store no plan below the low watermark. A collector that runs yet never
  collects (it asks for more than the store's re-checked watermark allows) is stopped
  for good as far as storage goes, though no plan it keeps breaks a safety invariant.
- **H1 health kept across restarts** (``check_restart_health``, in scenarios
  with ``health_amnesia``): after the planner restarts (its in-memory health
  gone), it publishes no target that the store kept as down at the restart
  before it has observed that target up, except when every target of the
  endpoint is down (fail open). The simulator then keeps each target's true
  health itself, so that a restart does not also make the world forget it.
  *The grace* (``check_heard_health``, in scenarios with ``health_grace``): a
  planner (re)started less than ``health_grace`` seconds ago publishes no
  target that is down (the world's health) and that it has not heard from
  since it started: it waits for each target's first check before it plans
  the target's endpoints, so it never plans on unknown health (which counts as
  healthy) while the grace lasts.
- **G4 guards before writes** (DESIGN.md point 4; checked at each plan the planner publishes, in a run
  that gave the monitor the fleet and the health the planner acted on: ``guard``). Let *down* be the
  targets the planner acted on as unhealthy (what the store keeps once the plan is published: the
  planner sends the health it acted on with each plan). Then a plan for an endpoint

  * never serves fewer targets than ``min_targets`` (or all of them, when it has fewer): the policy
    floor that DESIGN.md's I1 names, reported as I1;
  * when every target is *down*: with ``fail_open`` serves every target (fails open, as Route 53
    does, never an empty or a shrunken set); without it, is no plan at all for an endpoint planned
    before (it keeps what it last published);
  * moves at most ``max_weight_shift`` of the endpoint's weight from the plan before it (the share of
    the total weight that changed hands, both plans' weights taken as shares of their totals; 1 % of
    the weight of slack for rounding), unless the plan before was invalid (a rogue plan).

  An invalid plan is not the planner's (it refuses one before publishing): the rogue plans of
  ``malformed_plan`` are not checked.
- **Head bound** (``check_head``, reported under I4, since every later publish
  past the bound fails): the store's head never passes the highest generation
  a planner published, nor ``model.MAX_GENERATION``, whatever marker a human
  wrote (a marker out of range is corrupt, never a head). A marker whose
  generation is out of range is not a generation: I2 neither compares it nor
  takes it as a baseline.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter

from dnsplane.errors import DnsplaneError, InvalidPlan
from dnsplane.model import (
    MAX_GENERATION,
    Endpoint,
    EndpointKey,
    Generation,
    HealthRecord,
    Marker,
    Observed,
    RecordSet,
    validate_record_set,
)

I1, I2, I3, I4, I5, I6 = (
    "I1 never empty",
    "I2 monotonic",
    "I3 no live plan deleted",
    "I4 convergence",
    "I5 validity",
    "I6 idempotence",
)
I7 = "I7 ownership"
I8 = "I8 liveness of the safety net"
H1 = "H1 health kept across restarts"
G4 = "G4 guards before writes"
SHIFT_SLACK = 0.01  # G4: share of an endpoint's weight a plan may move past max_weight_shift (rounding)
NOWHERE = EndpointKey("-", "-")
MAX_HEAD = int(MAX_GENERATION)  # the bound as shipped (a test that widens the model's for a run keeps this one)


# per endpoint, the content each plan that changed it gave it: (generation, digest, valid), oldest first
Lineage = dict[EndpointKey, list[tuple[int, str, bool]]]
_GENERATION = itemgetter(0)  # a content history entry's generation (g, digest, valid): what it is sorted by


class InvariantViolation(DnsplaneError):
    fmt = "{invariant} violated for {endpoint} at step {step}: {detail}\n{timeline}"


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    endpoint: str
    step: int
    time: float
    detail: str
    context: tuple[str, ...] = field(default=(), compare=False, repr=False)  # the timeline up to it

    @property
    def short(self) -> str:
        return self.invariant.split()[0]

    def to_json(self, seed: int | None = None) -> dict[str, object]:
        out: dict[str, object] = {"invariant": self.short, "endpoint": self.endpoint, "step": self.step,
                                  "time": round(self.time, 3), "detail": self.detail}
        if seed is not None:
            out = {"seed": seed, **out}
        return out


@dataclass
class Monitor:
    zone: str
    seed: int | None = None
    collect: bool = False
    steps: int = 0
    now: float = 0.0
    timeline: deque[str] = field(default_factory=lambda: deque(maxlen=400))
    content: Lineage = field(default_factory=dict)  # what each generation names, per endpoint (I2, I3, I4)
    highest_marker: dict[EndpointKey, int] = field(default_factory=dict)
    highest_served: dict[EndpointKey, int] = field(default_factory=dict)
    published: set[EndpointKey] = field(default_factory=set)
    exempt_until: dict[EndpointKey, float] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    on_violation: Callable[[Violation], None] | None = None
    owner: str = ""  # I7: the owner id of the installation under test
    adopted: frozenset[EndpointKey] | None = None  # I7: endpoints its fleet adopts (None: every one)
    foreign: dict[EndpointKey, str] = field(default_factory=dict)  # I7: foreign, not adopted, as last seen
    # I7: endpoints the verifier refuses as CONTESTED (another owner took back what it had): not
    # dnsplane's to repair or converge while they are (the driver keeps this in step with the verifier)
    contested: set[EndpointKey] = field(default_factory=set)
    # I7, one takeover: the endpoints last seen under another owner's marker, and per endpoint the writes by
    # dnsplane that landed on one (takeovers) since the verifier last started (``verifier_started``)
    theirs: set[EndpointKey] = field(default_factory=set)
    takeovers: dict[EndpointKey, int] = field(default_factory=dict)
    # G4: the fleet (policies) and the health the planner acted on; empty: the guards are not checked
    fleet: dict[EndpointKey, Endpoint] = field(default_factory=dict)
    acted_on: Callable[[], dict[str, HealthRecord]] | None = None
    last_plan: dict[EndpointKey, tuple[RecordSet, bool]] = field(default_factory=dict)  # G4: (plan, valid)
    # A store put back to an older backup (``store_rolled_back``): the content of the plans it lost, per
    # endpoint (I2: DNS may still serve it), and the content an endpoint served at ``highest_served``
    # where that generation now names other content (the backup's, or a plan that reuses the number)
    ghosts: Lineage = field(default_factory=dict)
    pinned: dict[EndpointKey, str] = field(default_factory=dict)
    # endpoints whose marker a person left unsealed (g= edited, or written without p=), until dnsplane
    # writes them: after a store put back to a backup, their marker is no baseline of I2's (``check``)
    unsealed_by_hand: set[EndpointKey] = field(default_factory=set)
    # I2, one content per generation (``numbers``: runs whose store can be put back to a backup, which hands
    # numbers out again): per endpoint, the content served under each sealed marker of this installation
    numbers: bool = False
    served_under: dict[EndpointKey, dict[int, str]] = field(default_factory=dict)
    served_marker: dict[EndpointKey, Marker] = field(default_factory=dict)  # the last of them, as written
    # I8, no write sent again that the store's fence refused for good: (writer, fence, endpoint, precondition,
    # generation, digest) of each write refused as ``Conflict(newer=...)`` (``fence_refused``); emptied when
    # the store is put back to a backup (the plan that refused it may be lost)
    refused_by_fence: dict[tuple[str, int, EndpointKey, str, int, str], int] = field(default_factory=dict)
    # Blast radius (``dnsplane simulate --services``): when each endpoint that had been served was empty, as
    # (start, end) windows; None: not kept (the default: the sweep needs none)
    empty_since: dict[EndpointKey, float] | None = None
    empty_windows: dict[EndpointKey, list[tuple[float, float]]] = field(default_factory=dict)

    def close_empty_windows(self) -> dict[EndpointKey, list[tuple[float, float]]]:
        """The empty windows kept, those still open closed at ``now`` (the end of the run)."""
        for key, since in (self.empty_since or {}).items():
            self.empty_windows.setdefault(key, []).append((since, self.now))
        if self.empty_since is not None:
            self.empty_since.clear()
        return self.empty_windows

    def note(self, text: str) -> None:
        self.timeline.append(f"[{self.steps:>6}] {self.now:9.2f}s {text}")

    # -- history -------------------------------------------------------------------------------

    def guard(self, fleet: dict[EndpointKey, Endpoint], acted_on: Callable[[], dict[str, HealthRecord]]) -> None:
        """Check G4 at each plan published from now: ``fleet`` gives each endpoint's policy,
        ``acted_on()`` the health the planner acted on (the store's, read after a publish)."""
        self.fleet, self.acted_on = dict(fleet), acted_on

    def on_publish(self, generation: Generation, changes: Iterable[tuple[EndpointKey, RecordSet]]) -> None:
        newest = max((history[-1][0] for history in self.content.values() if history), default=0)
        if generation <= newest:  # the content history (I2, I3) names each plan by its generation
            self.fail(I2, "the store's head", f"plan {generation} published after plan {newest}: a generation "
                                              "is handed out once, above every earlier one")
        n = 0
        down: set[str] | None = None
        for key, rs in changes:
            try:
                validate_record_set(key, rs, self.zone)
                valid = True
            except InvalidPlan:
                valid = False
            self.content.setdefault(key, []).append((int(generation), rs.digest, valid))
            n += 1
            ep = self.fleet.get(key)
            if ep is None:  # G4 unchecked (the explorer): no plan kept
                continue
            before = self.last_plan.get(key)
            self.last_plan[key] = (rs, valid)
            if not valid or self.acted_on is None:  # an invalid plan is a rogue one
                continue
            if down is None:
                down = {tid for tid, record in self.acted_on().items() if record.healthy is False}
            self._check_guards(ep, int(generation), rs, before, down)
        self.note(f"planner published generation {generation} ({n} changes)")

    def _check_guards(self, ep: Endpoint, generation: int, rs: RecordSet, before: tuple[RecordSet, bool] | None,
                      down: set[str]) -> None:
        """G4 on one endpoint's plan (see the module docstring)."""
        policy, key = ep.policy, ep.key
        served = {m.target_id: m.weight for m in rs.members if m.weight > 0}
        every = {t.id for t in ep.targets}
        floor = min(policy.min_targets, len(every))
        if len(served) < floor:
            self.fail(I1, key, f"generation {generation} serves {len(served)} target(s), below the policy "
                               f"floor min_targets={policy.min_targets}")
        if every <= down:
            if policy.fail_open and set(served) != every:
                self.fail(G4, key, f"generation {generation} serves {', '.join(sorted(served)) or 'nothing'} "
                                   f"while every target was down: fail open serves all of them")
            elif not policy.fail_open and before is not None:
                self.fail(G4, key, f"generation {generation} changed the endpoint while every target was down "
                                   f"and fail_open is false: it keeps what it last published")
        if before is not None and before[1] and policy.max_weight_shift < 1.0:
            old = {m.target_id: m.weight for m in before[0].members if m.weight > 0}
            old_total, new_total = sum(old.values()) or 1, sum(served.values()) or 1
            moved = sum(max(0.0, w / new_total - old.get(t, 0) / old_total) for t, w in served.items())
            if moved > policy.max_weight_shift + SHIFT_SLACK:
                self.fail(G4, key, f"generation {generation} moves {moved:.0%} of the weight from the plan "
                                   f"before it, past max_weight_shift={policy.max_weight_shift:.0%}")

    def lineage(self) -> Lineage:
        """What each generation names now, per endpoint: a backup of the store taken now holds it."""
        return {key: list(history) for key, history in self.content.items()}

    def store_rolled_back(self, head: int, lineage: Lineage) -> None:
        """The store was put back to a backup (head ``head``) taken when ``lineage()`` was ``lineage``: the
        plans published since are lost, and their generations will be handed out again. From now a
        generation names what the backup holds for it (I3, I4 and the check below follow the restored
        store); the lost plans' content moves to ``ghosts``, which I2 still compares with (DNS may serve
        it, and no write may put older content over it). Where the generation an endpoint served at now
        names other content, the content it served is ``pinned`` (no I2 while it stays), and a generation
        served above the restored head is taken as the head (the numbers above it will name new plans'
        content; the marker's baseline stays: no write may set a marker back). The guards'
        baseline (G4) of an endpoint a lost plan changed starts again at its next plan: the planner
        plans from the backup's plans."""
        self.note(f"the store was put back to a backup: head {head}, the plans published since lost")
        self.refused_by_fence.clear()  # the plan that refused a write may be lost: it may land now
        for key in set(self.content) | set(lineage) | set(self.highest_served):
            now, restored = self.content.get(key, []), lineage.get(key, [])
            same = 0
            while same < min(len(now), len(restored)) and now[same] == restored[same]:
                same += 1
            served = self.highest_served.get(key, 0)
            before = self.content_at(key, served) if served else None
            if same < len(now) or same < len(restored):
                self.ghosts.setdefault(key, []).extend(now[same:])
                self.content[key] = list(restored)
                self.last_plan.pop(key, None)
            if served > head:  # a number the restored store will hand out again, for other content
                served = self.highest_served[key] = head
            if before is not None and before != self.content_at(key, served):
                self.pinned[key] = before

    def content_at(self, key: EndpointKey, generation: int) -> str | None:
        history = self.content.get(key)
        if not history:
            return None
        i = bisect.bisect_right(history, generation, key=_GENERATION)  # histories are in generation order
        return history[i - 1][1] if i else None

    def newest_valid(self, key: EndpointKey, head: int) -> tuple[int, str] | None:
        history = self.content.get(key, [])
        for i in range(bisect.bisect_right(history, head, key=_GENERATION) - 1, -1, -1):
            g, digest, valid = history[i]
            if valid:
                return g, digest
        return None

    # -- per-step checks ------------------------------------------------------------------------

    def exempt(self, key: EndpointKey, until: float) -> None:
        """A human emptied ``key``: no I1 until dnsplane writes it again or ``until`` passes."""
        self.exempt_until[key] = until

    def hand_edited(self, key: EndpointKey, marker_generation: int | None) -> None:
        """A human set the marker: the monotonic baseline restarts from what they wrote."""
        self.highest_marker[key] = marker_generation or 0

    def edited_by_hand(self, key: EndpointKey, seen: Observed) -> None:
        """A person (or another installation) left ``key`` as ``seen``: foreign or not, from now (I7)."""
        alien = self._foreign(key, seen)
        if alien is None:
            self.foreign.pop(key, None)
        else:
            self.foreign[key] = alien
        self._saw_owner(key, seen)
        marker = seen.marker
        if marker is not None and not marker.sealed():
            self.unsealed_by_hand.add(key)
        if key in self.served_under and marker != self.served_marker.get(key):
            # the marker dnsplane wrote is gone: which generations the endpoint served only the person knows
            del self.served_under[key]

    def _saw_owner(self, key: EndpointKey, seen: Observed) -> None:
        """Note whether ``key`` holds another owner's marker now (I7: a write over it is a takeover)."""
        marker = seen.marker
        if marker is not None and marker.owner and marker.owner != self.owner:
            self.theirs.add(key)
        else:
            self.theirs.discard(key)

    def verifier_started(self) -> None:
        """The verifier (re)started with empty state: it may take each endpoint over once more (I7)."""
        self.takeovers.clear()

    def written(self, keys: Iterable[EndpointKey]) -> None:
        """dnsplane wrote these keys: a corrupted endpoint's exemption ends; one that was foreign and
        not adopted is an I7 violation."""
        for k in keys:
            self.exempt_until.pop(k, None)
            why = self.foreign.pop(k, None)
            if why is not None:
                self.fail(I7, k, f"dnsplane overwrote an endpoint it does not own ({why}, not adopted)")
            if k in self.theirs:  # a takeover: at most one per endpoint while the verifier lives
                self.theirs.discard(k)
                n = self.takeovers[k] = self.takeovers.get(k, 0) + 1
                if n > 1:
                    self.fail(I7, k, f"taken back from another installation {n} times since the verifier "
                                     "started: two fleets that adopt it would flip it forever (contested)")

    def check(self, observed: dict[EndpointKey, Observed], step_note: str = "") -> None:
        """Check I1, I2 and I5 on the given endpoints' current state."""
        self.steps += 1
        if step_note:
            self.note(step_note)
        for key, seen in observed.items():
            records, marker = seen.records, seen.marker
            if records is not None or marker is not None:
                self.published.add(key)
            if key in self.theirs or (marker is not None and marker.owner):
                self._saw_owner(key, seen)
            alien = self._foreign(key, seen)
            if alien is None:
                self.foreign.pop(key, None)
            else:
                self.foreign[key] = alien  # not dnsplane's: its emptiness is its owner's business (I1)
            if (alien is None and key not in self.contested and key in self.published
                    and (records is None or not records.live_members())):
                until = self.exempt_until.get(key)
                if until is None or self.now > until:
                    why = "" if until is None else " (hand-emptied, not repaired within the bound)"
                    self.fail(I1, key, "the endpoint resolves to an empty record set" + why)
                if self.empty_since is not None and key not in self.empty_since:
                    self.empty_since[key] = self.now
            elif self.empty_since is not None and key in self.empty_since:
                self.empty_windows.setdefault(key, []).append((self.empty_since.pop(key), self.now))
            if records is not None:
                try:
                    validate_record_set(key, records, self.zone)
                except InvalidPlan as err:
                    self.fail(I5, key, str(err))
            if marker is not None and marker.owner and marker.owner != self.owner:
                marker = None  # another installation's numbering: no I2 baseline, no content mark
            if marker is not None and not 0 <= marker.generation <= MAX_HEAD:
                marker = None  # a human's out-of-range g=: not a generation (no I2 baseline, no content mark)
            if marker is not None and marker.generation > self.highest_marker.get(key, 0) and not marker.sealed():
                marker = None  # g= raised by hand (seal broken): no plan wrote it, no I2 baseline, no content mark
            if marker is not None:
                high = self.highest_marker.get(key, 0)
                if marker.generation < high and self.ghosts and key in self.unsealed_by_hand:
                    # A person left the marker unsealed (no g= a reader can trust) and the store was put
                    # back to a backup whose head may be below the generation it had: nothing tells
                    # dnsplane that generation, and its repair writes at the restored store's head
                    self.note(f"{key}: marker {high}, edited by hand, rewritten at {marker.generation} "
                              "after the store was put back to a backup")
                    high = 0  # the baseline restarts from dnsplane's marker
                elif marker.generation < high:
                    self.fail(I2, key, f"marker went down from {high} to {marker.generation}")
                self.unsealed_by_hand.discard(key)
                self.highest_marker[key] = max(high, marker.generation)
                if self.numbers and records is not None and records.digest == marker.digest and marker.sealed():
                    under = self.served_under.setdefault(key, {})
                    before = under.setdefault(marker.generation, marker.digest)
                    if before != marker.digest:
                        self.fail(I2, key, f"generation {marker.generation} served with two contents ({before}, "
                                           f"then {marker.digest}): a number the store handed out again")
                    self.served_marker[key] = marker  # to tell a person's replacement of it
            if records is not None:
                self._check_content(key, records.digest, marker.generation if marker else None)

    def check_exemptions(self, read: Callable[[list[EndpointKey]], dict[EndpointKey, Observed]]) -> None:
        """Expire hand-emptied exemptions whose bound passed (checks I1 on those endpoints)."""
        expired = [k for k, until in self.exempt_until.items() if self.now > until]
        if expired:
            for k in expired:
                del self.exempt_until[k]
            self.steps -= 1
            for k, seen in read(expired).items():
                if self._foreign(k, seen) is not None or k in self.contested:
                    continue  # not dnsplane's (I7): its owner's to repair
                if seen.records is None or not seen.records.live_members():
                    self.fail(I1, k, "hand-emptied endpoint not repaired within the bound")

    def _check_content(self, key: EndpointKey, digest: str, marker_gen: int | None) -> None:
        served = self.highest_served.get(key, 0)
        if served and digest != self.content_at(key, served) and digest != self.pinned.get(key):
            history = self.content.get(key, [])
            if key in self.ghosts:  # what lost plans gave it too (a store put back to a backup)
                history = history + self.ghosts[key]
            newer = [g for g, d, _ in history if d == digest and g > served]
            older = [g for g, d, _ in history if d == digest and g < served]
            if older and not newer:
                self.fail(I2, key, f"serves the content of generation {max(older)} after {served}")
        if marker_gen is not None and digest == self.content_at(key, marker_gen):
            if marker_gen >= served:
                self.pinned.pop(key, None)
            self.highest_served[key] = max(served, marker_gen)

    def check_plans_kept(self, kept: set[int], referenced: dict[str, int]) -> None:
        """I3 (by plan number): every generation that someone references is still stored."""
        self.steps += 1
        for who, generation in referenced.items():
            if generation and generation not in kept:
                self.fail(I3, NOWHERE, f"plan {generation}, referenced by {who}, was deleted")

    def check_references(self, referenced: list[tuple[str, int, EndpointKey | None]],
                         desired: Callable[[EndpointKey, int], str | None]) -> None:
        """I3 (by content): for each referenced generation, the store still returns its content.

        ``referenced`` lists (who, generation, endpoint): a marker references its own endpoint's
        content at its generation; an enactor in flight or the last-known-good (endpoint None)
        reference every endpoint's content at that generation. ``desired(key, g)`` is the digest
        the store returns for ``key`` at ``g``.
        """
        checked: set[tuple[int, EndpointKey]] = set()  # many references share a generation (the head)
        for who, g, only in referenced:
            if not g:
                continue
            for key in (self.content if only is None else (only,)):
                if (g, key) in checked:
                    continue
                checked.add((g, key))
                want = self.content_at(key, g)
                if want is None:
                    continue
                got = desired(key, g)
                if got != want:
                    self.fail(I3, key, f"content of generation {g}, referenced by {who}, is gone from the store "
                                       f"(store has {got}, plan had {want})")

    def _foreign(self, key: EndpointKey, seen: Observed) -> str | None:
        """Why ``seen`` is foreign and not adopted (I7), or None."""
        if self.adopted is None or key in self.adopted:
            return None
        marker = seen.marker
        if marker is not None:
            return f"marker of owner {marker.owner!r}" if marker.owner and marker.owner != self.owner else None
        return "records without a marker" if seen.records is not None else None

    def check_converged(self, observed: dict[EndpointKey, Observed], head: int, bound: float) -> None:
        """I4: every endpoint holds the newest valid content at or below ``head`` (except one that is
        foreign and not adopted: not dnsplane's to converge, I7)."""
        for key in self.content:
            if self._foreign(key, observed.get(key, Observed(None, None))) is not None or key in self.contested:
                continue
            want = self.newest_valid(key, head)
            if want is None:
                continue
            seen = observed.get(key, Observed(None, None))
            got = seen.records.digest if seen.records else None
            if got != want[1] or seen.marker is None or seen.marker.digest != want[1]:
                marker = seen.marker.generation if seen.marker else None
                self.fail(I4, key, f"{bound:.0f}s after faults stopped it holds {got} (marker {marker}), "
                                   f"not generation {want[0]}'s {want[1]} (head {head})")
            elif not seen.marker.sealed():
                # the right content under a marker edited by hand (g= or o= changed, seal broken): the
                # enactors leave it alone and the verifier reports it every round (no last-known-good)
                # until its repair rewrites it sealed
                self.fail(I4, key, f"{bound:.0f}s after faults stopped its marker (g={seen.marker.generation}) "
                                   f"still has a broken seal: never repaired")

    def check_planned(self, planned: dict[EndpointKey, str], head: int) -> None:
        """I4, the planner's part (at quiet): for every endpoint the planner believes it published (its
        content digest in ``planned``), the store's newest valid content at ``head`` is that. Else the
        planner plans on content the store no longer holds (a store put back to a backup under it), and
        DNS converges to the store's, which nothing the planner knows of health says any more."""
        for key, digest in planned.items():
            want = self.newest_valid(key, head)
            if want is not None and want[1] != digest:
                self.fail(I4, key, f"at quiet the planner believes it published {digest}, but the store's newest "
                                   f"valid plan gives it generation {want[0]}'s {want[1]}: the planner plans on "
                                   "content the store no longer holds")

    def check_idempotent(self, writes_before: int, writes_after: int) -> None:
        """I6: re-running every enactor at quiet sent no provider write."""
        if writes_after != writes_before:
            self.fail(I6, NOWHERE, f"re-running the enactors at quiet cost {writes_after - writes_before} writes")

    def check_collected(self, kept: Iterable[int], watermark: int) -> None:
        """I8, the collector's part (at quiet): after a collector round run at quiet, the store keeps
        no plan below the low watermark (every one of them is one the watermark allows to collect)."""
        below = sorted(g for g in kept if g < watermark)
        if below:
            self.fail(I8, "collector", f"a collector round at quiet left {len(below)} plan(s) below the low "
                                       f"watermark {watermark} (oldest {below[0]}): the collector runs but "
                                       f"never collects")

    def fence_refused(self, actor: str, fence: int, key: EndpointKey, expect: str, generation: int, digest: str,
                      newer: int) -> None:
        """I8: ``actor``'s write of ``key`` (over ``expect``, the state it read, with ``generation``'s content
        ``digest``, fenced at ``fence``) was refused by the store's fence: plan ``newer`` changed the endpoint.
        The store's plans only grow, so the same write with the same fence is refused for good; sent again
        over the same state, the writer spins (re-read, send, refused) and does nothing else until another
        writer changes the endpoint. (Over another state it is another decision: a marker behind the plan
        found where the endpoint was empty is written over once, its refusal then leaves it to the newer
        plan.)"""
        what = (actor, fence, key, expect, generation, digest)
        if what in self.refused_by_fence:
            self.fail(I8, actor, f"sent again the write of {key} over {expect} (generation {generation}'s {digest}, "
                                 f"fence {fence}) that the store's fence refused (plan {self.refused_by_fence[what]} "
                                 f"changed it; now plan {newer}): refused for good, its round spins until "
                                 "another writer changes the endpoint")
        self.refused_by_fence[what] = newer

    def wedged(self, actor: str, detail: str) -> None:
        """I8: ``actor`` is busy with no request outstanding; it never runs again."""
        self.fail(I8, actor, detail)

    def raised(self, actor: str, event: object, error: BaseException) -> None:
        """I8: ``actor``'s own code raised handling ``event`` (a bug: the runtime tells the actor its
        round failed, or resets it, and the round is lost). Reported with the exception's class."""
        cls = type(error)
        what = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
        at = f" at step {self.steps}" if self.steps else ""  # the explorer counts no steps: its path says
        self.fail(I8, actor, f"an actor raised: {what}: {error} in {actor} handling {type(event).__name__}{at}")

    def check_restart_health(self, changes: Iterable[tuple[EndpointKey, RecordSet]], known_down: set[str],
                             unconfirmed: set[str], endpoints: dict[EndpointKey, Endpoint]) -> None:
        """H1, at a publish after a planner restart: no member is a target the store kept as down at the
        restart (``unconfirmed``) that the planner has not observed up since, unless every target of
        the endpoint is known down (``known_down``: then it fails open, and keeps them all)."""
        for key, rs in changes:
            served = {m.target_id for m in rs.members if m.weight > 0} & unconfirmed
            if not served:
                continue
            ep = endpoints.get(key)
            if ep is not None and all(t.id in known_down for t in ep.targets):
                continue  # fail open: every target is down
            self.fail(H1, key, f"published {', '.join(sorted(served))} after a planner restart: the store "
                               f"kept {'it' if len(served) == 1 else 'them'} down and the planner had not observed "
                               f"{'it' if len(served) == 1 else 'them'} up since")

    def check_heard_health(self, changes: Iterable[tuple[EndpointKey, RecordSet]], unheard_down: set[str]) -> None:
        """H1, the grace, at a publish within ``health_grace`` of the planner's (re)start: no member is a target
        that is down and that the planner has not heard from since it started (``unheard_down``)."""
        for key, rs in changes:
            served = {m.target_id for m in rs.members if m.weight > 0} & unheard_down
            if served:
                self.fail(H1, key, f"published {', '.join(sorted(served))} within the health grace of a planner "
                                   f"(re)start, before any check of {'it' if len(served) == 1 else 'them'} reached "
                                   f"the planner: {'it is' if len(served) == 1 else 'they are'} down")

    def check_head(self, head: int, published: int | None = None) -> None:
        """The store's head after a step that may have moved it (``AdvanceHead``): a marker no plan
        wrote (a human's) must not become the head. ``published``: the highest generation published
        (None: check only ``MAX_GENERATION``)."""
        if head > MAX_HEAD or (published is not None and head > published):
            past = [f"the highest generation published ({published})"] if published is not None else []
            if head > MAX_HEAD:
                past.append(f"MAX_GENERATION ({MAX_HEAD})")
            self.fail(I4, "the store's head", f"the store's head is {head}, past {' and '.join(past)}: "
                                              f"it followed a marker no plan wrote")

    def fail(self, invariant: str, key: EndpointKey | str, detail: str) -> None:
        if self.collect:
            ident = (invariant, str(key))
            if ident in self.seen:
                return
            self.seen.add(ident)
            self.note(f"VIOLATION {invariant} at {key}: {detail}")
            v = Violation(invariant, str(key), self.steps, self.now, detail, tuple(self.timeline)[-60:])
            self.violations.append(v)
            if self.on_violation is not None:
                self.on_violation(v)
            return
        timeline = "\n".join(list(self.timeline)[-40:])
        seed = f" (seed {self.seed})" if self.seed is not None else ""
        raise InvariantViolation(invariant=invariant, endpoint=str(key), step=f"{self.steps}{seed}",
                                 detail=detail, timeline="timeline:\n" + timeline)
