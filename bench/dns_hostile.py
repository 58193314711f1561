"""Benchmark: the embedded server's throughput with its hostile-client limits, and what slow clients cost.

1. ``dnsperf`` (UDP, then TCP) against a ``DnsServer`` serving 1,000 names in a child process, for
   ``--seconds`` each: queries per second and lost queries; with ``--rrl N`` the server rate limits
   (choose N above what one client gets, to measure the bookkeeping, or below, to see it drop).
2. Slow clients: ``--slow`` connections each sending one byte every 4 s (the issue's attack), against the
   same server with its default limits: how many the server keeps open (its descriptors) after 8 s,
   and that UDP and a fresh TCP connection are still answered meanwhile.

Usage: ``python bench/dns_hostile.py [--seconds 10] [--rrl N] [--slow 1100]``. The server is the code
of the working tree (``PYTHONPATH`` decides: point it at another checkout to compare).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER = textwrap.dedent(
    """
    import asyncio, inspect, sys
    from dnsplane.dns import DnsServer
    from dnsplane.model import EndpointKey, Generation, Marker, Member, Observed, RecordSet

    class Source:
        zone = "bench.test."
        def __init__(self):
            self.data = {}
            for i in range(1000):
                rs = RecordSet.of(30, [Member("lb", (f"10.0.{i // 256}.{i % 256}",), 1)])
                marker = Marker.after(None, Generation(1), rs.digest)
                self.data[EndpointKey(f"n{i}.bench.test.", "A")] = Observed(rs, marker)
        def read_all(self): return dict(self.data)
        def read(self, keys): return {k: self.data.get(k, Observed(None, None)) for k in keys}
        def add_listener(self, fn): pass
        def data_version(self): return 1

    async def main():
        kw = {}
        rrl = int(sys.argv[1])
        if rrl:
            from dnsplane.dns.ratelimit import RateLimit
            kw["rate_limit"] = RateLimit(rrl)
        server = DnsServer([Source()], "127.0.0.1", 0, **kw)
        await server.start()
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop()

    asyncio.run(main())
    """
)


def start_server(rrl: int) -> tuple[subprocess.Popen[str], int]:
    tree = os.environ.get("PYTHONPATH", str(ROOT))
    # cwd: ``-c`` puts the working directory first on sys.path, before PYTHONPATH
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(rrl)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": tree},
        cwd=tree,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def dnsperf(port: int, mode: str, seconds: int, queries: Path) -> str:
    out = subprocess.run(
        [
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            mode,
            "-d",
            str(queries),
            "-l",
            str(seconds),
            "-c",
            "1",
            "-T",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    return f"{mode}: {float(qps.group(1)) if qps else 0:,.0f} qps, lost {lost.group(1) if lost else '?'}"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slow_clients(port: int, pid: int, n: int) -> str:
    conns: list[socket.socket] = []
    wire = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02n1\x05bench\x04test\x00\x00\x01\x00\x01"
    query = len(wire).to_bytes(2, "big") + wire
    for _ in range(n):  # connected one by one (the listen backlog is 128)
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.setblocking(False)
        conns.append(c)
    start = time.monotonic()
    sent = 0
    peak = open_fds(pid)
    while time.monotonic() - start < 8.0:
        for c in conns:  # one more byte of the query on every connection still open
            with contextlib.suppress(OSError):
                c.send(query[sent : sent + 1])
        sent += 1
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            peak = max(peak, open_fds(pid))
            time.sleep(0.25)
    alive = 0
    for c in conns:
        try:
            alive += c.recv(1) != b""
        except BlockingIOError:
            alive += 1  # nothing to read: still open
        except OSError:
            pass  # reset: closed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(2)
        u.sendto(query[2:], ("127.0.0.1", port))
        udp_ok = len(u.recv(512)) > 12
    with socket.create_connection(("127.0.0.1", port), timeout=2) as t:
        t.sendall(query)
        tcp_ok = len(t.recv(512)) > 14
    for c in conns:
        c.close()
    return (
        f"{n} slow clients (one byte every 4 s) for 8 s: server descriptors peak {peak}, "
        f"connections still open at the end {alive}, UDP answered {udp_ok}, fresh TCP answered {tcp_ok}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rrl", type=int, default=0, help="responses per second per account (0: off)")
    ap.add_argument("--slow", type=int, default=1100, help="slow TCP clients (0: skip)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        queries = Path(tmp) / "queries"
        queries.write_text("".join(f"n{i}.bench.test. A\n" for i in range(1000)))
        proc, port = start_server(args.rrl)
        try:
            print(dnsperf(port, "udp", args.seconds, queries))
            print(dnsperf(port, "tcp", args.seconds, queries))
            if args.slow:
                print(slow_clients(port, proc.pid, args.slow))
        finally:
            proc.communicate("", timeout=30)


if __name__ == "__main__":
    main()
