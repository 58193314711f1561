"""Route53Provider: the Route 53 rules its compare-and-swap relies on, checked on ministack, then the provider.

1. "The emulator agrees with the documented semantics": plain boto3 against
   ministack shows that a CREATE of an existing set is refused, that a DELETE
   which does not match exactly (values, TTL, weight) refuses the whole batch
   with InvalidChangeBatch, and that a batch applies all or nothing.
2. The provider on ministack: compare-and-swap success and conflict, a stale
   writer's batch refused by Route 53 itself, a refused multi-endpoint batch
   resent without the endpoint that moved, hand edits detected, INSYNC waits.
3. Without the network: the batch packer, the TXT encoding, throttling backoff,
   the shared budget, one batch in flight per zone, and error mapping (Stubber).
"""

from __future__ import annotations

import datetime
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber

from dnsplane.errors import Permanent, ProviderUnavailable
from dnsplane.model import Member, Observed, RecordSet, Write, marker_name
from dnsplane.providerconfig import Route53Config
from dnsplane.providers.base import TOKEN_ABSENT, Applied, Conflict, Rejected
from dnsplane.providers.route53 import (
    MAX_CHARS,
    MAX_RECORDS,
    Route53Provider,
    ThrottleBudget,
    batch_cost,
    marker_values,
    pack_batches,
    parse_marker,
    scaled_weights,
    txt_strings,
)
from dnsplane.providers.route53 import provider as route53_provider
from dnsplane.providers.route53.state import EMPTY, new_sets, swap_changes
from dnsplane.providers.route53.token import token_name, token_value
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.ministack import Ministack, ministack, ministack_direct  # noqa: F401 - fixture

A = key("a.demo.test")
B = key("b.demo.test")
C = key("c.demo.test")
ONE = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2", weight=3))
TWO = rs(member("lb1", "192.0.2.1"), ttl=60)
THREE = rs(member("lb3", "192.0.2.3"))


def first_write(k: Any, records: RecordSet, g: int = 1) -> Write:
    return Write(k, None, records, marker(g, records))


# -- 1. the emulator agrees with the documented Route 53 semantics -----------------


def weighted(name: str, sid: str, value: str, ttl: int = 30, weight: int = 1) -> dict[str, Any]:
    return {"Name": name, "Type": "A", "SetIdentifier": sid, "Weight": weight, "TTL": ttl,
            "ResourceRecords": [{"Value": value}]}  # fmt: skip


def change(client: Any, zone_id: str, *changes: tuple[str, dict[str, Any]]) -> None:
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": a, "ResourceRecordSet": s} for a, s in changes]},
    )


def listed(client: Any, zone_id: str) -> list[dict[str, Any]]:
    sets = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return [s for s in sets if s["Type"] not in ("SOA", "NS")]


@pytest.fixture
def zone(ministack: Ministack) -> tuple[Any, str]:  # noqa: F811
    return ministack.client(), ministack.create_zone(ZONE)


def test_emulator_refuses_create_of_an_existing_set(zone: tuple[Any, str]) -> None:
    client, zid = zone
    change(client, zid, ("CREATE", weighted("x.demo.test.", "lb1", "192.0.2.1")))
    with pytest.raises(ClientError) as err:
        change(client, zid, ("CREATE", weighted("x.demo.test.", "lb1", "192.0.2.9")))
    assert err.value.response["Error"]["Code"] == "InvalidChangeBatch"
    assert listed(client, zid) == [weighted("x.demo.test.", "lb1", "192.0.2.1")]


@pytest.mark.parametrize(
    "stale",
    [
        weighted("x.demo.test.", "lb1", "192.0.2.9"),  # other value
        weighted("x.demo.test.", "lb1", "192.0.2.1", ttl=31),  # other TTL
        weighted("x.demo.test.", "lb1", "192.0.2.1", weight=2),  # other weight
        weighted("x.demo.test.", "lb9", "192.0.2.1"),  # no such set
    ],
    ids=["value", "ttl", "weight", "absent"],
)
def test_emulator_refuses_a_whole_batch_whose_delete_does_not_match_exactly(
    zone: tuple[Any, str], stale: dict[str, Any]
) -> None:
    client, zid = zone
    current = weighted("x.demo.test.", "lb1", "192.0.2.1")
    change(client, zid, ("CREATE", current))
    with pytest.raises(ClientError) as err:
        change(client, zid, ("CREATE", weighted("y.demo.test.", "lb1", "192.0.2.5")), ("DELETE", stale),
               ("CREATE", weighted("x.demo.test.", "lb2", "192.0.2.2")))  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidChangeBatch"
    assert listed(client, zid) == [current]  # nothing of the batch applied, not even the CREATE before it


def test_emulator_applies_a_batch_all_or_nothing(zone: tuple[Any, str]) -> None:
    client, zid = zone
    a, b = weighted("x.demo.test.", "lb1", "192.0.2.1"), weighted("x.demo.test.", "lb2", "192.0.2.2")
    change(client, zid, ("CREATE", a))
    with pytest.raises(ClientError):
        change(client, zid, ("DELETE", a), ("CREATE", b), ("CREATE", b))  # the last change is invalid
    assert listed(client, zid) == [a]
    change(client, zid, ("DELETE", a), ("CREATE", b))  # the exact DELETE + CREATE swap is accepted
    assert listed(client, zid) == [b]


# -- 2. the provider on ministack -------------------------------------------------


@pytest.fixture
def r53(ministack: Ministack) -> Iterator[Route53Provider]:  # noqa: F811
    p = ministack.provider(ZONE)
    yield p
    p.close()


def test_cas_success_and_conflict_without_a_call(r53: Route53Provider) -> None:
    assert r53.apply([first_write(A, ONE)]) == [Applied(A)]
    assert r53.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO), ONE)]) == [Applied(A)]
    sent = r53.calls["change_resource_record_sets"]
    # a stale expect that the read already contradicts: Conflict, and nothing is sent
    assert r53.apply([Write(A, marker(1, ONE), THREE, marker(3, THREE), ONE)]) == [Conflict(A, marker(2, TWO))]
    assert r53.apply([first_write(A, THREE, 3)]) == [Conflict(A, marker(2, TWO))]
    assert r53.calls["change_resource_record_sets"] == sent
    assert r53.read([A])[A] == Observed(TWO, marker(2, TWO))


def test_layout_weighted_sets_and_marker(r53: Route53Provider, ministack: Ministack) -> None:  # noqa: F811
    big = rs(member("lb1", "192.0.2.1", weight=900), member("lb2", "192.0.2.2", "192.0.2.3", weight=100),
             member("lb3", "192.0.2.4", weight=0))  # fmt: skip
    r53.apply([first_write(A, big)])
    sets = listed(ministack.client(), r53.hosted_zone_id)
    members = {s["SetIdentifier"]: s for s in sets if s["Type"] == "A"}
    assert {k: s["Weight"] for k, s in members.items()} == {"lb1": 255, "lb2": 28}  # lb3 (weight 0) not written
    assert sorted(r["Value"] for r in members["lb2"]["ResourceRecords"]) == ["192.0.2.2", "192.0.2.3"]
    txt, token = sorted((s for s in sets if s["Type"] == "TXT"), key=lambda s: s["Name"])
    assert txt["Name"] == marker_name(A) and "SetIdentifier" not in txt
    assert txt_strings(txt["ResourceRecords"][0]["Value"]) == [marker(1, big).to_text()]
    # the zone's write token, moved by the same change batch: one string, at a name no marker can have
    assert token["Name"] == "_dnsplane-token.demo.test." and "SetIdentifier" not in token
    assert [txt_strings(v["Value"]) for v in token["ResourceRecords"]] == [[r53.write_token()]]
    assert r53.read([A])[A] == Observed(big, marker(1, big))  # exact, weight-0 member and weights included


def test_answer_all_is_one_simple_record_set(r53: Route53Provider, ministack: Ministack) -> None:  # noqa: F811
    every = RecordSet.of(30, [member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2")], "all")
    r53.apply([first_write(A, every)])
    (a,) = [s for s in listed(ministack.client(), r53.hosted_zone_id) if s["Type"] == "A"]
    assert "SetIdentifier" not in a and len(a["ResourceRecords"]) == 2
    assert r53.read([A])[A] == Observed(every, marker(1, every))


def interleave(p: Route53Provider, before_send: Callable[[], None], at: int = 0) -> list[str]:
    """Run ``before_send`` once, just before ``p``'s change batch number ``at`` from now (0: the next) goes
    out; returns refusal codes seen."""
    real_change, real_send = p._change, p.client.change_resource_record_sets
    refused: list[str] = []
    batches = [0]

    def change(changes: list[dict[str, Any]], comment: str) -> None:
        if batches[0] == at:  # outside the zone lock, which the other writer needs too
            before_send()
        batches[0] += 1
        real_change(changes, comment)

    def send(**kwargs: Any) -> Any:
        try:
            return real_send(**kwargs)
        except ClientError as exc:
            refused.append(exc.response["Error"]["Code"])
            raise

    p._change = change  # type: ignore[method-assign]
    p.client.change_resource_record_sets = send
    return refused


def test_a_stale_writers_batch_is_refused_by_route53(r53: Route53Provider, ministack: Ministack) -> None:  # noqa: F811
    r53.apply([first_write(A, ONE)])
    other = Route53Provider(ZONE, Route53Config(r53.hosted_zone_id, endpoint_url=ministack.url), budget=r53.budget)
    # the stale writer read marker 1; before its batch arrives, another enactor applies generation 3
    refused = interleave(r53, lambda: other.apply([Write(A, marker(1, ONE), THREE, marker(3, THREE), ONE)]))
    assert r53.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO), ONE)]) == [Conflict(A, marker(3, THREE))]
    assert refused == ["InvalidChangeBatch"]  # Route 53 itself refused the stale DELETE
    assert r53.read([A])[A] == Observed(THREE, marker(3, THREE))
    assert r53.writes == 1 and other.writes == 1


def test_a_first_writes_create_is_refused_by_route53_when_member_sets_appeared(
    r53: Route53Provider, ministack: Ministack  # noqa: F811
) -> None:
    # chaos seeds 1412 and 5315: between this writer's read ("never written") and its batch, another
    # writer writes and a human deletes the marker; the CREATE of an existing member set is refused
    other = Route53Provider(ZONE, Route53Config(r53.hosted_zone_id, endpoint_url=ministack.url), budget=r53.budget)

    def meanwhile() -> None:
        other.apply([first_write(A, ONE)])
        other.hand_edit(A, ONE, None)

    refused = interleave(r53, meanwhile)
    assert r53.apply([first_write(A, TWO, 2)]) == [Conflict(A, None)]
    assert refused == ["InvalidChangeBatch"]
    assert r53.read([A])[A] == Observed(ONE, None)
    assert r53.writes == 0


def test_limit_a_member_set_of_another_id_added_within_one_apply_survives_a_first_write(
    r53: Route53Provider, ministack: Ministack  # noqa: F811
) -> None:
    # the documented limit: Route 53 cannot say "no record set at this name"; a set added inside the
    # milliseconds between the provider's read and its batch, under another set id, stays beside the
    # write, and the endpoint reads back as records that are not the marker's (repaired later)
    other = Route53Provider(ZONE, Route53Config(r53.hosted_zone_id, endpoint_url=ministack.url), budget=r53.budget)
    interleave(r53, lambda: other.hand_edit(A, ONE, None))
    assert r53.apply([first_write(A, THREE)]) == [Applied(A)]
    seen = r53.read([A])[A]
    assert seen.marker == marker(1, THREE) and seen.records is not None and seen.records.digest != THREE.digest


def test_a_repair_of_records_without_a_marker_deletes_exactly_what_it_saw(
    r53: Route53Provider, ministack: Ministack  # noqa: F811
) -> None:
    r53.apply([first_write(A, ONE)])
    r53.hand_edit(A, ONE, None)
    seen = r53.read([A])[A]
    assert seen == Observed(ONE, None)
    other = Route53Provider(ZONE, Route53Config(r53.hosted_zone_id, endpoint_url=ministack.url), budget=r53.budget)
    refused = interleave(r53, lambda: other.hand_edit(A, THREE, None))
    assert r53.apply([Write(A, None, TWO, marker(2, TWO), seen.records)]) == [Conflict(A, None)]
    assert refused == ["InvalidChangeBatch"]  # the exact DELETE of what it saw no longer matched
    assert r53.read([A])[A] == Observed(THREE, None)
    assert r53.apply([Write(A, None, TWO, marker(2, TWO), THREE)]) == [Applied(A)]
    assert r53.read([A])[A] == Observed(TWO, marker(2, TWO))


def test_a_refused_batch_is_resent_without_the_endpoint_that_moved(
    r53: Route53Provider, ministack: Ministack  # noqa: F811
) -> None:
    r53.apply([first_write(k, ONE) for k in (A, B, C)])
    other = Route53Provider(ZONE, Route53Config(r53.hosted_zone_id, endpoint_url=ministack.url), budget=r53.budget)
    refused = interleave(r53, lambda: other.apply([Write(B, marker(1, ONE), THREE, marker(3, THREE), ONE)]))
    sent = r53.calls["change_resource_record_sets"]
    results = r53.apply([Write(k, marker(1, ONE), TWO, marker(2, TWO), ONE) for k in (A, B, C)])
    assert results == [Applied(A), Conflict(B, marker(3, THREE)), Applied(C)]
    assert refused == ["InvalidChangeBatch"]
    assert r53.calls["change_resource_record_sets"] == sent + 2  # the refused batch, then the rest resent
    assert r53.read([A, B, C]) == {
        A: Observed(TWO, marker(2, TWO)), B: Observed(THREE, marker(3, THREE)), C: Observed(TWO, marker(2, TWO))
    }  # fmt: skip


# -- the zone's write token (providers/base.py, route53/token.py) -------------------------------------


def with_token(w: Write, token: str) -> Write:
    return Write(w.key, w.expect, w.records, w.marker, w.expect_records, token)


def other_writer(r53: Route53Provider, ministack: Ministack) -> Route53Provider:  # noqa: F811
    return Route53Provider(ZONE, Route53Config(r53.hosted_zone_id, endpoint_url=ministack.url), budget=r53.budget)


@pytest.mark.parametrize("zone_has_token", [False, True], ids=["absent", "present"])
def test_the_fence_window_inside_one_apply_route53_refuses_the_token_it_no_longer_holds(
    r53: Route53Provider, ministack: Ministack, zone_has_token: bool  # noqa: F811
) -> None:
    # The fence's window (docs/design.md) at its narrowest: the token still reads as the writer read it when
    # its apply reads it; another enactor's write and a person's deletion of the endpoint come between that
    # read and the change batch. Only Route 53 refuses it: the batch DELETEs the token exactly as read (or
    # CREATEs it, when the zone had none), and the other write moved it.
    if zone_has_token:
        r53.apply([first_write(C, THREE)])
    other = other_writer(r53, ministack)
    token = r53.write_token()

    def meanwhile() -> None:
        other.apply([first_write(A, TWO, 2)])
        other.hand_edit(A, None, None)

    refused = interleave(r53, meanwhile)
    assert r53.apply([with_token(first_write(A, ONE), token)]) == [Conflict(A, None)]
    assert refused == ["InvalidChangeBatch"]
    assert r53.read([A])[A] == Observed(None, None)
    assert r53.writes == int(zone_has_token)


def test_a_token_that_moved_before_the_apply_conflicts_without_a_change_batch(r53: Route53Provider) -> None:
    token = r53.write_token()
    r53.apply([first_write(C, THREE)])
    sent, lists = r53.calls["change_resource_record_sets"], r53.calls["list_resource_record_sets"]
    assert r53.apply([with_token(first_write(A, ONE), token)]) == [Conflict(A, None)]
    assert r53.calls["change_resource_record_sets"] == sent
    assert r53.calls["list_resource_record_sets"] == lists + 2  # the token once, then A's records and marker: one sweep
    r53.write_token()
    assert r53.calls["list_resource_record_sets"] == lists + 3  # write_token: one call


def test_a_token_move_in_the_window_refuses_only_the_writes_that_carry_it(
    r53: Route53Provider, ministack: Ministack  # noqa: F811
) -> None:
    other = other_writer(r53, ministack)
    token = r53.write_token()
    refused = interleave(r53, lambda: other.apply([first_write(C, THREE)]))
    assert r53.apply([with_token(first_write(A, ONE), token), first_write(B, TWO)]) == [Conflict(A, None), Applied(B)]
    assert refused == ["InvalidChangeBatch"]  # the batch of both; then B again, the token UPSERTed
    assert r53.calls["change_resource_record_sets"] == 2
    assert r53.read([A, B]) == {A: Observed(None, None), B: Observed(TWO, marker(1, TWO))}
    assert r53.write_token() not in (token, TOKEN_ABSENT)


def test_writes_without_a_token_never_conflict_over_it(r53: Route53Provider, ministack: Ministack) -> None:  # noqa: F811
    other = other_writer(r53, ministack)
    r53.apply([first_write(B, TWO)])
    refused = interleave(r53, lambda: other.apply([first_write(C, THREE)]))
    assert r53.apply([first_write(A, ONE)]) == [Applied(A)]  # UPSERTs the token over the other's
    assert refused == []


def test_a_move_between_two_batches_of_one_apply_refuses_the_token_writes_left(
    r53: Route53Provider, ministack: Ministack, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(route53_provider, "MAX_RECORDS", 12)  # three endpoints per change batch, beside the token
    keys = [key(f"n{i}.demo.test") for i in range(8)]
    other = other_writer(r53, ministack)
    token = r53.write_token()
    refused = interleave(r53, lambda: other.apply([first_write(C, THREE)]), at=1)
    results = r53.apply([with_token(first_write(k, TWO), token) for k in keys])
    # the first batch landed (it moved the token; the second expected that value), the second was refused
    # (the other write moved it since), and no later batch was sent: conflicts, never Rejected
    assert results == [Applied(k) for k in keys[:3]] + [Conflict(k, None) for k in keys[3:]]
    assert refused == ["InvalidChangeBatch"] and r53.calls["change_resource_record_sets"] == 2
    assert r53.writes == 3


def test_writes_without_a_token_sent_first_in_one_apply_do_not_hide_a_move_from_its_token_writes(
    r53: Route53Provider, ministack: Ministack, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    # were the first batch (no token write in it) to UPSERT the token, it would overwrite the other writer's
    # move, and the second batch would find the token as this apply left it: A would land
    monkeypatch.setattr(route53_provider, "MAX_RECORDS", 12)
    plain = [first_write(key(f"p{i}.demo.test"), TWO) for i in range(3)]  # the first change batch
    other = other_writer(r53, ministack)
    token = r53.write_token()
    refused = interleave(r53, lambda: other.apply([first_write(C, THREE)]))
    assert r53.apply([*plain, with_token(first_write(A, TWO), token)]) == [Applied(w.key) for w in plain] + [
        Conflict(A, None)]
    assert refused == ["InvalidChangeBatch"]
    assert r53.read([A])[A] == Observed(None, None)


def test_many_endpoints_are_packed_and_read_with_a_listing(r53: Route53Provider) -> None:
    keys = [key(f"e{i}.demo.test") for i in range(300)]  # 4 records each: more than 1,000 records in all
    results = r53.apply([first_write(k, ONE) for k in keys])
    assert results == [Applied(k) for k in keys]
    assert r53.calls["change_resource_record_sets"] >= 2  # more than one batch's worth
    before = r53.calls["list_resource_record_sets"]
    assert r53.read(keys) == {k: Observed(ONE, marker(1, ONE)) for k in keys}
    assert r53.calls["list_resource_record_sets"] - before <= 4  # one listing of ~900 sets, not a query per key
    assert r53.apply([first_write(k, ONE) for k in keys]) == [Applied(k, written=False) for k in keys]


def test_hand_edit_of_a_weighted_set_is_detected_and_repaired(r53: Route53Provider, ministack: Ministack) -> None:  # noqa: F811
    r53.apply([first_write(A, ONE)])
    client = ministack.client()
    old = next(s for s in listed(client, r53.hosted_zone_id) if s.get("SetIdentifier") == "lb2")
    change(client, r53.hosted_zone_id, ("DELETE", old), ("CREATE", {**old, "Weight": 200}))  # a human at the console
    seen = r53.read([A])[A]
    assert seen.marker == marker(1, ONE)
    assert seen.records is not None and seen.records.digest != ONE.digest
    assert seen.records.members == (Member("lb1", ("192.0.2.1",), 1), Member("lb2", ("192.0.2.2",), 200))
    # not idempotent: the same marker over other records is rewritten, with the same compare-and-swap
    assert r53.apply([Write(A, marker(1, ONE), ONE, marker(1, ONE), seen.records)]) == [Applied(A)]
    assert r53.read([A])[A] == Observed(ONE, marker(1, ONE))


def test_wait_insync_polls_get_change(ministack: Ministack) -> None:  # noqa: F811
    slept: list[float] = []
    p = ministack.provider(ZONE, wait_insync=True, sleep=slept.append, rng=random.Random(1))
    assert p.apply([first_write(A, ONE)]) == [Applied(A)]
    assert p.calls["get_change"] >= 1 and slept  # the change answers PENDING, GetChange INSYNC (insync_after 0)


# -- 3. without the network ---------------------------------------------------------


def test_packer_respects_both_limits_and_never_splits_an_endpoint() -> None:
    assert pack_batches([(10, 100)] * 250) == [list(range(i, min(i + 100, 250))) for i in range(0, 250, 100)]
    assert pack_batches([(400, 10)] * 5) == [[0, 1], [2, 3], [4]]  # 1,000 records
    assert pack_batches([(1, 10_000)] * 7) == [[0, 1, 2], [3, 4, 5], [6]]  # 32,000 characters
    assert pack_batches([(999, 10), (2, 10), (1000, 32_000), (1, 1)]) == [[0], [1], [2], [3]]
    costs = [(random.Random(i).randint(1, 300), random.Random(-i).randint(1, 9000)) for i in range(300)]
    batches = pack_batches(costs)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for b in batches:
        assert sum(costs[i][0] for i in b) <= MAX_RECORDS and sum(costs[i][1] for i in b) <= MAX_CHARS
    with pytest.raises(Permanent):
        pack_batches([(1, 10), (1001, 10)])
    with pytest.raises(Permanent):
        pack_batches([(1, 32_001)])


def test_marker_txt_carries_the_exact_record_set_in_short_strings() -> None:
    huge = rs(*[member(f'lb-"{i}"\\', f"192.0.{i // 250}.{i % 250 + 1}", weight=i * 7) for i in range(300)])
    values = marker_values(marker(5, huge), huge)
    assert all(len(v) <= 4000 for v in values)
    assert all(len(s) <= 255 for v in values for s in txt_strings(v))
    assert parse_marker([{"Type": "TXT", "ResourceRecords": [{"Value": v} for v in reversed(values)]}]) == (
        marker(5, huge), huge)  # fmt: skip
    changes = [{"Action": "CREATE", "ResourceRecordSet": {"ResourceRecords": [{"Value": v} for v in values]}}]
    assert batch_cost(changes) == (len(values), sum(map(len, values)))
    assert scaled_weights(rs(member("a", "192.0.2.1", weight=1), member("b", "192.0.2.2", weight=1000))) == {
        "a": 1, "b": 255}  # fmt: skip


class FakeClient:
    """A Route 53 client holding nothing: lists are empty, changes succeed after ``fail`` errors."""

    def __init__(self, fail: list[Exception] | None = None, delay: float = 0.0) -> None:
        self.fail = list(fail or [])
        self.delay = delay
        self.sent = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.costs: list[tuple[int, int]] = []  # (records, characters) of each change batch received

    def list_resource_record_sets(self, **kwargs: Any) -> dict[str, Any]:
        return {"ResourceRecordSets": [], "IsTruncated": False}

    def get_hosted_zone(self, **kwargs: Any) -> dict[str, Any]:
        return {"HostedZone": {"ResourceRecordSetCount": 2}}

    def change_resource_record_sets(self, **kwargs: Any) -> dict[str, Any]:
        with self.lock:
            self.costs.append(batch_cost(kwargs["ChangeBatch"]["Changes"]))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            if self.fail:
                raise self.fail.pop(0)
            self.sent += 1
            return {"ChangeInfo": {"Id": f"/change/C{self.sent}", "Status": "PENDING"}}
        finally:
            with self.lock:
                self.active -= 1


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "ChangeResourceRecordSets")  # fmt: skip


def fake_provider(client: Any, zone_id: str = "ZFAKE", **kwargs: Any) -> Route53Provider:
    kwargs.setdefault("budget", ThrottleBudget(10_000))
    return Route53Provider(ZONE, Route53Config(zone_id), client=client, **kwargs)


@pytest.mark.parametrize("limit", ["records", "chars"])
@pytest.mark.parametrize("token", [None, TOKEN_ABSENT], ids=["upsert", "chained"])
def test_the_tokens_changes_count_in_a_change_batchs_quotas(
    monkeypatch: pytest.MonkeyPatch, limit: str, token: str | None
) -> None:
    r, c = batch_cost(swap_changes(EMPTY, new_sets(A, ONE, marker(1, ONE))))  # one first write
    max_records, max_chars = (3 * r, MAX_CHARS) if limit == "records" else (MAX_RECORDS, 3 * c)
    monkeypatch.setattr(route53_provider, "MAX_RECORDS", max_records)
    monkeypatch.setattr(route53_provider, "MAX_CHARS", max_chars)
    client = FakeClient()
    keys = [key(f"q{i}.demo.test") for i in range(6)]
    results = fake_provider(client).apply([Write(k, None, ONE, marker(1, ONE), None, token) for k in keys])
    assert results == [Applied(k) for k in keys]
    assert len(client.costs) == 3  # two endpoints per batch: a third would leave no room for the token
    assert all(rr <= max_records and cc <= max_chars for rr, cc in client.costs), client.costs


def test_the_token_is_no_endpoints_marker_and_reads_never_empty_when_it_exists() -> None:
    assert token_name(ZONE) not in {marker_name(key(n, t)) for n in (ZONE, f"token.{ZONE}") for t in ("A", "AAAA")}
    assert token_value(None) == TOKEN_ABSENT
    fresh = {"Name": token_name(ZONE), "Type": "TXT", "TTL": 300, "ResourceRecords": [{"Value": '"ab12"'}]}
    assert token_value(fresh) == "ab12"
    edited = [{**fresh, "ResourceRecords": v} for v in ([{"Value": '""'}], [], [{"Value": '"a"'}, {"Value": '"b"'}])]
    assert all(token_value(s) not in (TOKEN_ABSENT, "ab12") for s in edited)  # set by hand: another token
    p = fake_provider(FakeClient())
    assert p._group_listing([fresh]) == {}  # never an endpoint, nor a marker


def test_throttling_is_retried_with_exponential_backoff_and_jitter() -> None:
    fails = [client_error("Throttling"), client_error("PriorRequestNotComplete"), client_error("Whatever", 429)]
    slept: list[float] = []
    p = fake_provider(FakeClient(fails), rng=random.Random(42), sleep=slept.append)
    assert p.apply([first_write(A, ONE)]) == [Applied(A)]
    expected = random.Random(42)
    assert slept == [expected.uniform(0, 0.2), expected.uniform(0, 0.4), expected.uniform(0, 0.8)]
    assert p.calls["change_resource_record_sets"] == 4


def test_throttling_that_does_not_stop_is_retryable() -> None:
    slept: list[float] = []
    fails = [client_error("Throttling") for _ in range(Route53Provider.MAX_ATTEMPTS)]
    p = fake_provider(FakeClient(fails), rng=random.Random(0), sleep=slept.append)
    with pytest.raises(ProviderUnavailable) as err:
        p.apply([first_write(A, ONE)])
    assert err.value.retry_after > 0
    assert len(slept) == Route53Provider.MAX_ATTEMPTS - 1
    assert all(0 <= s <= min(10.0, 0.2 * 2**i) for i, s in enumerate(slept))


def test_connection_errors_are_provider_unavailable() -> None:
    p = fake_provider(FakeClient([EndpointConnectionError(endpoint_url="http://127.0.0.1:9")]))
    with pytest.raises(ProviderUnavailable):
        p.apply([first_write(A, ONE)])


def test_throttle_budget_is_a_shared_token_bucket() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    budget = ThrottleBudget(5, clock=lambda: now[0], sleep=sleep)
    assert [budget.acquire() for _ in range(5)] == [0.0] * 5  # a burst of 5
    assert budget.acquire() == pytest.approx(0.2)  # then 5 per second
    assert budget.acquire() == pytest.approx(0.2)
    a = fake_provider(FakeClient(), budget=budget)
    b = fake_provider(FakeClient(), budget=budget)
    start = now[0]
    a.read_for_write([A]), b.read_for_write([B])  # two calls each (the token, a page): four from the one bucket
    assert now[0] - start == pytest.approx(0.8)


def test_the_background_leaves_a_reserve_that_writers_never_wait_for() -> None:
    """The verifier's reads (``read``) take a request only while 3 more are left for the writers: a writer's
    small round right after a long background read does not wait, and background calls wait while writers
    keep the bucket low. Without the reserve the writer's three calls would wait 0.6 s."""
    now = [0.0]
    budget = ThrottleBudget(5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    reader = fake_provider(FakeClient(), budget=budget)
    reader.read([key(f"n{i}.demo.test") for i in range(10)])  # a sweep of ten endpoints, tokens or not
    assert [budget.acquire() for _ in range(3)] == [0.0] * 3  # the writer's round: nothing to wait for
    assert budget.acquire(reserve=3) == pytest.approx(0.8)  # the background waits until 4 are back
    assert budget.acquire(reserve=3) == pytest.approx(0.2)
    assert ThrottleBudget(5).acquire(reserve=99) == 0.0  # a reserve is at most the burst less one


def test_one_change_batch_in_flight_per_hosted_zone() -> None:
    client = FakeClient(delay=0.02)
    providers = [fake_provider(client, "ZSHARED") for _ in range(2)]
    errors: list[BaseException] = []

    def work(p: Route53Provider, n: int) -> None:
        try:
            for i in range(5):
                p.apply([first_write(key(f"t{n}-{i}.demo.test"), ONE)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(providers[n % 2], n)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert client.sent == 20 and client.max_active == 1

    other = FakeClient(delay=0.05)  # another zone is not held back by this one's lock
    threads = [threading.Thread(target=fake_provider(other, f"Z{n}").apply, args=([first_write(A, ONE)],))
               for n in range(3)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other.max_active > 1


def stubbed(*errors: tuple[str, str, int]) -> tuple[Route53Provider, Stubber]:
    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    for op, code, status in errors:
        if op == "list":
            stub.add_response("list_resource_record_sets",
                              {"ResourceRecordSets": [], "IsTruncated": False, "MaxItems": "20"})  # fmt: skip
        else:
            stub.add_client_error(op, service_error_code=code, service_message=f"{code} (stubbed)",
                                  http_status_code=status)  # fmt: skip
    stub.activate()
    return fake_provider(client), stub


def test_access_denied_is_permanent_and_names_the_iam_action() -> None:
    p, stub = stubbed(("list_resource_record_sets", "AccessDenied", 403))
    with pytest.raises(Permanent, match="route53:ListResourceRecordSets"):
        p.read([A])
    p, stub = stubbed(("list", "", 0), ("list", "", 0), ("change_resource_record_sets", "AccessDenied", 403))
    with pytest.raises(Permanent, match="route53:ChangeResourceRecordSets") as err:
        p.apply([first_write(A, ONE)])
    assert not isinstance(err.value, ProviderUnavailable)
    stub.assert_no_pending_responses()


def test_no_such_hosted_zone_and_invalid_values_are_permanent() -> None:
    p, _ = stubbed(("list_resource_record_sets", "NoSuchHostedZone", 404))
    with pytest.raises(Permanent, match="no hosted zone ZFAKE"):
        p.read([A])
    # InvalidChangeBatch for one endpoint alone while nothing moved (the re-read shows the same state):
    # not a conflict, and retrying will not help: that endpoint is Rejected, nothing raised
    p, _ = stubbed(("list", "", 0), ("list", "", 0), ("change_resource_record_sets", "InvalidChangeBatch", 400),
                   ("list", "", 0), ("list", "", 0))  # fmt: skip
    (result,) = p.apply([first_write(A, ONE)])
    assert isinstance(result, Rejected) and result.key == A and "InvalidChangeBatch" in result.reason


def test_a_refused_batch_where_nothing_moved_is_narrowed_to_the_endpoint_at_fault() -> None:
    """Two endpoints in one change batch, refused, nothing moved: each is sent alone; the one Route 53
    refuses alone is Rejected, the other written."""
    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)

    def lists(n: int) -> None:
        for _ in range(n):
            stub.add_response("list_resource_record_sets",
                              {"ResourceRecordSets": [], "IsTruncated": False, "MaxItems": "20"})  # fmt: skip

    def refused() -> None:
        stub.add_client_error("change_resource_record_sets", service_error_code="InvalidChangeBatch",
                              service_message="RRSet of type A with DNS name a.demo.test. is not permitted",
                              http_status_code=400)  # fmt: skip

    lists(2)  # the token, then A and B in one sweep
    refused()  # the batch of both
    lists(2)  # re-read (the token, one sweep): nothing moved
    refused()  # A alone
    lists(2)  # A re-read: nothing moved
    stub.add_response("change_resource_record_sets", {"ChangeInfo": {
        "Id": "/change/C1", "Status": "PENDING", "SubmittedAt": datetime.datetime(2026, 1, 1)}})  # B alone
    stub.activate()
    p = fake_provider(client)
    results = p.apply([first_write(A, ONE), first_write(B, ONE)])
    assert isinstance(results[0], Rejected) and "not permitted" in results[0].reason
    assert results[1] == Applied(B)
    assert p.writes == 1
    stub.assert_no_pending_responses()
