"""Route53Provider's reads in proportion to what changed (issue 14, part 1), on ministack.

API calls are counted as they leave botocore (a ``before-call`` event hook on the client), not by the
provider's own counter: a round is one ``read_for_write`` or one ``apply`` (with the enactor's write token
read before it, as ``execute.fence_read`` does).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import boto3
import pytest

from dnsplane.model import EndpointKey, Observed, RecordSet, Write
from dnsplane.providerconfig import Route53Config
from dnsplane.providers.base import Applied, Conflict
from dnsplane.providers.route53 import Route53Provider, ThrottleBudget
from dnsplane.providers.route53.reads import PAGE
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.ministack import Ministack, ministack, ministack_direct  # noqa: F401 - fixtures

ONE = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2", weight=3))
TWO = rs(member("lb1", "192.0.2.1"), member("lb3", "192.0.2.3"))


class Counted:
    """A provider on a fresh zone whose client counts every API call it sends, by action."""

    def __init__(self, ministack: Ministack) -> None:  # noqa: F811
        self.sent: Counter[str] = Counter()
        client = boto3.client("route53", endpoint_url=ministack.url, region_name="us-east-1")
        client.meta.events.register("before-call.route53.*", self._count)
        config = Route53Config(ministack.create_zone(ZONE), endpoint_url=ministack.url)
        self.provider = Route53Provider(ZONE, config, client=client, budget=ThrottleBudget(10_000))
        self.client = client

    def _count(self, model: Any, **_: Any) -> None:
        self.sent[model.name] += 1

    def round(self, fn: Any, *args: Any) -> tuple[Any, Counter[str]]:
        before = Counter(self.sent)
        out = fn(*args)
        return out, self.sent - before

    def enact(self, reads: dict[EndpointKey, Observed], new: dict[EndpointKey, tuple[RecordSet, int]]
              ) -> tuple[list[Any], Counter[str]]:
        """An enactor's write round: the token read before the store, then one apply of writes carrying it."""
        def write() -> list[Any]:
            token = self.provider.write_token()
            return self.provider.apply([
                Write(k, reads[k].marker, records, marker(g, records), reads[k].records, token)
                for k, (records, g) in new.items()
            ])
        return self.round(write)


@pytest.fixture
def counted(ministack: Ministack) -> Counted:  # noqa: F811
    return Counted(ministack)


def test_a_one_percent_change_of_2000_endpoints_reads_at_most_once_per_round(counted: Counted) -> None:
    p = counted.provider
    keys = [key(f"svc-{i:04d}.demo.test") for i in range(2_000)]
    p.read_all()  # `dnsplane up`'s preflight lists the zone once
    first: list[Counter[str]] = []
    for i in range(0, len(keys), 50):  # the first write, as enactors send it: 50 endpoints a round
        batch = keys[i:i + 50]
        seen, spent = counted.round(p.read_for_write, batch)
        first.append(spent)
        results, spent = counted.enact(seen, {k: (ONE, 1) for k in batch})
        first.append(spent)
        assert results == [Applied(k) for k in batch]
    # an enactor's read: the token only (the view knows the zone); its apply: the token read before the
    # store, then the 50 endpoints swept, as a first write is never decided on the view
    assert {r["ListResourceRecordSets"] for r in first[0::2]} == {1}, first
    assert max(r["ListResourceRecordSets"] for r in first[1::2]) <= 3, first
    zone_pages = (len(keys) * 3) // PAGE  # two members and a marker each: one listing is 20 pages
    changed = random.Random(14).sample(keys, 20)  # 1 %, spread over the zone
    rounds: list[Counter[str]] = []
    for half in (changed[:10], changed[10:]):  # two enactors splitting the endpoints, one provider per process
        seen, spent = counted.round(p.read_for_write, half)
        rounds.append(spent)
        assert seen == {k: Observed(ONE, marker(1, ONE)) for k in half}
        results, spent = counted.enact(seen, {k: (TWO, 2) for k in half})
        rounds.append(spent)
        assert results == [Applied(k) for k in half]
    assert [r["ListResourceRecordSets"] for r in rounds] == [1, 1, 1, 1], rounds
    assert [r["ChangeResourceRecordSets"] for r in rounds] == [0, 1, 0, 1]
    assert sum(r["ListResourceRecordSets"] for r in rounds) < zone_pages
    # what Route 53 holds now, read with a sweep of 20 keys: at most a call per key, never a zone listing
    fresh, spent = counted.round(p.read, keys)
    assert fresh == {k: Observed(TWO, marker(2, TWO)) if k in changed else Observed(ONE, marker(1, ONE))
                     for k in keys}  # fmt: skip
    assert spent["ListResourceRecordSets"] <= zone_pages + 2  # the whole zone: one listing's pages, and the token
    _, spent = counted.round(p.read, changed)
    assert spent["ListResourceRecordSets"] <= len(changed) + 1
    assert p.stats()["last_round"] == {"kind": "read", "endpoints": 20, "calls": {
        "list_resource_record_sets": spent["ListResourceRecordSets"]}}


def test_a_read_whose_token_an_apply_moved_meanwhile_does_not_replace_the_view(counted: Counted) -> None:
    """The verifier's read (token, then a sweep) and an enactor's apply run in two threads: an apply that
    lands between the read's token and its sweep leaves the view at its own new token; the read's states,
    under the older token, used to replace that view, and every enactor read after it swept the zone again
    (seen in bench/route53_scale.py: a 1 % change cost each enactor a sweep). Here the interleaving is
    replayed step by step."""
    p = counted.provider
    keys = [key(f"svc-{i}.demo.test") for i in range(4)]
    seen, _ = counted.round(p.read_for_write, keys)
    counted.enact(seen, {k: (ONE, 1) for k in keys})
    since = p.view.epoch  # the verifier's read begins: the token first
    older = p._token_set()
    seen, _ = counted.round(p.read_for_write, keys)  # an enactor's round lands meanwhile
    results, _ = counted.enact(seen, {k: (TWO, 2) for k in keys})
    assert results == [Applied(k) for k in keys]
    p.view.put(older, p._swept(keys), since=since)  # the verifier's sweep ends, under the older token
    seen, spent = counted.round(p.read_for_write, keys)
    assert seen == {k: Observed(TWO, marker(2, TWO)) for k in keys}
    assert spent == Counter({"ListResourceRecordSets": 1}), "the token alone: the view was kept"


def test_a_hand_edit_the_view_missed_makes_the_write_refused_by_route53_never_lost(counted: Counted) -> None:
    p, a = counted.provider, key("a.demo.test")
    seen = p.read_for_write([a])
    counted.enact(seen, {a: (ONE, 1)})
    # a person changes a weight at the console: the write token does not move, the view does not see it
    sets = counted.client.list_resource_record_sets(HostedZoneId=p.hosted_zone_id)["ResourceRecordSets"]
    old = next(s for s in sets if s.get("SetIdentifier") == "lb2")
    counted.client.change_resource_record_sets(HostedZoneId=p.hosted_zone_id, ChangeBatch={"Changes": [
        {"Action": "DELETE", "ResourceRecordSet": old},
        {"Action": "CREATE", "ResourceRecordSet": {**old, "Weight": 200}}]})  # fmt: skip
    stale = p.read_for_write([a])
    assert stale[a] == Observed(ONE, marker(1, ONE))  # from the view: one call, the token
    results, spent = counted.enact(stale, {a: (TWO, 2)})
    # decided on the view, DELETEd exactly as the view held it: Route 53 refused it; re-read, a conflict
    assert results == [Conflict(a, marker(1, ONE))]
    assert spent["ChangeResourceRecordSets"] == 1 and p.writes == 1
    now = p.read([a])[a]
    assert now.marker == marker(1, ONE) and now.records is not None
    assert {m.target_id: m.weight for m in now.records.members} == {"lb1": 1, "lb2": 200}  # the edit stands


def test_a_sweep_reads_names_whose_order_differs_between_labels_and_strings(counted: Counted) -> None:
    """``a-b.x`` sorts before ``a.x`` as one string (Route 53's documented order) and after it label by
    label (ministack's): the sweep reads both right whatever the order."""
    p = counted.provider
    names = ["a.x.demo.test", "a-b.x.demo.test", "a.a-b.x.demo.test", "b.x.demo.test", "x.demo.test", "0.a.x.demo.test"]
    keys = [key(n) for n in names] + [key("a.x.demo.test", "AAAA")]
    recs = {k: ONE if k.rtype == "A" else rs(member("lb1", "2001:db8::1")) for k in keys}
    assert p.apply([Write(k, None, r, marker(1, r)) for k, r in recs.items()]) == [Applied(k) for k in keys]
    assert p.read(keys) == {k: Observed(r, marker(1, r)) for k, r in recs.items()}
    absent = [key("zz.demo.test"), key("a-a.x.demo.test")]
    assert p.read(absent) == {k: Observed(None, None) for k in absent}


def test_a_first_write_is_never_decided_on_the_view_a_set_added_by_hand_is_seen(counted: Counted) -> None:
    p, a = counted.provider, key("a.demo.test")
    p.read_all()  # the view is the whole zone: ``a`` is empty without a call
    counted.client.change_resource_record_sets(HostedZoneId=p.hosted_zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {"Name": "a.demo.test.", "Type": "A", "TTL": 30,
                                                   "ResourceRecords": [{"Value": "203.0.113.9"}]}}]})  # fmt: skip
    seen, spent = counted.round(p.read_for_write, [a])
    assert seen == {a: Observed(None, None)} and spent["ListResourceRecordSets"] == 1
    results, spent = counted.enact(seen, {a: (ONE, 1)})
    assert results == [Conflict(a, None)]  # a first write is re-read in the apply: the hand's set found (I7)
    assert spent["ChangeResourceRecordSets"] == 0 and p.writes == 0
    now = p.read([a])[a]
    assert now.marker is None and now.records is not None and list(now.records.addresses()) == ["203.0.113.9"]


def test_a_member_set_the_write_keeps_is_not_deleted_and_created_again(counted: Counted) -> None:
    """A write that replaces one target of two sends the marker's DELETE and CREATE, the dropped set's DELETE
    and the new set's CREATE: the set it keeps is left alone (it cost two records a batch and, on ministack,
    O(zone) time each); the zone view then holds the kept set as it is, so the next write is decided on it
    without a read."""
    p = counted.provider
    sent: list[list[dict[str, Any]]] = []
    counted.client.meta.events.register(
        "provide-client-params.route53.ChangeResourceRecordSets",
        lambda params, **_: sent.append(params["ChangeBatch"]["Changes"]))
    api = key("api.demo.test")
    seen, _ = counted.round(p.read_for_write, [api])
    counted.enact(seen, {api: (ONE, 1)})
    seen, _ = counted.round(p.read_for_write, [api])
    results, _ = counted.enact(seen, {api: (TWO, 2)})
    assert results == [Applied(api)]
    endpoint = [(c["Action"], c["ResourceRecordSet"].get("SetIdentifier") or c["ResourceRecordSet"]["Type"])
                for c in sent[-1] if "_dnsplane-token" not in c["ResourceRecordSet"]["Name"]]
    assert sorted(endpoint) == [("CREATE", "TXT"), ("CREATE", "lb3"), ("DELETE", "TXT"), ("DELETE", "lb2")], endpoint
    assert p.read([api])[api] == Observed(TWO, marker(2, TWO))
    seen, spent = counted.round(p.read_for_write, [api])  # the view kept lb1 as it is: no sweep
    assert seen[api] == Observed(TWO, marker(2, TWO)) and spent == Counter({"ListResourceRecordSets": 1})


def test_a_write_that_creates_no_member_set_still_holds_one_it_keeps_exactly(counted: Counted) -> None:
    """The hostile case of leaving kept sets alone: a person deletes the one set a write keeps (no token move:
    the view still holds it) while the write drops the other. Left alone, the batch (the other set's DELETE
    and the marker's) was accepted and the endpoint was left with no record at all (I1) until the verifier
    came. A write that CREATEs no member set DELETEs and CREATEs one set it keeps, exactly: Route 53 refuses
    the batch, the endpoint is read again, and the write puts the set back."""
    p = counted.provider
    api = key("api.demo.test")
    seen, _ = counted.round(p.read_for_write, [api])
    counted.enact(seen, {api: (ONE, 1)})
    seen, _ = counted.round(p.read_for_write, [api])  # the enactor's read, from the view
    lb1 = [s for s in counted.client.list_resource_record_sets(HostedZoneId=p.hosted_zone_id)["ResourceRecordSets"]
           if s.get("SetIdentifier") == "lb1"]
    counted.client.change_resource_record_sets(  # by hand: the token stays, the view does not see it
        HostedZoneId=p.hosted_zone_id, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": lb1[0]}]})
    kept_only = rs(member("lb1", "192.0.2.1"))
    results, _ = counted.enact(seen, {api: (kept_only, 2)})
    assert [type(r) for r in results] == [Conflict], "refused: the records are not those it read"
    left = p.read([api])[api]
    assert left.records is not None and left.records.live_members(), "never left empty"
    seen, _ = counted.round(p.read_for_write, [api])  # the enactor reads again and writes
    results, _ = counted.enact(seen, {api: (kept_only, 2)})
    assert results == [Applied(api)]
    assert p.read([api])[api] == Observed(kept_only, marker(2, kept_only))
