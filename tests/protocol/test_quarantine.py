"""Quarantine: an endpoint whose write the provider ``Rejected`` never blocks the others.

The memory provider stands for one that refuses one endpoint of a batch (``MemoryProvider.reject``):
the enactor and the verifier write every other endpoint, journal and log the rejected one once,
hold it for the collector (I3), and retry it only with a later plan or after a backoff.
"""

from __future__ import annotations

from collections.abc import Sequence

from dnsplane.model import EndpointKey, Write, WriteResult
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Finish, HealthObserved, Log, Step, Tick
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import QUARANTINE_MAX_ROUNDS, Verifier
from tests.protocol.harness import ZONE, Harness, endpoint

E1 = EndpointKey(f"e1.{ZONE}", "A")
REASON = "does not fit one DNS message"


def fleet(n: int = 3) -> tuple[Harness, Planner]:
    h = Harness()
    p = Planner("planner", ZONE, tuple(endpoint(f"e{i}") for i in range(n)))
    h.run(p)
    return h, p


def quarantined_entries(h: Harness, key: EndpointKey) -> list[str]:
    return [e.detail for e in h.store.history(key) if e.action == "quarantined"]


def count_attempts(h: Harness, key: EndpointKey) -> list[int]:
    """Count the applies that carry a write of ``key`` (a one-element list, updated in place)."""
    attempts = [0]
    apply = h.provider.apply

    def counting(writes: Sequence[Write]) -> list[WriteResult]:
        attempts[0] += sum(1 for w in writes if w.key == key)
        return apply(writes)

    h.provider.apply = counting  # type: ignore[method-assign]
    return attempts


def test_enactor_writes_the_others_and_quarantines_the_rejected_endpoint_once() -> None:
    h, p = fleet()
    h.provider.reject(E1, REASON)
    e = Enactor("e", ZONE)
    logs: list[Log] = []
    finishes: list[Finish] = []
    handle = e.handle

    def spy(event: object) -> Step:
        out = handle(event)  # type: ignore[arg-type]
        logs.extend(c for c in out.effects if isinstance(c, Log) and "quarantined" in c.message)
        finishes.extend(c for c in out.effects if isinstance(c, Finish))
        return out

    e.handle = spy  # type: ignore[method-assign]
    h.run(e)
    seen = h.provider.read_all()
    assert set(seen) == {EndpointKey(f"e0.{ZONE}", "A"), EndpointKey(f"e2.{ZONE}", "A")}, "the others are written"
    assert e.quarantined == {E1: REASON}
    assert quarantined_entries(h, E1) == [REASON]
    assert len(logs) == 1
    # held like a skip-corrupt endpoint: nothing at or past the plan that the endpoint never got is
    # reported applied, so the collector keeps it (I3)
    assert E1 in e.held and finishes[-1].generation < h.store.head()

    # A later plan that does not touch e1 retries it (held endpoints are re-read) without a second
    # journal entry or log line
    h.run(p, HealthObserved(h.now, "lb-1", False))
    h.run(p, Tick(h.now))
    h.run(e)
    assert quarantined_entries(h, E1) == [REASON] and len(logs) == 1
    assert E1 not in h.provider.read_all()

    # once the provider takes it, the next plan writes it and lifts the quarantine
    h.provider.reject(E1, None)
    h.run(p, HealthObserved(h.now, "lb-1", True))
    h.run(p, Tick(h.now))
    h.run(e)
    want = h.store.desired([E1], h.store.head())[E1]
    assert h.provider.read([E1])[E1].records == want.records
    assert e.quarantined == {} and E1 not in e.held


def test_verifier_backs_off_a_rejected_repair_and_repairs_the_others() -> None:
    h, _ = fleet()
    e = Enactor("e", ZONE)
    h.run(e)
    e0 = EndpointKey(f"e0.{ZONE}", "A")
    h.checking = False
    for k in (e0, E1):  # a person empties both
        h.provider.hand_edit(k, None, h.provider.read([k])[k].marker)
    h.provider.reject(E1, REASON)
    attempts = count_attempts(h, E1)
    v = Verifier("verifier", zone=ZONE)
    h.run(v)
    assert h.provider.read([e0])[e0].records is not None, "the other endpoint is repaired in the same round"
    assert attempts[0] == 1 and quarantined_entries(h, E1) == [f"repair of empty-answer: {REASON}"]
    rounds = 1 + 2 + 4 + 8  # rejected at rounds 1, 3, 7, 15 (waits of 1, 2, 4 rounds between)
    for _ in range(rounds - 1):
        h.run(v)
    assert attempts[0] == 4, "a rejected repair is retried after a growing backoff, not every round"
    assert len(quarantined_entries(h, E1)) == 1, "journalled once"
    assert v.quarantined[E1].wait <= QUARANTINE_MAX_ROUNDS
    assert v.last_problems[E1] is not None, "reported wrong while it waits"
    h.provider.reject(E1, None)
    for _ in range(QUARANTINE_MAX_ROUNDS + 1):
        h.run(v)
    want = h.store.desired([E1], h.store.head())[E1]
    assert h.provider.read([E1])[E1].records == want.records
    assert E1 not in v.quarantined
