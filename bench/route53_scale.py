"""Benchmark: dnsplane on Route 53 at scale against octoDNS's Route 53 provider, both on ministack behind
the Route 53 rules layer, in one run (issue 14's benchmark).

The fleet: N endpoints (``e<i>.g<group>``), each with two targets of its group (``lb-<g>-a``,
``lb-<g>-b``, TEST-NET addresses), every target with a TCP health check on a loopback listener opened
here (50 groups: 100 listeners). Group 0 holds exactly ``round(N * change_share)`` endpoints, so closing
the listener of ``lb-0-a`` (the health event) changes exactly that share of the endpoints, and opening
it again changes them back.

Contenders, one after the other, each on a hosted zone of its own, every API call through one counting
tap (bench/route53_tap.py) in front of the rules layer:

- dnsplane: a real ``dnsplane up`` (subprocess, the runtime's default periods and 3 enactors) on the
  generated fleet file. From empty: from the start of the process until ministack holds every
  endpoint's weighted record sets. The 1 % change: from closing (or reopening) the listener until
  every changed endpoint reads the new set of ``SetIdentifier``s from ministack (polled with boto3
  directly, not through the tap), ``--repeat`` times each way;
- octoDNS 1.x + octodns-route53: ``octodns-sync --doit --force`` from a YAML config (one A record
  set per endpoint holding its live targets' addresses: no weights, no marker, no compare-and-swap),
  installed in a virtualenv made here (``--octodns-venv``); octodns-route53 has no endpoint option,
  so it reaches the tap through boto3's ``AWS_ENDPOINT_URL_ROUTE_53`` (``client_max_attempts: 10``
  lets boto3 retry the rules layer's ``Throttling``, as an operator would set it). octoDNS has no health
  checks: its 1 % change is the sync of the YAML with ``lb-0-a``'s address removed (or back).

The tap stands in front of the Route 53 rules layer (tests/servers/route53_rules.py: Route 53's
documented limits and its 5 requests/s per account), which stands in front of ministack; both
contenders go through it.

For each phase: wall time (median and spread of the repeats), API calls by action, change batches and
their ``ResourceRecord`` elements; for dnsplane's changes also the zone listings (ListResourceRecordSets
from the zone's first record set) against the actor rounds (enactors and verifier, from instance.json,
which is rewritten about once a second) in the same window. A phase that does not finish within its
timeout is reported as "not reached in N s" and the run goes on (dnsplane's changes are measured only
after its first write finished).

Usage: ``python bench/route53_scale.py [--endpoints 10000] [--change-share 0.01] [--repeat 5]
[--no-octodns] [--timeout 900] [--change-timeout 120]``. Prints a markdown table and the goals.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.octodns_run import a_record, octodns_sync, octodns_venv
from bench.route53_tap import Summary, Tap, route53_tap
from tests.realworld.harness import Dnsplane, Listener, Target, fleet_text
from tests.servers.ministack import FAKE_AWS_ENV, Ministack, ministack_server
from tests.servers.route53_rules import route53_rules

GROUPS = 50
TTL = 30
RATE = 5.0  # requests a second per account: Route 53's documented limit, as the rules layer enforces it
PERIODS = {"planner": 0.5, "enactor": 1.0, "health": 1.0, "collector": 10.0, "verifier": 5.0}  # `up`'s defaults
GOAL_SECONDS = 10.0
GOAL_RATIO = 5.0


@dataclass(frozen=True)
class Fleet:
    """N endpoints in GROUPS groups; group 0 holds exactly ``changed`` of them."""

    n: int
    changed: int

    def group(self, i: int) -> int:
        return 0 if i < self.changed else 1 + (i - self.changed) % (GROUPS - 1)

    def label(self, i: int) -> str:
        return f"e{i}.g{self.group(i)}"

    def targets(self, i: int, lost: bool) -> list[str]:
        g = self.group(i)
        return [f"lb-{g}-b"] if lost and g == 0 else [f"lb-{g}-a", f"lb-{g}-b"]

    @property
    def share(self) -> str:
        return f"{self.changed / self.n:.2%}".replace(".00%", " %")

    @staticmethod
    def address(target: str) -> str:
        _, g, side = target.split("-")
        return f"192.0.2.{int(g) + 1}" if side == "a" else f"198.51.100.{int(g) + 1}"


@dataclass
class Row:
    contender: str
    phase: str
    seconds: list[float | None]  # one per run; None: not reached within the timeout
    timeout: float
    costs: list[Summary]  # one per run
    rounds: list[int] | None = None  # dnsplane: actor rounds in each run's window
    planned: list[float | None] = field(default_factory=list)  # dnsplane: health event -> the new plan stored

    def median_run(self) -> int:
        done = [(s, k) for k, s in enumerate(self.seconds) if s is not None]
        return sorted(done)[len(done) // 2][1] if done else 0

    def wall_text(self) -> str:
        """Seconds: the median and [min–max] of the runs, and how many did not finish."""
        done = sorted(s for s in self.seconds if s is not None)
        missed = len(self.seconds) - len(done)
        if not done:
            return f"not reached in {self.timeout:g} s"
        text = f"{statistics.median(done):.2f}" + (f" [{done[0]:.2f}–{done[-1]:.2f}]" if len(done) > 1 else "")
        return text + (f", {missed} of {len(self.seconds)} not reached in {self.timeout:g} s" if missed else "")

    def planned_text(self) -> str:
        done = sorted(s for s in self.planned if s is not None)
        return f"{statistics.median(done):.2f}" if done else ""

    def median(self) -> float | None:
        done = [s for s in self.seconds if s is not None]
        return statistics.median(done) if len(done) == len(self.seconds) else None


def wait_until(cond: Callable[[], bool], timeout: float, poll: float = 0.1) -> float | None:
    """Seconds until ``cond()`` held (measured from the call to the end of the ``cond()`` that held), or
    None after ``timeout``. Between two polls it waits ``poll`` s, or twice as long as ``cond()`` took (a
    listing of a large zone), so the poller takes at most a third of ministack's time."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        asked = time.monotonic()
        if cond():
            return time.monotonic() - start
        time.sleep(max(poll, 2 * (time.monotonic() - asked)))  # polling interval; the timeout bounds the wait
    return None


def weighted_sets(client: Any, zone_id: str, start: str | None = None, limit: int | None = None) -> dict[str, set[str]]:
    """``{name: {SetIdentifier or address...}}`` of the A record sets listed from ``start`` (default: the
    whole zone), reading at most ``limit`` record sets. Asked of ministack directly, not through the tap."""
    kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "MaxItems": str(min(limit or 300, 300))}
    if start:
        kwargs.update(StartRecordName=start, StartRecordType="A")
    out: dict[str, set[str]] = {}
    seen = 0
    while True:
        page = client.list_resource_record_sets(**kwargs)
        for rrset in page["ResourceRecordSets"]:
            if rrset["Type"] == "A":
                ident = rrset.get("SetIdentifier")
                values = {ident} if ident else {r["Value"] for r in rrset.get("ResourceRecords", [])}
                out.setdefault(rrset["Name"].lower(), set()).update(values)
        seen += len(page["ResourceRecordSets"])
        if not page.get("IsTruncated") or (limit is not None and seen >= limit):
            return out
        kwargs.update(StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"])


def holds(client: Any, zone_id: str, zone: str, want: dict[str, set[str]], whole_zone: bool) -> bool:
    """Whether ministack holds ``want`` (``{label: set}``) at every name: listed whole, or read from the first
    wanted name in the listing order on to the last (the changed endpoints are one group, next to each other:
    a page or two, where a call per name cost seconds a poll at 10,000 endpoints, each call sorting the zone)."""
    if whole_zone:
        got = weighted_sets(client, zone_id)
        return all(got.get(f"{label}.{zone}") == s for label, s in want.items())
    names = sorted((f"{label}.{zone}" for label in want), key=lambda n: tuple(reversed(n.rstrip(".").split("."))))
    got = {}
    for name in names:  # a listing from the first name not yet read, until the last name is passed
        if name in got:
            continue
        got.update(weighted_sets(client, zone_id, name, limit=3 * len(names)))
    return all(got.get(f"{label}.{zone}") == s for label, s in want.items())


@contextlib.contextmanager
def api_in_front_of(ministack: Ministack) -> Iterator[tuple[Tap, str]]:
    """The counting tap in front of the rules layer: the tap, and what stands behind it, in words."""
    behind = f"the Route 53 rules layer (tests/servers/route53_rules.py, {RATE:g} requests/s)"
    with route53_rules(ministack.url, rate=RATE) as layer, route53_tap(layer.url) as tap:
        yield tap, behind


def actor_rounds(dp: Dnsplane) -> int:
    actors = (dp.instance() or {}).get("actors") or {}
    return sum(int(a.get("rounds") or 0) for name, a in actors.items()
               if name.startswith("enactor") or name == "verifier")


def measure_change(row: Row, dp: Dnsplane, tap: Tap, event: Callable[[], None], applied: Callable[[], bool]) -> None:
    """Cause the health ``event`` and wait until ``applied()``; add the run's figures to ``row``: seconds
    until applied and until the store held a new plan, API calls, and the actors' rounds meanwhile."""
    mark, rounds, head = tap.mark(), actor_rounds(dp), dp.store_head()
    planned: list[float] = []
    start = time.monotonic()

    def done() -> bool:
        if not planned and dp.store_head() > head:
            planned.append(time.monotonic() - start)
        return applied()

    event()
    took = wait_until(done, row.timeout)
    row.costs.append(tap.summary(mark))
    row.seconds.append(took)
    row.planned.append(planned[0] if planned else None)
    assert row.rounds is not None
    row.rounds.append(actor_rounds(dp) - rounds)
    print(f"  dnsplane {row.phase}: {'not reached' if took is None else f'{took:.2f} s'}; "
          f"{row.costs[-1].calls_text()}", file=sys.stderr)


def run_dnsplane(ms: Ministack, tap: Tap, fleet: Fleet, work: Path, args: argparse.Namespace) -> list[Row]:
    zone = "dnsplane.bench.test."
    zone_id = ms.create_zone(zone)
    listeners = {f"lb-{g}-{s}": Listener() for g in range(GROUPS) for s in "ab"}
    try:
        targets = [Target(t, (Fleet.address(t),), lst.port) for t, lst in listeners.items()]
        endpoints = {fleet.label(i): fleet.targets(i, False) for i in range(fleet.n)}
        provider = {"kind": "route53", "hosted_zone_id": zone_id, "endpoint_url": tap.url}
        path = work / "fleet.yaml"
        path.write_text(fleet_text(zone, targets, endpoints, provider, ttl=TTL, check_timeout=0.5))
        dp = Dnsplane(work / "dnsplane", path, periods=PERIODS, enactors=3)
        try:
            return dnsplane_phases(dp, ms, zone_id, zone, tap, fleet, listeners["lb-0-a"], args)
        finally:
            dp.stop()
    finally:
        for lst in listeners.values():
            lst.close()


def dnsplane_phases(dp: Dnsplane, ms: Ministack, zone_id: str, zone: str, tap: Tap, fleet: Fleet,
                    listener: Listener, args: argparse.Namespace) -> list[Row]:
    """Start ``dp`` and time its first write, then ``--repeat`` times the loss and return of ``listener``."""
    client = ms.client()
    mark, start = tap.mark(), time.monotonic()
    dp.start(deadline=args.timeout)
    want = {fleet.label(i): set(fleet.targets(i, False)) for i in range(fleet.n)}
    done = wait_until(lambda: holds(client, zone_id, zone, want, True), args.timeout - (time.monotonic() - start),
                      poll=1.0)
    rows = [Row("dnsplane", f"{fleet.n:,} from empty", [None if done is None else time.monotonic() - start],
                args.timeout, [tap.summary(mark)])]
    print(f"  dnsplane from empty: {rows[0].wall_text()}; {rows[0].costs[0].calls_text()}", file=sys.stderr)
    if done is None:
        return rows
    rows += [Row("dnsplane", f"{fleet.share} change: lb-0-a {event}", [], args.change_timeout, [], [])
             for event in ("lost", "back")]
    changed = [i for i in range(fleet.n) if fleet.group(i) == 0]
    for _ in range(args.repeat):
        for lost, row in ((True, rows[1]), (False, rows[2])):
            want = {fleet.label(i): set(fleet.targets(i, lost)) for i in changed}
            measure_change(row, dp, tap, listener.down if lost else listener.up,
                           lambda w=want: holds(client, zone_id, zone, w, False))
            if row.seconds[-1] is None:
                wait_until(lambda w=want: holds(client, zone_id, zone, w, False), args.timeout)  # let it settle
    return rows


def run_octodns(ms: Ministack, tap: Tap, fleet: Fleet, work: Path, args: argparse.Namespace) -> list[Row]:
    zone = "octo.bench.test."
    zone_id = ms.create_zone(zone)
    client = ms.client()
    exe = octodns_venv(args.octodns_venv, "octodns-route53")
    # boto3's own retries of Throttling, as an operator would raise them for a 10,000-record zone
    target = {"class": "octodns_route53.Route53Provider", "client_max_attempts": 10}
    env = {"AWS_ENDPOINT_URL_ROUTE_53": tap.url}

    def sync(lost: bool, timeout: float) -> tuple[float | None, Summary]:
        records = [a_record(fleet.label(i), TTL, [Fleet.address(t) for t in fleet.targets(i, lost)])
                   for i in range(fleet.n)]
        mark = tap.mark()
        try:
            seconds: float | None = octodns_sync(exe, work / "octodns", zone, records, target, env, timeout)
        except subprocess.TimeoutExpired:
            seconds = None
        return seconds, tap.summary(mark)

    def check(items: range | list[int], lost: bool) -> None:
        want = {fleet.label(i): {Fleet.address(t) for t in fleet.targets(i, lost)} for i in items}
        if not holds(client, zone_id, zone, want, len(want) > 200):
            raise RuntimeError(f"octoDNS: {zone} does not hold what it was asked to write")

    seconds, cost = sync(False, args.timeout)
    rows = [Row("octoDNS + octodns-route53", f"{fleet.n:,} from empty", [seconds], args.timeout, [cost])]
    print(f"  octoDNS from empty: {rows[0].wall_text()}; {cost.calls_text()}", file=sys.stderr)
    if seconds is None:
        return rows
    check(range(fleet.n), False)
    rows += [Row("octoDNS + octodns-route53", f"{fleet.share} change: lb-0-a {event}", [], args.change_timeout, [])
             for event in ("lost", "back")]
    changed = [i for i in range(fleet.n) if fleet.group(i) == 0]
    for _ in range(args.repeat):
        for lost, row in ((True, rows[1]), (False, rows[2])):
            seconds, cost = sync(lost, args.change_timeout)
            row.seconds.append(seconds)
            row.costs.append(cost)
            print(f"  octoDNS {row.phase}: {row.wall_text()}; {cost.calls_text()}", file=sys.stderr)
            if seconds is None:
                return rows
            check(changed, lost)
    return rows


def report(rows: list[Row], fleet: Fleet, behind: str, load: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
    def avg(xs: tuple[float, ...]) -> str:
        return " ".join(f"{x:.2f}" for x in xs)

    print(f"\n{fleet.n:,} endpoints (2 weighted targets each), a change of {fleet.changed:,} "
          f"({fleet.changed / fleet.n:.1%}); API: {behind}; {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; load average {avg(load[0])} at start, {avg(load[1])} at the end\n")
    print("| contender | phase | wall s (median [min–max]) | of which until the plan (median) | API calls (median run) "
          "| change batches × records (max) | zone listings / actor rounds |")
    print("|---|---|---:|---:|---|---|---|")
    for r in rows:
        k = r.median_run()
        cost = r.costs[k]
        listings = "" if r.rounds is None else f"{cost.zone_listings} / {r.rounds[k]}"
        print(f"| {r.contender} | {r.phase} | {r.wall_text()} | {r.planned_text()} | {cost.calls_text()} "
              f"| {cost.batches_text()} | {listings} |")
    dp = next((r for r in rows if r.contender == "dnsplane" and r.phase.endswith("lost")), None)
    octo = next((r for r in rows if r.contender.startswith("octoDNS") and r.phase.endswith("lost")), None)
    print()
    if dp is None:
        print("Goals: not measured (dnsplane's first write did not finish in time).")
        return
    dp_median = dp.median()
    in_time = dp_median is not None and max(s for s in dp.seconds if s is not None) <= GOAL_SECONDS
    print(f"Goal: the change applied within {GOAL_SECONDS:g} s of the health event, every run: "
          f"{'met' if in_time else 'NOT met'} ({dp.wall_text()}).")
    per_run = list(zip(dp.costs, dp.rounds or [], strict=True))
    one_read = all(c.zone_listings <= n for c, n in per_run)
    print(f"Goal: at most one zone read per round: {'met' if one_read else 'NOT met'} (zone listings / actor "
          f"rounds, per run: {', '.join(f'{c.zone_listings}/{n}' for c, n in per_run)}).")
    octo_median = None if octo is None else octo.median()
    if octo_median is not None and dp_median is not None:
        ratio = octo_median / dp_median
        after_plan = dp_median - statistics.median(p or 0.0 for p in dp.planned)
        print(f"Goal: >= {GOAL_RATIO:g}x faster than octoDNS on the change: "
              f"{'met' if ratio >= GOAL_RATIO else 'NOT met'} ({ratio:.1f}x: octoDNS {octo_median:.2f} s, "
              f"dnsplane {dp_median:.2f} s from the health event, {after_plan:.2f} s from its new plan; medians).")
    elif octo is not None:
        print("Goal: >= 5x faster than octoDNS: not measured (a change not reached in time).")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=int, default=10_000)
    ap.add_argument("--change-share", type=float, default=0.01, help="share of endpoints the health event changes")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each change phase (median and spread)")
    ap.add_argument("--no-octodns", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for a from-empty phase")
    ap.add_argument("--change-timeout", type=float, default=120.0, help="seconds for one change")
    ap.add_argument("--octodns-venv", type=Path, default=Path(tempfile.gettempdir()) / "dnsplane-bench-octodns-r53")
    args = ap.parse_args()
    changed = round(args.endpoints * args.change_share)
    if not 1 <= changed <= args.endpoints - (GROUPS - 1):
        ap.error(f"--change-share {args.change_share:g} of {args.endpoints} endpoints is {changed}: "
                 f"must be 1..{args.endpoints - (GROUPS - 1)} (the other {GROUPS - 1} groups need an endpoint each)")
    fleet = Fleet(args.endpoints, changed)
    os.environ.update(FAKE_AWS_ENV)  # every process here talks to loopback only: never a real account
    os.environ.pop("AWS_PROFILE", None)
    load_start = os.getloadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dnsplane-bench-r53-") as tmp, ministack_server() as ms, \
            api_in_front_of(ms) as (tap, behind):
        work = Path(tmp)
        rows += run_dnsplane(ms, tap, fleet, work, args)
        if not args.no_octodns:
            rows += run_octodns(ms, tap, fleet, work, args)
    report(rows, fleet, behind, (load_start, os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
