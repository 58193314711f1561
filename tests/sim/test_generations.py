"""The monitor's generation check (issue 13): each plan is published under a generation above every plan
published before it. A store that handed out the head's generation again (``g = head``), or whose head an
``advance_head`` lowered so that a later publish reused a generation, made the content history name two
plans by one number; no invariant said so, and the explorer, which checks no progress, passed both.
"""

from __future__ import annotations

import pytest

from dnsplane.model import EndpointKey, Generation, Member, RecordSet
from dnsplane.sim.invariants import I2, InvariantViolation, Monitor

ZONE = "sim.test."
KEY = EndpointKey(f"e0.{ZONE}", "A")


def _content(address: str) -> list[tuple[EndpointKey, RecordSet]]:
    return [(KEY, RecordSet.of(60, [Member("lb", (address,), 1000)]))]


def test_plans_under_increasing_generations_pass() -> None:
    monitor = Monitor(ZONE, collect=True)
    for g in (1, 2, 4):
        monitor.on_publish(Generation(g), _content(f"10.0.0.{g}"))
    assert not monitor.violations


@pytest.mark.parametrize("again", [2, 1])
def test_a_generation_published_again_or_below_is_reported(again: int) -> None:
    monitor = Monitor(ZONE)
    monitor.on_publish(Generation(1), _content("10.0.0.1"))
    monitor.on_publish(Generation(2), _content("10.0.0.2"))
    with pytest.raises(InvariantViolation, match=f"plan {again} published after plan 2"):
        monitor.on_publish(Generation(again), _content("10.0.0.3"))


def test_the_violation_is_i2_at_the_stores_head() -> None:
    monitor = Monitor(ZONE, collect=True)
    monitor.on_publish(Generation(3), _content("10.0.0.1"))
    monitor.on_publish(Generation(3), _content("10.0.0.2"))
    assert [(v.invariant, v.endpoint) for v in monitor.violations] == [(I2, "the store's head")]
