"""bench/route53_tap.py, the counting proxy of bench/route53_scale.py, against real ministack: what it
counts agrees with what was sent (the provider's own count of its calls, a change batch of known size),
and it passes answers on unchanged (a refusal stays a refusal)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bench.route53_tap import route53_tap
from dnsplane.model import Write
from dnsplane.providerconfig import Route53Config
from dnsplane.providers.base import Applied
from dnsplane.providers.route53 import Route53Provider, ThrottleBudget
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.ministack import Ministack, ministack, ministack_direct  # noqa: F401 - fixture
from tests.servers.route53_rules import action_of

ACTIONS = {"list_resource_record_sets": "ListResourceRecordSets", "change_resource_record_sets":
           "ChangeResourceRecordSets", "get_hosted_zone": "GetHostedZone", "get_change": "GetChange"}


def weighted(name: str, sid: str, *values: str) -> dict[str, Any]:
    return {"Name": name, "Type": "A", "SetIdentifier": sid, "Weight": 1, "TTL": 30,
            "ResourceRecords": [{"Value": v} for v in values]}


def test_the_tap_counts_what_the_provider_says_it_called(ministack: Ministack) -> None:  # noqa: F811
    zone_id = ministack.create_zone(ZONE)
    with route53_tap(ministack.url) as tap:
        p = Route53Provider(ZONE, Route53Config(zone_id, endpoint_url=tap.url), budget=ThrottleBudget(10_000))
        keys = [key(f"e{i}.demo.test") for i in range(8)]  # enough for a zone listing, not one read per key
        records = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2"))
        seen = p.read(keys)
        results = p.apply([Write(k, seen[k].marker, records, marker(1, records), seen[k].records) for k in keys])
        assert all(isinstance(r, Applied) and r.written for r in results), results
        p.read(keys)
    counted = Counter(c.action for c in tap.events)
    assert counted == Counter({ACTIONS[op]: n for op, n in p.calls.items()}), (counted, p.calls)
    assert counted["ChangeResourceRecordSets"] >= 1 and all(c.status == 200 for c in tap.events)


def test_the_tap_counts_changes_records_and_listings_and_passes_a_refusal_on(ministack: Ministack) -> None:  # noqa: F811
    zone_id = ministack.create_zone(ZONE)
    with route53_tap(ministack.url) as tap:
        client = boto3.client("route53", endpoint_url=tap.url, region_name="us-east-1")
        batch = [("CREATE", weighted(f"a.{ZONE}", "lb1", "192.0.2.1", "192.0.2.2")),
                 ("CREATE", weighted(f"a.{ZONE}", "lb2", "192.0.2.3")),
                 ("CREATE", weighted(f"b.{ZONE}", "lb1", "192.0.2.4", "192.0.2.5"))]
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
            "Changes": [{"Action": a, "ResourceRecordSet": s} for a, s in batch]})
        client.list_resource_record_sets(HostedZoneId=zone_id)
        client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=f"b.{ZONE}", StartRecordType="A")
        mark = tap.mark()
        with pytest.raises(ClientError, match="InvalidChangeBatch"):  # DELETE of a set that is not there
            client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
                "Changes": [{"Action": "DELETE", "ResourceRecordSet": weighted(f"c.{ZONE}", "lb9", "192.0.2.9")}]})
    accepted, whole, ranged, refused = tap.events
    assert (accepted.action, accepted.changes, accepted.records, accepted.status) == \
        ("ChangeResourceRecordSets", 3, 5, 200)
    assert (whole.action, whole.zone_listing) == ("ListResourceRecordSets", True)
    assert (ranged.action, ranged.zone_listing) == ("ListResourceRecordSets", False)
    assert refused.status == 400 and not refused.throttled
    summary = tap.summary(0)
    assert (summary.batch_records, summary.refused, summary.zone_listings) == ((5,), 1, 1)
    assert tap.summary(mark).calls == Counter({"ChangeResourceRecordSets": 1})


@pytest.mark.parametrize(("method", "path", "action"), [
    ("POST", "/2013-04-01/hostedzone/Z1/rrset/", "ChangeResourceRecordSets"),
    ("GET", "/2013-04-01/hostedzone/Z1/rrset?maxitems=300&name=a.demo.test.", "ListResourceRecordSets"),
    ("GET", "/2013-04-01/hostedzone/Z1", "GetHostedZone"),
    ("GET", "/2013-04-01/hostedzone", "ListHostedZones"),
    ("GET", "/2013-04-01/hostedzonesbyname?dnsname=demo.test.", "ListHostedZonesByName"),
    ("GET", "/2013-04-01/change/C1", "GetChange"),
    ("GET", "/2013-04-01/healthcheck", "ListHealthChecks"),
    ("DELETE", "/2013-04-01/hostedzone/Z1", "DeleteHostedZone"),
    ("PUT", "/2013-04-01/hostedzone/Z1", "PUT /hostedzone/Z1"),  # no action of the table: said as it came
])
def test_action_names(method: str, path: str, action: str) -> None:
    assert action_of(method, path)[0] == action
