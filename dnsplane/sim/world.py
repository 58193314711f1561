"""The simulated world: a fleet, in-memory store and provider, and the commands carried out against them.

``SimExecutor`` carries out the actors' commands with exactly the semantics of
``dnsplane.runtime.execute.Executor`` (the same store and provider calls, the
same replies, an effect that raises ends the step with ``Failed`` and skips the
rest); tests/sim/test_executor_parity.py runs both side by side. It differs in
two deliberate ways:

- the final request of a step is not run at once but handed back, so that the
  driver can deliver it later, in an order its scheduler chooses (effects apply
  at once, as in the runtime);
- it also executes the legacy protocol's ``ForceWrite`` and ``CleanUp``, which
  exist only here: the runtime refuses them, so they can never reach a real
  provider.

Fault hooks (``store_down``, ``throttled``) let the driver make store and
provider calls fail with the same ``Retryable`` errors real ones raise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dnsplane.errors import DnsplaneError, ProviderUnavailable, Retryable, StoreUnavailable
from dnsplane.model import (
    Endpoint,
    EndpointKey,
    Generation,
    HealthCheck,
    Observed,
    Policy,
    RecordSet,
    Target,
)
from dnsplane.protocol.legacy import CleanedUp, CleanUp, ForceWrite
from dnsplane.protocol.messages import (
    AdvanceHead,
    Begin,
    ChangesLoaded,
    Collect,
    Collected,
    ContentLoaded,
    DesiredLoaded,
    Event,
    Failed,
    Finish,
    HeadRead,
    Journal,
    LoadChanges,
    LoadContentAt,
    LoadDesired,
    Log,
    MarkersRead,
    Publish,
    PublishConflict,
    Published,
    ReadHead,
    ReadMarkers,
    ReadWatermark,
    Resolution,
    Resolve,
    Resolved,
    SetLastKnownGood,
    WatermarkRead,
    WriteBatch,
    WriteDone,
)
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.base import JournalEntry
from dnsplane.store.memory import MemoryStore

ZONE = "sim.test."
REQUESTS = (ReadHead, LoadChanges, LoadContentAt, ReadMarkers, WriteBatch, LoadDesired, Publish, ReadWatermark,
            Collect, Resolve, ForceWrite, CleanUp)
STORE_REQUESTS = (ReadHead, LoadChanges, LoadContentAt, LoadDesired, Publish, ReadWatermark, Collect, CleanUp)
PROVIDER_REQUESTS = (ReadMarkers, WriteBatch, Resolve, ForceWrite)


def fleet(endpoints: int, targets: int) -> tuple[Endpoint, ...]:
    """``endpoints`` endpoints ``e0.sim.test. A`` …, each with ``targets`` load balancers of its own."""
    policy = Policy(rise=1, fall=1, max_weight_shift=1.0)
    out = []
    for e in range(endpoints):
        ts = tuple(
            Target(f"lb-{e}-{t}", (f"10.{e // 250}.{e % 250}.{t + 1}",), 100 * (t + 1), HealthCheck("tcp", "sim", 1))
            for t in range(targets)
        )
        out.append(Endpoint(f"e{e}.{ZONE}", "A", 60, ts, policy))
    return tuple(out)


def resolve_from(provider: MemoryProvider, keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
    """What the embedded DNS server answers ("all" view) plus the provider state, as tests/protocol/harness.py."""
    out = {}
    for key, seen in provider.read(keys).items():
        addrs = tuple(seen.records.addresses()) if seen.records else ()
        rcode = "NOERROR" if seen.records or seen.marker else "NXDOMAIN"
        out[key] = Resolution(rcode, addrs, seen.marker.to_text() if seen.marker else None, seen)
    return out


@dataclass
class SimExecutor:
    """Commands against a ``MemoryStore`` and a ``MemoryProvider``, with fault hooks."""

    store: MemoryStore
    provider: MemoryProvider
    store_down: Callable[[], bool] = lambda: False
    throttled: Callable[[], bool] = lambda: False
    on_publish: Callable[[Generation, tuple[tuple[EndpointKey, RecordSet], ...]], None] | None = None
    on_cleanup: Callable[[tuple[EndpointKey, ...]], None] | None = None
    journal: bool = True
    stats: dict[str, int] = field(default_factory=lambda: {"store_failures": 0, "provider_failures": 0})

    def effects(self, actor: str, commands: Sequence[object], now: float) -> Failed | None:
        """Apply effects in order; the first that fails ends the step as ``Failed`` (as ``Executor.run``)."""
        for cmd in commands:
            try:
                self.effect(actor, cmd, now)
            except DnsplaneError as err:
                retry = err.retry_after if isinstance(err, Retryable) else 5.0
                return Failed(now, str(err), isinstance(err, Retryable), retry)
        return None

    def effect(self, actor: str, cmd: object, now: float) -> None:
        store = self.store
        match cmd:
            case Log():
                return
            case Begin(generation=g):
                self._store_up()
                store.begin(actor, g, now)
            case Finish(generation=g):
                self._store_up()
                store.finish(actor, g, now)
            case AdvanceHead(at_least=g):
                self._store_up()
                store.advance_head(g, now)
            case SetLastKnownGood(generation=g):
                self._store_up()
                store.set_last_known_good(g)
            case Journal(entries=entries):
                self._store_up()
                if self.journal:
                    store.record([JournalEntry(now, actor, k, action, b, a, d) for k, action, b, a, d in entries])
            case _:
                raise DnsplaneError(f"not an effect: {type(cmd).__name__}")

    def request(self, actor: str, cmd: object, now: float) -> Event | CleanedUp:
        """Run one request; errors come back as ``Failed``, as the runtime's executor returns them."""
        try:
            return self._request(actor, cmd, now)
        except DnsplaneError as err:
            retry = err.retry_after if isinstance(err, Retryable) else 5.0
            return Failed(now, str(err), isinstance(err, Retryable), retry)

    def _store_up(self) -> None:
        if self.store_down():
            self.stats["store_failures"] += 1
            raise StoreUnavailable(reason="simulated outage")

    def _provider_up(self) -> None:
        if self.throttled():
            self.stats["provider_failures"] += 1
            raise ProviderUnavailable(reason="simulated throttling", retry_after=1.0)

    def _request(self, actor: str, cmd: object, now: float) -> Event | CleanedUp:
        store, provider = self.store, self.provider
        if isinstance(cmd, STORE_REQUESTS):
            self._store_up()
        else:
            self._provider_up()
        match cmd:
            case ReadHead():
                return HeadRead(now, store.head())
            case LoadChanges(after=after, upto=upto):
                return ChangesLoaded(now, store.changed_between(after, upto))
            case ReadMarkers(keys=keys):
                return MarkersRead(now, provider.read(keys))
            case LoadContentAt(pairs=pairs):
                return ContentLoaded(now, store.content_at(pairs))
            case WriteBatch(writes=writes):
                return WriteDone(now, provider.apply(writes))
            case LoadDesired():
                head = store.head()
                return DesiredLoaded(now, head, store.desired(None, head))
            case Publish(expect_head=expect, changes=changes):
                gen = store.publish(expect, changes, now, actor)
                if gen is not None and self.on_publish is not None:
                    self.on_publish(gen, changes)
                return PublishConflict(now) if gen is None else Published(now, gen)
            case ReadWatermark():
                return WatermarkRead(now, store.low_watermark(now))
            case Collect(watermark=w):
                return Collected(now, store.collect(w, now))
            case Resolve(keys=keys):
                return Resolved(now, resolve_from(provider, keys))
            case ForceWrite(key=key, records=records, marker=marker):
                provider.hand_edit(key, records, marker)  # the legacy design's unconditional write
                provider.writes += 1
                return WriteDone(now, [])
            case CleanUp(keep_from=keep_from):
                return self._legacy_cleanup(keep_from, now)
        raise DnsplaneError(f"not a request: {type(cmd).__name__}")

    def _legacy_cleanup(self, keep_from: Generation, now: float) -> CleanedUp:
        """Delete plans below ``keep_from`` *and the records those plans created* (the failed design).

        An endpoint whose marker names a plan below ``keep_from`` (deleted now or before) holds records
        that a deleted plan created: they are deleted with it, leaving the endpoint empty.
        """
        gone = {p.generation for p in self.store.plans() if p.generation < keep_from}
        deleted = self.store.collect(keep_from, now) if gone else 0
        emptied = []
        for key, seen in self.provider.read_all().items():
            if seen.marker is not None and seen.marker.generation < keep_from and seen.records is not None:
                self.provider.hand_edit(key, None, None)
                emptied.append(key)
        if emptied and self.on_cleanup is not None:
            self.on_cleanup(tuple(emptied))
        return CleanedUp(now, deleted, tuple(emptied))


def observed_all(provider: MemoryProvider) -> dict[EndpointKey, Observed]:
    return provider.read_all()
