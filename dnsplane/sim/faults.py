"""Fault schedules: which faults fire in a run, when, and against whom.

Buggify-style: for each run, every fault site of the scenario is switched on
with its ``active`` chance, and a site that is on fires at random moments
(``rate`` per simulated hour). All of it is drawn up front from the run's own
``random.Random``, into a plain list of ``Fault`` values. A run is then a
deterministic function of (scenario, protocol, seed, schedule), which is what
lets the shrinker drop faults one by one and replay the rest exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dnsplane.sim.scenario import FAULT_KINDS, Scenario
from dnsplane.sim.vocabulary import Corruption, FaultKind, InRange, PartialWrite, When
from dnsplane.sim.world import EXCEPTIONS

EXCEPTION_NAMES = tuple(EXCEPTIONS)  # a ``request_exception`` fault's ``value`` indexes this


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: at ``at`` seconds, ``kind`` hits ``target`` (an actor, a target id or an endpoint index).

    ``duration`` is how long a windowed fault lasts; ``mode`` picks a variant
    (crash "before"/"after" its request ran, corruption "emptied"/..., etc).
    """

    at: float
    kind: str
    target: str = ""
    duration: float = 0.0
    mode: str = ""
    value: float = 0.0

    def describe(self) -> str:
        parts = [f"t={self.at:.1f}s", self.kind]
        if self.target:
            parts.append(self.target)
        if self.mode:
            parts.append(self.mode)
        if self.duration:
            parts.append(f"for {self.duration:.0f}s")
        if self.kind == FaultKind.REQUEST_EXCEPTION:
            parts.append(f"raises {EXCEPTION_NAMES[int(self.value) % len(EXCEPTION_NAMES)]}")
        elif self.value:
            parts.append(f"({self.value:g})")
        return " ".join(parts)


# plain strings, drawn in this order; ``endpoint_deleted`` only where a scenario's ``modes`` name it (a site
# without ``modes`` draws from the three modes it always had, so old seeds replay)
CORRUPTIONS = tuple(c.value for c in Corruption if c is not Corruption.ENDPOINT_DELETED)
PARTIAL_WRITES = tuple(p.value for p in PartialWrite)
IN_RANGE = tuple(m.value for m in InRange)  # ``marker_in_range``'s modes
WHEN = tuple(w.value for w in When)  # a crash or a raised exception: before its request ran, or after
# What a human writes as a marker's ``g=`` (``marker_out_of_range``): each as TXT text, which a provider
# reads with ``read_marker`` (a corrupt marker, ``o=`` kept), or (the numeric ones) as a number in a
# provider that keeps markers as columns (embedded, memory): ``mode`` is "<value>" or "<value>/column".
OUT_OF_RANGE = ("-1", "9223372036854775807", "99999999999999999999", "9007199254740993", "12abc", "")
OUT_OF_RANGE_NUMBERS = tuple(g for g in OUT_OF_RANGE if g.lstrip("-").isdigit())  # ``hand_marker``'s g=
MALFORMED = ("empty", "bad_address", "duplicate_target", "ttl")
ROLLBACKS = ("live", "restart")  # ``store_rollback``'s modes
RIVAL_PERIODS = (30, 60, 300)  # seconds between a ``rival_owner``'s takes: its verifier's period


def make_schedule(scenario: Scenario, rng: random.Random, enactors: list[str], targets: list[str]) -> list[Fault]:
    """Draw the fault schedule of one run (faults only during ``scenario.duration``)."""
    out: list[Fault] = []
    hours = scenario.duration / 3600.0
    for kind in FAULT_KINDS:  # fixed order: the schedule depends only on the seed
        spec = scenario.faults.get(kind)
        if spec is None or rng.random() >= spec.active:
            continue
        if kind == FaultKind.CLOCK_SKEW:
            for actor in ["planner", *enactors, "collector", "verifier"]:
                out.append(Fault(0.0, kind, actor, value=round(rng.uniform(-1, 1) * scenario.max_skew, 3)))
            continue
        # a site with an ``at`` window fires only in it, ``rate`` per hour of it (without one: the whole
        # run, drawn exactly as before the window existed, so old seeds replay)
        start, end = spec.at if spec.at is not None else (0, scenario.duration)
        count = _poisson(rng, spec.rate * (hours if spec.at is None else (end - start) / 3600.0))
        for _ in range(count):
            at = round(rng.uniform(start, end), 3)
            lo, hi = spec.duration
            dur = round(rng.uniform(lo, hi), 3)
            match kind:
                case FaultKind.PAUSE:
                    out.append(Fault(at, kind, rng.choice(enactors), dur))
                case FaultKind.CRASH:
                    who = rng.choice([*enactors, *enactors, "collector", "verifier", "planner"])
                    out.append(Fault(at, kind, who, round(rng.uniform(1, 60), 3), rng.choice(WHEN)))
                case FaultKind.LATENCY_SPIKE:
                    out.append(Fault(at, kind, "provider", dur, value=spec.factor))
                case FaultKind.THROTTLE | FaultKind.STORE_OUTAGE:
                    out.append(Fault(at, kind, "", dur))
                case FaultKind.TIMEOUT_AFTER_APPLY:
                    out.append(Fault(at, kind, rng.choice([*enactors, "verifier"])))
                case FaultKind.REDELIVER:
                    out.append(Fault(at, kind, rng.choice(enactors), mode=rng.choice(("duplicate", "older"))))
                case FaultKind.PLANNER_RESTART:
                    out.append(Fault(at, kind, "planner", mode=rng.choice(("fresh", "counter_reset"))))
                case FaultKind.HEALTH_FLAP | FaultKind.ABA:
                    out.append(Fault(at, kind, rng.choice(targets), dur))
                case FaultKind.ALL_UNHEALTHY:
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)), dur))
                case FaultKind.MALFORMED_PLAN:
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)), mode=rng.choice(MALFORMED)))
                case FaultKind.CORRUPT:
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)),
                                     mode=rng.choice(spec.modes or CORRUPTIONS)))
                case FaultKind.MARKER_OUT_OF_RANGE:
                    g = rng.choice(OUT_OF_RANGE)
                    column = g.lstrip("-").isdigit() and rng.random() < 0.5
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)),
                                     mode=f"g={g}" + ("/column" if column else "")))
                case FaultKind.HAND_MARKER:
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)),
                                     mode=f"g={rng.choice(OUT_OF_RANGE_NUMBERS)}"))
                case FaultKind.SECOND_OWNER:
                    # ``value``: the generation in the other installation's marker (its own numbering)
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)),
                                     value=float(rng.choice((1, 2, 7, 1000)))))
                case FaultKind.PARTIAL_WRITE:
                    # "rejected": the provider answers Rejected for the endpoint's writes (the rest of a
                    # batch is written); "marker_only": it applies the marker and keeps the records (BIND
                    # with a CNAME at the name) and says Applied
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)), dur,
                                     mode=rng.choice(PARTIAL_WRITES)))
                case FaultKind.HEALTH_AMNESIA:
                    out.append(Fault(at, kind, rng.choice(targets), dur, mode="down"))
                case FaultKind.DNS_SILENT:
                    # the verifier's DNS view answers nothing for ``dur`` seconds: for one endpoint (its
                    # index), or for all of them ("all": the server itself is silent)
                    silenced = rng.randrange(scenario.endpoints + 1)
                    out.append(Fault(at, kind, "all" if silenced == scenario.endpoints else str(silenced), dur))
                case FaultKind.RIVAL_OWNER:
                    # a second installation adopting endpoint ``target`` too, for ``dur`` seconds: it takes
                    # the endpoint back every ``value`` seconds (how often its own verifier runs)
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)), dur,
                                     value=float(rng.choice(RIVAL_PERIODS))))
                case FaultKind.MARKER_IN_RANGE:
                    # ``value``: which kept plan (a fraction of their number, oldest first) when it fires
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)), mode=rng.choice(IN_RANGE),
                                     value=round(rng.random(), 3)))
                case FaultKind.RELABEL_OWNER:
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints))))
                case FaultKind.MARKER_RESTORED:
                    # ``value``: which older marker of the endpoint (a fraction of their number, oldest first)
                    out.append(Fault(at, kind, str(rng.randrange(scenario.endpoints)), value=round(rng.random(), 3)))
                case FaultKind.STORE_ROLLBACK:
                    # a backup of the store taken at ``at``, put back ``dur`` seconds later: under the running
                    # fleet ("live": an etcd cluster restored from a snapshot) or with dnsplane stopped for
                    # the restore and started again ("restart")
                    out.append(Fault(at, kind, "store", dur, mode=rng.choice(ROLLBACKS)))
                case FaultKind.REQUEST_EXCEPTION:
                    # ``value`` picks the exception (an index into world.EXCEPTIONS); ``mode``: raised
                    # before the call, or after it took effect (a write applied, its reply lost)
                    who = rng.choice([*enactors, "planner", "collector", "verifier"])
                    out.append(Fault(at, kind, who, mode=rng.choice(WHEN),
                                     value=rng.randrange(len(EXCEPTION_NAMES))))
    out.sort(key=lambda f: (f.at, f.kind, f.target))
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; means here are small."""
    if mean <= 0:
        return 0
    import math

    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
