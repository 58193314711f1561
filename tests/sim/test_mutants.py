"""The mutation campaign's fast part (issue 13): the models must still see a safety check taken out.

scripts/mutants.toml lists every safety check and the one-line edit that takes it out; scripts/mutants.py
runs the whole campaign (explorer configurations, seed sweeps, the test suite) and writes the table in
bench/RESULTS.md. Here, for CI:

- every mutant's original text still occurs exactly once in this tree: a refactor that moves or rewords a
  check fails here instead of silently orphaning its mutant (update the list with the code); a mutant
  marked ``gone`` (its check removed as redundant, with the argument) must not occur at all;
- every mutant marked ``ci = "g2" | "g3" | "g2f1"`` (one the campaign saw that fast explorer
  configuration kill) is applied to a copy of the package, and that configuration, run on the copy in a
  child process, must report a violation. A change that makes the explorer blind (an invariant no longer
  checked, a move no longer explored, a reduction that prunes too much) lets a mutant live and fails here;
- every mutant marked ``ci = "SCENARIO:SEED"`` (one a sweep killed first at that seed) likewise, with that
  one seed replayed by ``dnsplane simulate`` on the copy: a simulator that stops injecting a fault, or a
  monitor that stops checking an invariant, lets it live. A change of the simulator's draws (a new fault in
  a shipped scenario) moves the seeds: find the new ones with ``scripts/mutants.py --only ID --tools
  SCENARIO``;
- a mutant marked ``behind``: the check it stands behind, taken out alone, passes the same replay (the
  pair's kill is the second line's doing too);
- the unmutated copy passes ``--generations 2`` (and tests/sim/test_explore.py, the larger ones), and this
  tree every seed replayed: so "a violation found" is the mutant's doing.

Blindness: were ``Monitor.check`` (the explorer's invariant checks) neutered, or a move the kills need
pruned, these explorations would report no violation and every explorer kill test would fail; the
mutants span I1 to I8, G4, the store, the enactor's decision table and holds, the verifier, ownership
and the planner's guards.

The copies live in pytest's temporary directory; this tree is never edited.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dnsplane.sim.driver import run
from dnsplane.sim.scenario import load

ROOT = Path(__file__).resolve().parents[2]


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dnsplane_mutants", ROOT / "scripts" / "mutants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
MUTANTS = runner.load_mutants()
CI_MUTANTS = [m for m in MUTANTS if m.ci]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_each_mutants_original_text_occurs_exactly_once(mutant: Any) -> None:
    expected = 0 if mutant.gone else 1  # gone: the check was removed as redundant, and must stay out
    assert runner.occurrences(mutant, ROOT) == expected, (
        f"{mutant.id}: its original text does not occur {expected} time(s) in {mutant.file}; "
        "update scripts/mutants.toml with the code")


def test_the_list_covers_issue_13s_table_and_ci_names_fast_configurations() -> None:
    assert len([m for m in MUTANTS if m.issue13]) == 9
    assert all(m.ci in runner.EXPLORE_FAST or runner.one_seed(m.ci) is not None for m in CI_MUTANTS), [
        m.ci for m in CI_MUTANTS]
    assert len(CI_MUTANTS) >= 5


@pytest.fixture(scope="module")
def unmutated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("unmutated")
    runner.copy_tree(ROOT, dest)
    return dest


def test_the_unmutated_copy_passes(unmutated: Path) -> None:
    # g2 only: that g3 and the default configuration find nothing on the real code is test_explore.py's
    # (here it would cost a g3 exploration more, ~4 s before reply latency and ~30 s after)
    assert runner.imported_from(unmutated).startswith(str(unmutated))
    outcome = runner.run_tool("g2", unmutated, niceness=0, timeout=240)
    assert outcome.verdict == "passed", outcome


SEEDS = sorted({replay for m in CI_MUTANTS if (replay := runner.one_seed(m.ci)) is not None})


@pytest.mark.parametrize(("scenario", "seed"), SEEDS, ids=lambda v: str(v))
def test_every_seed_ci_replays_keeps_every_invariant_on_this_tree(scenario: str, seed: int) -> None:
    # so that "a violation found" in the seed's kill test below is the mutant's doing
    violations = run(load(scenario), "safe", seed, trace=False).violations
    assert violations == [], f"{scenario} seed {seed}: {violations[0]}"


@pytest.mark.parametrize("mutant", CI_MUTANTS, ids=lambda m: f"{m.id}-{m.ci}")
def test_the_fast_explorer_or_the_seed_kills_the_mutant(mutant: Any, tmp_path: Path) -> None:
    runner.copy_tree(ROOT, tmp_path)
    for edit in runner.edits(mutant, MUTANTS):  # with the mutant it stands ``behind``, if any
        runner.apply_mutant(edit, tmp_path)
    assert runner.imported_from(tmp_path).startswith(str(tmp_path))  # the children run the mutant
    outcome = runner.run_tool(mutant.ci, tmp_path, niceness=0, timeout=240)
    assert outcome.verdict == "killed", f"{mutant.id} survived {mutant.ci}: {outcome}"


BEHIND = [m for m in CI_MUTANTS if m.behind]


@pytest.mark.parametrize("mutant", BEHIND, ids=lambda m: f"{m.behind}-alone-{m.ci}")
def test_the_check_a_mutant_stands_behind_alone_passes_that_replay(mutant: Any, tmp_path: Path) -> None:
    # so that the pair's kill above is the second line's doing too: with only the front check taken out,
    # the same configuration or seed keeps every invariant (the second line does real work there)
    front = next(m for m in MUTANTS if m.id == mutant.behind)
    runner.copy_tree(ROOT, tmp_path)
    for edit in runner.edits(front, MUTANTS):
        runner.apply_mutant(edit, tmp_path)
    outcome = runner.run_tool(mutant.ci, tmp_path, niceness=0, timeout=240)
    assert outcome.verdict == "passed", f"{front.id} alone is killed by {mutant.ci}: {outcome}"
