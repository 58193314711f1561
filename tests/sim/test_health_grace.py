"""The ``health_grace`` scenario option (issue 13): the planner's health grace in the simulator, and H1's check of it.

The simulated planner had no grace (``health_grace`` 0), so nothing killed the mutant
``planner-unknown-health`` (scripts/mutants.toml): an endpoint planned before its targets' first checks
counts the unheard targets healthy. In the ``health-grace`` scenario the planner gets the runtime's
grace, each target is checked at its own rhythm, and targets keep a health of their own across planner
restarts; a plan published within the grace that serves a target that is down and that the planner has
not heard from is an H1 violation (health-grace seed 0).
"""

from __future__ import annotations

import pytest

from dnsplane.protocol.planner import Planner
from dnsplane.sim.driver import Simulation, run
from dnsplane.sim.scenario import load

HEALTH_GRACE = load("health-grace")
SEED = 0  # the first seed of health-grace that kills planner-unknown-health (scripts/mutants.toml's ci)


def test_the_planner_gets_the_scenarios_grace_and_targets_are_checked_at_their_own_rhythm() -> None:
    sim = Simulation(HEALTH_GRACE, "safe", SEED)
    assert sim.actors["planner"].health_grace == HEALTH_GRACE.health_grace == 60.0
    assert sim.faults.truth is not None  # the world's health, kept across planner restarts
    assert {every for every, _ in sim.check_every.values()} <= {1, 2, 3}
    assert len(set(sim.check_every.values())) > 1  # not all checked at once
    sim.restart_planner(counter_reset=False)
    assert sim.actors["planner"].health_grace == 60.0 and sim.reported == set()
    sim.restart_planner(counter_reset=True)
    assert sim.actors["planner"].health_grace == 60.0
    assert load("us-east-1").health_grace == 0.0 and Simulation(load("us-east-1"), "safe", 1).check_every == {}


def test_the_unmutated_planner_waits_for_its_targets_and_passes_the_killing_seed() -> None:
    result = run(HEALTH_GRACE, "safe", SEED)
    assert result.violations == []
    assert result.faults.get("planner_restart", 0) + result.faults.get("crash", 0) > 0


def test_a_planner_that_plans_before_its_targets_are_heard_from_serves_a_target_that_is_down(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the mutant planner-unknown-health: no endpoint is ever held for its targets' first checks
    monkeypatch.setattr(Planner, "_held", lambda self, ep: False)
    result = run(HEALTH_GRACE, "safe", SEED, stop_on="any")
    assert [v.short for v in result.violations] == ["H1"]
    assert "within the health grace" in result.violations[0].detail
