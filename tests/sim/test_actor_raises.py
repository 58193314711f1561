"""An exception raised by an actor's own code (``handle``) is a bug the models report (I8), not a crash of
the model: the simulator names it with its seed and time, the explorer with a shortest path, and both go
on as the runtime's ``App._handle`` does (the actor told its round failed, or reset)."""

from __future__ import annotations

from typing import Any

import pytest

from dnsplane.protocol.collector import Collector
from dnsplane.protocol.messages import WatermarkRead
from dnsplane.sim.driver import run
from dnsplane.sim.explore import Config, explore
from dnsplane.sim.scenario import load

ERROR = "'NoneType' object has no attribute 'generation'"


@pytest.fixture
def collector_raises_on_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's code raises AttributeError on every watermark it reads (as a mutant of a rule can
    make the enactor's ``decide`` raise on the markers it reads)."""
    original = Collector.handle

    def handle(self: Collector, event: Any) -> Any:
        if isinstance(event, WatermarkRead):
            raise AttributeError(ERROR)
        return original(self, event)

    monkeypatch.setattr(Collector, "handle", handle)


@pytest.mark.usefixtures("collector_raises_on_tick")
def test_the_simulator_reports_an_actor_that_raises() -> None:
    result = run(load("us-east-1"), "safe", 0, trace=False)  # without the check: the AttributeError escapes
    raised = [v for v in result.violations if v.short == "I8" and v.endpoint == "collector"]
    assert len(raised) == 1
    assert f"an actor raised: AttributeError: {ERROR} in collector handling WatermarkRead" in raised[0].detail
    assert raised[0].time > 0 and raised[0].step > 0


@pytest.mark.usefixtures("collector_raises_on_tick")
def test_the_simulator_stops_at_it_when_asked() -> None:
    result = run(load("us-east-1"), "safe", 0, trace=True, stop_on="I8")
    assert [v.short for v in result.violations] == ["I8"]
    assert any("AttributeError" in line for line in result.timeline)


@pytest.mark.usefixtures("collector_raises_on_tick")
def test_the_explorer_reports_an_actor_that_raises_with_a_shortest_path() -> None:
    report = explore(Config(protocol="safe", generations=2), look_for="I8")
    assert report.violation is not None and report.violation.short == "I8"
    assert report.violation.endpoint == "collector"
    assert f"AttributeError: {ERROR} in collector handling WatermarkRead" in report.violation.detail
    assert report.path and "collector" in report.path[-1]
