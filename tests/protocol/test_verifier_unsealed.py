"""A marker whose seal is broken (``g=`` edited by hand, the rest of the text kept) names no plan.

Issue 8, found on a real BIND: a hand edit of ``g=`` to an in-range value above the store's head
was taken for "marker-ahead" and the head advanced to it (at ``MAX_GENERATION`` the planner could
never publish again; at 5,000,000 later repairs wrote that generation onto other endpoints). And
a hand edit of ``g=`` whose repair named the same generation and digest was "already applied" at
every provider (``Marker.same_content`` ignored the seal): "repairing: marker-edited" every round,
nothing written. Now:

- the verifier diagnoses an unsealed marker "marker-edited" whatever its ``g=``: never a head, and
  repaired the round after it is first seen, at the head, exactly once;
- the enactor leaves it to the verifier ("skip-corrupt", not "skip-newer"), held no higher than a
  deleted marker is.
"""

from __future__ import annotations

import pytest

from dnsplane.model import MAX_GENERATION, EndpointKey, Generation, Marker, Observed
from dnsplane.protocol.enactor import Enactor, Verdict, _held_at, decide
from dnsplane.protocol.messages import HealthObserved, Tick
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier, diagnose
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")


def converged() -> tuple[Harness, Planner, Enactor]:
    h = Harness()
    p = Planner("planner", ZONE, (endpoint(), endpoint("www", targets=4)))
    e = Enactor("enactor", ZONE)
    h.run(p)
    h.run(e)
    assert h.provider.read([API])[API].records is not None, "the harness did not converge"
    return h, p, e


def raise_by_hand(h: Harness, generation: int) -> Marker:
    """Set the marker's ``g=`` by hand, keeping the rest of its text (so its seal breaks)."""
    seen = h.provider.read([API])[API]
    assert seen.marker is not None and seen.marker.prev
    edited = Marker(Generation(generation), seen.marker.digest, seen.marker.prev, seen.marker.owner)
    assert not edited.sealed()
    h.checking = False  # a hand edit breaks I2 on purpose
    h.provider.hand_edit(API, seen.records, edited)
    return edited


@pytest.mark.parametrize("generation", [MAX_GENERATION, 5_000_000, 2])
def test_an_unsealed_marker_above_the_head_is_repaired_at_the_head_never_taken_for_one(generation: int) -> None:
    h, p, e = converged()
    head = h.store.head()
    assert head == 1
    raise_by_hand(h, generation)
    seen = h.resolve([API])[API]
    assert diagnose(h.store.desired([API], head)[API], seen, head) == "marker-edited"  # was "marker-ahead"
    v = Verifier("verifier")
    writes = h.provider.writes
    h.run(v)  # the round it is seen: left for the next round, the head untouched
    assert h.store.head() == head, "an unsealed marker moved the store's head"
    assert h.provider.writes == writes and v.last_problems == {API: "marker-edited"}
    h.run(v)  # repaired at the head, from a snapshot loaded after the edit was seen
    after = h.provider.read([API])[API].marker
    assert after is not None and after.sealed() and after.generation == head
    assert h.provider.writes == writes + 1 and h.store.head() == head
    for _ in range(3):  # written once, then right
        h.run(v)
    assert h.provider.writes == writes + 1 and v.stats["repairs"] == 1 and not v.last_problems
    # publishes still work after it, and the next plan is written over the repaired marker
    h.checking = True
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    assert h.store.head() == head + 1
    h.run(e)
    records = h.provider.read([API])[API].records
    assert records is not None and {m.target_id for m in records.members} == {"lb-2", "lb-3"}


def test_an_edited_marker_whose_repair_names_the_same_generation_and_digest_is_written_once() -> None:
    """api stays at g=1 while www's change moves the head to 2; ``g=1`` edited to ``g=2``: the repair
    (head 2, same content) equals the edited marker in all but the seal, and must still be written."""
    h, p, e = converged()
    h.run(p, HealthObserved(h.now, "lb-4", False))  # only www has lb-4
    h.run(p, Tick(h.now))
    h.run(e)
    assert h.store.head() == 2
    assert h.provider.read([API])[API].marker.generation == 1  # type: ignore[union-attr]
    raise_by_hand(h, 2)
    v = Verifier("verifier")
    writes = h.provider.writes
    for _ in range(5):
        h.run(v)
    after = h.provider.read([API])[API].marker
    assert after is not None and after.sealed() and after.generation == 2
    assert h.provider.writes == writes + 1, "the repair was taken for already applied"
    assert not v.last_problems and v.stats["repairs"] == 1


def test_the_enactor_leaves_an_unsealed_marker_above_its_plan_to_the_verifier() -> None:
    h, _, _ = converged()
    seen = h.provider.read([API])[API]
    desired = h.store.desired([API], h.store.head())[API]
    assert seen.records is not None and seen.marker is not None
    for generation in (MAX_GENERATION, 5_000_000, desired.generation + 1):
        edited = Marker(Generation(generation), seen.marker.digest, seen.marker.prev, seen.marker.owner)
        observed = Observed(seen.records, edited)
        assert decide(desired, observed) == "skip-corrupt"  # was skip-newer: left as "applied"
        # held as a deleted marker is (the repair names the verifier's head), never at its g=
        held = _held_at(Verdict.SKIP_CORRUPT, desired, observed, Generation(desired.generation))
        assert held is not None and held <= desired.generation - 1
    # a sealed marker above the plan is still a newer writer's
    sealed = Marker.after(seen.marker, Generation(desired.generation + 1), seen.marker.digest, seen.marker.owner)
    assert decide(desired, Observed(seen.records, sealed)) == "skip-newer"
