"""dnsperf against the embedded DNS server (UDP workers or not) and BIND 9 on one 100,000-name zone (issue 11).

    python bench/dns_qps.py                                  # the issue's run: 100,000 names, workers 0 and 2, 5 reps
    python bench/dns_qps.py --n 10000 --reps 1 --duration 3  # a quick look
    python bench/dns_qps.py --workers 2                      # one embedded server only, with 2 workers

What it does, all on 127.0.0.1, in one run:
- builds the zone the way dnsplane does: a synthetic fleet of N endpoints (3 weighted targets each,
  as bench/enact_scale.py) planned and enacted by a real planner and enactor into the embedded
  provider's SQLite file (the enactor's ``apply``, markers included);
- serves it with one dnsplane ``DnsServer`` per ``--workers`` value (``DnsServer(..., workers=N)``, as
  ``dnsplane up --dns-workers N``), each in a child process of its own over its own copy of the file
  (``python bench/dns_qps.py serve --workers N``: the provider and the server as ``dnsplane up`` wires
  them, without the rest of ``up``, which takes about a minute to start on 100,000 names, issue 15),
  ready once every worker answers;
- serves the same records with BIND 9 (``named -n <nproc>``, a static primary zone file written from
  the same rows: for each name the records of the member the embedded server's first prerendered
  answer carries, i.e. one answer of the same size, plus the marker TXT records), all running at once;
- runs ``dnsperf -c 1 -T 1`` and ``dnsperf -c 8 -T 2`` (``-l --duration`` seconds, default
  outstanding queries) on a query file of 95 % existing names (A) and 5 % names that do not exist,
  going to each server in turn (the order rotating each repetition); qps, lost queries and latency
  p50/p99 from dnsperf's ``-v`` per-query lines; median and range over the repetitions and the ratio
  embedded / BIND per repetition, side by side (the machine is shared and noisy);
- for each embedded server, the time from an applied change (the provider's ``apply`` returned in the
  server's process, in a thread as the enactor's; with workers it returns once every worker
  acknowledged the change) to the first UDP answer that shows it, polled by this process as fast as it
  can, over ``--changes`` changes: p50, p99, max (CLOCK_MONOTONIC is one clock for all processes);
- the RSS of every server holding the zone (workers included), after loading and after the runs;
- before measuring, that each embedded server and BIND serve the same zone: a few names asked of both
  (same rcode, same marker TXT, BIND's address one the embedded server may pick).

Prints a JSON document and a Markdown summary; add ``--json PATH`` to keep the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT

from dnsplane.dns import DnsServer
from dnsplane.dns.render import MARKER_MAX_TTL
from dnsplane.dns.zonetable import ZoneTable
from dnsplane.execute import Interpreter, drain
from dnsplane.model import (
    Endpoint,
    EndpointKey,
    Generation,
    Marker,
    Member,
    Policy,
    RecordSet,
    Target,
    Write,
    marker_name,
)
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Tick
from dnsplane.protocol.planner import Planner
from dnsplane.providers.embedded import EmbeddedProvider
from dnsplane.store.sqlite import SqliteStore

ZONE = "bench.test."
NETS = ("192.0.2", "198.51.100", "203.0.113")  # TEST-NET: record data only
NAMED = os.environ.get("DNSPLANE_NAMED", "/usr/sbin/named")
DNSPERF = os.environ.get("DNSPERF", "dnsperf")
CONFIGS = (("c1T1", 1, 1), ("c8T2", 8, 2))


# --- the zone ------------------------------------------------------------
def fleet(n: int) -> tuple[Endpoint, ...]:
    policy = Policy(rise=1, fall=1, max_weight_shift=1.0)
    eps = []
    for i in range(n):
        ts = tuple(Target(f"t{i}-{j}", (f"{net}.{i % 250 + 1}",), 100, None) for j, net in enumerate(NETS))
        eps.append(Endpoint(f"e{i}.{ZONE}", "A", 60, ts, policy))
    return tuple(eps)


def populate(tmp: Path, n: int) -> Path:
    """Plan and enact the fleet into a fresh embedded provider file; its path."""
    db = tmp / "dns.sqlite"
    store = SqliteStore(tmp / "store.sqlite")
    provider = EmbeddedProvider(db, ZONE)
    ex = Interpreter(store, provider)
    drain(Planner("planner", ZONE, fleet(n)), Tick(0.0), ex, 0.0)
    drain(Enactor("enactor", ZONE, batch_size=10_000), Tick(0.0), ex, 0.0)
    assert provider.writes == n, provider.writes
    store.close()
    provider.close()
    return db


def bind_zone_text(db: Path) -> str:
    """The embedded server's records as a zone file: for each slot, the records of its first prerendered
    answer (``dnsplane.dns.render.render_endpoint``: the first live member's addresses, or all of them for
    ``answer: all``; the marker TXT with its TTL capped)."""
    provider = EmbeddedProvider(db, ZONE)
    data = provider.read_all()
    provider.close()
    soa = ZoneTable(ZONE, {}, 1).soa_rrset()
    lines = [f"$ORIGIN {ZONE}", soa.to_text(), f"@ 300 IN NS ns1.{ZONE}", "ns1 300 IN A 127.0.0.1"]
    for key, observed in data.items():
        rs = observed.records
        live = [m for m in rs.live_members() if m.addresses] if rs is not None else []
        if rs is not None and live:
            addrs = rs.addresses() if rs.answer == "all" else live[0].addresses
            lines += [f"{key.name} {rs.ttl} IN {key.rtype} {a}" for a in addrs]
        if observed.marker is not None:
            ttl = max(0, min(MARKER_MAX_TTL, rs.ttl)) if rs is not None else MARKER_MAX_TTL
            txt = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [observed.marker.to_text().encode()])
            lines.append(f"{marker_name(key)} {ttl} IN TXT {txt.to_text()}")
    return "\n".join(lines) + "\n"


def query_file(path: Path, n: int, count: int, rng: random.Random) -> None:
    """``count`` queries: 95 % A of an existing name, 5 % A of a name that does not exist."""
    with path.open("w") as f:
        for k in range(count):
            if rng.random() < 0.05:
                f.write(f"nx{k}.{ZONE} A\n")
            else:
                f.write(f"e{rng.randrange(n)}.{ZONE} A\n")


# --- servers -------------------------------------------------------------
def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ask(port: int, name: str, timeout: float = 1.0) -> dns.message.Message | None:
    q = dns.message.make_query(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q.to_wire(), ("127.0.0.1", port))
        try:
            return dns.message.from_wire(s.recv(4096))
        except (TimeoutError, dns.exception.DNSException):
            return None


def same_answers(ports: dict[str, int], n: int) -> dict[str, int]:
    """Ask both servers a few names: same rcode, same marker TXT, BIND's address one of the embedded's."""
    checked = 0
    for i in (0, 1, n // 2, n - 1):
        key = EndpointKey(f"e{i}.{ZONE}", "A")
        for name, rdtype in ((key.name, "A"), (marker_name(key), "TXT"), (f"nx{i}.{ZONE}", "A")):
            got = {}
            for server, port in ports.items():
                q = dns.message.make_query(name, rdtype)
                r = dns.message.from_wire(_udp(port, q.to_wire()))
                got[server] = (r.rcode(), {rd.to_text() for rrset in r.answer for rd in rrset})
            (e_rcode, e_rd), (b_rcode, b_rd) = got["embedded"], got["named"]
            pick = {f"{net}.{i % 250 + 1}" for net in NETS} if rdtype == "A" and e_rd else e_rd
            if e_rcode != b_rcode or not b_rd <= pick:
                raise RuntimeError(f"the two servers differ on {name} {rdtype}: {got}")
            checked += 1
    return {"names_compared": checked}


def _udp(port: int, wire: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5.0)
        s.sendto(wire, ("127.0.0.1", port))
        return s.recv(4096)


def wait_for(what: str, cond: Any, deadline: float) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class Named:
    def __init__(self, tmp: Path, zone_text: str) -> None:
        self.dir = tmp / "named"
        self.dir.mkdir()
        (self.dir / "bench.zone").write_text(zone_text)
        self.port = free_port()
        (self.dir / "named.conf").write_text(
            "options {\n"
            f'  directory "{self.dir}";\n'
            f'  pid-file "{self.dir}/named.pid";\n'
            f'  session-keyfile "{self.dir}/session.key";\n'
            f"  listen-on port {self.port} {{ 127.0.0.1; }};\n"
            "  listen-on-v6 { none; };\n"
            "  recursion no;\n"
            "  notify no;\n"
            "};\n"
            f'zone "{ZONE.rstrip(".")}" {{ type primary; file "bench.zone"; }};\n'
        )
        argv = [NAMED, "-g", "-n", str(os.cpu_count() or 1), "-c", str(self.dir / "named.conf")]
        self.log = (self.dir / "named.log").open("wb")
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=self.log, stderr=self.log)
        t = time.monotonic()
        wait_for("named to serve the zone", lambda: self._serving(), 300.0)
        self.load_s = time.monotonic() - t

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("named exited:\n" + (self.dir / "named.log").read_text()[-2000:])
        r = ask(self.port, f"e0.{ZONE}", 0.2)
        return r is not None and bool(r.answer)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Embedded:
    """The child process running ``serve --workers N``: a DnsServer over the embedded provider."""

    def __init__(self, db: Path, workers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", "--db", str(db), "--workers", str(workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        ready = json.loads(self._read())
        self.port: int = ready["port"]
        self.load_s: float = ready["load_s"]
        self.pids: list[int] = ready["pids"]

    def _read(self) -> str:
        line = self._out.readline()
        if not line:
            raise RuntimeError(f"embedded server exited ({self.proc.wait()})")
        return line

    def rss_mb(self) -> float:
        """RSS of the server's process and its workers'."""
        total = 0
        for pid in [self.proc.pid, *self.pids]:
            with contextlib.suppress(OSError):
                total += rss_kb(pid)
        return total / 1024

    def stop(self) -> None:
        self._in.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(db: Path, workers: int) -> None:
    """Child process: serve ``db`` with ``workers`` UDP workers, ready once every one answers; stdin commands
    ``change <i>`` (apply a new address to e<i>), EOF to stop."""
    provider = EmbeddedProvider(db, ZONE)
    server = DnsServer([provider], "127.0.0.1", 0, workers=workers)

    async def main() -> None:
        t = time.monotonic()
        await server.start()
        while not server.workers_ready():
            await asyncio.sleep(0.1)
        ready = {"port": server.port, "load_s": time.monotonic() - t, "pids": server.worker_pids()}
        print(json.dumps(ready), flush=True)
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def commands() -> None:  # the writer's thread, as the enactor's
            for line in sys.stdin:
                cmd, arg = line.split()
                assert cmd == "change"
                key = EndpointKey(f"e{arg}.{ZONE}", "A")
                cur = provider.read([key])[key]
                assert cur.records is not None and cur.marker is not None
                i = int(arg)
                rs = RecordSet.of(60, [Member("chg", (f"{NETS[0]}.{(i + 7) % 250 + 1}",), 100)])
                marker = Marker.after(cur.marker, Generation(cur.marker.generation + 1), rs.digest)
                t0 = time.monotonic()
                provider.apply([Write(key, cur.marker, rs, marker, cur.records)])
                t1 = time.monotonic()
                print(json.dumps({"applied": t1, "apply_s": t1 - t0}), flush=True)
            loop.call_soon_threadsafe(done.set_result, None)

        threading.Thread(target=commands, daemon=True).start()
        await done
        await server.stop()

    asyncio.run(main())


# --- measuring -------------------------------------------------------------
_SUMMARY = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
}
_VERBOSE = re.compile(r"^> \S+ .* ([\d.]+)$")


def dnsperf(port: int, qfile: Path, clients: int, threads: int, duration: float) -> dict[str, float]:
    argv = [DNSPERF, "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-c", str(clients),
            "-T", str(threads), "-l", str(duration), "-v"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = {}
    for k, rx in _SUMMARY.items():
        m = rx.search(out)
        if m is None:
            raise RuntimeError(f"dnsperf output without {k}:\n{out[-2000:]}")
        res[k] = float(m.group(1))
    lat = sorted(float(m.group(1)) for m in map(_VERBOSE.match, out.splitlines()) if m)
    if lat:
        res["p50_ms"] = 1000 * lat[len(lat) // 2]
        res["p99_ms"] = 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return res


def change_latency(emb: Embedded, n: int, count: int, rng: random.Random) -> dict[str, float]:
    """Apply ``count`` changes to distinct endpoints; for each, poll until an answer shows it."""
    lat, apply_s = [], []
    picks = rng.sample(range(n), min(count, n))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.connect(("127.0.0.1", emb.port))
        for i in picks:
            want = f"{NETS[0]}.{(i + 7) % 250 + 1}"
            q = dns.message.make_query(f"e{i}.{ZONE}", "A")
            wire = q.to_wire()
            emb._in.write(f"change {i}\n")
            emb._in.flush()
            seen = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                s.send(wire)
                r = dns.message.from_wire(s.recv(4096))
                now = time.monotonic()
                if r.answer and any(rd.address == want for rd in r.answer[0]):
                    seen = now
                    break
            done = json.loads(emb._read())
            if seen is None:
                raise RuntimeError(f"change to e{i} not seen within 10 s")
            lat.append(1000 * (seen - done["applied"]))
            apply_s.append(1000 * done["apply_s"])
    lat.sort()
    return {
        "changes": len(lat),
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max_ms": lat[-1],
        "apply_p50_ms": statistics.median(apply_s),
    }


def med_range(xs: list[float], fmt: str = ".3g") -> str:
    return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"n": args.n, "reps": args.reps, "duration_s": args.duration, "nproc": os.cpu_count()}
    out["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out["load_before"] = os.getloadavg()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="dns_qps.") as tmps:
        tmp = Path(tmps)
        t = time.monotonic()
        db = populate(tmp, args.n)
        out["populate_s"] = time.monotonic() - t
        zone_text = bind_zone_text(db)
        qfile = tmp / "queries.txt"
        query_file(qfile, args.n, max(100_000, args.n), rng)
        embedded: dict[str, Embedded] = {}
        named: Named | None = None
        try:
            for w in args.workers:  # each its own copy of the file: one server's changes are not another's
                copy = tmp / f"dns-workers-{w}.sqlite"
                with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
                    src.backup(dst)
                embedded[f"workers={w}"] = Embedded(copy, w)
            named = Named(tmp, zone_text)
            servers: dict[str, int] = {k: e.port for k, e in embedded.items()} | {"named": named.port}
            out["load_s"] = {k: e.load_s for k, e in embedded.items()} | {"named": named.load_s}
            out["rss_loaded_mb"] = {k: e.rss_mb() for k, e in embedded.items()} | {
                "named": rss_kb(named.proc.pid) / 1024
            }
            out["same_answers"] = {
                k: same_answers({"embedded": port, "named": named.port}, args.n)
                for k, port in servers.items()
                if k != "named"
            }
            runs: dict[str, dict[str, list[dict[str, float]]]] = {c: {s: [] for s in servers} for c, _, _ in CONFIGS}
            names = list(servers)
            for rep in range(args.reps):
                order = names[rep % len(names) :] + names[: rep % len(names)]
                for cname, c, threads in CONFIGS:
                    for server in order:
                        r = dnsperf(servers[server], qfile, c, threads, args.duration)
                        runs[cname][server].append(r)
                        print(f"rep {rep} {cname} {server}: {json.dumps(r)}", file=sys.stderr, flush=True)
            out["runs"] = runs
            out["rss_after_mb"] = {k: e.rss_mb() for k, e in embedded.items()} | {
                "named": rss_kb(named.proc.pid) / 1024
            }
            out["change_latency"] = {k: change_latency(e, args.n, args.changes, rng) for k, e in embedded.items()}
        finally:
            for e in embedded.values():
                e.stop()
            if named is not None:
                named.stop()
    out["load_after"] = os.getloadavg()
    return out


def summary(out: dict[str, Any]) -> str:
    lines = [
        f"{out['date']}, nproc {out['nproc']}, load {out['load_before'][0]:.2f} before / "
        f"{out['load_after'][0]:.2f} after; n = {out['n']:,}, {out['reps']} repetitions of "
        f"{out['duration_s']:g} s per server and configuration",
        "",
        "| dnsperf | server | qps median (min–max) | lost | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for cname, per in out["runs"].items():
        for server, rs in per.items():
            lines.append(
                f"| {cname} | {server} | {med_range([r['qps'] for r in rs], ',.0f')} | "
                f"{med_range([r['lost'] for r in rs], '.0f')} | {med_range([r['p50_ms'] for r in rs])} | "
                f"{med_range([r['p99_ms'] for r in rs])} |"
            )
    lines += ["", "| dnsperf | server / BIND qps, per repetition | median |", "|---|---|---|"]
    for cname, per in out["runs"].items():
        for server, rs in per.items():
            if server == "named":
                continue
            ratios = [e["qps"] / b["qps"] for e, b in zip(rs, per["named"], strict=True)]
            lines.append(
                f"| {cname} {server} | {', '.join(f'{x:.2f}' for x in ratios)} | {statistics.median(ratios):.2f} |"
            )
    lines.append("")
    for k, cl in out["change_latency"].items():
        lines.append(
            f"{k}: change to first answer ({cl['changes']} changes) p50 {cl['p50_ms']:.2f} ms, "
            f"p99 {cl['p99_ms']:.2f} ms, max {cl['max_ms']:.2f} ms; apply p50 {cl['apply_p50_ms']:.2f} ms"
        )
    rss = ", ".join(f"{k} {v:.0f} / {out['rss_after_mb'][k]:.0f}" for k, v in out["rss_loaded_mb"].items())
    lines.append(f"RSS loaded / after the runs (MB, workers included): {rss}")
    lines.append("load time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in out["load_s"].items()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    sv = sub.add_parser("serve", help="(internal) an embedded server's process")
    sv.add_argument("--db", type=Path, required=True)
    sv.add_argument("--workers", type=int, default=0)
    ap.add_argument(
        "--workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 2],
        help="comma-separated worker counts, one embedded server each (default 0,2)",
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    ap.add_argument("--changes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args.db, args.workers)
        return
    for tool in (NAMED, DNSPERF):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (Debian packages bind9, dnsperf)")
    out = run(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    print(summary(out))


if __name__ == "__main__":
    main()
