"""One endpoint never blocks the others, and a marker never says written when the name answers nothing
(issue 8, causes 2 and 3): ``dnsplane up`` on a real ``named``.

- a wildcard in the zone: endpoints under it are created, and a person's deletion of one under it and
  of one outside it (one verifier batch) are both repaired within two verifier periods;
- an endpoint the server refuses alone (more addresses than BIND keeps of one type) next to normal
  ones: the normal ones are written, the big one is quarantined, shown by ``dnsplane status``,
  journalled once per actor, and not retried every round;
- a CNAME put at an endpoint's name: the write is rejected, the marker is not advanced, and the
  verifier does not "repair" it every round.
"""

from __future__ import annotations

import re

from tests.realworld.harness import (
    PERIODS,
    Dnsplane,
    Prober,
    World,
    addresses,
    delete_records,
    put_cname,
    read_marker,
    wait_for,
)

LB1, LB2 = "192.0.2.11", "192.0.2.12"
WILDCARD = "198.51.100.99"


def quarantined(up: Dnsplane) -> dict[str, str]:
    inst = up.instance() or {}
    return dict(inst.get("quarantined") or {})


def test_a_wildcard_blocks_neither_creation_nor_repairs(world: World) -> None:
    assert world.named is not None
    u = world.named.update()
    u.add("*.pool.demo.test.", 30, "A", WILDCARD)  # the zone has a wildcard above two endpoints
    world.named.send(u)
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2)]
    fleet = world.fleet(targets, {"a.pool": ["lb-1", "lb-2"], "b.pool": ["lb-1"], "www": ["lb-2"]})
    up = world.dnsplane(fleet)
    named = (world.named.host, world.named.port)
    prober = world.prober(fleet)
    # created: each name answers its own addresses, not the wildcard's
    wait_for("the endpoints under the wildcard to be created", lambda: prober.served("a.pool.demo.test.")
             == {LB1, LB2} and prober.served("b.pool.demo.test.") == {LB1}, detail=world.logs)
    world.wait_served(named, fleet)

    # a person deletes one name under the wildcard (which then answers for it) and one outside it
    world.hand_delete_records("www.demo.test.")
    delete_records(world.named, "a.pool.demo.test.")
    wait_for("a.pool answering the wildcard", lambda: addresses(named, "a.pool.demo.test.", "A") in (
        frozenset({WILDCARD}), frozenset({LB1, LB2})), detail=world.logs)
    wait_for("www emptied and repaired", lambda: prober.gap_closed("www.demo.test."), detail=world.logs)
    wait_for("a.pool repaired", lambda: addresses(named, "a.pool.demo.test.", "A") == {LB1, LB2},
             deadline=2 * PERIODS["verifier"] + 5, detail=world.logs)
    prober.watch(2 * PERIODS["verifier"])
    prober.stop()
    assert prober.served("www.demo.test.") == {LB2}
    up.assert_every_actor_running()
    assert not quarantined(up)


def test_an_endpoint_the_server_refuses_is_quarantined_and_the_others_written(world: World) -> None:
    assert world.named is not None
    normal = [world.target("lb-1", LB1), world.target("lb-2", LB2)]
    # 150 targets with their own addresses: named (BIND 9.18) keeps at most 100 records of one type at a
    # name; the fleet says the server allows more, so validate lets it through and the server refuses it
    nets = ("192.0.2", "198.51.100")
    crowd = [world.target(f"c{i:03d}", f"{nets[i // 100]}.{i % 100 + 100}", check=False) for i in range(150)]
    provider = {"kind": "rfc2136", "server": world.named.host, "port": world.named.port,
                "key_file": world.named.key_file, "timeout": 2, "max_records_per_type": 1000}
    fleet = world.fleet([*normal, *crowd], {"api": ["lb-1", "lb-2"], "big": [t.id for t in crowd],
                                           "www": ["lb-2"]}, provider=provider)
    up = world.dnsplane(fleet)
    named = (world.named.host, world.named.port)
    prober = Prober(named, [("api.demo.test.", "A"), ("www.demo.test.", "A")]).start()
    world.probers.append(prober)
    wait_for("api and www written", lambda: prober.served("api.demo.test.") == {LB1, LB2}
             and prober.served("www.demo.test.") == {LB2}, detail=world.logs)
    wait_for("big quarantined", lambda: "big.demo.test. A" in quarantined(up), detail=world.logs)
    assert "SERVFAIL" in quarantined(up)["big.demo.test. A"]
    assert addresses(named, "big.demo.test.", "A") == frozenset()
    status = up.cli("status")
    assert status.returncode == 0 and "QUARANTINED" in status.stdout, status.stdout + status.stderr

    # the others go on: lb-1 goes down and leaves api's answer
    world.listeners["lb-1"].down()
    wait_for("lb-1 to leave api", lambda: prober.served("api.demo.test.") == {LB2}, detail=world.logs)
    mark = up.log_mark()
    prober.watch(8 * PERIODS["verifier"])
    repairs = len(re.findall(r"repairing.*big\.demo\.test|big\.demo\.test.*repairing", up.log_since(mark)))
    assert repairs <= 5, f"the verifier retried the rejected endpoint {repairs} times in 8 rounds"
    history = up.cli("history", "big.demo.test")
    assert history.stdout.count("quarantined") <= 3, history.stdout  # once per actor (2 enactors, verifier)
    prober.stop()
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()


def test_a_cname_at_an_endpoint_name_is_rejected_and_the_marker_does_not_lie(world: World) -> None:
    assert world.named is not None
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2)]
    fleet = world.fleet(targets, {"api": ["lb-1", "lb-2"], "www": ["lb-1", "lb-2"]})
    up = world.dnsplane(fleet)
    named = (world.named.host, world.named.port)
    world.wait_served(named, fleet)
    marker = read_marker(world.named, "api.demo.test.")
    assert marker is not None
    mark, rounds = up.log_mark(), verifier_rounds(up)
    put_cname(world.named, "api.demo.test.", "ns1.demo.test.")  # a person points api elsewhere
    # new plans keep coming (lb-1 goes down): www is still written, api's marker is not advanced
    world.listeners["lb-1"].down()
    wait_for("lb-1 to leave www", lambda: addresses(named, "www.demo.test.", "A") == {LB2}, detail=world.logs)
    wait_for("six verifier rounds", lambda: verifier_rounds(up) >= rounds + 6, detail=world.logs)
    assert read_marker(world.named, "api.demo.test.") == marker, "a marker that says written over a CNAME"
    repairs = len(re.findall(r"repairing.*api\.demo\.test|api\.demo\.test.*repairing", up.log_since(mark)))
    assert repairs <= 4, f"the verifier 'repaired' api {repairs} times in 6 rounds"
    assert "CNAME" in quarantined(up).get("api.demo.test. A", ""), "quarantined, with the reason"
    assert "QUARANTINED" in up.cli("status").stdout
    up.assert_every_actor_running()


def verifier_rounds(up: Dnsplane) -> int:
    inst = up.instance() or {}
    return int((inst.get("actors") or {}).get("verifier", {}).get("rounds", 0))
