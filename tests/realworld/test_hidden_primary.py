"""dnsplane as a hidden primary: real BIND, NSD and Knot secondaries follow its zone as plans are applied.

``dnsplane up`` runs a small fleet on the embedded provider with a ``serve:`` block (transfers allowed
from 127.0.0.1 with a TSIG key read from a BIND key file, NOTIFY to the secondary). The secondary
(Debian's ``bind9``, ``nsd`` or ``knot``, started by tests/servers/secondaries.py on a loopback port)
transfers the zone with that key. What must hold, for each of the three:

- the secondary converges to dnsplane's zone: the same RRsets (names, types, TTLs, data), marker TXTs
  included, within 30 s, after the first plan and after each plan a health change brings (NOTIFY: the
  SOA's refresh is an hour, so nothing else would bring the change within the bound);
- a weighted endpoint is transferred with every member of weight > 0 (a secondary cannot pick one
  member per query);
- a secondary that is sent no NOTIFY catches up by its SOA refresh (clamped to 2 s here), by IXFR
  while dnsplane's journal reaches its serial, and by the full zone once it no longer does (the
  secondary stopped with SIGSTOP while two plans are applied, with a journal of one version).

Without the serve block's transfer, every AXFR is REFUSED (tests/dns/test_transfer.py); without the
NOTIFY the first test's waits time out (the secondary refreshes hourly).
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
from collections.abc import Iterator
from typing import Any

import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.zone
import pytest
import yaml

from tests.realworld.harness import Dnsplane, World, marker_name, wait_for
from tests.servers.named import free_port, key_file_text
from tests.servers.secondaries import Key, Secondary, require, start_secondary

KINDS = ["bind", "nsd", "knot"]
ZONE = "demo.test."
A1, A2, A3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"
API, WWW = "api.demo.test.", "www.demo.test."
BOUND = 30.0  # seconds for a secondary to converge (NOTIFY, or a 2 s refresh)
POLICY = {"max_weight_shift": 1.0, "rise": 1, "fall": 1}

RRsets = dict[tuple[str, str], tuple[int, frozenset[str]]]


def rrsets(zone: dns.zone.Zone) -> RRsets:
    return {(str(name), dns.rdatatype.to_text(rds.rdtype)): (rds.ttl, frozenset(rd.to_text() for rd in rds))
            for name, node in zone.items() for rds in node}


class Primary:
    """``dnsplane up`` with a ``serve:`` block, and what a test asks of it."""

    def __init__(self, world: World, *, notify: list[int], journal: int | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.world = world
        self.key = Key("xfr-key", base64.b64encode(secrets.token_bytes(32)).decode())
        key_file = world.workdir / "xfr.key"
        key_file.write_text(key_file_text(self.key.name, self.key.secret))
        self.keyring = dns.tsigkeyring.from_text({self.key.name: (self.key.algorithm, self.key.secret)})
        targets = [world.target("lb-1", A1), world.target("lb-2", A2), world.target("lb-3", A3)]
        fleet = world.fleet(targets, [
            {"name": "api", "targets": ["lb-1", "lb-2"]},  # weighted: every member with weight > 0 is transferred
            {"name": "www", "targets": ["lb-1", "lb-3"], "policy": {"answer": "all"}},
        ], provider="embedded", policy=POLICY)
        doc: dict[str, Any] = yaml.safe_load(fleet.read_text())
        serve: dict[str, Any] = {"transfer": {"allow": ["127.0.0.1"], "key": {"file": str(key_file)}}}
        if notify:
            serve["notify"] = [f"127.0.0.1:{p}" for p in notify]
        if journal is not None:
            serve["journal"] = journal
        fleet.write_text(yaml.safe_dump({"zone": doc["zone"], "serve": serve, **doc}, sort_keys=False))
        self.up: Dnsplane = world.dnsplane(fleet, extra_args=list(extra_args))

    def zone(self) -> dns.zone.Zone:
        host, port = self.up.dns
        return dns.zone.from_xfr(dns.query.xfr(host, ZONE, port=port, keyring=self.keyring, lifetime=10,
                                               relativize=False), relativize=False)

    def secondary(self, kind: str, **kw: Any) -> Secondary:
        sec = start_secondary(kind, self.world.workdir / kind, ZONE, self.up.dns, self.key, **kw)
        self.world.closers.append(sec.stop)
        return sec

    def served(self, name: str) -> frozenset[str]:
        return rrsets(self.zone()).get((name, "A"), (0, frozenset()))[1]


def converged(primary: Primary, sec: Secondary) -> RRsets | None:
    ours = rrsets(primary.zone())
    return ours if sec.soa_serial() is not None and rrsets(sec.axfr()) == ours else None


def detail(primary: Primary, sec: Secondary) -> Any:
    return lambda: primary.world.logs() + "\n" + sec.log_tail()


@pytest.fixture
def world(embedded_world: World) -> Iterator[World]:
    embedded_world.closers = []  # type: ignore[attr-defined]
    try:
        yield embedded_world
    finally:
        for close in embedded_world.closers:  # type: ignore[attr-defined]
            close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_secondary_follows_every_applied_plan_by_notify(world: World, kind: str) -> None:
    require(kind)
    port = free_port()
    primary = Primary(world, notify=[port])  # NOTIFY retried until the secondary, not yet started, answers
    sec = primary.secondary(kind, port=port)
    zone = wait_for(f"{kind} to hold dnsplane's zone", lambda: converged(primary, sec), BOUND, detail(primary, sec))
    assert zone[(API, "A")][1] == {A1, A2}  # weighted: both members, weight > 0
    assert zone[(WWW, "A")][1] == {A1, A3}
    for name in (API, WWW):
        assert (marker_name(name, "A"), "TXT") in zone, f"no marker TXT of {name} in the transferred zone"
    assert (ZONE, "NS") in zone and (ZONE, "SOA") in zone

    for change, api in (("down", {A1}), ("up", {A1, A2})):
        getattr(world.listeners["lb-2"], change)()
        wait_for(f"dnsplane to serve api {sorted(api)}", lambda a=api: primary.served(API) == a, BOUND,  # type: ignore[misc]
                 detail(primary, sec))
        zone = wait_for(f"{kind} to follow lb-2 {change}", lambda: converged(primary, sec), BOUND,
                        detail(primary, sec))
        assert zone[(API, "A")][1] == api
    assert "xfr_refused" not in primary.up.log()


@pytest.mark.parametrize("kind", KINDS)
def test_a_secondary_without_notify_catches_up_by_refresh_by_ixfr_then_by_the_full_zone(
        world: World, kind: str) -> None:
    require(kind)
    primary = Primary(world, notify=[], journal=1)
    sec = primary.secondary(kind, refresh=2)  # Knot refreshes no more often than every 2 s
    wait_for(f"{kind} to hold dnsplane's zone", lambda: converged(primary, sec), BOUND, detail(primary, sec))

    mark = primary.up.log_mark()
    world.listeners["lb-2"].down()
    wait_for("dnsplane to drop lb-2", lambda: primary.served(API) == {A1}, BOUND, detail(primary, sec))
    wait_for(f"{kind} to catch up by refresh", lambda: converged(primary, sec), BOUND, detail(primary, sec))
    assert "zone transfer IXFR of" in primary.up.log_since(mark), primary.up.log_since(mark)

    # two plans while the secondary is stopped: a journal of one version no longer reaches its serial
    assert sec.process is not None
    os.kill(sec.process.pid, signal.SIGSTOP)
    try:
        before = rrsets(primary.zone())[(ZONE, "SOA")]
        world.listeners["lb-3"].down()
        wait_for("dnsplane to drop lb-3", lambda: primary.served(WWW) == {A1}, BOUND, detail(primary, sec))
        world.listeners["lb-2"].up()
        wait_for("dnsplane to bring lb-2 back", lambda: primary.served(API) == {A1, A2}, BOUND, detail(primary, sec))
        assert rrsets(primary.zone())[(ZONE, "SOA")] != before
        mark = primary.up.log_mark()
    finally:
        os.kill(sec.process.pid, signal.SIGCONT)
    zone = wait_for(f"{kind} to catch up", lambda: converged(primary, sec), BOUND, detail(primary, sec))
    assert zone[(WWW, "A")][1] == {A1}
    assert "zone transfer AXFR" in primary.up.log_since(mark), primary.up.log_since(mark)
