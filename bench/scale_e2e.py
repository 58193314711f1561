"""A large fleet end to end (issue 15): from the fleet file to every name answering, with a prober watching
DNS the whole time, beside BIND loading the same zone.

For each size (endpoints, two weighted targets each, TCP health checks on 100 loopback listeners, the
embedded provider, a real ``dnsplane up`` with three enactors):

- ``validate``: ``dnsplane validate`` on the fleet file (one run; ``bench/fleet_validate.py`` repeats it);
- ``answering``: from starting ``dnsplane up`` until every sampled name has answered its two addresses;
- ``1 % change``: one target of group 0 (1 % of the endpoints) stops listening, until every sampled name
  of that group serves a marker of a newer generation (the embedded server answers one weighted target
  per query, so the answers alone cannot tell; records and marker change together); then it listens
  again, the same (``--repeat`` times each, median and range);
- ``peak RSS`` of the ``up`` process (``VmHWM``), and of its DNS workers;
- DNS worker restarts: how many times ``up``'s log says a worker was restarted (late, or exited);
- the prober: one UDP query every 10 ms, in turn for each sampled name, from before ``up`` starts to the end;
  the largest gap between two answers it got after the first, how many queries got no answer within 1 s,
  and how many answers after a name's first positive one were NXDOMAIN or empty (must be 0);
- the anchor, BIND 9 on an equivalent zone file (the same names, two A records each): ``named-checkzone``
  time, and ``named`` from start until it answers the zone's SOA (``tests/servers/named.py``).

The fleet declares endpoints by ranges (docs/fleet-file.md), one per group, so the file stays small at
1,000,000. Usage: ``python bench/scale_e2e.py [--sizes 10000,100000] [--workers default,0] [--sample 200]
[--repeat 3] [--timeout 900]``; prints a markdown table (``--workers``: the ``--dns-workers`` values run side
by side for each size; peak RSS counts the workers too). Needs ``named`` and ``named-checkzone`` for the anchor
(Debian's ``bind9``, ``bind9-utils``; the anchor is left out without them).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.realworld.harness import Listener
from tests.servers.named import free_port, named_path, start_named, terminate

ZONE = "scale.test."
GROUPS = 50
TTL = 30
PROBE_EVERY = 0.010
PROBE_TIMEOUT = 1.0
DNSPLANE = [sys.executable, "-m", "dnsplane.cli"]


def address(group: int, side: str) -> str:
    return f"192.0.2.{group + 1}" if side == "a" else f"198.51.100.{group + 1}"


@dataclass(frozen=True)
class Fleet:
    """``n`` endpoints in GROUPS groups; group 0 holds 1 % of them (the health event's share)."""

    n: int

    @property
    def changed(self) -> int:
        return max(1, self.n // 100)

    def ranges(self) -> list[tuple[int, int, int]]:
        """(group, first, last) of each group's range of endpoint numbers."""
        out = [(0, 0, self.changed - 1)]
        rest = self.n - self.changed
        per, extra = divmod(rest, GROUPS - 1)
        start = self.changed
        for g in range(1, GROUPS):
            size = per + (1 if g <= extra else 0)
            if size:
                out.append((g, start, start + size - 1))
            start += size
        return out

    def name(self, group: int, i: int) -> str:
        return f"e{i}.g{group}.{ZONE}"

    def text(self, ports: dict[str, int]) -> str:
        lines = [f"zone: {ZONE}", "targets:"]
        for g in range(GROUPS):
            for side in "ab":
                t = f"lb-{g}-{side}"
                lines.append(f"  {t}: {{addresses: [{address(g, side)}], capacity: 100, "
                             f"check: {{tcp: '127.0.0.1:{ports[t]}', timeout: 0.5}}}}")
        lines.append("endpoints:")
        for g, first, last in self.ranges():
            lines.append(f'  - {{name: "e{{{first}..{last}}}.g{g}", ttl: {TTL}, targets: [lb-{g}-a, lb-{g}-b]}}')
        return "\n".join(lines) + "\n"

    def zone_text(self) -> str:
        """The same names for BIND, two A records each."""
        out = [f"$TTL {TTL}", f"@ IN SOA ns1.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 60", f"@ IN NS ns1.{ZONE}",
               "ns1 IN A 127.0.0.1"]
        for g, first, last in self.ranges():
            a, b = address(g, "a"), address(g, "b")
            for i in range(first, last + 1):
                out.append(f"e{i}.g{g} IN A {a}\ne{i}.g{g} IN A {b}")
        return "\n".join(out) + "\n"

    def sample(self, k: int, rng: random.Random) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(name, group) samples: from group 0 (the changed 1 %) and from the others."""
        ranges = self.ranges()
        changed = [(self.name(0, i), 0) for i in rng.sample(range(self.changed), min(k // 2, self.changed))]
        others = []
        for _ in range(k - len(changed)):
            g, first, last = rng.choice(ranges[1:])
            others.append((self.name(g, rng.randint(first, last)), g))
        return changed, others


@dataclass
class Answer:
    sent: float
    got: float | None  # None: no answer within PROBE_TIMEOUT
    name: str
    rcode: int = 0
    addresses: frozenset[str] = frozenset()


@dataclass
class Prober:
    """One UDP query every PROBE_EVERY seconds, in turn for each name, in a thread."""

    port: int
    names: list[str]
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="prober")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            name = self.names[k % len(self.names)]
            k += 1
            sent = time.monotonic()
            q = dns.message.make_query(name, dns.rdatatype.A)
            try:
                r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=PROBE_TIMEOUT)
                addrs = frozenset(rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset)
                self.answers.append(Answer(sent, time.monotonic(), name, r.rcode(), addrs))
            except (dns.exception.Timeout, OSError):  # not listening yet (refused) or silent
                self.answers.append(Answer(sent, None, name))
            self._stop.wait(max(0.0, PROBE_EVERY - (time.monotonic() - sent)))

    def since(self, t: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.sent >= t]


def wait_until(cond: object, timeout: float, poll: float = 0.05) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(poll)  # polling a condition; the timeout bounds the wait
    return None


def all_answered(prober: Prober, since: float, want: dict[str, frozenset[str]]) -> bool:
    """Every name of ``want`` has answered, at a query sent after ``since``, with addresses of its own (the
    embedded server answers one weighted target per query, so one answer holds one of them)."""
    ok = {a.name for a in prober.since(since)
          if a.got is not None and a.name in want and a.addresses and a.addresses <= want[a.name]}
    return ok >= set(want)


def marker_generation(port: int, name: str) -> int | None:
    """The generation the endpoint's marker TXT names (``g=``), as the server answers it now."""
    q = dns.message.make_query(f"_dnsplane-a.{name}", dns.rdatatype.TXT)
    try:
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=PROBE_TIMEOUT)
    except (dns.exception.Timeout, OSError):
        return None
    for rrset in r.answer:
        for rd in rrset:
            text = b"".join(rd.strings).decode(errors="replace")
            for part in text.split():
                if part.startswith("g=") and part[2:].isdigit():
                    return int(part[2:])
    return None


def all_moved(port: int, before: dict[str, int | None]) -> bool:
    """Every endpoint of ``before`` has a marker past the generation it had: its new records are served (a
    marker and its records change together)."""
    for name, gen in before.items():
        now = marker_generation(port, name)
        if now is None or (gen is not None and now <= gen):
            return False
    return True


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (the DNS workers)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the task ended meanwhile
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Result:
    n: int
    workers: str = "default"  # ``--dns-workers`` given to up ("default": none given)
    validate: float | None = None
    answering: float | None = None
    lost: list[float | None] = field(default_factory=list)
    back: list[float | None] = field(default_factory=list)
    rss: int = 0
    worker_rss: int = 0  # the DNS workers', summed
    max_gap: float = 0.0
    timeouts: int = 0
    bad_after_first: int = 0
    queries: int = 0
    checkzone: float | None = None
    named_start: float | None = None
    restarts: int = 0  # DNS workers restarted (late or exited), from up's log
    note: str = ""


def run_size(n: int, workers: str, args: argparse.Namespace, work: Path) -> Result:
    fleet, result = Fleet(n), Result(n, workers)
    rng = random.Random(15)
    listeners = {f"lb-{g}-{s}": Listener() for g in range(GROUPS) for s in "ab"}
    up: subprocess.Popen[bytes] | None = None
    prober: Prober | None = None
    try:
        path = work / "fleet.yaml"
        path.write_text(fleet.text({t: lst.port for t, lst in listeners.items()}))
        start = time.monotonic()
        done = subprocess.run([*DNSPLANE, "validate", str(path)], capture_output=True, text=True, timeout=args.timeout)
        result.validate = time.monotonic() - start if done.returncode == 0 else None
        if done.returncode != 0:
            result.note = f"validate failed: {done.stderr.strip()[:200]}"
            return result
        changed, others = fleet.sample(args.sample, rng)
        both = {name: frozenset({address(g, "a"), address(g, "b")}) for name, g in changed + others}
        port = free_port()
        prober = Prober(port, [name for name, _ in changed + others])
        prober.start()
        log = open(work / "up.log", "wb")  # noqa: SIM115 - handed to the child, closed below
        begin = time.monotonic()
        worker_args = [] if workers == "default" else ["--dns-workers", workers]
        up = subprocess.Popen([*DNSPLANE, "up", "--fleet", str(path), "--data-dir", str(work / "data"),
                               "--dns", f"127.0.0.1:{port}", "--enactors", "3", "--log-level", "warning",
                               *worker_args], stdout=log, stderr=log)
        log.close()
        result.answering = wait_until(lambda: all_answered(prober, begin, both), args.timeout)
        print(f"  {n:,} (--dns-workers {workers}): validate {result.validate:.2f} s, answering "
              f"{'not reached' if result.answering is None else f'{result.answering:.2f} s'}", file=sys.stderr)
        if result.answering is not None:
            for _ in range(args.repeat):
                for lost, into in ((True, result.lost), (False, result.back)):
                    before = {name: marker_generation(port, name) for name, _ in changed}
                    (listeners["lb-0-a"].down if lost else listeners["lb-0-a"].up)()
                    into.append(wait_until(lambda b=before: all_moved(port, b), args.change_timeout))
                    print(f"  {n:,}: 1 % change ({'lost' if lost else 'back'}): {into[-1]}", file=sys.stderr)
        result.rss = peak_rss(up.pid)
        result.worker_rss = sum(peak_rss(child) for child in children(up.pid))
    finally:
        if prober is not None:
            prober.stop()
        if up is not None:
            terminate(up, 60)
        for lst in listeners.values():
            lst.close()
    assert prober is not None
    with contextlib.suppress(OSError):
        logged = (work / "up.log").read_text(errors="replace")
        result.restarts = len(re.findall(r"dns worker \d+ .*restarting it", logged))
    answered = [a for a in prober.answers if a.got is not None]
    result.queries = len(prober.answers)
    times = [a.got for a in answered if a.got is not None]
    result.timeouts = sum(1 for a in prober.answers if a.got is None and times and a.sent > times[0])
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    result.max_gap = max(gaps, default=0.0)
    first_ok: dict[str, float] = {}
    for a in answered:
        if a.name in first_ok:
            if a.rcode == dns.rcode.NXDOMAIN or (a.rcode == dns.rcode.NOERROR and not a.addresses):
                result.bad_after_first += 1
        elif a.rcode == dns.rcode.NOERROR and a.addresses:
            first_ok[a.name] = a.sent
    anchor(fleet, result, work / "named")
    return result


def anchor(fleet: Fleet, result: Result, work: Path) -> None:
    """BIND 9 on the same names: named-checkzone, and named from start to answering the SOA."""
    checkzone = shutil.which("named-checkzone") or "/usr/sbin/named-checkzone"
    if not Path(checkzone).exists() or named_path() is None:
        return
    work.mkdir(parents=True, exist_ok=True)
    text = fleet.zone_text()
    zone_file = work / "zone.db"
    zone_file.write_text(text)
    start = time.monotonic()
    done = subprocess.run([checkzone, "-q", ZONE, str(zone_file)], capture_output=True, timeout=600)
    result.checkzone = time.monotonic() - start if done.returncode == 0 else None
    start = time.monotonic()
    server = start_named(work / "run", (ZONE,), zone_texts={ZONE: text})
    result.named_start = time.monotonic() - start
    server.stop()


def spread(xs: list[float | None]) -> str:
    done = sorted(x for x in xs if x is not None)
    if not done:
        return "not reached"
    missed = len(xs) - len(done)
    text = f"{statistics.median(done):.2f}" + (f" [{done[0]:.2f}–{done[-1]:.2f}]" if len(done) > 1 else "")
    return text + (f", {missed} not reached" if missed else "")


def report(results: list[Result]) -> None:
    load = os.getloadavg()
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end; prober: one UDP query every "
          f"{PROBE_EVERY * 1000:.0f} ms\n")
    print("| endpoints | --dns-workers | validate s | up → every sampled name answers s | 1 % change s (lost) "
          "| 1 % change s (back) | peak RSS up (+ workers) | largest answer gap | no answer in 1 s "
          "| NXDOMAIN/empty after first answer | DNS worker restarts | BIND named-checkzone s "
          "| BIND named start → SOA s |")
    print("|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")

    def num(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"

    for r in results:
        rss = f"{r.rss / 2**20:,.0f} MB" + (f" (+ {r.worker_rss / 2**20:,.0f} MB)" if r.worker_rss else "")
        print(f"| {r.n:,} | {r.workers} | {num(r.validate)} | {num(r.answering)} | {spread(r.lost)} | {spread(r.back)} "
              f"| {rss} | {r.max_gap * 1000:,.0f} ms | {r.timeouts} of {r.queries:,} "
              f"| {r.bad_after_first} | {r.restarts} | {num(r.checkzone)} | {num(r.named_start)} |"
              + (f" {r.note}" if r.note else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated endpoint counts (1000000 works)")
    ap.add_argument("--sample", type=int, default=200, help="names the prober asks, half of them in the changed 1 %%")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each change (median and range)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for validate, and for every name to answer")
    ap.add_argument("--change-timeout", type=float, default=120.0)
    ap.add_argument("--workers", default="default",
                    help="comma-separated --dns-workers values to run side by side for each size ('default': "
                    "up's own choice, one worker from 10,000 endpoints), e.g. default,0")
    args = ap.parse_args()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        for workers in args.workers.split(","):
            with tempfile.TemporaryDirectory(prefix="dnsplane-scale-") as tmp:
                results.append(run_size(n, workers, args, Path(tmp)))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
