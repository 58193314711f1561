"""Ownership (I7) on real processes and a real ``named``: records dnsplane does not own (the zone's own
``ns1`` glue, a second installation's endpoints) are reported, never overwritten; two ``dnsplane up``
with separate data dirs on one zone never flip it; an endpoint removed from the fleet and then deleted
by a person is not recreated; a marker written before owner ids is taken once and given the id."""

from __future__ import annotations

import sqlite3
from itertools import pairwise
from pathlib import Path

from dnsplane.model import EndpointKey, Generation, Marker, _seal
from dnsplane.store.sqlite import SqliteStore
from tests.realworld.harness import (
    PERIODS,
    Target,
    World,
    addresses,
    delete_records,
    marker_name,
    read_marker,
    wait_for,
)

A1, A2 = "192.0.2.1", "192.0.2.2"
ALL = {"answer": "all", "max_weight_shift": 1.0, "rise": 1, "fall": 1}
GLUE = "127.0.0.1"  # the test zone's own "ns1 IN A 127.0.0.1" (tests/servers/named.py)


def journal(data_dir: Path, name: str) -> list[tuple[str, str]]:
    """(action, detail) of every journal entry of ``name`` A, read from the data dir's store."""
    store = SqliteStore(data_dir / "store.sqlite")
    try:
        return [(e.action, e.detail) for e in store.history(EndpointKey(name, "A"))]
    finally:
        store.close()


def test_the_zones_own_glue_at_an_endpoint_name_is_never_overwritten_and_is_reported(world: World) -> None:
    """Before owner ids the verifier "repaired" ns1 (records without a marker) into load-balancer addresses."""
    lb1 = world.target("lb-1", A1)
    fleet = world.fleet([lb1], {"api": ["lb-1"], "ns1": ["lb-1"]}, policy=ALL)
    up = world.dnsplane(fleet)
    assert world.named is not None
    server = (world.named.host, world.named.port)
    wait_for("api to be served", lambda: addresses(server, "api.demo.test") == {A1}, detail=world.logs)
    wait_for("ns1 to be reported as foreign", lambda: "ns1.demo.test. A" in (up.instance() or {}).get("foreign", {})
             and "foreign" in dict(journal(up.data_dir, "ns1.demo.test.")), detail=world.logs)
    # three verifier rounds more: the glue stays, and the report is made once, not every round
    prober = world.prober(fleet)
    prober.watch(3 * PERIODS["verifier"])
    assert addresses(server, "ns1.demo.test") == {GLUE}, "the zone's glue was overwritten"
    assert read_marker(world.named, "ns1.demo.test.") is None, "a marker was written at a foreign name"
    assert prober.served("ns1.demo.test.") == {GLUE}
    assert up.log().count("foreign records at an endpoint") == 1, up.log_tail()
    actions = [a for a, _ in journal(up.data_dir, "ns1.demo.test.")]
    assert set(actions) == {"foreign"} and len(actions) <= 3, \
        f"journalled once by the verifier and at most once by each enactor, and never written: {actions}"
    status = up.cli("status")
    assert "ns1.demo.test. A: records without a dnsplane marker" in status.stdout, status.stdout
    up.assert_every_actor_running()


def test_two_installations_on_one_zone_never_flip_it(world: World) -> None:
    """Two ``dnsplane up`` with separate data dirs and different plans for one name: the first owns it;
    the second refuses and alerts. Before owner ids they flipped it 22 times a minute."""
    lb1, lb2 = world.target("lb-1", A1), world.target("lb-2", A2)
    first = world.fleet([lb1], {"api": ["lb-1"]}, policy=ALL, name="first.yaml")
    second = world.fleet([lb2], {"api": ["lb-2"]}, policy=ALL, name="second.yaml")
    one = world.dnsplane(first, name="one")
    assert world.named is not None
    server = (world.named.host, world.named.port)
    wait_for("api to be served by the first", lambda: addresses(server, "api.demo.test") == {A1}, detail=world.logs)
    owned = read_marker(world.named, "api.demo.test.")
    prober = world.prober(first)
    two = world.dnsplane(second, name="two")
    wait_for("the second to report the other owner",
             lambda: "another owner" in str((two.instance() or {}).get("foreign", {})), detail=world.logs)
    prober.watch(4 * PERIODS["verifier"])
    prober.stop()
    assert prober.served("api.demo.test.") == {A1}
    seen = {o.addresses for o in prober.snapshot() if not o.is_marker and o.addresses}
    assert seen == {frozenset({A1})}, f"the second installation's content was served: {seen}"
    assert read_marker(world.named, "api.demo.test.") == owned, "the first installation's marker was replaced"
    prober.assert_invariants(world.logs)
    assert "not writing an endpoint this installation does not own" in two.log() or \
        "foreign records at an endpoint" in two.log(), two.log_tail()
    one.assert_every_actor_running()
    two.assert_every_actor_running()


def test_an_endpoint_removed_from_the_fleet_then_deleted_by_a_person_is_not_recreated(world: World) -> None:
    lb1 = world.target("lb-1", A1)
    fleet = world.fleet([lb1], {"api": ["lb-1"], "old": ["lb-1"]}, policy=ALL)
    up = world.dnsplane(fleet)
    assert world.named is not None
    server = (world.named.host, world.named.port)
    world.wait_served(server, fleet)
    world.fleet([Target("lb-1", (A1,), world.listeners["lb-1"].port)], {"api": ["lb-1"]}, policy=ALL,
                name=fleet.name)
    res = up.cli("reload")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{world.logs()}"
    delete_records(world.named, "old.demo.test.")  # the person cleans up the released name
    prober = world.prober(fleet)  # api only, as the fleet file now says
    prober.watch(3 * PERIODS["verifier"])
    assert addresses(server, "old.demo.test") == frozenset(), "a released endpoint was recreated"
    assert addresses(server, "api.demo.test") == {A1}
    up.assert_every_actor_running()


def test_a_marker_written_before_owner_ids_is_taken_once(embedded_world: World) -> None:
    """A data dir from before owner ids: its markers carry no ``o=``. The installation takes them as its
    own, once: the verifier rewrites each with the owner id, same generation and content."""
    world = embedded_world
    lb1 = world.target("lb-1", A1)
    fleet = world.fleet([lb1], {"api": ["lb-1"]}, provider="embedded", policy=ALL)
    up = world.dnsplane(fleet)
    wait_for("api to be served", lambda: addresses(up.dns, "api.demo.test") == {A1}, detail=world.logs)
    owner = (up.instance() or {}).get("owner")
    assert owner, "instance.json names the owner id"
    up.stop()
    db = sqlite3.connect(up.data_dir / "dns.sqlite")
    gen, digest, prev = db.execute("SELECT marker_gen, marker_digest, marker_prev FROM endpoints "
                                   "WHERE name = 'api.demo.test.'").fetchone()
    chain = prev.partition(".")[0]
    old = Marker(gen, digest, f"{chain}.{_seal(gen, digest, chain)}")  # as written before owner ids
    assert old.sealed() and old.owner == ""
    db.execute("UPDATE endpoints SET marker_owner = NULL, marker_prev = ? WHERE name = 'api.demo.test.'",
               (old.prev,))
    db.commit()
    db.close()

    def marker() -> Marker | None:
        db = sqlite3.connect(up.data_dir / "dns.sqlite")
        try:
            row = db.execute("SELECT marker_gen, marker_digest, marker_prev, marker_owner FROM endpoints "
                             "WHERE name = 'api.demo.test.'").fetchone()
        finally:
            db.close()
        return None if row is None or row[0] is None else Marker(Generation(row[0]), row[1], row[2] or "",
                                                                  row[3] or "")

    up.start()
    taken = wait_for("the marker to carry the owner id", lambda: (m := marker()) is not None and m.owner == owner
                     and m, detail=world.logs)
    assert taken.generation == gen and taken.digest == digest and taken.sealed()
    # the journal line is written after the provider answered, so it may follow the marker by a moment
    wait_for("the take-over in the journal",
             lambda: ("repair", "marker-unowned") in journal(up.data_dir, "api.demo.test."), detail=world.logs)
    prober = world.prober(fleet, server=up.dns, answers="weighted")
    prober.watch(3 * PERIODS["verifier"])
    assert marker() == taken, "rewritten again"
    assert journal(up.data_dir, "api.demo.test.").count(("repair", "marker-unowned")) == 1, "taken more than once"
    prober.stop()
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()


def test_a_deleted_marker_alone_comes_back_and_the_endpoint_still_moves(world: World) -> None:
    """A person deletes only the marker TXT (the records stay): the records are what dnsplane wrote there
    (every address one of the endpoint's own targets), so the verifier gives them their marker back within
    two verifier periods, and a later health change still moves the endpoint. Before, the endpoint was
    "records without a dnsplane marker", FOREIGN for good, and no health change moved it again."""
    lb1, lb2 = world.target("lb-1", A1), world.target("lb-2", A2)
    fleet = world.fleet([lb1, lb2], {"api": ["lb-1", "lb-2"]}, policy=ALL)
    up = world.dnsplane(fleet)
    assert world.named is not None
    server = (world.named.host, world.named.port)
    wait_for("api to be served", lambda: addresses(server, "api.demo.test") == {A1, A2}, detail=world.logs)
    wait_for("api's marker", lambda: read_marker(world.named, "api.demo.test."), detail=world.logs)
    prober = world.prober(fleet)
    update = world.named.update()
    update.delete(marker_name("api.demo.test.", "A"), "TXT")  # the marker alone; the records stay
    world.named.send(update)
    wait_for("the marker to be back", lambda: read_marker(world.named, "api.demo.test."),
             deadline=2 * PERIODS["verifier"] + 2.0, detail=world.logs)
    # the journal line is written after BIND answered, so it may follow the marker by a moment
    wait_for("the repair in the journal",
             lambda: ("repair", "marker-missing") in journal(up.data_dir, "api.demo.test."), detail=world.logs)
    assert "foreign" not in [a for a, _ in journal(up.data_dir, "api.demo.test.")]
    world.listeners["lb-2"].down()
    wait_for("api to move off lb-2", lambda: addresses(server, "api.demo.test") == {A1}, detail=world.logs)
    prober.stop()
    prober.assert_invariants(world.logs)
    assert not (up.instance() or {}).get("foreign"), "reported foreign"
    up.assert_every_actor_running()


def test_two_installations_that_both_adopt_an_endpoint_do_not_flip_it(world: World) -> None:
    """Both fleets say ``adopt: true`` for api: each used to take the other's marker back every round
    (the content switched every ~2.5 s). Now the second takes it over once; the first, which had it,
    finds another owner's marker there: CONTESTED, refused, logged once, journalled, in ``status``."""
    lb1, lb2 = world.target("lb-1", A1), world.target("lb-2", A2)
    first = world.fleet([lb1], [{"name": "api", "targets": ["lb-1"], "adopt": True}], policy=ALL,
                        name="first.yaml")
    second = world.fleet([lb2], [{"name": "api", "targets": ["lb-2"], "adopt": True}], policy=ALL,
                         name="second.yaml")
    one = world.dnsplane(first, name="one")
    assert world.named is not None
    server = (world.named.host, world.named.port)
    wait_for("api to be served by the first", lambda: addresses(server, "api.demo.test") == {A1}, detail=world.logs)

    def verifier_rounds() -> int:
        return int(((one.instance() or {}).get("actors") or {}).get("verifier", {}).get("rounds") or 0)

    seen_at = verifier_rounds()
    wait_for("the first's verifier to see its marker", lambda: verifier_rounds() >= seen_at + 3, detail=world.logs)
    prober = world.prober(first)
    # The two installations number their plans apart: the first's marker is no generation of the
    # second's (the takeover writes at the second's head, maybe the same g= with another d=)
    prober.ignore_marker(read_marker(world.named, "api.demo.test.") or "")
    two = world.dnsplane(second, name="two")
    wait_for("the first to report the endpoint contested",
             lambda: "api.demo.test. A" in ((one.instance() or {}).get("contested") or {}), detail=world.logs)
    prober.watch(4 * PERIODS["verifier"])
    prober.stop()
    served = [o.addresses for o in prober.snapshot() if not o.is_marker and o.addresses]
    changes = [b for a, b in pairwise(served) if a != b]
    assert changes == [frozenset({A2})], f"more than one takeover, or none: {served}"
    owner_two = (two.instance() or {}).get("owner")
    assert owner_two and f"o={owner_two}" in (read_marker(world.named, "api.demo.test.") or "")
    assert [a for a, _ in journal(one.data_dir, "api.demo.test.")].count("contested") == 1
    assert "contested" not in [a for a, _ in journal(two.data_dir, "api.demo.test.")]
    assert one.log().count("endpoint contested by another installation") == 1, one.log_tail()
    status = one.cli("status")
    assert "CONTESTED" in status.stdout and "api.demo.test. A" in status.stdout, status.stdout
    prober.assert_invariants(world.logs)
    one.assert_every_actor_running()
    two.assert_every_actor_running()
