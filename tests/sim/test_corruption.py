"""The ``corruption`` scenario and the ``hand_marker`` fault (issue 13).

``corruption`` piles up the hand-made and corrupt states the enactor must not write over (records
emptied, markers deleted, set back, written out of range, or from scratch with no ``p=``), rogue
(malformed) plans, and writes the provider rejects or applies in part, under A -> B -> A with one
slow enactor, so that a random sweep kills the enactor's checks on them in its first seeds.
``hand_marker``: a person writes a marker from scratch on a provider that keeps markers as columns,
``g=`` out of range and no ``p=``: no seal to break. Until issue 13's eighth round only the enactor's
range check told it from one dnsplane wrote; now every provider reads it as a corrupt marker
(``model.corrupt_marker``, as the text providers always read a ``g=`` out of range), whose digest is
never the records', and ``decide`` has no range row.
"""

from __future__ import annotations

import pytest

from dnsplane.model import CORRUPT_GENERATION, Desired
from dnsplane.protocol import enactor
from dnsplane.sim.driver import Simulation, run
from dnsplane.sim.faults import Fault
from dnsplane.sim.injector import FaultInjector
from dnsplane.sim.scenario import load
from dnsplane.sim.vocabulary import FaultKind

from .test_slow_reads import take_the_fence_out

CORRUPTION = load("corruption")


@pytest.mark.parametrize("seed", range(10))
def test_the_first_seeds_keep_every_invariant(seed: int) -> None:
    result = run(CORRUPTION, "safe", seed, trace=False)
    assert result.violations == [], result.violations[0]


def test_a_hand_written_marker_out_of_range_reads_as_a_corrupt_marker() -> None:
    sim = Simulation(CORRUPTION.without_faults(), "safe", 0, trace=False)
    sim.run()
    key = sim.by_endpoint["0"].key
    before = sim.provider.read([key])[key]
    assert before.records is not None and before.marker is not None and before.marker.prev
    FaultInjector(sim, []).fire(Fault(sim.now, FaultKind.HAND_MARKER, "0", mode="g=99999999999999999999"))
    seen = sim.provider.read([key])[key]
    assert seen.records == before.records and seen.marker is not None
    assert seen.marker.generation == CORRUPT_GENERATION and seen.marker.prev == ""
    assert seen.marker.digest != before.records.digest  # a hash of what was read, never the records'
    desired = Desired(before.marker.generation, before.records)
    # behind every plan; the store confirms no content at CORRUPT_GENERATION, so the enactor leaves it to the
    # verifier (tests/protocol/test_verifier_liveness.py)
    assert enactor.decide(desired, seen) is enactor.Verdict.WRITE


def test_a_marker_written_by_hand_out_of_range_is_left_to_the_verifier_without_the_fence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 2525 (the first of 6,000 on the tree of 0145070), replayed at 271 since issue 13's eighth round
    moved the runs: a marker written by hand out of range with no ``p=`` (``hand_marker``), held by the
    provider as a number, was taken for a newer writer's (skip-newer) by an enactor without its range check,
    so the endpoint was left unheld, and without the store's fence the collector deleted content a marker
    still named (I3). Since the eighth round the providers read such a marker as a corrupt one (as the text
    providers always did), so the enactor leaves it and holds it whatever its rows: ``decide``'s range row is
    gone, and this run keeps every invariant without the fence too."""
    assert run(CORRUPTION, "safe", 271, trace=False).violations == []
    take_the_fence_out(monkeypatch)
    assert run(CORRUPTION, "safe", 271, trace=False).violations == []


def test_an_enactor_that_holds_nothing_for_skipped_endpoints_loses_content(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 35: an endpoint left to the verifier (skip-corrupt) holds nothing; the collector deletes the
    content its marker names (I3)."""
    assert run(CORRUPTION, "safe", 35, trace=False).violations == []
    monkeypatch.setattr(enactor, "_held_at", lambda *args: None)
    violations = run(CORRUPTION, "safe", 35, trace=False).violations
    assert violations and violations[0].invariant.startswith("I3"), violations
