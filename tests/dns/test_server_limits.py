"""The embedded server against hostile clients, on real sockets: TCP read deadline, lifetime,
connection cap, pipelining bound, accept() out of descriptors, and response rate limiting.

Limits are made short through the server's constructor options; waiting is polling with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import select
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest

from dnsplane.dns import DnsServer
from dnsplane.dns.ratelimit import RateLimit, ResponseLimiter, truncated
from tests.dns.test_server import DEADLINE, HOST, FakeSource, Running, addresses, initial_data, udp, wait_for

ZONE = "demo.test."


def running(**options: Any) -> Running:
    return Running(DnsServer([FakeSource(ZONE, initial_data())], HOST, 0, rng=random.Random(7), **options))


@pytest.fixture
def make() -> Iterator[Any]:
    servers: list[Running] = []

    def start(**options: Any) -> Running:
        servers.append(running(**options))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def framed(qid: int, name: str = "api.demo.test.", rdtype: str = "A") -> bytes:
    wire = dns.message.make_query(name, rdtype, id=qid).to_wire()
    return struct.pack("!H", len(wire)) + wire


def read_answer(s: socket.socket) -> dns.message.Message:
    f = s.makefile("rb")
    (size,) = struct.unpack("!H", f.read(2))
    return dns.message.from_wire(f.read(size))


def send_until_closed(s: socket.socket, payload: bytes) -> None:
    with contextlib.suppress(OSError):  # the server closes the connection under the sender
        s.sendall(payload)


def closed_by_server(s: socket.socket, within: float = DEADLINE) -> bool:
    """True once the server closed ``s`` (EOF or reset), False if it stays open ``within`` seconds."""
    ready, _, _ = select.select([s], [], [], within)
    if not ready:
        return False
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


# --- read deadline, idle, lifetime ---------------------------------------------------------


def test_slow_byte_client_is_closed_by_the_read_deadline(make: Any) -> None:
    """One byte every 0.1 s: the idle timer (5 s) would never fire; the message deadline (0.5 s) does."""
    srv = make(tcp_read_timeout=0.5, tcp_idle_timeout=5.0)
    msg = framed(1)
    sent = 0
    with socket.create_connection((HOST, srv.port), timeout=DEADLINE) as s:
        started = time.monotonic()
        closed = False
        while sent < len(msg):
            s.sendall(msg[sent : sent + 1])
            sent += 1
            if closed_by_server(s, within=0.1):  # the pace of the slow client
                closed = True
                break
        assert closed, f"the whole {len(msg)}-byte message was sent one byte at a time and answered"
        assert sent < len(msg)
        assert time.monotonic() - started < 5.0
    assert srv.server.limit_stats.tcp_read_timeouts == 1


def test_a_message_sent_whole_is_answered_and_the_connection_then_idles_out(make: Any) -> None:
    srv = make(tcp_read_timeout=0.5, tcp_idle_timeout=0.3)
    with socket.create_connection((HOST, srv.port), timeout=DEADLINE) as s:
        s.sendall(framed(5))
        assert addresses(read_answer(s)) == {"10.0.0.1"}
        assert closed_by_server(s)
    assert srv.server.limit_stats.tcp_idle_timeouts == 1
    assert srv.server.limit_stats.tcp_read_timeouts == 0


def test_lifetime_closes_a_busy_connection(make: Any) -> None:
    """A client that keeps asking (never idle, never slow) is closed at the connection's lifetime."""
    srv = make(tcp_lifetime=0.5, tcp_idle_timeout=5.0, tcp_read_timeout=5.0)
    with socket.create_connection((HOST, srv.port), timeout=DEADLINE) as s:
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < DEADLINE:
            try:
                s.sendall(framed(answered % 65536))
                read_answer(s)
            except (OSError, struct.error):
                break
            answered += 1
        else:
            raise AssertionError("a busy connection outlived the lifetime")
    assert answered > 0
    assert srv.server.limit_stats.tcp_lifetime_closes == 1


# --- connection cap ---------------------------------------------------------------------------


def test_connection_over_the_cap_closes_the_longest_idle_then_is_refused(make: Any) -> None:
    srv = make(tcp_max_connections=3, tcp_idle_timeout=30.0, tcp_read_timeout=30.0)
    conns = [socket.create_connection((HOST, srv.port), timeout=DEADLINE) for _ in range(3)]
    try:
        for i, c in enumerate(conns):  # answered: admitted, idle since in this order
            c.sendall(framed(i))
            read_answer(c)
        fourth = socket.create_connection((HOST, srv.port), timeout=DEADLINE)
        conns.append(fourth)
        fourth.sendall(framed(4))
        assert read_answer(fourth).id == 4
        assert closed_by_server(conns[0]), "the longest idle connection was not closed"
        for c in conns[1:]:
            c.sendall(framed(9))
            assert read_answer(c).id == 9
        for c in conns[1:]:
            c.sendall(framed(10)[:1])  # a message begun: busy, not idle
        wait_for(lambda: all(c.idle_since is None for c in list(srv.server._tcp.conns)), "three busy connections")
        fifth = socket.create_connection((HOST, srv.port), timeout=DEADLINE)
        conns.append(fifth)
        assert closed_by_server(fifth), "a connection over the cap with none idle was served"
        for c in conns[1:4]:
            c.sendall(framed(10)[1:])
            assert read_answer(c).id == 10
    finally:
        for c in conns:
            c.close()
    stats = srv.server.limit_stats
    assert (stats.tcp_evicted, stats.tcp_refused) == (1, 1)


# --- pipelining ---------------------------------------------------------------------------------


def test_pipelined_queries_are_bounded_and_none_is_lost(make: Any) -> None:
    """A client sends 8,000 queries for a 1.7 kB answer (14 MB of answers, more than the kernel's socket
    buffers hold) and reads nothing: the server stops reading with at most ``tcp_max_pipelined`` answers
    held unsent; when the client reads, every query is answered, in order."""
    limit = 4
    srv = make(tcp_max_pipelined=limit, tcp_read_timeout=30.0, tcp_idle_timeout=30.0)
    n = 8000
    payload = b"".join(framed(i, "big.demo.test.", "AAAA") for i in range(n))
    s = socket.create_connection((HOST, srv.port), timeout=DEADLINE)
    sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
    sender.start()
    try:
        wait_for(lambda: srv.server.limit_stats.tcp_pipeline_pauses >= 1, "the connection to stop reading")

        async def held() -> tuple[int, int]:
            (conn,) = list(srv.server._tcp.conns)
            assert conn._transport is not None
            return conn.pending_answers, conn._transport.get_write_buffer_size()

        pending, unsent = srv.call(held())
        one_answer = 2 + len(dns.message.make_query("big.demo.test.", "AAAA").to_wire()) + 60 * 28
        assert pending <= limit
        assert unsent <= limit * one_answer
        f = s.makefile("rb")
        answers = []
        for _ in range(n):
            (size,) = struct.unpack("!H", f.read(2))
            answers.append(f.read(size))
        assert [struct.unpack("!H", a[:2])[0] for a in answers] == list(range(n))  # the IDs, in order
        for a in (answers[0], answers[-1]):
            assert len(addresses(dns.message.from_wire(a))) == 60
    finally:
        s.close()
        sender.join(timeout=DEADLINE)


def test_a_client_that_never_reads_is_closed_once_its_answers_stall(make: Any) -> None:
    """Answers left unsent (the client sends and never reads) and none taken for ``tcp_idle_timeout``: closed,
    long before the lifetime; the cap's "none idle, refuse the new one" cannot be held this way."""
    srv = make(tcp_idle_timeout=0.5, tcp_read_timeout=30.0, tcp_lifetime=60.0)
    payload = b"".join(framed(i, "big.demo.test.", "AAAA") for i in range(8000))
    s = socket.create_connection((HOST, srv.port), timeout=DEADLINE)
    sender = threading.Thread(target=send_until_closed, args=(s, payload), daemon=True)
    try:
        sender.start()
        wait_for(lambda: srv.server.limit_stats.tcp_write_stalls == 1, "the stalled connection to be closed")
        assert not srv.server._tcp.conns
    finally:
        s.close()
        sender.join(timeout=DEADLINE)


# --- accept() out of descriptors ------------------------------------------------------------

_EMFILE_SERVER = textwrap.dedent(
    """
    import asyncio, logging, os, resource, sys
    from tests.dns.test_server import FakeSource, initial_data
    from dnsplane.dns import DnsServer

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

    async def main():
        server = DnsServer([FakeSource("demo.test.", initial_data())], "127.0.0.1", 0,
                           tcp_max_connections=1000, tcp_idle_timeout=60, tcp_read_timeout=60)
        await server.start()
        used = len(os.listdir("/proc/self/fd"))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 3, hard))
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
        await server.stop()

    asyncio.run(main())
    """
)


def test_accept_out_of_descriptors_logs_once_and_keeps_answering(tmp_path: Path) -> None:
    """RLIMIT_NOFILE a few above what the server holds: accept() fails with EMFILE; UDP and the open
    TCP connections are still answered, the waiting connection is served once descriptors are free,
    and the failure is one warning line, no traceback."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    log = tmp_path / "server.err"
    with log.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", _EMFILE_SERVER],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    conns: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        # connect until the server logs that it could not accept one
        waiting = None
        for i in range(20):
            c = socket.create_connection((HOST, port), timeout=DEADLINE)
            conns.append(c)
            c.sendall(framed(i))
            wait_for(
                lambda c=c: bool(select.select([c], [], [], 0)[0]) or "tcp accept failed" in log.read_text(),
                "an answer or the accept failure",
            )
            if not select.select([c], [], [], 0)[0]:
                waiting = c
                break
            assert read_answer(c).id == i
        assert waiting is not None, "20 connections accepted under a limit of a few descriptors"
        srv = type("P", (), {"port": port})()
        for _ in range(3):  # UDP and the accepted connections keep answering while accept() fails
            assert addresses(udp(srv, "api.demo.test.")) == {"10.0.0.1"}  # type: ignore[arg-type]
            conns[0].sendall(framed(77))
            assert read_answer(conns[0]).id == 77
        for c in conns[:-1]:
            c.close()
        waiting.settimeout(DEADLINE)
        assert read_answer(waiting).id == len(conns) - 1  # accepted after the backoff, then answered
    finally:
        for c in conns:
            c.close()
        proc.communicate(input="", timeout=DEADLINE * 2)
    err = log.read_text()
    assert proc.returncode == 0, err
    assert err.count("tcp accept failed") == 1, err
    assert "Traceback" not in err and "out of system resource" not in err, err


# --- response rate limiting -----------------------------------------------------------------


def test_limiter_budget_slip_and_refill() -> None:
    limiter = ResponseLimiter(RateLimit(responses_per_second=3, slip=2))
    resp = dns.message.make_response(dns.message.make_query("api.demo.test.", "A")).to_wire()
    got = [limiter.filter(resp, "192.0.2.7", 100.0) for _ in range(9)]
    assert got[:3] == [resp] * 3
    assert got[3:] == [None, truncated(resp), None, truncated(resp), None, truncated(resp)]
    assert limiter.filter(resp, "192.0.2.200", 100.0) is None  # same /24, same account
    assert limiter.filter(resp, "192.0.3.7", 100.0) == resp  # another netblock
    assert limiter.filter(resp, "192.0.2.7", 100.5) == resp  # half a second: 1.5 tokens back
    other = dns.message.make_response(dns.message.make_query("www.demo.test.", "A")).to_wire()
    assert limiter.filter(other, "192.0.2.7", 100.5) == other  # another answer, another account
    slipped = dns.message.from_wire(truncated(resp))
    assert slipped.flags & dns.flags.TC and not slipped.answer and slipped.question
    assert (limiter.stats.sent, limiter.stats.slipped, limiter.stats.dropped) == (6, 3, 4)
    v6 = ResponseLimiter(RateLimit(responses_per_second=1, slip=0))
    assert v6.filter(resp, "2001:db8:0:ff::1", 0.0) == resp
    assert v6.filter(resp, "2001:db8:0:1::2", 0.0) is None  # same /56, slip 0: dropped


def _blast(port: int, n: int) -> list[dns.message.Message]:
    """Send ``n`` identical queries from one socket, then read what comes back until 0.5 s of silence."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        wire = dns.message.make_query("api.demo.test.", "A").to_wire()
        for _ in range(n):
            s.sendto(wire, (HOST, port))
        got = []
        while select.select([s], [], [], 0.5)[0]:
            got.append(dns.message.from_wire(s.recv(4096)))
        return got


def test_rate_limit_off_by_default_answers_every_query(make: Any) -> None:
    srv = make()
    assert len(_blast(srv.port, 50)) == 50


def test_rate_limit_drops_and_slips_over_budget_and_spares_tcp(make: Any) -> None:
    srv = make(rate_limit=RateLimit(responses_per_second=5, slip=2))
    started = time.monotonic()
    got = _blast(srv.port, 50)
    elapsed = time.monotonic() - started
    full = [m for m in got if not m.flags & dns.flags.TC]
    slipped = [m for m in got if m.flags & dns.flags.TC]
    assert 5 <= len(full) <= 5 + 5 * elapsed + 1
    assert slipped and all(not m.answer and m.rcode() == dns.rcode.NOERROR for m in slipped)
    assert len(got) < 50
    with socket.create_connection((HOST, srv.port), timeout=DEADLINE) as s:  # TCP is never limited
        for i in range(20):
            s.sendall(framed(i))
            assert addresses(read_answer(s)) == {"10.0.0.1"}


def test_rate_limit_options_are_checked() -> None:
    with pytest.raises(ValueError):
        RateLimit(responses_per_second=0)
    with pytest.raises(ValueError):
        RateLimit(responses_per_second=5, slip=11)
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 100  # the EMFILE test lowers it only in its child
