"""The ``held-repairs`` scenario (issue 13): a slow verifier's repairs over endpoints the enactors hold.

Made so that a random sweep kills the rule that an enactor's hold is never raised while it lasts
(``Enactor._hold``; mutant ``enactor-hold-raised``), which no scenario with a quick verifier did: a repair
decided from one snapshot's head must find its content still stored when it lands minutes later, after
newer plans changed the held endpoint.
"""

from __future__ import annotations

import pytest

from dnsplane.model import EndpointKey, Generation
from dnsplane.protocol.enactor import Enactor
from dnsplane.sim.driver import run
from dnsplane.sim.invariants import I3
from dnsplane.sim.scenario import load

HELD_REPAIRS = load("held-repairs")


@pytest.mark.parametrize("seed", range(4))
def test_the_first_seeds_keep_every_invariant(seed: int) -> None:
    result = run(HELD_REPAIRS, "safe", seed, trace=False)
    assert result.violations == [], result.violations[0]


def test_a_hold_raised_while_it_lasts_loses_the_content_a_slow_repair_names(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def raised(self: Enactor, key: EndpointKey, generation: Generation | None) -> None:
        if generation is None:
            self.held.pop(key, None)
        else:
            self.held[key] = generation  # a later plan's hold replaces the first one, higher

    monkeypatch.setattr(Enactor, "_hold", raised)
    # seed 16: the first since issue 13's tenth round moved the runs (a corrupt marker now reaches the store's
    # confirmation); 24 from the eighth round (the verifier's last-known-good set every round), 1 before it
    # (18 while the simulator read the store's fence at the write's run instant, and before the fence 1 too)
    result = run(HELD_REPAIRS, "safe", 16, trace=False)
    assert [v.invariant for v in result.violations][:1] == [I3], result.violations
