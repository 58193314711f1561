"""A delivery has two instants: the request runs, and later its reply reaches the actor (issue 13).

In the runtime a request runs in a worker thread and its reply is handled later on the event loop,
so another actor, a pause or a crash can fall between a read and what the actor decides from it.
These runs show the simulator letting them in, and ``atomic_replies`` (the simulator before issue
13, which the remembered seeds replay with) keeping the read and its reply one instant.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dnsplane.errors import InvalidConfig
from dnsplane.protocol.messages import HeadRead, ReadHead, Step
from dnsplane.sim.driver import Simulation
from dnsplane.sim.scenario import FaultSpec, Scenario, load, parse
from dnsplane.store.base import INFLIGHT_TTL

# (time, "ran" | "reached", actor, request or event, what else is known then)
Log = list[tuple[float, str, str, Any, Any]]


def _watched(scenario: Scenario, seed: int) -> tuple[Simulation, Log]:
    """A run of ``scenario`` that logs when each request runs and when each event reaches its actor."""
    sim = Simulation(scenario, "safe", seed)
    log: Log = []
    run, feed = sim.executor.run, sim._feed

    def running(name: str, step: Step, now: float) -> Any:
        reply = run(name, step, now)
        if step.request is not None:  # how long its reply will travel (nothing when replies are atomic)
            log.append((sim.now, "ran", name, step.request, (reply, sim.reply_after.get(name, 0.0))))
        return reply

    def feeding(name: str, event: Any) -> None:
        log.append((sim.now, "reached", name, event, None))
        feed(name, event)

    sim.executor.run, sim._feed = running, feeding  # type: ignore[method-assign,assignment]
    return sim, log


# No faults; frequent plans (a plan every few seconds) and round trips of up to 8 s
BUSY = dataclasses.replace(load("us-east-1").without_faults(), duration=120.0, planner_period=5.0,
                           health_period=5.0, health_flip=0.3, latency=(0.5, 8.0))


def _stale_heads(scenario: Scenario, seed: int) -> list[str]:
    """Each enactor that read head h, and began h although the planner published a newer plan
    after the read ran and before the reply reached the enactor (the trace shows that order)."""
    sim, log = _watched(scenario, seed)
    result = sim.run()
    trace = result.trace
    found = []
    ran: dict[str, tuple[float, int]] = {}
    for t, what, name, event, extra in log:
        if what == "ran" and type(event) is ReadHead and name.startswith("enactor"):
            ran[name] = (t, int(extra[0].head))
        elif what == "reached" and type(event) is HeadRead and name in ran:
            read_at, head = ran.pop(name)
            newer = [i for i, e in enumerate(trace) if e.kind == "publish" and read_at < e.time < t
                     and e.generation > head]
            began = [i for i, e in enumerate(trace) if e.actor == name and e.kind == "begin" and e.time == t
                     and e.generation == head]
            if newer and began and newer[0] < began[0]:
                p = trace[newer[0]]
                found.append(f"{name} read head {head} at t={read_at:.2f}s; the planner published {p.generation} "
                             f"at t={p.time:.2f}s; {name} began {head} at t={t:.2f}s")
    assert result.ok, result.violations
    return found


def test_a_read_goes_stale_before_its_reply_reaches_the_enactor() -> None:
    found = _stale_heads(BUSY, 0)
    assert found, "no enactor's head read was overtaken by a publish before its reply reached it"


def test_with_atomic_replies_no_read_goes_stale_before_its_reply() -> None:
    assert _stale_heads(BUSY.with_atomic_replies(), 0) == []


# Only pauses, often: some fall on an actor after its request ran and before the reply reached it
# (enactor-3's writes take 60-300 s in us-east-1)
PAUSES = dataclasses.replace(load("us-east-1"), duration=1800.0,
                             faults={"pause": FaultSpec(1.0, 20.0, (30.0, 60.0))})


def _held_by_a_pause(scenario: Scenario, seeds: range) -> list[str]:
    """Each reply whose request ran before a pause of its actor, due while the actor was paused,
    that reached the actor only when the pause ended."""
    found = []
    for seed in seeds:
        sim, log = _watched(scenario, seed)
        result = sim.run()
        assert result.ok, result.violations
        pauses = [f for f in result.schedule if f.kind == "pause"]
        ran: dict[str, tuple[float, float, Any]] = {}
        for t, what, name, event, extra in log:
            if what == "ran":
                ran[name] = (t, extra[1], event)
            elif what == "reached" and name in ran:
                ran_at, travel, request = ran.pop(name)
                for f in pauses:
                    resumed = f.at + INFLIGHT_TTL + f.duration
                    if f.target == name and ran_at < f.at < ran_at + travel < resumed and t == resumed:
                        found.append(f"seed {seed}: {name}'s {type(request).__name__} ran at t={ran_at:.1f}s, "
                                     f"{name} paused at t={f.at:.1f}s, its reply was due at "
                                     f"t={ran_at + travel:.1f}s and reached it when it resumed at t={t:.1f}s")
        if found:
            break
    return found


def test_a_pause_between_a_request_and_its_reply_holds_the_reply() -> None:
    found = _held_by_a_pause(PAUSES, range(8))
    assert found, "no reply was held by a pause that fell between its request and its arrival"


def test_with_atomic_replies_no_reply_is_left_waiting_for_a_pause() -> None:
    assert _held_by_a_pause(PAUSES.with_atomic_replies(), range(4)) == []


def test_a_crash_between_a_request_and_its_reply_loses_the_reply() -> None:
    """The request ran (its effect stays); its reply never reaches the actor, which starts over."""
    scenario = dataclasses.replace(load("us-east-1"), duration=1800.0,
                                   faults={"crash": FaultSpec(1.0, 20.0, (5.0, 30.0))})
    lost = []
    for seed in range(8):
        sim, log = _watched(scenario, seed)
        result = sim.run()
        assert result.ok, result.violations
        crashes = [f for f in result.schedule if f.kind == "crash"]
        ran: dict[str, tuple[float, float, Any, Any]] = {}
        for t, what, name, event, extra in log:
            if what == "ran":
                ran[name] = (t, extra[1], event, extra[0])
            elif name in ran and event is ran[name][3]:
                del ran[name]  # the reply reached it
            elif name in ran and type(event).__name__ == "Tick":  # a round began: that reply is gone
                ran_at, travel, request, _ = ran.pop(name)
                if any(f.target == name and ran_at < f.at < ran_at + travel for f in crashes):
                    lost.append((seed, name, type(request).__name__))
        if lost:
            break
    assert lost, "no crash fell between a request's run and its reply"


def test_with_atomic_replies_every_reply_reaches_its_actor_as_its_request_runs() -> None:
    sim, log = _watched(BUSY.with_atomic_replies(), 1)
    sim.run()
    ran = {name: t for t, what, name, _, _ in log if what == "ran"}
    assert ran
    last_ran: dict[str, float] = {}
    for t, what, name, _, _ in log:
        if what == "ran":
            last_ran[name] = t
        elif name in last_ran:
            assert last_ran.pop(name) == t


def test_the_round_trip_is_split_not_lengthened() -> None:
    """The request runs inside the round trip drawn for it, and the reply arrives at its end: the
    latency ranges (and I4's bound made of them) mean what they did before issue 13."""
    sim, log = _watched(BUSY, 2)
    sim.run()
    trips = [extra[1] for _, what, name, _, extra in log if what == "ran" and name not in BUSY.slow]
    lo, hi = BUSY.latency
    assert trips and all(0.0 <= trip <= hi for trip in trips)
    assert min(trips) < lo < max(trips)  # a reply may travel less than the shortest round trip, or most of it


def test_the_scenario_option_parses() -> None:
    assert parse({"name": "x"}).atomic_replies is False
    assert parse({"name": "x", "atomic_replies": True}).atomic_replies is True
    with pytest.raises(InvalidConfig, match="atomic_replies"):
        parse({"name": "x", "atomic_replies": "yes"})
