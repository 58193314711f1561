"""Planner: a reloaded fleet (``FleetChanged``) is planned at the next tick; endpoints gone from it
are planned no more; nothing of the running fleet changes that the new one does not change."""

from __future__ import annotations

from dataclasses import replace

from dnsplane.model import Endpoint, EndpointKey, HealthCheck, Target
from dnsplane.protocol.messages import Failed, FleetChanged, HealthObserved, Log, Publish, Tick
from dnsplane.protocol.planner import Planner
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")
WWW = EndpointKey(f"www.{ZONE}", "A")


def observe_all(h: Harness, p: Planner, ok: bool = True) -> None:
    for ep in p.endpoints:
        for t in ep.targets:
            h.run(p, HealthObserved(h.now, t.id, ok))


def members(h: Harness, key: EndpointKey) -> set[str]:
    return {m.target_id for m in h.store.desired([key], h.store.head())[key].records.members}


def test_an_added_endpoint_is_planned_at_the_next_tick_and_nothing_else_is_republished() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),))
    observe_all(h, p)
    h.run(p)
    assert h.store.head() == 1
    commands = p.handle(FleetChanged(h.now, (endpoint(), endpoint("www"))))
    assert commands.request is None and all(isinstance(c, Log) for c in commands.effects), \
        "a reload publishes nothing by itself (one may be in flight)"
    assert commands.effects[0].fields["added"] == 1 and commands.effects[0].fields["removed"] == 0
    observe_all(h, p)
    h.run(p, Tick(h.now))
    assert h.store.head() == 2
    assert set(h.store.changed_between(1, 2)) == {WWW}, "the unchanged endpoint is not planned again"
    assert members(h, WWW) == {"lb-1", "lb-2", "lb-3"}


def test_a_removed_endpoint_is_no_longer_planned() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(), endpoint("www")))
    observe_all(h, p)
    h.run(p)
    h.run(p, FleetChanged(h.now, (endpoint(),)))
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, Tick(h.now))
    assert h.store.head() == 2
    assert set(h.store.changed_between(1, 2)) == {API}, "www is out of the fleet: lb-2's fall does not touch it"
    assert members(h, WWW) == {"lb-1", "lb-2", "lb-3"}, "its last plan stays as it was"


def test_a_target_removed_from_an_endpoint_leaves_even_under_a_shift_limit() -> None:
    """The old plan's weights name a target the endpoint no longer has; the shift limit must not
    try to render it (it has no definition any more)."""
    h = Harness()
    p = Planner("p", ZONE, (endpoint(max_weight_shift=0.25),))
    observe_all(h, p)
    h.run(p)
    smaller = endpoint(max_weight_shift=0.25)
    smaller = replace(smaller, targets=smaller.targets[:2])
    h.run(p, FleetChanged(h.now, (smaller,)))
    for _ in range(5):
        h.run(p, Tick(h.now))
    assert members(h, API) == {"lb-1", "lb-2"}


def test_an_in_flight_publish_of_a_removed_endpoint_that_fails_is_not_planned_again() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(), endpoint("www")))
    observe_all(h, p)
    h.run(p, Tick(h.now))  # loads the (empty) store and publishes generation 1
    h.run(p, HealthObserved(h.now, "lb-1", False))
    in_flight = p.handle(Tick(h.now))
    assert isinstance(in_flight.request, Publish) and WWW in dict(in_flight.request.changes)
    h.run(p, FleetChanged(h.now, (endpoint(),)))
    h.run(p, Failed(h.now, "store unavailable"))
    h.run(p, Tick(h.now))
    assert h.store.head() == 2
    assert set(h.store.changed_between(1, 2)) == {API}


def test_a_target_whose_check_changed_is_observed_afresh_and_a_dropped_target_is_forgotten() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),))
    observe_all(h, p)
    h.run(p)
    assert set(p.health) == {"lb-1", "lb-2", "lb-3"}
    ep = endpoint()
    moved = replace(ep.targets[0], check=HealthCheck("tcp", "127.0.0.1", 2))
    h.run(p, FleetChanged(h.now, (replace(ep, targets=(moved, ep.targets[1])),)))
    assert set(p.health) == {"lb-2"}, "lb-1's streaks were counted against another check; lb-3 is gone"


def test_a_changed_target_definition_is_planned_again() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),))
    observe_all(h, p)
    h.run(p)
    ep = endpoint()
    readdressed = Target("lb-1", ("192.0.2.99",), 100, ep.targets[0].check)
    h.run(p, FleetChanged(h.now, (Endpoint(ep.name, "A", 30, (readdressed, *ep.targets[1:]), ep.policy),)))
    h.run(p, Tick(h.now))
    assert h.store.head() == 2
    rs = h.store.desired([API], 2)[API].records
    assert "192.0.2.99" in rs.addresses()


def checked(tid: str, last_octet: int) -> Target:
    return Target(tid, (f"192.0.2.{last_octet}",), 100, HealthCheck("tcp", "127.0.0.1", last_octet))


def test_an_added_endpoint_waits_for_its_new_targets_first_observation_within_the_grace() -> None:
    """As at start: a target checked for the first time is unknown, and its endpoint is not planned
    before its targets are observed (a new load balancer that is down is never served), for at most
    the grace."""
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),), health_grace=10.0)
    observe_all(h, p)
    h.run(p)
    h.now += 20.0  # long past the start's grace
    fresh = replace(endpoint("www"), targets=(checked("lb-8", 98), checked("lb-9", 99)))
    h.run(p, FleetChanged(h.now, (endpoint(), fresh)))
    h.run(p, Tick(h.now))
    assert h.store.head() == 1, "www is held until lb-8 and lb-9 are observed"
    h.run(p, HealthObserved(h.now, "lb-9", False))
    h.run(p, Tick(h.now))
    assert h.store.head() == 1, "lb-8 is not observed yet"
    h.run(p, HealthObserved(h.now, "lb-8", True))
    h.run(p, Tick(h.now))
    assert members(h, WWW) == {"lb-8"}, "lb-9 was down from its first check: never served"


def test_an_added_endpoint_whose_new_target_is_never_observed_is_planned_after_the_grace() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),), health_grace=10.0)
    observe_all(h, p)
    h.run(p)
    fresh = replace(endpoint("www"), targets=(checked("lb-9", 99),))
    h.run(p, FleetChanged(h.now, (endpoint(), fresh)))
    h.run(p, Tick(h.now))
    assert h.store.head() == 1
    h.now += 10.0
    h.run(p, Tick(h.now))
    assert members(h, WWW) == {"lb-9"}, "after the grace an unknown target counts as healthy (fail open)"
