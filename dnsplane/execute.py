"""Carry out actors' commands against a store and a provider, synchronously.

The asyncio runtime calls this from a worker thread; the simulator subclasses it
(adding fault hooks and the legacy design's commands); tests and benchmarks call
it directly (``drain``) to run actors step by step. It is the one place where
commands meet I/O, so every driver executes them with the same semantics.
``Resolve`` needs DNS: the caller passes a ``resolver``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dnsplane.errors import DnsplaneError, Retryable
from dnsplane.model import EndpointKey
from dnsplane.protocol.messages import (
    AdvanceHead,
    Begin,
    ChangesLoaded,
    Collect,
    Collected,
    Command,
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
from dnsplane.providers.base import Provider
from dnsplane.store.base import JournalEntry, Store

log = logging.getLogger("dnsplane.runtime")

Resolver = Callable[[Sequence[EndpointKey]], dict[EndpointKey, Resolution]]


class Actor(Protocol):
    """Anything with a name and ``handle``: planner, enactor, collector, verifier."""

    name: str

    def handle(self, event: Event) -> list[Command]: ...


@dataclass
class Executor:
    store: Store
    provider: Provider
    resolver: Resolver | None = None

    def run(self, actor_name: str, commands: Sequence[Command], now: float) -> Event | None:
        """Execute effects in order; return the reply to the final request, if any."""
        reply: Event | None = None
        for cmd in commands:
            try:
                reply = self.one(actor_name, cmd, now)
            except DnsplaneError as err:
                retry = err.retry_after if isinstance(err, Retryable) else 5.0
                return Failed(now, str(err), isinstance(err, Retryable), retry)
        return reply

    def one(self, actor: str, cmd: Command, now: float) -> Event | None:
        store, provider = self.store, self.provider
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
                return PublishConflict(now) if gen is None else Published(now, gen)
            case ReadWatermark():
                return WatermarkRead(now, store.low_watermark(now))
            case Collect(watermark=w):
                return Collected(now, store.collect(w, now))
            case Resolve(keys=keys):
                if self.resolver is None:
                    raise DnsplaneError("no resolver configured for the verifier")
                return Resolved(now, self.resolver(keys))
            case Begin(generation=g):
                store.begin(actor, g, now)
            case Finish(generation=g):
                store.finish(actor, g, now)
            case AdvanceHead(at_least=g):
                store.advance_head(g, now)
            case SetLastKnownGood(generation=g):
                store.set_last_known_good(g)
            case Journal(entries=entries):
                store.record([JournalEntry(now, actor, k, action, b, a, d) for k, action, b, a, d in entries])
            case Log(level=level, message=message, fields=fields):
                log.log(logging.getLevelName(level.upper()), message, extra={"fields": fields})
        return None


def step(actor: Actor, event: Event, executor: Executor, now: float) -> Event | None:
    """Feed one event to an actor and execute what it asks; return the reply event."""
    return executor.run(actor.name, actor.handle(event), now)


def drain(actor: Actor, event: Event, executor: Executor, now: float, limit: int = 100_000) -> int:
    """Feed ``event`` and every reply until the actor asks nothing more. Returns steps taken."""
    steps = 0
    reply: Event | None = event
    while reply is not None and steps < limit:
        reply = step(actor, reply, executor, now)
        steps += 1
    return steps
