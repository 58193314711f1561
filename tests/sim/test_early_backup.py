"""The ``early-backup`` scenario (issue 13, ninth round): the store put back to a backup taken in the first
minute after an install, before the verifier set any last-known-good.

Made so that a random sweep kills the store's rule that a ``Finish`` above its head counts for nothing
(``MemoryStore.finish``; mutant ``store-finish-above-head``), which 10,000 ``store-rollback`` seeds did not:
there every backup but a rare one holds a last-known-good, a term of the low watermark at most the head.
"""

from __future__ import annotations

import random

import pytest

from dnsplane.errors import InvalidConfig
from dnsplane.model import Generation
from dnsplane.sim.driver import run
from dnsplane.sim.faults import make_schedule
from dnsplane.sim.invariants import I3
from dnsplane.sim.scenario import load, parse
from dnsplane.sim.vocabulary import FaultKind
from dnsplane.store.memory import MemoryStore

EARLY_BACKUP = load("early-backup")
ENACTORS = ["enactor-1", "enactor-2", "enactor-3"]


def test_backups_are_taken_only_in_the_first_minute() -> None:
    taken = [f.at for seed in range(50)
             for f in make_schedule(EARLY_BACKUP, random.Random(seed), ENACTORS, ["t0", "t1"])
             if f.kind == FaultKind.STORE_ROLLBACK]
    assert len(taken) > 100  # 4 a minute
    assert all(0 <= at <= 60 for at in taken), max(taken)


def test_a_window_past_the_run_is_refused() -> None:
    with pytest.raises(InvalidConfig, match=r"faults\.store_rollback\.at"):
        parse({"name": "x", "duration": 600, "faults": {"store_rollback": {"at": [0, 900]}}})


@pytest.mark.parametrize("seed", [0, 1, 38])
def test_the_seeds_keep_every_invariant(seed: int) -> None:
    result = run(EARLY_BACKUP, "safe", seed, trace=False)
    assert result.violations == [], result.violations[0]


def test_a_finish_above_the_head_counted_lifts_the_watermark_past_content_a_marker_names(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def counted(self: MemoryStore, actor: str, generation: Generation, now: float) -> None:
        with self._lock:
            self._inflight.pop(actor, None)
            self._applied[actor] = max(self._applied.get(actor, 0), int(generation))  # above the head too

    monkeypatch.setattr(MemoryStore, "finish", counted)
    # seed 38: a backup taken at 22 s (the verifier's first round saw no plan) put back at 122 s; the slow
    # enactor finishes lost plan 4 over head 1, and the collector deletes the content e1's marker names
    result = run(EARLY_BACKUP, "safe", 38, trace=False)
    assert [v.invariant for v in result.violations][:1] == [I3], result.violations
