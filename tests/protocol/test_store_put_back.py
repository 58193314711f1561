"""A store put back to an older backup under running actors (the simulator's ``store_rollback``).

The backup's head is below the markers its lost plans wrote, and the store hands their numbers out
again. Each actor's memory of the store (the planner's plans, an enactor's last finished plan, the
collector's last collect) then names plans the store no longer holds; each test shows one actor
noticing it, and (``*_without_*``) what happened before it did.
"""

from __future__ import annotations

from dnsplane.model import Generation
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import (
    AdvanceHead,
    HeadRead,
    HealthObserved,
    ReadHead,
    Resolved,
    Tick,
    WriteBatch,
    request,
)
from dnsplane.protocol.planner import HEAD_CHECK, Planner
from dnsplane.protocol.verifier import Problem, Verifier
from dnsplane.store.memory import MemoryStore
from tests.protocol.harness import ZONE, Harness, endpoint

API, WWW = endpoint("api"), endpoint("www")


def unchecked(h: Harness) -> Harness:
    """The harness's monitor names content by generation: a store put back to a backup hands numbers out
    again (the simulator's monitor follows it; these tests assert what they need themselves)."""
    h.checking = False
    h.monitor.on_publish = lambda *args: None  # type: ignore[method-assign]
    return h


def served(h: Harness, key: object, at: int) -> set[str]:
    desired = h.store.desired([key], Generation(at))[key]  # type: ignore[list-item]
    return {m.target_id for m in desired.records.members if m.weight}


def plans_then_backup(h: Harness, p: Planner) -> MemoryStore:
    """Plan 1 published (a backup taken then: the store as it was), then lb-1 and lb-2 down: plans 2 and
    3, applied (api's marker g=3 names lb-3 alone)."""
    unchecked(h).run(p)
    backup = h.store.fork()
    for tid in ("lb-1", "lb-2"):
        h.run(p, HealthObserved(h.now, tid, False))
        h.run(p, Tick(h.now))
    h.run(Enactor("e", ZONE))
    assert h.store.head() == 3 and served(h, API.key, 3) == {"lb-3"}
    return backup


def test_an_idle_planner_notices_its_plans_are_gone_and_plans_again() -> None:
    h = Harness()
    p = Planner("p", ZONE, (API,))
    h.store.restore(plans_then_backup(h, p))  # plan 1 only: every target in it
    h.store.advance_head(Generation(3), h.now)  # the verifier lifts the head to the markers it sees
    h.run(p, Tick(h.now))  # nothing changed for the planner: nothing to publish, its check not due
    assert h.store.head() == 3 and served(h, API.key, 3) == {"lb-1", "lb-2", "lb-3"}  # the backup's
    h.now += HEAD_CHECK
    h.run(p, Tick(h.now))  # the check: plan 3 is not the planner's; it reloads and plans again
    assert h.store.head() == 4 and served(h, API.key, 4) == {"lb-3"}


def test_an_idle_planner_without_the_check_leaves_the_backups_content() -> None:
    h = Harness()
    p = Planner("p", ZONE, (API,), head_check=0.0)
    h.store.restore(plans_then_backup(h, p))
    h.store.advance_head(Generation(3), h.now)
    h.now += 10 * HEAD_CHECK
    h.run(p, Tick(h.now))
    assert h.store.head() == 3 and served(h, API.key, 3) == {"lb-1", "lb-2", "lb-3"}  # lb-1, lb-2 are down


def test_a_planner_publishing_over_another_plan_under_its_number_is_refused_and_reloads() -> None:
    db = endpoint("db", targets=2)
    h = unchecked(Harness())
    p = Planner("p", ZONE, (API, db), head_check=0.0)  # no idle check: the publish alone must notice
    h.run(p)
    backup = h.store.fork()  # plan 1: every target up
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))  # plan 2: lb-1 out of api and db
    h.store.restore(backup)
    h.store.advance_head(Generation(2), h.now)  # exactly the planner's head, under another plan
    h.run(p, HealthObserved(h.now, "lb-3", False))  # changes api only, in the planner's view
    h.run(p, Tick(h.now))
    head = h.store.head()
    assert head == 3 and served(h, API.key, head) == {"lb-2"}
    assert served(h, db.key, head) == {"lb-2"}, "db keeps the backup's content: lb-1 is down"
    # what the planner believes it published is what the store holds
    assert {k: rs.digest for k, rs in p.published.items()} == {
        k: d.records.digest for k, d in h.store.desired(None, head).items()}


def test_an_enactor_whose_last_plan_is_gone_walks_every_change_again() -> None:
    db = endpoint("db", targets=2)  # lb-1 and lb-2: lb-3's health does not change it
    h = unchecked(Harness())
    p = Planner("p", ZONE, (API, db))
    e = Enactor("e", ZONE)
    h.run(p)
    backup = h.store.fork()  # plan 1
    h.run(p, HealthObserved(h.now, "lb-3", False))
    h.run(p, Tick(h.now))  # plan 2: api only
    h.run(e)
    assert e.applied_upto == 2
    h.store.restore(backup)  # plan 1 again
    q = Planner("q", ZONE, (API, db))  # a planner started on the backup, which hears lb-1 down
    h.run(q)
    h.run(q, HealthObserved(h.now, "lb-1", False))
    h.run(q, Tick(h.now))
    assert h.store.head() == 2  # another plan 2: db changed too
    h.run(e)
    seen = h.provider.read([db.key])[db.key]
    assert seen.records == h.store.desired([db.key], Generation(2))[db.key].records, "plan 2's db skipped"
    assert seen.marker is not None and seen.marker.generation == 2


def test_the_verifier_lifts_the_head_past_a_lost_plans_marker_at_its_number() -> None:
    h = Harness()
    p = Planner("p", ZONE, (API,))
    h.store.restore(plans_then_backup(h, p))
    h.store.advance_head(Generation(3), h.now)  # head 3: an empty plan over plan 1's content
    v = Verifier("verifier", zone=ZONE)
    reply = h.step(v, Tick(h.now))
    reply = h.step(v, reply)
    assert isinstance(reply, Resolved)
    step = v.handle(reply)
    assert AdvanceHead(Generation(4)) in step.effects  # past the marker g=3 of the lost plan 3
    assert not isinstance(step.request, WriteBatch)  # not repaired at 3: two contents under one number
    assert v.last_problems[API.key] is Problem.MARKER_AHEAD


def test_plans_a_backup_puts_back_below_the_last_collect_are_collected_again() -> None:
    h = unchecked(Harness())
    p = Planner("p", ZONE, (API,))
    h.run(p)
    e, c = Enactor("e", ZONE), Collector()
    for ok in (False, True):
        h.run(p, HealthObserved(h.now, "lb-1", ok))
        h.run(p, Tick(h.now))
    h.run(e)
    backup = h.store.fork()  # plans 1-3, generation 3 applied
    h.run(c)
    assert [x.generation for x in h.store.plans()] == [3] and c.collected_below == 3
    h.store.restore(backup)  # plans 1 and 2 back, below the watermark c collected at
    h.run(c)
    assert [x.generation for x in h.store.plans()] == [3]


def test_a_plan_the_collector_deleted_is_not_lost() -> None:
    """Only a plan the store no longer holds where no collect deleted it sends an enactor back to the
    first change: one behind the collector (its plan deleted below the watermark) reads on from it."""
    h = unchecked(Harness())
    p = Planner("p", ZONE, (API,))
    h.run(p)
    created = h.store.created_at(Generation(1))
    for tid in ("lb-1", "lb-2"):
        h.run(p, HealthObserved(h.now, tid, False))
        h.run(p, Tick(h.now))
    h.run(Enactor("ahead", ZONE))
    h.run(Collector())
    assert h.store.oldest_plan() == 3  # plan 1 collected
    read = h.interpreter.run("e", request(ReadHead(Generation(1), created)), h.now)
    assert isinstance(read, HeadRead) and read.head == 3 and not read.lost
    h.store.restore(h.store.fork())  # (the same store: nothing lost)
    h.store.advance_head(Generation(5), h.now)  # plan 5, an empty one, created now
    read = h.interpreter.run("e", request(ReadHead(Generation(3), h.store.created_at(Generation(3)))), h.now)
    assert isinstance(read, HeadRead) and not read.lost and read.head_at == h.store.created_at(Generation(5))
    read = h.interpreter.run("e", request(ReadHead(Generation(5), 0.5)), h.now)  # another plan 5 than it knew
    assert isinstance(read, HeadRead) and read.lost
