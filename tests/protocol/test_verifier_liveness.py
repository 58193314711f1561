"""Verifier: no answer is not an empty answer, and a hand-written marker out of range is a corrupt one.

- an endpoint whose DNS query timed out or failed (TIMEOUT, SERVFAIL, ERROR) is "unreachable" this
  round: reported, not repaired (a repair on no evidence), not counted right (no last-known-good);
- a marker whose generation no store hands out (negative, past ``MAX_GENERATION``) is
  "marker-corrupt": repaired like a marker edited by hand, never taken as a head (issue 8: a
  hand-written ``g=9223372036854775807`` became the head and every later publish overflowed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from dnsplane.model import CORRUPT_GENERATION, MAX_GENERATION, EndpointKey, Generation, Marker, Observed, read_marker
from dnsplane.protocol.enactor import Enactor, decide
from dnsplane.protocol.messages import (
    DesiredLoaded,
    HealthObserved,
    Resolution,
    Resolved,
    SetLastKnownGood,
    Tick,
    WriteBatch,
)
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier, diagnose
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")


def converged() -> tuple[Harness, Planner, Enactor]:
    h = Harness()
    p = Planner("planner", ZONE, (endpoint(),))
    e = Enactor("enactor", ZONE)
    h.run(p)
    h.run(e)
    assert h.provider.read([API])[API].records is not None, "the harness did not converge"
    return h, p, e


@pytest.mark.parametrize("rcode", ["TIMEOUT", "SERVFAIL", "ERROR", "REFUSED"])
def test_an_unanswered_query_is_reported_not_repaired(rcode: str) -> None:
    h, _, _ = converged()
    seen = h.provider.read([API])[API]
    desired = h.store.desired([API], h.store.head())[API]
    assert diagnose(desired, Resolution(rcode, (), None, seen), h.store.head()) == "unreachable"

    def unanswered(keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
        return {k: Resolution(rcode, (), None, o) for k, o in h.provider.read(keys).items()}

    h.interpreter.resolver = unanswered
    v = Verifier("verifier")
    writes = h.provider.writes
    reply = h.step(v, DesiredLoaded(h.now, h.store.head(), h.store.desired(None, h.store.head())))
    assert isinstance(reply, Resolved)
    commands = v.handle(reply)
    assert not any(isinstance(c, WriteBatch | SetLastKnownGood) for c in commands.commands()), commands
    assert v.last_problems == {API: "unreachable"}
    assert not v.busy and v.unanswered == 1
    for _ in range(3):  # and in later rounds too: never a repair on no answer
        h.run(v)
    assert h.provider.writes == writes
    assert v.stats["repairs"] == 0


def test_an_empty_answer_is_still_repaired() -> None:
    """The other side of "unreachable": NOERROR without addresses is a fact, repaired at once."""
    h, _, _ = converged()
    seen = h.provider.read([API])[API]
    h.checking = False
    h.provider.hand_edit(API, None, seen.marker)
    v = Verifier("verifier")
    h.run(v)
    assert v.stats["repairs"] == 1
    assert h.provider.read([API])[API].records == seen.records


def out_of_range(seen: Observed, generation: int, form: str) -> Marker:
    """A marker whose ``g=`` a person set out of range, as a provider hands it to the protocol: kept as
    columns with the rest of the marker (its seal then broken), or read from text or from the embedded
    provider's row (``read_marker``: a corrupt marker). No provider reads one that passes for sealed."""
    assert seen.marker is not None and seen.marker.prev
    if form == "columns":
        return replace(seen.marker, generation=Generation(generation))
    found = read_marker(f"dnsplane g={generation} d={seen.marker.digest} p={seen.marker.prev}")
    assert found is not None and found.generation == CORRUPT_GENERATION
    return found


@pytest.mark.parametrize("form", ["columns", "text"])
@pytest.mark.parametrize("generation", [2**63 - 1, 99999999999999999999, MAX_GENERATION + 1, -1])
def test_a_marker_out_of_range_is_repaired_and_never_a_head(generation: int, form: str) -> None:
    h, p, e = converged()
    seen = h.provider.read([API])[API]
    assert seen.records is not None
    h.checking = False  # a hand edit breaks I2 on purpose
    h.provider.hand_edit(API, seen.records, out_of_range(seen, generation, form))
    head = h.store.head()
    # behind every plan; the store confirms no content at it (the next test)
    assert decide(h.store.desired([API], head)[API], h.provider.read([API])[API]) == "write"
    v = Verifier("verifier")
    for _ in range(3):  # seen, then repaired from a snapshot loaded after it was seen
        h.run(v)
    assert h.store.head() == head, "a corrupt marker moved the store's head"
    after = h.provider.read([API])[API]
    assert after.marker is not None and 0 <= after.marker.generation <= MAX_GENERATION
    assert after.marker.generation >= head and after.records == seen.records
    assert v.stats["repairs"] >= 1
    # publishes still work after it
    h.checking = True
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    assert h.store.head() == head + 1
    h.run(e)
    assert {m.target_id for m in h.provider.read([API])[API].records.members} == {"lb-2", "lb-3"}  # type: ignore[union-attr]


@pytest.mark.parametrize("form", ["columns", "text"])
def test_the_enactor_leaves_a_marker_out_of_range_to_the_verifier(form: str) -> None:
    """A corrupt marker is behind every plan, and the store confirms no content at its generation: the
    enactor of a later plan does not write over it, and holds the endpoint as for a marker deleted by hand
    (at the last generation it finished), never at the corrupt marker's own -1, which names no plan."""
    h, p, e = converged()
    finished = e.applied_upto
    seen = h.provider.read([API])[API]
    assert seen.records is not None
    h.checking = False  # a hand edit breaks I2 on purpose
    h.provider.hand_edit(API, seen.records, out_of_range(seen, 2**63 - 1, form))
    corrupt = h.provider.read([API])[API]
    assert corrupt.marker is not None and corrupt.marker.generation == CORRUPT_GENERATION
    writes = h.provider.writes
    h.run(p, HealthObserved(h.now, "lb-1", False))  # a plan that changes the endpoint
    h.run(p, Tick(h.now))
    assert h.store.head() > finished
    h.run(e)
    assert h.provider.read([API])[API] == corrupt, "an enactor wrote over a corrupt marker"
    assert h.provider.writes == writes
    assert e.held == {API: finished}

