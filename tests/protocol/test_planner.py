"""Planner: hysteresis, capacity weights, fail-open, min_targets, shift limit, CAS on generations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dnsplane.model import WEIGHT_SCALE, Endpoint, EndpointKey, HealthCheck, HealthRecord, Policy, Target
from dnsplane.protocol.messages import NOTHING, HealthObserved, Log, Publish, PublishConflict, Tick
from dnsplane.protocol.planner import Planner, TargetHealth, limit_shift
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")


def weights(h: Harness) -> dict[str, int]:
    rs = h.store.desired([API], h.store.head())[API].records
    return {m.target_id: m.weight for m in rs.members}


def test_first_plan_has_every_target_with_equal_weight() -> None:
    h = Harness()
    h.run(Planner("p", ZONE, (endpoint(),)))
    assert h.store.head() == 1
    assert weights(h) == {"lb-1": 333, "lb-2": 333, "lb-3": 333}


def test_endpoints_with_equal_content_share_one_record_set() -> None:
    """Memory at scale: a fleet's endpoints mostly share a few contents; each plan holds one object per
    content, not one per endpoint (about 300 bytes an endpoint at 100,000)."""
    p = Planner("p", ZONE, tuple(endpoint(f"n{i}") for i in range(50)))
    h = Harness()
    h.run(p)
    assert h.store.head() == 1
    assert len({id(rs) for rs in p.published.values()}) == 1 and len(p.published) == 50


def test_hysteresis_needs_fall_bad_and_rise_good_observations() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(rise=3, fall=2),))
    h.run(p)
    h.run(p, HealthObserved(h.now, "lb-2", True))  # known healthy: hysteresis holds from a known state
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, Tick(h.now))
    assert h.store.head() == 1, "one bad check must not remove a target (fall=2)"
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, Tick(h.now))
    assert "lb-2" not in weights(h)
    for _ in range(2):
        h.run(p, HealthObserved(h.now, "lb-2", True))
        h.run(p, Tick(h.now))
    assert "lb-2" not in weights(h), "two good checks must not restore it (rise=3)"
    h.run(p, HealthObserved(h.now, "lb-2", True))
    h.run(p, Tick(h.now))
    assert "lb-2" in weights(h)


def test_weights_follow_capacity() -> None:
    ts = (Target("big", ("192.0.2.1",), 300, None), Target("small", ("192.0.2.2",), 100, None))
    h = Harness()
    h.run(Planner("p", ZONE, (Endpoint(f"api.{ZONE}", "A", 30, ts, Policy()),)))
    assert weights(h) == {"big": 750, "small": 250}


def test_fail_open_when_every_target_is_unhealthy() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),))
    h.run(p)
    for t in ("lb-1", "lb-2", "lb-3"):
        h.run(p, HealthObserved(h.now, t, False))
    h.run(p, Tick(h.now))
    assert set(weights(h)) == {"lb-1", "lb-2", "lb-3"}


def test_fail_closed_keeps_last_published_never_empty() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(fail_open=False),))
    h.run(p)
    for t in ("lb-1", "lb-2"):
        h.run(p, HealthObserved(h.now, t, False))
    h.run(p, Tick(h.now))
    assert set(weights(h)) == {"lb-3"}
    h.run(p, HealthObserved(h.now, "lb-3", False))
    h.run(p, Tick(h.now))
    assert set(weights(h)) == {"lb-3"}, "all unhealthy and fail_open off: keep what was published"


def test_min_targets_floor() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(min_targets=2),))
    h.run(p)
    for t in ("lb-1", "lb-2"):
        h.run(p, HealthObserved(h.now, t, False))
    h.run(p, Tick(h.now))
    assert len(weights(h)) == 2


def test_shift_limit_spreads_a_big_change_over_generations() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(max_weight_shift=0.25),))
    h.run(p)
    for t in ("lb-1", "lb-2"):
        h.run(p, HealthObserved(h.now, t, False))
    shares = []
    for _ in range(6):
        h.run(p, Tick(h.now))
        w = weights(h)
        shares.append(w.get("lb-3", 0) / sum(w.values()))
    assert shares[0] < 0.6, "the first generation may move at most a quarter of the weight"
    assert shares[-1] == 1.0
    assert shares == sorted(shares)


def test_no_new_generation_without_a_change() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),))
    h.run(p)
    for _ in range(5):
        h.run(p, HealthObserved(h.now, "lb-1", True))
        h.run(p, Tick(h.now))
    assert h.store.head() == 1


def test_two_planners_never_publish_two_plans_under_one_number() -> None:
    h = Harness()
    p1, p2 = Planner("p1", ZONE, (endpoint(),)), Planner("p2", ZONE, (endpoint(),))
    h.run(p1)
    h.run(p2)  # p2 loads generation 1 and sees nothing to do
    h.run(p1, HealthObserved(h.now, "lb-1", False))
    h.run(p2, HealthObserved(h.now, "lb-2", False))
    c1 = p1.handle(Tick(h.now))
    c2 = p2.handle(Tick(h.now))
    assert isinstance(c1.request, Publish) and isinstance(c2.request, Publish)
    assert c1.request.expect_head == c2.request.expect_head == 1
    r1 = h.interpreter.run("p1", c1, h.now)
    r2 = h.interpreter.run("p2", c2, h.now)
    assert isinstance(r2, PublishConflict) and not isinstance(r1, PublishConflict)
    assert [p.generation for p in h.store.plans()] == [1, 2]
    h.run(p2, r2)  # p2 reloads generation 2 and publishes its own change as 3
    h.run(p2, Tick(h.now))
    assert h.store.head() == 3
    assert [p.planner for p in h.store.plans()] == ["p1", "p1", "p2"]


@given(st.lists(st.sampled_from([True, False, None]), max_size=30), st.integers(1, 4), st.integers(1, 4))
def test_hysteresis_property(observations: list[bool | None], rise: int, fall: int) -> None:
    """Unknown until the first known observation, which decides; then the state flips only after
    `rise` goods or `fall` bads in a row; an unknown observation (None) changes nothing."""
    state = TargetHealth()
    healthy: bool | None = None
    run_ok = run_bad = 0
    for ok in observations:
        if ok is None:
            before = (state.healthy, state.good_streak, state.bad_streak)
            assert not state.observe(None, rise, fall)
            assert (state.healthy, state.good_streak, state.bad_streak) == before
            continue
        run_ok, run_bad = (run_ok + 1, 0) if ok else (0, run_bad + 1)
        state.observe(ok, rise, fall)
        if healthy is None:
            healthy = ok
        elif healthy and run_bad >= fall:
            healthy = False
        elif not healthy and run_ok >= rise:
            healthy = True
        assert state.healthy == healthy


@settings(max_examples=200)
@given(
    st.dictionaries(st.sampled_from("abcdef"), st.integers(1, WEIGHT_SCALE), min_size=1),
    st.dictionaries(st.sampled_from("abcdef"), st.integers(1, WEIGHT_SCALE), min_size=1),
    st.floats(0.05, 1.0),
)
def test_limit_shift_moves_at_most_max_share(old: dict[str, int], goal: dict[str, int], share: float) -> None:
    new = limit_shift(old, goal, share)
    assert new and all(w > 0 for w in new.values())
    ids = set(old) | set(new)
    ot, nt = sum(old.values()), sum(new.values())
    moved = sum(abs(new.get(i, 0) / nt - old.get(i, 0) / ot) for i in ids) / 2
    assert moved <= share + 0.01 or (new == goal and share >= 1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["lb-1", "lb-2", "lb-3"]), st.booleans()), max_size=40))
def test_planner_never_plans_an_empty_or_invalid_set(flaps: list[tuple[str, bool]]) -> None:
    """Property (I1, I5): whatever the health sequence, every plan is valid and non-empty."""
    h = Harness()
    p = Planner("p", ZONE, (endpoint(min_targets=1, fail_open=False), endpoint("www", fail_open=True)))
    h.run(p)
    for tid, ok in flaps:
        h.run(p, HealthObserved(h.now, tid, ok))
        h.run(p, Tick(h.now))
        for d in h.store.desired(None, h.store.head()).values():
            assert d.records.live_members()
    gens = [x.generation for x in h.store.plans()]
    assert gens == sorted(set(gens))


def test_unknown_target_observation_is_ignored() -> None:
    p = Planner("p", ZONE, (endpoint(),))
    assert p.handle(HealthObserved(0.0, "nope", False)) == NOTHING
    assert HealthCheck("tcp", "127.0.0.1", 1).describe() == "tcp 127.0.0.1:1"


# ---------------------------------------------------------------- health that knows what it does not know


def test_unknown_observation_never_moves_weight() -> None:
    """Unknown (a check that failed on dnsplane's side) counts toward neither fall nor rise."""
    h = Harness()
    p = Planner("p", ZONE, (endpoint(rise=2, fall=2),))
    for t in ("lb-1", "lb-2", "lb-3"):
        h.run(p, HealthObserved(h.now, t, True))
    h.run(p)
    assert h.store.head() == 1
    for _ in range(10):
        h.run(p, HealthObserved(h.now, "lb-2", None, "Too many open files"))
        h.run(p, Tick(h.now))
    assert h.store.head() == 1 and p.health["lb-2"].healthy is True, "unknown moved weight"
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, HealthObserved(h.now, "lb-2", None, "checker starved"))  # does not break the bad streak
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, Tick(h.now))
    assert "lb-2" not in weights(h)
    head = h.store.head()
    for _ in range(10):
        h.run(p, HealthObserved(h.now, "lb-2", None, "Too many open files"))
        h.run(p, Tick(h.now))
    assert h.store.head() == head and "lb-2" not in weights(h), "unknown restored a target known down"


def test_only_unknown_observations_leave_a_target_unknown() -> None:
    p = Planner("p", ZONE, (endpoint(),))
    p.handle(HealthObserved(1.0, "lb-1", None, "Too many open files"))
    assert p.health["lb-1"].healthy is None and not p.health["lb-1"].observed


def test_nothing_is_published_until_every_checked_target_is_observed() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),), health_grace=30.0)
    h.run(p)
    assert h.store.head() == 0, "published before any health check"
    h.run(p, HealthObserved(h.now, "lb-1", True))
    h.run(p, HealthObserved(h.now, "lb-2", True))
    h.run(p, HealthObserved(h.now, "lb-3", None, "Too many open files"))  # unknown is not an observation
    h.run(p, Tick(h.now))
    assert h.store.head() == 0, "published before lb-3 was observed"
    h.run(p, HealthObserved(h.now, "lb-3", False))  # the first known observation decides
    h.run(p, Tick(h.now))
    assert set(weights(h)) == {"lb-1", "lb-2"}


def test_targets_without_a_check_are_not_waited_for() -> None:
    ts = (Target("a", ("192.0.2.1",), 100, None), Target("b", ("192.0.2.2",), 100, None))
    h = Harness()
    h.run(Planner("p", ZONE, (Endpoint(f"api.{ZONE}", "A", 30, ts, Policy()),), health_grace=30.0))
    assert set(weights(h)) == {"a", "b"}


def test_after_the_grace_unknown_targets_fail_open() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),), health_grace=5.0)
    h.run(p)
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    assert h.store.head() == 0
    h.now += 5.0
    h.run(p, Tick(h.now))
    assert set(weights(h)) == {"lb-2", "lb-3"}, "observed down stays out; never observed, nothing kept: fail open"


def test_after_the_grace_the_kept_health_stands() -> None:
    h = Harness()
    h.store.save_health({"lb-2": HealthRecord(False, 1.0)})
    p = Planner("p", ZONE, (endpoint(),), health_grace=5.0)
    h.run(p)
    assert h.store.head() == 0
    h.now += 5.0
    h.run(p, Tick(h.now))
    assert set(weights(h)) == {"lb-1", "lb-3"}, "lb-2 was kept down: it must not be served before it is seen up"


def test_a_restarted_planner_starts_from_the_health_it_acted_on() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(rise=2, fall=1),))
    h.run(p)
    for t in ("lb-1", "lb-2", "lb-3"):
        h.run(p, HealthObserved(h.now, t, True))
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, Tick(h.now))
    assert set(weights(h)) == {"lb-1", "lb-3"}
    assert h.store.health()["lb-2"].healthy is False
    head = h.store.head()
    again = Planner("p", ZONE, (endpoint(rise=2, fall=1),))  # a restart: nothing in memory, no grace
    h.run(again)
    assert h.store.head() == head, "the restarted planner served the target known down"
    h.run(again, HealthObserved(h.now, "lb-2", True))  # rise=2: one good check is not enough
    h.run(again, Tick(h.now))
    assert h.store.head() == head
    h.run(again, HealthObserved(h.now, "lb-2", True))
    h.run(again, Tick(h.now))
    assert set(weights(h)) == {"lb-1", "lb-2", "lb-3"}
    assert h.store.health()["lb-2"].healthy is True


def test_observations_before_the_store_is_read_are_rebased_on_the_kept_health() -> None:
    """Checks may answer before the planner has read the store: the result is the same as if the
    kept health had come first (lb-2 kept down, one good check, rise=2: still down)."""
    h = Harness()
    h.store.save_health({"lb-2": HealthRecord(False, 1.0)})
    p = Planner("p", ZONE, (endpoint(rise=2, fall=2),))
    p.handle(HealthObserved(h.now, "lb-2", True))
    assert p.health["lb-2"].healthy is True  # unknown: the first observation decided
    h.run(p)
    assert p.health["lb-2"].healthy is False
    assert set(weights(h)) == {"lb-1", "lb-3"}


def test_the_end_of_the_grace_names_the_targets_never_checked() -> None:
    p = Planner("p", ZONE, (endpoint(),), health_grace=5.0)
    h = Harness()
    h.run(p)
    p.handle(HealthObserved(h.now, "lb-1", True))
    commands = p.handle(Tick(h.now + 5.0))
    [log] = [c for c in commands.effects if isinstance(c, Log)]
    assert log.level == "warning" and log.fields["examples"] == ["lb-2", "lb-3"]


def test_a_target_that_flips_back_while_its_state_is_on_its_way_is_saved_again() -> None:
    """The store keeps the health the planner last acted on: lb-2 down is kept; its 'up' goes out with a
    plan; before that publish lands lb-2 is down again. The next plan acts on 'down', and the store must
    say so (it said 'up' once the first publish landed): a restart would serve it otherwise (H1)."""
    h = Harness()
    p = Planner("p", ZONE, (endpoint(rise=1, fall=1),))
    h.run(p)
    for t in ("lb-1", "lb-2", "lb-3"):
        h.run(p, HealthObserved(h.now, t, True))
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, Tick(h.now))
    assert h.store.health()["lb-2"].healthy is False
    h.run(p, HealthObserved(h.now, "lb-2", True))
    step = p.handle(Tick(h.now))
    assert isinstance(step.request, Publish) and dict(step.request.health)["lb-2"].healthy is True
    p.handle(HealthObserved(h.now, "lb-2", False))  # down again while that publish is on its way
    h.run(p, h.interpreter.run(p.name, step, h.now))
    assert h.store.health()["lb-2"].healthy is True
    h.run(p, Tick(h.now))
    assert "lb-2" not in weights(h)
    assert h.store.health()["lb-2"].healthy is False, "the store keeps a state the planner no longer acts on"
