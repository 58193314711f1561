"""Record, or compare, what the simulator and the explorer do: the proof that a refactor changed nothing.

    python scripts/behaviour_fingerprint.py record OUT_DIR [--seeds 500] [--workers 2] [--no-explore] [--atomic-replies]
    python scripts/behaviour_fingerprint.py compare BEFORE_DIR AFTER_DIR

``record`` runs seeds 0..N-1 of ``us-east-1`` and ``chaos`` under the safe protocol (and
``us-east-1`` under the legacy one), each with its whole trace, and writes per scenario one file
holding, per seed, the run's JSON summary, every trace event and every timeline line; then the
explorer's state and transition counts on its default configuration and on the one-fault
configuration (``--generations 2 --faults 1``). ``compare`` says whether two recordings are
byte-for-byte the same and, if not, shows the first seed (or count) that differs.

Issue 9 asks that the actor-contract refactor keep all of this identical. ``--atomic-replies`` runs the
scenarios as the simulator did before issue 13 (a reply reaches its actor the instant its request
runs), to compare with a recording made before then.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import multiprocessing
import sys
import time
from pathlib import Path

RUNS = (("us-east-1", "safe"), ("chaos", "safe"), ("us-east-1", "legacy"))
EXPLORATIONS = {"default": {}, "one-fault": {"generations": 2, "faults": 1}}


def _seed_text(job: tuple[str, str, int, bool]) -> str:
    from dnsplane.sim.driver import run
    from dnsplane.sim.scenario import load
    from dnsplane.sim.sweep import Summary

    scenario, protocol, seed, atomic = job
    r = run(load(scenario).with_atomic_replies() if atomic else load(scenario), protocol, seed, trace=True)
    summary = Summary(protocol, scenario)
    summary.add(r)
    lines = [f"=== seed {seed}", json.dumps({**summary.to_json(), "writes": r.writes}, sort_keys=True)]
    lines += [f"T {e.time!r} {e.step} {e.actor} {e.kind} {e.generation} {e.detail}" for e in r.trace]
    lines += [f"L {line}" for line in r.timeline]
    lines += [f"F {f.describe()}" for f in r.schedule]
    return "\n".join(lines) + "\n"


def record(out: Path, seeds: int, workers: int, explore: bool, atomic: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("fork")
    for scenario, protocol in RUNS:
        started = time.perf_counter()
        jobs = [(scenario, protocol, s, atomic) for s in range(seeds)]
        path = out / f"{scenario}-{protocol}.txt"
        with ctx.Pool(workers) as pool, path.open("w") as fh:
            for text in pool.imap(_seed_text, jobs, chunksize=8):
                fh.write(text)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        print(f"{scenario} {protocol}: {seeds} seeds, {path.stat().st_size:,} bytes, sha256 {digest}, "
              f"{time.perf_counter() - started:.0f}s", file=sys.stderr)
    if not explore:
        return
    from dnsplane.sim.explore import Config
    from dnsplane.sim.explore import explore as run_explore

    counts = {}
    for name, kw in EXPLORATIONS.items():
        r = run_explore(Config(protocol="safe", **kw))  # type: ignore[arg-type]
        counts[name] = {"states": r.states, "transitions": r.transitions, "complete": r.complete,
                        "violation": r.violation.short if r.violation else None}
        print(f"explore {name}: {r.states:,} states, {r.transitions:,} transitions, {r.elapsed:.1f}s",
              file=sys.stderr)
    (out / "explore.json").write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")


def compare(before: Path, after: Path) -> int:
    same = True
    for name in sorted({p.name for p in before.iterdir()} | {p.name for p in after.iterdir()}):
        a, b = before / name, after / name
        if not a.exists() or not b.exists():
            print(f"{name}: only in {'after' if not a.exists() else 'before'}")
            same = False
            continue
        if a.read_bytes() == b.read_bytes():
            print(f"{name}: identical ({a.stat().st_size:,} bytes)")
            continue
        same = False
        old, new = a.read_text().splitlines(), b.read_text().splitlines()
        diff = list(difflib.unified_diff(old, new, str(a), str(b), n=3, lineterm=""))
        print(f"{name}: DIFFERS; first differences:")
        print("\n".join(diff[:40]))
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("out", type=Path)
    r.add_argument("--seeds", type=int, default=500)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--no-explore", action="store_true")
    r.add_argument("--atomic-replies", action="store_true", help="replies reach actors as before issue 13")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.out, args.seeds, args.workers, not args.no_explore, args.atomic_replies)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
