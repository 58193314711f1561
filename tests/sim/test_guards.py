"""G4, the planner's guards (DESIGN.md point 4) as the monitor checks them at each plan published, and the
scenario option that gives a simulated fleet a policy with guards to keep (``fleet: {policy: ...}``)."""

from __future__ import annotations

import dataclasses

import pytest

from dnsplane.errors import InvalidConfig
from dnsplane.model import Endpoint, EndpointKey, Generation, HealthRecord, Member, Policy, RecordSet
from dnsplane.protocol import planner
from dnsplane.sim.driver import run
from dnsplane.sim.invariants import G4, I1, Monitor
from dnsplane.sim.scenario import load, parse
from dnsplane.sim.world import SIM_POLICY, ZONE, fleet

EP = fleet(1, 3)[0]  # targets lb-0-0, lb-0-1, lb-0-2 of capacity 100, 200, 300
KEY = EP.key


def endpoint(min_targets: int = 1, max_weight_shift: float = 1.0, fail_open: bool = True) -> Endpoint:
    return dataclasses.replace(EP, policy=dataclasses.replace(
        SIM_POLICY, min_targets=min_targets, max_weight_shift=max_weight_shift, fail_open=fail_open))


def plan(**weights: int) -> RecordSet:
    by_id = {t.id: t for t in EP.targets}
    return RecordSet.of(EP.ttl, [Member(tid, by_id[tid].addresses, w) for tid, w in weights.items()])


def monitor(ep: Endpoint, down: frozenset[str] = frozenset()) -> Monitor:
    m = Monitor(ZONE, collect=True)
    m.guard({KEY: ep}, lambda: {tid: HealthRecord(False, 0.0) for tid in down})
    return m


def found(m: Monitor) -> list[tuple[str, str]]:
    return [(v.invariant, v.detail) for v in m.violations]


ALL = {"lb-0-0": 167, "lb-0-1": 333, "lb-0-2": 500}


def test_a_plan_within_the_guards_is_no_violation() -> None:
    m = monitor(endpoint(min_targets=2, max_weight_shift=0.5))
    m.on_publish(Generation(1), [(KEY, plan(**ALL))])
    m.on_publish(Generation(2), [(KEY, plan(**{"lb-0-1": 400, "lb-0-2": 600}))])  # 17 % moved, two targets
    assert found(m) == []


def test_a_plan_that_moves_more_than_max_shift_is_reported() -> None:
    m = monitor(endpoint(max_weight_shift=0.3))
    m.on_publish(Generation(1), [(KEY, plan(**ALL))])
    m.on_publish(Generation(2), [(KEY, plan(**{"lb-0-0": 333, "lb-0-1": 667}))])  # lb-0-2's half moves at once
    [(invariant, detail)] = found(m)
    assert invariant == G4 and "moves 50% of the weight" in detail and "max_weight_shift=30%" in detail


def test_the_first_plan_and_one_after_a_rogue_plan_move_freely() -> None:
    m = monitor(endpoint(max_weight_shift=0.1))
    m.on_publish(Generation(1), [(KEY, plan(**{"lb-0-0": 1000}))])
    rogue = RecordSet.of(0, [Member("lb-0-0", ("10.0.0.1",), 100)])  # TTL 0: invalid, not the planner's
    m.on_publish(Generation(2), [(KEY, rogue)])
    m.on_publish(Generation(3), [(KEY, plan(**ALL))])
    assert found(m) == []


def test_a_plan_below_min_targets_is_reported_as_i1() -> None:
    m = monitor(endpoint(min_targets=2))
    m.on_publish(Generation(1), [(KEY, plan(**{"lb-0-2": 1000}))])
    [(invariant, detail)] = found(m)
    assert invariant == I1 and "below the policy floor min_targets=2" in detail


def test_with_every_target_down_fail_open_serves_them_all() -> None:
    down = frozenset(t.id for t in EP.targets)
    m = monitor(endpoint(fail_open=True), down)
    m.on_publish(Generation(1), [(KEY, plan(**ALL))])
    assert found(m) == []
    m.on_publish(Generation(2), [(KEY, plan(**{"lb-0-2": 1000}))])  # the highest capacity only: not failing open
    [(invariant, detail)] = found(m)
    assert invariant == G4 and "fail open serves all of them" in detail


def test_with_every_target_down_and_fail_open_false_the_last_plan_stays() -> None:
    down = frozenset(t.id for t in EP.targets)
    m = monitor(endpoint(fail_open=False), down)
    m.on_publish(Generation(1), [(KEY, plan(**ALL))])  # never planned before: all of them, no violation
    assert found(m) == []
    m.on_publish(Generation(2), [(KEY, plan(**{"lb-0-1": 400, "lb-0-2": 600}))])
    [(invariant, detail)] = found(m)
    assert invariant == G4 and "fail_open is false" in detail


def test_without_guard_the_monitor_checks_no_plan() -> None:
    m = Monitor(ZONE, collect=True)
    m.on_publish(Generation(1), [(KEY, plan(**{"lb-0-2": 1000}))])
    m.on_publish(Generation(2), [(EndpointKey(KEY.name, KEY.rtype), plan(**{"lb-0-0": 1000}))])
    assert found(m) == []


def test_a_scenario_sets_the_fleets_policy() -> None:
    s = parse({"name": "x", "fleet": {"endpoints": 2, "targets": 3,
                                      "policy": {"min_targets": 2, "max_weight_shift": 0.25, "fail_open": False}}})
    assert s.policy == Policy(2, 0.25, False, rise=1, fall=1)
    assert {ep.policy for ep in fleet(s.endpoints, s.targets, s.policy)} == {s.policy}
    assert parse({"name": "x"}).policy is None
    with pytest.raises(InvalidConfig, match=r"fleet\.policy"):
        parse({"name": "x", "fleet": {"policy": {"max_weight_shift": 0}}})
    with pytest.raises(InvalidConfig, match=r"fleet\.policy"):
        parse({"name": "x", "fleet": {"policy": {"rise": 3}}})
    with pytest.raises(InvalidConfig, match="fleet: unknown"):
        parse({"name": "x", "fleet": {"endpoint": 3}})


def test_the_guards_scenario_keeps_every_guard_in_play() -> None:
    s = load("guards")
    assert s.policy is not None and s.policy.min_targets > 1 and s.policy.max_weight_shift < 1.0
    assert not s.policy.fail_open and "all_unhealthy" in s.faults


@pytest.mark.parametrize("seed", range(5))
def test_the_guards_scenario_keeps_every_guard(seed: int) -> None:
    result = run(load("guards"), "safe", seed, trace=False)
    assert result.violations == [], result.violations[0]


def test_a_planner_without_its_shift_limit_is_caught_in_the_first_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator wires the monitor to the fleet and the kept health (``Monitor.guard``): a planner that
    publishes its goal at once moves more than 30 % of an endpoint's weight in one plan."""
    monkeypatch.setattr(planner, "limit_shift", lambda old, goal, max_shift: goal)
    violations = run(load("guards"), "safe", 0, trace=False).violations
    assert any(v.invariant == G4 and "past max_weight_shift=30%" in v.detail for v in violations), violations
