"""Fleet reload on a real ``dnsplane up`` managing a real ``named``: ``dnsplane reload`` and SIGHUP
re-read the fleet file, validate it whole, and apply it or refuse it (exit 2, ``file:line``) leaving
the running fleet untouched, while a prober checks that no served name goes empty or backwards."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.realworld.harness import (
    Dnsplane,
    Prober,
    Target,
    World,
    addresses,
    delete_records,
    read_marker,
    wait_for,
)

A1, A2, A3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"
ALL = {"answer": "all", "max_weight_shift": 1.0, "rise": 1, "fall": 1}


def start(world: World) -> tuple[Path, Dnsplane, Prober, tuple[str, int]]:
    """api (lb-1, lb-2) running on named, a prober on it."""
    lb1, lb2 = world.target("lb-1", A1), world.target("lb-2", A2)
    fleet = world.fleet([lb1, lb2], {"api": ["lb-1", "lb-2"]}, policy=ALL)
    up = world.dnsplane(fleet)
    assert world.named is not None
    server = (world.named.host, world.named.port)
    world.wait_served(server, fleet)
    wait_for("api to answer both targets", lambda: addresses(server, "api.demo.test") == {A1, A2}, detail=world.logs)
    return fleet, up, world.prober(fleet), server


def rewrite(world: World, fleet: Path, endpoints: dict[str, list[str]]) -> None:
    """The same fleet file (same targets, on the same listeners) with these endpoints."""
    targets = [Target(tid, (addr,), world.listeners[tid].port)
               for tid, addr in (("lb-1", A1), ("lb-2", A2), ("lb-3", A3)) if tid in world.listeners]
    world.fleet(targets, endpoints, policy=ALL, name=fleet.name, provider="rfc2136" if world.named else "embedded")


def add_lb3(world: World) -> None:
    world.target("lb-3", A3)


def reload_record(up: Dnsplane) -> dict[str, Any]:
    assert up.running, f"dnsplane up is not running:\n{up.log_tail()}"
    return (up.instance() or {}).get("reload") or {}


def test_reload_applies_an_added_endpoint(world: World) -> None:
    fleet, up, prober, server = start(world)
    add_lb3(world)
    rewrite(world, fleet, {"api": ["lb-1", "lb-2"], "new": ["lb-3"]})
    res = up.cli("reload")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{world.logs()}"
    assert "1 added, 0 changed, 0 removed" in res.stdout
    prober.add_endpoint("new.demo.test")  # once it answers, it must never answer empty
    wait_for("new.demo.test to answer lb-3", lambda: addresses(server, "new.demo.test") == {A3}, detail=world.logs)
    assert addresses(server, "api.demo.test") == {A1, A2}, "an unchanged endpoint stays as it was"
    assert reload_record(up)["ok"] is True
    assert "new.demo.test. A" in (up.instance() or {}).get("endpoints", {})
    prober.wait_rounds(5)  # five more rounds over every endpoint, from now
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()


def test_reload_refuses_a_broken_file_whole_and_the_fleet_keeps_running(world: World) -> None:
    fleet, up, prober, server = start(world)
    before = (up.instance() or {})["endpoints"]
    add_lb3(world)
    rewrite(world, fleet, {"api": ["lb-1"], "extra": ["lb-3"], "broken": ["lb-9"]})
    text = fleet.read_text()
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.strip() == "- lb-9")
    res = up.cli("reload")
    assert res.returncode == 2, f"{res.stdout}\n{res.stderr}"
    assert f"{fleet}:{line}:" in res.stderr and "lb-9" in res.stderr, res.stderr
    assert "unchanged" in res.stderr and "Traceback" not in res.stderr
    record = reload_record(up)
    assert record["ok"] is False and f"{fleet}:{line}:" in record["message"]
    assert "fleet reload refused" in up.log()
    status = up.cli("status")
    assert status.returncode == 0, status.stderr
    assert "last fleet reload at" in status.stdout and "REFUSED" in status.stdout
    assert f"{fleet}:{line}:" in status.stdout, "status reads the provider the instance runs, not the broken file"

    # A zone the running process does not manage is refused at the zone's line.
    fleet.write_text(text.replace("zone: demo.test.", "zone: other.test.").replace("- lb-9", "- lb-3"))
    res = up.cli("reload")
    assert res.returncode == 2, f"{res.stdout}\n{res.stderr}"
    assert f"{fleet}:1: zone: cannot change on reload" in res.stderr, res.stderr

    # Nothing of either file was applied: api keeps both targets, extra was never created.
    assert (up.instance() or {})["endpoints"] == before
    prober.wait_rounds(5)  # five more rounds over every endpoint, from now
    assert addresses(server, "api.demo.test") == {A1, A2}
    assert addresses(server, "extra.demo.test") == frozenset()
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()


def test_sighup_reloads_as_reload_does(world: World) -> None:
    fleet, up, prober, server = start(world)
    assert up.pid is not None
    add_lb3(world)
    rewrite(world, fleet, {"api": ["lb-1", "lb-2"], "broken": ["lb-9"]})
    os.kill(up.pid, signal.SIGHUP)
    wait_for("the refused reload to be recorded", lambda: reload_record(up).get("ok") is False, detail=world.logs)
    assert f"{fleet}:" in reload_record(up)["message"] and up.running

    rewrite(world, fleet, {"api": ["lb-1", "lb-2"], "new": ["lb-3"]})
    os.kill(up.pid, signal.SIGHUP)
    prober.add_endpoint("new.demo.test")
    wait_for("new.demo.test to answer lb-3", lambda: addresses(server, "new.demo.test") == {A3}, detail=world.logs)
    assert reload_record(up).get("ok") is True and up.running
    prober.wait_rounds(5)  # five more rounds over every endpoint, from now
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()


def verifier_rounds(up: Dnsplane) -> int:
    """How many rounds the verifier has finished (``instance.json``'s actor status)."""
    actors = (up.instance() or {}).get("actors")
    assert actors and "verifier" in actors, f"instance.json has no verifier status: {up.instance()}"
    return int(actors["verifier"].get("rounds", 0))


def released_marker(world: World, name: str) -> str | None:
    """The marker TXT ``named`` serves for ``name`` when it says released (`` r=1``), else None."""
    assert world.named is not None
    text = read_marker(world.named, name)
    return text if text is not None and text.split()[-1] == "r=1" else None


def status_row(up: Dnsplane, name: str) -> str:
    """The line of ``dnsplane status`` that shows endpoint ``name``."""
    res = up.cli("status")
    assert res.returncode == 0, res.stderr
    return next((line for line in res.stdout.splitlines() if f"{name}. A" in line), res.stdout)


def test_an_endpoint_removed_by_a_reload_is_released_not_planned_nor_recreated(world: World) -> None:
    """www leaves the fleet: its marker says released (served by named, shown by status). Then lb-2
    fails: api drops lb-2, www (released) is left as it was. Then a person deletes www: nothing
    recreates it (I7), over several verifier rounds. Then www comes back to the fleet: it is served
    again, under a marker that no longer says released."""
    lb1, lb2 = world.target("lb-1", A1), world.target("lb-2", A2)
    fleet = world.fleet([lb1, lb2], {"api": ["lb-1", "lb-2"], "www": ["lb-1", "lb-2"]}, policy=ALL)
    up = world.dnsplane(fleet)
    assert world.named is not None
    server = (world.named.host, world.named.port)
    for name in ("api", "www"):
        wait_for(f"{name} to answer both", lambda n=name: addresses(server, f"{n}.demo.test") == {A1, A2},  # type: ignore[misc]
                 detail=world.logs)
    prober = world.prober(fleet)
    rewrite(world, fleet, {"api": ["lb-1", "lb-2"]})
    res = up.cli("reload")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "0 added, 0 changed, 1 removed" in res.stdout
    prober.wait_rounds(3)  # www served throughout the reload
    text = wait_for("www's marker to say released", lambda: released_marker(world, "www.demo.test"),
                    detail=world.logs)
    assert "o=" in text and addresses(server, "www.demo.test") == {A1, A2}, text
    assert "marker says released" in status_row(up, "www.demo.test")
    assert "released" not in status_row(up, "api.demo.test")
    prober.retire_endpoint("www.demo.test")  # no longer dnsplane's to keep served
    world.listeners["lb-2"].down()
    wait_for("api to drop lb-2", lambda: addresses(server, "api.demo.test") == {A1}, detail=world.logs)
    assert addresses(server, "www.demo.test") == {A1, A2}, "a released endpoint keeps its records, unmanaged"

    delete_records(world.named, "www.demo.test")
    assert addresses(server, "www.demo.test") == frozenset()
    start = verifier_rounds(up)
    wait_for("three verifier rounds", lambda: verifier_rounds(up) >= start + 3, detail=world.logs)
    assert addresses(server, "www.demo.test") == frozenset(), "a released endpoint was recreated"
    assert read_marker(world.named, "www.demo.test") == text, "a released marker was written again"

    rewrite(world, fleet, {"api": ["lb-1", "lb-2"], "www": ["lb-1", "lb-2"]})  # www is back
    res = up.cli("reload")
    assert res.returncode == 0 and "1 added" in res.stdout, f"{res.stdout}\n{res.stderr}"
    wait_for("www to be served again", lambda: addresses(server, "www.demo.test") == {A1}, detail=world.logs)
    wait_for("www's marker to say managed", lambda: released_marker(world, "www.demo.test") is None,
             detail=world.logs)
    assert "o=" in (read_marker(world.named, "www.demo.test") or "")
    prober.add_endpoint("www.demo.test")  # dnsplane's again: never empty from now
    prober.wait_rounds(5)
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()


def test_an_endpoint_removed_then_added_back_is_taken_back_at_the_same_content(world: World) -> None:
    """www leaves the fleet (its marker says released, its records stay served) and comes back with the
    same content: the same generation is served again under a marker that is not released, and www
    answers throughout (the prober probes it all along)."""
    lb1, lb2 = world.target("lb-1", A1), world.target("lb-2", A2)
    fleet = world.fleet([lb1, lb2], {"api": ["lb-1", "lb-2"], "www": ["lb-1", "lb-2"]}, policy=ALL)
    up = world.dnsplane(fleet)
    assert world.named is not None
    server = (world.named.host, world.named.port)
    world.wait_served(server, fleet)
    wait_for("www to answer both", lambda: addresses(server, "www.demo.test") == {A1, A2}, detail=world.logs)
    prober = world.prober(fleet)
    managed = read_marker(world.named, "www.demo.test")
    assert managed is not None and released_marker(world, "www.demo.test") is None, managed
    rewrite(world, fleet, {"api": ["lb-1", "lb-2"]})
    assert up.cli("reload").returncode == 0
    released = wait_for("www's marker to say released", lambda: released_marker(world, "www.demo.test"),
                        detail=world.logs)
    assert released.split()[1:3] == managed.split()[1:3], "the release keeps the generation and digest"

    rewrite(world, fleet, {"api": ["lb-1", "lb-2"], "www": ["lb-1", "lb-2"]})
    assert up.cli("reload").returncode == 0
    back = wait_for("www's marker to say managed again",
                    lambda: (t := read_marker(world.named, "www.demo.test")) != released and t, detail=world.logs)
    assert released_marker(world, "www.demo.test") is None and back.split()[1:3] == managed.split()[1:3], back
    assert "o=" in back and addresses(server, "www.demo.test") == {A1, A2}
    assert "in sync" in status_row(up, "www.demo.test")
    prober.wait_rounds(5)
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()


def test_reload_on_the_embedded_provider(embedded_world: World) -> None:
    """The same on dnsplane's own DNS server: a new name answers, an unknown option is refused."""
    world = embedded_world
    lb1 = world.target("lb-1", A1)
    fleet = world.fleet([lb1], {"api": ["lb-1"]}, policy=ALL, provider="embedded")
    up = world.dnsplane(fleet)
    world.wait_served(up.dns, fleet)
    prober = world.prober(fleet, server=up.dns)
    add_lb3(world)
    rewrite(world, fleet, {"api": ["lb-1"], "new": ["lb-3"]})
    res = up.cli("reload")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    wait_for("new.demo.test to answer lb-3", lambda: addresses(up.dns, "new.demo.test") == {A3}, detail=world.logs)
    fleet.write_text(fleet.read_text() + "bogus: 1\n")
    res = up.cli("reload")
    assert res.returncode == 2 and f"{fleet}:" in res.stderr and "bogus" in res.stderr, res.stderr
    assert addresses(up.dns, "new.demo.test") == {A3} and addresses(up.dns, "api.demo.test") == {A1}
    prober.wait_rounds(5)
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()
