"""The zone-wide guard (issue 12, part 2) on a real BIND: with ``guard: {max_change: 30%}``, a load balancer
every endpoint uses going down is a mass change; it is held (nothing published, BIND keeps serving what it
had), shown in ``dnsplane status``, journalled, refused when confirmed under another generation, and
published when confirmed under its own; I1 and I2 hold throughout (the prober)."""

from __future__ import annotations

from tests.realworld.harness import World, wait_for

LB1, LB2, LB3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
NAMES = [f"e{i}" for i in range(10)]


def test_a_mass_change_is_held_until_confirmed(world: World) -> None:
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2), world.target("lb-3", LB3)]
    fleet = world.fleet(targets, {name: ["lb-1", "lb-2", "lb-3"] for name in NAMES})
    fleet.write_text(fleet.read_text() + "guard:\n  max_change: 30%\n")
    up = world.dnsplane(fleet)
    prober = world.prober(fleet)
    for name in NAMES:
        wait_for(f"{name} served from all three", lambda n=name: prober.served(f"{n}.demo.test.") == {LB1, LB2, LB3},
                 detail=world.logs)
    head = up.store_head()

    world.listeners["lb-2"].down()
    hold = wait_for("the zone guard to hold the plan", lambda: (up.instance() or {}).get("hold"), detail=world.logs)
    assert (hold["generation"], hold["changed"], hold["existing"]) == (head + 1, 10, 10), hold
    assert up.store_head() == head, "a held plan was published"
    status = up.cli("status").stdout
    assert "HELD" in status and f"dnsplane confirm {head + 1}" in status, status
    assert all(prober.served(f"{n}.demo.test.") == {LB1, LB2, LB3} for n in NAMES)

    wrong = up.cli("confirm", str(head + 2), "--by", "tester")
    assert wrong.returncode == 2 and f"the held plan is generation {head + 1}" in wrong.stderr, wrong.stderr
    assert up.store_head() == head

    ok = up.cli("confirm", str(head + 1), "--by", "tester", "--reason", "lb-2 is really gone")
    assert ok.returncode == 0 and "published" in ok.stdout, ok.stdout + ok.stderr
    for name in NAMES:
        wait_for(f"{name} without lb-2", lambda n=name: prober.served(f"{n}.demo.test.") == {LB1, LB3},
                 detail=world.logs)
    history = up.cli("history").stdout
    held = [line for line in history.splitlines() if "held" in line or "confirm" in line]
    assert len(held) == 2 and "planner" in held[0] and "tester" in held[1], history
    prober.stop()
    prober.assert_invariants(world.logs)
