"""The ``deletions`` scenario (issue 13): endpoints deleted whole by hand, records and marker.

Made so that a random sweep kills the rule that an enactor finding an endpoint empty, where the store says
a newer plan changed it, writes that plan's content (``Enactor._on_markers``; mutant
``enactor-newer-content``), which no scenario reached: ``corrupt`` only emptied records (marker kept) or
deleted a marker (records kept). Without the rule the enactor's own older write is refused by the store's
fence for good and sent again and again until another writer changes the endpoint (I8, ``fence_refused``).
"""

from __future__ import annotations

import pytest

from dnsplane.model import Desired, EndpointKey, Generation, Observed
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Step
from dnsplane.sim.driver import run
from dnsplane.sim.invariants import I8, Monitor
from dnsplane.sim.scenario import load
from dnsplane.sim.world import ZONE

DELETIONS = load("deletions")
KEY = EndpointKey("e0.sim.test.", "A")


@pytest.mark.parametrize("seed", [0, 1, 20, 54])
def test_the_seeds_keep_every_invariant(seed: int) -> None:
    result = run(DELETIONS, "safe", seed, trace=False)
    assert result.faults.get("corrupt", 0) > 0
    assert result.violations == [], result.violations[0]


def test_an_older_write_into_an_endpoint_deleted_whole_spins_on_the_fence(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Enactor._on_markers

    def own_content(self: Enactor, observed: dict[EndpointKey, Observed], newer: dict[EndpointKey, Desired]) -> Step:
        return original(self, observed, {})  # as if the store named no newer plan: its own content is written

    monkeypatch.setattr(Enactor, "_on_markers", own_content)
    # seed 20: enactor-3, on plan 8, finds e0 deleted whole after plan 9 changed it, writes plan 8's content,
    # is refused by the fence (plan 9), reads it again, still empty, and sends the same write again
    result = run(DELETIONS, "safe", 20, trace=False)
    assert [v.invariant for v in result.violations][:1] == [I8], result.violations
    assert "refused" in result.violations[0].detail


def test_a_refusal_is_forgotten_when_the_store_is_put_back() -> None:
    monitor = Monitor(ZONE, collect=True)
    monitor.fence_refused("enactor-1", 8, KEY, "nothing", 8, "d8", 9)
    monitor.fence_refused("enactor-1", 8, KEY, "nothing", 9, "d9", 10)  # the newer content: progress
    monitor.fence_refused("enactor-1", 8, KEY, "marker 7", 9, "d9", 10)  # over another state: another decision
    monitor.fence_refused("enactor-2", 8, KEY, "nothing", 8, "d8", 9)  # another writer's first
    assert monitor.violations == []
    monitor.store_rolled_back(Generation(7), {})
    monitor.fence_refused("enactor-1", 8, KEY, "nothing", 8, "d8", 9)  # plan 9 may be lost: may land now
    assert monitor.violations == []
    monitor.fence_refused("enactor-1", 8, KEY, "nothing", 8, "d8", 9)
    assert [v.invariant for v in monitor.violations] == [I8]
