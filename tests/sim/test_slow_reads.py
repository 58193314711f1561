"""The ``slow-reads`` scenario (issue 13): hand edits while latency spikes leave the verifier's snapshot
behind the records its ``Resolve`` reads.

Made so that a random sweep kills the verifier's wait on a hand-made problem (``_on_resolved``: a marker
edited, deleted or another owner's is repaired only the round after it was seen, from a snapshot loaded
after that), which chaos and hand-edits did not kill in 1,000 seeds each.
"""

from __future__ import annotations

import dataclasses

import pytest

from dnsplane import execute
from dnsplane.protocol import verifier
from dnsplane.sim.driver import run
from dnsplane.sim.explore import Config, explore
from dnsplane.sim.scenario import FaultSpec, load

from .test_restored_markers import fence_only_unchained_writes

SLOW_READS = load("slow-reads")
# the fence's window (tests/sim/test_explore.py): one enactor and the verifier write one endpoint
WINDOW = Config(protocol="safe", generations=2, endpoints=1, enactors=1, faults=1, fence_window=True)
# the scenario's first draft: markers deleted and set back, and records emptied, by ``corrupt``
WITH_CORRUPT = dataclasses.replace(SLOW_READS, faults={
    "corrupt": FaultSpec(1.0, 60.0), "aba": FaultSpec(1.0, 20.0),
    "latency_spike": FaultSpec(1.0, 10.0, (120.0, 600.0), 40.0)})


@pytest.mark.parametrize("seed", range(8))
def test_the_first_seeds_keep_every_invariant(seed: int) -> None:
    result = run(SLOW_READS, "safe", seed, trace=False)
    assert result.violations == [], result.violations[0]


def test_a_verifier_that_repairs_a_hand_made_problem_at_once_serves_older_content(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The verifier loaded its snapshot, an enactor wrote a newer plan, a person edited its marker by
    hand, and the verifier's slow Resolve read that; repaired at once (no hand-made problem waits a
    round), the snapshot's older content goes over the newer (I2). Seed 4 showed it until the store's
    fence (``WriteBatch.fence``) also stopped that run's repair (its marker was deleted: a write without
    a marker to fence); seed 332 was the first that still did (275 while the simulator read the fence at
    the write's run instant, 288 while it read a hand-garbled marker text as no marker). Since the fence
    went on every write (issue 13, sixth round) it refuses those repairs too (a newer plan changed the
    endpoint after the snapshot), and the rule is seen alone with the fence as it was before: 340, then
    429 once the verifier's last-known-good was set every round. Since the providers read a marker column
    out of range as a corrupt marker (issue 13's eighth round) no seed of the first 3,000 shows it: the
    explorer does, in the fence's window (w1, as CI's mutant ``verifier-hand-made-wait`` does)."""
    monkeypatch.setattr(verifier, "_HAND_MADE", frozenset())  # unmutated: test_explore.py's
    report = explore(WINDOW, look_for="any")
    assert report.violation is None, report.violation
    fence_only_unchained_writes(monkeypatch)
    report = explore(WINDOW, look_for="any")
    assert report.violation is not None and report.violation.short == "I2", report.violation


def test_a_state_edited_again_after_the_round_that_saw_an_edit_waits_a_round_too() -> None:
    """Seed 277: the verifier saw e0's marker deleted and waited; its next snapshot was loaded (head 64),
    an enactor wrote 65 over e0, a person set that marker back, and the slow Resolve read it. Taken for
    the edit seen the round before, it was repaired at once with 64's content (62's, for e0) after 65
    (I2). The wait holds for the state seen, not the endpoint: this one waits a round like any edit."""
    assert run(WITH_CORRUPT, "safe", 277, trace=False).violations == []


# Found while drafting slow-reads (issue 13): with ``corrupt`` under latency spikes of 40 times, these seeds broke
# I3 and I2 (protocol races, not checker errors). In each, a write decided from an old reply passed its
# compare-and-swap because the endpoint was the same BY VALUE after a newer write and a second hand deletion (ABA):
# - 67 (I3, enactor): enactor-2's ReadMarkers (plan 96) ran at 3261 s and found e0 deleted whole, no newer plan
#   (``MarkersRead.newer`` empty); plan 98 was written to e0 at 3312, a person deleted e0 whole again (3377, 3389);
#   the WriteBatch ran at 3395, "nothing there -> write" (``decide``) passed, marker g=92; after Finish(96) nothing
#   held 92 and Collect(98) at 3424 dropped the row e0's marker names.
# - 565 (I2, verifier): LoadDesired at 782 s (head 26); enactor-1 wrote 27 to e0 at 807; a person deleted e0 whole
#   (810, 824); the Resolve ran at 834: empty is not in verifier ``_HAND_MADE``, so it was repaired at once from
#   the head-26 snapshot (the CAS on "nothing" passed): 23's content after 27's.
# - 759 (I2, verifier): e1's marker deleted (978 s), seen twice (1031, 1120: repair now, snapshot head 38); a person
#   emptied e1, enactor-1 wrote 40 (content equal to 32's, the records seen), a person set g= back and deleted the
#   marker (1160, 1172); the repair's ``expect_records`` matched by value at 1175: 38's content after 40's.
# Fixed by the store's fence on writes into an endpoint without a marker (``WriteBatch.fence``): the newer plan was
# published before its write, so the store, asked in the write's own step, names it, and the old write is not sent.
# Since the verifier names a broken seal before "empty" (dns-silent 2868), 67's and 565's runs no longer reach the race
# with the fence taken out; the first three of 3,000 seeds that did, and kept every invariant with it, were 498,
# 717 and 759. Since issue 13's eighth round moved the runs (the verifier's last-known-good now set every round),
# the first three that do (each keeps every invariant with the write token alone taken out: the fence stops it):
FENCED_WITH_CORRUPT = [(386, "I2"), (461, "I2"), (1025, "I2")]


def take_the_fence_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """``WriteBatch`` as it was before the store's fence: no write is checked against the store, nor
    carries the write token, wherever the writer's half is read (the runtime's handler, the simulator's
    send, the explorer's ``SentBatch``)."""
    from dnsplane.sim import driver, statespace

    def unfenced(store: object, provider: object, cmd: object) -> execute.Fenced:
        return execute.NOT_FENCED

    for module in (execute, driver, statespace):
        monkeypatch.setattr(module, "fence_read", unfenced)


@pytest.mark.parametrize(("seed", "found"), FENCED_WITH_CORRUPT)
def test_a_write_into_an_endpoint_deleted_again_after_a_newer_write_is_fenced_by_the_store(
        seed: int, found: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(WITH_CORRUPT, "safe", seed, trace=False)
    assert result.violations == [], f"slow-reads with corrupt, seed {seed}: {result.violations[0]}"
    take_the_fence_out(monkeypatch)
    violations = run(WITH_CORRUPT, "safe", seed, trace=False).violations
    assert violations and violations[0].invariant.startswith(found), violations
