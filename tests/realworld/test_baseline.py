"""Baseline: ``dnsplane up`` on a real ``named`` (RFC 2136, TSIG) keeps every endpoint served while a
load balancer goes down and comes back, and repairs a name a person deleted within two verifier
periods; the prober sees no I1/I2 violation and every actor still runs."""

from __future__ import annotations

from tests.realworld.harness import PERIODS, World, wait_for

LB1, LB2, LB3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"


def test_a_target_down_and_up_keeps_every_name_served(world: World) -> None:
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2), world.target("lb-3", LB3)]
    fleet = world.fleet(targets, {"api": ["lb-1", "lb-2", "lb-3"], "www": ["lb-1", "lb-2"],
                                  "img": ["lb-2", "lb-3"]})
    up = world.dnsplane(fleet)
    assert world.named is not None
    named = (world.named.host, world.named.port)
    prober = world.prober(fleet)
    world.wait_served(named, fleet)
    wait_for("every target in api's answer", lambda: prober.served("api.demo.test.") == {LB1, LB2, LB3},
             detail=world.logs)

    world.listeners["lb-2"].down()
    wait_for("lb-2 to leave every answer", lambda: all(
        LB2 not in prober.served(n) and prober.served(n) for n in ("api.demo.test.", "www.demo.test.",
                                                                     "img.demo.test.")), detail=world.logs)
    world.listeners["lb-2"].up()
    wait_for("lb-2 to come back", lambda: LB2 in prober.served("img.demo.test.")
             and prober.served("api.demo.test.") == {LB1, LB2, LB3}, detail=world.logs)

    # a person deletes a name: the declared gap must close (the verifier repairs) within two periods
    world.hand_delete_records("www.demo.test.")
    wait_for("www to be emptied and repaired", lambda: prober.gap_closed("www.demo.test."), detail=world.logs)
    assert prober.served("www.demo.test.") == {LB1, LB2}
    prober.watch(2 * PERIODS["verifier"])

    prober.stop()
    prober.assert_invariants(world.logs)
    up.wait_every_actor_running()  # a round that succeeded after everything above, for every actor
    up.assert_every_actor_running()
    assert prober.rounds() > 10
