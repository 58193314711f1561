"""Released endpoints (I7): an endpoint removed from the fleet is released and its marker says so
(``Marker.released``, ``r=1``), written once by the verifier with the same generation, digest and
records; nothing writes it again; back in the fleet it is this installation's again; another
owner's released marker is foreign as any of its markers."""

from __future__ import annotations

from dnsplane.model import EndpointKey, Generation, Marker, Member, RecordSet
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import FleetChanged, HealthObserved, Tick
from dnsplane.protocol.ownership import Ownership
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")
WWW = EndpointKey(f"www.{ZONE}", "A")
OWNER = "dp-one"


def ownership(*names: str) -> Ownership:
    return Ownership.of_fleet(OWNER, [endpoint(n) for n in names])


def installation(names: tuple[str, ...] = ("api", "www"), adopt: bool = False
                 ) -> tuple[Harness, Planner, Enactor, Verifier]:
    h = Harness()
    p = Planner("planner", ZONE, tuple(endpoint(n) for n in names))
    own = Ownership(OWNER, frozenset(endpoint(n).key for n in names),
                    frozenset(endpoint(n).key for n in names) if adopt else frozenset())
    return h, p, Enactor("enactor", ZONE, ownership=own), Verifier("verifier", ownership=own)


def reload(h: Harness, *actors: object, names: tuple[str, ...]) -> None:
    fleet = tuple(endpoint(n) for n in names)
    for actor in actors:
        actor.handle(FleetChanged(h.now, fleet))  # type: ignore[attr-defined]


def actions(h: Harness, key: EndpointKey) -> list[str]:
    return [x.action for x in h.store.history(key)]


def released_installation() -> tuple[Harness, Planner, Enactor, Verifier]:
    """api and www written by dp-one, then www removed from the fleet and its marker released."""
    h, p, e, v = installation()
    h.run(p)
    h.run(e)
    reload(h, p, e, v, names=("api",))
    h.run(v)
    return h, p, e, v


# ---------------------------------------------------------------- the marker


def test_a_released_marker_round_trips_as_text_and_the_seal_covers_it() -> None:
    kept = Marker.after(None, Generation(3), "ab" * 8, OWNER)
    released = Marker.after(kept, Generation(3), "ab" * 8, OWNER, released=True)
    text = released.to_text()
    assert text.endswith(f" o={OWNER} r=1"), text
    assert Marker.from_text(text) == released and released.released and released.sealed()
    unowned = Marker.after(None, Generation(3), "ab" * 8, released=True)
    assert unowned.to_text().endswith(" r=1") and Marker.from_text(unowned.to_text()) == unowned
    forged = Marker.from_text(text.removesuffix(" r=1"))
    assert forged is not None and not forged.released and not forged.sealed(), "removing r=1 by hand breaks the seal"
    added = Marker.from_text(kept.to_text() + " r=1")
    assert added is not None and added.released and not added.sealed(), "adding r=1 by hand breaks the seal"
    assert Marker.from_text(f"{kept.to_text()} r=0") is None and Marker.from_text(f"{text} r=1") is None


def test_markers_without_released_read_and_hash_exactly_as_before() -> None:
    """Texts written by the code before ``released`` existed (their seals included)."""
    a = Marker.after(None, Generation(3), "ab" * 8, OWNER)
    b = Marker.after(a, Generation(4), "cd" * 8)
    assert a.to_text() == "dnsplane g=3 d=abababababababab p=7e25bc4223fd.3f715cd7 o=dp-one"
    assert b.to_text() == "dnsplane g=4 d=cdcdcdcdcdcdcdcd p=4e98a2605fb0.410f9fbd"
    assert Marker.from_text(a.to_text()) == a and a.sealed() and not a.released


def test_marking_released_is_a_content_change_not_an_applied_write() -> None:
    kept = Marker.after(None, Generation(3), "ab" * 8, OWNER)
    released = Marker.after(kept, Generation(3), "ab" * 8, OWNER, released=True)
    assert not released.same_content(kept), "the release must be a real write, not an I6 no-op"
    assert released.same_content(Marker.after(None, Generation(3), "ab" * 8, OWNER, released=True))


# ---------------------------------------------------------------- the release


def test_the_verifier_marks_a_removed_endpoint_released_once_and_nothing_writes_it_again() -> None:
    h, p, e, v = installation()
    h.run(p)
    h.run(e)
    before = h.provider.read([WWW])[WWW]
    assert before.marker is not None and not before.marker.released
    reload(h, p, e, v, names=("api",))
    h.run(v)
    after = h.provider.read([WWW])[WWW]
    assert after.marker is not None and after.marker.released, "the marker does not say released"
    assert after.records == before.records
    assert (after.marker.generation, after.marker.digest, after.marker.owner) == (
        before.marker.generation, before.marker.digest, OWNER)
    assert after.marker.sealed()
    assert actions(h, WWW).count("release") == 1
    writes = h.provider.writes
    for _ in range(3):  # more rounds, and plans that would have changed www
        h.run(p, HealthObserved(h.now, "lb-1", False))
        h.run(p, Tick(h.now))
        h.run(e)
        h.run(v)
        h.now += 1
    assert h.provider.read([WWW])[WWW] == after, "a released endpoint was written again"
    assert actions(h, WWW).count("release") == 1
    assert h.provider.writes > writes, "api is still managed and written"
    assert h.provider.read([API])[API].marker.released is False  # type: ignore[union-attr]


def test_a_release_that_meets_another_write_is_read_again_next_round() -> None:
    h, p, e, v = installation()
    h.run(p)
    h.run(e)
    reload(h, p, e, v, names=("api",))
    held = h.until_write(v)  # the release write, held in flight
    seen = h.provider.read([WWW])[WWW]
    assert seen.marker is not None and seen.records is not None
    moved = Marker.after(Marker(Generation(9), "x"), seen.marker.generation, seen.marker.digest, OWNER)
    h.provider.hand_edit(WWW, seen.records, moved)  # someone wrote in between (still ours, sealed)
    reply = h.interpreter.run(v.name, held, h.now)
    while reply is not None:
        reply = h.interpreter.run(v.name, v.handle(reply), h.now)
    assert h.provider.read([WWW])[WWW].marker == moved
    assert "conflict" in actions(h, WWW)
    h.run(v)
    marker = h.provider.read([WWW])[WWW].marker
    assert marker is not None and marker.released and marker.generation == moved.generation


def test_a_verifier_started_after_the_fleet_dropped_an_endpoint_releases_it() -> None:
    """The fleet file was edited while the process was down: the new process's first round."""
    h, p, e, _ = installation()
    h.run(p)
    h.run(e)
    fresh = Verifier("verifier", ownership=ownership("api"))
    h.run(fresh)
    marker = h.provider.read([WWW])[WWW].marker
    assert marker is not None and marker.released


# ---------------------------------------------------------------- back in the fleet


def test_an_endpoint_back_in_the_fleet_is_taken_back_by_the_verifier() -> None:
    h, p, e, v = released_installation()
    released = h.provider.read([WWW])[WWW]
    assert released.marker is not None and released.marker.released
    reload(h, p, e, v, names=("api", "www"))
    h.run(e)
    h.run(v)
    back = h.provider.read([WWW])[WWW]
    assert back.marker is not None and not back.marker.released and back.marker.owner == OWNER
    assert back.marker.sealed() and back.marker.generation == released.marker.generation
    assert back.records == released.records
    assert "reclaim" in actions(h, WWW)
    writes = h.provider.writes
    h.run(v)
    h.run(e)
    assert h.provider.writes == writes, "taken back once, then left alone"


def test_an_endpoint_back_in_the_fleet_takes_a_new_plan_over_its_released_marker() -> None:
    h, p, e, v = released_installation()
    released = h.provider.read([WWW])[WWW].marker
    assert released is not None and released.released
    reload(h, p, e, v, names=("api", "www"))
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    assert WWW in h.store.changed_between(released.generation, h.store.head())
    h.run(e)
    marker = h.provider.read([WWW])[WWW].marker
    assert marker is not None and not marker.released and marker.generation == h.store.head()
    assert marker.owner == OWNER


# ---------------------------------------------------------------- another owner's released marker


GLUE = RecordSet.of(30, [Member("lb-9", ("198.51.100.9",), 1)])


def test_another_owners_released_marker_is_foreign_and_never_written() -> None:
    h, p, e, v = installation()
    theirs = Marker.after(None, Generation(7), GLUE.digest, "dp-two", released=True)
    h.provider.hand_edit(WWW, GLUE, theirs)
    h.run(p)
    for _ in range(3):
        h.run(e)
        h.run(v)
    assert h.provider.read([WWW])[WWW].marker == theirs and h.provider.read([WWW])[WWW].records == GLUE
    assert "another owner 'dp-two'" in v.foreign[WWW]
    assert "release" not in actions(h, WWW) and "reclaim" not in actions(h, WWW)
    # ... and when this installation releases the name too, nothing is written either
    reload(h, p, e, v, names=("api",))
    h.run(v)
    assert h.provider.read([WWW])[WWW].marker == theirs


def test_another_owners_released_marker_is_taken_over_when_adopted() -> None:
    h, p, e, v = installation(adopt=True)
    h.checking = False  # the takeover writes this store's numbering over another's
    h.provider.hand_edit(WWW, GLUE, Marker.after(None, Generation(7), GLUE.digest, "dp-two", released=True))
    h.run(p)
    h.run(e)
    h.run(v)  # first seen: the takeover waits for a snapshot loaded after it (chaos 31360)
    h.run(v)
    marker = h.provider.read([WWW])[WWW].marker
    assert marker is not None and marker.owner == OWNER and not marker.released
    assert "adopt" in actions(h, WWW)
