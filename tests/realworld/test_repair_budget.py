"""The verifier's repair budget on a real ``named`` (issue 12, part 3: ``up --repair-rate``): a person
deletes the records of four names at once; with a budget of one repair a verifier round, they come back
one a round, in four rounds (four journal times a verifier period or more apart), the rest counted in
``dnsplane_verifier_deferred_repairs_total``; the prober sees nothing worse than the allowed gaps."""

from __future__ import annotations

import itertools

from tests.realworld.harness import PERIODS, World, wait_for
from tests.realworld.test_api import call, metrics

LB1, LB2 = "192.0.2.11", "192.0.2.12"
NAMES = [f"e{i}.demo.test." for i in range(4)]


def test_a_budget_of_one_repair_a_round_brings_names_back_one_a_round(world: World) -> None:
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2)]
    fleet = world.fleet(targets, {name.split(".")[0]: ["lb-1", "lb-2"] for name in NAMES})
    period = PERIODS["verifier"]
    up = world.dnsplane(fleet, extra_args=["--repair-rate", str(1 / period)])
    prober = world.prober(fleet)
    assert world.named is not None
    world.wait_served((world.named.host, world.named.port), fleet)
    base = wait_for("the API's address", lambda: (up.instance() or {}).get("api"))

    for name in NAMES:
        world.hand_delete_records(name, within=(len(NAMES) + 3) * period)
    wait_for("every name repaired", lambda: all(prober.gap_closed(n) for n in NAMES), detail=world.logs)
    assert all(prober.served(n) == {LB1, LB2} for n in NAMES)

    repaired = []
    for name in NAMES:
        status, history = call(base, "GET", f"/api/v1/journal?endpoint={name}")
        assert status == 200
        repaired += [e["at"] for e in history if e["actor"] == "verifier" and e["action"] == "repair"]
    assert len(repaired) == len(NAMES), repaired
    repaired.sort()
    gaps = [later - earlier for earlier, later in itertools.pairwise(repaired)]
    assert all(gap >= 0.5 * period for gap in gaps), f"one repair a round, not a batch: {gaps}"
    assert metrics(base)["dnsplane_verifier_deferred_repairs_total"] >= 1  # four deleted within one round or two
