"""Phases, verdicts, and what the actors offer drivers and the CLI (issue 9, item 3).

What an actor waits for is one enum field, ``phase`` (``busy`` is read from it); ``ContentLoaded``,
which answers three different requests of the enactor, is routed by it. Drivers and the CLI use
methods (``Planner.from_snapshot``, ``Planner.health_snapshot``, ``reset``) and events, never set an
actor's fields.
"""

from __future__ import annotations

from typing import Any

from dnsplane.model import Desired, EndpointKey, Generation, Marker, Observed
from dnsplane.protocol.collector import Collector, CollectorPhase
from dnsplane.protocol.enactor import Enactor, EnactorPhase, Verdict, decide
from dnsplane.protocol.legacy import CleanedUp, LegacyEnactor, LegacyPhase
from dnsplane.protocol.messages import (
    NOTHING,
    ContentLoaded,
    DesiredLoaded,
    Event,
    Failed,
    HeadRead,
    HealthObserved,
    LoadChanges,
    LoadDesired,
    MarkersRead,
    Publish,
    PublishConflict,
    Tick,
    WriteDone,
)
from dnsplane.protocol.ownership import Ownership
from dnsplane.protocol.planner import Planner, PlannerPhase, TargetSnapshot
from dnsplane.protocol.verifier import Problem, Verifier, VerifierPhase
from tests.protocol.harness import ZONE, Harness, endpoint

E = EnactorPhase


def published(n: int = 2) -> tuple[Harness, Planner]:
    """A harness whose store holds generation 1 of ``n`` endpoints."""
    h = Harness()
    p = Planner("planner", ZONE, tuple(endpoint(f"e{i}") for i in range(n)))
    h.run(p)
    return h, p


def phases(h: Harness, actor: Any, event: Event | None = None) -> list[Any]:
    """Feed ``event`` (a Tick) and every reply; the actor's phase after each step."""
    seen = []
    reply: Event | None = event or Tick(h.now)
    while reply is not None:
        reply = h.step(actor, reply)
        seen.append(actor.phase)
    return seen


def test_each_round_goes_through_its_phases_and_ends_idle() -> None:
    h, _ = published()
    enactor = Enactor("e1", ZONE)
    assert phases(h, enactor) == [E.HEAD, E.CHANGES, E.MARKERS, E.WRITE, E.IDLE] and not enactor.busy
    verifier = Verifier("verifier", zone=ZONE)
    assert phases(h, verifier) == [VerifierPhase.SNAPSHOT, VerifierPhase.RESOLVE, VerifierPhase.IDLE]
    collector = Collector()
    assert phases(h, collector) == [CollectorPhase.WATERMARK, CollectorPhase.COLLECT, CollectorPhase.IDLE]



def test_the_legacy_enactor_has_phases_too() -> None:
    """Its writes are the simulator's alone (``ForceWrite``): fed by hand here."""
    h, _ = published(1)
    desired = h.store.desired(None, h.store.head())
    legacy = LegacyEnactor("legacy", ZONE)
    seen = []
    for event in (Tick(h.now), DesiredLoaded(h.now, h.store.head(), desired), MarkersRead(h.now, {}),
                  WriteDone(h.now, []), CleanedUp(h.now, 0, ())):
        legacy.handle(event)
        seen.append(legacy.phase)
    L = LegacyPhase
    assert seen == [L.PLAN, L.MARKERS, L.WRITE, L.CLEANUP, L.IDLE] and not legacy.busy


def test_a_marker_behind_the_plan_is_confirmed_in_its_own_phase() -> None:
    h, p = published(1)
    h.run(Enactor("e1", ZONE))
    p.handle(HealthObserved(h.now, "lb-1", False))
    h.run(p)  # generation 2
    assert phases(h, Enactor("e2", ZONE)) == [E.HEAD, E.CHANGES, E.MARKERS, E.CONFIRM, E.WRITE, E.IDLE]


def test_content_the_enactor_did_not_ask_for_changes_nothing() -> None:
    """Routed by phase, not by what the last round left: an idle enactor (its last batch still in
    ``sent``) given a ``ContentLoaded`` writes nothing, and neither does one waiting for markers."""
    h, _ = published(1)
    enactor = Enactor("e1", ZONE)
    h.run(enactor)
    key = next(iter(h.store.desired(None, h.store.head())))
    content = h.store.desired(None, h.store.head())
    before = dict(vars(enactor))
    assert enactor.handle(ContentLoaded(h.now, content)) is NOTHING
    assert vars(enactor) == before
    enactor.handle(Tick(h.now))
    assert enactor.phase is E.HEAD
    assert enactor.handle(ContentLoaded(h.now, {key: content[key]})) is NOTHING
    assert enactor.phase is E.HEAD


def test_an_idle_enactor_takes_a_stale_head_as_the_start_of_a_round() -> None:
    """The simulator's ``redeliver`` fault feeds an idle enactor a head it did not ask for."""
    h, _ = published(1)
    enactor = Enactor("e1", ZONE)
    step = enactor.handle(HeadRead(h.now, Generation(1)))
    assert isinstance(step.request, LoadChanges) and enactor.phase is E.CHANGES and enactor.busy
    enactor.handle(Failed(h.now, "lost"))
    enactor.applied_upto = Generation(1)
    assert enactor.handle(HeadRead(h.now, Generation(1))) is NOTHING and enactor.phase is E.IDLE


def test_verdicts_are_an_enum_that_reads_as_the_journalled_strings() -> None:
    h, _ = published(1)
    desired = next(iter(h.store.desired(None, h.store.head()).values()))
    newer = Observed(desired.records, Marker(Generation(9), desired.records.digest))
    assert decide(desired, newer) is Verdict.SKIP_NEWER
    assert decide(desired, Observed(None, None)) is Verdict.WRITE
    assert [str(v) for v in Verdict] == ["write", "skip-newer", "skip-applied", "skip-corrupt"]
    assert Problem.LAGGING == "lagging" and f"repair of {Problem.MARKER_EDITED}" == "repair of marker-edited"


def test_the_planner_phase_is_where_it_stands_with_the_store() -> None:
    h, _ = published(1)
    p = Planner("p2", ZONE, (endpoint("e0"),))
    assert p.phase is PlannerPhase.UNSYNCED and not p.synced and not p.busy
    assert isinstance(p.handle(Tick(h.now)).request, LoadDesired)
    assert p.phase is PlannerPhase.LOADING and p.busy and not p.synced
    assert p.handle(Tick(h.now)) is NOTHING  # waiting
    p.handle(Failed(h.now, "store down"))
    assert p.phase is PlannerPhase.UNSYNCED  # still to load
    p.handle(Tick(h.now))
    p.handle(HealthObserved(h.now, "lb-1", False))
    step = p.handle(DesiredLoaded(h.now, h.store.head(), h.store.desired(None, h.store.head())))
    assert isinstance(step.request, Publish) and p.phase is PlannerPhase.PUBLISHING and p.synced and p.busy
    p.handle(Failed(h.now, "store down"))
    assert p.phase is PlannerPhase.IDLE  # in sync: the next tick plans again, no reload
    p.handle(Tick(h.now))
    p.handle(PublishConflict(h.now))
    assert p.phase is PlannerPhase.LOADING  # another planner published: reload first


def test_a_planner_from_a_snapshot_plans_as_one_that_loaded_it() -> None:
    """``dnsplane plan`` previews with ``Planner.from_snapshot``: the same plan a running planner that
    loaded that snapshot, with that health, would publish next."""
    h, _ = published(2)
    eps = (endpoint("e0"), endpoint("e1"))
    head = h.store.head()
    desired = h.store.desired(None, head)
    content = {k: d.records for k, d in desired.items()}
    snapshot = Planner.from_snapshot("preview", ZONE, eps, head, content, {"lb-1": False, "lb-2": None})
    assert snapshot.phase is PlannerPhase.IDLE and snapshot.head == head and snapshot.published == content
    loaded = Planner("planner", ZONE, eps)
    loaded.handle(HealthObserved(h.now, "lb-1", False))
    loaded.handle(HealthObserved(h.now, "lb-2", None))
    loaded.handle(Tick(h.now))
    publish = loaded.handle(DesiredLoaded(h.now, head, desired)).request
    assert snapshot.goal(snapshot.by_key) == loaded.goal(loaded.by_key)
    step = snapshot.handle(Tick(h.now)).request
    assert isinstance(step, Publish) and isinstance(publish, Publish)
    assert (step.expect_head, step.changes) == (publish.expect_head, publish.changes) and step.changes
    # an empty snapshot: the simulator's planner that believes the counter starts again at 0
    empty = Planner.from_snapshot("planner", ZONE, eps, Generation(0), {})
    assert empty.synced and empty.head == 0 and empty.dirty == set(empty.by_key)


def test_health_snapshot_is_what_status_shows() -> None:
    p = Planner("planner", ZONE, (endpoint("e0"),))
    p.handle(HealthObserved(1.0, "lb-1", False, "connection refused"))
    p.handle(HealthObserved(1.0, "lb-2", None, "local: no file descriptors"))
    p.handle(HealthObserved(1.0, "lb-3", True, ""))
    assert p.health_snapshot() == {
        "lb-1": TargetSnapshot(False, "down", "connection refused"),
        "lb-2": TargetSnapshot(None, "unknown", "local: no file descriptors"),
        "lb-3": TargetSnapshot(True, "ok", ""),
    }


def test_reset_is_a_fresh_actor_with_the_same_configuration() -> None:
    h, p = published(2)
    mine = Ownership("me")
    enactor = Enactor("e1", ZONE, 7, ownership=mine)
    h.run(enactor)
    assert enactor.applied_upto == 1
    enactor.reset()
    assert vars(enactor) == vars(Enactor("e1", ZONE, 7, ownership=mine))
    theirs = Ownership("me", frozenset({EndpointKey(f"e0.{ZONE}", "A")}))
    enactor.reset(theirs)  # the runtime's: the ownership of the fleet it runs now
    assert enactor.ownership == theirs

    verifier = Verifier("verifier", 3, zone=ZONE, ownership=mine)
    h.run(verifier)
    verifier.reset()
    assert vars(verifier) == vars(Verifier("verifier", 3, zone=ZONE, ownership=mine))

    collector = Collector("c")
    h.run(collector)
    collector.handle(Tick(h.now))
    collector.reset()
    assert vars(collector) == vars(Collector("c")) and not collector.busy

    # the planner keeps its health observations, and loads the store again at its next tick
    p.handle(HealthObserved(h.now, "lb-1", False))
    health = p.health
    p.reset()
    assert p.health is health and p.health["lb-1"].healthy is False
    assert p.phase is PlannerPhase.UNSYNCED and p.head == 0 and p.published == {} and p.dirty == set(p.by_key)


def test_every_content_phase_is_routed_and_the_others_ignore_content() -> None:
    """Exhaustive at run time as ``assert_never`` is for the type checker: no phase raises."""
    h, _ = published(1)
    content: dict[EndpointKey, Desired] = {}
    for phase in EnactorPhase:
        enactor = Enactor("e1", ZONE)
        h.run(enactor)
        enactor.phase = phase
        step = enactor.handle(ContentLoaded(h.now, content))
        if phase in (E.FALLBACK, E.RECHECK, E.CONFIRM):
            assert step is not NOTHING or enactor.phase is E.IDLE
        else:
            assert step is NOTHING and enactor.phase is phase
