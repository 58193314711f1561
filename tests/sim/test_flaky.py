"""The simulator's store and provider faults live in wrappers (``sim/flaky.py``), its fault names in one
vocabulary (``sim/vocabulary.py``), and which commands call the store or the provider is derived from
the command classes (``sim/world.py``)."""

from __future__ import annotations

import pytest

from dnsplane.errors import ProviderUnavailable, StoreUnavailable
from dnsplane.model import Generation
from dnsplane.protocol.legacy import CleanUp, ForceWrite
from dnsplane.protocol.messages import (
    AdvanceHead,
    Begin,
    Collect,
    Failed,
    Finish,
    HeadRead,
    Journal,
    LoadChanges,
    LoadContentAt,
    LoadDesired,
    MarkersRead,
    Publish,
    ReadHead,
    ReadHeadPlan,
    ReadMarkers,
    ReadWatermark,
    Resolve,
    SetLastKnownGood,
    WriteBatch,
)
from dnsplane.sim import scenario, vocabulary, world
from dnsplane.sim.flaky import FlakyProvider, FlakyStore
from dnsplane.sim.world import ZONE, SimExecutor, SimProvider, fleet
from dnsplane.store.memory import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_derived_command_sets_are_the_hand_lists_they_replace() -> None:
    store = {ReadHead, ReadHeadPlan, LoadChanges, LoadContentAt, LoadDesired, Publish, ReadWatermark, Collect, CleanUp,
             Begin, Finish, AdvanceHead, SetLastKnownGood, Journal}
    provider = {ReadMarkers, WriteBatch, Resolve, ForceWrite, world.SentBatch}  # SentBatch: the explorer's only
    assert store | provider == world.CALLS_WORLD
    assert provider == world.PROVIDER_CALLS  # the legacy CleanUp deletes records, but is the store's
    assert {WriteBatch, ForceWrite, world.SentBatch} == world.PROVIDER_WRITES
    assert {Collect, CleanUp} == world.COLLECTING


def test_the_vocabulary_is_the_scenarios() -> None:
    assert vocabulary.FAULT_KINDS == scenario.FAULT_KINDS
    assert all(type(k) is str for k in vocabulary.FAULT_KINDS)
    assert {"emptied", "marker_deleted", "marker_out_of_range", "marker_stale", "marker_raised",
            "rejected", "endpoint_deleted"} == vocabulary.HUMAN_FAULTS
    assert vocabulary.GARBLED == 2**63 - 1


def test_a_flaky_store_fails_every_call_inside_an_outage_and_none_outside() -> None:
    clock = Clock()
    store = FlakyStore(MemoryStore(), clock)
    store.outages.open(10.0, 5.0)
    assert store.head() == 0
    clock.now = 10.0
    with pytest.raises(StoreUnavailable, match="simulated outage"):
        store.head()
    with pytest.raises(StoreUnavailable):
        store.record(())
    clock.now = 15.0
    assert store.head() == 0 and store.failures == 2
    clock.now = 12.0
    store.outages.close(11.0)  # the quiet phase closes every window
    assert store.head() == 0


def test_a_flaky_provider_throttles_and_slows_down_inside_its_windows() -> None:
    clock = Clock()
    provider = FlakyProvider(SimProvider(ZONE), clock)
    key = fleet(1, 1)[0].key
    provider.throttles.open(0.0, 1.0)
    provider.spikes.open(0.0, 2.0, 20.0)
    provider.spikes.open(1.0, 2.0, 5.0)
    with pytest.raises(ProviderUnavailable, match="simulated throttling"):
        provider.read([key])
    assert provider.latency_factor() == 20.0
    clock.now = 2.5
    assert provider.read([key])[key].marker is None and provider.latency_factor() == 5.0
    clock.now = 3.0
    assert provider.latency_factor() == 1.0 and provider.failures == 1


def test_an_outage_fails_a_command_at_its_store_call_in_the_runtimes_interpreter() -> None:
    """ReadMarkers reads the provider, then (a marker missing) the store: the outage fails it there."""
    clock = Clock()
    memory = MemoryStore()
    store = FlakyStore(memory, clock)
    ex = SimExecutor(store, SimProvider(ZONE), journal=False)
    key = fleet(1, 1)[0].key
    store.outages.open(0.0, 10.0)
    assert isinstance(ex.request("enactor-1", ReadMarkers((key,)), 0.0), MarkersRead)  # no store read
    reply = ex.request("enactor-1", ReadMarkers((key,), newer_than=Generation(0)), 0.0)
    assert isinstance(reply, Failed) and "simulated outage" in reply.error and reply.retryable
    assert ex.effects("enactor-1", (Journal(()),), 0.0) is not None  # no journal kept, the store still asked
    clock.now = 10.0
    assert isinstance(ex.request("enactor-1", ReadHead(), 0.0), HeadRead)
    assert store.failures == 2


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_armed_exception_is_raised_once_per_command_before_or_after_it_took_effect(when: str) -> None:
    memory = MemoryStore()
    ex = SimExecutor(memory, SimProvider(ZONE), journal=False)
    ex.armed["enactor-1"] = (when, "RuntimeError")
    reply = ex.effects("enactor-1", (AdvanceHead(Generation(3)),), 0.0)
    assert isinstance(reply, Failed) and "RuntimeError" in reply.error
    assert memory.head() == (3 if when == "after" else 0)
    assert not ex.armed and ex.exceptions == 1
    assert ex.effects("enactor-1", (AdvanceHead(Generation(4)),), 0.0) is None and memory.head() == 4  # disarmed
