"""The verifier's repair budget (issue 12, part 3: ``up --repair-rate``): at most ``max_repairs`` repairs a
round; the rest wait for a later round, as found.

A budget may only delay repairs. On the protocol harness, three endpoints emptied by hand under a budget
of one are repaired one a round, with no last-known-good until the last; the ``repair-budget`` scenario
(one repair a round, four endpoints, hand edits, silent DNS, timeouts after apply, crashes) keeps I1-I8
over its seeds, with I4's bound grown by a verifier period per endpoint over the budget; a budget that is
never given back (counted over the verifier's life, not per round) leaves endpoints wrong, and I4 says so.
"""

from __future__ import annotations

import pytest

from dnsplane.model import EndpointKey
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier
from dnsplane.sim.driver import Simulation, run
from dnsplane.sim.scenario import InvalidConfig, load, parse
from tests.protocol.harness import ZONE, Harness, endpoint

BUDGET = load("repair-budget")
SEEDS = range(30)


def test_a_budget_of_one_repairs_one_endpoint_a_round_and_sets_no_last_known_good_until_all_are_right() -> None:
    h = Harness()
    planner = Planner("planner", ZONE, tuple(endpoint(n) for n in ("a", "b", "c")))
    h.run(planner)
    h.run(Enactor("enactor", ZONE))
    keys = [EndpointKey(f"{n}.{ZONE}", "A") for n in ("a", "b", "c")]
    good = h.provider.read(keys)
    h.checking = False  # emptied by hand on purpose
    for key in keys:
        h.provider.hand_edit(key, None, good[key].marker)
    verifier = Verifier("verifier", max_repairs=1)
    before = h.store.last_known_good()
    wrong, lkg = [], []
    for _ in range(3):
        h.run(verifier)
        seen = h.provider.read(keys)
        wrong.append(sum(seen[k].records is None for k in keys))
        lkg.append(h.store.last_known_good())
    assert wrong == [2, 1, 0]
    assert verifier.stats["repairs"] == 3 and verifier.stats["deferred"] == 2 + 1
    assert verifier.deferred_keys == set(), "the last round deferred nothing"
    # a last-known-good only once nothing was left over the budget
    assert lkg[:2] == [before, before] and lkg[2] == h.store.head() != before
    assert all(h.provider.read([k])[k].records == good[k].records for k in keys)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_repair_budget_scenario_keeps_every_invariant(seed: int) -> None:
    result = run(BUDGET, "safe", seed)
    assert result.violations == [], result.violations[0].detail


def test_the_scenario_defers_repairs_and_its_bound_grows_with_the_budget() -> None:
    assert BUDGET.max_repairs == 1
    unbounded = parse({"name": "x", "fleet": {"endpoints": 4}, "periods": {"verifier": 60}})
    assert BUDGET.convergence_bound - unbounded.convergence_bound >= 3 * 60  # four endpoints, one a round
    deferred = 0
    for seed in range(5):
        sim = Simulation(BUDGET, "safe", seed)
        sim.run()
        deferred += sim.actors["verifier"].stats["deferred"]  # type: ignore[union-attr]
    assert deferred > 0


def test_a_budget_never_given_back_leaves_endpoints_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: the count of repairs sent is kept across rounds (never reset when a round starts)
    original = Verifier.handle

    def never_reset(self: Verifier, event: object) -> object:
        sent = self.repairs_sent
        step = original(self, event)
        self.repairs_sent = max(self.repairs_sent, sent)
        return step

    monkeypatch.setattr(Verifier, "handle", never_reset)
    found = [v.short for seed in SEEDS for v in run(BUDGET, "safe", seed, stop_on="any").violations]
    assert "I4" in found


@pytest.mark.parametrize("value", [-1, 1.5, "two", True])
def test_a_bad_budget_in_a_scenario_file_is_refused(value: object) -> None:
    with pytest.raises(InvalidConfig, match="max_repairs"):
        parse({"name": "x", "max_repairs": value})
