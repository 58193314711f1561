"""The night of 19 October 2025, scripted: a delayed enactor must not empty an endpoint.

Enactor A reads plan g and is held just before its write. The planner publishes
g+1..g+5, enactor B applies g+5 and the collector runs. A resumes and sends its
write for g. With the safe protocol the store's fence refuses it (newer plans
changed the endpoint); without the fence the provider refuses it (the marker it
expected is gone). Either way the endpoint never resolves empty (I1), its marker
never goes down (I2) and no plan still referenced was deleted (I3).
"""

from __future__ import annotations

import pytest

from dnsplane import execute
from dnsplane.model import Conflict, EndpointKey
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import HealthObserved, Tick, WriteBatch, WriteDone
from dnsplane.protocol.planner import Planner
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")


@pytest.mark.parametrize("fenced", [True, False], ids=["store-fence", "compare-and-swap-alone"])
def test_delayed_enactor_cannot_write_a_stale_plan(fenced: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fenced:
        monkeypatch.setattr(execute, "fence_read", lambda *args: execute.NOT_FENCED)
    h = Harness()
    planner = Planner("planner", ZONE, (endpoint(),))
    a, b = Enactor("enactor-a", ZONE), Enactor("enactor-b", ZONE)
    collector = Collector()

    h.run(planner)  # generation 1: all three targets
    h.run(planner, Tick(h.now))
    h.run(b)
    assert h.provider.read([API])[API].marker.generation == 1

    h.run(planner, HealthObserved(h.now, "lb-1", False))
    h.run(planner, Tick(h.now))  # generation 2: lb-2, lb-3
    g = h.store.head()
    assert g == 2

    # A reads plan g and the marker, and is held with its write in hand.
    reply = h.step(a, Tick(h.now))
    while True:
        commands = a.handle(reply)
        if isinstance(commands.request, WriteBatch):
            held = commands
            break
        reply = h.interpreter.run(a.name, commands, h.now)
    assert held.request.writes[0].marker.generation == g
    h.monitor.note("enactor-a holds its write for generation 2")

    # Meanwhile the planner publishes g+1..g+5 (the content even returns to an earlier value).
    for tid, ok in [("lb-1", True), ("lb-2", False), ("lb-2", True), ("lb-3", False), ("lb-3", True)]:
        h.run(planner, HealthObserved(h.now, tid, ok))
        h.run(planner, Tick(h.now))
    assert h.store.head() == g + 5
    h.run(b)
    h.run(collector)
    marker_after_b = h.provider.read([API])[API].marker
    assert marker_after_b.generation == g + 5
    kept = {p.generation for p in h.store.plans()}
    assert g in kept, "the collector deleted the plan a live enactor holds (I3)"
    h.monitor.check_plans_kept(kept, {"enactor-a": g})

    # A resumes: its write is refused as a whole, by the store's fence (a newer plan changed the
    # endpoint) before the provider, or by the provider's compare-and-swap.
    reply = h.interpreter.run(a.name, held, h.now)
    assert isinstance(reply, WriteDone)
    assert isinstance(reply.results[0], Conflict)
    if fenced:
        refused = reply.results[0]
        assert refused.newer is not None and refused.newer > g, refused
    else:
        assert reply.results[0].current == marker_after_b
    h.monitor.check(h.provider.read_all(), "enactor-a's stale write refused")
    h.run(a, reply)  # A re-reads, sees a newer marker, and finishes without writing
    seen = h.provider.read([API])[API]
    assert seen.marker == marker_after_b
    assert seen.records.digest == h.store.desired([API], h.store.head())[API].records.digest
    assert a.stats["conflicts"] == 1 and a.stats["writes"] == 0
    history = [e.action for e in h.store.history(API) if e.actor == "enactor-a"]
    assert history == ["conflict"]
