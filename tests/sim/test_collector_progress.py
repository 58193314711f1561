"""I8's collector part (issue 13): at quiet, a collector round leaves the store no plan below the low
watermark.

Before this check no model noticed a collector that runs yet never collects: the store's ``collect``
re-reads the watermark and refuses to collect above it, so a collector that asks for more than the
watermark it read (the mutant ``collector-past-watermark``) only lets plans pile up, which breaks no
safety invariant. The simulator now runs one more collector round at the end of a run (after I6's
enactor round) and reports I8 when a plan the watermark allows to collect is still stored.
"""

from __future__ import annotations

import dataclasses

import pytest

from dnsplane.model import Generation
from dnsplane.protocol import collector
from dnsplane.protocol.messages import Collect, Event, Step
from dnsplane.sim import driver
from dnsplane.sim.driver import run
from dnsplane.sim.invariants import I8
from dnsplane.sim.scenario import load

CHAOS = load("chaos")
US_EAST_1 = load("us-east-1")


class GreedyCollector(collector.Collector):
    """The mutant ``collector-past-watermark``: asks to collect one generation past the watermark it read."""

    def handle(self, event: Event) -> Step:
        step = super().handle(event)
        if isinstance(step.request, Collect):
            return dataclasses.replace(step, request=Collect(Generation(step.request.watermark + 1)))
        return step


# chaos 0 no longer: its run moved when the simulator began to read a hand-garbled marker text as a corrupt
# marker (read_marker), and it no longer ends with a plan below the watermark for the collector to leave;
# us-east-1 0 no longer either: since the collector asks the store whether anything is below the watermark
# (issue 13, seventh round), a collect the store refused is tried again, and this greedy one's lands there
# once the watermark has risen past what it asks; chaos 3 for 2 since issue 13's eighth round moved the runs
# (the verifier's last-known-good now set every round)
@pytest.mark.parametrize(("scenario", "seed"), [(CHAOS, 1), (CHAOS, 3), (US_EAST_1, 1), (US_EAST_1, 2)])
def test_a_collector_that_asks_past_the_watermark_is_caught_at_quiet(
        monkeypatch: pytest.MonkeyPatch, scenario: object, seed: int) -> None:
    monkeypatch.setattr(driver, "Collector", GreedyCollector)
    result = run(scenario, "safe", seed, trace=False)  # type: ignore[arg-type]
    found = [v for v in result.violations if v.invariant == I8 and v.endpoint == "collector"]
    assert found, result.violations
    assert "below the low watermark" in found[0].detail


@pytest.mark.parametrize(("scenario", "seed"), [(CHAOS, 0), (CHAOS, 1), (US_EAST_1, 0), (US_EAST_1, 1)])
def test_the_collector_as_shipped_leaves_nothing_below_the_watermark(scenario: object, seed: int) -> None:
    result = run(scenario, "safe", seed, trace=False)  # type: ignore[arg-type]
    assert result.violations == [], result.violations[0]
