"""Simulation scenarios: fleet size, actors, cadences, latencies, fault mix and duration.

A scenario is a YAML file (``dnsplane/sim/scenarios/*.yaml`` ship with the package;
``--scenario PATH`` takes any file). Every key is optional except ``name``::

    name: us-east-1
    duration: 3600          # simulated seconds with workload and faults
    quiet: 900              # then faults stop; I4 must hold by the end of this
    fleet: {endpoints: 4, targets: 3}
    # the planner's guards for every endpoint (default: min_targets 1, no shift limit, fail open)
    #   fleet: {endpoints: 4, targets: 3, policy: {min_targets: 2, max_weight_shift: 0.25, fail_open: false}}
    enactors: 3
    slow: {enactor-3: [60, 300]}   # per-actor latency range of its provider writes, seconds
    periods: {planner: 30, enactor: 60, collector: 60, verifier: 60, health: 30}
    latency: [0.05, 2.0]    # every other store / provider request
    health_flip: 0.05       # chance per target per health period that its health flips
    legacy_keep: 3          # the legacy clean-up's "significantly older"
    not_adopted: [3]        # endpoints whose foreign records dnsplane must leave alone (I7; default: none)
    atomic_replies: false   # true: a request's reply reaches its actor the instant it runs (before issue 13)
    health_grace: 60        # the planner's health grace, seconds, as the runtime's (default 0: none); with it
                            # each target is checked every 1, 2 or 3 health periods, and the targets keep a
                            # health of their own that a planner restart does not reset (see driver.py)
    max_repairs: 1          # the verifier's repair budget per round (the runtime's --repair-rate times its
                            # period; default 0: none); I4's bound grows by a verifier period per endpoint
                            # over the budget
    faults:                 # kind: {active: chance the site is on in a run, rate: per hour when on, ...}
      crash: {active: 0.5, rate: 2}
      corrupt: {rate: 40, modes: [marker_stale]}   # only some of its modes (default: all)
      store_rollback: {rate: 120, at: [0, 60]}      # only in that part of the run, rate per hour of it

Unknown keys and unknown fault kinds are errors that name the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dnsplane.errors import InvalidConfig
from dnsplane.model import Policy
from dnsplane.sim import vocabulary

# The fault kinds, in the order a schedule draws them (new kinds go last, so a scenario without them
# replays its old seeds exactly): named once, in ``vocabulary.FaultKind``, with what each does.
FAULT_KINDS: tuple[str, ...] = vocabulary.FAULT_KINDS
# The kinds issue 8 added. A seed found before them replays as it did with ``Scenario.without(*ISSUE_8_KINDS)``
# (the other kinds' schedule is drawn first, unchanged); tests/sim/test_regressions.py does.
ISSUE_8_KINDS: tuple[str, ...] = FAULT_KINDS[FAULT_KINDS.index("request_exception"):]


@dataclass(frozen=True)
class FaultSpec:
    """One fault site: on in a run with chance ``active``; then ``rate`` occurrences per simulated hour."""

    active: float = 1.0
    rate: float = 1.0
    duration: tuple[float, float] = (30.0, 120.0)
    factor: float = 20.0  # latency spike multiplier
    # the modes drawn from (``corrupt``: some of ``vocabulary.Corruption``); empty: every mode of the kind
    modes: tuple[str, ...] = ()
    # the part of the run [from, to] seconds in which it fires (``rate`` per hour of that part); None: all of
    # ``duration`` (a backup taken in the first minute after an install: ``store_rollback``, ``early-backup``)
    at: tuple[float, float] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    duration: float = 3600.0
    quiet: float = 900.0
    endpoints: int = 4
    targets: int = 3
    enactors: int = 3
    slow: dict[str, tuple[float, float]] = field(default_factory=dict)
    planner_period: float = 30.0
    enactor_period: float = 60.0
    collector_period: float = 60.0
    verifier_period: float = 60.0
    health_period: float = 30.0
    latency: tuple[float, float] = (0.05, 2.0)
    health_flip: float = 0.05
    legacy_keep: int = 3
    max_skew: float = 30.0
    repair_bound: float = 600.0
    faults: dict[str, FaultSpec] = field(default_factory=dict)
    # I7: indices of the endpoints the fleet does NOT adopt (``adopt: true`` is the default here, so that
    # the repair of a marker deleted by hand stays covered); foreign records there are never written
    not_adopted: tuple[int, ...] = ()
    # True: a request runs and its reply reaches the actor in one instant, as before issue 13 (no other
    # actor, pause or crash between a read and what is decided from it); a seed found before then
    # replays as it did with it (tests/sim/test_regressions.py). False: two instants (driver.py)
    atomic_replies: bool = False
    # the planner's guards of every endpoint (``fleet: {policy: ...}``); None: world.SIM_POLICY
    policy: Policy | None = None
    # seconds a (re)started planner waits for each target's first check before it plans the target's
    # endpoints (``Planner.health_grace``, the runtime's ``--health-grace``); 0: it plans at once
    health_grace: float = 0.0
    # the verifier's repairs per round at most (``Verifier.max_repairs``, the runtime's ``--repair-rate``
    # times its period); 0: no budget
    max_repairs: int = 0

    @property
    def convergence_bound(self) -> float:
        """I4's stated bound after faults stop: planner period + lease-free enactor round + backoff.

        A planner period to publish, two enactor periods (one round may have started
        just before the last plan), two verifier periods (a lagging endpoint gets one
        round of grace), and the slowest request twice over (a reply in flight, one retry).
        """
        slowest = max([self.latency[1], *(hi for _, hi in self.slow.values())])
        bound = (self.planner_period + 2 * self.enactor_period + 2 * self.verifier_period
                 + 4 * slowest + 10.0)
        partial = self.faults.get("partial_write")
        if partial is not None:
            # the verifier's quarantine backoff: a repair rejected for a whole window of W seconds waits
            # at most about W more before it is sent again (each wait doubles, and so does the time
            # spent), plus a round; at quiet no new plan makes the enactors retry it
            bound += partial.duration[1] + 2 * self.verifier_period
        if self.max_repairs:
            # every endpoint may be wrong at once: a round repairs ``max_repairs`` of them
            bound += (-(-self.endpoints // self.max_repairs) - 1) * self.verifier_period
        return bound

    def only(self, *kinds: str, active: float = 1.0) -> Scenario:
        """This scenario with only ``kinds`` of fault, each always active (for regression tests)."""
        faults = {k: FaultSpec(active, *_rest(self.faults.get(k))) for k in kinds}
        return _replace(self, faults=faults)

    def without(self, *kinds: str) -> Scenario:
        """This scenario without the fault sites ``kinds`` (the others as they are)."""
        return _replace(self, faults={k: v for k, v in self.faults.items() if k not in kinds})

    def without_faults(self) -> Scenario:
        return _replace(self, faults={})

    def with_atomic_replies(self) -> Scenario:
        """This scenario as the simulator ran it before issue 13: each reply reaches its actor the
        instant its request runs (a seed found then replays as it did)."""
        return _replace(self, atomic_replies=True)


def _rest(spec: FaultSpec | None) -> tuple[float, tuple[float, float], float, tuple[str, ...],
                                           tuple[float, float] | None]:
    spec = spec or FaultSpec()
    return spec.rate, spec.duration, spec.factor, spec.modes, spec.at


def _replace(s: Scenario, **changes: Any) -> Scenario:
    import dataclasses

    return dataclasses.replace(s, **changes)


_TOP = {"name", "description", "duration", "quiet", "fleet", "enactors", "slow", "periods", "latency",
        "health_flip", "legacy_keep", "max_skew", "repair_bound", "faults", "not_adopted", "atomic_replies",
        "health_grace", "max_repairs"}


def _pair(path: str, key: str, value: Any) -> tuple[float, float]:
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value)):
        raise InvalidConfig(path, 0, f"{key}: expected [low, high] seconds, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo < 0 or hi < lo:
        raise InvalidConfig(path, 0, f"{key}: expected 0 <= low <= high, got {value!r}")
    return lo, hi


def _policy(path: str, data: Any) -> Policy:
    """``fleet.policy``: the planner's guards, over the simulator's (rise and fall 1, no shift limit)."""
    if not isinstance(data, dict) or set(data) - {"min_targets", "max_weight_shift", "fail_open"}:
        raise InvalidConfig(path, 0, f"fleet.policy: expected a mapping of min_targets, max_weight_shift, "
                                     f"fail_open, got {data!r}")
    min_targets, shift, fail_open = (data.get("min_targets", 1), data.get("max_weight_shift", 1.0),
                                     data.get("fail_open", True))
    if not (isinstance(min_targets, int) and min_targets >= 1 and isinstance(shift, int | float)
            and 0 < shift <= 1 and isinstance(fail_open, bool)):
        raise InvalidConfig(path, 0, f"fleet.policy: min_targets >= 1, 0 < max_weight_shift <= 1, fail_open "
                                     f"true or false; got {data!r}")
    return Policy(min_targets, float(shift), fail_open, rise=1, fall=1)


def parse(data: dict[str, Any], path: str = "<scenario>") -> Scenario:
    """Build a ``Scenario`` from parsed YAML; errors name the file and the key."""
    if not isinstance(data, dict) or "name" not in data:
        raise InvalidConfig(path, 1, "a scenario is a mapping with at least a name")
    unknown = set(data) - _TOP
    if unknown:
        raise InvalidConfig(path, 0, f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_TOP))}")
    kw: dict[str, Any] = {"name": str(data["name"]), "description": str(data.get("description", ""))}
    for k in ("duration", "quiet", "health_flip", "max_skew", "repair_bound", "health_grace"):
        if k in data:
            kw[k] = float(data[k])
    if "legacy_keep" in data:
        kw["legacy_keep"] = int(data["legacy_keep"])
    if "max_repairs" in data:
        budget = data["max_repairs"]
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise InvalidConfig(path, 0, f"max_repairs: expected a whole number of repairs, 0 or more, got {budget!r}")
        kw["max_repairs"] = budget
    fleet = data.get("fleet") or {}
    kw["endpoints"] = int(fleet.get("endpoints", 4))
    kw["targets"] = int(fleet.get("targets", 3))
    if unknown := set(fleet) - {"endpoints", "targets", "policy"}:
        raise InvalidConfig(path, 0, f"fleet: unknown key(s) {', '.join(sorted(unknown))}")
    if "policy" in fleet:
        kw["policy"] = _policy(path, fleet["policy"])
    kw["enactors"] = int(data.get("enactors", 3))
    if kw["enactors"] < 1 or kw["endpoints"] < 1 or kw["targets"] < 1:
        raise InvalidConfig(path, 0, "fleet and enactors must be at least 1")
    kw["slow"] = {str(a): _pair(path, f"slow.{a}", v) for a, v in (data.get("slow") or {}).items()}
    periods = data.get("periods") or {}
    for role in periods:
        if role not in ("planner", "enactor", "collector", "verifier", "health"):
            raise InvalidConfig(path, 0, f"periods.{role}: unknown actor")
        kw[f"{role}_period"] = float(periods[role])
    if "latency" in data:
        kw["latency"] = _pair(path, "latency", data["latency"])
    faults: dict[str, FaultSpec] = {}
    for kind, spec in (data.get("faults") or {}).items():
        if kind not in FAULT_KINDS:
            raise InvalidConfig(path, 0, f"faults.{kind}: unknown fault kind; known: {', '.join(FAULT_KINDS)}")
        spec = spec or {}
        bad = set(spec) - {"active", "rate", "duration", "factor", "modes", "at"}
        if bad:
            raise InvalidConfig(path, 0, f"faults.{kind}: unknown key(s) {', '.join(sorted(bad))}")
        modes = spec.get("modes", [])
        known = [c.value for c in vocabulary.Corruption] if kind == vocabulary.FaultKind.CORRUPT else []
        if not (isinstance(modes, list) and set(modes) <= set(known)):
            raise InvalidConfig(path, 0, f"faults.{kind}.modes: expected a list of {', '.join(known) or 'nothing'}")
        at = _pair(path, f"faults.{kind}.at", spec["at"]) if "at" in spec else None
        if at is not None and at[1] > kw.get("duration", Scenario.duration):
            raise InvalidConfig(path, 0, f"faults.{kind}.at: expected a part of the run (duration "
                                         f"{kw.get('duration', Scenario.duration):g} s), got {spec['at']!r}")
        faults[kind] = FaultSpec(
            float(spec.get("active", 1.0)),
            float(spec.get("rate", 1.0)),
            _pair(path, f"faults.{kind}.duration", spec["duration"]) if "duration" in spec else (30.0, 120.0),
            float(spec.get("factor", 20.0)),
            tuple(m for m in known if m in modes),  # in the kind's drawing order
            at,
        )
    kw["faults"] = faults
    not_adopted = data.get("not_adopted") or []
    if not (isinstance(not_adopted, list) and all(isinstance(i, int) and 0 <= i < kw["endpoints"]
                                                  for i in not_adopted)):
        raise InvalidConfig(path, 0, f"not_adopted: expected a list of endpoint indices, got {not_adopted!r}")
    kw["not_adopted"] = tuple(sorted(set(not_adopted)))
    atomic = data.get("atomic_replies", False)
    if not isinstance(atomic, bool):
        raise InvalidConfig(path, 0, f"atomic_replies: expected true or false, got {atomic!r}")
    kw["atomic_replies"] = atomic
    return Scenario(**kw)


def builtin_names() -> list[str]:
    folder = resources.files("dnsplane.sim") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load(name_or_path: str) -> Scenario:
    """A shipped scenario by name (``us-east-1``) or any YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        text, where = path.read_text(), str(path)
    else:
        res = resources.files("dnsplane.sim") / "scenarios" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise InvalidConfig(name_or_path, 0, f"no such scenario; shipped: {', '.join(builtin_names())}")
        text, where = res.read_text(), f"scenarios/{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InvalidConfig(where, (mark.line + 1) if mark else 0, str(err)) from err
    return parse(data, where)
