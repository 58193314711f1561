"""The fault kinds issue 8 added to the simulator and the explorer, each shown to be really injected.

For each kind: with the protection in place a run passes; with the protection taken out (the code
as it was before issue 8, put back by monkeypatching) the simulator or the explorer reports the
violation, with the seed or the path that leads to it.
"""

from __future__ import annotations

from typing import Any

import pytest

from dnsplane.errors import DnsplaneError
from dnsplane.execute import Interpreter, failed
from dnsplane.model import CORRUPT_GENERATION, EndpointKey, Marker, RecordSet
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.messages import NOTHING, Event, Failed, Step
from dnsplane.sim import cli as sim_cli
from dnsplane.sim.driver import run
from dnsplane.sim.explore import Config, explore
from dnsplane.sim.faults import Fault
from dnsplane.sim.scenario import load
from dnsplane.sim.world import SimProvider

CHAOS = load("chaos")


def _run_before_issue_8(self: Interpreter, actor_name: str, step: Step, now: float) -> Event | None:
    """``Interpreter.run`` as it was before issue 8: only a ``DnsplaneError`` became ``Failed``."""
    reply: Event | None = None
    try:
        for cmd in step.commands():
            reply = self.one(actor_name, cmd, now)
    except DnsplaneError as err:
        return failed(err, now)
    return reply


def _collector_ignoring_failed(self: Collector, event: Event) -> Step:
    """A collector that logs a ``Failed`` and forgets to clear ``busy`` (what I8 exists to catch)."""
    if isinstance(event, Failed):
        return NOTHING
    return _COLLECTOR_HANDLE(self, event)


_COLLECTOR_HANDLE = Collector.handle

# one exception of each kind at the collector's next call, early in the run (before and after it ran)
EXCEPTION_AT_THE_COLLECTOR = [Fault(100.0 + 50 * i, "request_exception", "collector", mode=mode, value=i)
                              for i, mode in enumerate(("before", "after", "before", "after", "before"))]


# -- request_exception and I8 ------------------------------------------------------------------------


def test_an_exception_at_a_request_is_a_failed_reply_and_every_actor_runs_again() -> None:
    result = run(CHAOS.only("request_exception"), "safe", 1, EXCEPTION_AT_THE_COLLECTOR)
    assert result.faults.get("request_exception") == 5
    assert "escaped" not in result.faults
    assert result.violations == []
    assert result.writes > 0 and result.generations > 0


def test_without_the_executors_catch_all_the_simulator_reports_the_wedged_actor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Interpreter, "run", _run_before_issue_8)
    result = run(CHAOS.only("request_exception"), "safe", 1, EXCEPTION_AT_THE_COLLECTOR)
    assert result.faults.get("escaped", 0) >= 1
    i8 = [v for v in result.violations if v.short == "I8"]
    assert [v.endpoint for v in i8] == ["collector"]
    assert "RuntimeError escaped the executor" in i8[0].detail  # the first fault: raised at its next call
    assert any("VIOLATION I8" in line for line in i8[0].context)  # the timeline up to it
    assert any("escaped the executor" in e.detail for e in result.trace if e.actor == "collector")


def test_an_actor_that_ignores_failed_is_reported_by_i8(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Collector, "handle", _collector_ignoring_failed)
    result = run(CHAOS.only("request_exception"), "safe", 1, EXCEPTION_AT_THE_COLLECTOR)
    i8 = [v for v in result.violations if v.short == "I8"]
    assert [v.endpoint for v in i8] == ["collector"]
    assert "ignored a reply" in i8[0].detail


def test_simulate_prints_the_i8_seed_and_timeline(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The chaos scenario's own request_exception faults, with the protection taken out: the CLI
    names the invariant, the seed to replay and the timeline (what an operator would see)."""
    monkeypatch.setattr(Interpreter, "run", _run_before_issue_8)
    parser = _parser()
    args = parser.parse_args(["simulate", "--scenario", "chaos", "--seeds", "40", "--invariant", "I8",
                              "--no-shrink"])
    assert sim_cli.cmd_simulate(args) == 1
    out = capsys.readouterr().out
    assert "invariant  I8 liveness of the safety net" in out
    assert "replay: dnsplane simulate --protocol safe --scenario chaos --seed " in out
    assert "timeline" in out and "escaped the executor" in out


def _parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    sim_cli.add_commands(parser.add_subparsers())
    return parser


# -- the explorer's "raise" move -------------------------------------------------------------------


SMALL = Config(protocol="safe", generations=1, faults=1)


def test_the_explorer_raises_at_any_request_and_finds_nothing_wrong() -> None:
    report = explore(SMALL, look_for="any")
    assert report.complete and report.violation is None
    without = explore(Config(protocol="safe", generations=1), look_for="any")
    assert report.states > without.states


def test_without_the_executors_catch_all_the_explorer_finds_the_wedge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Interpreter, "run", _run_before_issue_8)
    report = explore(SMALL, look_for="I8")
    assert report.violation is not None and report.violation.short == "I8"
    assert any("raises RuntimeError" in step for step in report.path), report.path


def test_an_actor_that_ignores_failed_is_found_by_the_explorer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Collector, "handle", _collector_ignoring_failed)
    report = explore(SMALL, look_for="I8")
    assert report.violation is not None and report.violation.endpoint == "collector"
    assert "collector's ReadWatermark raises RuntimeError" in report.path[-1] or any(
        "collector's" in step and "raises" in step for step in report.path), report.path


# -- marker_out_of_range --------------------------------------------------------------------------

# every value a person may write, as TXT text and (the numbers) as a column, at endpoint 0 then 1
OUT_OF_RANGE = [Fault(200.0 + 40 * i, "marker_out_of_range", str(i % 2), mode=mode) for i, mode in enumerate((
    "g=-1", "g=-1/column", "g=9223372036854775807", "g=9223372036854775807/column", "g=99999999999999999999",
    "g=99999999999999999999/column", "g=9007199254740993", "g=9007199254740993/column", "g=12abc", "g="))]


def test_a_marker_out_of_range_is_repaired_and_never_a_head() -> None:
    result = run(CHAOS.only("marker_out_of_range"), "safe", 3, OUT_OF_RANGE)
    assert result.faults.get("marker_out_of_range") == len(OUT_OF_RANGE)
    assert result.violations == []  # I1-I4 hold, the head stays at the plans' (checked after AdvanceHead)
    assert result.repairs > 0


def test_a_garbled_marker_text_reaches_dnsplane_as_the_text_providers_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 2136 and Route 53 read a marker TXT whose ``g=`` is garbage with ``read_marker``: a corrupt marker,
    no ``p=``, ``o=`` kept. The simulator's hand edit reaches dnsplane the same way (it read the text with
    ``Marker.from_text`` before, as no marker at all: the gap that hid an I7 hole)."""
    written: list[Marker | None] = []
    hand_edit_text = SimProvider.hand_edit_text

    def recorded(self: SimProvider, key: EndpointKey, records: RecordSet | None, text: str) -> None:
        hand_edit_text(self, key, records, text)
        written.append(self.read([key])[key].marker)  # as the provider holds it: as it reads the text

    monkeypatch.setattr(SimProvider, "hand_edit_text", recorded)
    garble = Fault(200.0, "marker_out_of_range", "0", mode="g=12abc")
    result = run(CHAOS.only("marker_out_of_range"), "safe", 3, [garble])
    assert result.faults.get("marker_out_of_range") == 1
    assert written and written[0] is not None, written
    assert written[0].generation == CORRUPT_GENERATION and not written[0].prev, written[0]


def _accept_any_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model and the store as before issue 8: any integer is a generation, a head may follow it;
    and every marker passes for sealed (the hand-written ``g=`` breaks the seal, and the verifier
    never takes an unsealed marker for a head either: two checks stand in the way, both removed)."""
    import re

    from dnsplane import model
    from dnsplane.store import memory

    monkeypatch.setattr(model, "_GENERATION_TEXT", re.compile(r"-?[0-9]+"))
    monkeypatch.setattr(model, "MAX_GENERATION", 10**30)
    monkeypatch.setattr(memory, "MAX_GENERATION", 10**30)
    monkeypatch.setattr(model.Marker, "sealed", lambda self: True)


def test_without_the_range_check_a_hand_written_marker_becomes_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    _accept_any_generation(monkeypatch)
    result = run(CHAOS.only("marker_out_of_range"), "safe", 3, OUT_OF_RANGE)
    heads = [v for v in result.violations if v.endpoint == "the store's head"]
    assert heads and heads[0].short == "I4"
    assert "9223372036854775807" in heads[0].detail, heads[0].detail


def test_the_explorer_garbles_a_marker_and_finds_nothing_wrong() -> None:
    report = explore(SMALL, look_for="any")  # "garble" is one of SMALL's fault moves
    assert report.complete and report.violation is None


def test_without_the_range_check_the_explorer_finds_a_garbled_marker_taken_for_the_head(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _accept_any_generation(monkeypatch)
    report = explore(SMALL, look_for="I4")
    assert report.violation is not None and report.violation.endpoint == "the store's head"
    assert any("writes g=9223372036854775807" in step for step in report.path), report.path


# -- partial_write ---------------------------------------------------------------------------------

# every endpoint, each way, in turn: 300 s windows while health keeps changing the plans; then one
# longer than the repair bound, so that a lie no one reports outlives it
PARTIAL = [*(Fault(300.0 + 400 * i, "partial_write", str(i % 4), 300.0, mode)
             for i, mode in enumerate(("rejected", "marker_only") * 4)),
           Fault(400.0, "partial_write", "2", 1500.0, "marker_only")]
PARTIAL_ONLY = CHAOS.only("partial_write")


def _run_counting(schedule: list[Fault], seed: int = 0) -> tuple[Any, int, int]:
    """Run the partial_write schedule; (result, writes the provider answered Rejected, lies the checker saw)."""
    from dnsplane.model import Rejected
    from dnsplane.sim.driver import Simulation

    sim = Simulation(PARTIAL_ONLY, "safe", seed, schedule)
    seen: set[tuple[Any, float]] = set()
    rejected = []
    note, apply = sim.faults.note_lies, sim.provider._apply

    def counting(observed: Any) -> None:
        note(observed)
        seen.update(sim.faults.lies.items())

    def counting_apply(writes: Any) -> Any:
        results = apply(writes)
        rejected.extend(r for r in results if isinstance(r, Rejected))
        return results

    sim.faults.note_lies = counting  # type: ignore[method-assign]
    sim.provider._apply = counting_apply  # type: ignore[method-assign]
    result = sim.run()
    return result, len(rejected), len(seen)


def test_a_provider_that_rejects_or_applies_part_of_a_write_is_survived() -> None:
    result, rejected, lies = _run_counting(PARTIAL)
    assert result.faults.get("partial_write") == len(PARTIAL)
    assert rejected > 0 and lies > 0, (rejected, lies)  # both really happened
    assert result.violations == []  # I1-I6, I8: detected, reported, repaired once the window closed


def test_a_verifier_that_trusts_the_marker_leaves_a_partial_write_unreported(monkeypatch: pytest.MonkeyPatch) -> None:
    from dnsplane.protocol import verifier

    diagnose = verifier.diagnose

    def marker_only(*args: Any) -> str | None:  # compares the marker with the plan, never the records
        problem = diagnose(*args)
        return None if problem in ("marker-mismatch", "content-differs", "foreign-addresses") else problem

    monkeypatch.setattr(verifier, "diagnose", marker_only)
    found = []
    for seed in range(10):  # a lie that outlives the repair bound needs a write to e2 early in its window
        result, _, _ = _run_counting(PARTIAL, seed)
        found += [v for v in result.violations if v.short == "I8"]
        if found:
            break
    assert found and "more than its records show" in found[0].detail, found


def test_without_the_hold_of_a_rejected_endpoint_the_explorer_finds_the_collector_deleting_its_content(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The enactor holds a quarantined endpoint for the collector (I3), as it holds a skip-corrupt one.
    Taken out (only where a ``Rejected`` result is handled), the explorer's "reject" move finds the
    collector deleting the content the endpoint's marker still names."""
    import sys

    from dnsplane.protocol.enactor import Enactor

    hold = Enactor._hold

    def no_hold_on_reject(self: Enactor, key: Any, generation: Any) -> None:
        if sys._getframe(1).f_code.co_name != "_on_results":  # the Rejected case of the write results
            hold(self, key, generation)

    monkeypatch.setattr(Enactor, "_hold", no_hold_on_reject)
    report = explore(Config(protocol="safe", generations=2, enactors=1, faults=1), look_for="I3")
    assert report.violation is not None and report.violation.short == "I3"
    assert any("the provider rejects every write" in step for step in report.path), report.path


def test_the_explorer_rejects_an_endpoints_writes_and_finds_nothing_wrong() -> None:
    report = explore(Config(protocol="safe", generations=2, enactors=1, faults=1), look_for="any")
    assert report.complete and report.violation is None


# -- health_amnesia -------------------------------------------------------------------------------

# lb-0-0 and then lb-1-1 go down; each time, once the planner acted on it, the planner restarts
AMNESIA = [Fault(300.0, "health_amnesia", "lb-0-0", 600.0, "down"),
           Fault(1500.0, "health_amnesia", "lb-1-1", 600.0, "down")]


def test_a_planner_restart_does_not_serve_a_target_known_down() -> None:
    result = run(CHAOS.only("health_amnesia"), "safe", 4, AMNESIA)
    assert result.faults.get("health_amnesia") == 2
    kept = [e for e in result.trace if e.actor == "planner" and e.detail.startswith("store keeps")]
    assert len(kept) == 2 and "lb-0-0" in kept[0].detail and "lb-1-1" in kept[1].detail  # really down at restart
    assert result.violations == []


def test_a_planner_that_forgets_the_stored_health_serves_a_target_known_down(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dnsplane.protocol.planner import Planner

    monkeypatch.setattr(Planner, "_restore", lambda self, kept: None)  # health as before issue 8: in memory only
    result = run(CHAOS.only("health_amnesia"), "safe", 4, AMNESIA)
    served = [v for v in result.violations if v.short == "H1"]
    assert served and "lb-0-0" in served[0].detail, result.violations
