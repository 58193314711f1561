"""I7, one takeover: a second installation adopts an endpoint too and keeps taking it back (``rival_owner``,
the ``rivals`` scenario). The verifier takes an endpoint over once per life, then leaves it CONTESTED; the
enactors never write another owner's marker, though the rival's names here exactly the content beside it;
the monitor counts takeovers (a write by dnsplane over another owner's marker) and reports a second one
while the verifier lives."""

from __future__ import annotations

from typing import Any

import pytest

from dnsplane.model import EndpointKey, Generation, Marker, Member, Observed, RecordSet
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.ownership import Ownership
from dnsplane.protocol.verifier import Verifier
from dnsplane.sim.driver import ZONE, Simulation, run
from dnsplane.sim.invariants import Monitor
from dnsplane.sim.scenario import load

RIVALS = load("rivals")


@pytest.mark.parametrize("seed", range(0, 40, 4))
def test_a_rival_is_taken_over_once_then_left_contested(seed: int) -> None:
    result = run(RIVALS, "safe", seed, trace=False)
    assert result.faults.get("rival_owner", 0) > 0  # taken: it writes only when its marker is not there
    assert not result.violations, [v.to_json(seed) for v in result.violations]


def test_a_rival_contests_an_endpoint() -> None:
    """The rival's takes reach the verifier's contest rule: some endpoint ends the run contested."""
    contested = 0
    for seed in range(4):
        sim = Simulation(RIVALS, "safe", seed, trace=False)
        sim.run()
        contested += len(sim.monitor.contested)
    assert contested > 0


def test_a_takeover_whose_reply_is_lost_counts() -> None:
    """Seed 22: the verifier's takeover was applied but its caller timed out (``Failed``); not counted as
    taken over, the rival's next take was taken over again, in the same verifier life (I7). The verifier
    now counts a takeover of a failed batch as done: the next take is a contest."""
    result = run(RIVALS, "safe", 22, trace=False)
    assert not result.violations, [v.to_json(22) for v in result.violations]


def test_the_monitor_sees_a_verifier_that_takes_back_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verifier's contest rule earns its place: a verifier that forgets which endpoints it had (so it
    never finds one contested) takes the rival's endpoint back every round, and the monitor says I7."""
    resolved = Verifier._on_resolved

    def forgetful(self: Verifier, results: Any) -> Any:
        self.mine, self.contested = set(), {}
        return resolved(self, results)

    monkeypatch.setattr(Verifier, "_on_resolved", forgetful)
    result = run(RIVALS, "safe", 0, trace=False)
    assert "I7" in {v.short for v in result.violations}


class _BlindToOwners(Ownership):
    """The enactors' ownership without the other-owner test: an adopted endpoint's marker of another owner
    is decided as if it were this installation's (``Enactor._on_markers`` writes it when it is behind)."""

    def other_owner(self, observed: Observed) -> str | None:
        return None


def test_the_monitor_sees_an_enactor_that_writes_over_a_rival(monkeypatch: pytest.MonkeyPatch) -> None:
    """The enactor's rule earns its place: the rival's marker names a generation whose content in this store
    is the records beside it, so the digest confirmation passes; only the owner id keeps an enactor from
    writing it, at every plan, past the verifier's contest (I7)."""
    def blind(self: Simulation, name: str) -> Enactor:
        return Enactor(name, ZONE, ownership=_BlindToOwners())

    monkeypatch.setattr(Simulation, "_new_enactor", blind)
    found = set()
    for seed in range(3):
        found |= {v.short for v in run(RIVALS, "safe", seed, trace=False).violations}
    assert "I7" in found


def test_one_takeover_per_verifier_life() -> None:
    key = EndpointKey("e0.sim.test.", "A")
    records = RecordSet.of(60, [Member("lb-1", ("192.0.2.1",), 1000)])
    theirs = Observed(records, Marker.after(None, Generation(3), records.digest, "rival"))
    monitor = Monitor(ZONE, collect=True)
    for _ in range(2):  # two takeovers in two verifier lives: allowed
        monitor.edited_by_hand(key, theirs)
        monitor.written([key])
        monitor.verifier_started()
    assert not monitor.violations
    monitor.edited_by_hand(key, theirs)
    monitor.written([key])
    monitor.written([key])  # a write over dnsplane's own marker is no takeover
    assert not monitor.violations
    monitor.edited_by_hand(key, theirs)
    monitor.written([key])  # the second in this life
    assert [v.short for v in monitor.violations] == ["I7"]
