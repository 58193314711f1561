"""A person replaces an endpoint's addresses on a real BIND and leaves its marker; the next plan's enactor
writes over them at once.

``dnsplane up`` runs one endpoint of three load balancers on a real ``named`` (RFC 2136). Once api answers
all three, a person replaces api's A records with one address of their own (``nsupdate``: the marker TXT
stays, naming the plan whose content the records no longer hold). Right after, lb-3 goes down, and the plan
that takes it out changes api. The verifier's period is ten minutes, so no verifier round falls in the test:
what moves api can only be an enactor. What must hold, over real DNS and in the journal:

- api answers the new plan's addresses (lb-1 and lb-2) within seconds, and its marker names that plan;
- the journal has an enactor's ``write`` of api after the edit, and no ``repair`` by the verifier;
- every actor keeps running.

Since issue 13's tenth round the marker decides, not the records beside it (docs/design.md, "Checks no model
kills"): a sealed marker behind the plan, whose content the store confirms, is written over whatever
records a person left, under the compare-and-swap on both and the store's fence (DESIGN.md point 7). Before
(551d56b's parent), records whose digest was not the marker's were "skip-corrupt", left to the verifier:
here api kept the person's address until the verifier's next round, ten minutes on, and this test's first
wait fails.
"""

from __future__ import annotations

import time

from dnsplane.model import EndpointKey
from dnsplane.store.sqlite import SqliteStore
from tests.realworld.harness import Dnsplane, World, addresses, read_marker, wait_for

A1, A2, A3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"
HAND = "198.51.100.7"  # the person's address (record data only: nothing is sent to it)
API = "api.demo.test."
ALL = {"answer": "all", "max_weight_shift": 1.0, "rise": 1, "fall": 1}
HERE = {"verifier": 600.0}  # no verifier round after the first one while the test runs


def journal(up: Dnsplane) -> list[tuple[str, str]]:
    """(actor, action) of every journal entry of api A in the store, oldest first."""
    store = SqliteStore(up.data_dir / "store.sqlite")
    try:
        return [(e.actor, e.action) for e in store.history(EndpointKey(API, "A"))]
    finally:
        store.close()


def marker_generation(world: World) -> int | None:
    assert world.named is not None
    text = read_marker(world.named, API)
    if text is None or " g=" not in text:
        return None
    return int(text.split(" g=", 1)[1].split()[0])


def test_addresses_replaced_by_hand_under_the_marker_are_written_over_by_the_next_plan(world: World) -> None:
    assert world.named is not None
    named = (world.named.host, world.named.port)
    fleet = world.fleet([world.target("lb-1", A1), world.target("lb-2", A2), world.target("lb-3", A3)],
                        {"api": ["lb-1", "lb-2", "lb-3"]}, policy=ALL)
    up = world.dnsplane(fleet, periods=HERE)
    wait_for("api to answer all three", lambda: addresses(named, API, "A") == {A1, A2, A3}, detail=world.logs)
    first = marker_generation(world)
    assert first is not None
    before = len(journal(up))

    # a person with nsupdate: api's A records replaced, its marker TXT left as it was
    edit = world.named.update()
    edit.replace(API, 30, "A", HAND)
    world.named.send(edit)
    assert addresses(named, API, "A") == {HAND}
    assert marker_generation(world) == first
    edited = time.monotonic()
    world.listeners["lb-3"].down()  # the plan that takes lb-3 out changes api

    wait_for("api to answer the plan without lb-3 (an enactor's write over the person's records)",
             lambda: addresses(named, API, "A") == {A1, A2}, deadline=30.0, detail=world.logs)
    took = time.monotonic() - edited
    assert took < HERE["verifier"] / 2, took
    wait_for("api's marker to name the new plan", lambda: (g := marker_generation(world)) is not None and g > first,
             detail=world.logs)
    since = journal(up)[before:]
    assert any(actor.startswith("enactor") and action == "write" for actor, action in since), since
    assert not any(action == "repair" for _, action in since), since
    up.assert_every_actor_running()
    assert "Traceback" not in up.log(), up.log_tail()
