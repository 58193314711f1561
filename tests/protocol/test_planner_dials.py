"""The operators' dials in the planner (issue 12, part 1): ``dnsplane pin`` and ``dnsplane drain``.

A drain takes a target out of every endpoint it is in, a pin serves an endpoint from the pinned targets
only; both expire on the events' clock (a fake clock: the ``now`` of each ``Tick``); the guards hold under
them: never empty, never fewer healthy targets than ``min_targets``, the shift limit paces the change.
"""

from __future__ import annotations

from dnsplane.model import Dial, EndpointKey
from dnsplane.protocol.messages import DialsChanged, HealthObserved, Tick
from dnsplane.protocol.planner import Planner
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")
WWW = EndpointKey(f"www.{ZONE}", "A")


def drain(tid: str, until: float | None) -> Dial:
    return Dial("drain", tid, (), 0.0, "alice", "maintenance", until)


def pin(key: EndpointKey, *targets: str, until: float | None = None) -> Dial:
    return Dial("pin", str(key), targets, 0.0, "alice", "incident", until)


def served(h: Harness, key: EndpointKey) -> dict[str, int]:
    desired = h.store.desired([key], h.store.head())[key]
    return {m.target_id: m.weight for m in desired.records.members}


def setup(*endpoints_: object, **policy: object) -> tuple[Harness, Planner]:
    h = Harness()
    eps = endpoints_ or (endpoint("api", **policy), endpoint("www", **policy))
    p = Planner("planner", ZONE, eps)  # type: ignore[arg-type]
    h.run(p)
    return h, p


def dial(h: Harness, p: Planner, *dials: Dial) -> None:
    h.run(p, DialsChanged(h.now, dials))
    h.run(p, Tick(h.now))


def test_a_drain_leaves_every_endpoint_of_its_target_and_expires_on_the_clock() -> None:
    h, p = setup()
    assert set(served(h, API)) == set(served(h, WWW)) == {"lb-1", "lb-2", "lb-3"}
    dial(h, p, drain("lb-2", until=h.now + 1800))
    assert set(served(h, API)) == set(served(h, WWW)) == {"lb-1", "lb-3"}
    h.now += 1799
    h.run(p, Tick(h.now))
    assert "lb-2" not in served(h, API), "not yet expired"
    h.now += 1
    h.run(p, Tick(h.now))
    assert set(served(h, API)) == set(served(h, WWW)) == {"lb-1", "lb-2", "lb-3"}, "expired: back in"
    assert p.dials_expire is None


def test_a_drain_without_expiry_holds_until_lifted() -> None:
    h, p = setup()
    dial(h, p, drain("lb-2", until=None))
    h.now += 10 * 86400
    h.run(p, Tick(h.now))
    assert "lb-2" not in served(h, API)
    dial(h, p)  # lifted: the store holds no dial any more
    assert "lb-2" in served(h, API)


def test_a_drain_that_would_go_below_min_targets_is_kept_in_there_only() -> None:
    h, p = setup(endpoint("api", min_targets=2), endpoint("www"))
    h.run(p, HealthObserved(h.now, "lb-1", False, "refused"))
    h.run(p, Tick(h.now))
    assert set(served(h, API)) == {"lb-2", "lb-3"}
    dial(h, p, drain("lb-2", until=None))
    assert set(served(h, API)) == {"lb-2", "lb-3"}, "api would keep one healthy target, fewer than 2: kept in"
    assert set(served(h, WWW)) == {"lb-3"}, "www's floor is 1: drained there"
    assert p.kept_in == {"lb-2": (API,)}
    h.run(p, HealthObserved(h.now, "lb-1", True, "ok"))
    h.run(p, Tick(h.now))
    assert set(served(h, API)) == {"lb-1", "lb-3"}, "lb-1 back: the drain can hold at api too"
    assert p.kept_in == {}


def test_draining_the_last_healthy_target_never_empties_an_endpoint() -> None:
    h, p = setup(endpoint("api", targets=2))
    h.run(p, HealthObserved(h.now, "lb-1", False, "refused"))
    h.run(p, Tick(h.now))
    dial(h, p, drain("lb-2", until=None))
    assert served(h, API) and set(served(h, API)) == {"lb-2"}
    assert p.kept_in == {"lb-2": (API,)}


def test_a_pin_serves_only_its_targets_health_still_counts_and_it_expires() -> None:
    h, p = setup()
    dial(h, p, pin(API, "lb-1", "lb-3", until=h.now + 60))
    assert set(served(h, API)) == {"lb-1", "lb-3"}
    assert set(served(h, WWW)) == {"lb-1", "lb-2", "lb-3"}, "a pin is per endpoint"
    h.run(p, HealthObserved(h.now, "lb-3", False, "refused"))
    h.run(p, Tick(h.now))
    assert set(served(h, API)) == {"lb-1"}, "a dead pinned target leaves; lb-2 does not come in"
    h.run(p, HealthObserved(h.now, "lb-1", False, "refused"))
    h.run(p, Tick(h.now))
    assert set(served(h, API)) == {"lb-1", "lb-3"}, "every pinned target down: fail open over the pinned ones"
    h.now += 60
    h.run(p, Tick(h.now))
    assert set(served(h, API)) == {"lb-2"}, "expired: health alone decides"


def test_a_pin_naming_none_of_the_endpoints_targets_is_void() -> None:
    h, p = setup()
    dial(h, p, pin(API, "lb-9"))
    assert set(served(h, API)) == {"lb-1", "lb-2", "lb-3"}


def test_the_shift_limit_paces_a_drain() -> None:
    h, p = setup(endpoint("api", targets=2, max_weight_shift=0.25))
    dial(h, p, drain("lb-2", until=None))
    first = served(h, API)
    assert first["lb-2"] > 0 and first["lb-1"] > first["lb-2"], f"one step of at most 25 %: {first}"
    for _ in range(5):
        h.run(p, Tick(h.now))
    assert set(served(h, API)) == {"lb-1"}


def test_a_reset_planner_keeps_the_dials_in_force() -> None:
    h, p = setup()
    dial(h, p, drain("lb-2", until=None))
    p.reset()
    h.run(p, Tick(h.now))  # loads the store again
    h.run(p, Tick(h.now))
    assert "lb-2" not in served(h, API)


def test_the_dials_handed_over_at_start_do_not_start_the_health_grace() -> None:
    """``up`` gives the planner the stored dials when it builds it, before a preflight that may wait minutes
    for a server: the grace (the wait for first health checks) must run from the first Tick, not from then."""
    h = Harness()
    p = Planner("planner", ZONE, (endpoint("api"),), health_grace=5.0)
    p.handle(DialsChanged(0.0, (drain("lb-2", until=None),)))
    h.now = 100.0
    h.run(p, Tick(h.now))  # loads the store
    h.run(p, Tick(h.now))
    assert h.store.head() == 0, "its targets not observed yet, and the grace just started: nothing planned"
    for tid in ("lb-1", "lb-2", "lb-3"):
        h.run(p, HealthObserved(h.now, tid, True, "ok"))
    h.run(p, Tick(h.now))
    assert set(served(h, API)) == {"lb-1", "lb-3"}
