"""Hostile clients against a real ``dnsplane up`` with its default limits (``dnsplane.dns.server``):
a TCP client sending one byte a second is closed by the 5 s message deadline while UDP and other TCP
clients are answered, and ``--rrl`` rate limits identical UDP answers (excess dropped or truncated).
"""

from __future__ import annotations

import select
import socket
import struct
import time

import dns.flags
import dns.message
import dns.query

from tests.realworld.harness import World, addresses, wait_for

A1 = "192.0.2.20"


def start(world: World, *extra: str) -> tuple[str, int]:
    lb = world.target("lb-1", A1)
    fleet = world.fleet([lb], {"api": ["lb-1"]}, provider="embedded")
    up = world.dnsplane(fleet, extra_args=list(extra))
    wait_for("api to be served", lambda: addresses(up.dns, "api.demo.test") == {A1}, detail=up.log_tail)
    return up.dns


def test_a_one_byte_a_second_tcp_client_is_closed_and_others_are_served(embedded_world: World) -> None:
    server = start(embedded_world)
    wire = dns.message.make_query("api.demo.test.", "A").to_wire()
    message = struct.pack("!H", len(wire)) + wire
    with socket.create_connection(server, timeout=10) as slow:
        started = time.monotonic()
        sent = 0
        while sent < len(message):
            slow.sendall(message[sent : sent + 1])
            sent += 1
            if select.select([slow], [], [], 1.0)[0]:  # the client's pace: one byte a second
                break
            # meanwhile the server answers everyone else
            assert addresses(server, "api.demo.test") == {A1}
            assert dns.query.tcp(
                dns.message.make_query("api.demo.test.", "A"), server[0], port=server[1], timeout=5
            ).answer
        assert slow.recv(1) == b"", "the slow client was answered, not closed"
        assert sent < len(message)
        assert 4.0 <= time.monotonic() - started < 9.0  # the 5 s message deadline, not the 10 s idle timer


def test_rrl_flag_limits_identical_udp_answers(embedded_world: World) -> None:
    server = start(embedded_world, "--rrl", "5", "--rrl-slip", "2")
    query = dns.message.make_query("api.demo.test.", "A").to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(60):
            s.sendto(query, server)
        got = []
        while select.select([s], [], [], 0.5)[0]:
            got.append(dns.message.from_wire(s.recv(4096)))
    truncated = [m for m in got if m.flags & dns.flags.TC]
    assert truncated and len(got) < 60, f"{len(got)} answers to 60 identical queries, {len(truncated)} truncated"
    assert len(got) - len(truncated) <= 20  # 5 a second (the verifier's own queries come from another port)
