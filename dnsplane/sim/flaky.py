"""A flaky store and a flaky provider: the simulator's store and provider faults, at the real calls.

Owns the faults that are the store's or the provider's own: a ``FlakyStore`` wraps a store and owns
its outage windows (every store call raises ``StoreUnavailable`` while one is open); a
``FlakyProvider`` wraps a provider and owns its throttling windows (every call raises
``ProviderUnavailable``) and its latency spikes (``latency_factor``, which the driver's scheduler
multiplies a provider request's latency by). Both raise exactly what a real store or provider
raises, at the call that would have failed, so the interpreter that drives them is the runtime's own
(``dnsplane.execute.Interpreter``) and production code has no simulator hook.

A failure comes before the call has any effect: every command's first store (provider) call is made
while the window it falls in is the same for its later calls (one command runs at one simulated
moment), so a command fails whole or not at all, as a real outage would fail its first call.

What these do not own: which faults a run has and when they start (``faults.make_schedule``), their
quiet phase and the faults of actors, health and hand edits (``injector.FaultInjector``), and the
partial writes of ``world.SimProvider`` (a provider that applies part of a write has to be one).
Windows are in the simulator's true time, read from ``clock``, not in an actor's skewed time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar

from dnsplane.errors import ProviderUnavailable, StoreUnavailable
from dnsplane.model import (
    Desired,
    Dial,
    EndpointKey,
    Generation,
    HealthRecord,
    Marker,
    Observed,
    RecordSet,
    Write,
    WriteResult,
)
from dnsplane.providers.base import Capabilities, Provider
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.base import Freeze, JournalEntry, OperatorAction, PlanInfo, Store

Clock = Callable[[], float]


class Windows:
    """Spans ``[start, stop)`` of simulated time, each with a factor; ``close`` ends them all early."""

    __slots__ = ("spans",)

    def __init__(self) -> None:
        self.spans: list[tuple[float, float, float]] = []

    def open(self, start: float, duration: float, factor: float = 1.0) -> None:
        self.spans.append((start, start + duration, factor))

    def close(self, now: float) -> None:
        """Every window ends at ``now`` at the latest (the faults' quiet phase)."""
        self.spans = [(a, min(b, now), f) for a, b, f in self.spans]

    def active(self, now: float) -> bool:
        return any(start <= now < stop for start, stop, _ in self.spans)

    def factor(self, now: float) -> float:
        """The largest factor of the windows open at ``now`` (1.0 when none is)."""
        return max((f for a, b, f in self.spans if a <= now < b), default=1.0)


class FlakyStore(Store):
    """``inner``, but down while one of ``outages`` is open: every call raises ``StoreUnavailable``.

    ``failures`` counts the calls that failed (one per command: see the module docstring)."""

    def __init__(self, inner: Store, clock: Clock) -> None:
        self.inner, self.clock = inner, clock
        self.outages = Windows()
        self.failures = 0

    def _down(self) -> None:
        if self.outages.active(self.clock()):
            self.failures += 1
            raise StoreUnavailable(reason="simulated outage")

    def head(self) -> Generation:
        if self.outages.spans:
            self._down()
        return self.inner.head()

    def publish(self, expect_head: Generation, changes: Sequence[tuple[EndpointKey, RecordSet]], now: float,
                planner: str, expect_at: float | None = None) -> Generation | None:
        if self.outages.spans:
            self._down()
        return self.inner.publish(expect_head, changes, now, planner, expect_at)

    def oldest_plan(self) -> Generation:
        if self.outages.spans:
            self._down()
        return self.inner.oldest_plan()

    def created_at(self, generation: Generation) -> float | None:
        if self.outages.spans:
            self._down()
        return self.inner.created_at(generation)

    def advance_head(self, at_least: Generation, now: float) -> Generation:
        if self.outages.spans:
            self._down()
        return self.inner.advance_head(at_least, now)

    def desired(self, keys: Iterable[EndpointKey] | None, at: Generation) -> dict[EndpointKey, Desired]:
        if self.outages.spans:
            self._down()
        return self.inner.desired(keys, at)

    def content_at(self, pairs: Sequence[tuple[EndpointKey, Generation]]) -> dict[EndpointKey, Desired]:
        if self.outages.spans:
            self._down()
        return self.inner.content_at(pairs)

    def changed_between(self, after: Generation, upto: Generation) -> dict[EndpointKey, Desired]:
        if self.outages.spans:
            self._down()
        return self.inner.changed_between(after, upto)

    def plans(self) -> list[PlanInfo]:
        if self.outages.spans:
            self._down()
        return self.inner.plans()

    def begin(self, actor: str, generation: Generation, now: float) -> None:
        if self.outages.spans:
            self._down()
        self.inner.begin(actor, generation, now)

    def finish(self, actor: str, generation: Generation, now: float) -> None:
        if self.outages.spans:
            self._down()
        self.inner.finish(actor, generation, now)

    def set_last_known_good(self, generation: Generation) -> None:
        if self.outages.spans:
            self._down()
        self.inner.set_last_known_good(generation)

    def low_watermark(self, now: float) -> Generation:
        if self.outages.spans:
            self._down()
        return self.inner.low_watermark(now)

    def collect(self, watermark: Generation, now: float) -> int:
        if self.outages.spans:
            self._down()
        return self.inner.collect(watermark, now)

    def record(self, entries: Sequence[JournalEntry]) -> None:
        if self.outages.spans:
            self._down()
        self.inner.record(entries)

    def last_writes(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, JournalEntry]:
        if self.outages.spans:
            self._down()
        return self.inner.last_writes(keys)

    def recent_journal(self, limit: int) -> list[JournalEntry]:
        if self.outages.spans:
            self._down()
        return self.inner.recent_journal(limit)

    def history(self, key: EndpointKey) -> list[JournalEntry]:
        if self.outages.spans:
            self._down()
        return self.inner.history(key)

    def applied(self) -> dict[str, Generation]:
        if self.outages.spans:
            self._down()
        return self.inner.applied()

    def save_health(self, records: Mapping[str, HealthRecord]) -> None:
        if self.outages.spans:
            self._down()
        self.inner.save_health(records)

    def health(self) -> dict[str, HealthRecord]:
        if self.outages.spans:
            self._down()
        return self.inner.health()

    def set_freeze(self, freeze: Freeze | None, action: OperatorAction) -> Freeze | None:
        if self.outages.spans:
            self._down()
        return self.inner.set_freeze(freeze, action)

    def frozen(self) -> Freeze | None:
        if self.outages.spans:
            self._down()
        return self.inner.frozen()

    def operator_actions(self) -> list[OperatorAction]:
        if self.outages.spans:
            self._down()
        return self.inner.operator_actions()

    def record_action(self, action: OperatorAction) -> None:
        if self.outages.spans:
            self._down()
        self.inner.record_action(action)

    def confirmation(self, generation: Generation, since: float) -> OperatorAction | None:
        if self.outages.spans:
            self._down()
        return self.inner.confirmation(generation, since)

    def set_dial(self, dial: Dial, action: OperatorAction,
                 check: Callable[[list[Dial]], None] | None = None) -> Dial | None:
        if self.outages.spans:
            self._down()
        return self.inner.set_dial(dial, action, check)

    def lift_dial(self, kind: str, subject: str, action: OperatorAction) -> Dial | None:
        if self.outages.spans:
            self._down()
        return self.inner.lift_dial(kind, subject, action)

    def expire_dials(self, now: float, by: str) -> list[Dial]:
        if self.outages.spans:
            self._down()
        return self.inner.expire_dials(now, by)

    def dials(self) -> list[Dial]:
        if self.outages.spans:
            self._down()
        return self.inner.dials()

    def owner_id(self) -> str:
        return self.inner.owner_id()


class FlakyProvider(Provider):
    """``inner``, but throttled while one of ``throttles`` is open (every call raises
    ``ProviderUnavailable``), and slow while one of ``spikes`` is (``latency_factor``).

    ``hand_edit`` is the legacy design's unconditional write (``ForceWrite``) made through this
    provider, throttled like any call; a person's hand edits go to ``inner`` itself."""

    capabilities: ClassVar[Capabilities] = MemoryProvider.capabilities
    kind: ClassVar[str] = MemoryProvider.kind

    def __init__(self, inner: MemoryProvider, clock: Clock) -> None:
        # not Provider.__init__: what was written (``writes``) is counted by ``inner`` alone
        self.zone = inner.zone
        self.inner, self.clock = inner, clock
        self.throttles = Windows()
        self.spikes = Windows()
        self.failures = 0

    def _throttled(self) -> None:
        if self.throttles.active(self.clock()):
            self.failures += 1
            raise ProviderUnavailable(reason="simulated throttling", retry_after=1.0)

    def latency_factor(self) -> float:
        """What a provider request's latency is multiplied by now (1.0 outside every spike)."""
        return self.spikes.factor(self.clock()) if self.spikes.spans else 1.0

    def apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        if self.throttles.spans:
            self._throttled()
        return self.inner.apply(writes)

    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:  # apply() above never calls it
        return self.inner.apply(writes)

    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        if self.throttles.spans:
            self._throttled()
        return self.inner.read(keys)

    def read_all(self) -> dict[EndpointKey, Observed]:
        if self.throttles.spans:
            self._throttled()
        return self.inner.read_all()

    def write_token(self) -> str | None:
        if self.throttles.spans:
            self._throttled()
        return self.inner.write_token()

    def hand_edit(self, key: EndpointKey, records: RecordSet | None, marker: Marker | None) -> None:
        if self.throttles.spans:
            self._throttled()
        self.inner.hand_edit(key, records, marker)

    def hand_edit_text(self, key: EndpointKey, records: RecordSet | None, text: str) -> None:
        if self.throttles.spans:
            self._throttled()
        self.inner.hand_edit_text(key, records, text)
