"""hypothesis stateful test: each actor step is a rule; I1, I2, I3, I5 are invariants after every rule.

The state is the explorer's ``World`` (production actors, memory store and provider); hypothesis
chooses which actor ticks, which pending completion is delivered, when health changes and when
an actor crashes, and shrinks any failing sequence to a minimal one.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dnsplane.sim.explore import Config, World
from dnsplane.sim.statespace import Crash, Deliver, HealthChange, Move, Tick

ACTORS = ["planner", "enactor-1", "enactor-2", "collector", "verifier"]


class SafeProtocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World(Config(protocol="safe", generations=6, faults=3))

    def _can(self, move: Move) -> bool:
        return any(m == move for m in self.world.moves())

    @rule(actor=st.sampled_from(ACTORS))
    def tick(self, actor: str) -> None:
        if self._can(Tick(actor)):
            self.world.apply(Tick(actor))

    @rule(actor=st.sampled_from(ACTORS))
    def deliver(self, actor: str) -> None:
        if self._can(Deliver(actor)):
            self.world.apply(Deliver(actor))

    @precondition(lambda self: self.world.env < len(self.world.script))
    @rule()
    def health_changes(self) -> None:
        self.world.apply(HealthChange())

    @rule(actor=st.sampled_from(ACTORS[1:]), after=st.booleans())
    def crash(self, actor: str, after: bool) -> None:
        if self._can(Crash(actor, after)):
            self.world.apply(Crash(actor, after))

    @invariant()
    def invariants_hold(self) -> None:
        assert self.world.monitor.violations == [], self.world.monitor.violations[0]


SafeProtocol.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_safe_protocol_stateful = SafeProtocol.TestCase
