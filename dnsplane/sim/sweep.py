"""Run many seeds of one scenario, in this process or across ``workers`` processes.

Each seed is independent and deterministic, so the summary is the same whatever
the number of workers (results are merged in seed order).
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from dataclasses import dataclass, field

from dnsplane.sim.allocation import collect_rarely, collecting_rarely
from dnsplane.sim.driver import RunResult, run
from dnsplane.sim.invariants import Violation
from dnsplane.sim.scenario import Scenario


@dataclass
class Summary:
    protocol: str
    scenario: str
    seeds: int = 0
    steps: int = 0
    simulated: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0
    repairs: int = 0
    generations: int = 0
    violations: list[tuple[int, Violation]] = field(default_factory=list)  # (seed, violation)
    failing_seeds: list[int] = field(default_factory=list)

    def add(self, r: RunResult) -> None:
        self.seeds += 1
        self.steps += r.steps
        self.simulated += r.simulated
        self.faults.update(r.faults)
        self.conflicts += r.conflicts
        self.repairs += r.repairs
        self.generations += r.generations
        if r.violations:
            self.failing_seeds.append(r.seed)
            self.violations.extend((r.seed, v) for v in r.violations)

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "scenario": self.scenario,
            "seeds": self.seeds,
            "simulated_hours": round(self.simulated / 3600, 2),
            "steps": self.steps,
            "generations": self.generations,
            "conflicts_resolved": self.conflicts,
            "repairs": self.repairs,
            "failing_seeds": len(self.failing_seeds),
            "violations": [v.to_json(seed) for seed, v in self.violations],
            "faults": dict(sorted(self.faults.items())),
        }


def _one(args: tuple[Scenario, str, int, str | None]) -> RunResult:
    scenario, protocol, seed, stop_on = args
    r = run(scenario, protocol, seed, trace=False, stop_on=stop_on)
    r.schedule = []  # keep what crosses the process boundary small
    return r


def sweep(scenario: Scenario, protocol: str, seeds: list[int], workers: int = 1,
          stop_on: str | None = None, first_only: bool = False, look_for: str = "I1") -> Summary:
    """Run ``seeds``; with ``first_only`` stop at the first seed (in seed order) that violates ``look_for``."""
    summary = Summary(protocol, scenario.name)
    jobs = [(scenario, protocol, s, stop_on) for s in seeds]
    if workers <= 1:
        with collecting_rarely():
            for job in jobs:
                r = _one(job)
                summary.add(r)
                if first_only and _has(r, look_for):
                    break
        return summary
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=collect_rarely) as pool:
        for r in pool.imap(_one, jobs, chunksize=max(1, min(64, len(jobs) // (workers * 8) or 1))):
            summary.add(r)
            if first_only and _has(r, look_for):
                pool.terminate()
                break
    return summary


def _has(r: RunResult, invariant: str) -> bool:
    return any(invariant in ("any", v.short) for v in r.violations)
