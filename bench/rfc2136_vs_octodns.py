"""Benchmark: dnsplane's RFC 2136 provider against raw dnspython UPDATEs and octoDNS, on one BIND9.

One ``named`` (started here, on a loopback port, a zone per contender) serves every contender in
the same run. Workloads: N endpoints written from empty, then a change of M of them (one address of
each changes). Every endpoint has two targets (``lb-<i>-a``, ``lb-<i>-b``, weight 500 each), so BIND
serves two A records and dnsplane's marker carries the record-set JSON (target ids and weights).

Contenders:
- raw (records only): dnspython ``UpdateMessage.replace`` of the A RRset, 500 endpoints per message,
  unconditional, one TCP connection — the ceiling;
- raw + marker: the same plus the marker TXT dnsplane would write, still without prerequisites
  (200 endpoints per message: 500 of them do not fit in 64 KiB)
  (so the price of the compare-and-swap itself shows);
- dnsplane: ``Rfc2136Provider.apply`` (compare-and-swap: a value-dependent prerequisite on each
  endpoint's marker), batches of ``max_batch`` endpoints, after the ``read`` the enactor always does
  before writing; reported as apply alone and as read + apply;
- octoDNS 1.x + octodns-bind's ``Rfc2136Provider``: ``octodns-sync --doit`` from a YAML source, end to
  end (process start, AXFR, plan, UPDATEs), installed in a virtualenv made here (``--octodns-venv``);
  not a dependency of dnsplane.

Usage: ``python bench/rfc2136_vs_octodns.py [--endpoints 10000] [--change 1000] [--no-octodns]``.
Prints a markdown table (seconds, endpoints/s) and the ratios the issue's goals name.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.query
import dns.rcode
import dns.update

from bench.octodns_run import a_record, octodns_sync, octodns_venv
from dnsplane.model import Generation, Marker, Member, RecordSet, Write
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.rfc2136 import Rfc2136Provider
from dnsplane.providers.rfc2136.marker import split_txt, txt_rdatas
from tests.fakes import key
from tests.servers.named import NamedServer, start_named

ZONES = ("raw.test.", "rawm.test.", "cas.test.", "octo.test.")


def record_set(i: int, generation: int) -> RecordSet:
    """Endpoint i at a generation: two targets; generation 2 moves target b to a new address."""
    b = f"10.{100 + generation}.{i // 256 % 256}.{i % 256}"
    return RecordSet.of(30, [Member(f"lb-{i}-a", (f"10.1.{i // 256 % 256}.{i % 256}",), 500),
                             Member(f"lb-{i}-b", (b,), 500)])


def name(i: int, zone: str) -> str:
    return f"e{i}.{zone}"


def raw_updates(server: NamedServer, zone: str, items: list[int], generation: int, with_marker: bool) -> float:
    """Unconditional UPDATEs on one TCP connection: 500 endpoints per message, 200 with the marker (500 of
    those do not fit in 64 KiB). Returns seconds."""
    per = 200 if with_marker else 500
    start = time.perf_counter()
    sock = socket.create_connection((server.host, server.port))
    try:
        for at in range(0, len(items), per):
            u = server.update(zone)
            for i in items[at : at + per]:
                rs = record_set(i, generation)
                u.replace(name(i, zone), rs.ttl, "A", *rs.addresses())
                if with_marker:
                    marker = Marker(Generation(generation), rs.digest)
                    records = [" ".join(f'"{s.decode().replace(chr(34), chr(92) + chr(34))}"' for s in split_txt(r))
                               for r in txt_rdatas(marker, rs)]  # the marker TXT as the provider lays it out
                    u.replace(f"_dnsplane-a.{name(i, zone)}", 60, "TXT", *records)
            r = dns.query.tcp(u, server.host, port=server.port, sock=sock, timeout=30)
            if r.rcode() != dns.rcode.NOERROR:
                raise RuntimeError(f"raw update refused: {dns.rcode.to_text(r.rcode())}")
    finally:
        sock.close()
    return time.perf_counter() - start


def dnsplane_apply(server: NamedServer, zone: str, items: list[int], generation: int) -> tuple[float, float]:
    """The enactor's provider calls: read the batch, then apply it. Returns (read seconds, apply seconds)."""
    p = Rfc2136Provider(zone, Rfc2136Config(server.host, server.port, key_file=server.key_file, timeout=30))
    batch = p.capabilities.max_batch
    read_s = apply_s = 0.0
    for at in range(0, len(items), batch):
        chunk = items[at : at + batch]
        keys = [key(name(i, zone)) for i in chunk]
        t0 = time.perf_counter()
        seen = p.read(keys)
        t1 = time.perf_counter()
        writes = []
        for i, k in zip(chunk, keys, strict=True):
            rs = record_set(i, generation)
            writes.append(Write(k, seen[k].marker, rs, Marker(Generation(generation), rs.digest), seen[k].records))
        results = p.apply(writes)
        t2 = time.perf_counter()
        read_s += t1 - t0
        apply_s += t2 - t1
        assert all(getattr(r, "written", False) for r in results), results[:3]
    p.close()
    return read_s, apply_s


def octodns_to_bind(exe: Path, server: NamedServer, zone: str, items: list[int], generation: int, work: Path) -> float:
    """The YAML source for ``items`` at ``generation`` (others at generation 1); time one sync to named."""
    # the zone's own NS and glue, as named serves them, so octoDNS plans no delete of them
    records = [f"'':\n  type: NS\n  ttl: 300\n  values:\n  - ns1.{zone}", a_record("ns1", 300, ["127.0.0.1"])]
    changed = set(items)
    for i in range(len(octodns_to_bind.all)):  # type: ignore[attr-defined]
        rs = record_set(i, generation if i in changed else 1)
        records.append(a_record(f"e{i}", rs.ttl, rs.addresses()))
    target = {"class": "octodns_bind.Rfc2136Provider", "host": server.host, "port": server.port,
              "key_name": server.key_name, "key_secret": server.key_secret, "key_algorithm": server.algorithm}
    return octodns_sync(exe, work, zone, records, target)


def check(server: NamedServer, zone: str, items: list[int], generation: int) -> None:
    """Spot-check that the zone serves what the contender was asked to write."""
    for i in items[:: max(1, len(items) // 20)]:
        r = dns.query.tcp(dns.message.make_query(name(i, zone), "A"), server.host, port=server.port, timeout=5)
        got = sorted(x.to_text() for rr in r.answer for x in rr)
        want = sorted(record_set(i, generation).addresses())
        if got != want:
            raise RuntimeError(f"{zone}: e{i} serves {got}, expected {want}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=int, default=10_000)
    ap.add_argument("--change", type=int, default=1_000)
    ap.add_argument("--no-octodns", action="store_true")
    ap.add_argument("--octodns-venv", type=Path, default=Path(tempfile.gettempdir()) / "dnsplane-bench-octodns")
    args = ap.parse_args()
    n, m = args.endpoints, args.change
    everything = list(range(n))
    changed = list(range(0, n, max(1, n // m)))[:m]
    octodns_to_bind.all = everything  # type: ignore[attr-defined]
    work = Path(tempfile.mkdtemp(prefix="dnsplane-bench-"))
    exe = None if args.no_octodns else octodns_venv(args.octodns_venv, "octodns-bind")
    server = start_named(work / "named", ZONES)
    rows: list[tuple[str, float, float]] = []  # contender, seconds from empty, seconds for the change
    try:
        def timed(label: str, first: Callable[[], float], second: Callable[[], float]) -> None:
            a = first()
            b = second()
            rows.append((label, a, b))
            print(f"  {label}: {a:.3f} s, {b:.3f} s", file=sys.stderr)

        timed("raw UPDATE, records only", lambda: raw_updates(server, "raw.test.", everything, 1, False),
              lambda: raw_updates(server, "raw.test.", changed, 2, False))
        check(server, "raw.test.", changed, 2)
        timed("raw UPDATE, records + marker, no prerequisite",
              lambda: raw_updates(server, "rawm.test.", everything, 1, True),
              lambda: raw_updates(server, "rawm.test.", changed, 2, True))
        r1, a1 = dnsplane_apply(server, "cas.test.", everything, 1)
        r2, a2 = dnsplane_apply(server, "cas.test.", changed, 2)
        check(server, "cas.test.", changed, 2)
        rows.append(("dnsplane Rfc2136Provider.apply (compare-and-swap)", a1, a2))
        rows.append(("dnsplane read + apply (the enactor's round)", r1 + a1, r2 + a2))
        if exe is not None:
            timed("octoDNS 1.x + octodns-bind (octodns-sync, end to end)",
                  lambda: octodns_to_bind(exe, server, "octo.test.", [], 1, work / "octo"),
                  lambda: octodns_to_bind(exe, server, "octo.test.", changed, 2, work / "octo"))
            check(server, "octo.test.", changed, 2)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{n:,} endpoints from empty, then a change of {m:,} (2 A records per endpoint); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    print(f"| contender | {n:,} from empty (s) | endpoints/s | {m:,}-change (s) | endpoints/s |")
    print("|---|---:|---:|---:|---:|")
    for label, a, b in rows:
        print(f"| {label} | {a:.3f} | {n / a:,.0f} | {b:.3f} | {m / b:,.0f} |")
    by = {label: b for label, _, b in rows}
    raw = by["raw UPDATE, records only"]
    cas = by["dnsplane Rfc2136Provider.apply (compare-and-swap)"]
    full = by["dnsplane read + apply (the enactor's round)"]
    print(f"\n{m:,}-change ratios: dnsplane apply / raw records-only = {raw / cas:.2f}x (goal >= 0.7); "
          f"with the read: {raw / full:.2f}x")
    octo = by.get("octoDNS 1.x + octodns-bind (octodns-sync, end to end)")
    if octo is not None:
        print(f"dnsplane apply vs octoDNS = {octo / cas:.1f}x faster (goal >= 10); with the read: {octo / full:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
