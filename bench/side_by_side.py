"""Speed of two checkouts side by side, in one run: the proof that a refactor cost nothing.

    python bench/side_by_side.py BEFORE_DIR [AFTER_DIR] [--runs 5] [--seeds 200] [--n 100000]
                                 [--no-explore] [--no-enact]

BEFORE_DIR and AFTER_DIR are source trees (a ``git worktree`` of the commit before, and this
one by default). Each measurement runs in a fresh subprocess with ``PYTHONPATH`` set to its tree,
alternating before and after, ``--runs`` times each, so that whatever else the (shared) machine
does falls on both alike. Reported per measurement: the median, the spread (min-max) and the
ratio after/before of the medians. Measurements (issue 9's list):

- ``sim``: ``us-east-1`` safe protocol, ``--seeds`` seeds in one process, seeds per CPU second;
- ``explore``: the explorer's default configuration, wall seconds (and its state count);
- ``enact``: ``bench/enact_scale.py --n N`` (the tree's own copy), plan and enact from empty,
  then a 1 % change, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SIM = """
import json, resource, time
from dnsplane.sim.scenario import load
from dnsplane.sim.sweep import sweep
sc = load("us-east-1")
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c = cpu()
s = sweep(sc, "safe", list(range({seeds})))
print(json.dumps({{"seeds_per_cpu_s": s.seeds / (cpu() - c), "steps": s.steps}}))
"""

EXPLORE = """
import json
from dnsplane.sim.explore import Config, explore
r = explore(Config(protocol="safe"))
print(json.dumps({"seconds": r.elapsed, "states": r.states, "transitions": r.transitions}))
"""


def measure(tree: Path, what: str, seeds: int, n: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if what == "sim":
        cmd = [sys.executable, "-c", SIM.format(seeds=seeds)]
    elif what == "explore":
        cmd = [sys.executable, "-c", EXPLORE]
    else:
        cmd = [sys.executable, str(tree / "bench" / "enact_scale.py"), "--one", "--n", str(n)]
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path, nargs="?", default=Path(__file__).resolve().parents[1])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--no-explore", action="store_true")
    ap.add_argument("--no-enact", action="store_true")
    args = ap.parse_args()
    plan = [("sim", "seeds_per_cpu_s", "seeds/CPU s, higher is better")]
    if not args.no_enact:
        plan += [("enact", "full_total_s", "s, plan+enact from empty"), ("enact", "change_total_s", "s, 1 % change")]
    if not args.no_explore:
        plan.append(("explore", "seconds", "s, default configuration"))
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for what in dict.fromkeys(p[0] for p in plan):
        runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for i in range(args.runs):
            for side, tree in (("before", args.before), ("after", args.after)):
                r = measure(tree, what, args.seeds, args.n)
                runs[side].append(r)
                print(f"  {what} run {i + 1} {side}: {json.dumps(r)}", file=sys.stderr, flush=True)
        results[what] = runs
    print(f"runs each: {args.runs}\n")
    print("| measurement | before: median (min-max) | after: median (min-max) | after/before |")
    print("|---|---|---|---|")
    for what, key, unit in plan:
        b = [r[key] for r in results[what]["before"]]
        a = [r[key] for r in results[what]["after"]]
        mb, ma = statistics.median(b), statistics.median(a)
        print(f"| {what} {key} ({unit}) | {mb:.3f} ({min(b):.3f}-{max(b):.3f}) | {ma:.3f} ({min(a):.3f}-{max(a):.3f}) "
              f"| {ma / mb:.3f} |")
    if "explore" in results:
        states = {side: {(r["states"], r["transitions"]) for r in results["explore"][side]}
                  for side in ("before", "after")}
        print(f"\nexplorer (states, transitions): before {states['before']}, after {states['after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
