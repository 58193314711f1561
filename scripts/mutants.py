#!/usr/bin/env python3
"""The mutation campaign (issue 13): take each safety check out, one at a time, and see which model kills it.

The list is scripts/mutants.toml (plain data: id, the check, the file, the exact original text and its
replacement). For each mutant this script copies the ``dnsplane`` package of a tree (default: this
checkout) into a temporary directory, applies the ONE edit (it fails loudly if the original text does not
occur exactly once), makes sure the copy is what Python imports (``PYTHONPATH`` first, the working
directory the copy's), and runs the tools in order of cost, stopping at the first that kills the mutant:

    explore-fast   dnsplane explore --generations 2 / --generations 3 / --generations 2 --faults 1
    explore        dnsplane explore (the default configuration: ~8.5 million states, ~4 min, ~2.5 GB)
    sweep          dnsplane simulate --scenario S for each S of SWEEP (chaos, then the targeted scenarios:
                   hand-edits, owners, guards, slow-reads, corruption, dns-silent, health-grace, rivals,
                   marker-edits, held-repairs, restored-markers, store-rollback, deletions, early-backup; then
                   us-east-1; --seeds N each, --invariant any --no-shrink: the first seed that violates any
                   invariant)
    tests          pytest tests -x -q -m "not explore_default" --ignore=tests/realworld (off by default)

A mutant is "killed" when a tool reports a violation (the explorer's or simulator's JSON names one; for
the tests, pytest exits 1). A tool that breaks (a traceback, no JSON, an import error, a timeout) is
"crashed" or "timeout": that is not a kill by a model, and the next tool is still tried. "survived" means
every selected tool ran to the end and found nothing. Children run under ``nice``.

A mutant marked ``behind`` is a check that stands behind another one (since issue 13's sixth round, the
checks the store's fence on every write covers in every world the models have; since the eighth, one
behind the whole fence and one behind the write token; since the ninth, the chain token behind the write
token too): it is applied together with the mutant it names, and "killed" means the models see the pair
at a replay the front alone passes (CI checks both); ``--alone`` applies its own edit only (they then let
it live: docs/design.md, "Checks no model kills").

Why scripts/ and not bench/: bench/ holds speed measurements; this is a check of the models' power, run
by hand for the full table and, for its fast part, by CI (tests/sim/test_mutants.py imports this file).

Examples:
    scripts/mutants.py --only store-collect-recheck
        one mutant, every default tool, progress on stderr, the table on stdout
    scripts/mutants.py --tools explore-fast --json /tmp/fast.json
        every mutant against the three fast explorer configurations only (a few minutes)
    scripts/mutants.py --tree /tmp/wt-cb82685 --seeds 1500 --workers 1 --nice 15 --json before.json
        issue 13's BEFORE table on the start commit's worktree (never mutate /work/main itself)
    scripts/mutants.py --baseline --tools explore-fast,sweep --seeds 200
        first run the tools on the unmutated copy: a tree whose models already fail kills everything
    scripts/mutants.py --only enactor-seal --tools hand-edits:287 --baseline
        replay one seed of a scenario (as CI does for a mutant marked ci = "hand-edits:287")
    scripts/mutants.py --only enactor-seal --alone --tools sweep --seeds 1000
        the seal rule alone, without the fence-first-writes-only edit it stands behind
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LIST = HERE / "mutants.toml"
DEFAULT_TREE = HERE.parent

# name -> (group, dnsplane CLI arguments or None for the test suite). Order = order of cost.
EXPLORE_FAST = {
    "g2": ["explore", "--protocol", "safe", "--generations", "2", "--max-states", "2000000"],
    "g3": ["explore", "--protocol", "safe", "--generations", "3", "--max-states", "2000000"],
    "g2f1": ["explore", "--protocol", "safe", "--generations", "2", "--faults", "1", "--max-states", "3000000"],
    # three generations, one endpoint, one enactor (and the verifier), one fault anywhere
    "g3n1f1": ["explore", "--protocol", "safe", "--generations", "3", "--endpoints", "1", "--enactors", "1",
               "--faults", "1", "--max-states", "2000000"],
    # the fence's window (a write's writer half and its provider call as two moves) with one fault anywhere,
    # a whole deletion among them: one enactor and the verifier as the two writers of one endpoint
    "w1": ["explore", "--protocol", "safe", "--generations", "2", "--endpoints", "1", "--enactors", "1",
           "--faults", "1", "--fence-window", "--max-states", "2000000"],
}
# the scenarios of the sweep, in order of cost (a targeted scenario kills its mutants in its first seeds)
SWEEP = ["chaos", "hand-edits", "owners", "guards", "slow-reads", "corruption", "dns-silent", "health-grace", "rivals",
         "marker-edits", "held-repairs", "restored-markers", "store-rollback", "deletions",
         "early-backup", "us-east-1"]
TOOL_ORDER = ["g2", "w1", "g3", "g3n1f1", "g2f1", "default", *SWEEP, "tests"]
GROUPS = {"explore-fast": ["g2", "w1", "g3", "g3n1f1", "g2f1"], "explore": ["default"], "sweep": SWEEP,
          "tests": ["tests"]}
DEFAULT_TOOLS = "explore-fast,explore,sweep"


class MutantError(Exception):
    """The mutant cannot be applied to this tree (its original text is gone, or occurs twice)."""


@dataclass(frozen=True)
class Mutant:
    id: str
    check: str
    file: str
    original: str
    replacement: str
    issue13: str = ""
    twin: str = ""
    ci: str = ""
    gone: str = ""  # the check was taken out of the code for good (shown redundant): why, and where it says so
    since: str = ""  # the check was added after issue 13's start commit (absent from older trees)
    behind: str = ""  # the id of a mutant applied with this one: the check is a second line behind that one's


@dataclass
class Outcome:
    """What one tool said about one mutant."""
    tool: str
    verdict: str  # killed | passed | crashed | timeout
    seconds: float
    detail: str = ""


@dataclass
class Result:
    mutant: Mutant
    status: str = "survived"  # killed | survived | crashed | error
    killed_by: str = ""
    first: str = ""
    outcomes: list[Outcome] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        m = self.mutant
        return {"id": m.id, "check": m.check, "file": m.file, "issue13": m.issue13, "ci": m.ci,
                "status": self.status, "killed_by": self.killed_by, "first": self.first,
                "seconds": {o.tool: round(o.seconds, 2) for o in self.outcomes},
                "outcomes": [vars(o) | {"seconds": round(o.seconds, 2)} for o in self.outcomes]}


def load_mutants(path: Path = DEFAULT_LIST) -> list[Mutant]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    mutants = [Mutant(**row) for row in data["mutant"]]
    ids = [m.id for m in mutants]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise MutantError(f"duplicate mutant ids in {path}: {sorted(dupes)}")
    unknown = {m.behind for m in mutants if m.behind and m.behind not in ids}
    if unknown:
        raise MutantError(f"`behind` names no mutant of {path}: {sorted(unknown)}")
    return mutants


def edits(mutant: Mutant, listed: Sequence[Mutant]) -> list[Mutant]:
    """The edits that make ``mutant``: its own, after the one it stands behind (``behind``), if any."""
    if not mutant.behind:
        return [mutant]
    front = next(m for m in listed if m.id == mutant.behind)
    return [*edits(front, listed), mutant]


def occurrences(mutant: Mutant, tree: Path) -> int:
    """How often the mutant's original text occurs in its file of ``tree`` (it must be exactly once)."""
    return (tree / mutant.file).read_text().count(mutant.original)


def copy_tree(tree: Path, dest: Path, with_tests: bool = False) -> None:
    """The package (and, for the test suite, tests/ and pyproject.toml) of ``tree`` into ``dest``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(tree / "dnsplane", dest / "dnsplane", ignore=ignore)
    if with_tests:
        shutil.copytree(tree / "tests", dest / "tests", ignore=ignore)
        shutil.copy2(tree / "pyproject.toml", dest / "pyproject.toml")


def apply_mutant(mutant: Mutant, dest: Path) -> None:
    """Edit the copy in ``dest``: the original text, which must occur exactly once, becomes the replacement."""
    path = dest / mutant.file
    text = path.read_text()
    n = text.count(mutant.original)
    if n != 1:
        raise MutantError(f"{mutant.id}: the original text occurs {n} times in {mutant.file}, not once: "
                          f"{mutant.original!r}")
    path.write_text(text.replace(mutant.original, mutant.replacement))


def child_env(dest: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(dest) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONSAFEPATH", None)
    return env


def imported_from(dest: Path, python: str = sys.executable) -> str:
    """Where the child processes import ``dnsplane`` from (must be the copy in ``dest``)."""
    out = subprocess.run([python, "-c", "import dnsplane; print(dnsplane.__file__)"], cwd=dest,
                         env=child_env(dest), capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()[-300:]


def tool_argv(tool: str, seeds: int, workers: int) -> list[str]:
    if tool in EXPLORE_FAST:
        return ["-m", "dnsplane.cli", *EXPLORE_FAST[tool], "--json", "--quiet"]
    if tool == "default":
        return ["-m", "dnsplane.cli", "explore", "--protocol", "safe", "--max-states", "4000000", "--json",
                "--quiet"]
    if tool in SWEEP:
        return ["-m", "dnsplane.cli", "simulate", "--protocol", "safe", "--scenario", tool, "--seeds", str(seeds),
                "--invariant", "any", "--no-shrink", "--json", "--first", "--workers", str(workers)]
    if tool == "tests":
        return ["-m", "pytest", "tests", "-x", "-q", "-m", "not explore_default", "--ignore=tests/realworld",
                "-p", "no:cacheprovider"]
    if (replay := one_seed(tool)) is not None:
        scenario, seed = replay
        return ["-m", "dnsplane.cli", "simulate", "--protocol", "safe", "--scenario", scenario, "--start", str(seed),
                "--seeds", "1", "--invariant", "any", "--no-shrink", "--json", "--workers", "1"]
    raise ValueError(f"unknown tool {tool!r}")


def one_seed(tool: str) -> tuple[str, int] | None:
    """``SCENARIO:SEED`` (one seed of a sweep's scenario, as CI replays a kill), or None."""
    scenario, colon, seed = tool.partition(":")
    return (scenario, int(seed)) if colon and scenario in SWEEP and seed.isdigit() else None


def run_tool(tool: str, dest: Path, *, seeds: int = 10_000, workers: int = 1, niceness: int = 10,
             timeout: float = 900.0, python: str = sys.executable) -> Outcome:
    """Run one tool on the copy in ``dest`` and say whether it found a violation."""
    argv = ["nice", "-n", str(niceness), python, *tool_argv(tool, seeds, workers)]
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=dest, env=child_env(dest), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Outcome(tool, "timeout", time.monotonic() - start, f"no answer in {timeout:.0f} s")
    seconds = time.monotonic() - start
    if tool == "tests":
        if proc.returncode == 0:
            return Outcome(tool, "passed", seconds)
        tail = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))][:1]
        verdict = "killed" if proc.returncode == 1 else "crashed"
        return Outcome(tool, verdict, seconds, tail[0] if tail else proc.stdout.strip()[-200:])
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return Outcome(tool, "crashed", seconds, (proc.stderr.strip().splitlines() or ["no output"])[-1][:200])
    if tool in EXPLORE_FAST or tool == "default":
        v = report.get("violation")
        if v:
            return Outcome(tool, "killed", seconds, f"{v['invariant']} after {len(report.get('path', []))} moves "
                                                    f"({report['states']} states)")
        if proc.returncode != 0:
            return Outcome(tool, "crashed", seconds, f"exit {proc.returncode} without a violation")
        note = "" if report.get("complete", True) else f"incomplete at {report['states']} states"
        return Outcome(tool, "passed", seconds, note)
    violations = report.get("violations") or []
    if violations:
        v = violations[0]
        return Outcome(tool, "killed", seconds, f"{v['invariant']} seed {v['seed']}")
    if proc.returncode != 0:
        return Outcome(tool, "crashed", seconds, f"exit {proc.returncode} without a violation")
    return Outcome(tool, "passed", seconds)


def run_mutant(mutant: Mutant | None, tree: Path, tools: list[str], *, seeds: int, workers: int, niceness: int,
               timeout: float, say: bool = False, listed: Sequence[Mutant] = ()) -> Result:
    """Copy, mutate (``None``: the unmutated baseline; with the mutant it stands ``behind``, found in
    ``listed``), check the import, run ``tools`` until one kills it."""
    label = mutant or Mutant("baseline", "nothing taken out", "", "", "")
    result = Result(label)
    with tempfile.TemporaryDirectory(prefix=f"mutant-{label.id}-") as tmp:
        dest = Path(tmp)
        copy_tree(tree, dest, with_tests="tests" in tools)
        for edit in edits(mutant, listed) if mutant is not None else ():
            apply_mutant(edit, dest)
        where = imported_from(dest)
        if not where.startswith(str(dest)):
            raise MutantError(f"the children import dnsplane from {where}, not from the copy in {dest}")
        if say:
            print(f"  (children import dnsplane from {where})", file=sys.stderr)
        for tool in tools:
            outcome = run_tool(tool, dest, seeds=seeds, workers=workers, niceness=niceness, timeout=timeout)
            result.outcomes.append(outcome)
            print(f"  {label.id}: {tool} {outcome.verdict} in {outcome.seconds:.1f} s {outcome.detail}",
                  file=sys.stderr)
            if outcome.verdict == "killed":
                result.status, result.killed_by, result.first = "killed", tool, outcome.detail
                return result
        if any(o.verdict in ("crashed", "timeout") for o in result.outcomes):
            result.status = "crashed"
            result.first = next(f"{o.tool}: {o.detail}" for o in result.outcomes if o.verdict != "passed")
    return result


def markdown(results: list[Result]) -> str:
    lines = ["| mutant | check taken out | killed by | first violation | seconds (tool by tool) |",
             "|---|---|---|---|---|"]
    for r in results:
        m = r.mutant
        name = f"`{m.id}`" + (" (issue 13)" if m.issue13 else "") + (f" behind `{m.behind}`" if m.behind else "")
        by = r.killed_by if r.status == "killed" else f"**{r.status}**"
        secs = ", ".join(f"{o.tool} {o.seconds:.1f}" for o in r.outcomes)
        lines.append(f"| {name} | {m.check} | {by} | {r.first} | {secs} |")
    killed = sum(r.status == "killed" for r in results)
    lines.append("")
    lines.append(f"{killed} of {len(results)} killed.")
    return "\n".join(lines)


def select_tools(spec: str) -> list[str]:
    wanted: set[str] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if part in GROUPS:
            wanted.update(GROUPS[part])
        elif part in TOOL_ORDER or one_seed(part) is not None:
            wanted.add(part)
        else:
            raise SystemExit(f"unknown tool {part!r}: choose among {', '.join([*GROUPS, *TOOL_ORDER])}, "
                             "or SCENARIO:SEED (one seed of a sweep's scenario)")
    # one seed first (the cheapest: a kill CI replays), then the rest in order of cost
    return sorted(t for t in wanted if t not in TOOL_ORDER) + [t for t in TOOL_ORDER if t in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("Examples:")[0],
        epilog="examples:" + (__doc__ or "").split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", type=Path, default=DEFAULT_LIST,
                        help="the mutant list (default scripts/mutants.toml)")
    parser.add_argument("--tree", type=Path, default=DEFAULT_TREE,
                        help="the checkout whose dnsplane package is copied and mutated (default: this one); "
                             "never edited itself")
    parser.add_argument("--only", default="", help="comma-separated mutant ids, run in that order (default: all)")
    parser.add_argument("--tools", default=DEFAULT_TOOLS,
                        help="comma-separated groups or tools, run cheapest first: explore-fast "
                             "(g2, w1, g3, g3n1f1, g2f1), "
                             f"explore (default), sweep ({', '.join(SWEEP)}), tests (default {DEFAULT_TOOLS})")
    parser.add_argument("--seeds", type=int, default=10_000, help="seeds of each sweep scenario (default 10,000)")
    parser.add_argument("--workers", type=int, default=1, help="simulate --workers (default 1)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the children (default 10)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one tool may take (default 900)")
    parser.add_argument("--baseline", action="store_true",
                        help="first run the tools on the unmutated copy; stop if any finds a violation")
    parser.add_argument("--json", type=Path, help="write every result as JSON here too")
    parser.add_argument("--after", type=Path, metavar="EARLIER.json",
                        help="continue an earlier campaign (its --json): a mutant it killed keeps that result, "
                             "the others keep their outcomes and run these tools")
    parser.add_argument("--alone", action="store_true",
                        help="apply only each mutant's own edit, not the one it stands `behind` (do the models "
                             "kill the second line alone?)")
    parser.add_argument("--check", action="store_true",
                        help="only check that every mutant's original text occurs exactly once in the tree")
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    mutants = everyone = load_mutants(args.list)
    if args.alone:
        everyone = [replace(m, behind="") for m in everyone]
        mutants = everyone
    if args.only:
        ids = [i.strip() for i in args.only.split(",") if i.strip()]
        by_id = {m.id: m for m in mutants}
        unknown = set(ids) - by_id.keys()
        if unknown:
            raise SystemExit(f"unknown mutant ids: {sorted(unknown)}")
        mutants = [by_id[i] for i in dict.fromkeys(ids)]  # in the order given
    counts = {m.id: occurrences(m, tree) for m in mutants}
    gone = [m for m in mutants if (m.gone or m.since) and counts[m.id] == 0]  # present in the tree: run it
    for m in gone:
        print(f"{m.id}: not in this tree ({m.gone or m.since}); skipped", file=sys.stderr)
    mutants = [m for m in mutants if m not in gone]
    bad = [(m.id, counts[m.id]) for m in mutants if counts[m.id] != 1]
    if bad:
        print(f"mutants whose original text does not occur exactly once in {tree}: {bad}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{len(mutants)} mutants, each original text exactly once in {tree}")
        return 0
    tools = select_tools(args.tools)
    opts = {"seeds": args.seeds, "workers": args.workers, "niceness": args.nice, "timeout": args.timeout}
    print(f"{len(mutants)} mutants of {tree}, tools {', '.join(tools)}", file=sys.stderr)
    if args.baseline:
        base = run_mutant(None, tree, tools, say=True, **opts)
        if base.status != "survived":
            print(f"the unmutated tree does not pass: {base.status} by {base.killed_by}: {base.first}",
                  file=sys.stderr)
            return 2
    earlier = {row["id"]: row for row in json.loads(args.after.read_text())["results"]} if args.after else {}
    results: list[Result] = []
    started = time.monotonic()
    for i, mutant in enumerate(mutants):
        print(f"[{i + 1}/{len(mutants)}] {mutant.id} ({time.monotonic() - started:.0f} s so far)", file=sys.stderr)
        before = earlier.get(mutant.id)
        outcomes = [Outcome(**o) for o in before["outcomes"]] if before else []
        if before and before["status"] == "killed":
            results.append(Result(mutant, "killed", before["killed_by"], before["first"], outcomes))
        else:
            result = run_mutant(mutant, tree, tools, say=i == 0 and not args.baseline, listed=everyone, **opts)
            result.outcomes[:0] = outcomes
            if result.status != "killed" and any(o.verdict in ("crashed", "timeout") for o in outcomes):
                result.status = "crashed"
                result.first = next(f"{o.tool}: {o.detail}" for o in outcomes if o.verdict != "passed")
            results.append(result)
        if args.json:  # rewritten after each mutant: a long campaign cut short keeps what it found
            args.json.write_text(json.dumps({"tree": str(tree), "tools": tools, "seeds": args.seeds,
                                             "results": [r.to_json() for r in results]}, indent=1))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
