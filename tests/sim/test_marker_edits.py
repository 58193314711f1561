"""The ``marker-edits`` scenario, its faults ``marker_in_range`` and ``relabel_owner``, and I4's sealed marker
(issue 13).

Markers a person edits IN range, which the older faults never wrote: ``g=`` set to the head or to a
kept plan's generation with the rest of the text kept (the seal breaks), a marker written from
scratch with such a ``g=`` and no ``p=`` (no seal to break: only its digest, against the content of
the plan it names, gives it away), and another installation's marker relabelled as this one's
(``o=`` edited, ``p=`` kept: the seal covers the owner id). I4 at quiet now also asks that the
marker over the right content be sealed: a marker edited by hand that is never rewritten is not
converged (the enactors leave it alone, the verifier reports it every round and sets no
last-known-good). scripts/mutants.toml's ``ci`` lines replay the seeds that kill the checks these
states need, on mutated copies.
"""

from __future__ import annotations

import dataclasses

import pytest

from dnsplane import model
from dnsplane.model import EndpointKey, Generation, Marker, Member, Observed, RecordSet
from dnsplane.sim.driver import Simulation, run
from dnsplane.sim.faults import Fault
from dnsplane.sim.injector import FaultInjector
from dnsplane.sim.invariants import I4, Monitor
from dnsplane.sim.scenario import load
from dnsplane.sim.vocabulary import FaultKind, InRange
from dnsplane.sim.world import ZONE

MARKER_EDITS = load("marker-edits")
_seal = model._seal


@pytest.mark.parametrize("seed", range(6))
def test_the_first_seeds_keep_every_invariant(seed: int) -> None:
    result = run(MARKER_EDITS, "safe", seed, trace=False)
    assert result.violations == [], result.violations[0]


def test_a_broken_seal_over_the_right_content_is_not_converged() -> None:
    key = EndpointKey(f"e0.{ZONE}", "A")
    rs = RecordSet.of(60, [Member("t0", ("192.0.2.1",), 100)])
    monitor = Monitor(ZONE, collect=True)
    monitor.on_publish(Generation(1), [(key, rs)])
    sealed = Marker.after(None, Generation(1), rs.digest)
    monitor.check_converged({key: Observed(rs, sealed)}, 2, 60.0)
    assert monitor.violations == []
    raised = dataclasses.replace(sealed, generation=Generation(2))  # g= raised by hand, p= kept
    assert not raised.sealed()
    monitor.check_converged({key: Observed(rs, raised)}, 2, 60.0)
    assert [v.invariant for v in monitor.violations] == [I4]


def _settled() -> Simulation:
    sim = Simulation(MARKER_EDITS.without_faults(), "safe", 0, trace=False)
    sim.run()
    return sim


@pytest.mark.parametrize("mode", list(InRange))
def test_marker_in_range_writes_a_kept_generation(mode: InRange) -> None:
    sim = _settled()
    key = sim.by_endpoint["0"].key
    before = sim.provider.read([key])[key]
    assert before.records is not None and before.marker is not None and before.marker.prev
    kept = sorted(int(p.generation) for p in sim.store.plans())
    FaultInjector(sim, []).fire(Fault(sim.now, FaultKind.MARKER_IN_RANGE, "0", mode=mode, value=0.0))
    seen = sim.provider.read([key])[key]
    assert seen.records == before.records and seen.marker is not None
    want = int(sim.store.head()) if mode == InRange.HEAD else kept[0]
    assert seen.marker.generation == want and want in kept
    if mode == InRange.SCRATCH:  # from scratch: no p=, so nothing to break, and d= the records'
        assert seen.marker.prev == "" and seen.marker.sealed() and seen.marker.digest == before.records.digest
    else:  # the rest kept: the seal breaks if g= changed
        assert seen.marker.prev == before.marker.prev
        assert seen.marker.sealed() == (want == before.marker.generation)


def test_relabel_owner_makes_another_installations_marker_ours_with_a_broken_seal() -> None:
    sim = _settled()
    key = sim.by_endpoint["0"].key
    injector = FaultInjector(sim, [])
    injector.fire(Fault(sim.now, FaultKind.RELABEL_OWNER, "0"))
    assert injector.fired_counts == {}  # our own marker: nothing to relabel
    injector.fire(Fault(sim.now, FaultKind.SECOND_OWNER, "0", value=1000.0))
    theirs = sim.provider.read([key])[key].marker
    assert theirs is not None and theirs.owner and theirs.sealed()
    injector.fire(Fault(sim.now, FaultKind.RELABEL_OWNER, "0"))
    seen = sim.provider.read([key])[key].marker
    assert seen == dataclasses.replace(theirs, owner=sim.ownership.owner)
    assert not seen.sealed()  # the seal covers o=


def test_a_seal_blind_to_the_owner_makes_another_stores_generation_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 4: another installation's marker (g=1000 in its own numbering) relabelled as ours; with the
    seal not covering ``o=`` it reads as a sealed marker of ours ahead of the head, and the verifier
    moves the store's head to 1000 (I4, the head bound)."""
    assert run(MARKER_EDITS, "safe", 4, trace=False).violations == []
    monkeypatch.setattr(model, "_seal", lambda g, d, chain, owner="", released=False: _seal(g, d, chain, "", released))
    violations = run(MARKER_EDITS, "safe", 4, trace=False).violations
    assert violations and violations[0].invariant == I4 and violations[0].endpoint == "the store's head", violations


def _blind_to_seals(self: Marker, other: Marker | None) -> bool:
    """``Marker.same_content`` without its seal term: a broken seal and a sealed marker are the same."""
    return (other is not None and self.generation == other.generation and self.digest == other.digest
            and self.owner == other.owner and self.released == other.released)


def test_a_repair_taken_as_already_applied_leaves_the_marker_unsealed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 0: ``g=`` raised by hand to the head over content that is already the head's. The verifier's
    repair writes the same generation, digest and owner, sealed; a provider blind to the seal takes
    it as already applied (I6), so nothing is written, the marker stays unsealed to the end (I4)."""
    assert run(MARKER_EDITS, "safe", 0, trace=False).violations == []
    monkeypatch.setattr(Marker, "same_content", _blind_to_seals)
    violations = run(MARKER_EDITS, "safe", 0, trace=False).violations
    assert violations and violations[0].invariant == I4 and "seal" in violations[0].detail, violations
