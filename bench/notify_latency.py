"""Benchmark: from a change committed to the embedded server to each secondary serving it, by NOTIFY + IXFR.

One ``DnsServer`` (in this process, its own event loop thread) serves ``demo.test.`` with ``--names``
endpoints (3 targets each) from an in-memory source, with a transfer key and NOTIFY to one secondary:
real BIND, NSD and Knot in turn, started on a loopback port (tests/servers/secondaries.py; the SOA's
refresh is an hour, so only NOTIFY brings a change). Each round changes one endpoint's addresses
(the source's commit, as the embedded provider's listener does after a write), then polls the
secondary's SOA over UDP every 0.5 ms until it shows the new serial: the time from the commit to
that answer. Rounds run one after another (the secondary is current before the next change).
Usage: ``python bench/notify_latency.py [--rounds 50] [--names 1000] [--kinds bind,nsd,knot]``;
prints p50, p99 and max in ms per secondary.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message
import dns.name
import dns.tsigkeyring

from dnsplane.dns import DnsServer
from dnsplane.dns.transfer import TransferPolicy
from dnsplane.model import EndpointKey, Member
from tests.dns.test_server import FakeSource, Running, obs
from tests.servers.named import free_port
from tests.servers.secondaries import Key, start_secondary

ZONE = "demo.test."


def serial_of(sock: socket.socket, port: int, wire: bytes) -> int | None:
    sock.sendto(wire, ("127.0.0.1", port))
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return None
    r = dns.message.from_wire(data)
    return int(r.answer[0][0].serial) if r.answer else None


def run(kind: str, rounds: int, names: int) -> list[float]:
    key = Key("xfr-key", base64.b64encode(secrets.token_bytes(32)).decode())
    keyring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})
    data = {EndpointKey(f"e{i}.{ZONE}", "A"): obs(60, [Member(f"t{j}", (f"10.{j}.{i // 250}.{i % 250}",), 1)
                                                      for j in range(3)]) for i in range(names)}
    source = FakeSource(ZONE, data)
    port = free_port()
    policy = TransferPolicy((ipaddress.ip_network("127.0.0.1/32"),), keyring, dns.name.from_text(key.name),
                            notify=(("127.0.0.1", port),))
    server = Running(DnsServer([source], "127.0.0.1", 0, transfer=policy))
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        sec = start_secondary(kind, Path(tmp), ZONE, ("127.0.0.1", server.port), key, port=port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.5)
        wire = dns.message.make_query(ZONE, "SOA").to_wire()
        try:
            table = server.server._tables[0]
            end = time.monotonic() + 60
            while serial_of(sock, sec.port, wire) != table.serial:
                if time.monotonic() > end:
                    raise RuntimeError(f"{kind} never got the zone:\n{sec.log_tail()}")
                time.sleep(0.01)
            for r in range(rounds + 1):
                k = EndpointKey(f"e{r % names}.{ZONE}", "A")
                before = table.serial
                t0 = time.perf_counter()
                source.commit(k, obs(60, [Member("t9", (f"10.99.{r // 250}.{r % 250}",), 1)], gen=100 + r))
                end = time.monotonic() + 30
                while True:
                    got = serial_of(sock, sec.port, wire)
                    if got is not None and got != before and got == table.serial:
                        break
                    if time.monotonic() > end:
                        raise RuntimeError(f"{kind} did not follow round {r}:\n{sec.log_tail()}")
                    time.sleep(0.0005)
                if r:  # the first round warms up
                    times.append((time.perf_counter() - t0) * 1000)
        finally:
            sock.close()
            sec.stop()
            server.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--kinds", default="bind,nsd,knot")
    args = parser.parse_args()
    print(f"{args.rounds} changes, zone of {args.names} endpoints; ms from commit to the secondary's new SOA")
    print("| secondary | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    for kind in args.kinds.split(","):
        t = sorted(run(kind, args.rounds, args.names))
        p99 = t[min(len(t) - 1, round(0.99 * (len(t) - 1)))]
        print(f"| {kind} | {statistics.median(t):.1f} | {p99:.1f} | {t[-1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
