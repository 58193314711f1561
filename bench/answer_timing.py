"""Benchmark: what the answer-latency metric costs the answering hot path (issue 12, part 4).

A worker's UDP loop (``dnsplane.dns.worker._Answerer.serve``, the code every answering worker runs)
answers queries from a real loopback UDP socket over a zone of ``--names`` weighted endpoints (95 %
existing names, 5 % NXDOMAIN), with the answer timer as shipped (one query in ``ANSWER_SAMPLE`` timed),
switched off (no query timed), and on every query, side by side in each repetition (the order rotating).
Only the time inside ``serve`` counts (the client's sends and reads are outside it). Prints the time per
query of each variant (median and range over the repetitions) and its ratio to "off".
Usage: ``python bench/answer_timing.py [--names 1000] [--queries 50000] [--reps 5]``.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message

from dnsplane.dns import worker
from dnsplane.dns.responder import ANSWER_SAMPLE, Responder
from dnsplane.model import EndpointKey, Member
from tests.dns.test_server import obs

ZONE = "demo.test."
BATCH = 200  # queries in the socket at once (the worker reads up to UDP_BATCH per call)
VARIANTS = {"shipped": ANSWER_SAMPLE, "off": 1 << 62, "every query": 1}


def answerer(names: int) -> worker._Answerer:
    """A worker's answerer over a zone of ``names`` endpoints, without a process around it."""
    responder = Responder()
    table = responder.add_zone(ZONE, 1)
    for i in range(names):
        members = [Member(f"t{j}", (f"10.{j}.{i // 250 % 250}.{i % 250}",), 100) for j in range(3)]
        table.set(EndpointKey(f"e{i}.{ZONE}", "A"), obs(60, members))
    out = object.__new__(worker._Answerer)
    out.responder, out.limiter, out.names, out.slots = responder, None, set(), set()
    out.udp_queries = out.send_errors = 0
    return out


def run(a: worker._Answerer, server: socket.socket, client: socket.socket, wires: list[bytes]) -> float:
    """Seconds spent in ``serve`` answering every one of ``wires``."""
    spent = 0.0
    address = server.getsockname()
    for start in range(0, len(wires), BATCH):
        chunk = wires[start:start + BATCH]
        for wire in chunk:
            client.sendto(wire, address)
        target = a.udp_queries + len(chunk)
        t = time.perf_counter()
        while a.udp_queries < target:
            a.serve(server)
        spent += time.perf_counter() - t
        for _ in chunk:
            client.recv(4096)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(1)
    wires = [dns.message.make_query(f"e{rng.randrange(args.names)}.{ZONE}" if rng.random() < 0.95
                                    else f"nothere{i}.{ZONE}", "A").to_wire() for i in range(args.queries)]
    a = answerer(args.names)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    for s in (server, client):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    per_query: dict[str, list[float]] = {v: [] for v in VARIANTS}
    ratios: dict[str, list[float]] = {v: [] for v in VARIANTS}
    names = list(VARIANTS)
    for rep in range(args.reps):
        took = {}
        for variant in names[rep % len(names):] + names[:rep % len(names)]:
            worker.ANSWER_SAMPLE = VARIANTS[variant]  # type: ignore[misc]  # what serve() reads at each call
            took[variant] = run(a, server, client, wires)
            per_query[variant].append(took[variant] / len(wires) * 1e6)
        for variant in names:
            ratios[variant].append(took[variant] / took["off"])
    print(f"{args.queries:,} queries x {args.reps} repetitions, {args.names:,} names; time inside serve() per query")
    print("| answer timer | µs per query, median [min–max] | ratio to off, median [min–max] |")
    print("|---|---|---|")
    for variant in names:
        us, r = per_query[variant], ratios[variant]
        print(f"| {variant} | {statistics.median(us):.2f} [{min(us):.2f}–{max(us):.2f}] | "
              f"{statistics.median(r):.3f} [{min(r):.3f}–{max(r):.3f}] |")


if __name__ == "__main__":
    main()
