"""The servers watch (issue 12, part 3), against a stub DNS server on loopback that answers markers and
addresses as a secondary (or Route 53's name servers) would: one that answers nothing is alerted
unreachable (once) and repaired when it answers again; an endpoint whose marker there names an older
generation than the primary's is alerted stale only after the grace, once, and repaired when it catches
up; NXDOMAIN, an empty answer, a truncated one and an address the primary does not hold are each their
own finding; the sample goes round the fleet."""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from dnsplane.model import EndpointKey, marker_name
from dnsplane.runtime.secondaries import SecondaryWatch
from tests.fakes import ZONE, MemoryProvider, key, marker, member, rs
from tests.servers.dnsstub import StubServer

API, WWW = key("api." + ZONE), key("www." + ZONE)


class Zone:
    """What the stub server serves: a marker generation per endpoint (None: no marker), its address (None:
    NXDOMAIN, "": no address record), answers truncated, or silence."""

    def __init__(self) -> None:
        self.generation: dict[EndpointKey, int | None] = {}
        self.address: dict[EndpointKey, str | None] = {}
        self.truncated = False
        self.silent = False

    def answer(self, query: dns.message.Message) -> Any:
        if self.silent:
            return None
        response = dns.message.make_response(query)
        name = query.question[0].name
        if self.truncated:
            response.flags |= dns.flags.TC
            return response
        for k, g in self.generation.items():
            if g is not None and dns.name.from_text(marker_name(k)) == name:
                text = marker(g, rs(member("a", "192.0.2.1"))).to_text()
                response.answer.append(dns.rrset.from_text(name, 30, "IN", "TXT", '"dnsplane-rs 0" "{}"', f'"{text}"'))
            if dns.name.from_text(k.name) == name and query.question[0].rdtype == dns.rdatatype.A:
                address = self.address.get(k, "192.0.2.1")
                if address is None:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                elif address:
                    response.answer.append(dns.rrset.from_text(name, 30, "IN", "A", address))
        return response


def primary(generation: int) -> MemoryProvider:
    p = MemoryProvider(ZONE)
    for k in (API, WWW):
        p.hand_edit(k, rs(member("a", "192.0.2.1")), marker(generation, rs(member("a", "192.0.2.1"))))
    return p


def test_unreachable_and_stale_are_alerted_once_after_the_grace_and_repaired() -> None:
    zone = Zone()
    alerts: list[tuple[str, dict[str, Any]]] = []
    with StubServer(zone.answer, quiet=0.01) as stub:
        watch = SecondaryWatch([("127.0.0.1", stub.port)], [API, WWW], 2, grace=10.0,
                               alert=lambda kind, message, **f: alerts.append((kind, f)))
        zone.silent = True
        watch.round(primary(2), now=100.0)
        watch.round(primary(2), now=101.0)
        assert [(k, f["problem"]) for k, f in alerts] == [("finding", "secondary-unreachable")], "said once"
        zone.silent = False
        zone.generation = {API: 1, WWW: 2}
        watch.round(primary(2), now=102.0)
        assert [(k, f["problem"]) for k, f in alerts[1:]] == [("repaired", "secondary-unreachable")]
        watch.round(primary(2), now=111.0)
        assert len(alerts) == 2, "api behind for 9 s: within the grace"
        watch.round(primary(2), now=112.0)
        watch.round(primary(2), now=113.0)
        stale = alerts[2:]
        assert [(k, f["problem"], f["endpoint"]) for k, f in stale] == [("finding", "secondary-stale", str(API))]
        assert (stale[0][1]["secondary_generation"], stale[0][1]["primary_generation"]) == (1, 2)
        zone.generation = {API: 2, WWW: 2}
        watch.round(primary(2), now=114.0)
        assert [(k, f["problem"]) for k, f in alerts[3:]] == [("repaired", "secondary-stale")]
        assert watch.to_json()[f"127.0.0.1:{stub.port}"]["stale"] == 0


def test_the_sample_goes_round_the_fleet() -> None:
    keys = [key(f"e{i}." + ZONE) for i in range(5)]
    watch = SecondaryWatch([("127.0.0.1", 9)], keys, 2, grace=1.0, alert=lambda *a, **f: None)
    assert [watch.sample() for _ in range(3)] == [keys[0:2], keys[2:4], [keys[4], keys[0]]]


def test_a_missing_marker_at_the_secondary_is_stale_too() -> None:
    zone = Zone()
    zone.generation = {API: None, WWW: 3}
    alerts: list[str] = []
    with StubServer(zone.answer, quiet=0.01) as stub:
        watch = SecondaryWatch([("127.0.0.1", stub.port)], [API, WWW], 2, grace=0.0,
                               alert=lambda kind, message, **f: alerts.append(message))
        watch.round(primary(3), now=1.0)
    assert alerts == [f"{API} at server 127.0.0.1:{stub.port}: no marker, the primary has 3 (for 0 s)"]


def test_nxdomain_empty_truncated_and_drift_are_each_their_own_finding_and_repaired() -> None:
    zone = Zone()
    zone.generation = {API: 2, WWW: 2}
    alerts: list[tuple[str, str, str]] = []
    with StubServer(zone.answer, quiet=0.01) as stub:
        watch = SecondaryWatch([("127.0.0.1", stub.port)], [API, WWW], 2, grace=0.0,
                               alert=lambda kind, message, **f: alerts.append((kind, f["problem"], f.get("endpoint"))))
        for change, problem in (({API: None}, "secondary-nxdomain"), ({API: ""}, "secondary-empty"),
                                ({API: "198.51.100.9"}, "secondary-drift")):
            zone.address = change
            watch.round(primary(2), now=1.0)
            zone.address = {}
            watch.round(primary(2), now=2.0)
            assert alerts == [("finding", problem, str(API)), ("repaired", problem, str(API))], alerts
            alerts.clear()
        zone.truncated = True
        watch.round(primary(2), now=3.0)
        assert sorted(alerts) == [("finding", "secondary-truncated", str(k)) for k in (API, WWW)]
        assert watch.to_json()[f"127.0.0.1:{stub.port}"]["problems"] == {"secondary-truncated": 2}
        zone.truncated = False
        zone.generation = {API: 1, WWW: 2}  # stale at generation 1: its address is not drift
        zone.address = {API: "198.51.100.9"}
        alerts.clear()
        watch.round(primary(2), now=4.0)
        assert sorted(alerts) == [("finding", "secondary-stale", str(API)), ("repaired", "secondary-truncated",
                                                                            str(WWW))]


def test_an_endpoint_that_left_the_fleet_is_no_longer_counted_wrong_at_a_server() -> None:
    zone = Zone()
    zone.generation = {API: 2, WWW: 2}
    zone.address = {WWW: None}
    with StubServer(zone.answer, quiet=0.01) as stub:
        watch = SecondaryWatch([("127.0.0.1", stub.port)], [API, WWW], 2, grace=0.0, alert=lambda *a, **f: None)
        watch.round(primary(2), now=1.0)
        assert watch.to_json()[f"127.0.0.1:{stub.port}"]["problems"] == {"secondary-nxdomain": 1}
        watch.follow([API])  # www left the fleet (a reload): never asked again, so never found right
        assert watch.to_json()[f"127.0.0.1:{stub.port}"]["problems"] == {}
        assert watch.sample() == [API]
