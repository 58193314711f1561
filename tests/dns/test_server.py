"""The embedded DNS server over real sockets: answers, modes, errors, EDNS, TCP, freshness.

The server runs on port 0 in a background thread with its own event loop; the
tests query it with dnspython or raw sockets. Waiting is polling with a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from dnsplane.dns import DnsServer
from dnsplane.dns.render import OPT_RR, OPT_RR_DO, Answer, name_wire, render_response
from dnsplane.dns.responder import Responder
from dnsplane.model import EndpointKey, Generation, Marker, Member, Observed, RecordSet, Write, marker_name
from dnsplane.providers.embedded import EmbeddedProvider

ZONE = "demo.test."
HOST = "127.0.0.1"
DEADLINE = 5.0

API = EndpointKey("api.demo.test.", "A")
API6 = EndpointKey("api.demo.test.", "AAAA")
DEEP = EndpointKey("x.y.deep.demo.test.", "A")
WEIGHTED = EndpointKey("w.demo.test.", "A")
ALL = EndpointKey("all.demo.test.", "A")
BIG = EndpointKey("big.demo.test.", "AAAA")
MARKED_ONLY = EndpointKey("m.demo.test.", "A")


def obs(ttl: int, members: list[Member], answer: str = "weighted", gen: int = 7) -> Observed:
    rs = RecordSet.of(ttl, members, answer)  # type: ignore[arg-type]
    return Observed(rs, Marker.after(None, Generation(gen), rs.digest))


W_A = Member("lb-a", ("192.0.2.1", "192.0.2.2"), 750)
W_B = Member("lb-b", ("198.51.100.1", "198.51.100.2"), 250)
W_C = Member("lb-c", ("203.0.113.9",), 0)


def initial_data() -> dict[EndpointKey, Observed]:
    return {
        API: obs(30, [Member("lb-1", ("10.0.0.1",), 1000)]),
        API6: obs(45, [Member("lb-1", ("2001:db8::1", "2001:db8::2"), 1000)], "all"),
        DEEP: obs(300, [Member("lb-1", ("10.9.9.9",), 1000)]),
        WEIGHTED: obs(20, [W_A, W_B, W_C]),
        ALL: obs(
            20,
            [Member("a", ("10.1.0.1", "10.1.0.2"), 10), Member("b", ("10.2.0.1",), 5), Member("c", ("10.3.0.1",), 0)],
            "all",
        ),
        BIG: obs(60, [Member(f"t{i:02d}", (f"2001:db8::{i + 1:x}",), 10) for i in range(60)], "all"),
        MARKED_ONLY: Observed(None, Marker(Generation(3), "feedface")),
    }


class FakeSource:
    """A ZoneSource holding a dict; ``commit`` notifies listeners, ``external_commit`` only bumps the version."""

    def __init__(self, zone: str, data: dict[EndpointKey, Observed]) -> None:
        self.zone = zone
        self.data = dict(data)
        self.version = 1
        self.listeners: list[Callable[[list[EndpointKey]], None]] = []
        self._lock = threading.Lock()

    def read_all(self) -> dict[EndpointKey, Observed]:
        with self._lock:
            return dict(self.data)

    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        with self._lock:
            return {k: self.data.get(k, Observed(None, None)) for k in keys}

    def add_listener(self, fn: Callable[[list[EndpointKey]], None]) -> None:
        self.listeners.append(fn)

    def data_version(self) -> int:
        return self.version

    def commit(self, key: EndpointKey, observed: Observed | None) -> None:
        with self._lock:
            if observed is None:
                self.data.pop(key, None)
            else:
                self.data[key] = observed
        for fn in self.listeners:
            fn([key])

    def external_commit(self, key: EndpointKey, observed: Observed) -> None:
        with self._lock:
            self.data[key] = observed
            self.version += 1


class Running:
    """A DnsServer started in a background thread with its own event loop."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(server.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=DEADLINE)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=DEADLINE)
        self.loop.close()

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def source() -> FakeSource:
    return FakeSource(ZONE, initial_data())


@pytest.fixture
def srv(source: FakeSource) -> Iterator[Running]:
    running = Running(DnsServer([source], HOST, 0, rng=random.Random(1234)))
    try:
        yield running
    finally:
        running.close()


def udp(srv: Running, name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)
    return dns.query.udp(q, HOST, port=srv.port, timeout=DEADLINE)


def tcp(srv: Running, name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)
    return dns.query.tcp(q, HOST, port=srv.port, timeout=DEADLINE)


def addresses(r: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in r.answer for rd in rrset}


def raw_udp(port: int, payload: bytes, expect_reply: bool = True) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5 if not expect_reply else DEADLINE)
        s.sendto(payload, (HOST, port))
        try:
            return s.recv(65535)
        except TimeoutError:
            if expect_reply:
                raise
            return None


def wait_for(pred: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.005)  # poll interval, not a synchronisation
    raise AssertionError(f"timed out waiting for {what}")


def soa_in_authority(r: dns.message.Message) -> bool:
    return len(r.authority) == 1 and r.authority[0].rdtype == dns.rdatatype.SOA


# --- answers ------------------------------------------------------------------


def test_a_answer_is_authoritative_with_ttl(srv: Running) -> None:
    r = udp(srv, "api.demo.test.")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA and not r.flags & dns.flags.RA and not r.flags & dns.flags.TC
    assert addresses(r) == {"10.0.0.1"}
    assert r.answer[0].ttl == 30 and r.answer[0].name == dns.name.from_text("api.demo.test.")


def test_aaaa_answer(srv: Running) -> None:
    r = udp(srv, "api.demo.test.", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == {"2001:db8::1", "2001:db8::2"}
    assert r.answer[0].ttl == 45


def test_weighted_picks_one_member_in_proportion(srv: Running) -> None:
    seen: Counter[str] = Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((HOST, srv.port))
        s.settimeout(DEADLINE)
        for i in range(2000):
            q = dns.message.make_query("w.demo.test.", "A", id=i)
            s.send(q.to_wire())
            r = dns.message.from_wire(s.recv(65535))
            assert r.id == i
            got = addresses(r)
            if got == set(W_A.addresses):
                seen["a"] += 1
            elif got == set(W_B.addresses):
                seen["b"] += 1
            else:
                pytest.fail(f"answer is not exactly one member's addresses: {got}")
    assert seen["a"] + seen["b"] == 2000
    share = seen["a"] / 2000
    assert 0.70 < share < 0.80, seen  # weights 750:250; sd ~0.01


def test_weight_zero_member_never_returned(srv: Running) -> None:
    for _ in range(300):
        assert "203.0.113.9" not in addresses(udp(srv, "w.demo.test."))
    assert "10.3.0.1" not in addresses(udp(srv, "all.demo.test."))


def test_all_mode_returns_every_live_address(srv: Running) -> None:
    firsts: set[str] = set()
    for _ in range(60):
        r = udp(srv, "all.demo.test.")
        assert addresses(r) == {"10.1.0.1", "10.1.0.2", "10.2.0.1"}
        assert len(r.answer) == 1 and len(r.answer[0]) == 3
        firsts.add(r.answer[0][0].to_text())
    assert firsts == {"10.1.0.1", "10.1.0.2", "10.2.0.1"}  # the order rotates between responses


def test_marker_txt_from_the_embedded_provider_is_the_whole_marker(tmp_path: Path) -> None:
    """The server answers the marker TXT with ``Marker.to_text()`` of what the SQLite file holds,
    ``p=`` included, and the text parses back to that marker."""
    provider = EmbeddedProvider(tmp_path / "dns.sqlite", ZONE)
    rs = RecordSet.of(30, [Member("lb-1", ("10.0.0.1",), 1000)])
    first = Marker.after(None, Generation(1), rs.digest)
    provider.apply([Write(API, None, rs, first)])
    running = Running(DnsServer([provider], HOST, 0, rng=random.Random(1)))
    try:
        (rrset,) = udp(running, marker_name(API), "TXT").answer
        value = b"".join(rrset[0].strings).decode()
        assert value == first.to_text() and value.endswith(f" p={first.prev}")
        assert Marker.from_text(value) == first
    finally:
        running.close()
        provider.close()


def test_marker_txt(srv: Running, source: FakeSource) -> None:
    r = udp(srv, marker_name(API), "TXT")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    (rrset,) = r.answer
    value = b"".join(rrset[0].strings).decode()
    assert value == source.data[API].marker.to_text()  # type: ignore[union-attr]
    assert " p=" in value  # the chain token is served with the rest of the marker
    assert Marker.from_text(value) == source.data[API].marker
    assert 0 <= rrset.ttl <= 60 and rrset.ttl == 30
    big = udp(srv, marker_name(DEEP), "TXT")  # records TTL 300 -> marker TTL capped at 60
    assert big.answer[0].ttl == 60
    only = udp(srv, marker_name(MARKED_ONLY), "TXT")  # marker without records: TTL 60
    assert only.answer[0].ttl == 60
    assert b"".join(only.answer[0][0].strings).decode() == "dnsplane g=3 d=feedface"
    assert udp(srv, "m.demo.test.").rcode() == dns.rcode.NOERROR  # exists (parent of its marker), no data
    assert not udp(srv, "m.demo.test.").answer


def test_soa_ns_and_ns1_at_apex(srv: Running) -> None:
    r = udp(srv, ZONE, "SOA")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    soa = r.answer[0][0]
    assert soa.mname.to_text() == "ns1.demo.test." and soa.rname.to_text() == "hostmaster.demo.test."
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (3600, 600, 86400, 60)
    assert 0 < soa.serial < 2**32
    ns = udp(srv, ZONE, "NS")
    assert [rd.target.to_text() for rd in ns.answer[0]] == ["ns1.demo.test."]
    assert addresses(udp(srv, "ns1.demo.test.")) == {"127.0.0.1"}


def test_serial_bumps_on_refresh(srv: Running) -> None:
    before = udp(srv, ZONE, "SOA").answer[0][0].serial
    srv.server.refresh([API])
    wait_for(lambda: udp(srv, ZONE, "SOA").answer[0][0].serial != before, "serial bump")
    assert udp(srv, ZONE, "SOA").answer[0][0].serial == (before + 1) % 2**32


def test_nxdomain_carries_soa(srv: Running) -> None:
    r = udp(srv, "nope.demo.test.")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert not r.answer and soa_in_authority(r)
    r6 = udp(srv, "a.b.c.nope.demo.test.", "AAAA", use_edns=0)
    assert r6.rcode() == dns.rcode.NXDOMAIN and soa_in_authority(r6) and r6.edns == 0


def test_nodata_for_other_type(srv: Running) -> None:
    r = udp(srv, "w.demo.test.", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert not r.answer and soa_in_authority(r)
    mx = udp(srv, "api.demo.test.", "MX")
    assert mx.rcode() == dns.rcode.NOERROR and soa_in_authority(mx)


def test_empty_non_terminal_is_noerror(srv: Running) -> None:
    for name in ("y.deep.demo.test.", "deep.demo.test."):
        r = udp(srv, name)
        assert r.rcode() == dns.rcode.NOERROR, name
        assert not r.answer and soa_in_authority(r)
    assert udp(srv, "z.deep.demo.test.").rcode() == dns.rcode.NXDOMAIN


def test_refused_outside_zone(srv: Running) -> None:
    for name in ("example.com.", "test.", "xdemo.test."):
        r = udp(srv, name)
        assert r.rcode() == dns.rcode.REFUSED, name
        assert not r.flags & dns.flags.AA and not r.answer


def test_case_preserved_in_question_and_id_echoed(srv: Running) -> None:
    q = dns.message.make_query("ApI.DeMo.TeSt.", "A", id=0x1234)
    wire = raw_udp(srv.port, q.to_wire())
    assert wire is not None
    assert wire[:2] == b"\x12\x34"
    r = dns.message.from_wire(wire)
    assert r.question[0].name.to_text() == "ApI.DeMo.TeSt."
    assert wire[12 : 12 + len(q.question[0].name.to_wire())] == q.question[0].name.to_wire()
    assert addresses(r) == {"10.0.0.1"}
    nx = dns.message.from_wire(raw_udp(srv.port, dns.message.make_query("NoPe.DEMO.test.", "A").to_wire()) or b"")
    assert nx.question[0].name.to_text() == "NoPe.DEMO.test." and nx.rcode() == dns.rcode.NXDOMAIN


def test_rd_copied_ra_clear(srv: Running) -> None:
    q = dns.message.make_query("api.demo.test.", "A")
    q.flags &= ~dns.flags.RD
    r = dns.query.udp(q, HOST, port=srv.port, timeout=DEADLINE)
    assert not r.flags & dns.flags.RD and not r.flags & dns.flags.RA
    assert udp(srv, "api.demo.test.").flags & dns.flags.RD


def test_edns_response_has_opt(srv: Running) -> None:
    r = udp(srv, "api.demo.test.", use_edns=0, payload=4096)
    assert r.edns == 0 and r.payload == 1232 and addresses(r) == {"10.0.0.1"}
    assert not r.ednsflags & dns.flags.DO
    do = udp(srv, "api.demo.test.", use_edns=0, want_dnssec=True)
    assert do.edns == 0 and do.ednsflags & dns.flags.DO
    plain = udp(srv, "api.demo.test.", use_edns=False)
    assert plain.edns == -1


def test_bad_edns_version(srv: Running) -> None:
    r = udp(srv, "api.demo.test.", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS


def test_truncation_over_udp_full_answer_over_tcp(srv: Running) -> None:
    r = udp(srv, "big.demo.test.", "AAAA", use_edns=False)
    assert r.flags & dns.flags.TC and not r.answer
    assert r.question[0].name.to_text() == "big.demo.test."
    r_edns = udp(srv, "big.demo.test.", "AAAA", use_edns=0, payload=4096)  # 60 AAAA > 1232 bytes
    assert r_edns.flags & dns.flags.TC and not r_edns.answer and r_edns.edns == 0
    full = tcp(srv, "big.demo.test.", "AAAA")
    assert not full.flags & dns.flags.TC
    assert len(addresses(full)) == 60
    small = udp(srv, "api.demo.test.", "AAAA", use_edns=False)  # two addresses fit in 512
    assert not small.flags & dns.flags.TC


def test_tcp_two_queries_on_one_connection(srv: Running) -> None:
    q1 = dns.message.make_query("api.demo.test.", "A", id=1)
    q2 = dns.message.make_query("api.demo.test.", "AAAA", id=2)
    with socket.create_connection((HOST, srv.port), timeout=DEADLINE) as s:
        w1, w2 = q1.to_wire(), q2.to_wire()
        s.sendall(struct.pack("!H", len(w1)) + w1 + struct.pack("!H", len(w2)) + w2)  # pipelined
        f = s.makefile("rb")
        answers = []
        for _ in range(2):
            (size,) = struct.unpack("!H", f.read(2))
            answers.append(dns.message.from_wire(f.read(size)))
        q3 = dns.message.make_query("nope.demo.test.", "A", id=3)
        w3 = q3.to_wire()
        s.sendall(struct.pack("!H", len(w3)) + w3[:5])  # a message split over two segments
        s.sendall(w3[5:])
        (size,) = struct.unpack("!H", f.read(2))
        answers.append(dns.message.from_wire(f.read(size)))
    assert [a.id for a in answers] == [1, 2, 3]
    assert addresses(answers[0]) == {"10.0.0.1"}
    assert addresses(answers[1]) == {"2001:db8::1", "2001:db8::2"}
    assert answers[2].rcode() == dns.rcode.NXDOMAIN


def test_tcp_idle_connection_is_closed(srv: Running) -> None:
    srv.server._tcp.limits = dataclasses.replace(srv.server._tcp.limits, idle_timeout=0.2)
    with socket.create_connection((HOST, srv.port), timeout=DEADLINE) as s:
        start = time.monotonic()
        assert s.recv(1) == b""  # blocks until the server closes
        assert time.monotonic() - start < DEADLINE


# --- freshness ------------------------------------------------------------------


def test_listener_change_visible_on_next_query(srv: Running, source: FakeSource) -> None:
    for i in range(20):
        source.commit(API, obs(30, [Member("lb-2", (f"10.0.1.{i + 1}",), 1000)]))
        assert addresses(udp(srv, "api.demo.test.")) == {f"10.0.1.{i + 1}"}
    new = EndpointKey("fresh.demo.test.", "A")
    source.commit(new, obs(10, [Member("lb-1", ("10.7.7.7",), 1000)]))
    assert addresses(tcp(srv, "fresh.demo.test.")) == {"10.7.7.7"}
    source.commit(new, None)
    assert udp(srv, "fresh.demo.test.").rcode() == dns.rcode.NXDOMAIN


def test_listener_from_another_thread(srv: Running, source: FakeSource) -> None:
    def writer() -> None:
        source.commit(API, obs(30, [Member("lb-9", ("10.0.9.9",), 1000)]))

    t = threading.Thread(target=writer)
    t.start()
    t.join()
    assert addresses(udp(srv, "api.demo.test.")) == {"10.0.9.9"}


def test_removing_last_name_removes_empty_non_terminals(srv: Running, source: FakeSource) -> None:
    source.commit(DEEP, None)
    assert udp(srv, "x.y.deep.demo.test.").rcode() == dns.rcode.NXDOMAIN
    assert udp(srv, "y.deep.demo.test.").rcode() == dns.rcode.NXDOMAIN
    assert udp(srv, "deep.demo.test.").rcode() == dns.rcode.NXDOMAIN
    assert udp(srv, ZONE, "SOA").rcode() == dns.rcode.NOERROR


def test_data_version_change_triggers_reload(srv: Running, source: FakeSource) -> None:
    other = EndpointKey("other.demo.test.", "A")
    source.external_commit(other, obs(10, [Member("lb-1", ("10.8.8.8",), 1000)]))
    source.external_commit(API, obs(30, [Member("lb-3", ("10.0.3.3",), 1000)]))

    def reloaded() -> bool:
        return addresses(udp(srv, "other.demo.test.")) == {"10.8.8.8"}

    wait_for(reloaded, "cross-process change to be served")
    assert addresses(udp(srv, "api.demo.test.")) == {"10.0.3.3"}


def test_data_version_change_seen_while_idle(srv: Running, source: FakeSource) -> None:
    before = srv.server.stats.reloads
    source.external_commit(API, obs(30, [Member("lb-4", ("10.0.4.4",), 1000)]))
    wait_for(lambda: srv.server.stats.reloads > before, "periodic data_version check")
    assert addresses(udp(srv, "api.demo.test.")) == {"10.0.4.4"}


def test_refresh_from_another_thread(srv: Running, source: FakeSource) -> None:
    with source._lock:
        source.data[API] = obs(30, [Member("lb-5", ("10.0.5.5",), 1000)])
    srv.server.refresh([API])
    assert addresses(udp(srv, "api.demo.test.")) == {"10.0.5.5"}
    with source._lock:
        source.data[API] = obs(30, [Member("lb-6", ("10.0.6.6",), 1000)])
    srv.server.refresh()
    assert addresses(udp(srv, "api.demo.test.")) == {"10.0.6.6"}


# --- errors ---------------------------------------------------------------------


def test_unknown_opcode_is_notimp(srv: Running) -> None:
    q = dns.message.make_query("api.demo.test.", "A")
    q.set_opcode(dns.opcode.STATUS)
    r = dns.query.udp(q, HOST, port=srv.port, timeout=DEADLINE)
    assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == dns.opcode.STATUS


def test_qdcount_not_one_is_formerr(srv: Running) -> None:
    q = dns.message.make_query("api.demo.test.", "A")
    q.question.append(dns.rrset.RRset(dns.name.from_text("w.demo.test."), 1, 1))
    r = dns.query.udp(q, HOST, port=srv.port, timeout=DEADLINE, ignore_unexpected=True)
    assert r.rcode() == dns.rcode.FORMERR
    none = dns.message.Message(id=77)
    wire = raw_udp(srv.port, none.to_wire())
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.FORMERR


def test_non_in_class_is_refused(srv: Running) -> None:
    r = dns.query.udp(
        dns.message.make_query("version.bind.", "TXT", rdclass="CH"), HOST, port=srv.port, timeout=DEADLINE
    )
    assert r.rcode() == dns.rcode.REFUSED


def test_any_and_axfr(srv: Running) -> None:
    r = udp(srv, ZONE, "ANY")  # RFC 8482: one RRset over UDP, all of them over TCP
    assert r.rcode() == dns.rcode.NOERROR
    assert [rrset.rdtype for rrset in r.answer] == [dns.rdatatype.SOA]
    full = tcp(srv, ZONE, "ANY")
    assert {rrset.rdtype for rrset in full.answer} >= {dns.rdatatype.SOA, dns.rdatatype.NS}
    assert tcp(srv, ZONE, "AXFR").rcode() == dns.rcode.REFUSED


def test_malformed_packets_do_not_crash(srv: Running) -> None:
    good = dns.message.make_query("api.demo.test.", "A", id=99).to_wire()
    assert raw_udp(srv.port, b"\x00", expect_reply=False) is None  # no header: dropped
    assert raw_udp(srv.port, b"", expect_reply=False) is None
    header_only = good[:12]  # says one question, has none
    formerr = raw_udp(srv.port, header_only)
    assert formerr is not None and formerr[:2] == good[:2] and formerr[3] & 0x0F == dns.rcode.FORMERR
    junk = good[:12] + b"\x3f" + b"a" * 10  # label runs past the end
    reply = raw_udp(srv.port, junk)
    assert reply is not None and reply[3] & 0x0F == dns.rcode.FORMERR
    trailing = raw_udp(srv.port, good + b"\x00\x00")
    assert trailing is not None and trailing[3] & 0x0F == dns.rcode.FORMERR
    pointer_loop = good[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    reply = raw_udp(srv.port, pointer_loop)
    assert reply is not None and reply[3] & 0x0F == dns.rcode.FORMERR
    a_response = bytearray(good)
    a_response[2] |= 0x80
    assert raw_udp(srv.port, bytes(a_response), expect_reply=False) is None  # never answer a response
    rnd = random.Random(5)
    for _ in range(300):
        raw = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 80)))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(raw, (HOST, srv.port))
    for _ in range(30):  # mutated valid queries
        mutated = bytearray(good)
        mutated[rnd.randrange(len(mutated))] = rnd.getrandbits(8)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(bytes(mutated), (HOST, srv.port))
    with socket.create_connection((HOST, srv.port), timeout=DEADLINE) as s:
        s.sendall(b"\x00\x03abc")  # garbage over TCP: the connection is closed
        assert s.recv(10) == b""
    assert addresses(udp(srv, "api.demo.test.")) == {"10.0.0.1"}
    assert addresses(tcp(srv, "api.demo.test.")) == {"10.0.0.1"}


def test_stats_count_queries_and_rcodes(srv: Running) -> None:
    udp(srv, "api.demo.test.")
    udp(srv, "nope.demo.test.")
    udp(srv, "example.com.")
    stats = srv.server.stats
    assert stats.queries >= 3
    assert stats.responses["NOERROR"] >= 1 and stats.responses["NXDOMAIN"] >= 1 and stats.responses["REFUSED"] >= 1


def test_two_zones_and_nested_zone(source: FakeSource) -> None:
    sub = FakeSource(
        "sub.demo.test.", {EndpointKey("www.sub.demo.test.", "A"): obs(5, [Member("x", ("10.5.5.5",), 1)])}
    )
    running = Running(DnsServer([source, sub], HOST, 0))
    try:
        assert addresses(udp(running, "www.sub.demo.test.")) == {"10.5.5.5"}
        nx = udp(running, "nope.sub.demo.test.")
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].name.to_text() == "sub.demo.test."
        assert addresses(udp(running, "api.demo.test.")) == {"10.0.0.1"}
        sub.commit(EndpointKey("www.sub.demo.test.", "A"), obs(5, [Member("x", ("10.5.5.6",), 1)]))
        assert addresses(udp(running, "www.sub.demo.test.")) == {"10.5.5.6"}
    finally:
        running.close()


def test_start_stop_restart_same_port(source: FakeSource) -> None:
    server = DnsServer([source], HOST, 0)
    running = Running(server)
    port = running.port
    assert addresses(udp(running, "api.demo.test.")) == {"10.0.0.1"}
    running.close()
    again = Running(DnsServer([source], HOST, port))
    try:
        assert again.port == port
        assert addresses(tcp(again, "api.demo.test.")) == {"10.0.0.1"}
    finally:
        again.close()


# --- rendering ------------------------------------------------------------------


@pytest.mark.parametrize("arcount", [0, 1])
@pytest.mark.parametrize("do", [False, True])
def test_an_edns_answer_is_dnspythons_rendering_of_the_plain_one_with_edns(do: bool, arcount: int) -> None:
    """An answer is held without EDNS; with EDNS in the query the responder appends the OPT record and
    counts it: the bytes are dnspython's for the same message (an additional record already there or not)."""
    qname = dns.name.from_text("api.demo.test.")
    rrset = dns.rrset.from_text_list(qname, 30, "IN", "A", ["10.0.0.1", "10.0.0.2"])
    glue = [dns.rrset.from_text("ns1.demo.test.", 30, "IN", "A", "127.0.0.1")] if arcount else []
    plain = render_response(qname, dns.rdatatype.A, [rrset], glue)
    responder = Responder()
    table = responder.add_zone(ZONE, 1)
    table._put(name_wire(qname), dns.rdatatype.A, Answer([plain]))
    query = dns.message.make_query(qname, "A", use_edns=0, payload=1232, want_dnssec=do)
    got = responder.handle(query.to_wire(), True)
    m = dns.message.from_wire(plain)
    m.id = query.id
    m.flags |= dns.flags.RD
    m.use_edns(0, dns.flags.DO if do else 0, 1232)
    assert got == m.to_wire(want_shuffle=False)
    assert got is not None and got.endswith(OPT_RR_DO if do else OPT_RR)
    assert responder.handle(query.to_wire(), True) == got  # the memoised answer too
