"""An endpoint whose answer does not fit a plain UDP message (``answer: all`` over 100 targets: 1,600 bytes of
addresses, and its marker's record-set TXT as big): the verifier's DNS view asks with EDNS (1,232 bytes) and
asks again over TCP what still comes back truncated, as a resolver does. Before, its queries had no EDNS and
a truncated answer was read as it came (no addresses, no marker): the verifier found the endpoint "empty"
every round and rewrote it every round, forever."""

from __future__ import annotations

from tests.realworld.harness import World, addresses, wait_for
from tests.realworld.test_api import call, metrics

NAME = "big.demo.test."


def test_an_endpoint_too_big_for_udp_is_verified_right_not_repaired_every_round(embedded_world: World) -> None:
    world = embedded_world
    targets = [world.target(f"lb-{i}", f"198.51.100.{i}", check=False) for i in range(1, 101)]
    fleet = world.fleet(targets, [{"name": "big", "targets": [t.id for t in targets], "policy": {"answer": "all"}}],
                        provider="embedded")
    up = world.dnsplane(fleet)
    wait_for("every address served (over TCP: too big for UDP)",
             lambda: len(addresses_tcp(up.dns, NAME)) == 100, detail=world.logs)
    base = wait_for("the API's address", lambda: (up.instance() or {}).get("api"))
    rounds = lambda: metrics(base).get('dnsplane_actor_rounds_total{actor="verifier"}', 0)  # noqa: E731
    start = rounds()
    wait_for("three more verifier rounds", lambda: rounds() >= start + 3, detail=world.logs)
    m = metrics(base)
    repairs = {k: v for k, v in m.items() if k.startswith("dnsplane_verifier_repairs_total")}
    assert sum(repairs.values()) == 0, repairs
    status, page = call(base, "GET", "/api/v1/endpoints?limit=1")
    assert status == 200
    assert page["items"][0]["verifier"] == "right", page
    assert not addresses(up.dns, NAME), "a plain UDP answer is truncated: empty, TC set"


def addresses_tcp(server: tuple[str, int], name: str) -> frozenset[str]:
    import dns.message
    import dns.query

    reply = dns.query.tcp(dns.message.make_query(name, "A"), server[0], port=server[1], timeout=2)
    return frozenset(rd.address for rr in reply.answer for rd in rr)
