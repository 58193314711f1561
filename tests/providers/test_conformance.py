"""Every Provider keeps the contract of dnsplane/providers/base.py; the memory fake and embedded agree.

One suite runs on ``MemoryProvider`` and ``EmbeddedProvider``; a Hypothesis
property applies the same random batches (random expects, of markers and of records, hand edits) to both
and compares every result; readers in another thread and another process never
see the records of one generation with the marker of another.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsplane.codec import RecordSetCodec
from dnsplane.errors import InvalidPlan, ProviderUnavailable
from dnsplane.model import CORRUPT_GENERATION, EndpointKey, Generation, Marker, Member, Observed, RecordSet
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.base import TOKEN_ABSENT, Applied, Conflict, Provider, Rejected, Write
from dnsplane.providers.embedded import EmbeddedProvider
from dnsplane.providers.memory import MemoryProvider
from dnsplane.providers.rfc2136 import Rfc2136Provider
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.ministack import ministack, ministack_direct  # noqa: F401 - fixtures for the route53 param
from tests.servers.named import named  # noqa: F401 - fixture for the rfc2136 param

A = key("a.demo.test")
B = key("b.demo.test")
C6 = key("c.demo.test", "AAAA")
ONE = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2", weight=3))
TWO = rs(member("lb1", "192.0.2.1"), ttl=60)
THREE = rs(member("lb3", "192.0.2.3"))
SIX = rs(member("lb6", "2001:db8::1"))


@pytest.fixture(params=["memory", "embedded", "route53", "rfc2136"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Provider]:
    if request.param == "route53":  # ministack started once per module, a fresh hosted zone per test
        p: Provider = request.getfixturevalue("ministack").provider(ZONE)
    elif request.param == "rfc2136":  # named started once per module, the zone emptied per test
        server = request.getfixturevalue("named")
        server.reset()
        p = Rfc2136Provider(ZONE, Rfc2136Config(server.host, server.port, key_file=server.key_file))
    else:
        p = MemoryProvider(ZONE) if request.param == "memory" else EmbeddedProvider(tmp_path / "dns.sqlite", ZONE)
    yield p
    p.close()


def first_write(k: EndpointKey, records: RecordSet, g: int = 1) -> Write:
    return Write(k, None, records, marker(g, records))


def test_declares_its_capabilities(provider: Provider) -> None:
    assert provider.capabilities.atomic_batches and provider.capabilities.native_cas
    assert provider.capabilities.max_batch == {"route53": 500, "rfc2136": 500}.get(provider.kind, 10_000)
    assert provider.capabilities.ordered_reads == (provider.kind == "route53")  # batches of neighbours
    assert provider.kind in ("memory", "embedded", "route53", "rfc2136")
    assert provider.zone == ZONE


def test_first_write_on_absent_marker_and_read_back(provider: Provider) -> None:
    assert provider.read([A, B]) == {A: Observed(None, None), B: Observed(None, None)}
    assert provider.apply([first_write(A, ONE), first_write(C6, SIX)]) == [Applied(A), Applied(C6)]
    assert provider.read([A, B, C6]) == {
        A: Observed(ONE, marker(1, ONE)),
        B: Observed(None, None),
        C6: Observed(SIX, marker(1, SIX)),
    }
    assert provider.read([A])[A].records.digest == ONE.digest  # type: ignore[union-attr]
    assert provider.read_all() == {A: Observed(ONE, marker(1, ONE)), C6: Observed(SIX, marker(1, SIX))}
    assert provider.writes == 2
    assert provider.apply([]) == []


def test_expect_none_is_refused_when_a_marker_exists(provider: Provider) -> None:
    provider.apply([first_write(A, ONE)])
    assert provider.apply([first_write(A, TWO, 2)]) == [Conflict(A, marker(1, ONE))]
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE))
    assert provider.writes == 1


def test_a_first_write_fails_when_records_exist_without_a_marker(provider: Provider) -> None:
    # chaos seeds 1412 and 5315: a first write delayed in flight while another writer wrote and a
    # human then deleted the marker; "no marker" holds again, "no records" does not
    provider.apply([first_write(A, ONE)])
    provider.hand_edit(A, ONE, None)  # type: ignore[attr-defined]  # the marker deleted by hand
    assert provider.apply([first_write(A, TWO)]) == [Conflict(A, None)]
    assert provider.read([A])[A] == Observed(ONE, None)
    # records never written by dnsplane, no marker at all: the same
    provider.hand_edit(B, THREE, None)  # type: ignore[attr-defined]
    assert provider.apply([first_write(B, TWO)]) == [Conflict(B, None)]
    assert provider.read([B])[B] == Observed(THREE, None)
    assert provider.writes == 1


def test_repair_of_records_without_a_marker_expects_exactly_the_records_found(provider: Provider) -> None:
    provider.apply([first_write(A, ONE), first_write(B, ONE)])
    provider.hand_edit(A, ONE, None)  # type: ignore[attr-defined]
    provider.hand_edit(B, ONE, None)  # type: ignore[attr-defined]
    found = provider.read([A])[A].records
    assert found is not None
    # the verifier's repair names the records it saw; the marker never goes below what it was
    assert provider.apply([Write(A, None, TWO, marker(2, TWO), found)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(TWO, marker(2, TWO))
    # records that changed since they were seen: the repair fails and changes nothing
    provider.hand_edit(B, THREE, None)  # type: ignore[attr-defined]
    assert provider.apply([Write(B, None, TWO, marker(2, TWO), found)]) == [Conflict(B, None)]
    assert provider.read([B])[B] == Observed(THREE, None)
    # records expected where there are none, or where a marker is back: refused as well
    provider.hand_edit(B, None, None)  # type: ignore[attr-defined]
    assert provider.apply([Write(B, None, TWO, marker(2, TWO), THREE)]) == [Conflict(B, None)]
    provider.apply([first_write(B, ONE, 3)])
    assert provider.apply([Write(B, None, TWO, marker(4, TWO), ONE)]) == [Conflict(B, marker(3, ONE))]
    assert provider.read([B])[B] == Observed(ONE, marker(3, ONE))
    assert provider.writes == 4


def test_conditional_write_needs_the_exact_marker(provider: Provider) -> None:
    provider.apply([first_write(A, ONE)])
    stale = [
        Write(A, marker(0, ONE), TWO, marker(2, TWO), ONE),  # other generation
        Write(A, marker(1, TWO), TWO, marker(2, TWO), ONE),  # other digest
    ]
    assert provider.apply(stale) == [Conflict(A, marker(1, ONE)), Conflict(A, marker(1, ONE))]
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE))  # unchanged, records and marker
    assert provider.apply([Write(B, marker(1, ONE), TWO, marker(2, TWO), ONE)]) == [Conflict(B, None)]
    assert provider.read([B])[B] == Observed(None, None)
    assert provider.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO), ONE)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(TWO, marker(2, TWO))
    assert provider.writes == 2


def test_stale_write_fails_on_moved_records(provider: Provider) -> None:
    """A marker set back by hand to the exact value a delayed write expects, over records that moved
    on (chaos 12537, 13470): the write expects the records it saw too, so it fails."""
    provider.apply([first_write(A, ONE)])
    delayed = Write(A, marker(1, ONE), THREE, marker(3, THREE), ONE)  # decided while A held ONE
    assert provider.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO), ONE)]) == [Applied(A)]
    provider.hand_edit(A, TWO, marker(1, ONE))  # type: ignore[attr-defined]  # the old marker, put back
    assert provider.apply([delayed]) == [Conflict(A, marker(1, ONE))]
    assert provider.read([A])[A] == Observed(TWO, marker(1, ONE))
    # records that moved on with the marker unchanged (a hand edit): also refused
    provider.hand_edit(A, rs(member("lb9", "192.0.2.9")), marker(1, ONE))  # type: ignore[attr-defined]
    assert provider.apply([Write(A, marker(1, ONE), THREE, marker(3, THREE), TWO)]) == [Conflict(A, marker(1, ONE))]
    assert provider.writes == 2


X, Y = "0123456789ab", "ba9876543210"  # chain tokens: what two different replaced markers hash to


@pytest.mark.parametrize("prev", ["", X], ids=["without-prev", "with-prev"])
def test_marker_text_round_trips_through_the_provider(provider: Provider, prev: str) -> None:
    """A marker reads back exactly as written, in the form written before chain tokens (no ``p=``) and
    in the new one; RFC 2136 and Route 53 keep it as ``Marker.to_text()`` in the marker TXT."""
    assert provider.apply([Write(A, None, ONE, marker(1, ONE, prev))]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE, prev))
    assert provider.apply([Write(A, marker(1, ONE, prev), TWO, marker(2, TWO, Y), ONE)]) == [Applied(A)]
    assert provider.read_all() == {A: Observed(TWO, marker(2, TWO, Y))}


def test_compare_and_swap_compares_the_whole_marker_prev_included(provider: Provider) -> None:
    """Chaos 12537: the endpoint holds the generation, content and records a delayed write expects,
    but its marker names another predecessor (a marker whose ``g=`` was set back by hand): refused."""
    provider.apply([Write(A, None, ONE, marker(1, ONE, Y))])
    delayed = Write(A, marker(1, ONE, X), TWO, marker(2, TWO, "c" * 12), ONE)
    assert provider.apply([delayed]) == [Conflict(A, marker(1, ONE, Y))]
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE, Y))
    assert provider.writes == 1
    assert provider.apply([Write(A, marker(1, ONE, Y), TWO, marker(2, TWO, "c" * 12), ONE)]) == [Applied(A)]
    assert provider.writes == 2


def test_same_generation_and_content_over_another_prev_is_already_applied(provider: Provider) -> None:
    """I6 compares generation and content, not ``prev``: a second writer of the same generation that
    read another marker first finds its write done, and nothing is sent (the marker stays as it is)."""
    # sealed markers, as writers make them (an unsealed current marker is never "the same": see below)
    first = Marker.after(None, Generation(1), ONE.digest)
    second = Marker.after(first, Generation(2), TWO.digest)
    provider.apply([Write(A, None, ONE, first)])
    provider.apply([Write(A, first, TWO, second, ONE)])
    other = marker(1, ONE, "d" * 12)  # read another marker
    late = Write(A, other, TWO, Marker.after(other, Generation(2), TWO.digest), ONE)
    assert provider.apply([late]) == [Applied(A, written=False)]
    assert provider.apply([Write(A, None, TWO, marker(2, TWO))]) == [Applied(A, written=False)]
    assert provider.read([A])[A] == Observed(TWO, second)
    assert provider.writes == 2


def test_marking_a_marker_released_is_a_write_and_the_swap_compares_it(provider: Provider) -> None:
    """A release (same records, generation, digest and owner; the marker marked released, ``r=1``)
    is a real write, not an I6 no-op; it reads back released; a write expecting the marker as it was
    before the release conflicts; taking it back (unreleased again) is a write too."""
    mine = Marker.after(None, Generation(1), ONE.digest, "dp-one")
    assert provider.apply([Write(A, None, ONE, mine)]) == [Applied(A)]
    released = Marker.after(mine, Generation(1), ONE.digest, "dp-one", released=True)
    assert provider.apply([Write(A, mine, ONE, released, ONE)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, released)
    assert provider.read_all() == {A: Observed(ONE, released)}
    assert provider.apply([Write(A, mine, ONE, released, ONE)]) == [Applied(A, written=False)]
    back = Marker.after(released, Generation(1), ONE.digest, "dp-one")
    assert provider.apply([Write(A, mine, ONE, back, ONE)]) == [Conflict(A, released)]
    assert provider.apply([Write(A, released, ONE, back, ONE)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, back)
    assert provider.writes == 3


def test_a_write_over_a_marker_whose_seal_is_broken_is_a_real_write(provider: Provider) -> None:
    """Issue 8: ``g=`` edited by hand (the rest of the text kept: the seal broken) to the generation
    the verifier's repair then names, same content: the repair differs from it only by the seal and
    must be written, not taken for already applied (else "repairing: marker-edited" every round)."""
    mine = Marker.after(None, Generation(1), ONE.digest, "dp-one")
    assert provider.apply([Write(A, None, ONE, mine)]) == [Applied(A)]
    edited = Marker(Generation(2), ONE.digest, mine.prev, "dp-one")
    assert not edited.sealed()
    provider.hand_edit(A, ONE, edited)  # type: ignore[attr-defined]
    repair = Marker.after(edited, Generation(2), ONE.digest, "dp-one")
    assert provider.apply([Write(A, edited, ONE, repair, ONE)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, repair)
    assert provider.apply([Write(A, edited, ONE, repair, ONE)]) == [Applied(A, written=False)]  # now it is
    assert provider.writes == 2


@pytest.mark.parametrize("generation", [2**63 - 1, -1])
def test_a_marker_set_out_of_range_by_hand_reads_as_a_corrupt_marker(provider: Provider, generation: int) -> None:
    """Issue 13's eighth round: every provider, text or columns, reads a generation out of range as a corrupt
    marker (``model.corrupt_marker``), with or without its ``p=``: the enactor's decision table has no row
    of its own for one (``enactor.decide``), and the verifier's repair, conditional on it as read, lands."""
    mine = Marker.after(None, Generation(1), ONE.digest, "dp-one")
    assert provider.apply([Write(A, None, ONE, mine)]) == [Applied(A)]
    for edited in (Marker(Generation(generation), ONE.digest, mine.prev, "dp-one"),
                   Marker(Generation(generation), ONE.digest, "", "dp-one")):  # written whole: no p=
        provider.hand_edit(A, ONE, edited)  # type: ignore[attr-defined]
        seen = provider.read([A])[A]
        assert seen.records == ONE and seen.marker is not None
        assert seen.marker.generation == CORRUPT_GENERATION and seen.marker.digest != ONE.digest
        assert seen.marker.owner == "dp-one" and provider.read([A])[A] == seen
    repair = Marker.after(seen.marker, Generation(2), ONE.digest, "dp-one")
    assert provider.apply([Write(A, seen.marker, ONE, repair, ONE)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, repair)


def test_writes_of_one_batch_apply_in_order(provider: Provider) -> None:
    batch = [first_write(A, ONE), Write(A, marker(1, ONE), TWO, marker(2, TWO), ONE), first_write(A, THREE, 3)]
    assert provider.apply(batch) == [Applied(A), Applied(A), Conflict(A, marker(2, TWO))]
    assert provider.read([A])[A] == Observed(TWO, marker(2, TWO))
    assert provider.writes == 2


def test_idempotent_reapply_costs_no_write(provider: Provider) -> None:
    w = first_write(A, ONE)
    provider.apply([w])
    # its expect is stale, but the endpoint holds what it asks: nothing is sent
    assert provider.apply([w]) == [Applied(A, written=False)]
    assert provider.apply([Write(A, marker(1, ONE), ONE, marker(1, ONE), ONE)]) == [Applied(A, written=False)]
    assert provider.writes == 1
    # same content, newer marker: the marker must advance (A -> B -> A), so it is a write
    assert provider.apply([Write(A, marker(1, ONE), ONE, marker(3, ONE), ONE)]) == [Applied(A)]
    assert provider.writes == 2


def unwritable(provider: Provider, k: EndpointKey) -> RecordSet:
    """A record set this provider refuses for ``k`` alone (``Rejected``): the memory provider on demand
    (``MemoryProvider.reject``, what the simulator uses), Route 53 and RFC 2136 past their message and
    batch limits (1,100 targets whose ids are 60 characters long)."""
    if isinstance(provider, MemoryProvider):
        provider.reject(k, "refused on demand")
        return ONE
    nets = ("192.0.2", "198.51.100", "203.0.113")
    return rs(*(member(f"{i:060d}", f"{nets[i % 3]}.{i % 90 + 1}") for i in range(1_100)))


def test_rejected_is_per_endpoint_and_writes_nothing_of_it(provider: Provider) -> None:
    """``Rejected``'s contract (providers/base.py): the endpoint at fault comes back ``Rejected(key, reason)``
    with nothing of it written, its marker included; every other write of the same apply is decided as if
    alone; a write already applied or stale is ``Applied(written=False)`` or ``Conflict``, never Rejected."""
    bad = key("bad.demo.test")
    provider.apply([first_write(bad, THREE)])
    too_big = unwritable(provider, bad)
    if provider.kind == "embedded":
        # no message or batch limit, nothing it refuses: what the others reject, it writes
        assert provider.apply([Write(bad, marker(1, THREE), too_big, marker(2, too_big), THREE)]) == [Applied(bad)]
        assert provider.read([bad])[bad] == Observed(too_big, marker(2, too_big))
        return
    results = provider.apply([first_write(A, ONE), Write(bad, marker(1, THREE), too_big, marker(2, too_big), THREE),
                              first_write(C6, SIX)])
    assert results[0] == Applied(A) and results[2] == Applied(C6)
    assert isinstance(results[1], Rejected) and results[1].key == bad and results[1].reason
    assert provider.read([A, bad, C6]) == {A: Observed(ONE, marker(1, ONE)), bad: Observed(THREE, marker(1, THREE)),
                                           C6: Observed(SIX, marker(1, SIX))}
    assert provider.writes == 3
    # only a write that would change something is rejected
    assert provider.apply([first_write(bad, THREE)]) == [Applied(bad, written=False)]
    assert provider.apply([first_write(bad, too_big)]) == [Conflict(bad, marker(1, THREE))]


INVALID = {
    "all weights zero": (A, rs(member("lb1", "192.0.2.1", weight=0))),
    "no members": (A, rs()),
    "not an address": (A, rs(member("lb1", "192.0.2.300"))),
    "IPv6 in an A set": (A, rs(member("lb1", "2001:db8::1"))),
    "IPv4 in an AAAA set": (C6, rs(member("lb1", "192.0.2.1"))),
    "TTL zero": (A, rs(member("lb1", "192.0.2.1"), ttl=0)),
    "TTL too long": (A, rs(member("lb1", "192.0.2.1"), ttl=86_401)),
    "outside the zone": (key("api.other.test"), ONE),
    "duplicate target": (A, RecordSet(30, (Member("x", ("192.0.2.1",), 1), Member("x", ("192.0.2.2",), 1)))),
    "multicast": (A, rs(member("lb1", "224.0.0.1"))),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_record_sets_are_refused_before_any_write(provider: Provider, case: str) -> None:
    bad_key, bad = INVALID[case]
    batch = [first_write(B, ONE), Write(bad_key, None, bad, marker(1, bad))]
    with pytest.raises(InvalidPlan):
        provider.apply(batch)
    assert provider.read_all() == {}  # not even the valid write of the batch
    assert provider.writes == 0


def test_listener_hears_written_keys_only(provider: Provider) -> None:
    heard: list[list[EndpointKey]] = []
    provider.add_listener(heard.append)  # type: ignore[attr-defined]
    provider.apply([first_write(A, ONE), first_write(B, TWO)])
    provider.apply([first_write(A, ONE)])  # idempotent: nothing written, nothing heard
    provider.apply([first_write(A, TWO)])  # conflict: nothing heard
    provider.hand_edit(B, None, None)  # type: ignore[attr-defined]
    assert heard == [[A, B], [B]]


def test_a_failing_listener_does_not_fail_the_write(provider: Provider) -> None:
    def broken(keys: list[EndpointKey]) -> None:
        raise RuntimeError("listener bug")

    provider.add_listener(broken)  # type: ignore[attr-defined]
    assert provider.apply([first_write(A, ONE)]) == [Applied(A)]
    assert provider.read([A])[A].marker == marker(1, ONE)


def test_hand_edit_bypasses_every_check(provider: Provider) -> None:
    empty = rs(member("lb1", "192.0.2.1", weight=0))
    provider.hand_edit(A, empty, marker(7, ONE))  # type: ignore[attr-defined]
    assert provider.read([A])[A] == Observed(empty, marker(7, ONE))
    provider.hand_edit(A, None, marker(7, ONE))  # type: ignore[attr-defined]
    assert provider.read([A])[A] == Observed(None, marker(7, ONE))
    provider.hand_edit(B, TWO, None)  # type: ignore[attr-defined]
    assert provider.read_all() == {A: Observed(None, marker(7, ONE)), B: Observed(TWO, None)}
    assert provider.writes == 0  # hand edits are not dnsplane's writes
    # a hand-edited endpoint is repaired with the same compare-and-swap: with no marker, on the records found
    assert provider.apply([first_write(B, ONE, 8)]) == [Conflict(B, None)]
    assert provider.apply([Write(B, None, ONE, marker(8, ONE), TWO)]) == [Applied(B)]
    assert provider.apply([Write(A, marker(7, ONE), ONE, marker(8, ONE), None)]) == [Applied(A)]
    provider.hand_edit(A, None, None)  # type: ignore[attr-defined]
    assert provider.read([A])[A] == Observed(None, None)
    assert set(provider.read_all()) == {B}


def with_token(w: Write, token: str | None) -> Write:
    return Write(w.key, w.expect, w.records, w.marker, w.expect_records, token)


def test_every_write_moves_the_write_token_to_a_value_never_seen(provider: Provider) -> None:
    seen = [provider.write_token()]
    assert seen[0] == TOKEN_ABSENT
    provider.apply([first_write(A, ONE)])
    seen.append(provider.write_token())
    provider.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO), ONE), first_write(B, THREE)])
    seen.append(provider.write_token())
    provider.apply([with_token(first_write(C6, SIX), seen[-1])])
    seen.append(provider.write_token())
    assert None not in seen and len(set(seen)) == len(seen), seen
    provider.hand_edit(B, None, None)  # type: ignore[attr-defined]  # a person's edit need not move it
    assert provider.apply([first_write(B, THREE)]) == [Applied(B)]
    assert provider.write_token() not in seen


def test_a_write_with_the_token_it_read_lands(provider: Provider) -> None:
    token = provider.write_token()
    assert provider.apply([with_token(first_write(A, ONE), token)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE))
    token = provider.write_token()
    assert provider.apply([with_token(first_write(B, TWO), token), first_write(C6, SIX)]) == [Applied(B), Applied(C6)]


def test_the_fence_window_a_write_whose_token_moved_is_refused_after_a_hand_deletion(provider: Provider) -> None:
    # The fence's window (docs/design.md): a writer read the token, then the store (no newer plan yet);
    # a newer plan was then written and the endpoint deleted whole by hand, all before the old write
    # arrived. "Nothing" matches again; the token does not.
    token = provider.write_token()
    assert provider.apply([first_write(A, TWO, 2)]) == [Applied(A)]  # the newer plan's writer
    provider.hand_edit(A, None, None)  # type: ignore[attr-defined]  # deleted whole by hand
    assert provider.apply([with_token(first_write(A, ONE), token)]) == [Conflict(A, None)]
    assert provider.read([A])[A] == Observed(None, None)
    assert provider.writes == 1


def test_a_moved_token_refuses_only_the_writes_that_carry_it(provider: Provider) -> None:
    provider.apply([first_write(A, ONE)])
    token = provider.write_token()
    provider.apply([first_write(C6, SIX)])  # any automated write, of any endpoint
    assert provider.apply([with_token(first_write(B, TWO), token), Write(A, marker(1, ONE), THREE,
                                                                     marker(2, THREE), ONE)]) == [
        Conflict(B, None), Applied(A)]
    assert provider.read([A, B]) == {A: Observed(THREE, marker(2, THREE)), B: Observed(None, None)}
    # already applied is applied, whatever the token (I6: nothing is sent)
    assert provider.apply([with_token(first_write(C6, SIX), token)]) == [Applied(C6, written=False)]


def test_a_batch_larger_than_one_message_carries_its_token_through_its_own_changes(provider: Provider) -> None:
    # Route 53 takes 1,000 records per change batch and an RFC 2136 message 64 KiB: this apply is
    # several changes, each moving the token; only this apply's own changes moved it, so all land
    many = [with_token(first_write(key(f"n{i}.demo.test"), ONE), None) for i in range(400)]
    token = provider.write_token()
    results = provider.apply([with_token(w, token) for w in many])
    assert results == [Applied(w.key) for w in many]


def test_same_marker_other_records_is_not_idempotent(provider: Provider) -> None:
    provider.hand_edit(A, TWO, marker(1, ONE))  # type: ignore[attr-defined]  # records edited by hand
    # the verifier's repair names the records it saw (see test_stale_write_fails_on_moved_records)
    assert provider.apply([Write(A, marker(1, ONE), ONE, marker(1, ONE), TWO)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE))
    assert provider.writes == 1


def test_a_write_that_only_adds_the_owner_id_is_a_real_write(provider: Provider) -> None:
    """``Write.verdict``: "already applied" needs the same owner. A marker written before owner ids
    (same generation and content) is rewritten with the id, fenced on it; a write expecting the marker
    before that rewrite then conflicts, and the same write again is already applied."""
    old = Marker.after(None, Generation(1), ONE.digest)
    assert provider.apply([Write(A, None, ONE, old)]) == [Applied(A)]
    mine = Marker.after(old, Generation(1), ONE.digest, "dp-one")
    assert provider.apply([Write(A, old, ONE, mine, ONE)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, mine)
    assert provider.apply([Write(A, old, ONE, mine, ONE)]) == [Applied(A, written=False)]
    other = Marker.after(old, Generation(1), ONE.digest, "dp-two")
    assert provider.apply([Write(A, old, ONE, other, ONE)]) == [Conflict(A, mine)]
    assert provider.writes == 2


def test_one_batch_decides_each_write_on_what_the_ones_before_it_left(provider: Provider) -> None:
    """``Write.verdict`` in batch order: the same write twice is written once (the second already
    applied, though its ``expect`` no longer holds), a stale write after it conflicts on the marker
    the first left, and the endpoint reads what the batch left."""
    w = first_write(A, ONE)
    stale = Write(A, None, TWO, marker(2, TWO))
    assert provider.apply([w, w, stale]) == [Applied(A), Applied(A, written=False), Conflict(A, marker(1, ONE))]
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE))
    assert provider.writes == 1


def test_readers_never_see_records_of_one_generation_with_the_marker_of_another(
    provider: Provider, tmp_path: Path
) -> None:
    keys = [key(f"e{i}.demo.test") for i in range(20)]
    contents = [rs(member(f"lb{g}", f"192.0.2.{g % 250 + 1}"), ttl=g % 300 + 1) for g in range(1, 151)]
    provider.apply([first_write(k, contents[0]) for k in keys])
    reader = provider if not isinstance(provider, EmbeddedProvider) else EmbeddedProvider(tmp_path / "dns.sqlite", ZONE)
    stop = threading.Event()
    bad: list[object] = []
    reads = [0]

    def read_loop() -> None:
        while not stop.is_set():
            for obs in reader.read(keys).values():
                if obs.records is None or obs.marker is None or obs.records.digest != obs.marker.digest:
                    bad.append(obs)
            reads[0] += 1

    t = threading.Thread(target=read_loop)
    t.start()
    try:
        for g in range(2, len(contents) + 1):
            prev, new = contents[g - 2], contents[g - 1]
            results = provider.apply([Write(k, marker(g - 1, prev), new, marker(g, new), prev) for k in keys])
            assert all(isinstance(r, Applied) for r in results), results
    finally:
        stop.set()
        t.join()
        if reader is not provider:
            reader.close()
    assert bad == []
    assert reads[0] > 0


def read_markers(path: str, count: int) -> tuple[int, list[str]]:
    """In another process: read ``count`` endpoints until generation ``last`` shows; report mismatches."""
    reader = EmbeddedProvider(path, ZONE)
    keys = [key(f"e{i}.demo.test") for i in range(count)]
    reads, bad = 0, []
    try:
        while True:
            seen = reader.read(keys)
            reads += 1
            for k, obs in seen.items():
                if obs.records is None or obs.marker is None or obs.records.digest != obs.marker.digest:
                    bad.append(f"{k}: {obs}")
            if all(o.marker is not None and o.marker.generation >= 100 for o in seen.values()) or reads > 100_000:
                return reads, bad
    finally:
        reader.close()


def test_a_reader_in_another_process_sees_whole_endpoints(tmp_path: Path) -> None:
    path = str(tmp_path / "dns.sqlite")
    writer = EmbeddedProvider(path, ZONE)
    keys = [key(f"e{i}.demo.test") for i in range(20)]
    contents = [rs(member(f"lb{g}", f"192.0.2.{g % 250 + 1}"), ttl=g) for g in range(1, 101)]
    writer.apply([first_write(k, contents[0]) for k in keys])
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        pending = pool.apply_async(read_markers, (path, len(keys)))
        for g in range(2, 101):
            prev, new = contents[g - 2], contents[g - 1]
            writer.apply([Write(k, marker(g - 1, prev), new, marker(g, new), prev) for k in keys])
        reads, bad = pending.get(timeout=120)
    writer.close()
    assert bad == []
    assert reads > 0


def test_embedded_data_version_moves_on_other_connections_commits(tmp_path: Path) -> None:
    a, b = EmbeddedProvider(tmp_path / "dns.sqlite", ZONE), EmbeddedProvider(tmp_path / "dns.sqlite", ZONE)
    try:
        va = a.data_version()
        b.apply([first_write(A, ONE)])
        assert a.data_version() != va  # another connection committed
        va = a.data_version()
        a.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO), ONE)])
        assert a.data_version() == va  # its own commit: announced by the listener instead
        assert b.read([A])[A] == Observed(TWO, marker(2, TWO))
    finally:
        a.close()
        b.close()


def test_embedded_opens_a_file_made_before_markers_carried_prev(tmp_path: Path) -> None:
    """A file without the ``marker_prev`` column gains it when opened; its markers read with no prev and
    are written over with the compare-and-swap as before."""
    path = tmp_path / "dns.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE endpoints (name TEXT NOT NULL, rtype TEXT NOT NULL, records TEXT,"
                " marker_gen INTEGER, marker_digest TEXT, PRIMARY KEY (name, rtype)) WITHOUT ROWID")
    records = RecordSetCodec().encode(ONE)  # the records column as the embedded provider encodes it
    old.execute("INSERT INTO endpoints VALUES (?, ?, ?, ?, ?)", (A.name, A.rtype, records, 1, ONE.digest))
    old.commit()
    old.close()
    p = EmbeddedProvider(path, ZONE)
    try:
        assert p.read([A])[A] == Observed(ONE, marker(1, ONE))
        assert p.apply([Write(A, marker(1, ONE, X), TWO, marker(2, TWO, Y), ONE)]) == [Conflict(A, marker(1, ONE))]
        assert p.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO, Y), ONE)]) == [Applied(A)]
        assert p.read_all() == {A: Observed(TWO, marker(2, TWO, Y))}
    finally:
        p.close()
    again = EmbeddedProvider(path, ZONE)  # opening a migrated file again changes nothing
    try:
        assert again.read([A])[A] == Observed(TWO, marker(2, TWO, Y))
    finally:
        again.close()


def test_embedded_locked_database_is_retryable(tmp_path: Path) -> None:
    path = tmp_path / "dns.sqlite"
    p = EmbeddedProvider(path, ZONE, timeout=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(ProviderUnavailable) as err:
            p.apply([first_write(A, ONE)])
        assert err.value.retry_after > 0
        blocker.execute("ROLLBACK")
        assert p.apply([first_write(A, ONE)]) == [Applied(A)]
    finally:
        blocker.close()
        p.close()


# -- the fake agrees with the real provider -------------------------------------

KEYS = [A, B, C6]
RECORDS = {"A": [ONE, TWO, THREE], "AAAA": [SIX, rs(member("lb7", "2001:db8::7"))]}
prevs_st = st.sampled_from(["", X, Y])
markers_st = st.builds(
    marker, st.integers(min_value=1, max_value=3), st.sampled_from([ONE, TWO, THREE, SIX]), prevs_st)


@st.composite
def a_write(draw: st.DrawFn) -> Write:
    k = draw(st.sampled_from(KEYS))
    records = draw(st.sampled_from(RECORDS[k.rtype]))
    new = draw(st.one_of(st.builds(marker, st.integers(min_value=1, max_value=3), st.just(records), prevs_st),
                         markers_st))
    expect = draw(st.none() | markers_st)
    seen = draw(st.none() | st.sampled_from(RECORDS[k.rtype]))
    return Write(k, expect, records, new, seen)


hand_edit_st = st.tuples(st.sampled_from(KEYS), st.none() | st.sampled_from([ONE, TWO, SIX]), st.none() | markers_st)
step_st = st.one_of(st.lists(a_write(), min_size=1, max_size=5), hand_edit_st)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step_st, max_size=12))
def test_memory_and_embedded_agree(steps: list[object]) -> None:
    with tempfile.TemporaryDirectory() as d:
        mem, emb = MemoryProvider(ZONE), EmbeddedProvider(Path(d) / "dns.sqlite", ZONE)
        try:
            for step in steps:
                if isinstance(step, list):
                    assert mem.apply(step) == emb.apply(step)
                else:
                    mem.hand_edit(*step)  # type: ignore[misc]
                    emb.hand_edit(*step)  # type: ignore[misc]
                assert mem.read_all() == emb.read_all()
                assert mem.read(KEYS) == emb.read(KEYS)
                assert mem.writes == emb.writes
        finally:
            emb.close()
