"""The rules proxy (tests/servers/route53_rules.py) refuses what Route 53 documents it refuses, as Route 53 answers.

Each rule: a batch just past the limit is refused through the proxy with Route 53's code and HTTP
status, and changes nothing; the same batch is accepted by ministack alone (so the proxy is what
refuses it); a batch at the limit passes. Then the proxy agrees with ministack on everything else:
random batches within the limits get the same answers and leave the same zone through both.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.servers.ministack import Ministack, ministack_direct  # noqa: F401 - module fixture
from tests.servers.route53_limits import NS, name_octets, txt_string_lengths
from tests.servers.route53_rules import RulesProxy, route53_rules

ZONE = "demo.test."


def client(url: str) -> Any:
    return boto3.client(
        "route53",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def rules(ministack_direct: Ministack) -> Iterator[RulesProxy]:  # noqa: F811
    with route53_rules(ministack_direct.url, rate=10_000) as proxy:
        yield proxy


class Zones:
    """One hosted zone reached through the proxy, another reached directly: the same batches go to both."""

    def __init__(self, rules: RulesProxy, direct: Ministack) -> None:
        self.rules, self.via, self.raw = rules, client(rules.url), client(direct.url)
        self.via_id, self.raw_id = (self._zone(c) for c in (self.via, self.raw))

    @staticmethod
    def _zone(c: Any) -> str:
        return str(c.create_hosted_zone(Name=ZONE, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]).rsplit("/")[
            -1
        ]

    def change(self, *changes: tuple[str, dict[str, Any]], direct: bool = False) -> str:
        """Send a batch; returns "" when accepted, else the error code."""
        c, zid = (self.raw, self.raw_id) if direct else (self.via, self.via_id)
        try:
            c.change_resource_record_sets(
                HostedZoneId=zid, ChangeBatch={"Changes": [{"Action": a, "ResourceRecordSet": s} for a, s in changes]}
            )
        except ClientError as err:
            assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            return str(err.response["Error"]["Code"])
        return ""

    def listed(self, direct: bool = False) -> list[dict[str, Any]]:
        c, zid = (self.raw, self.raw_id) if direct else (self.via, self.via_id)
        sets = []
        for page in c.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zid):
            sets += [s for s in page["ResourceRecordSets"] if s["Type"] not in ("SOA", "NS")]
        return sets

    def refused(self, code: str, *changes: tuple[str, dict[str, Any]]) -> None:
        """Refused through the proxy with ``code``, nothing changed; accepted by ministack alone on a zone
        holding the same record sets."""
        before, refusals = self.listed(), self.rules.refusals[code]
        assert self.change(*changes) == code
        assert self.listed() == before
        assert self.rules.refusals[code] == refusals + 1
        self.raw_id = self._zone(self.raw)
        if before:
            assert self.change(*[("CREATE", s) for s in before], direct=True) == ""
        assert self.change(*changes, direct=True) == ""


@pytest.fixture
def zones(rules: RulesProxy, ministack_direct: Ministack) -> Zones:  # noqa: F811
    return Zones(rules, ministack_direct)


def a(name: str, *values: str, sid: str | None = None, ttl: int = 30) -> dict[str, Any]:
    s: dict[str, Any] = {"Name": name, "Type": "A", "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]}
    if sid is not None:
        s |= {"SetIdentifier": sid, "Weight": 1}
    return s


def txt(name: str, *values: str) -> dict[str, Any]:
    return {"Name": name, "Type": "TXT", "TTL": 30, "ResourceRecords": [{"Value": v} for v in values]}


def creates(sets: list[dict[str, Any]], action: str = "CREATE") -> list[tuple[str, dict[str, Any]]]:
    return [(action, s) for s in sets]


# -- each rule ------------------------------------------------------------------------


def test_records_per_batch_1000_and_upsert_counts_twice(zones: Zones) -> None:
    many = [a(f"h{i}.demo.test.", "192.0.2.1") for i in range(1001)]
    zones.refused("InvalidChangeBatch", *creates(many))
    assert zones.change(*creates(many[:1000])) == ""
    fresh = [a(f"u{i}.demo.test.", "192.0.2.2") for i in range(501)]
    zones.refused("InvalidChangeBatch", *creates(fresh, "UPSERT"))
    assert zones.change(*creates(fresh[:500], "UPSERT")) == ""
    assert len(zones.listed()) == 1500


def test_characters_of_values_per_batch_32000(zones: Zones) -> None:
    # 125 values of 256 characters: exactly 32,000
    values = ['"' + f"{j:02}" + "x" * 252 + '"' for j in range(25)]
    assert {len(v) for v in values} == {256}
    at_limit = [txt(f"t{i}.demo.test.", *values) for i in range(5)]
    over = [*at_limit[:4], txt("t4.demo.test.", *(v["Value"] for v in at_limit[4]["ResourceRecords"]), '"y"')]
    zones.refused("InvalidChangeBatch", *creates(over))
    assert zones.change(*creates(at_limit)) == ""


def test_weighted_sets_per_name_and_type_100(zones: Zones) -> None:
    hundred = [a("w.demo.test.", f"192.0.2.{i % 250 + 1}", sid=f"lb{i}") for i in range(100)]
    zones.refused("InvalidChangeBatch", *creates([*hundred, a("w.demo.test.", "192.0.2.9", sid="lb100")]))
    assert zones.change(*creates(hundred)) == ""
    # the 101st in a later batch: the proxy counts what ministack holds
    zones.refused("InvalidChangeBatch", ("CREATE", a("w.demo.test.", "192.0.2.9", sid="lb100")))
    # one out, one in: still 100
    assert zones.change(("DELETE", hundred[0]), ("CREATE", a("w.demo.test.", "192.0.2.9", sid="lb100"))) == ""


def test_cname_shares_its_name_with_no_other_type(zones: Zones) -> None:
    cname = {"Name": "c.demo.test.", "Type": "CNAME", "TTL": 30, "ResourceRecords": [{"Value": "x.demo.test."}]}
    assert zones.change(("CREATE", a("c.demo.test.", "192.0.2.1", sid="lb1"))) == ""
    zones.refused("InvalidChangeBatch", ("CREATE", cname))  # beside an A already there
    zones.refused("InvalidChangeBatch", ("CREATE", cname | {"Name": "d.demo.test."}),
                  ("CREATE", txt("d.demo.test.", '"v"')))  # fmt: skip  # both in one batch
    # the A replaced by the CNAME in one batch: allowed; then nothing else may join it
    assert zones.change(("DELETE", a("c.demo.test.", "192.0.2.1", sid="lb1")), ("CREATE", cname)) == ""
    zones.refused("InvalidChangeBatch", ("CREATE", txt("c.demo.test.", '"v"')))


def test_name_255_octets_and_label_63(zones: Zones) -> None:
    label = "a" * 63
    long_name = ".".join([label] * 3 + ["b" * 53, "demo", "test"])  # 63 * 3 + 53 + 4 + 4 + 5 dots = 255
    assert sum(map(len, name_octets(long_name))) + len(name_octets(long_name)) - 1 == 255
    assert zones.change(("CREATE", a(long_name + ".", "192.0.2.1"))) == ""
    zones.refused("InvalidChangeBatch", ("CREATE", a("c" + long_name + ".", "192.0.2.1")))
    zones.refused("InvalidChangeBatch", ("CREATE", a("a" + label + ".demo.test.", "192.0.2.1")))
    zones.refused("InvalidChangeBatch", ("CREATE", a("\\141" * 64 + ".demo.test.", "192.0.2.1")))  # \141 is one octet


def test_txt_strings_of_255_characters(zones: Zones) -> None:
    assert txt_string_lengths('"ab" "c\\"d" "\\065"') == [2, 3, 1]
    assert zones.change(("CREATE", txt("t.demo.test.", '"' + "x" * 255 + '" "' + "y" * 255 + '"'))) == ""
    zones.refused("InvalidChangeBatch", ("CREATE", txt("u.demo.test.", '"' + "x" * 256 + '"')))
    zones.refused("InvalidChangeBatch", ("CREATE", txt("v.demo.test.", '"ok" "' + "x" * 255 + '\\""')))


def test_refusals_have_route53s_error_document(zones: Zones) -> None:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><ChangeResourceRecordSetsRequest xmlns="{NS}"><ChangeBatch><Changes>'
        "<Change><Action>CREATE</Action><ResourceRecordSet><Name>t.demo.test.</Name><Type>TXT</Type><TTL>30</TTL>"
        f'<ResourceRecords><ResourceRecord><Value>"{"x" * 300}"</Value></ResourceRecord></ResourceRecords>'
        "</ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
    )
    req = urllib.request.Request(
        f"{zones.rules.url}/2013-04-01/hostedzone/{zones.via_id}/rrset/",
        body.encode(),
        {"Content-Type": "text/xml"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(req, timeout=10)
    assert answer.value.code == 400
    root = ElementTree.fromstring(answer.value.read())
    q = f"{{{NS}}}"
    assert root.tag == f"{q}ErrorResponse"
    assert [e.tag for e in root] == [f"{q}Error", f"{q}RequestId"]
    assert [e.tag for e in root.find(f"{q}Error")] == [f"{q}Type", f"{q}Code", f"{q}Message"]  # type: ignore[union-attr]
    assert root.findtext(f"{q}Error/{q}Code") == "InvalidChangeBatch"
    assert root.findtext(f"{q}Error/{q}Type") == "Sender"


def test_throttling_beyond_the_accounts_rate(ministack_direct: Ministack) -> None:  # noqa: F811
    with route53_rules(ministack_direct.url, rate=5) as proxy:
        c = client(proxy.url)
        codes = []
        for _ in range(12):  # back to back: far faster than 5/s on loopback
            try:
                c.list_hosted_zones()
                codes.append("")
            except ClientError as err:
                assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
                assert err.response["Error"]["Message"] == "Rate exceeded"
                codes.append(err.response["Error"]["Code"])
        assert codes[:5] == [""] * 5 and "Throttling" in codes[5:]
        assert proxy.calls["ListHostedZones"] == 12 and proxy.refusals["Throttling"] == codes.count("Throttling")
        deadline = time.monotonic() + 5
        while True:  # the bucket refills at 5/s
            try:
                c.list_hosted_zones()
                break
            except ClientError:
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_prior_request_not_complete_while_pending_then_insync(ministack_direct: Ministack) -> None:  # noqa: F811
    with route53_rules(ministack_direct.url, rate=10_000, insync_after=1.5) as proxy:
        zones = Zones(proxy, ministack_direct)
        first = zones.via.change_resource_record_sets(
            HostedZoneId=zones.via_id,
            ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": a("p.demo.test.", "192.0.2.1")}]},
        )
        change_id = first["ChangeInfo"]["Id"]
        assert zones.via.get_change(Id=change_id)["ChangeInfo"]["Status"] == "PENDING"
        assert proxy.pending_changes() == [change_id.rsplit("/", 1)[-1]]
        zones.refused("PriorRequestNotComplete", ("CREATE", a("q.demo.test.", "192.0.2.2")))
        deadline = time.monotonic() + 10
        while zones.via.get_change(Id=change_id)["ChangeInfo"]["Status"] != "INSYNC":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert proxy.pending_changes() == []
        assert zones.change(("CREATE", a("q.demo.test.", "192.0.2.2"))) == ""
        assert proxy.calls["GetChange"] >= 2 and proxy.calls["ChangeResourceRecordSets"] == 3


# -- everything else as ministack answers -------------------------------------------------------


def test_within_the_limits_the_proxy_agrees_with_ministack(zones: Zones) -> None:
    rng = random.Random(14)
    names = [f"n{i}.demo.test." for i in range(4)]
    pool = [
        a(n, f"192.0.2.{v}", sid=sid, ttl=ttl)
        for n in names
        for v in (1, 2)
        for sid in (None, "lb1", "lb2")
        for ttl in (30, 60)
    ] + [txt(n, '"t"') for n in names]
    codes = []
    for _ in range(60):
        batch = [(rng.choice(["CREATE", "DELETE", "UPSERT"]), rng.choice(pool)) for _ in range(rng.randint(1, 4))]
        # the pool mixes simple and weighted A sets at one name: Route 53 refuses that, ministack and the
        # proxy do not check it (a gap of both, not one of the rules here)
        via, raw = zones.change(*batch), zones.change(*batch, direct=True)
        assert via == raw, batch
        codes.append(via)
        assert zones.listed() == zones.listed(direct=True)
    assert "" in codes and "InvalidChangeBatch" in codes  # both kinds of answers were compared


def test_the_sweep_finds_what_a_whole_listing_finds_in_fewer_pages(zones: Zones) -> None:
    """``sets_named`` (one sweep in ministack's listing order) returns exactly the sets a listing of the whole
    zone has at those names: names next to each other, far apart, absent, with a hyphen (it sorts below the
    dot), and one with more sets than a page (it goes on over the page's end)."""
    sets = [a(f"n{i}.{ZONE}", "192.0.2.1") for i in range(400)]
    sets += [txt(f"_m.n{i}.{ZONE}", '"x"') for i in range(0, 400, 3)]
    sets += [a(f"big.{ZONE}", f"192.0.2.{k % 250 + 1}", sid=f"s{k}") for k in range(100)]
    sets += [a(f"wide-{i}.x.{ZONE}", "192.0.2.9") for i in range(250)] + [a(f"wide.{ZONE}", "192.0.2.8")]
    for i in range(0, len(sets), 500):
        assert zones.change(*creates(sets[i:i + 500])) == ""
    whole = zones.listed()
    rng = random.Random(14)
    names = [s["Name"] for s in sets]
    pages: list[dict[str, str]] = []
    page = zones.rules.page
    zones.rules.page = lambda zone_id, query: (pages.append(query), page(zone_id, query))[1]  # type: ignore[method-assign]
    try:
        for wanted, most in (([f"n{i}.{ZONE}" for i in range(40, 70)], 1),
                             (rng.sample(names, 60), len(whole) // 300 + 1), ([f"big.{ZONE}", f"wide.{ZONE}"], 2),
                             (names, len(whole) // 300 + 1),  # every name: those at the pages' ends too
                             ([f"absent.{ZONE}", f"n5.{ZONE}", f"zzz.{ZONE}", f"wide-7.x.{ZONE}", f"_m.n3.{ZONE}"], 5)):
            pages.clear()
            got = zones.rules.sets_named(zones.via_id, wanted)
            assert sorted(s.name + s.rtype + (s.set_id or "") for s in got) == sorted(
                s["Name"] + s["Type"] + s.get("SetIdentifier", "") for s in whole if s["Name"] in wanted)
            assert len(pages) <= most, (wanted, pages)
    finally:
        del zones.rules.page
