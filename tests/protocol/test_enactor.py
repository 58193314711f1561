"""Enactor: the decision table, compare-and-swap on conflict, idempotence, refusal of empty sets."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsplane import execute
from dnsplane.model import (
    NO_GENERATION,
    Conflict,
    Desired,
    EndpointKey,
    Generation,
    Marker,
    Member,
    Observed,
    RecordSet,
)
from dnsplane.protocol.enactor import Enactor, decide
from dnsplane.protocol.messages import ChangesLoaded, HeadRead, HealthObserved, LoadChanges, Step, Tick, WriteBatch
from dnsplane.protocol.planner import Planner
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")
RS = RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 500), Member("lb-2", ("192.0.2.2",), 500)])
OTHER = RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 1000)])


def test_decision_table() -> None:
    d = Desired(Generation(5), RS)
    assert decide(d, Observed(None, None)) == "write"
    assert decide(d, Observed(OTHER, Marker(Generation(4), OTHER.digest))) == "write"
    assert decide(d, Observed(OTHER, Marker(Generation(6), OTHER.digest))) == "skip-newer"
    assert decide(d, Observed(RS, Marker(Generation(5), RS.digest))) == "skip-applied"
    # hand-made states are the verifier's: an enactor may hold an old plan
    assert decide(d, Observed(RS, None)) == "skip-corrupt", "records without marker"
    assert decide(d, Observed(None, Marker(Generation(4), RS.digest))) == "skip-corrupt", "emptied by hand"
    assert decide(d, Observed(RS, Marker(Generation(5), OTHER.digest))) == "skip-corrupt"
    # the marker decides, not the records beside it (issue 13's tenth round): records edited by hand under
    # the plan's own marker leave nothing of this plan to write (the verifier repairs the mismatch), and
    # under an older marker they are what the write replaces, once the store confirms that marker
    assert decide(d, Observed(OTHER, Marker(Generation(5), RS.digest))) == "skip-applied", "edited under marker"
    assert decide(d, Observed(OTHER, Marker(Generation(3), RS.digest))) == "write", "edited under an older one"
    assert decide(d, Observed(OTHER, Marker(Generation(6), RS.digest))) == "skip-newer", "edited under a newer one"


def setup(n_endpoints: int = 3) -> tuple[Harness, Planner]:
    h = Harness()
    eps = tuple(endpoint(f"e{i}") for i in range(n_endpoints))
    p = Planner("planner", ZONE, eps)
    h.run(p)
    return h, p


def test_applies_everything_then_costs_nothing_to_reapply() -> None:
    h, _ = setup()
    e = Enactor("e1", ZONE)
    h.run(e)
    assert h.provider.writes == 3
    for key, d in h.store.desired(None, h.store.head()).items():
        seen = h.provider.read([key])[key]
        assert seen.marker == Marker.after(None, d.generation, d.records.digest)  # a first write
        assert seen.records == d.records
    again = Enactor("e2", ZONE)
    h.run(again)
    assert h.provider.writes == 3, "I6: a second enactor applying the same plan writes nothing"
    assert again.stats["skips"] == 3


def test_generation_touching_k_endpoints_costs_k_writes() -> None:
    h, p = setup(20)
    e = Enactor("e1", ZONE, batch_size=7)
    h.run(e)
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    before = h.provider.writes
    reads: list[int] = []
    original = h.provider.read

    def counting(keys):  # type: ignore[no-untyped-def]
        keys = list(keys)
        reads.append(len(keys))
        return original(keys)

    h.provider.read = counting  # type: ignore[method-assign]
    h.run(e)
    assert h.provider.writes - before == 20  # lb-1 is in every endpoint
    h.run(p, HealthObserved(h.now, "lb-1", True))
    h.run(p, Tick(h.now))
    reads.clear()
    h.run(e)
    assert h.provider.writes - before == 40


def test_conflict_rereads_and_converges_without_lowering_the_marker() -> None:
    h, p = setup(1)
    slow, fast = Enactor("slow", ZONE), Enactor("fast", ZONE)
    h.run(fast)
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    cmds = h.until_write(slow)
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, Tick(h.now))
    h.run(fast)
    done = h.interpreter.run(slow.name, cmds, h.now)
    assert isinstance(done.results[0], Conflict)
    h.run(slow, done)
    key = next(iter(h.store.desired(None, h.store.head())))
    assert h.provider.read([key])[key].marker.generation == h.store.head()


def test_refuses_an_empty_record_set_whatever_the_plan_says() -> None:
    h, _ = setup(1)
    e = Enactor("e1", ZONE)
    h.run(e)
    key = next(iter(h.store.desired(None, 1)))
    empty = RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 0)])
    commands = e.handle(Tick(h.now))
    e.handle(h.interpreter.run(e.name, commands, h.now))  # HeadRead(1): already applied
    e.applied_upto = Generation(0)
    e.handle(Tick(h.now))
    assert isinstance(e.handle(HeadRead(h.now, Generation(2))).request, LoadChanges)  # working on 2
    out = e.handle(ChangesLoaded(h.now, {key: Desired(Generation(2), empty)}))
    assert e.stats["refused"] == 1
    assert not any(isinstance(c, WriteBatch) for c in out.commands())
    h.interpreter.run(e.name, out, h.now)
    assert [x.action for x in h.store.history(key)][-1] == "refused"
    assert h.provider.read([key])[key].records.live_members()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["lb-1", "lb-2", "lb-3"]), st.booleans()),
                max_size=25))
def test_three_enactors_any_interleaving_converge(script: list[tuple[int, str, bool]]) -> None:
    """Property: three enactors, health flapping, any order of turns: I1/I2/I5 hold at every
    step (the harness checks after each), and at the end every endpoint holds the newest plan."""
    h, p = setup(2)
    enactors = [Enactor(f"e{i}", ZONE, batch_size=1) for i in range(3)]
    for who, tid, ok in script:
        h.run(p, HealthObserved(h.now, tid, ok))
        h.run(p, Tick(h.now))
        # step one enactor a few steps, leaving it mid-plan sometimes
        reply = h.step(enactors[who], Tick(h.now))
        for _ in range(who + 1):
            if reply is None:
                break
            reply = h.step(enactors[who], reply)
        if reply is not None:
            h.run(enactors[who], reply)
    for e in enactors:
        h.run(e)
    head = h.store.head()
    for key, d in h.store.desired(None, head).items():
        seen = h.provider.read([key])[key]
        assert seen.records == d.records
        assert seen.marker.generation == d.generation


def test_a_marker_lowered_by_hand_is_left_to_the_verifier_and_holds_the_collector() -> None:
    """A marker behind the plan whose digest is not the content of the generation it names was
    made by hand: an enactor (which may hold an old plan) must not write over it (I2), must not
    report the plan applied past it (I3), and picks the endpoint up again once it is repaired."""
    from dnsplane.protocol.verifier import Verifier

    h, p = setup(1)
    e = Enactor("e1", ZONE)
    h.run(e)
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    h.run(e)
    key = next(iter(h.store.desired(None, h.store.head())))
    seen = h.provider.read([key])[key]
    assert seen.marker.generation == 2
    h.checking = False
    h.provider.hand_edit(key, seen.records, Marker(Generation(1), seen.records.digest))  # lowered by hand
    late = Enactor("late", ZONE)
    writes = h.provider.writes
    h.run(late)
    assert h.provider.writes == writes, "an enactor wrote over a hand-lowered marker"
    assert late.held == {key: 1}
    assert h.store.applied()["late"] == 1, "reported a generation past what the marker names"
    v = Verifier("v", zone=ZONE)
    h.run(v)  # looks like a lagging marker: the verifier gives enactors one round...
    h.run(v)  # ...then repairs it
    h.checking = True
    assert h.provider.read([key])[key].marker.generation == 2
    h.run(p, HealthObserved(h.now, "lb-2", False))
    h.run(p, Tick(h.now))
    h.run(late)
    assert late.held == {}
    assert h.store.applied()["late"] == h.store.head()


def test_a_delayed_first_write_fails_on_records_whose_marker_was_deleted_by_hand() -> None:
    """Chaos seeds 1412 and 5315: an enactor's first write (nothing there when it read) is delayed;
    meanwhile a newer plan is written and a human deletes the marker. "No marker" holds again, but a
    first write also expects no records, so the old write fails; the verifier repairs the endpoint."""
    from dnsplane.protocol.verifier import Verifier

    h, p = setup(1)
    slow = Enactor("slow", ZONE)
    cmds = h.until_write(slow)
    (first,) = cmds.request.writes
    assert first.expect is None and first.expect_records is None
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    h.run(Enactor("fast", ZONE))
    key = first.key
    newer = h.provider.read([key])[key]
    assert newer.marker is not None and newer.marker.generation == 2
    h.checking = False
    h.provider.hand_edit(key, newer.records, None)  # the marker deleted by hand
    h.checking = True
    # refused twice over: by the store's fence before the provider (generation 2 changed the endpoint
    # after the generation the write was decided from), and, without the fence, by the compare-and-swap
    assert h.interpreter.run(slow.name, Step((), replace(cmds.request, fence=None)), h.now).results == [
        Conflict(key, None)]
    done = h.interpreter.run(slow.name, cmds, h.now)
    assert done.results == [Conflict(key, None, newer=Generation(2))]
    assert h.provider.read([key])[key] == Observed(newer.records, None)  # generation 2's content stays
    h.run(slow, done)
    assert h.provider.read([key])[key] == Observed(newer.records, None)  # left to the verifier
    v = Verifier("v", zone=ZONE)
    h.run(v)
    assert h.provider.read([key])[key] == Observed(newer.records, None) and v.edited.keys() == {key}  # next round
    h.run(v)
    repaired = Marker.after(None, Generation(2), newer.records.digest)  # the chain restarts: no marker was found
    assert h.provider.read([key])[key] == Observed(newer.records, repaired)
    assert v.stats["repairs"] == 1


def _aba_with_a_delayed_write() -> tuple[Harness, Enactor, list[object], EndpointKey]:
    """The story of chaos 12537: ``slow`` decides a write of generation 2 (B) while the endpoint holds
    generation 1 (A), and is delayed; the endpoint moves to 2 (B) and back to 3 (A); then a human sets
    the marker's generation back to 1, over records that are A again (``marker_stale``: ``d=`` set to
    the records' digest, ``p=`` kept). Returns the harness, ``slow``, its pending commands and the key."""
    h, p = setup(1)
    fast, slow = Enactor("fast", ZONE), Enactor("slow", ZONE)
    h.run(fast)
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    cmds = h.until_write(slow)
    (delayed,) = cmds.request.writes  # type: ignore[attr-defined]
    assert delayed.expect is not None and delayed.expect.generation == 1
    h.run(fast)  # generation 2: B
    h.run(p, HealthObserved(h.now, "lb-1", True))
    h.run(p, Tick(h.now))
    h.run(fast)  # generation 3: A again
    key = delayed.key
    now = h.provider.read([key])[key]
    assert now.marker is not None and now.marker.generation == 3 and now.records == delayed.expect_records
    stale = Marker(Generation(1), now.marker.digest, now.marker.prev)  # g= edited, the rest kept
    # it names what the delayed write expects (generation, digest), all but the seal and prev
    assert (stale.generation, stale.digest) == (delayed.expect.generation, delayed.expect.digest)
    assert now.records == delayed.expect_records and not stale.sealed()
    h.provider.hand_edit(key, now.records, stale)
    h.monitor.hand_edited(key, 1)
    return h, slow, cmds, key


def take_the_fence_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """No write checked against the store or carrying the write token: the provider's compare-and-swap
    and the enactor's rules alone, as they stand behind the fence (docs/design.md, "Behind the store's
    fence on every write")."""
    monkeypatch.setattr(execute, "fence_read", lambda *args: execute.NOT_FENCED)


def test_a_delayed_write_fails_on_a_marker_set_back_by_hand_over_records_that_came_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Chaos 12537: records and marker generation and digest are what the delayed writer saw, but the
    marker's ``prev`` is not (it names the marker generation 3 replaced), so the compare-and-swap fails.
    The store's fence refuses it first (plan 3 changed the endpoint after plan 2); without the fence,
    the compare-and-swap alone."""
    h, slow, cmds, key = _aba_with_a_delayed_write()
    before = h.provider.read([key])[key]
    writes = h.provider.writes
    done = h.interpreter.run(slow.name, cmds, h.now)
    (delayed,) = cmds.request.writes  # type: ignore[attr-defined]
    assert done.results == [Conflict(key, delayed.expect, newer=Generation(3))]  # type: ignore[attr-defined]
    assert h.provider.read([key])[key] == before and h.provider.writes == writes

    take_the_fence_out(monkeypatch)
    h, slow, cmds, key = _aba_with_a_delayed_write()
    before = h.provider.read([key])[key]
    writes = h.provider.writes
    done = h.interpreter.run(slow.name, cmds, h.now)
    assert done.results == [Conflict(key, before.marker)]  # type: ignore[attr-defined]
    assert h.provider.read([key])[key] == before
    assert h.provider.writes == writes


def test_a_refused_enactor_does_not_write_over_the_lowered_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chaos 13470: after its conflict the delayed enactor re-reads the endpoint and finds marker
    generation 1 (behind its plan, 2) over records whose digest is the content of generation 1, which
    the store confirms (A -> B -> A). Writing B there would serve generation 2's content after 3's
    (I2; the harness raises). The hand edit broke the marker's seal, so the enactor leaves the
    endpoint to the verifier, which repairs it to the newest plan. (The store's fence refuses the
    delayed write first and the enactor leaves the endpoint at once: the seal rule is seen here without
    it.)"""
    from dnsplane.protocol.verifier import Verifier

    take_the_fence_out(monkeypatch)
    h, slow, cmds, key = _aba_with_a_delayed_write()
    edited = h.provider.read([key])[key]
    assert edited.marker is not None and not edited.marker.sealed()
    done = h.interpreter.run(slow.name, cmds, h.now)
    h.run(slow, done)
    assert h.provider.read([key])[key] == edited  # not written: skip-corrupt
    # nothing past the marker's generation reported as applied; its seal broken, its g= is no sure
    # bound (raised by hand it could lie past the head): held as a deleted marker is, at the last
    # generation this enactor finished (none)
    assert slow.held == {key: Generation(0)}
    v = Verifier("v", zone=ZONE)
    h.run(v)
    assert h.provider.read([key])[key] == edited and v.edited.keys() == {key}  # first seen: repaired next round
    h.run(v)
    repaired = h.provider.read([key])[key]
    assert repaired.records == edited.records and repaired.marker is not None
    assert repaired.marker.generation == 3 and repaired.marker.sealed()
    assert v.stats["repairs"] == 1


def test_a_marker_deleted_by_hand_holds_the_collector_until_a_slow_repair_lands() -> None:
    """Chaos 80234 and 100980: a human deletes a marker; the verifier's repair, made from a snapshot
    at generation 1, is slow; meanwhile generations 2 and 3 change the endpoint and enactors finish
    them. An enactor leaves the marker-less endpoint to the verifier and holds it at the generation
    it last finished before the change, so the collector keeps generation 1's content, which the
    repair's marker then names (I3). Unheld, the watermark passed 1 and the collector deleted it.
    An enactor that first looks at the endpoint later (restarted, here: new) holds as low."""
    from dnsplane.protocol.collector import Collector
    from dnsplane.protocol.verifier import Verifier

    h, p = setup(1)
    e = Enactor("e1", ZONE)
    h.run(e)
    (key,) = h.store.desired(None, h.store.head())
    first = h.provider.read([key])[key]
    h.checking = False
    h.provider.hand_edit(key, first.records, None)  # the marker deleted by hand
    h.checking = True
    v = Verifier("v", zone=ZONE)
    h.run(v)
    assert v.edited.keys() == {key}  # repaired next round, from a snapshot loaded after this one
    slow = h.until_write(v)  # that round's repair, toward generation 1, is held in flight
    for down in ("lb-1", "lb-2"):  # generations 2 and 3 each change the endpoint
        h.run(p, HealthObserved(h.now, down, False))
        h.run(p, Tick(h.now))
        h.run(e)
    assert h.store.head() == 3 and e.held == {key: Generation(1)}, "a marker-less endpoint left unheld"
    late = Enactor("late", ZONE)  # its first plan is 3: holding below 3's change (2) would lose 1
    h.run(late)
    assert late.held == {key: NO_GENERATION}
    assert h.store.applied() == {"e1": 1, "late": 0}
    h.run(Collector())
    assert h.store.content_at([(key, Generation(1))])[key].records == first.records
    # The slow repair is sent now. Generations 2 and 3 changed the endpoint after its snapshot: the
    # store's fence keeps it from the provider (it would have named generation 1, whose content the
    # hold kept), and the next round repairs the endpoint at the head.
    done = h.interpreter.run(v.name, slow, h.now)
    assert done.results == [Conflict(key, None, newer=Generation(3))]
    h.run(v, done)
    assert h.provider.read([key])[key] == Observed(first.records, None)
    h.run(v)
    repaired = h.provider.read([key])[key]
    assert repaired.marker is not None and repaired.marker.generation == 3
    assert h.store.content_at([(key, Generation(3))])[key].records == repaired.records
    h.run(p, HealthObserved(h.now, "lb-3", False))
    h.run(p, Tick(h.now))
    for enactor in (e, late):  # held endpoints are re-read with every plan: sound again, no longer held
        h.run(enactor)
        assert enactor.held == {}
    assert h.provider.read([key])[key].marker.generation == 4
    assert h.store.applied() == {"e1": 4, "late": 4}


def test_an_endpoint_deleted_whole_by_hand_is_not_written_from_an_older_plan() -> None:
    """Found by the explorer (2 generations, 2 faults): a human empties an endpoint and deletes its
    marker, so it looks never written; an enactor on generation 1 found nothing there and wrote
    generation 1's content after generation 2's had been served (I2). Reading markers, an enactor
    now also learns from the store (read after the provider) the newest content of each endpoint
    found empty that a newer plan changed, and writes that instead."""
    h, p = setup(1)
    slow = Enactor("slow", ZONE)
    reply = h.step(slow, Tick(h.now))  # HeadRead: generation 1
    reply = h.step(slow, reply)  # ChangesLoaded: generation 1's content, held here
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    h.run(Enactor("fast", ZONE))
    (key,) = h.store.desired(None, h.store.head())
    served = h.provider.read([key])[key]
    assert served.marker.generation == 2
    h.checking = False
    h.provider.hand_edit(key, None, None)  # deleted whole: records and marker
    h.checking = True
    h.run(slow, reply)
    now = h.provider.read([key])[key]
    assert now.records == served.records, "wrote generation 1's content over a deleted endpoint"
    assert now.marker == Marker.after(None, Generation(2), served.records.digest)
    assert slow.held == {} and h.store.applied()["slow"] == 1


def test_an_empty_endpoint_whose_newest_content_is_invalid_is_left_and_held() -> None:
    """The newest content that ``MarkersRead.newer`` brings is validated like any plan's (I5): a
    malformed newer plan is not written; the endpoint is left to the enactors of later plans (which
    fall back to the newest valid content) and the verifier, and held meanwhile."""
    h, _ = setup(1)
    slow = Enactor("slow", ZONE)
    reply = h.step(slow, Tick(h.now))  # HeadRead: generation 1
    reply = h.step(slow, reply)  # ChangesLoaded: generation 1's content, held here
    (key,) = h.store.desired(None, h.store.head())
    assert h.store.publish(Generation(1), [(key, RecordSet.of(30, []))], h.now, "malformed") == 2
    h.run(slow, reply)
    assert h.provider.read([key])[key] == Observed(None, None) and h.provider.writes == 0
    assert slow.held == {key: NO_GENERATION} and h.store.applied()["slow"] == 0
    h.run(slow)  # generation 2: the malformed change is refused, generation 1's content written
    assert h.provider.read([key])[key].marker.generation == 1 and slow.held == {}


def lockstep(h: Harness, enactors: list[Enactor]) -> None:
    """Every enactor one step in turn, from a tick until all are quiet: enactors started together."""
    replies: list[object] = [Tick(h.now) for _ in enactors]
    while any(r is not None for r in replies):
        for i, e in enumerate(enactors):
            if replies[i] is not None:
                replies[i] = h.step(e, replies[i])  # type: ignore[arg-type]


@pytest.mark.parametrize("shared", [True, False])
def test_enactors_started_together_write_different_endpoints_first(shared: bool) -> None:
    """Three enactors in step over one plan of 30 endpoints, 5 a batch: with shares, each starts a third of
    the way further along the changes and writes its third (each endpoint once, no compare-and-swap
    lost); without, all three read the same batches first, and the one a step ahead writes everything
    while the others only read behind it. Either way every change is walked by every enactor and the
    plan is applied (the invariants are checked after every step)."""
    h, _ = setup(30)
    n = 3
    enactors = [Enactor(f"e{i}", ZONE, batch_size=5, share=(i, n) if shared else (0, 1)) for i in range(n)]
    first: list[tuple[EndpointKey, ...]] = []
    for e in enactors:
        reply = h.step(e, Tick(h.now))
        while not e.in_batch:
            reply = h.step(e, reply)  # type: ignore[arg-type]
        first.append(e.in_batch)
        e.reset()
    lockstep(h, enactors)
    writes = [e.stats["writes"] for e in enactors]
    assert h.provider.writes == 30 and sum(e.stats["conflicts"] for e in enactors) == 0
    if shared:
        assert len({k for batch in first for k in batch}) == 15, "three different first batches"
        assert writes == [10, 10, 10]
    else:
        assert len(set(first)) == 1
        assert sorted(writes) == [0, 0, 30]
    for key, d in h.store.desired(None, h.store.head()).items():
        assert h.provider.read([key])[key].records == d.records
    assert all(e.applied_upto == h.store.head() for e in enactors)
