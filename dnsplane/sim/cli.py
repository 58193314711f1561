"""``dnsplane simulate`` and ``dnsplane explore``: the simulator and the explorer from the command line.

Wired into ``dnsplane.cli`` by ``add_commands(sub)``. Exit codes: 0 no violation,
1 a violation was found (the seed, the invariant, the timeline are printed),
2 bad arguments or scenario file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dnsplane.errors import DnsplaneError
from dnsplane.model import EndpointKey
from dnsplane.services import Services
from dnsplane.sim import scenario as scenarios
from dnsplane.sim import timeline
from dnsplane.sim.driver import PROTOCOLS, RunResult, run, shrink
from dnsplane.sim.sweep import sweep
from dnsplane.sim.world import ZONE

SIMULATE_EPILOG = """examples:
  dnsplane simulate --protocol legacy --scenario us-east-1 --seeds 1000
      reproduce the October 2025 outage: exits 1 with the first violating seed, the invariant and a timeline
  dnsplane simulate --protocol safe --scenario us-east-1 --seeds 1000 --workers 2
      the same seeds and faults under the safe protocol: exits 0 with a summary
  dnsplane simulate --protocol legacy --seed 8 --timeline outage.svg
      replay one seed exactly and draw its swimlanes
  dnsplane simulate --protocol safe --scenario chaos --seeds 200 --json
      every fault kind, issue 8's too (request_exception, marker_out_of_range, second_owner,
      partial_write, health_amnesia); machine-readable summary
  dnsplane simulate --protocol safe --scenario chaos --seeds 2000 --invariant I8
      stop at the first seed where an actor stays busy for good (I8), with its timeline
  dnsplane simulate --protocol safe --scenario ./my-scenario.yaml
      your own scenario file (see dnsplane/sim/scenarios/us-east-1.yaml)
"""

EXPLORE_EPILOG = """examples:
  dnsplane explore --protocol legacy
      breadth-first over every delivery order: prints the shortest counterexample, exits 1
  dnsplane explore --protocol safe
      every reachable state of the default configuration (1 planner, 2 enactors, 1 collector,
      1 verifier, 2 endpoints, up to 4 generations): about 7.7 million states in about 4
      minutes on 2 cores, ~1.9 GB; no violation, exits 0 (progress on stderr)
  dnsplane explore --protocol safe --generations 3
      the same with one health change fewer: ~471,000 states in about 15 s
  dnsplane explore --protocol safe --faults 1 --generations 2
      also let one fault happen anywhere (a crash, a crash after the provider acknowledged,
      a request raising an exception that is not a DnsplaneError before or after it ran,
      a human emptying an endpoint, deleting its marker, writing g=2**63-1 into it or setting
      its g= back to an older generation, the provider rejecting an endpoint's writes):
      ~2.2 million states in a few minutes
  dnsplane explore --protocol safe --generations 3 --fence-window
      a write's writer half (the write token, then the store's fence) and its provider call
      as two moves, as the simulator sends it: ~1.2 million states in about a minute
"""


def add_commands(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser("simulate", formatter_class=raw, epilog=SIMULATE_EPILOG,
                       help="run the protocol in the deterministic simulator over many seeds",
                       description="Run the production actors on a virtual clock with seeded scheduling and faults; "
                                   "check invariants I1-I8 (and H1, health across planner restarts) after every "
                                   "step. Fault kinds: "
                                   + ", ".join(scenarios.FAULT_KINDS) + " (docs/simulation.md, 'Faults').")
    s.add_argument("--protocol", choices=PROTOCOLS, default="safe")
    s.add_argument("--scenario", default="us-east-1", help="shipped scenario name or a YAML file (default us-east-1)")
    s.add_argument("--seeds", type=int, default=1000, help="number of seeds to run (default 1000)")
    s.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    s.add_argument("--seed", type=int, help="replay this one seed exactly")
    s.add_argument("--json", action="store_true", help="print a JSON summary")
    s.add_argument("--timeline", type=Path, metavar="OUT.svg", help="write swimlanes of the first violating "
                                                                    "(or the replayed) seed as SVG")
    s.add_argument("--workers", type=int, default=1, help="processes to use (default 1)")
    s.add_argument("--all", action="store_true", help="run every seed even after a violation")
    s.add_argument("--first", action="store_true",
                   help="with --json: stop at the first violating seed too (--json alone runs every seed, "
                        "for a whole summary)")
    s.add_argument("--invariant", default="I1",
                   choices=["I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8", "H1", "G4", "any"],
                   help="stop at the first seed that violates this one (default I1, the outage); "
                        "any other violation found on the way is reported too")
    s.add_argument("--no-shrink", action="store_true", help="do not minimise the fault schedule of a violation")
    s.add_argument("--services", metavar="FILE", help="a services file (or the shipped example us-east-1): list "
                   "each service's impact windows in the replayed seed, the simulator's endpoints e0, e1, ... "
                   "standing for the file's endpoints in order (see `dnsplane blast`)")
    s.set_defaults(func=cmd_simulate)

    e = sub.add_parser("explore", formatter_class=raw, epilog=EXPLORE_EPILOG,
                       help="exhaustively explore every delivery order of a small configuration",
                       description="Breadth-first search over all interleavings of the actors' completions, "
                                   "with state hashing; checks I1, I2, I3, I5 and I8 in every state.")
    e.add_argument("--protocol", choices=PROTOCOLS, default="safe")
    e.add_argument("--enactors", type=int, default=2)
    e.add_argument("--endpoints", type=int, default=2)
    e.add_argument("--generations", type=int, default=4, help="plans the planner may publish (default 4)")
    e.add_argument("--faults", type=int, default=0, help="faults that may happen anywhere (default 0)")
    e.add_argument("--fence-window", action="store_true",
                   help="a write's writer half (the provider's write token, then the store's fence) is a move of "
                        "its own before its provider call, so other moves fall between (about 2.5 times the states)")
    e.add_argument("--max-repairs", type=int, default=0, metavar="N",
                   help="the verifier repairs at most N endpoints a round, the rest in later rounds (the runtime's "
                        "--repair-rate; default 0: no budget)")
    e.add_argument("--max-states", type=int, default=20_000_000,
                   help="stop (incomplete, exit 0 unless a violation was found) after this many states "
                        "(default 20,000,000)")
    e.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_explore)


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        sc = scenarios.load(args.scenario)
    except DnsplaneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    services = None
    if args.services:
        from dnsplane.services import load_services

        try:
            services = load_services(args.services)
        except DnsplaneError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    started = time.perf_counter()
    first_only = not args.all and (args.first or not args.json)
    summary = sweep(sc, args.protocol, seeds, max(1, args.workers), first_only=first_only, look_for=args.invariant)
    elapsed = time.perf_counter() - started
    wanted = [seed for seed, v in summary.violations if args.invariant in ("any", v.short)]
    bad = wanted[0] if wanted else (summary.failing_seeds[0] if summary.failing_seeds else None)
    replay = bad if bad is not None else (args.seed if args.seed is not None else None)
    if services is not None and replay is None:
        replay = seeds[0]  # the impact of a run without violation: the first seed's
    result = run(sc, args.protocol, replay, empty_windows=services is not None) if replay is not None else None
    if args.timeline is not None and result is not None:
        args.timeline.write_text(timeline.svg(result))
    if args.json:
        print(json.dumps({**summary.to_json(), "elapsed_s": round(elapsed, 3)}, indent=2))
        return 1 if summary.violations else 0
    if services is not None and result is not None:
        print_impact(services, result, args.services, sc.endpoints)
    if bad is None or result is None:
        print(f"{args.protocol} protocol, scenario {sc.name}: {summary.seeds} seeds, no violation "
              f"({elapsed:.1f}s, {summary.seeds / max(elapsed, 1e-9):.0f} seeds/s)")
        print(f"  simulated hours     {summary.simulated / 3600:.1f}")
        print(f"  actor steps         {summary.steps}")
        print(f"  plans published     {summary.generations}")
        print(f"  conflicts resolved  {summary.conflicts} (stale writes refused by compare-and-swap)")
        print(f"  repairs             {summary.repairs} (by the verifier)")
        faults = ", ".join(f"{k} {v}" for k, v in sorted(summary.faults.items())) or "none"
        print(f"  faults injected     {faults}")
        if args.timeline is not None:
            print(f"  timeline            {args.timeline}")
        return 0
    first = result.first(args.invariant if args.invariant != "any" else "I1")
    assert first is not None
    print(f"{args.protocol} protocol, scenario {sc.name}: VIOLATION in seed {bad} "
          f"(after {summary.seeds} seeds, {elapsed:.1f}s; {len(summary.failing_seeds)} violating)")
    print(f"  invariant  {first.invariant}")
    print(f"  endpoint   {first.endpoint}")
    print(f"  step       {first.step} (t={first.time:.1f}s simulated)")
    print(f"  detail     {first.detail}")
    others = sorted({f"{v.short} at {v.endpoint}" for v in result.violations if v is not first})
    if others:
        print(f"  also       {'; '.join(others[:8])}")
    print("\ntimeline (time, actor, event):")
    print(timeline.text(result))
    if not args.no_shrink:
        kept = shrink(sc, args.protocol, bad, first.short)
        print(f"\nminimised fault schedule ({len(kept)} of {len(result.schedule)} faults still give "
              f"{first.short}):")
        for f in kept:
            print(f"  {f.describe()}")
        if not kept:
            print("  (none: the workload alone, with this seed's scheduling, breaks it)")
    print(f"\nreplay: dnsplane simulate --protocol {args.protocol} --scenario {args.scenario} --seed {bad}")
    if args.timeline is not None:
        print(f"swimlanes: {args.timeline}")
    return 1


def print_impact(services: Services, result: RunResult, name: str, endpoints: int) -> None:
    """Each service's impact windows in ``result`` (the simulator's ``endpoints`` endpoints stand for the file's,
    in order)."""
    from dnsplane.services import impact_windows

    declared = services.endpoints()
    mapping = {EndpointKey(f"e{i}.{ZONE}", "A"): key for i, key in enumerate(declared)}
    empty = {mapping[k]: w for k, w in result.empty.items() if k in mapping}
    shown = ", ".join(f"e{i} = {key.name.rstrip('.')}" for i, key in enumerate(declared[:endpoints]))
    print(f"impact on services ({name}; seed {result.seed}; {shown}):")
    impacts = impact_windows(services, empty)
    if not impacts:
        print("  none: no endpoint was empty longer than its service's tolerance")
    for w in impacts:
        verdict = "FAILED  " if w.hard else "degraded"
        spans = ", ".join(f"{a:.0f}-{b:.0f} s" for a, b in w.windows[:4]) + (" ..." if len(w.windows) > 4 else "")
        print(f"  {verdict} {w.service:<30} {len(w.windows)} window(s), {w.total:.0f} s in all: {spans}")
    print()


def cmd_explore(args: argparse.Namespace) -> int:
    from dnsplane.sim.explore import Config, explore

    config = Config(protocol=args.protocol, enactors=args.enactors, endpoints=args.endpoints,
                    generations=args.generations, faults=args.faults, fence_window=args.fence_window,
                    max_repairs=args.max_repairs)
    def progress(states: int, transitions: int, depth: int, elapsed: float) -> None:
        print(f"  {states:,} states, {transitions:,} transitions, depth {depth}, {elapsed:.0f}s "
              f"({states / max(elapsed, 1e-9):,.0f} states/s)", file=sys.stderr, flush=True)

    report = explore(config, max_states=args.max_states, progress=None if args.quiet else progress)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 1 if report.violation else 0
    print(f"{args.protocol} protocol: {report.states} states, {report.transitions} transitions, "
          f"{report.elapsed:.1f}s ({report.states / max(report.elapsed, 1e-9):.0f} states/s)"
          + ("" if report.complete or report.violation else " — state bound reached, search incomplete"))
    if report.violation is None:
        print("no violation in any reachable state" if report.complete else "no violation found")
        return 0
    print(f"VIOLATION {report.violation.invariant} at {report.violation.endpoint}: {report.violation.detail}")
    print(f"shortest counterexample ({len(report.path)} steps):")
    for i, step in enumerate(report.path, 1):
        print(f"  {i:>3}. {step}")
    return 1
