"""Zone transfers and NOTIFY of the embedded server, over real sockets, with dnspython as the secondary.

The real secondaries (BIND, NSD, Knot) are in tests/realworld/test_hidden_primary.py; these tests pin the
protocol: the ACL and the TSIG key, AXFR's shape (RFC 5936 §2.2), IXFR from the journal (RFC 1995) and
its AXFR fallback, the serial across restarts (RFC 1982), NOTIFY retried until acknowledged.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from dnsplane.dns import DnsServer, notify
from dnsplane.dns.transfer import TransferPolicy
from dnsplane.model import Member, marker_name
from tests.dns.test_server import ALL, API, HOST, WEIGHTED, ZONE, FakeSource, Running, initial_data, obs
from tests.realworld.harness import wait_for

KEY = dns.name.from_text("xfr-key.")
SECRET = base64.b64encode(b"k" * 32).decode()
KEYRING = dns.tsigkeyring.from_text({"xfr-key.": ("hmac-sha256", SECRET)})


def policy(allow: tuple[str, ...] = ("127.0.0.0/8",), key: bool = True, **kw: object) -> TransferPolicy:
    return TransferPolicy(
        tuple(ipaddress.ip_network(a) for a in allow),
        KEYRING if key else None,
        KEY if key else None,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def source() -> FakeSource:
    return FakeSource(ZONE, initial_data())


def running(source: FakeSource, transfer: TransferPolicy, serial_file: Path | None = None) -> Running:
    return Running(DnsServer([source], HOST, 0, rng=random.Random(1), transfer=transfer, serial_file=serial_file))


@pytest.fixture
def srv(source: FakeSource) -> Iterator[Running]:
    r = running(source, policy())
    try:
        yield r
    finally:
        r.close()


def axfr(srv: Running, keyring: dict[dns.name.Name, dns.tsig.Key] | None = KEYRING) -> dns.zone.Zone:
    return dns.zone.from_xfr(
        dns.query.xfr(HOST, ZONE, port=srv.port, keyring=keyring, keyname=KEY if keyring else None, lifetime=10,
                      relativize=False),
        relativize=False,
    )


def rcode_of(srv: Running, rdtype: str = "AXFR", keyring: dict[dns.name.Name, dns.tsig.Key] | None = None) -> int:
    q = dns.message.make_query(ZONE, rdtype)
    if keyring is not None:
        q.use_tsig(keyring, KEY)
    r = dns.query.tcp(q, HOST, port=srv.port, timeout=5)
    return int(r.rcode())


def texts(zone: dns.zone.Zone, name: str, rdtype: str) -> set[str]:
    rds = zone.get_rdataset(dns.name.from_text(name), rdtype)
    return set() if rds is None else {rd.to_text() for rd in rds}


def test_axfr_signed_from_allowed_address_gives_the_whole_zone(srv: Running, source: FakeSource) -> None:
    zone = axfr(srv)
    soa = zone.get_soa()
    assert soa.serial == srv.server._tables[0].serial
    assert texts(zone, ZONE, "NS") == {"ns1.demo.test."}
    assert texts(zone, "ns1.demo.test.", "A") == {"127.0.0.1"}
    assert texts(zone, API.name, "A") == {"10.0.0.1"}
    # weighted endpoints: every member with weight > 0 (answer: all semantics), weight 0 left out
    assert texts(zone, WEIGHTED.name, "A") == {"192.0.2.1", "192.0.2.2", "198.51.100.1", "198.51.100.2"}
    assert texts(zone, ALL.name, "A") == {"10.1.0.1", "10.1.0.2", "10.2.0.1"}
    for key, observed in source.data.items():
        assert observed.marker is not None
        assert texts(zone, marker_name(key), "TXT") == {f'"{observed.marker.to_text()}"'}
    big = zone.get_rdataset(dns.name.from_text("big.demo.test."), "AAAA")
    assert big is not None and len(big) == 60


def test_axfr_spans_several_messages_each_signed(source: FakeSource) -> None:
    for i in range(600):
        source.data[API._replace(name=f"n{i}.demo.test.")] = obs(60, [Member("x", (f"10.7.{i // 250}.{i % 250}",), 1)])
    r = running(source, policy())
    try:
        q = dns.message.make_query(ZONE, "AXFR")
        q.use_tsig(KEYRING, KEY)
        messages = 0
        with socket.create_connection((HOST, r.port), timeout=5) as s:
            dns.query.send_tcp(s, q)
            ctx = None
            request_mac = q.mac
            soas = 0
            while soas < 2:
                size = int.from_bytes(_read(s, 2), "big")
                m = dns.message.from_wire(
                    _read(s, size), keyring=KEYRING, request_mac=request_mac, multi=True, tsig_ctx=ctx, xfr=True
                )
                ctx = m.tsig_ctx
                request_mac = b""
                assert m.had_tsig, "every message of the transfer is signed"
                messages += 1
                soas += sum(1 for rrset in m.answer if rrset.rdtype == dns.rdatatype.SOA)
        assert messages > 1
        zone = axfr(r)
        assert texts(zone, "n599.demo.test.", "A") == {"10.7.2.99"}
    finally:
        r.close()


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed mid-message"
        buf += chunk
    return buf


def test_transfer_refused_without_key_or_from_outside_the_acl(source: FakeSource) -> None:
    r = running(source, policy())
    try:
        assert rcode_of(r) == dns.rcode.REFUSED  # unsigned
        assert rcode_of(r, "IXFR") in (dns.rcode.REFUSED, dns.rcode.FORMERR)
        other = dns.tsigkeyring.from_text({"xfr-key.": ("hmac-sha256", base64.b64encode(b"z" * 32).decode())})
        with pytest.raises(dns.exception.FormError):  # NOTAUTH, unsigned (RFC 8945 §5.2.2: BADSIG)
            rcode_of(r, keyring=other)
        assert rcode_of(r, keyring=KEYRING) == dns.rcode.NOERROR
    finally:
        r.close()
    r = running(source, policy(allow=("192.0.2.0/24",)))
    try:
        assert rcode_of(r, keyring=KEYRING) == dns.rcode.REFUSED  # signed, but 127.0.0.1 is not allowed
    finally:
        r.close()
    r = running(source, TransferPolicy())  # no serve.transfer: everything refused
    try:
        assert rcode_of(r) == dns.rcode.REFUSED
    finally:
        r.close()


def test_transfer_shaped_queries_that_are_no_transfer_get_the_responders_answer(srv: Running) -> None:
    """Found by tests/dns/test_fuzz_packets on the merge of transfers with the protocol fixes: an IXFR-typed
    IQUERY got REFUSED (the responder: NOTIMP), and a refused transfer dropped the query's CD bit."""

    def ask(name: str, rdtype: str, opcode: int = 0, flags: int = 0) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, want_dnssec=False)
        q.set_opcode(dns.opcode.Opcode(opcode))
        q.flags |= flags
        return dns.query.tcp(q, HOST, port=srv.port, timeout=5)

    assert ask(ZONE, "IXFR", opcode=1).rcode() == dns.rcode.NOTIMP
    outside = ask("other.test.", "AXFR", flags=dns.flags.CD)
    assert outside.rcode() == dns.rcode.REFUSED and outside.flags & dns.flags.CD
    unsigned = ask(ZONE, "AXFR", flags=dns.flags.CD)  # refused: the key is not used
    assert unsigned.rcode() == dns.rcode.REFUSED and unsigned.flags & dns.flags.CD


def test_ixfr_from_the_journal_then_axfr_when_it_no_longer_reaches(source: FakeSource) -> None:
    r = running(source, policy(journal=3))
    try:
        zone = axfr(r)
        old = zone.get_soa().serial
        table = r.server._tables[0]
        source.commit(API, obs(30, [Member("lb-2", ("10.0.0.2",), 1000)], gen=8))
        wait_for("serial bump", lambda: table.serial != old, 5)
        # IXFR from the old serial: one difference sequence, applied by dnspython's inbound machinery
        q, _ = dns.xfr.make_query(zone, keyring=KEYRING, keyname=KEY)
        assert q.question[0].rdtype == dns.rdatatype.IXFR
        dns.query.inbound_xfr(HOST, zone, q, port=r.port, lifetime=10)
        assert zone.get_soa().serial == table.serial
        assert texts(zone, API.name, "A") == {"10.0.0.2"}
        full = axfr(r)
        assert {(n, rds.rdtype): set(rds) for n, node in zone.items() for rds in node} == {
            (n, rds.rdtype): set(rds) for n, node in full.items() for rds in node
        }
        # raw IXFR: the differences' shape (SOA new, SOA old, deletions, SOA new, additions, SOA new)
        q = dns.message.make_query(ZONE, "IXFR")
        q.authority.append(dns.rrset.from_text(ZONE, 0, "IN", "SOA", f". . {old} 0 0 0 0"))
        q.use_tsig(KEYRING, KEY)
        resp = dns.query.tcp(q, HOST, port=r.port, timeout=5, one_rr_per_rrset=True)
        soas = [rr[0].serial for rr in resp.answer if rr.rdtype == dns.rdatatype.SOA]
        assert soas == [table.serial, old, table.serial, table.serial]
        # four more batches: the journal (3 versions) no longer reaches ``old``: the full zone (AXFR form)
        for g in range(9, 13):
            before = table.serial
            source.commit(API, obs(30, [Member("lb-2", (f"10.0.0.{g}",), 1000)], gen=g))
            wait_for("serial bump", lambda before=before: table.serial != before, 5)  # type: ignore[misc]
        resp = dns.query.tcp(q, HOST, port=r.port, timeout=5, one_rr_per_rrset=True)
        soas = [rr[0].serial for rr in resp.answer if rr.rdtype == dns.rdatatype.SOA]
        assert soas == [table.serial, table.serial]
        assert any(rr.name == dns.name.from_text(ALL.name) for rr in resp.answer)
        # up to date: the SOA alone
        q2 = dns.message.make_query(ZONE, "IXFR")
        q2.authority.append(dns.rrset.from_text(ZONE, 0, "IN", "SOA", f". . {table.serial} 0 0 0 0"))
        q2.use_tsig(KEYRING, KEY)
        resp = dns.query.tcp(q2, HOST, port=r.port, timeout=5)
        assert [rr.rdtype for rr in resp.answer] == [dns.rdatatype.SOA]
    finally:
        r.close()


def test_serial_never_goes_backwards_across_restarts(source: FakeSource, tmp_path: Path) -> None:
    path = tmp_path / "dns-serial.json"
    far = 2**32 - 5  # ahead of the clock, and about to wrap: RFC 1982 arithmetic must carry it on
    path.write_text(json.dumps({ZONE: far}))
    r = running(source, policy(), path)
    try:
        first = r.server._tables[0].serial
        assert dns.serial.Serial(first) > dns.serial.Serial(far)
        for g in range(8, 16):
            before = r.server._tables[0].serial
            source.commit(API, obs(30, [Member("lb-2", (f"10.0.0.{g}",), 1000)], gen=g))
            wait_for("serial bump", lambda before=before: r.server._tables[0].serial != before, 5)  # type: ignore[misc]
        last = r.server._tables[0].serial
        assert last < far  # wrapped past 2**32
        assert json.loads(path.read_text()) == {ZONE: last}
    finally:
        r.close()
    r = running(source, policy(), path)
    try:
        assert dns.serial.Serial(r.server._tables[0].serial) > dns.serial.Serial(last)
    finally:
        r.close()


class FakeSecondary:
    """A UDP socket that answers NOTIFY (or ignores the first ``ignore`` of them)."""

    def __init__(self, ignore: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.ignore = ignore
        self.received: list[int] = []
        self.acked: list[int] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            q = dns.message.from_wire(data, keyring=KEYRING)
            assert q.opcode() == dns.opcode.NOTIFY and q.had_tsig
            serial = q.answer[0][0].serial
            self.received.append(serial)
            if len(self.received) <= self.ignore:
                continue
            resp = dns.message.make_response(q)
            self.sock.sendto(resp.to_wire(), addr)
            self.acked.append(serial)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def test_notify_on_every_change_retried_until_acknowledged(source: FakeSource) -> None:
    sec = FakeSecondary(ignore=1)
    r = running(source, policy(notify=((HOST, sec.port),)))
    try:
        table = r.server._tables[0]
        wait_for("the first NOTIFY acknowledged after a retry", lambda: sec.acked == [table.serial], 10)
        assert len(sec.received) >= 2  # ignored once, then retried
        source.commit(API, obs(30, [Member("lb-2", ("10.0.0.2",), 1000)], gen=8))
        wait_for("NOTIFY of the new serial", lambda: sec.acked[-1:] == [table.serial], 10)
        # answering never waited for the secondary
        assert rcode_of(r, "SOA") == dns.rcode.NOERROR
    finally:
        r.close()
        sec.close()


def test_serve_ns_replaces_ns1_in_answers_and_transfers(source: FakeSource) -> None:
    r = running(source, policy(nameservers=("a.ns.example.net.", "b.ns.example.net.")))
    try:
        q = dns.message.make_query(ZONE, "NS")
        resp = dns.query.udp(q, HOST, port=r.port, timeout=5)
        assert {rd.to_text() for rr in resp.answer for rd in rr} == {"a.ns.example.net.", "b.ns.example.net."}
        assert not resp.additional  # no glue: the names are outside the zone
        resp = dns.query.udp(dns.message.make_query("ns1." + ZONE, "A"), HOST, port=r.port, timeout=5)
        assert resp.rcode() == dns.rcode.NXDOMAIN
        zone = axfr(r)
        assert texts(zone, ZONE, "NS") == {"a.ns.example.net.", "b.ns.example.net."}
        assert zone.get_rdataset(dns.name.from_text("ns1." + ZONE), "A") is None
        assert zone.get_soa().mname == dns.name.from_text("a.ns.example.net.")
    finally:
        r.close()


def test_queries_are_answered_while_a_transfer_is_built(source: FakeSource) -> None:
    for i in range(3000):
        source.data[API._replace(name=f"n{i}.demo.test.")] = obs(60, [Member("x", (f"10.8.{i // 250}.{i % 250}",), 1)])
    r = running(source, policy())
    try:
        q = dns.message.make_query(ZONE, "AXFR")
        q.use_tsig(KEYRING, KEY)
        before = r.server.stats.tcp_queries
        with socket.create_connection((HOST, r.port), timeout=30) as s:
            dns.query.send_tcp(s, q)
            wait_for("the transfer request taken", lambda: r.server.stats.tcp_queries > before, 10)
            answer = dns.query.udp(dns.message.make_query(API.name, "A"), HOST, port=r.port, timeout=10)
            assert answer.rcode() == dns.rcode.NOERROR
            # answered while the zone (3,000 names, a second or so) is still being rendered in a worker
            # thread: nothing of the transfer has come yet. Built in the loop thread, it came first.
            ready, _, _ = select.select([s], [], [], 0)
            assert not ready, "the transfer was sent before a query that came after it was answered"
            size = int.from_bytes(_read(s, 2), "big")
            first = dns.message.from_wire(_read(s, size), keyring=KEYRING, request_mac=q.mac, multi=True, xfr=True)
            assert first.answer[0].rdtype == dns.rdatatype.SOA
    finally:
        r.close()


def test_a_newer_serial_is_notified_at_once_not_after_the_retry_wait(
        source: FakeSource, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "ATTEMPT_TIMEOUT", 0.3)
    monkeypatch.setattr(notify, "RETRY_FIRST", 60.0)  # a retry would come long after the bound below
    sec = FakeSecondary(ignore=1)  # the first NOTIFY goes unanswered
    r = running(source, policy(notify=((HOST, sec.port),)))
    try:
        table = r.server._tables[0]
        wait_for("the first NOTIFY", lambda: len(sec.received) == 1, 10)
        first = table.serial
        source.commit(API, obs(30, [Member("lb-2", ("10.0.0.2",), 1000)], gen=8))
        wait_for("the newer serial acknowledged", lambda: sec.acked[-1:] == [table.serial], 10)
        assert table.serial != first and first not in sec.acked  # the newer serial replaced it
    finally:
        r.close()
        sec.close()
