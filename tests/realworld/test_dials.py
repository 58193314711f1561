"""Manual dials that expire (issue 12, part 1): ``dnsplane drain`` and ``dnsplane pin`` against a running
``dnsplane up`` on a real BIND, seen over real DNS.

- a drain takes the target out of every endpoint it is in, and holds across a restart of ``up`` (kept
  in the store: the restarted planner never serves the drained target, not even for its first plan);
- a drain that would leave an endpoint with fewer healthy targets than its floor is refused, exit 2,
  naming the endpoint, and nothing changes;
- a drain with an expiry ends by itself: the target comes back and the journal says "expired";
- a pin serves an endpoint from the pinned targets only; ``unpin`` gives it back to health;
- who did what and why is in ``dnsplane history``; I1 and I2 hold throughout (the prober).
"""

from __future__ import annotations

import os

from dnsplane.store.sqlite import SqliteStore
from tests.realworld.harness import Dnsplane, Prober, World, wait_for

LB1, LB2, LB3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
API = "api.demo.test."
WWW = "www.demo.test."


def served_since(prober: Prober, since: float, name: str, address: str) -> list[str]:
    return [o.describe(since) for o in prober.snapshot()
            if o.sent >= since and not o.is_marker and o.endpoint[0] == name and address in o.addresses]


def dials(up: Dnsplane) -> list[tuple[str, str]]:
    store = SqliteStore(up.data_dir / "store.sqlite")
    try:
        return [(d.kind, d.subject) for d in store.dials()]
    finally:
        store.close()


def test_drain_and_pin_on_a_running_instance_refused_kept_across_a_restart_and_expired(world: World) -> None:
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2), world.target("lb-3", LB3)]
    fleet = world.fleet(targets, {"api": ["lb-1", "lb-2", "lb-3"], "www": ["lb-2", "lb-3"]})
    up = world.dnsplane(fleet)
    prober = world.prober(fleet)
    wait_for("api served from all three", lambda: prober.served(API) == {LB1, LB2, LB3}, detail=world.logs)
    wait_for("www served from both", lambda: prober.served(WWW) == {LB2, LB3}, detail=world.logs)

    assert os.path.isabs((up.instance() or {})["fleet"]), "drain and pin check against it from any directory"
    res = up.cli("drain", "lb-2", "--no-expiry", "--reason", "kernel patching", "--by", "tester")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no expiry" in res.stdout and "has it in force" in res.stdout, res.stdout
    wait_for("lb-2 drained from api", lambda: prober.served(API) == {LB1, LB3}, detail=world.logs)
    wait_for("lb-2 drained from www", lambda: prober.served(WWW) == {LB3}, detail=world.logs)

    # www would keep no healthy undrained target: refused, named, nothing changed
    refused = up.cli("drain", "lb-3", "--for", "10m", "--by", "tester")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "www.demo.test. A" in refused.stderr and "nothing changed" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert dials(up) == [("drain", "lb-2")]

    # kept across a restart: the restarted planner has the drain before its first plan
    assert up.stop() == 0, up.log_tail()
    restarted = prober.now()
    up.start()
    up.wait_every_actor_running()
    wait_for("the restarted instance to report the drain",
             lambda: [d["subject"] for d in (up.instance() or {}).get("dials") or ()] == ["lb-2"], detail=world.logs)
    prober.wait_rounds(prober.rounds() + 3)
    assert not served_since(prober, restarted, API, LB2), "the drained lb-2 served again after the restart"

    # a pin: api from lb-1 only, then given back to health
    res = up.cli("pin", "api.demo.test", "--targets", "lb-1", "--for", "1h", "--reason", "incident", "--by", "tester")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for("api pinned to lb-1", lambda: prober.served(API) == {LB1}, detail=world.logs)
    status = up.cli("status")
    assert "PIN" in status.stdout and "DRAIN" in status.stdout and "left" in status.stdout, status.stdout
    assert up.cli("unpin", "api.demo.test", "--by", "tester").returncode == 0
    wait_for("api back to health (lb-2 still drained)", lambda: prober.served(API) == {LB1, LB3}, detail=world.logs)

    # the drain replaced by one that expires: lb-2 comes back by itself
    res = up.cli("drain", "lb-2", "--for", "2s", "--by", "tester")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for("lb-2 back in api after the drain expired", lambda: prober.served(API) == {LB1, LB2, LB3},
             detail=world.logs)
    wait_for("lb-2 back in www", lambda: prober.served(WWW) == {LB2, LB3}, detail=world.logs)
    wait_for("the expired drain removed from the store", lambda: dials(up) == [], detail=world.logs)

    history = up.cli("history").stdout
    actions = [line.split("│")[3].strip() for line in history.splitlines() if line.count("│") >= 5
               and ("tester" in line or "dnsplane" in line)]
    assert actions == ["drain", "pin", "unpin", "drain", "expired"], history
    prober.stop()
    prober.assert_invariants(world.logs)


def test_a_pin_whose_targets_left_its_endpoint_is_shown_void_not_in_force(world: World) -> None:
    """A fleet reload takes the pinned target out of the endpoint: the planner ignores the pin (health alone
    decides), and ``status`` and the API say it is void and why, rather than list it as in force."""
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2), world.target("lb-3", LB3)]
    fleet = world.fleet(targets, {"api": ["lb-1", "lb-2", "lb-3"]})
    up = world.dnsplane(fleet)
    prober = world.prober(fleet)
    wait_for("api served from all three", lambda: prober.served(API) == {LB1, LB2, LB3}, detail=world.logs)
    res = up.cli("pin", "api.demo.test", "--targets", "lb-1", "--for", "1h", "--by", "tester")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for("api pinned to lb-1", lambda: prober.served(API) == {LB1}, detail=world.logs)
    assert "VOID" not in up.cli("status").stdout

    world.fleet(targets, {"api": ["lb-2", "lb-3"]}, name=fleet.name)
    assert up.cli("reload").returncode == 0
    wait_for("api served by health alone", lambda: prober.served(API) == {LB2, LB3}, detail=world.logs)
    void = [d.get("void") for d in (up.instance() or {}).get("dials") or ()]
    assert void == ["none of the pinned targets is in the endpoint any more"], void
    status = up.cli("status").stdout
    assert "PIN, VOID" in status and "not in force: none of the pinned targets" in status, status
