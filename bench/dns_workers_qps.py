"""dnsperf against the embedded server with UDP workers (``DnsServer(workers=N)``) beside BIND 9 (issue 11 part 2).

    python bench/dns_workers_qps.py                                   # 100,000 names, workers 0 and 2, 5 reps
    python bench/dns_workers_qps.py --n 10000 --reps 1 --duration 3   # a quick look

The zone, the query file, BIND and dnsperf are ``bench/dns_qps.py``'s (imported from this folder: the
same 100,000 planned and enacted endpoints, 95 % existing / 5 % missing names, ``-c 1 -T 1`` and
``-c 8 -T 2``); here one embedded server per ``--workers`` value runs in a child process of its own
(``python bench/dns_workers_qps.py serve --workers N``), all of them and BIND serving at once, and every
dnsperf run goes to each in turn (the order rotating each repetition). Then for each embedded server
the change-to-answer latency as dns_qps measures it (an ``apply`` in a writer thread of the server's
process, its return time against the first UDP answer showing it; with workers the apply returns once
every worker acknowledged the change), and the RSS of each server with its workers'.

Prints a JSON document and a Markdown summary; add ``--json PATH`` to keep the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

import dns_qps
from dns_qps import CONFIGS, DNSPERF, NAMED, NETS, ZONE, Named, change_latency, dnsperf, med_range, rss_kb

from dnsplane.dns import DnsServer
from dnsplane.model import EndpointKey, Generation, Marker, Member, RecordSet, Write
from dnsplane.providers.embedded import EmbeddedProvider


class Embedded(dns_qps.Embedded):
    """The child process running ``serve --workers N``."""

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

    def rss_mb(self) -> float:
        total = 0
        for pid in [self.proc.pid, *self.pids]:
            with contextlib.suppress(OSError):
                total += rss_kb(pid)
        return total / 1024


def serve(db: Path, workers: int) -> None:
    """Child process: as dns_qps.serve, with ``workers``; ready once every worker answers UDP."""
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"n": args.n, "reps": args.reps, "duration_s": args.duration, "nproc": os.cpu_count()}
    out["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out["load_before"] = os.getloadavg()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="dns_workers_qps.") as tmps:
        tmp = Path(tmps)
        t = time.monotonic()
        db = dns_qps.populate(tmp, args.n)
        out["populate_s"] = time.monotonic() - t
        zone_text = dns_qps.bind_zone_text(db)
        qfile = tmp / "queries.txt"
        dns_qps.query_file(qfile, args.n, max(100_000, args.n), rng)
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
                k: dns_qps.same_answers({"embedded": port, "named": named.port}, args.n)
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
