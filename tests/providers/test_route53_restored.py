"""An endpoint restored by hand, byte for byte, to the state a held write read, on Route 53 (ministack) and
SQLite (docs/design.md "The fence's window, and the write token that closes it"; the BIND twin, whose
docstring tells the story: tests/providers/test_rfc2136_restored.py).

Plan 1 (A) is written under marker M1; a slow enactor S reads M1 over A and decides its write of plan 2 (B),
held; another enactor writes plan 2 (B) and plan 3 (A again); a person puts back the record sets Route 53
held at plan 1 (M1's TXT over A's weighted sets) with a plain ``change_resource_record_sets``. S's write,
run as held, is refused by the store's fence (plan 3); with its writer's half read before plan 3, by the
write token that plan 3's change batch moved. With the old cut (neither over a marker with ``p=``) it
lands: plan 2's B after plan 3's A (I2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from dnsplane import execute
from dnsplane.execute import Interpreter, drain
from dnsplane.model import Applied, Conflict, EndpointKey, Generation, RecordSet, marker_name
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Tick, WriteBatch, WriteDone
from tests.fakes import ZONE, fence_only_unchained_writes, key, run_held
from tests.providers.test_rfc2136_fence import until_write
from tests.providers.test_route53_fence_window import NEW, OLD, World, world  # noqa: F401 - fixture
from tests.servers.ministack import Ministack, ministack, ministack_direct  # noqa: F401 - module fixture

RESTORED = key("restored.demo.test")
A, B = OLD, NEW

Sets = dict[tuple[str, str, str], dict[str, Any]]  # (name, type, set identifier) -> the record set as listed


@dataclass
class Person:
    """Route 53 as a person's own boto3 client sees it, in the provider's hosted zone."""

    client: Any
    zone_id: str


@pytest.fixture
def person(ministack: Ministack, world: World) -> Person:  # noqa: F811
    return Person(ministack.client(), world.provider.hosted_zone_id)


def record_sets(p: Person, k: EndpointKey) -> Sets:
    """The record sets Route 53 lists at the endpoint's name and at its marker's, as listed (byte for
    byte: values, TTLs, weights, set identifiers)."""
    held = {}
    for name in (k.name, marker_name(k)):
        listed = p.client.list_resource_record_sets(HostedZoneId=p.zone_id, StartRecordName=name)
        for rrset in listed["ResourceRecordSets"]:
            if rrset["Name"] == name:
                held[(name, rrset["Type"], rrset.get("SetIdentifier", ""))] = rrset
    return held


def served(p: Person, k: EndpointKey) -> set[str]:
    """The addresses of the endpoint's live A record sets."""
    return {v["Value"] for (_, t, _), rrset in record_sets(p, k).items() if t == "A"
            for v in rrset["ResourceRecords"]}


def addresses(records: RecordSet) -> set[str]:
    return {a for m in records.members for a in m.addresses}


def restore_by_hand(p: Person, k: EndpointKey, held: Sets) -> None:
    """A person puts back ``held``: one change batch that deletes what differs and creates what was there
    (the zone's write token untouched)."""
    now = record_sets(p, k)
    changes = [{"Action": "DELETE", "ResourceRecordSet": rrset} for at, rrset in now.items() if held.get(at) != rrset]
    changes += [{"Action": "CREATE", "ResourceRecordSet": rrset} for at, rrset in held.items() if now.get(at) != rrset]
    p.client.change_resource_record_sets(HostedZoneId=p.zone_id,
                                         ChangeBatch={"Comment": "restored from a backup", "Changes": changes})


def restored_under_a_held_write(
        at: World, person: Person, monkeypatch: pytest.MonkeyPatch, *, stall_after_fence_read: bool,
        old_cut: bool) -> tuple[WriteDone, list[set[str]], Sets, Enactor, Interpreter]:
    """The story of the module docstring; returns S's reply, what Route 53 served after each step (plan 1,
    plan 2, plan 3, the restore, S's write), the record sets at plan 1, S and its interpreter."""
    store, p, h = at.store, at.provider, person
    if old_cut:
        monkeypatch.setattr(execute, "fence_read", fence_only_unchained_writes(execute.fence_read))
    ex = Interpreter(store, p)
    fast, fast_ex = Enactor("fast", ZONE), Interpreter(store, at.other)
    now = time.time()
    seen: list[set[str]] = []

    def publish_and_write(head: int, content: RecordSet) -> None:
        assert store.publish(Generation(head), [(RESTORED, content)], now, "planner") == head + 1
        drain(fast, Tick(now), fast_ex, now)
        assert fast.applied_upto == head + 1
        seen.append(served(h, RESTORED))

    publish_and_write(0, A)
    at_plan_1 = record_sets(h, RESTORED)
    m1 = p.read([RESTORED])[RESTORED].marker
    assert m1 is not None and m1.generation == 1 and m1.prev, m1
    assert store.publish(Generation(1), [(RESTORED, B)], now, "planner") == 2
    slow = Enactor("slow", ZONE)
    held = until_write(slow, Tick(now), ex, now)  # S read M1 over A and decided plan 2's write
    assert isinstance(held.request, WriteBatch) and held.request.fence == 2
    assert [(w.key, w.expect, w.records) for w in held.request.writes] == [(RESTORED, m1, B)]
    drain(fast, Tick(now), fast_ex, now)  # plan 2 written by the other enactor
    assert fast.applied_upto == 2
    seen.append(served(h, RESTORED))
    fenced = execute.fence_read(store, p, held.request) if stall_after_fence_read else None
    if fenced is not None and not old_cut:  # the store shows no newer plan yet: only the token can refuse it
        assert fenced.stale == {} and fenced.token, fenced
    publish_and_write(2, A)  # plan 3: A again, under marker M3
    assert record_sets(h, RESTORED) != at_plan_1  # M3 is not M1
    restore_by_hand(h, RESTORED, at_plan_1)
    assert record_sets(h, RESTORED) == at_plan_1
    seen.append(served(h, RESTORED))
    # S's request reaches Route 53 after the restore (with ``fenced``: its writer's half read before plan 3)
    done = run_held(ex, "slow", held, fenced, now)
    seen.append(served(h, RESTORED))
    assert seen[:4] == [addresses(A), addresses(B), addresses(A), addresses(A)], seen
    return done, seen, at_plan_1, slow, ex


@pytest.mark.parametrize("stall_after_fence_read", [False, True], ids=["held-request", "stalled-after-fence-read"])
def test_a_held_write_over_an_endpoint_restored_to_the_state_it_read_is_refused(
        world: World, person: Person, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        stall_after_fence_read: bool) -> None:
    done, seen, at_plan_1, slow, ex = restored_under_a_held_write(
        world, person, monkeypatch, stall_after_fence_read=stall_after_fence_read, old_cut=False)
    m1 = world.provider.read([RESTORED])[RESTORED].marker
    newer = None if stall_after_fence_read else Generation(3)
    assert done.results == [Conflict(RESTORED, m1, newer=newer)], done.results
    assert seen[4] == addresses(A), f"I2: plan 2's content reached Route 53 after plan 3's: {seen}"
    assert record_sets(person, RESTORED) == at_plan_1, "the restored endpoint was written"
    drain(slow, done, ex, time.time())
    assert served(person, RESTORED) == addresses(A)


@pytest.mark.parametrize("stall_after_fence_read", [False, True], ids=["held-request", "stalled-after-fence-read"])
def test_control_with_the_fence_and_token_on_unchained_writes_only_the_held_write_lands(
        world: World, person: Person, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        stall_after_fence_read: bool) -> None:
    done, seen, _, _, _ = restored_under_a_held_write(
        world, person, monkeypatch, stall_after_fence_read=stall_after_fence_read, old_cut=True)
    assert done.results == [Applied(RESTORED)], done.results
    assert seen[4] == addresses(B), f"Route 53 held, in order: {seen}"
