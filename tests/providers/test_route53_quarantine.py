"""Route 53: an endpoint Route 53 can never hold is ``Rejected`` before any call, and never blocks the
others of its batch (issue 14, part 3), on ministack, which itself accepts 101 weighted sets and long
names (Route 53 refuses both: batches.py cites the quotas)."""

from __future__ import annotations

import logging

import pytest

from dnsplane.model import Observed, Write
from dnsplane.providers.base import Applied, Rejected
from dnsplane.providers.route53 import Route53Provider
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.ministack import Ministack, ministack, ministack_direct  # noqa: F401 - fixtures

GOOD = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2"))
CROWD = rs(*(member(f"lb{i:03d}", f"198.51.100.{i % 250 + 1}") for i in range(101)))  # 101 weighted targets
LONG_NAME = ".".join(["x" * 60, "y" * 60, "z" * 60, "w" * 55]) + ".demo.test"  # its A marker name: 262 octets


@pytest.fixture
def r53(ministack: Ministack) -> Route53Provider:  # noqa: F811
    return ministack.provider(ZONE)


def test_endpoints_route53_can_never_hold_are_rejected_before_any_call_and_the_others_written(
    r53: Route53Provider, caplog: pytest.LogCaptureFixture
) -> None:
    good = [key("a.demo.test"), key("b.demo.test")]
    crowd, long = key("crowd.demo.test"), key(LONG_NAME)
    writes = [Write(good[0], None, GOOD, marker(1, GOOD)), Write(crowd, None, CROWD, marker(1, CROWD)),
              Write(long, None, GOOD, marker(1, GOOD)), Write(good[1], None, GOOD, marker(1, GOOD))]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="dnsplane.providers.route53"):
        results = r53.apply(writes)
    assert results[0] == Applied(good[0]) and results[3] == Applied(good[1])
    assert isinstance(results[1], Rejected) and "at most 100 weighted record sets" in results[1].reason
    assert isinstance(results[2], Rejected) and "262 octets" in results[2].reason
    assert r53.calls["change_resource_record_sets"] == 1  # the good ones, in one batch; nothing sent for the bad
    assert r53.read([*good, crowd, long]) == {
        good[0]: Observed(GOOD, marker(1, GOOD)), good[1]: Observed(GOOD, marker(1, GOOD)),
        crowd: Observed(None, None), long: Observed(None, None)}  # fmt: skip
    logged = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "route53_rejected"]
    assert any("crowd.demo.test" in m and "weighted" in m for m in logged)


def test_batch_cost_counts_as_route53_counts() -> None:
    """DELETEs and CREATEs both count, an UPSERT twice, a TXT value as sent (its quotes included)."""
    from dnsplane.providers.route53.batches import batch_cost, name_octets

    txt = {"Name": "t.demo.test.", "Type": "TXT", "TTL": 300, "ResourceRecords": [{"Value": '"abc"'}]}
    a = {"Name": "a.demo.test.", "Type": "A", "TTL": 30,
         "ResourceRecords": [{"Value": "192.0.2.1"}, {"Value": "192.0.2.22"}]}
    swap = [{"Action": "DELETE", "ResourceRecordSet": a}, {"Action": "CREATE", "ResourceRecordSet": a}]
    assert batch_cost(swap) == (4, 38)
    assert batch_cost([{"Action": "UPSERT", "ResourceRecordSet": txt}]) == (2, 10)
    assert name_octets("a.demo.test.") == 13 and name_octets(".") == 1
