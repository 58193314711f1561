"""The simulation driver: the production actors on a virtual clock, a seeded scheduler, and the wiring.

One run = (scenario, protocol, seed, fault schedule) → a deterministic trace.
Nothing here reads the wall clock or the global random state: every random
choice comes from ``random.Random`` instances seeded from the run's seed
(one stream for latencies, one for health, one for the fault schedule), so
``--seed S`` replays a run exactly and the shrinker can replay it with fewer
faults.

``Simulation`` owns the scheduler and wires the parts of a run together: the
event queue and the actors (ticks, pending requests, crashes and restarts), the
health workload, and when the monitor checks. The rest has a home of its own:
``injector.FaultInjector`` fires the schedule's faults and owns their state and
their quiet phase (with ``flaky.FlakyStore`` and ``flaky.FlakyProvider``, which
the interpreter talks to when the schedule has store or provider faults);
``references.References`` keeps I3's bookkeeping; ``tracing.Tracer`` keeps the
trace; ``world.SimExecutor`` (the runtime's ``Interpreter``) carries out every
command.

How a run proceeds (discrete events in time order; ties by insertion):

- each actor (planner, N enactors, collector, verifier — or N legacy enactors)
  is ticked every period, and enactors are also woken when a plan is published;
- ``handle(event)`` returns a ``Step``; its effects are applied at once; its
  request, if any, becomes the actor's one *pending completion*, due after a
  round trip drawn from the seeded stream. A delivery has two instants, as in the
  runtime (a worker thread runs the request; the reply is handled later on the
  event loop): the request runs against the store or provider at a uniform point
  of the round trip, and its reply, held as the pending completion, reaches the
  actor at the end of it; other actors, pauses and crashes fall in between
  (``atomic_replies`` in the scenario: one instant, as before issue 13). The
  latencies are the scheduler: they decide which pending completion is delivered next;
- health observations (the workload) and faults are events too;
- an exception out of an actor's own ``handle`` is a bug: the monitor reports it (I8, with the
  exception), then the run goes on as the runtime's ``App._handle`` does (the actor is told its
  round failed, or reset);
- after every step the ``Monitor`` checks I1, I2, I5 on the endpoints the step
  wrote, I3 after every step that deleted plans; after ``duration`` faults stop,
  paused actors resume, and after the convergence bound I4 is checked, then I6
  (every enactor re-run, and a fresh one, must cost no provider write).
"""

from __future__ import annotations

import contextlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dnsplane.errors import DnsplaneError
from dnsplane.execute import Fenced, fence_read
from dnsplane.execute import failed as failed_reply
from dnsplane.model import Conflict, EndpointKey, Generation, HealthRecord, RecordSet
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.legacy import LegacyEnactor
from dnsplane.protocol.messages import (
    AdvanceHead,
    Begin,
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
from dnsplane.protocol.planner import HEAD_CHECK, Planner
from dnsplane.protocol.verifier import Verifier
from dnsplane.sim.faults import Fault, make_schedule
from dnsplane.sim.injector import INTRUDER, FaultInjector
from dnsplane.sim.invariants import Lineage, Monitor, Violation
from dnsplane.sim.references import References
from dnsplane.sim.scenario import Scenario
from dnsplane.sim.tracing import TraceEvent, Tracer
from dnsplane.sim.vocabulary import ESCAPED, FaultKind
from dnsplane.sim.world import COLLECTING, PROVIDER_CALLS, PROVIDER_WRITES, ZONE, SimExecutor, SimProvider, fleet
from dnsplane.store.memory import MemoryStore

__all__ = ["INTRUDER", "PROTOCOLS", "RunResult", "Simulation", "TraceEvent", "run", "shrink"]

PROTOCOLS = ("safe", "legacy")
_TICK, _WAKE, _DELIVER, _HEALTH, _FAULT, _RESTART, _QUIET, _END = range(8)


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
    empty: dict[EndpointKey, list[tuple[float, float]]] = field(default_factory=dict)  # with ``empty_windows``

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
                 trace: bool = True, stop_on: str | None = None, empty_windows: bool = False) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        self.scenario, self.protocol, self.seed = scenario, protocol, seed
        self.rng = random.Random(seed)
        self.health_rng = random.Random(seed * 7919 + 1)
        # health_grace: each target is checked every 1, 2 or 3 health periods (from the n-th period on, n
        # below that), as a runtime's checks of many targets come in at different moments, so that a
        # (re)started planner hears from an endpoint's targets one by one; drawn only with a grace, from
        # a generator of its own (the other draws of a run are those of a scenario without it)
        self.check_every: dict[str, tuple[int, int]] = {}
        self.health_round = 0
        self.endpoints = fleet(scenario.endpoints, scenario.targets, scenario.policy)
        self.keys = [ep.key for ep in self.endpoints]
        self.targets = [t.id for ep in self.endpoints for t in ep.targets]
        if scenario.health_grace:
            draw = random.Random(seed * 7919 + 5)
            for tid in self.targets:
                every = draw.randint(1, 3)
                self.check_every[tid] = (every, draw.randrange(every))
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
        if empty_windows:  # for the blast radius (``--services``): when each endpoint was empty
            self.monitor.empty_since = {}
        self.monitor.guard(self.by_key, self._acted_on)  # G4: the planner's guards, at each plan published
        # I7: every endpoint is adopted unless the scenario says otherwise (``not_adopted``), so that a
        # marker deleted by hand stays a state the verifier repairs; the installation's owner id is ""
        not_adopted = {self.keys[i] for i in scenario.not_adopted}
        self.ownership = (Ownership("", None, frozenset(k for k in self.keys if k not in not_adopted))
                          if not_adopted else Ownership())
        self.monitor.adopted = self.ownership.adopted
        self.tracing = trace
        self.legacy = protocol == "legacy"
        self.slow = scenario.slow
        self.latency = scenario.latency
        self.atomic = scenario.atomic_replies
        self.reply_after: dict[str, float] = {}  # actor -> how long its next reply travels after its request ran
        # actor -> (token, the store's half of its WriteBatch in flight, read when it was sent: ``_send_write``)
        self.fenced: dict[str, tuple[int, Fenced]] = {}
        self.stop_on = stop_on
        # the scheduler
        self.now = 0.0
        self.steps = 0
        self.seq = 0
        self.queue: list[tuple[float, int, int, str, Any]] = []
        self.actors: dict[str, Any] = {}
        self.periods: dict[str, float] = {}
        self.pending: dict[str, tuple[int, object]] = {}  # actor -> (token, request or ready reply)
        self.alive: dict[str, bool] = {}
        self.stopped = False
        # what the monitor checks after a step: endpoints written, plans deleted (I3)
        self.dirty: list[EndpointKey] = []
        self.deleted_plans = False
        self.published_max = 0
        self.escapes: dict[str, str] = {}  # actor -> the last exception that escaped the executor (I8's detail)
        self.tracer = Tracer(self)
        self.refs = References(self)
        self.faults = FaultInjector(self, schedule)
        # the injector's, read on every step: bound here once
        self.skew, self.paused_until = self.faults.skew, self.faults.paused_until
        # the interpreter talks to the flaky store and provider when this run's schedule has their faults
        self.executor = SimExecutor(self.faults.store or self.store, self.faults.calls_provider or self.provider,
                                    self.on_publish, self._on_emptied, journal=False, armed=self.faults.armed)
        self.provider.add_listener(self._on_written)
        # only a hand-written marker can move the head far (relabelled ours, another store's g= too)
        self.check_heads = any(f.kind in (FaultKind.MARKER_OUT_OF_RANGE, FaultKind.RELABEL_OWNER) for f in schedule)
        # The planner's check that the plan at the store's head is its own (a read every HEAD_CHECK seconds
        # while idle), as the runtime has it, in scenarios that can put the store back to a backup, the
        # one fault it is for; off in the others, whose remembered seeds replay as they were found
        self.head_check = HEAD_CHECK if FaultKind.STORE_ROLLBACK in scenario.faults else 0.0
        self.monitor.numbers = FaultKind.STORE_ROLLBACK in scenario.faults  # and the check they are for (I2)
        self._build_actors()

    def clock(self) -> float:
        """The simulated true time (the flaky store's and provider's windows are in it)."""
        return self.now

    # ----------------------------------------------------------------- setup

    def _build_actors(self) -> None:
        s = self.scenario
        self.actors["planner"] = self._new_planner()
        self.periods["planner"] = s.planner_period
        for name in self.enactor_names:
            self.actors[name] = self._new_enactor(name)
            self.periods[name] = s.enactor_period
        if self.protocol == "safe":
            self.actors["collector"] = Collector()
            self.periods["collector"] = s.collector_period
            self.actors["verifier"] = self._new_verifier()
            self.periods["verifier"] = s.verifier_period
        for name in self.actors:
            self.alive[name] = True
            self.skew[name] = 0.0
            self._push(self.rng.uniform(0, min(self.periods[name], 5.0)), _TICK, name)
        self._push(0.0, _HEALTH, "")
        for fault in self.schedule:
            self._push(fault.at, _FAULT, fault.kind, fault)

    def _new_verifier(self) -> Verifier:
        return Verifier("verifier", max_repairs=self.scenario.max_repairs, ownership=self.ownership)

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
        faults = self.faults
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
                faults.fire(payload)
            elif kind == _RESTART:
                self._restart(actor)
            elif kind == _QUIET:
                faults.start_quiet()
            elif kind == _END:
                faults.end_partial(payload)
            if actor == "verifier" or kind >= _FAULT:  # only the verifier's steps change what it contests
                self._sync_contested()
            if monitor.exempt_until:
                monitor.check_exemptions(self.provider.read)
            if faults.lies:
                faults.check_lies()
        if not self.stopped:
            self.now = end
            self.monitor.now = end
            self._final_checks()
        return RunResult(
            self.protocol, s.name, self.seed, self.steps, self.now, list(self.monitor.violations),
            dict(sorted(self.faults.fired_counts.items())), self.schedule,
            sum(a.stats.get("conflicts", 0) for a in self.actors.values() if hasattr(a, "stats")),
            self.actors["verifier"].stats["repairs"] if "verifier" in self.actors else 0,
            int(self.store.head()), self.provider.writes, self.tracer.events, list(self.monitor.timeline),
            dict(self.monitor.close_empty_windows()),
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
        """An exception escaped the interpreter (``Interpreter.run`` let it through). Modelled as the runtime's
        loop handled it before issue 8: logged once, and the actor gets no reply to its request."""
        self.faults.fired(ESCAPED)
        cls = type(err)
        what = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
        self.escapes[name] = f"at t={self.now:.1f}s {what} escaped the executor: {err}"
        if self.tracing:
            self.tracer.note(name, "failed", f"{what} escaped the executor: {err}; "
                                             f"the round ends with no reply")

    def _raised(self, name: str, event: Any, err: Exception) -> Step:
        """``name``'s own code raised handling ``event``: a bug, reported under I8 with the exception.
        Then what the runtime's ``App._handle`` does: the actor is told its round failed (a ``Failed``),
        and if that raises too, or the event was a ``Failed``, its state is reset; the round is lost."""
        self.monitor.raised(name, event, err)
        if self.tracing:
            self.tracer.note(name, "failed", f"{type(err).__name__} raised handling {type(event).__name__}: {err}")
        actor = self.actors[name]
        if type(event) is not Failed:
            failure = Failed(self.now + self.skew[name], f"{type(err).__name__} in {name} handling "
                                                         f"{type(event).__name__}: {err}", True, 0.0)
            with contextlib.suppress(Exception):
                return actor.handle(failure)
        if isinstance(actor, Enactor | Verifier):  # ``App.reset``
            actor.reset(self.ownership)
            if isinstance(actor, Verifier):
                self.monitor.verifier_started()
        elif isinstance(actor, Planner | Collector):
            actor.reset()
        else:
            self.actors[name] = self._new_enactor(name)
        return Step()

    def _feed(self, name: str, event: Any) -> None:
        """Feed ``event`` to actor ``name``: apply its effects, make its request the pending completion."""
        try:
            step = self.actors[name].handle(event)
        except Exception as err:  # a bug in the actor's own code (I8); the runtime survives it, as here
            step = self._raised(name, event, err)
        self.steps += 1
        self.monitor.steps = self.steps
        effects, request = step.effects, step.request
        if effects or request is not None:
            if self.tracing:
                self.tracer.commands(name, event, step.commands())
            failed = None
            escaped = False
            if effects:
                # the interpreter's ``run``, effects in order, the first that raises ends the step as Failed
                now_a = self.now + self.skew[name]
                ex = self.executor
                ex.began = False
                ex.lkg_set = None
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
                        self.refs.began[name] = self.now
                    if ex.lkg_set is not None:
                        # it took effect, then the step failed (a ``request_exception`` after it, which
                        # reply latency lets fall between Resolve's run and its reply: chaos 2323): the
                        # store's last-known-good moved, and with it the watermark (as the store kept it: not
                        # above its head)
                        self.refs.lkg = int(self.store.last_known_good() or 0)
                    elif any(type(c) is Begin for c in effects):
                        # the Begin itself failed: the store holds no lease, whatever an earlier Begin
                        # left here (chaos 5391); a missing entry would count as in flight
                        self.refs.began[name] = float("-inf")
                        if self.tracing:  # the trace said "begins" when the command was issued
                            g = next(int(c.generation) for c in effects if type(c) is Begin)
                            why = failed.error if failed is not None else "an exception escaped"
                            self.tracer.note(name, "begin", f"could not begin generation {g}: {why}", g)
                else:  # a Begin that failed at the store registered nothing: no reference
                    if began:
                        self.refs.began[name] = self.now
                    for c in effects:
                        if type(c) is SetLastKnownGood:
                            self.refs.lkg = int(self.store.last_known_good() or 0)  # as the store kept it
                            break
                if self.check_heads and any(type(c) is AdvanceHead for c in effects):
                    self.monitor.check_head(int(self.store.head()), self.published_max)
            if escaped:
                request = None  # the round ended with the exception: the request was never sent
            if self.legacy and type(event) is DesiredLoaded and name in self.began_names:
                self.refs.began[name] = self.now
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
                    lo, hi = slow if slow is not None and kind in PROVIDER_WRITES else self.latency
                    spiked = kind in PROVIDER_CALLS
                lat = lo + (hi - lo) * self.rng.random()  # exactly ``rng.uniform(lo, hi)``
                if spiked and (flaky := self.faults.provider) is not None and flaky.spikes.spans:
                    lat *= flaky.spikes.factor(self.now)  # ``flaky.latency_factor()``, without a call of the clock
                self.seq += 1
                token = self.seq
                if failed is None and kind is WriteBatch and not self.atomic:
                    what = self._send_write(name, request, token)
                self.pending[name] = (token, what)
                if type(what) is not Failed and not self.atomic:
                    # The request runs at a uniform point of the round trip and its reply travels the rest:
                    # the round trip is the one drawn (the latency ranges and I4's bound mean what they
                    # did), the window between the read and what follows it is anywhere in it. A Failed in
                    # hand has no second instant: its effect ran now, in this step.
                    after = lat * self.rng.random()
                    self.reply_after[name] = after
                    lat -= after
                heapq.heappush(self.queue, (self.now + lat, token, _DELIVER, name, token))
        elif self.tracing:
            self.monitor.note(f"{name}: {type(event).__name__} -> nothing")
        if self.dirty or self.deleted_plans:
            self.after_step()

    def _send_write(self, name: str, request: WriteBatch, token: int) -> WriteBatch | Failed:
        """The writer's half of a ``WriteBatch`` (the provider's write token, then the store's fence), read
        when the request is sent (``execute.fence_read``); its provider call runs at the request's instant,
        later. In the runtime the two are one thread call a few milliseconds apart, but the window between
        them is real: a plan published in it is not seen by the fence (the token is what carries the write
        across it), and a pause (SIGSTOP, a collection, a starved thread) can stretch it. Here it is the
        request's way out, and a pause that holds the request. A store or provider that fails the read
        fails the request, whose provider call is then never made."""
        try:
            fenced = fence_read(self.executor.store, self.executor.provider, request)
        except Exception as err:  # an outage: the runtime's ``run`` replies Failed
            return failed_reply(err, self.now + self.skew[name])
        self.fenced[name] = (token, fenced)
        if fenced.stale and self.tracing:
            plans = sorted({int(g) for g in fenced.stale.values()})
            self.monitor.note(f"{name}: the store's fence, read as the write is sent: plans {plans} "
                              f"changed {len(fenced.stale)} of its endpoints")
        return request

    def _deliver(self, name: str, token: int) -> None:
        """``name``'s pending completion is due: a request runs now (its reply then travels back, held as
        the pending completion, unless replies are atomic), or the reply in hand reaches the actor.

        What belongs to which instant, and why (the runtime's ``App.feed`` is the reference):
        - at the request's execution: the store or provider call itself, so the ``timeout_after_apply``
          fault (the write was applied; what travels back is the timeout), the trace of what the call
          did (writes, conflicts, plans collected: when the world changed), and the monitor's checks of
          the step that changed it (I1, I2, I5 on what it wrote, I3 after a ``Collect``);
        - at the reply: the actor's next step, its effects (a ``Begin`` after ``ReadHead``) and its next
          request, and waking the enactors after a ``Published`` (the runtime sets their wake events
          when the reply is back on its loop, so a planner that dies first wakes nobody);
        - a paused (SIGSTOPped) actor's request waits to run, and its reply waits to be handled, until the
          process runs again; a crash or restart in between loses the reply (its token no longer
          matches) and the request keeps its effect; ``_redeliver`` leaves an actor holding a reply
          alone, like any actor with a completion pending.
        """
        entry = self.pending.get(name)
        if entry is None or entry[0] != token:
            return  # the actor crashed or restarted since: this completion is lost
        if self.paused_until:
            paused = self.paused_until.get(name, 0.0)
            if paused > self.now:  # SIGSTOPped: the request or reply waits until the process runs again
                heapq.heappush(self.queue, (paused, token, _DELIVER, name, token))
                return
        del self.pending[name]
        what: Any = entry[1]
        kind = type(what)
        if isinstance(what, Request):
            now_a = self.now + self.skew[name]
            # only a WriteBatch has its writer's half read as it was sent (``_send_write``, which replaces
            # an entry its actor's lost WriteBatch left): dispatched on the class, not ``isinstance``
            batch = kind is WriteBatch
            if batch:
                fenced = self.fenced.pop(name, None)
                if fenced is not None and fenced[0] == token:
                    self.executor.fenced[name] = fenced[1]
            try:  # the interpreter's ``run``
                reply = self.executor.run(name, Step((), what), now_a)
            except Exception as err:  # escaped the executor: the runtime's loop before issue 8
                if batch:
                    self.executor.fenced.pop(name, None)
                if kind in COLLECTING:
                    self.deleted_plans = True
                self._escaped(name, err)
                if self.dirty or self.deleted_plans:
                    self.after_step()
                return
            if type(what) is WriteBatch:  # ``batch``, said so the type checker narrows ``what``
                self.executor.fenced.pop(name, None)  # not read when an armed exception came first
                if what.fence is not None and type(reply) is WriteDone:
                    self._fence_refusals(name, what, reply)
            if reply is None:
                raise DnsplaneError(f"not a request: {kind.__name__}")
            if self.faults.timeout_next and kind in PROVIDER_WRITES and self.faults.timed_out(name):
                self.tracer.note(name, "fault", "write applied, caller timed out")
                reply = Failed(now_a, "timeout (the write was applied)", True, 1.0)
            if kind in COLLECTING:
                self.deleted_plans = True
            if self.tracing:
                self.tracer.request(name, what, reply)
            if not self.atomic:  # the reply travels back: it is the actor's pending completion until then
                self.seq += 1
                self.pending[name] = (self.seq, reply)
                heapq.heappush(self.queue, (self.now + self.reply_after[name], self.seq, _DELIVER, name, self.seq))
                if self.tracing:
                    self.monitor.note(f"{name}: {kind.__name__} ran -> {type(reply).__name__} "
                                      f"(reaches it in {self.reply_after[name]:.2f}s)")
                if self.dirty or self.deleted_plans:
                    self.after_step()
                return
        else:
            reply = what  # a Failed made when an effect failed
        if type(reply) is Published:
            self.wake_enactors()
        self._feed(name, reply)

    def _fence_refusals(self, name: str, batch: WriteBatch, done: WriteDone) -> None:
        """The monitor learns each write of ``batch`` the store's fence refused (I8: none sent again)."""
        assert batch.fence is not None
        sent = {w.key: w for w in batch.writes}
        for r in done.results:
            if isinstance(r, Conflict) and r.newer is not None and r.key in sent:
                w = sent[r.key]
                expect = (f"records {w.expect_records.digest if w.expect_records else None}, "
                          f"marker {w.expect.to_text() if w.expect else None}")
                self.monitor.fence_refused(name, int(batch.fence), r.key, expect, int(w.marker.generation),
                                           w.records.digest, int(r.newer))

    def after_step(self) -> None:
        """The monitor's checks after a step: I1, I2, I5 on the endpoints it wrote, I3 if it deleted plans."""
        mon = self.monitor
        if self.dirty:
            keys, self.dirty = self.dirty, []
            observed = self.provider.read(keys)
            mon.check(observed)
            mon.steps = self.steps
            if self.faults.check_partial:
                self.faults.note_lies(observed)
        if self.deleted_plans:
            self.deleted_plans = False
            self.refs.check()

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
        if self.faults.corrupting:  # a human's edit (or another installation's), not dnsplane's write
            # I7: the monitor learns what is foreign now (with some endpoint not adopted), and whose marker
            # is there (a write over another owner's marker is a takeover)
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
        self.refs.hand_marked.difference_update(keys)
        for key in keys:
            self.refs.written_at[key] = self.now

    def on_publish(self, gen: Generation, changes: tuple[tuple[EndpointKey, RecordSet], ...],
                    rogue: bool = False) -> None:
        self.monitor.on_publish(gen, changes)
        unconfirmed_down = self.faults.unconfirmed_down
        if unconfirmed_down and not rogue:
            planner = self.actors["planner"]
            believed_down = {tid for tid, h in planner.health.items() if h.healthy is False}
            self.monitor.check_restart_health(changes, unconfirmed_down | believed_down,
                                              unconfirmed_down, self.by_key)
        grace, truth = self.scenario.health_grace, self.faults.truth
        if grace and truth is not None and not rogue and self.now < self.planner_since + grace:
            # H1, the grace: a planner (re)started less than ``health_grace`` ago serves no target that is
            # down and that it has not heard from since (it would be planning on unknown health)
            unheard_down = {tid for tid, up in truth.items() if not up and tid not in self.reported}
            if unheard_down:
                self.monitor.check_heard_health(changes, unheard_down)
        self.published_max = max(self.published_max, int(gen))
        if self.tracing:
            self.tracer.note("planner", "publish", f"generation {gen} ({len(changes)} changes)", int(gen))

    def _on_emptied(self, keys: tuple[EndpointKey, ...]) -> None:
        if self.tracing:
            self.tracer.emptied(keys)

    def _on_violation(self, v: Violation) -> None:
        if self.tracing:
            self.tracer.violation(v)
        if self.stop_on is not None and (self.stop_on == "any" or v.short == self.stop_on):
            self.stopped = True

    def wake_enactors(self) -> None:
        for name in self.enactor_names:
            if name not in self.pending:
                self._push(self.now + self.rng.uniform(0.01, 1.0), _WAKE, name)

    # ----------------------------------------------------------------- workload: health

    def _health(self) -> None:
        """Health checks of every target (the workload); they stop when faults stop."""
        faults = self.faults
        if faults.quiet:
            return
        s = self.scenario
        now = self.now
        forced_health = faults.forced_health
        draw = self.health_rng.random
        flip = s.health_flip
        truth = faults.truth
        planner = self.actors["planner"]
        check_every, n = self.check_every, self.health_round
        self.health_round += 1
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
                # (with a grace, only at the target's own checks)
                due = not check_every or n % check_every[tid][0] == check_every[tid][1]
                if self.alive["planner"] and due and (h is None or h.healthy != ok or not h.observed):
                    if ok:
                        faults.unconfirmed_down.discard(tid)
                    self.reported.add(tid)
                    self._feed("planner", HealthObserved(now + self.skew["planner"], tid, ok, "sim"))
                    planner = self.actors["planner"]
            elif ok != last and self.alive["planner"]:
                self._feed("planner", HealthObserved(now + self.skew["planner"], tid, ok, "sim"))
        self._push(now + s.health_period, _HEALTH, "")

    # ----------------------------------------------------------------- faults

    def crash(self, name: str, mode: str, down_for: float) -> None:
        """Actor ``name`` crashes now (a ``crash`` fault), its request taken effect (``mode`` "after") or not,
        and restarts ``down_for`` seconds later with empty state."""
        if not self.alive.get(name, False):
            return
        self.faults.fired(FaultKind.CRASH.value)
        entry = self.pending.pop(name, None)
        # a reply in hand (not a Request) is lost whatever the mode: its request ran already
        if entry is not None and mode == "after" and isinstance(entry[1], Request):
            # the request reached the store or provider and took effect; the process died before the reply
            # (after a write: acknowledged by the provider, never journalled, never finished in the store)
            with contextlib.suppress(Exception):  # escaped the executor: the process is dead anyway
                self.executor.request(name, entry[1], self.now + self.skew[name])
            if type(entry[1]) in COLLECTING:
                self.deleted_plans = True
        self.alive[name] = False
        self._push(self.now + down_for, _RESTART, name)
        if self.dirty or self.deleted_plans:
            self.after_step()

    def _restart(self, name: str) -> None:
        if name == "planner":
            self.actors[name] = self._new_planner()
            self.faults.planner_restarted()
        elif name == "collector":
            self.actors[name] = Collector()
        elif name == "verifier":
            self.actors[name] = self._new_verifier()
            self.monitor.verifier_started()  # a fresh verifier may take each endpoint over once more (I7)
        else:
            self.actors[name] = self._new_enactor(name)
            self.refs.began.pop(name, None)
        self.alive[name] = True
        if self.tracing:
            self.tracer.note(name, "restart", "restarted with empty state")
        self._tick(name)

    def restart_planner(self, counter_reset: bool) -> None:
        """The planner process restarts now (``planner_restart``, ``health_amnesia``): its request in flight is
        lost, and the new planner runs a second later (``counter_reset``: believing the counter starts again
        at 0; the store's compare-and-set corrects it)."""
        self.pending.pop("planner", None)
        planner = self._new_planner()
        if counter_reset:  # in sync with an empty store: its next plan is generation 1
            planner = Planner.from_snapshot("planner", ZONE, self.endpoints, Generation(0), {})
            planner.health_grace, planner.head_check = self.scenario.health_grace, self.head_check
        self.actors["planner"] = planner
        self.faults.planner_restarted()
        self._push(self.now + 1.0, _WAKE, "planner")

    def _acted_on(self) -> dict[str, HealthRecord]:
        """The health the planner acted on at the plan being published: what it believes the store kept,
        and what it saves with that plan (the store's own table, when it was put back to a backup, is the
        backup's until the planner next reloads)."""
        planner = self.actors["planner"]
        assert isinstance(planner, Planner)
        return {**planner.kept, **dict(planner.saving)}

    def store_restored(self, backup: MemoryStore, lineage: Lineage, taken_at: float, restart: bool) -> None:
        """An operator puts ``backup``, taken at ``taken_at``, back as the store now (``store_rollback``;
        ``lineage``: the monitor's then): the plans published since are gone, the zone keeps what they wrote,
        and the leases of enactors that began since are gone too (no I3 reference of theirs is the
        collector's to keep, until they begin again). With ``restart``, dnsplane was stopped for
        it: every actor's request not yet sent is lost, and each starts again a second later with empty
        state (the planner from the restored store's head)."""
        if restart:
            for name in self.actors:
                if self.alive.get(name, False):
                    self.pending.pop(name, None)
                    self.alive[name] = False
                    self._push(self.now + 1.0, _RESTART, name)
        self.store.restore(backup)
        self.monitor.store_rolled_back(int(self.store.head()), lineage)
        self.refs.lkg = int(self.store.last_known_good() or 0)  # the collector's reference is the backup's now
        for name, began in self.refs.began.items():
            if began > taken_at:
                self.refs.began[name] = float("-inf")  # the store holds no lease of it
        # A marker no plan of the restored store wrote is no reference of it (I3) until dnsplane rewrites it:
        # one written since the backup names a plan of the lineage put back over (a lost plan, or another
        # under the same number), and one outside the restored head and watermark names none it holds (the
        # verifier lifts the head past one above; one below names content the next collect deletes, which
        # the verifier repairs as a marker of a deleted plan)
        head, watermark = int(self.store.head()), int(self.store.low_watermark(self.now))
        written_at = self.refs.written_at
        for key, seen in self.provider.read_all().items():
            marker = seen.marker
            if marker is not None and (written_at.get(key, 0.0) > taken_at
                                       or not watermark <= marker.generation <= head):
                self.refs.hand_marked.add(key)
        if self.tracing:
            self.tracer.note("faults", "fault", f"the store put back to a backup (head {int(self.store.head())})")

    def _new_planner(self) -> Planner:
        """A planner with empty state and the scenario's health grace, starting now: the targets it has
        heard from (``reported``, H1's check of the grace) start again with it."""
        self.reported: set[str] = set()
        self.planner_since = self.now
        return Planner("planner", ZONE, self.endpoints, health_grace=self.scenario.health_grace,
                       head_check=self.head_check)

    def at_fault(self, at: float, fault: Fault) -> None:
        """Fire ``fault`` at ``at`` (a fault in two acts: ``health_amnesia``)."""
        self._push(at, _FAULT, fault.kind, fault)

    def at_window_end(self, at: float, what: tuple[EndpointKey, str]) -> None:
        """End the partial-write window ``what`` at ``at`` (``FaultInjector.end_partial``)."""
        self._push(at, _END, "", what)

    def _redeliver(self, f: Fault) -> None:
        name = f.target
        actor = self.actors[name]
        head = int(self.store.head())
        if not self.alive[name] or name in self.pending or actor.busy or head < 1:
            return
        self.faults.fired(f.kind)
        g = Generation(head if f.mode == "duplicate" else self.rng.randint(1, head))
        now_a = self.now + self.skew[name]
        # An idle enactor takes a stale reply as the start of a round (its phase follows the reply)
        if self.protocol == "legacy":
            self._feed(name, DesiredLoaded(now_a, g, self.store.desired(None, g)))
        else:
            self._feed(name, HeadRead(now_a, g))

    # ----------------------------------------------------------------- quiet, I4, I6

    def _final_checks(self) -> None:
        mon = self.monitor
        for name, actor in self.actors.items():  # I8: every actor still runs at the end
            if self.alive[name] and name not in self.pending and actor.busy:
                self._wedged(name)
        mon.check_converged(self.provider.read_all(), int(self.store.head()), self.scenario.convergence_bound)
        planner = self.actors["planner"]
        if isinstance(planner, Planner) and self.alive["planner"] and not planner.busy and planner.synced:
            mon.check_planned({k: rs.digest for k, rs in planner.published.items()}, int(self.store.head()))
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
        # I8, the collector's progress: one more round of the run's own collector (a fresh one when it is
        # down or waits for a reply), then nothing the watermark allows to collect is left
        name = "collector"
        if not self.alive[name] or name in self.pending or self.actors[name].busy:
            name = "collector-fresh"
            self.actors[name] = Collector(name)
            self.skew[name] = 0.0
        self._drain(name)
        self.deleted_plans = True
        self.after_step()
        mon.check_collected([int(p.generation) for p in self.store.plans()], int(self.store.low_watermark(self.now)))

    def _drain(self, name: str) -> None:
        """Run one actor alone to quiet, synchronously, with no faults."""
        actor = self.actors[name]
        event: Any = Tick(self.now)
        for _ in range(10_000):
            try:
                step = actor.handle(event)
            except Exception as err:  # a bug in the actor's own code (I8): it runs no further here
                self.monitor.raised(name, event, err)
                return
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
            self.after_step()


def run(scenario: Scenario, protocol: str, seed: int, schedule: list[Fault] | None = None, trace: bool = True,
        stop_on: str | None = None, empty_windows: bool = False) -> RunResult:
    """Run one seed; see ``Simulation``."""
    return Simulation(scenario, protocol, seed, schedule, trace, stop_on, empty_windows).run()


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
