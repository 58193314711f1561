"""The simulation driver: the production actors on a virtual clock, with a seeded scheduler and faults.

One run = (scenario, protocol, seed, fault schedule) → a deterministic trace.
Nothing here reads the wall clock or the global random state: every random
choice comes from ``random.Random`` instances seeded from the run's seed
(one stream for latencies, one for health, one for the fault schedule), so
``--seed S`` replays a run exactly and the shrinker can replay it with fewer
faults.

How a run proceeds (discrete events in time order; ties by insertion):

- each actor (planner, N enactors, collector, verifier — or N legacy enactors)
  is ticked every period, and enactors are also woken when a plan is published;
- ``handle(event)`` returns commands; the effects are applied at once; the final
  request, if any, becomes the actor's one *pending completion*, due after a
  latency drawn from the seeded stream. Delivering it runs it against the store
  or provider at that moment and feeds the reply to the actor. The latencies are
  the scheduler: they decide which pending completion is delivered next;
- health observations (the workload) and faults are events too;
- after every step the ``Monitor`` checks I1, I2, I5 on the endpoints the step
  wrote, I3 after every step that deleted plans; after ``duration`` faults stop,
  paused actors resume, and after the convergence bound I4 is checked, then I6
  (every enactor re-run, and a fresh one, must cost no provider write).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dnsplane.errors import DnsplaneError
from dnsplane.model import EndpointKey, Generation, Marker, Member, Observed, RecordSet, generation_in_range
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.legacy import CleanedUp, CleanUp, ForceWrite, LegacyEnactor
from dnsplane.protocol.messages import (
    AdvanceHead,
    Begin,
    Collect,
    Command,
    DesiredLoaded,
    Failed,
    HeadRead,
    HealthObserved,
    Published,
    Request,
    SetLastKnownGood,
    Step,
    Tick,
    WriteBatch,
    WriteDone,
)
from dnsplane.protocol.ownership import Ownership
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier
from dnsplane.sim.faults import EXCEPTION_NAMES, Fault, make_schedule
from dnsplane.sim.invariants import I8, Monitor, Violation
from dnsplane.sim.scenario import Scenario
from dnsplane.sim.world import (
    PROVIDER_REQUEST_TYPES,
    ZONE,
    SimExecutor,
    SimProvider,
    fleet,
)
from dnsplane.store.base import INFLIGHT_TTL
from dnsplane.store.memory import MemoryStore

PROTOCOLS = ("safe", "legacy")
WRITES = (WriteBatch, ForceWrite)  # a "slow" actor's writes take long (AWS: retries on several endpoints)
_WRITE_TYPES = frozenset(WRITES)
_COLLECTS = frozenset((Collect, CleanUp))  # requests that delete plans
INTRUDER = "intruder"  # the owner id of the second installation of the ``second_owner`` fault
_TICK, _WAKE, _DELIVER, _HEALTH, _FAULT, _RESTART, _QUIET, _END = range(8)


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One notable moment, for the timeline and the SVG swimlanes."""

    time: float
    step: int
    actor: str
    kind: str  # publish begin write conflict refused repair empty cleanup collect fault crash restart failed violation
    detail: str
    generation: int = 0


@dataclass
class RunResult:
    protocol: str
    scenario: str
    seed: int
    steps: int
    simulated: float
    violations: list[Violation]
    faults: dict[str, int]
    schedule: list[Fault]
    conflicts: int
    repairs: int
    generations: int
    writes: int
    trace: list[TraceEvent] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def first(self, prefer: str = "I1") -> Violation | None:
        for v in self.violations:
            if v.short == prefer:
                return v
        return self.violations[0] if self.violations else None


class Simulation:
    """One seeded run of a scenario under one protocol."""

    def __init__(self, scenario: Scenario, protocol: str, seed: int, schedule: list[Fault] | None = None,
                 trace: bool = True, stop_on: str | None = None) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        self.scenario, self.protocol, self.seed = scenario, protocol, seed
        self.rng = random.Random(seed)
        self.health_rng = random.Random(seed * 7919 + 1)
        self.endpoints = fleet(scenario.endpoints, scenario.targets)
        self.keys = [ep.key for ep in self.endpoints]
        self.targets = [t.id for ep in self.endpoints for t in ep.targets]
        self.by_endpoint = {str(i): ep for i, ep in enumerate(self.endpoints)}
        self.by_key = {ep.key: ep for ep in self.endpoints}
        self.enactor_names = [f"enactor-{i + 1}" for i in range(scenario.enactors)]
        self.began_names = set(self.enactor_names)
        if schedule is None:
            schedule = make_schedule(scenario, random.Random(seed * 104729 + 2), self.enactor_names, self.targets)
        self.schedule = schedule
        self.store = MemoryStore()
        self.provider = SimProvider(ZONE)
        self.monitor = Monitor(ZONE, seed=seed, collect=True, on_violation=self._on_violation)
        # I7: every endpoint is adopted unless the scenario says otherwise (``not_adopted``), so that a
        # marker deleted by hand stays a state the verifier repairs; the installation's owner id is ""
        not_adopted = {self.keys[i] for i in scenario.not_adopted}
        self.ownership = (Ownership("", None, frozenset(k for k in self.keys if k not in not_adopted))
                          if not_adopted else Ownership())
        self.monitor.adopted = self.ownership.adopted
        # the outage / throttling hooks are asked before every store / provider call: leave them out
        # (SimExecutor then never fails a call) when this run's schedule has no such fault
        kinds = {f.kind for f in schedule}
        self.executor = SimExecutor(self.store, self.provider,
                                    self._store_down if "store_outage" in kinds else None,
                                    self._throttled if "throttle" in kinds else None,
                                    self._on_publish, self._on_emptied, journal=False)
        self.provider.add_listener(self._on_written)
        self.tracing = trace
        self.legacy = protocol == "legacy"
        self.slow = scenario.slow
        self.latency = scenario.latency
        self.stop_on = stop_on
        self.trace: list[TraceEvent] = []
        self.now = 0.0
        self.steps = 0
        self.seq = 0
        self.queue: list[tuple[float, int, int, str, Any]] = []
        self.actors: dict[str, Any] = {}
        self.periods: dict[str, float] = {}
        self.pending: dict[str, tuple[int, object]] = {}  # actor -> (token, request or ready reply)
        self.alive: dict[str, bool] = {}
        self.paused_until: dict[str, float] = {}
        self.began: dict[str, float] = {}  # enactor -> true time of its Begin (lease start)
        self.skew: dict[str, float] = {}
        self.windows: dict[str, list[tuple[float, float, float]]] = {"throttle": [], "store_outage": [],
                                                                     "latency_spike": []}
        self.timeout_next: set[str] = set()
        self.forced_health: dict[str, tuple[float, str]] = {}  # target -> (until, "down" | "flap")
        self.faults_fired: dict[str, int] = {}
        self.dirty: list[EndpointKey] = []
        self.deleted_plans = False
        self.quiet = False
        self.lkg = 0  # the verifier's last-known-good, as it last set it
        self.corrupting = False
        self.hand_marked: set[EndpointKey] = set()  # markers a human set: not references (I3) until rewritten
        self.ref_labels: dict[str | EndpointKey, str] = {}  # who references a generation, as I3 names them
        self.stopped = False
        self.fault_end = scenario.duration
        self.published_max = 0
        # partial_write: (endpoint, mode) -> when its window ends; endpoint -> since when its marker says more
        # than its records show (a write the provider applied in part), until the verifier reports it
        self.partial_until: dict[tuple[EndpointKey, str], float] = {}
        self.lies: dict[EndpointKey, float] = {}
        self.check_partial = "partial_write" in kinds
        # health_amnesia: the targets' true health (the workload), and the targets the store kept as down
        # at the planner's last restart that it has not observed up since
        self.truth: dict[str, bool] | None = ({tid: True for tid in self.targets}
                                              if "health_amnesia" in scenario.faults else None)
        self.unconfirmed_down: set[str] = set()
        self.escapes: dict[str, str] = {}  # actor -> the last exception that escaped the executor (I8's detail)
        self.check_heads = "marker_out_of_range" in kinds  # only a hand-written marker can move the head far
        self._build_actors()

    # ----------------------------------------------------------------- setup

    def _build_actors(self) -> None:
        s = self.scenario
        self.actors["planner"] = Planner("planner", ZONE, self.endpoints)
        self.periods["planner"] = s.planner_period
        for name in self.enactor_names:
            self.actors[name] = self._new_enactor(name)
            self.periods[name] = s.enactor_period
        if self.protocol == "safe":
            self.actors["collector"] = Collector()
            self.periods["collector"] = s.collector_period
            self.actors["verifier"] = Verifier("verifier", ownership=self.ownership)
            self.periods["verifier"] = s.verifier_period
        for name in self.actors:
            self.alive[name] = True
            self.skew[name] = 0.0
            self._push(self.rng.uniform(0, min(self.periods[name], 5.0)), _TICK, name)
        self._push(0.0, _HEALTH, "")
        for fault in self.schedule:
            self._push(fault.at, _FAULT, fault.kind, fault)

    def _new_enactor(self, name: str) -> Enactor | LegacyEnactor:
        if self.protocol == "legacy":
            return LegacyEnactor(name, ZONE, keep=self.scenario.legacy_keep)
        return Enactor(name, ZONE, ownership=self.ownership)

    def _push(self, at: float, kind: int, actor: str, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, actor, payload))

    # ----------------------------------------------------------------- run

    def run(self) -> RunResult:
        s = self.scenario
        end = s.duration + s.convergence_bound
        self._push(s.duration, _QUIET, "")
        queue = self.queue
        monitor = self.monitor
        pop, push = heapq.heappop, heapq.heappush
        alive, pending, paused, skew, periods = self.alive, self.pending, self.paused_until, self.skew, self.periods
        while queue and not self.stopped:
            at, _, kind, actor, payload = pop(queue)
            if at > end:
                heapq.heappush(queue, (at, 0, kind, actor, payload))
                break
            self.now = at
            monitor.now = at
            if kind == _DELIVER:
                self._deliver(actor, payload)
            elif kind <= _WAKE:  # _TICK or _WAKE: _tick, inlined (most events are ticks)
                if alive[actor] and actor not in pending and not (paused and paused.get(actor, 0.0) > at):
                    if self.actors[actor].busy:  # no reply will ever come: it ignores its ticks (I8)
                        self._wedged(actor)
                    self._feed(actor, Tick(at + skew[actor]))
                if kind == _TICK:  # _push, inlined
                    self.seq += 1
                    push(queue, (at + periods[actor], self.seq, _TICK, actor, None))
            elif kind == _HEALTH:
                self._health()
            elif kind == _FAULT:
                self._fault(payload)
            elif kind == _RESTART:
                self._restart(actor)
            elif kind == _QUIET:
                self._start_quiet()
            elif kind == _END:
                self._end_partial(payload)
            self._sync_contested()
            if monitor.exempt_until:
                monitor.check_exemptions(self.provider.read)
            if self.lies:
                self._check_lies()
        if not self.stopped:
            self.now = end
            self.monitor.now = end
            self._final_checks()
        return RunResult(
            self.protocol, s.name, self.seed, self.steps, self.now, list(self.monitor.violations),
            dict(sorted(self.faults_fired.items())), self.schedule,
            sum(a.stats.get("conflicts", 0) for a in self.actors.values() if hasattr(a, "stats")),
            self.actors["verifier"].stats["repairs"] if "verifier" in self.actors else 0,
            int(self.store.head()), self.provider.writes, self.trace, list(self.monitor.timeline),
        )

    # ----------------------------------------------------------------- stepping actors

    def _tick(self, name: str) -> None:
        if not self.alive[name] or name in self.pending or (self.paused_until and
                                                            self.paused_until.get(name, 0.0) > self.now):
            return
        if self.actors[name].busy:
            self._wedged(name)
        self._feed(name, Tick(self.now + self.skew[name]))

    def _wedged(self, name: str) -> None:
        """I8: ``name`` is alive, not paused, has no request outstanding, and is busy: no reply will
        come, and a busy actor ignores its ticks, so it never runs again."""
        why = self.escapes.get(name) or "it ignored a reply (a Failed?) and stayed busy"
        self.monitor.wedged(name, f"{name} is busy with no request outstanding: it ignores every tick "
                                  f"and never runs again ({why})")

    def _escaped(self, name: str, err: Exception) -> None:
        """An exception escaped the executor (``Executor.run`` let it through). Modelled as the runtime's
        loop handled it before issue 8: logged once, and the actor gets no reply to its request."""
        self._fired("escaped")
        cls = type(err)
        what = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
        self.escapes[name] = f"at t={self.now:.1f}s {what} escaped the executor: {err}"
        if self.tracing:
            self._note_trace(name, "failed", f"{what} escaped the executor: {err}; "
                                             f"the round ends with no reply")

    def _feed(self, name: str, event: Any) -> None:
        """Feed ``event`` to actor ``name``: apply its effects, make its request the pending completion."""
        step = self.actors[name].handle(event)
        self.steps += 1
        self.monitor.steps = self.steps
        effects, request = step.effects, step.request
        if effects or request is not None:
            if self.tracing:
                self._trace_commands(name, event, step.commands())
            failed = None
            escaped = False
            if effects:
                # the interpreter's ``run``, effects in order, the first that raises ends the step as Failed
                now_a = self.now + self.skew[name]
                ex = self.executor
                ex.began = False
                try:
                    reply = ex.run(name, Step(effects), now_a)
                except Exception as err:  # escaped the executor: the runtime's loop before issue 8
                    reply = None
                    escaped = True
                    self._escaped(name, err)
                if type(reply) is Failed:
                    failed = reply
                began = ex.began
                if failed is not None or escaped:
                    if began:  # the Begin ran before a later effect failed: the store holds the lease
                        self.began[name] = self.now
                    elif any(type(c) is Begin for c in effects):
                        # the Begin itself failed: the store holds no lease, whatever an earlier Begin
                        # left here (chaos 5391); a missing entry would count as in flight
                        self.began[name] = float("-inf")
                        if self.tracing:  # the trace said "begins" when the command was issued
                            g = next(int(c.generation) for c in effects if type(c) is Begin)
                            why = failed.error if failed is not None else "an exception escaped"
                            self._note_trace(name, "begin", f"could not begin generation {g}: {why}", g)
                else:  # a Begin that failed at the store registered nothing: no reference
                    if began:
                        self.began[name] = self.now
                    for c in effects:
                        if type(c) is SetLastKnownGood:
                            self.lkg = int(c.generation)
                if self.check_heads and any(type(c) is AdvanceHead for c in effects):
                    self.monitor.check_head(int(self.store.head()), self.published_max)
            if escaped:
                request = None  # the round ended with the exception: the request was never sent
            if self.legacy and type(event) is DesiredLoaded and name in self.began_names:
                self.began[name] = self.now
            if failed is not None or request is not None:
                # the pending completion, due after a latency from the seeded stream: a slow actor's writes
                # take its own range; provider requests are stretched by the worst latency spike under way
                if failed is not None:
                    what: object = failed
                    lo, hi = self.latency
                    spiked = False
                else:
                    what = request
                    kind = type(request)
                    slow = self.slow.get(name)
                    lo, hi = slow if slow is not None and kind in _WRITE_TYPES else self.latency
                    spiked = kind in PROVIDER_REQUEST_TYPES
                lat = lo + (hi - lo) * self.rng.random()  # exactly ``rng.uniform(lo, hi)``
                if spiked and self.windows["latency_spike"]:
                    lat *= max((f for a, b, f in self.windows["latency_spike"] if a <= self.now < b), default=1.0)
                self.seq += 1
                token = self.seq
                self.pending[name] = (token, what)
                heapq.heappush(self.queue, (self.now + lat, token, _DELIVER, name, token))
        elif self.tracing:
            self.monitor.note(f"{name}: {type(event).__name__} -> nothing")
        if self.dirty or self.deleted_plans:
            self._after_step()

    def _deliver(self, name: str, token: int) -> None:
        entry = self.pending.get(name)
        if entry is None or entry[0] != token:
            return  # the actor crashed or restarted since: this completion is lost
        if self.paused_until:
            paused = self.paused_until.get(name, 0.0)
            if paused > self.now:  # SIGSTOPped: the reply waits until the process runs again
                heapq.heappush(self.queue, (paused, token, _DELIVER, name, token))
                return
        del self.pending[name]
        what: Any = entry[1]
        kind = type(what)
        if isinstance(what, Request):
            now_a = self.now + self.skew[name]
            try:  # the interpreter's ``run``
                reply = self.executor.run(name, Step((), what), now_a)
            except Exception as err:  # escaped the executor: the runtime's loop before issue 8
                if kind in _COLLECTS:
                    self.deleted_plans = True
                self._escaped(name, err)
                if self.dirty or self.deleted_plans:
                    self._after_step()
                return
            if reply is None:
                raise DnsplaneError(f"not a request: {kind.__name__}")
            if self.timeout_next and kind in _WRITE_TYPES and name in self.timeout_next:
                self.timeout_next.discard(name)
                self._fired("timeout_after_apply")
                self._note_trace(name, "fault", "write applied, caller timed out")
                reply = Failed(now_a, "timeout (the write was applied)", True, 1.0)
            if kind in _COLLECTS:
                self.deleted_plans = True
            if self.tracing:  # without a trace, _after_request has nothing to do
                self._after_request(name, what, reply)
        else:
            reply = what  # a Failed made when an effect failed
        if type(reply) is Published:
            self._wake_enactors()
        self._feed(name, reply)

    def _after_request(self, name: str, request: object, reply: Any) -> None:
        if isinstance(request, Collect) or (isinstance(request, CleanUp) and isinstance(reply, CleanedUp)):
            n = getattr(reply, "plans_deleted", 0)
            if n and self.tracing:
                below = request.watermark if isinstance(request, Collect) else request.keep_from
                self._note_trace(name, "collect", f"deleted {n} plans below {below}")
        if not self.tracing:
            return
        if isinstance(reply, WriteDone) and isinstance(request, WriteBatch):
            for result, write in zip(reply.results, request.writes, strict=True):
                g = int(write.marker.generation)
                if type(result).__name__ == "Conflict":
                    self._note_trace(name, "conflict", f"{write.key.name} g{g} refused: marker moved", g)
                elif getattr(result, "written", False):
                    kind = "repair" if name == "verifier" else "write"
                    self._note_trace(name, kind, f"{write.key.name} -> g{g}", g)
        elif isinstance(request, ForceWrite):
            g = int(request.marker.generation)
            self._note_trace(name, "write", f"{request.key.name} -> g{g} (unconditional)", g)
        elif isinstance(reply, Failed):
            self._note_trace(name, "failed", f"{type(request).__name__}: {reply.error}")

    def _after_step(self) -> None:
        mon = self.monitor
        if self.dirty:
            keys, self.dirty = self.dirty, []
            observed = self.provider.read(keys)
            mon.check(observed)
            mon.steps = self.steps
            if self.check_partial:
                self._note_lies(observed)
        if self.deleted_plans:
            self.deleted_plans = False
            # the store does not change during one check, and references share generations (every marker
            # at the head, an enactor applying it, ...): ask it once per (endpoint, generation)
            digests: dict[tuple[EndpointKey, int], str | None] = {}

            def store_digest(key: EndpointKey, g: int) -> str | None:
                pair = (key, g)
                if pair in digests:
                    return digests[pair]
                digest = digests[pair] = self._store_digest(key, g)
                return digest

            mon.check_references(self.referenced(), store_digest)

    def _store_digest(self, key: EndpointKey, g: int) -> str | None:
        d = self.store.desired([key], Generation(g)).get(key)
        return d.records.digest if d else None

    def referenced(self) -> list[tuple[str, int, EndpointKey | None]]:
        """Generations someone still references, computed from actor state (I3).

        An enactor is in flight from its Begin until it finishes or fails, while its lease
        (``INFLIGHT_TTL``, less twice the largest clock skew) lasts; a marker a human set is
        no reference until dnsplane rewrites it.
        """
        refs: list[tuple[str, int, EndpointKey | None]] = []
        lease = INFLIGHT_TTL - 2 * self.scenario.max_skew
        labels = self.ref_labels
        for name in self.enactor_names:
            working = self.actors[name].working
            if working is not None and self.alive[name]:
                began = self.began.get(name)
                if began is None or self.now - began <= lease:
                    label = labels.get(name)
                    if label is None:
                        label = labels[name] = f"{name} in flight"
                    refs.append((label, int(working), None))
        for key, seen in self.provider.read_all().items():
            if seen.marker is not None and key not in self.hand_marked:
                label = labels.get(key)
                if label is None:
                    label = labels[key] = f"the marker of {key}"
                refs.append((label, int(seen.marker.generation), key))
        if self.lkg:
            refs.append(("the verifier's last-known-good", self.lkg, None))
        return refs

    # ----------------------------------------------------------------- hooks

    def _sync_contested(self) -> None:
        """The monitor learns which endpoints the verifier refuses as CONTESTED (I7); one no longer
        contested (the verifier restarted) is dnsplane's again: its repair bound starts now."""
        verifier = self.actors.get("verifier")
        contested = set(verifier.contested) if isinstance(verifier, Verifier) else set()
        if contested != self.monitor.contested:
            for key in self.monitor.contested - contested:
                self.monitor.exempt(key, self.now + self.scenario.repair_bound)
            self.monitor.contested = contested

    def _on_written(self, keys: list[EndpointKey]) -> None:
        if self.corrupting:  # a human's edit (or another installation's), not dnsplane's write
            if self.monitor.adopted is not None:  # I7: the monitor learns what is foreign now
                for key, seen in self.provider.read(keys).items():
                    was = key in self.monitor.foreign
                    self.monitor.edited_by_hand(key, seen)
                    if was and key not in self.monitor.foreign:
                        # dnsplane's again (e.g. a marker without an owner id written over another
                        # owner's), maybe empty: its repair bound starts now (owners 2330)
                        self.monitor.exempt(key, self.now + self.scenario.repair_bound)
            return
        self.dirty.extend(keys)
        self.monitor.written(keys)
        self.hand_marked.difference_update(keys)

    def _on_publish(self, gen: Generation, changes: tuple[tuple[EndpointKey, RecordSet], ...],
                    rogue: bool = False) -> None:
        self.monitor.on_publish(gen, changes)
        if self.unconfirmed_down and not rogue:
            planner = self.actors["planner"]
            believed_down = {tid for tid, h in planner.health.items() if h.healthy is False}
            self.monitor.check_restart_health(changes, self.unconfirmed_down | believed_down,
                                              self.unconfirmed_down, self.by_key)
        self.published_max = max(self.published_max, int(gen))
        if self.tracing:
            self._note_trace("planner", "publish", f"generation {gen} ({len(changes)} changes)", int(gen))

    def _on_emptied(self, keys: tuple[EndpointKey, ...]) -> None:
        if self.tracing:
            for k in keys:
                self._note_trace("cleanup", "empty", f"{k.name} records deleted with their plan")

    def _on_violation(self, v: Violation) -> None:
        if self.tracing:
            self.trace.append(TraceEvent(self.now, self.steps, "monitor", "violation", f"{v.short} {v.endpoint}"))
        if self.stop_on is not None and (self.stop_on == "any" or v.short == self.stop_on):
            self.stopped = True

    def _store_down(self) -> bool:
        return self._in_window("store_outage")

    def _throttled(self) -> bool:
        return self._in_window("throttle")

    def _in_window(self, kind: str) -> bool:
        windows = self.windows[kind]
        if not windows:
            return False
        now = self.now
        return any(start <= now < stop for start, stop, _ in windows)

    def _note_trace(self, actor: str, kind: str, detail: str, generation: int = 0) -> None:
        self.trace.append(TraceEvent(self.now, self.steps, actor, kind, detail, generation))
        self.monitor.note(f"{actor}: {kind} {detail}")

    def _trace_commands(self, name: str, event: Any, commands: tuple[Command, ...]) -> None:
        names = ", ".join(type(c).__name__ for c in commands)
        self.monitor.note(f"{name}: {type(event).__name__} -> {names}")
        for c in commands:
            if isinstance(c, Begin):
                self._note_trace(name, "begin", f"begins generation {c.generation}", int(c.generation))
        if isinstance(event, DesiredLoaded) and name.startswith("enactor") and self.protocol == "legacy":
            self._note_trace(name, "begin", f"checks once: plan {event.head} is newer", int(event.head))

    def _wake_enactors(self) -> None:
        for name in self.enactor_names:
            if name not in self.pending:
                self._push(self.now + self.rng.uniform(0.01, 1.0), _WAKE, name)

    # ----------------------------------------------------------------- workload: health

    def _health(self) -> None:
        """Health checks of every target (the workload); they stop when faults stop."""
        if self.quiet:
            return
        s = self.scenario
        now = self.now
        forced_health = self.forced_health
        draw = self.health_rng.random
        flip = s.health_flip
        truth = self.truth
        planner = self.actors["planner"]
        for tid in self.targets:
            h = planner.health.get(tid)  # _last_ok, inlined
            # with health_amnesia the targets' health is the world's (``truth``), not the planner's belief
            last = truth[tid] if truth is not None else h is None or h.healthy
            forced = forced_health.get(tid) if forced_health else None
            if forced is not None and forced[0] <= now:
                del forced_health[tid]
                forced = None
            if forced is None:
                ok = last != (draw() < flip)
            elif forced[1] == "down":
                ok = False
            else:  # flapping
                ok = not last
            if truth is not None:
                truth[tid] = ok
                # a check result the planner lacks: a change, or any result it has not observed since it started
                if self.alive["planner"] and (h is None or h.healthy != ok or not h.observed):
                    if ok:
                        self.unconfirmed_down.discard(tid)
                    self._feed("planner", HealthObserved(now + self.skew["planner"], tid, ok, "sim"))
                    planner = self.actors["planner"]
            elif ok != last and self.alive["planner"]:
                self._feed("planner", HealthObserved(now + self.skew["planner"], tid, ok, "sim"))
        self._push(now + s.health_period, _HEALTH, "")

    def _planner_restarted(self) -> None:
        """A new planner, its health in memory gone: the targets the store kept as down must not be served
        again until it has observed them up (``check_restart_health``)."""
        if self.truth is not None:
            self.unconfirmed_down = {tid for tid, kept in self.store.health().items() if kept.healthy is False}
            if self.tracing and self.unconfirmed_down:
                self._note_trace("planner", "restart", f"store keeps {len(self.unconfirmed_down)} targets down: "
                                                       f"{', '.join(sorted(self.unconfirmed_down))}")

    # ----------------------------------------------------------------- faults

    def _fired(self, kind: str) -> None:
        self.faults_fired[kind] = self.faults_fired.get(kind, 0) + 1

    def _fault(self, f: Fault) -> None:
        if self.quiet:
            return
        kind = f.kind
        if self.tracing:
            self._note_trace(f.target if f.target in self.actors else "faults", "fault", f.describe())
        match kind:
            case "pause":
                self._fired(kind)
                self.paused_until[f.target] = self.now + INFLIGHT_TTL + f.duration
            case "crash":
                self._crash(f.target, f.mode, f.duration)
            case "latency_spike" | "throttle" | "store_outage":
                self._fired(kind)
                self.windows[kind].append((self.now, self.now + f.duration, f.value or 1.0))
            case "timeout_after_apply":
                self._fired(kind)
                self.timeout_next.add(f.target)
            case "redeliver":
                self._redeliver(f)
            case "clock_skew":
                self._fired(kind)
                self.skew[f.target] = f.value
            case "planner_restart":
                self._fired(kind)
                self.pending.pop("planner", None)
                planner = Planner("planner", ZONE, self.endpoints)
                if f.mode == "counter_reset":
                    planner.synced = True  # believes the counter starts again at 0; the store's CAS corrects it
                self.actors["planner"] = planner
                self._planner_restarted()
                self._push(self.now + 1.0, _WAKE, "planner")
            case "health_flap" | "aba":
                self._fired(kind)
                mode = "flap" if kind == "health_flap" else "down"
                until = self.now + (f.duration if kind == "health_flap" else self.scenario.planner_period * 1.5)
                self.forced_health[f.target] = (until, mode)
            case "all_unhealthy":
                self._fired(kind)
                for t in self.by_endpoint[f.target].targets:
                    self.forced_health[t.id] = (self.now + f.duration, "down")
            case "malformed_plan":
                self._malformed(f)
            case "corrupt":
                self._corrupt(f)
            case "marker_out_of_range":
                self._marker_out_of_range(f)
            case "second_owner":
                self._second_owner(f)
            case "partial_write":
                self._partial_write(f)
            case "health_amnesia":
                self._health_amnesia(f)
            case "request_exception":
                # the actor's next store or provider call raises ``f.value``-th exception of EXCEPTIONS
                if self.alive.get(f.target, False):
                    self._fired(kind)
                    self.executor.armed[f.target] = (f.mode, EXCEPTION_NAMES[int(f.value) % len(EXCEPTION_NAMES)])
        if self.dirty:
            self._after_step()

    def _crash(self, name: str, mode: str, down_for: float) -> None:
        if not self.alive.get(name, False):
            return
        self._fired("crash")
        entry = self.pending.pop(name, None)
        if entry is not None and mode == "after" and isinstance(entry[1], Request):
            # the request reached the store or provider and took effect; the process died before the reply
            # (after a write: acknowledged by the provider, never journalled, never finished in the store)
            with contextlib.suppress(Exception):  # escaped the executor: the process is dead anyway
                self.executor.request(name, entry[1], self.now + self.skew[name])
            if isinstance(entry[1], Collect | CleanUp):
                self.deleted_plans = True
        self.alive[name] = False
        self._push(self.now + down_for, _RESTART, name)
        if self.dirty or self.deleted_plans:
            self._after_step()

    def _restart(self, name: str) -> None:
        if name == "planner":
            self.actors[name] = Planner("planner", ZONE, self.endpoints)
            self._planner_restarted()
        elif name == "collector":
            self.actors[name] = Collector()
        elif name == "verifier":
            self.actors[name] = Verifier("verifier", ownership=self.ownership)
        else:
            self.actors[name] = self._new_enactor(name)
            self.began.pop(name, None)
        self.alive[name] = True
        if self.tracing:
            self._note_trace(name, "restart", "restarted with empty state")
        self._tick(name)

    def _redeliver(self, f: Fault) -> None:
        name = f.target
        actor = self.actors[name]
        head = int(self.store.head())
        if not self.alive[name] or name in self.pending or actor.busy or head < 1:
            return
        self._fired("redeliver")
        g = Generation(head if f.mode == "duplicate" else self.rng.randint(1, head))
        now_a = self.now + self.skew[name]
        if self.protocol == "legacy":
            actor.busy = True
            self._feed(name, DesiredLoaded(now_a, g, self.store.desired(None, g)))
        else:
            actor.busy = True
            self._feed(name, HeadRead(now_a, g))

    def _malformed(self, f: Fault) -> None:
        ep = self.by_endpoint[f.target]
        key = ep.key
        t0 = ep.targets[0]
        match f.mode:
            case "empty":
                rs = RecordSet.of(ep.ttl, [Member(t0.id, t0.addresses, 0)])
            case "bad_address":
                rs = RecordSet.of(ep.ttl, [Member(t0.id, ("10.0.0.256",), 100)])
            case "duplicate_target":
                rs = RecordSet(ep.ttl, (Member(t0.id, t0.addresses, 50), Member(t0.id, t0.addresses, 50)))
            case _:
                rs = RecordSet.of(0, [Member(t0.id, t0.addresses, 100)])
        head = self.store.head()
        gen = self.store.publish(head, [(key, rs)], self.now, "rogue")
        if gen is not None:
            self._fired("malformed_plan")
            self._on_publish(gen, ((key, rs),), rogue=True)
            self._wake_enactors()

    def _corrupt(self, f: Fault) -> None:
        key = self.by_endpoint[f.target].key
        seen = self.provider.read([key])[key]
        if seen.records is None and seen.marker is None:
            return  # never published yet: nothing to corrupt
        self._fired("corrupt")
        self.corrupting = True
        if f.mode != "emptied":
            self.hand_marked.add(key)
        match f.mode:
            case "emptied":
                self.monitor.exempt(key, self.now + self.scenario.repair_bound)
                self.provider.hand_edit(key, None, seen.marker)
            case "marker_deleted":
                self.monitor.hand_edited(key, None)
                self.provider.hand_edit(key, seen.records, None)
            case _:
                # A person editing the marker TXT: ``g=`` set back to an older generation and ``d=``
                # to the records' digest, the rest of the text (``p=``, the chain token of the
                # marker the last write replaced) kept as it was. Reproducing an older ``p=`` as
                # well would take copying an old marker byte for byte, which this fault does not
                # model (docs/simulation.md, "Faults").
                deleted = [p.generation for p in self.store.plans()]
                old = Generation(max(1, (min(deleted) - 1) if deleted else 1))
                self.monitor.hand_edited(key, int(old))
                digest = seen.records.digest if seen.records else "0"
                prev = seen.marker.prev if seen.marker else ""
                self.provider.hand_edit(key, seen.records, Marker(old, digest, prev))
        self.corrupting = False

    def _marker_out_of_range(self, f: Fault) -> None:
        """A person writes the marker TXT with ``g=`` out of range or garbage (``f.mode``: "g=<text>", with
        "/column" when the provider keeps markers as columns and holds the number itself). The rest of
        the text is the current marker's (``d=`` the records' digest, ``p=`` and ``o=`` kept). A text marker
        reaches dnsplane as ``Marker.from_text`` reads it, as from a real server's TXT record."""
        key = self.by_endpoint[f.target].key
        seen = self.provider.read([key])[key]
        if seen.records is None and seen.marker is None:
            return
        self._fired("marker_out_of_range")
        text, column = f.mode.removeprefix("g=").removesuffix("/column"), f.mode.endswith("/column")
        current = seen.marker or Marker(Generation(0), "", "")
        digest = seen.records.digest if seen.records else current.digest
        if column:
            marker: Marker | None = dataclasses.replace(current, generation=Generation(int(text)), digest=digest)
        else:
            edited = dataclasses.replace(current, digest=digest).to_text().split()
            edited[1] = f"g={text}"
            marker = Marker.from_text(" ".join(edited))
        self.hand_marked.add(key)  # no reference (I3) until dnsplane rewrites it
        if marker is not None and generation_in_range(marker.generation):
            self.monitor.hand_edited(key, int(marker.generation))  # read as an ordinary hand edit
        # (an out-of-range generation is not one dnsplane wrote: the monitor's I2 baseline stays)
        self.corrupting = True
        self.provider.hand_edit(key, seen.records, marker)
        self.corrupting = False

    def _second_owner(self, f: Fault) -> None:
        """Another installation (owner id ``INTRUDER``, its own store and numbering: ``f.value``) writes
        endpoint ``f.target`` with its own content and marker, as a second ``dnsplane up`` on the zone
        would. An adopted endpoint is taken back by the verifier; one that is not stays theirs (I7)."""
        key = self.by_endpoint[f.target].key
        seen = self.provider.read([key])[key]
        self._fired("second_owner")
        records = RecordSet.of(60, [Member("other-lb", ("198.51.100.7",), 1000)])
        theirs = seen.marker if seen.marker is not None and seen.marker.owner == INTRUDER else None
        marker = Marker.after(theirs, Generation(int(f.value)), records.digest, INTRUDER)
        self.hand_marked.add(key)  # another store's generation: no reference (I3) until dnsplane rewrites it
        self.monitor.hand_edited(key, None)
        self.corrupting = True
        self.provider.hand_edit(key, records, marker)
        self.corrupting = False

    def _health_amnesia(self, f: Fault) -> None:
        """A target goes down (mode "down", for ``f.duration``); once the planner has acted on it, the
        planner process restarts (mode "restart"): its in-memory health is gone, the store's is not."""
        if f.mode == "down":
            self._fired("health_amnesia")
            self.forced_health[f.target] = (self.now + f.duration, "down")
            # after the planner acted on it (two checks and a period), between two health checks (so the
            # new planner plans before it has observed anything)
            delay = min(f.duration / 2, 2.5 * self.scenario.health_period + self.scenario.planner_period)
            self._push(self.now + delay, _FAULT, "health_amnesia", dataclasses.replace(f, mode="restart"))
        elif self.alive["planner"]:
            self.pending.pop("planner", None)
            self.actors["planner"] = Planner("planner", ZONE, self.endpoints)
            self._planner_restarted()
            self._push(self.now + 1.0, _WAKE, "planner")

    def _partial_write(self, f: Fault) -> None:
        """For ``f.duration`` the provider rejects ``f.target``'s writes ("rejected": ``Rejected``, nothing
        written, the rest of the batch written) or applies only their marker ("marker_only")."""
        self._fired("partial_write")
        key = self.by_endpoint[f.target].key
        until = self.partial_until[(key, f.mode)] = max(self.partial_until.get((key, f.mode), 0.0),
                                                        self.now + f.duration)
        if f.mode == "rejected":
            self.provider.reject(key, "simulated: the server refuses this endpoint (a CNAME at the name)")
        else:
            self.provider.marker_only.add(key)
        self._push(until, _END, "", (key, f.mode))

    def _end_partial(self, what: tuple[EndpointKey, str]) -> None:
        key, mode = what
        if self.partial_until.get(what, 0.0) > self.now:
            return  # a later window on the same endpoint is still open
        self.partial_until.pop(what, None)
        if mode == "rejected":
            self.provider.reject(key, None)
        else:
            self.provider.marker_only.discard(key)
        if self.tracing:
            self._note_trace("faults", "fault", f"partial_write {key.name} {mode} ends")

    def _note_lies(self, observed: dict[EndpointKey, Observed]) -> None:
        """A marker that says more than its endpoint's records show (only a write applied in part makes
        one: dnsplane writes both together, and a person's edits in these scenarios keep them matching)
        must be reported by the verifier within ``repair_bound``."""
        for key, seen in observed.items():
            records, marker = seen.records, seen.marker
            if records is not None and marker is not None and marker.digest != records.digest:
                self.lies.setdefault(key, self.now)
            else:
                self.lies.pop(key, None)

    def _check_lies(self) -> None:
        verifier = self.actors.get("verifier")
        for key, since in list(self.lies.items()):
            if verifier is not None and verifier.last_problems.get(key, "lagging") != "lagging":
                # reported as what it is (not "lagging": that believes the marker): not all right, no
                # last-known-good, repaired when it can be
                del self.lies[key]
            elif self.now - since > self.scenario.repair_bound:
                del self.lies[key]
                self.monitor.fail(I8, key, f"its marker has said more than its records show since "
                                           f"t={since:.1f}s and the verifier has not reported it")

    # ----------------------------------------------------------------- quiet, I4, I6

    def _start_quiet(self) -> None:
        """Faults stop: windows close, paused processes resume, crashed ones come back."""
        self.quiet = True
        self.timeout_next.clear()
        self.executor.armed.clear()
        for key, mode in list(self.partial_until):
            self.partial_until[(key, mode)] = self.now
            self._end_partial((key, mode))
        for kind in self.windows:
            self.windows[kind] = [(a, min(b, self.now), f) for a, b, f in self.windows[kind]]
        for name, until in list(self.paused_until.items()):
            if until > self.now:
                self.paused_until[name] = self.now
        self.forced_health.clear()
        if self.tracing:
            self._note_trace("faults", "fault", "faults stop; convergence bound starts")

    def _final_checks(self) -> None:
        mon = self.monitor
        for name, actor in self.actors.items():  # I8: every actor still runs at the end
            if self.alive[name] and name not in self.pending and actor.busy:
                self._wedged(name)
        mon.check_converged(self.provider.read_all(), int(self.store.head()), self.scenario.convergence_bound)
        if self.protocol == "legacy":
            return
        before = self.provider.writes
        for name in self.enactor_names:
            if self.alive[name] and name not in self.pending:
                self._drain(name)
        fresh = Enactor("enactor-fresh", ZONE)
        self.actors["enactor-fresh"] = fresh
        self.skew["enactor-fresh"] = 0.0
        self._drain("enactor-fresh")
        mon.check_idempotent(before, self.provider.writes)

    def _drain(self, name: str) -> None:
        """Run one actor alone to quiet, synchronously, with no faults."""
        actor = self.actors[name]
        event: Any = Tick(self.now)
        for _ in range(10_000):
            step = actor.handle(event)
            self.steps += 1
            effects, request = step.effects, step.request
            if not effects and request is None:
                return
            failed = self.executor.effects(name, effects, self.now)
            if failed is not None:
                event = failed
                continue
            if request is None:
                return
            event = self.executor.request(name, request, self.now)
            self._after_step()


def run(scenario: Scenario, protocol: str, seed: int, schedule: list[Fault] | None = None, trace: bool = True,
        stop_on: str | None = None) -> RunResult:
    """Run one seed; see ``Simulation``."""
    return Simulation(scenario, protocol, seed, schedule, trace, stop_on).run()


def shrink(scenario: Scenario, protocol: str, seed: int, invariant: str,
           budget: int = 60, runner: Callable[..., RunResult] = run) -> list[Fault]:
    """Smallest fault schedule (greedy, chunks then singles) with which the run still violates ``invariant``."""
    first = runner(scenario, protocol, seed, trace=False, stop_on=invariant)
    schedule = list(first.schedule)

    def fails(candidate: list[Fault]) -> bool:
        result = runner(scenario, protocol, seed, candidate, trace=False, stop_on=invariant)
        return any(v.short == invariant for v in result.violations)

    tries = 0
    chunk = max(1, len(schedule) // 2)
    while chunk >= 1 and tries < budget:
        i = 0
        while i < len(schedule) and tries < budget:
            candidate = schedule[:i] + schedule[i + chunk:]
            tries += 1
            if fails(candidate):
                schedule = candidate
            else:
                i += chunk
        chunk //= 2
    return schedule
