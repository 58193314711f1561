"""Simulator speed: actor steps/s, us-east-1 seeds/s, time to legacy's first counterexample, explorer.

    python bench/sim_speed.py [--seeds 300] [--workers 2]

Goals (issue 4): >= 100 seeds/s for us-east-1 (one simulated hour each), legacy's first
counterexample <= 10 s, explorer default configuration complete <= 60 s.
"""

from __future__ import annotations

import argparse
import resource
import time

from dnsplane.sim.explore import Config, explore
from dnsplane.sim.scenario import load
from dnsplane.sim.sweep import sweep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--explore-states", type=int, default=20_000_000)
    ap.add_argument("--explore-seconds", type=float, default=1800.0, help="stop an exploration after this long")
    ap.add_argument("--no-default-explore", action="store_true", help="skip the default configuration (under a minute)")
    args = ap.parse_args()
    sc = load("us-east-1")
    for protocol in ("safe", "legacy"):
        for workers in (1, args.workers):
            t, cpu = time.perf_counter(), _cpu()
            s = sweep(sc, protocol, list(range(args.seeds)), workers=workers)
            dt, dc = time.perf_counter() - t, _cpu() - cpu
            # CPU time (this process and its workers) is what the code costs; wall time also counts
            # whatever else the (shared) machine is running
            print(f"us-east-1 {protocol:6} workers={workers}: {s.seeds / dt:7.1f} seeds/s, "
                  f"{s.steps / dt:9.0f} actor steps/s, {s.steps / s.seeds:.0f} steps/seed, "
                  f"{s.simulated / s.seeds / 3600:.2f} simulated h/seed; per CPU second: "
                  f"{s.seeds / dc:.1f} seeds, {s.steps / dc:.0f} steps")
    t = time.perf_counter()
    s = sweep(sc, "legacy", list(range(1000)), first_only=True, look_for="I1")
    print(f"legacy first I1 counterexample: seed {s.failing_seeds and s.violations[-1][0]} "
          f"after {time.perf_counter() - t:.2f}s")
    runs = [Config(protocol="legacy"), Config(protocol="safe", generations=2), Config(protocol="safe", generations=3)]
    if not args.no_default_explore:
        runs.append(Config(protocol="safe"))
    for config in runs:
        t, cpu = time.perf_counter(), _cpu()
        r = explore(config, max_states=args.explore_states, max_seconds=args.explore_seconds)
        dc = _cpu() - cpu
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"explore {config.protocol:6} generations={config.generations} (default config: "
              f"{config == Config(protocol=config.protocol)}): {r.states} states, {r.transitions} transitions, "
              f"{r.elapsed:.1f}s ({r.states / r.elapsed:.0f} states/s; CPU {dc:.1f}s), complete={r.complete}, "
              f"violation={r.violation.short if r.violation else None}, path={len(r.path)}, peak RSS {rss} MB")


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the sweep's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
