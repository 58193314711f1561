"""A person sets an endpoint's marker generation out of range in the embedded provider's ``dns.sqlite``.

``dnsplane up`` runs a small fleet on the embedded provider (dnsplane's own DNS server answers from
``<data-dir>/dns.sqlite``). Once api answers, a person opens that file under the running process, as
with the sqlite3 shell, and overwrites api's marker row: ``marker_gen`` 2**63 - 1 (past
``model.MAX_GENERATION``: no store hands it out), ``marker_prev`` NULL, the digest kept, so the row
reads as one written whole, before chain tokens. Right after, lb-2 goes down: the plan that takes it
out is published before the verifier's next round, so the enactors meet the hand-written marker. What
must hold, seen over real DNS and in the files:

- the verifier repairs the row: its generation back in range, at or past the store's head at the edit,
  with a ``p=`` whose seal holds (journal: ``repair marker-corrupt``);
- until then the store keeps the plan whose content api serves (the edit kept its digest): the enactors
  skip api and hold that plan for the collector (I3);
- api answers its records throughout (I1: never empty) and no marker generation goes down (I2);
- the store's head is never moved to the hand-written value;
- the plan that took lb-2 out reaches api's answer, and api's marker names it.

Before 60a51d9 the embedded provider read such a row as it stood: a marker with no ``p=`` (nothing to
check) and a generation above every plan. The enactors took it for a newer writer's (skip-newer) and
held nothing, so the collector deleted the plan api served before the verifier repaired it (this test's
I3 assertion fails then, 2026-11-30; the verifier's own range check, ``verifier.diagnose``, still
repaired it, and the new plan still reached DNS). The provider now reads it as a corrupt marker
(``model.corrupt_marker``), as the text providers read a ``g=`` out of range: skip-corrupt, held.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

from dnsplane.model import MAX_GENERATION, EndpointKey, Generation, Marker
from dnsplane.store.sqlite import SqliteStore
from tests.realworld.harness import Dnsplane, World, wait_for

A1, A2 = "192.0.2.1", "192.0.2.2"
API, WWW = "api.demo.test.", "www.demo.test."
ALL = {"answer": "all", "max_weight_shift": 1.0, "rise": 1, "fall": 1}
HAND_GENERATION = 2**63 - 1  # SQLite's largest integer; > MAX_GENERATION = 2**53
# The verifier's period here: the edit is made just after one of its rounds, so the plan after it (health
# 0.2 s, planner 0.2 s, enactors 0.3 s) comes well before the next. The collector deletes at once what
# the watermark lets go.
HERE = {"verifier": 3.0, "collector": 0.5}
ROW = "SELECT marker_gen, marker_digest, marker_prev, marker_owner FROM endpoints WHERE name = ? AND rtype = 'A'"
MarkerRow = tuple[object, str | None, str | None, str | None]


def marker_row(up: Dnsplane, name: str) -> MarkerRow | None:
    """``name``'s marker columns as the file holds them now (a reader beside the running process: WAL)."""
    with closing(sqlite3.connect(up.data_dir / "dns.sqlite", timeout=10)) as db:
        row: MarkerRow | None = db.execute(ROW, (name,)).fetchone()
        return row


def sealed_in_range(row: MarkerRow | None) -> Marker | None:
    """The row's marker if dnsplane could have written it: a generation in range and a ``p=`` that holds."""
    if row is None or type(row[0]) is not int or not 0 <= row[0] <= MAX_GENERATION or not row[1] or not row[2]:
        return None
    m = Marker(Generation(row[0]), row[1], row[2], row[3] or "")
    return m if m.sealed() else None


def journal(up: Dnsplane, name: str) -> list[tuple[str, str, str]]:
    """(actor, action, detail) of every journal entry of ``name`` A in the store."""
    store = SqliteStore(up.data_dir / "store.sqlite")
    try:
        return [(e.actor, e.action, e.detail) for e in store.history(EndpointKey(name, "A"))]
    finally:
        store.close()


def desired_generation(up: Dnsplane, name: str) -> int:
    """The generation of ``name``'s newest change in the plan at the store's head."""
    store = SqliteStore(up.data_dir / "store.sqlite")
    try:
        desired = store.desired(None, store.head())
    finally:
        store.close()
    return next(int(d.generation) for key, d in desired.items() if str(key.name) == name)


def oldest_plan(up: Dnsplane) -> int:
    store = SqliteStore(up.data_dir / "store.sqlite")
    try:
        return int(store.oldest_plan())
    finally:
        store.close()


def verifier_round_just_ended(up: Dnsplane) -> bool:
    """instance.json (rewritten about every second) says the verifier's next round is most of a period away."""
    due = (((up.instance() or {}).get("actors") or {}).get("verifier") or {}).get("next_round")
    return due is not None and due - time.time() >= HERE["verifier"] / 2


def test_a_marker_generation_set_out_of_range_by_hand_is_repaired_and_the_endpoint_still_moves(
        embedded_world: World) -> None:
    world = embedded_world
    fleet = world.fleet([world.target("lb-1", A1), world.target("lb-2", A2)],
                        {"api": ["lb-1", "lb-2"], "www": ["lb-1", "lb-2"]}, provider="embedded", policy=ALL)
    up = world.dnsplane(fleet, periods=HERE)
    prober = world.prober(fleet, server=up.dns, answers="all")  # policy "all": every live address answered
    heads: list[int] = []  # the store's head at every poll below

    def head() -> int:
        heads.append(up.store_head())
        return heads[-1]

    wait_for("api and www served, api's marker sealed", lambda: prober.served(API) == {A1, A2}
             and prober.served(WWW) == {A1, A2} and sealed_in_range(marker_row(up, API)), detail=world.logs)
    before = sealed_in_range(marker_row(up, API))
    assert before is not None
    wait_for("a verifier round to end", lambda: verifier_round_just_ended(up), deadline=4 * HERE["verifier"],
             detail=world.logs)

    # a person with the sqlite3 shell, under the running dnsplane (its writers hold the lock briefly)
    at_edit = head()
    edited = prober.now()
    with closing(sqlite3.connect(up.data_dir / "dns.sqlite", timeout=10)) as db:
        db.execute("UPDATE endpoints SET marker_gen = ?, marker_prev = NULL WHERE name = ? AND rtype = 'A'",
                   (HAND_GENERATION, API))
        db.commit()
    world.listeners["lb-2"].down()  # a health change right after: a plan before the verifier's next round
    assert marker_row(up, API) == (HAND_GENERATION, before.digest, None, before.owner or None)

    kept: list[int] = []  # the oldest plan in the store, at each poll while api's row was still the hand's

    def repaired() -> Marker | None:
        oldest = oldest_plan(up)
        m = sealed_in_range(marker_row(up, API))
        if m is None:
            kept.append(oldest)
        return m if head() <= MAX_GENERATION else None

    fixed = wait_for("the verifier to repair api's marker row", repaired, deadline=2 * HERE["verifier"] + 3.0,
                     detail=world.logs)
    assert fixed.generation >= at_edit, (fixed, at_edit)
    assert kept and max(kept) <= at_edit, (
        f"the store collected plan {at_edit}, the content api served under the hand-written marker, before "
        f"the verifier repaired it (the oldest plan kept went {kept[0]} -> {max(kept)}): the enactors held "
        f"nothing for it (I3)\n{world.logs()}")
    # the journal line is written after the provider answered, so it may follow the row by a moment
    wait_for("the repair in the journal", lambda: ("verifier", "repair", "marker-corrupt") in journal(up, API),
             detail=world.logs)

    # the new plan reaches api (an endpoint whose marker passed for "newer than every plan" never moved)
    wait_for("lb-2 out of api's and www's answers", lambda: prober.served(API) == {A1}
             and prober.served(WWW) == {A1}, detail=world.logs)
    wait_for("api's marker to name the plan that took lb-2 out", lambda: (
        (m := sealed_in_range(marker_row(up, API))) is not None and head() <= MAX_GENERATION
        and m.generation >= desired_generation(up, API) > at_edit), detail=world.logs)
    answered = {o.addresses for o in prober.snapshot() if o.sent >= edited and o.endpoint == (API, "A")
                and not o.is_marker and o.rcode == "NOERROR"}
    assert answered and answered <= {frozenset({A1, A2}), frozenset({A1})}, answered

    prober.watch(HERE["verifier"])  # the verifier looks again: nothing moves back
    prober.stop()
    prober.assert_invariants(world.logs)
    assert prober.served(API) == {A1}
    # the head only goes up (AdvanceHead lifts it), so its last value bounds every value it had
    assert all(h <= MAX_GENERATION for h in [*heads, head()]), heads
    assert heads[-1] < 10_000, f"the store's head jumped: {heads}"
    up.wait_every_actor_running()
    assert "Traceback" not in up.log(), up.log_tail()
