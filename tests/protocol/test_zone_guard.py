"""The zone-wide guard (issue 12, part 2): a plan that would change more of the zone's published endpoints
at once than ``guard:`` allows is held until an operator confirms it or its window passes (on the events'
clock); a first plan, a small zone and new endpoints are not held; a held plan that shrinks within the
limit goes out by itself."""

from __future__ import annotations

from dnsplane.model import EndpointKey, Generation, ZoneGuard
from dnsplane.protocol.messages import HealthObserved, HoldConfirmed, Tick
from dnsplane.protocol.planner import Planner
from tests.protocol.harness import ZONE, Harness, endpoint

THIRTY = ZoneGuard(max_share=0.3, min_existing=10)


def fleet(n: int = 10, **policy: object) -> tuple:
    """``n`` endpoints, each on lb-1, lb-2 and lb-3."""
    return tuple(endpoint(f"e{i}", **policy) for i in range(n))


def setup(guard: ZoneGuard | None = THIRTY, n: int = 10) -> tuple[Harness, Planner]:
    h = Harness()
    p = Planner("planner", ZONE, fleet(n), zone_guard=guard)
    h.run(p)
    return h, p


def members(h: Harness, name: str) -> set[str]:
    key = EndpointKey(f"{name}.{ZONE}", "A")
    return {m.target_id for m in h.store.desired([key], h.store.head())[key].records.members}


def fail(h: Harness, p: Planner, tid: str, ok: bool = False) -> None:
    h.run(p, HealthObserved(h.now, tid, ok, "check"))
    h.run(p, Tick(h.now))


def test_the_first_plan_of_a_zone_is_not_held() -> None:
    h, p = setup()
    assert h.store.head() == 1 and members(h, "e0") == {"lb-1", "lb-2", "lb-3"}
    assert p.hold is None


def test_a_mass_change_is_held_until_confirmed_and_dns_keeps_what_it_had() -> None:
    h, p = setup()
    fail(h, p, "lb-2")  # every endpoint changes: 100 % > 30 %
    assert h.store.head() == 1, "held: nothing published"
    assert p.hold is not None and (p.hold.generation, p.hold.changed, p.hold.existing) == (2, 10, 10)
    for _ in range(3):
        h.run(p, Tick(h.now))
    assert h.store.head() == 1
    h.run(p, HoldConfirmed(h.now, Generation(3)))  # not the held one: ignored
    h.run(p, Tick(h.now))
    assert h.store.head() == 1
    h.run(p, HoldConfirmed(h.now, Generation(2)))
    h.run(p, Tick(h.now))
    assert h.store.head() == 2 and members(h, "e0") == {"lb-1", "lb-3"}
    assert p.hold is None and p.confirmed is None
    fail(h, p, "lb-2", ok=True)  # and back: a mass change again, held again
    assert h.store.head() == 2 and p.hold is not None and p.hold.generation == 3


def test_a_held_plan_goes_out_when_its_window_has_passed_on_the_events_clock() -> None:
    h, p = setup(ZoneGuard(max_share=0.3, release_after=600))
    fail(h, p, "lb-2")
    since = h.now
    h.now = since + 599
    h.run(p, Tick(h.now))
    assert h.store.head() == 1
    h.now = since + 600
    h.run(p, Tick(h.now))
    assert h.store.head() == 2 and members(h, "e5") == {"lb-1", "lb-3"}


def test_a_held_plan_that_shrinks_within_the_limit_goes_out_by_itself() -> None:
    h, p = setup()
    fail(h, p, "lb-2")
    assert p.hold is not None
    fail(h, p, "lb-2", ok=True)  # it came back before anyone confirmed: nothing to publish
    assert p.hold is None and h.store.head() == 1


def test_a_count_limit_and_a_small_zone() -> None:
    h, p = setup(ZoneGuard(max_count=3, min_existing=10))
    fail(h, p, "lb-2")
    assert p.hold is not None and p.hold.changed == 10
    small, q = setup(ZoneGuard(max_share=0.3, min_existing=10), n=9)
    fail(small, q, "lb-2")
    assert q.hold is None and small.store.head() == 2, "9 endpoints published: under min_existing, not guarded"


def test_new_endpoints_do_not_count() -> None:
    h, p = setup()
    from dnsplane.protocol.messages import FleetChanged

    h.run(p, FleetChanged(h.now, fleet(10) + tuple(endpoint(f"new{i}") for i in range(20))))
    h.run(p, Tick(h.now))
    assert p.hold is None and members(h, "new19") == {"lb-1", "lb-2", "lb-3"}, "20 new endpoints: none changed"


def test_a_reset_planner_keeps_its_guard() -> None:
    h, p = setup()
    p.reset()
    h.run(p, Tick(h.now))
    fail(h, p, "lb-2")
    assert p.hold is not None
