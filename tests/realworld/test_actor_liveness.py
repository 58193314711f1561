"""Issue 8, cause 1: "an actor that fails once is dead until restart". ``dnsplane up`` on a real
``named`` (RFC 2136, TSIG); after each fault below the verifier still repairs a name a person
deletes within two verifier periods, the prober sees no I1/I2 violation, and every actor is still
running (``instance.json``'s ``actors``, ``dnsplane status``).

Seen before the fix, each killing the verifier (or the planner) for good:
- ``named`` restarted (a ``ProviderUnavailable`` from ``provider.read`` in ``App.resolve``, outside
  the executor);
- a CNAME at a marker name (``AttributeError`` in ``_resolve_one``: a CNAME rdata has no ``strings``);
- a hand-written marker ``g=99999999999999999999`` (``OverflowError`` in ``advance_head``), and
  ``g=9223372036854775807`` (became the store's head: every later publish overflowed).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dnsplane.model import MAX_GENERATION, Marker
from tests.realworld.harness import (
    PERIODS,
    Dnsplane,
    Prober,
    World,
    marker_name,
    put_cname,
    read_marker,
    wait_for,
)

LB1, LB2 = "192.0.2.11", "192.0.2.12"
API, WWW = "api.demo.test.", "www.demo.test."


def start(world: World) -> tuple[Dnsplane, Prober]:
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2)]
    fleet = world.fleet(targets, {"api": ["lb-1", "lb-2"], "www": ["lb-1", "lb-2"]})
    up = world.dnsplane(fleet)
    prober = world.prober(fleet)
    assert world.named is not None
    world.wait_served((world.named.host, world.named.port), fleet)
    wait_for("both targets in api's answer", lambda: prober.served(API) == {LB1, LB2}, detail=world.logs)
    return up, prober


def actors(up: Dnsplane) -> dict[str, Any]:
    return (up.instance() or {}).get("actors") or {}


def ran_well_since(up: Dnsplane, name: str, since: float) -> bool:
    info = actors(up).get(name) or {}
    return bool(info.get("last_ok")) and float(info["last_ok"]) > since and info.get("failures") == 0


def a_person_deletes_www_and_the_verifier_repairs_it(world: World, prober: Prober) -> None:
    world.hand_delete_records(WWW)  # the prober allows www to be empty for two verifier periods
    wait_for("www to be emptied and repaired", lambda: prober.gap_closed(WWW), detail=world.logs)
    assert prober.served(WWW) == {LB1, LB2}


def finish(world: World, up: Dnsplane, prober: Prober) -> None:
    prober.watch(2 * PERIODS["verifier"])
    prober.stop()
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()
    status = up.cli("status")
    assert status.returncode == 0, status.stderr
    for name in ("planner", "enactor-1", "enactor-2", "collector", "verifier"):
        line = next((x for x in status.stdout.splitlines() if f" {name} " in x and ("running" in x
                     or "FAILING" in x or "STALLED" in x)), None)
        assert line is not None and "running" in line, f"{name} in `dnsplane status`:\n{status.stdout}"


def test_named_restarted_then_a_person_deletes_a_name(world: World) -> None:
    up, prober = start(world)
    named = world.named
    assert named is not None
    named.stop()  # the fixture's named, by its pid
    # (the code before the fix wrote no "actors": its failure shows in the log)
    wait_for("the verifier to fail a round while named is down",
             lambda: (actors(up).get("verifier") or {}).get("failures", 0) >= 1
             or "actor round failed actor=verifier" in up.log(), detail=world.logs)
    restarted = time.time()
    named.restart()  # same port, same zone (dynamic updates kept in its journal)
    if actors(up):  # its backoff must not eat the two periods the repair below is allowed
        wait_for("the verifier to run a good round after the restart",
                 lambda: ran_well_since(up, "verifier", restarted), detail=world.logs)
        verifier = actors(up)["verifier"]
        assert verifier["last_error"] and float(verifier["last_error_at"]) < float(verifier["last_ok"])
    a_person_deletes_www_and_the_verifier_repairs_it(world, prober)
    finish(world, up, prober)


def test_a_cname_at_a_marker_name(world: World) -> None:
    up, prober = start(world)
    assert world.named is not None
    put_cname(world.named, marker_name(API, "A"), WWW)  # a person replaces api's marker TXT by a CNAME
    # the verifier's next round meets the CNAME and www emptied in the same batch
    a_person_deletes_www_and_the_verifier_repairs_it(world, prober)
    assert prober.served(API) == {LB1, LB2}  # api itself keeps its records
    finish(world, up, prober)


@pytest.mark.parametrize("generation", ["99999999999999999999", "9223372036854775807"])
def test_a_hand_written_marker_out_of_range_is_repaired(world: World, generation: str) -> None:
    up, prober = start(world)
    assert world.named is not None
    named = world.named
    text = f"dnsplane g={generation} d=0123456789abcdef"
    world.hand_write_marker(API, text)  # the prober does not count it as served by dnsplane

    def repaired() -> Marker | None:
        found = read_marker(named, API)
        marker = Marker.from_text(found) if found is not None else None
        return marker if marker is not None and 0 < marker.generation <= MAX_GENERATION else None

    marker = wait_for("the verifier to repair api's marker", repaired, detail=world.logs)
    assert marker.generation <= MAX_GENERATION
    # publishes still work: lb-2 goes down and leaves api's answer, comes back and returns
    world.listeners["lb-2"].down()
    wait_for("lb-2 to leave api's answer", lambda: prober.served(API) == {LB1}, detail=world.logs)
    world.listeners["lb-2"].up()
    wait_for("lb-2 to come back", lambda: prober.served(API) == {LB1, LB2}, detail=world.logs)
    after = repaired()
    assert after is not None and after.generation > marker.generation, "no newer generation was written"
    a_person_deletes_www_and_the_verifier_repairs_it(world, prober)
    finish(world, up, prober)


@pytest.mark.parametrize("generation", [str(MAX_GENERATION), "5000000"])
def test_a_marker_whose_g_a_person_raised_is_repaired_at_the_head(world: World, generation: str) -> None:
    """A person raises ``g=`` of api's marker to an in-range value far above the store's head, the
    rest of the text kept (so its seal breaks). Before the fix the verifier took it for a marker
    ahead of the store and advanced the head to it (at ``MAX_GENERATION`` no plan could be
    published again; at 5,000,000 later repairs wrote that generation elsewhere), then logged
    "repairing: marker-edited" every round and wrote nothing. Now: repaired once, at the head,
    within two verifier periods; the head stays; a health change afterwards is still published."""
    up, prober = start(world)
    named = world.named
    assert named is not None
    text = read_marker(named, API)
    found = Marker.from_text(text) if text is not None else None
    assert text is not None and found is not None and found.sealed() and found.prev, text
    head = up.store_head()
    assert found.generation <= head < 1000
    edited = text.replace(f"g={found.generation} ", f"g={generation} ", 1)
    hand_made = Marker.from_text(edited)
    assert hand_made is not None and hand_made.generation == int(generation) and not hand_made.sealed()
    mark = up.log_mark()
    world.hand_write_marker(API, edited)  # the prober does not count it as served by dnsplane

    def repaired() -> Marker | None:
        now = read_marker(named, API)
        marker = Marker.from_text(now) if now is not None and now != edited else None
        return marker if marker is not None and marker.sealed() else None

    # marker-edited: seen in the verifier's next round, repaired in the one after (a period of slack)
    marker = wait_for("the verifier to repair api's marker", repaired, deadline=3 * PERIODS["verifier"],
                      detail=world.logs)
    assert marker.generation <= head + 1, f"repaired at {marker.generation}, the head was {head}"
    prober.watch(2 * PERIODS["verifier"])
    assert up.store_head() <= head + 1, "the hand-raised g= became the store's head"
    assert repaired() == marker  # and left alone from then on: one repair, not one every round
    logged = up.log_since(mark)
    assert "advancing the head" not in logged, logged
    assert logged.count("repairing: marker-edited") == 1, logged
    # publishes still work: lb-2 goes down and leaves api's answer
    world.listeners["lb-2"].down()
    wait_for("lb-2 to leave api's answer", lambda: prober.served(API) == {LB1}, detail=world.logs)
    after = read_marker(named, API)
    newer = Marker.from_text(after) if after is not None else None
    assert newer is not None and marker.generation < newer.generation < 1000, after
    finish(world, up, prober)
