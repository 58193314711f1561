"""Collector: deletes only below the low watermark; deleting a plan never changes a record."""

from __future__ import annotations

from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import HealthObserved, Tick
from dnsplane.protocol.planner import Planner
from tests.protocol.harness import ZONE, Harness, endpoint


def test_collects_old_plans_but_never_content_or_records() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint("a"), endpoint("b", targets=4)))
    e = Enactor("e", ZONE)
    c = Collector()
    h.run(p)
    for tid in ("lb-4", "lb-4"):
        h.run(p, HealthObserved(h.now, tid, False))
        h.run(p, Tick(h.now))
        h.run(p, HealthObserved(h.now, tid, True))
        h.run(p, Tick(h.now))
    head = h.store.head()
    h.run(e)
    records_before = h.provider.read_all()
    desired_before = h.store.desired(None, head)
    h.run(c)
    assert [x.generation for x in h.store.plans()] == [head]
    assert h.provider.read_all() == records_before, "deleting plans changed a record"
    assert h.store.desired(None, head) == desired_before, "deleting plans lost an endpoint's content"
    assert c.deleted == head - 1


def test_in_flight_enactor_keeps_its_plan() -> None:
    h = Harness()
    p = Planner("p", ZONE, (endpoint(),))
    h.run(p)
    done, held = Enactor("done", ZONE), Enactor("held", ZONE)
    h.run(done)
    h.step(held, h.step(held, Tick(h.now)))  # held has begun generation 1
    for ok in (False, True, False):
        h.run(p, HealthObserved(h.now, "lb-1", ok))
        h.run(p, Tick(h.now))
    h.run(done)
    h.run(Collector())
    assert 1 in {x.generation for x in h.store.plans()}
