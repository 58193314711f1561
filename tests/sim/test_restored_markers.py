"""The ``restored-markers`` scenario (issue 13, fifth round): a person puts back an older marker dnsplane
wrote, byte for byte (``p=`` included: its seal holds), over the records of a newer plan.

Made to give the compare-and-swap's records half (``cas-records``) back a model to be killed by, since the
write token took over the delayed first write that owners 123 killed it with. It found a limit instead
(docs/design.md, "Known limits"): when the records at that moment are those the restored marker was
written with (A -> B -> A), the endpoint is exactly as a delayed writer once read it, and that write lands
(I2): 7 of the first 1,000 seeds (34, 173, 342, 559, 784, 814, 851). No compare-and-swap can tell an exact
old state from itself; the store's fence and the write token are carried only by writes into an endpoint
without a chained marker.
"""

from __future__ import annotations

import pytest

from dnsplane.sim.driver import run
from dnsplane.sim.scenario import load
from dnsplane.sim.vocabulary import FaultKind

RESTORED = load("restored-markers")


@pytest.mark.parametrize("seed", range(10))
def test_the_first_seeds_keep_every_invariant(seed: int) -> None:
    result = run(RESTORED, "safe", seed, trace=False)
    assert result.violations == [], result.violations[0]


def test_markers_are_restored_byte_for_byte() -> None:
    result = run(RESTORED, "safe", 0, trace=False)
    assert result.faults.get(FaultKind.MARKER_RESTORED, 0) > 0, result.faults


def test_known_limit_an_endpoint_restored_to_an_exact_older_state_takes_a_delayed_write() -> None:
    """Seed 34: enactor-3 (slow) read e0 at generation 1 and sent its write of plan 2; plans 2 and 3 were
    written; a person restored generation 1's marker over records that A -> B -> A made generation 1's
    again; the write found the endpoint exactly as read and landed: plan 2's content after plan 3's (I2).
    The day a fix closes it (the fence and the token on every write, docs/design.md), this test turns red."""
    violations = run(RESTORED, "safe", 34, trace=False).violations
    assert violations and violations[0].invariant.startswith("I2"), violations
    assert "generation 2 after 3" in violations[0].detail, violations[0]
