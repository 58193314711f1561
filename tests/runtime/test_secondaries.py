"""The secondaries watch (issue 12, part 3), against a stub DNS server on loopback that answers markers as a
secondary would: one that answers nothing is alerted unreachable (once) and repaired when it answers
again; an endpoint whose marker there names an older generation than the primary's is alerted stale only
after the grace, once, and repaired when it catches up; the sample goes round the fleet."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.name
import dns.rrset

from dnsplane.model import EndpointKey, marker_name
from dnsplane.runtime.secondaries import SecondaryWatch
from tests.fakes import ZONE, MemoryProvider, key, marker, member, rs
from tests.servers.dnsstub import StubServer

API, WWW = key("api." + ZONE), key("www." + ZONE)


class Zone:
    """What the stub secondary serves: a marker generation per endpoint (None: no marker), or silence."""

    def __init__(self) -> None:
        self.generation: dict[EndpointKey, int | None] = {}
        self.silent = False

    def answer(self, query: dns.message.Message) -> Any:
        if self.silent:
            return None
        response = dns.message.make_response(query)
        name = query.question[0].name
        for k, g in self.generation.items():
            if g is not None and dns.name.from_text(marker_name(k)) == name:
                text = marker(g, rs(member("a", "192.0.2.1"))).to_text()
                response.answer.append(dns.rrset.from_text(name, 30, "IN", "TXT", '"dnsplane-rs 0" "{}"', f'"{text}"'))
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
    assert alerts == [f"{API} at secondary 127.0.0.1:{stub.port}: no marker, the primary has 3 (for 0 s)"]
