"""Never NXDOMAIN for what is about to be served: endpoints the fleet declares are answered
SERVFAIL (not NXDOMAIN, not no data) until first written, on real sockets; after a restart the
server answers the last applied records from its first query."""

from __future__ import annotations

import random
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsplane.dns import DnsServer
from dnsplane.model import EndpointKey, Generation, Marker, Member, RecordSet, Write, marker_name
from dnsplane.providers.embedded import EmbeddedProvider
from tests.dns.test_server import API, HOST, ZONE, FakeSource, Running, addresses, initial_data, obs, tcp, udp

NEW = EndpointKey("new.demo.test.", "A")
NEW6 = EndpointKey("new.demo.test.", "AAAA")
DEEPER = EndpointKey("a.b.later.demo.test.", "A")
ONE = [Member("lb-1", ("10.7.0.1",), 1000)]


def rcode(r: dns.message.Message) -> str:
    return dns.rcode.to_text(r.rcode())


@pytest.fixture
def source() -> FakeSource:
    return FakeSource(ZONE, initial_data())


def serve(source: FakeSource, declared: list[EndpointKey]) -> Running:
    server = DnsServer([source], HOST, 0, rng=random.Random(3))
    server.declare(declared)  # as the runtime does, before start
    return Running(server)


def test_declared_unwritten_endpoint_is_servfail_until_written(source: FakeSource) -> None:
    srv = serve(source, [API, NEW, NEW6])
    try:
        assert srv.server.unwritten() == {NEW, NEW6}  # API is held by the source: served
        assert addresses(udp(srv, "api.demo.test.")) == {"10.0.0.1"}
        for r in (
            udp(srv, "new.demo.test."),
            tcp(srv, "new.demo.test."),
            udp(srv, "NeW.demo.test.", "AAAA"),
            udp(srv, marker_name(NEW), "TXT"),
            udp(srv, "new.demo.test.", "MX"),
        ):
            assert rcode(r) == "SERVFAIL" and not r.answer and not r.authority
            assert not r.flags & dns.flags.AA
        edns = udp(srv, "new.demo.test.", use_edns=0, want_dnssec=True)
        assert rcode(edns) == "SERVFAIL" and edns.edns == 0 and edns.ednsflags & dns.flags.DO
        assert rcode(udp(srv, "other.demo.test.")) == "NXDOMAIN"  # not declared: NXDOMAIN as before
        source.commit(NEW, obs(30, ONE))
        assert addresses(udp(srv, "new.demo.test.")) == {"10.7.0.1"}
        assert rcode(udp(srv, "new.demo.test.", "AAAA")) == "SERVFAIL"  # its AAAA is declared, not written
        assert rcode(udp(srv, "new.demo.test.", "MX")) == "NOERROR"  # the name exists now; MX is nobody's
        source.commit(NEW6, obs(30, [Member("lb-1", ("2001:db8::7",), 1000)]))
        assert addresses(udp(srv, "new.demo.test.", "AAAA")) == {"2001:db8::7"}
        assert srv.server.unwritten() == frozenset()
        source.commit(NEW, None)  # once written, gone again: NXDOMAIN/no data, which the verifier repairs
        assert rcode(udp(srv, marker_name(NEW), "TXT")) == "NXDOMAIN"
        assert srv.server.limit_stats.servfail_unwritten == 7
    finally:
        srv.close()


def test_names_above_an_unwritten_endpoint_are_not_nxdomain(source: FakeSource) -> None:
    """RFC 8020: an NXDOMAIN at ``b.later`` would tell resolvers that ``a.b.later`` does not exist either."""
    srv = serve(source, [DEEPER])
    try:
        for name in ("b.later.demo.test.", "later.demo.test."):
            assert rcode(udp(srv, name)) == "SERVFAIL"
        source.commit(DEEPER, obs(30, ONE))
        assert rcode(udp(srv, "b.later.demo.test.")) == "NOERROR"  # an empty non-terminal now
    finally:
        srv.close()


def test_reload_declares_new_endpoints_and_releases_old_ones(source: FakeSource) -> None:
    srv = serve(source, [API])
    try:
        assert rcode(udp(srv, "new.demo.test.")) == "NXDOMAIN"

        async def declare(keys: list[EndpointKey]) -> None:
            srv.server.declare(keys)

        srv.call(declare([API, NEW]))  # a fleet reload adds an endpoint
        assert rcode(udp(srv, "new.demo.test.")) == "SERVFAIL"
        srv.call(declare([API]))  # ...and removes it before it was written
        assert rcode(udp(srv, "new.demo.test.")) == "NXDOMAIN"
    finally:
        srv.close()


def test_restart_serves_the_last_applied_records_from_the_first_query(tmp_path: Path) -> None:
    provider = EmbeddedProvider(tmp_path / "dns.sqlite", ZONE)
    rs = RecordSet.of(30, ONE)
    provider.apply([Write(NEW, None, rs, Marker.after(None, Generation(4), rs.digest))])
    provider.close()
    again = EmbeddedProvider(tmp_path / "dns.sqlite", ZONE)  # a new process's provider on the same file
    server = DnsServer([again], HOST, 0)
    server.declare([NEW])
    srv = Running(server)
    try:
        first = dns.query.udp(dns.message.make_query("new.demo.test.", "A"), HOST, port=srv.port, timeout=5)
        assert rcode(first) == "NOERROR" and addresses(first) == {"10.7.0.1"}
        assert server.unwritten() == frozenset()
    finally:
        srv.close()
        again.close()


def test_settling_costs_what_was_written_not_what_is_left(source: FakeSource, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each refresh settled the whole unwritten set again, every name rendered anew: at 100,000 endpoints
    from empty that was most of the event loop's time, and answers stalled for seconds (bench/scale_e2e.py).
    Now a name is rendered once, when declared, and a write settles only what it wrote; a parent shared by
    several unwritten endpoints stays covered until the last of them is written."""
    import dnsplane.dns.server as server_module

    rendered: list[str] = []
    real = server_module.name_wire
    monkeypatch.setattr(server_module, "name_wire", lambda name: (rendered.append(name), real(name))[1])
    keys = [EndpointKey(f"e{i}.later.demo.test.", "A") for i in range(300)]
    srv = serve(source, keys)
    try:
        assert len(rendered) == 2 * len(keys)  # each endpoint's name and its marker's, once
        for k in keys[:-1]:
            source.commit(k, obs(30, ONE))
            assert addresses(udp(srv, k.name)) == {"10.7.0.1"}  # answered once refreshed
        assert len(rendered) == 2 * len(keys), "no name rendered again by 299 refreshes"
        assert srv.server.unwritten() == {keys[-1]}
        assert rcode(udp(srv, keys[-1].name)) == "SERVFAIL"
        assert rcode(udp(srv, "x.e299.later.demo.test.")) == "NXDOMAIN"  # below it: nobody's name
        source.commit(keys[-1], obs(30, ONE))
        assert addresses(udp(srv, keys[-1].name)) == {"10.7.0.1"} and srv.server.unwritten() == frozenset()
    finally:
        srv.close()
