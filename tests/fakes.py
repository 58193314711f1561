"""Shared builders and fakes for dnsplane's tests: small, readable model values.

``member("a", "10.0.0.1")``, ``rs(member(...), ttl=30)``, ``key("api.demo.test")``
build the values every test needs; ``marker(g, records)`` is the marker a
correct enactor writes beside ``records`` at generation ``g`` (with ``prev``, the
marker it replaced, left empty unless given). The in-memory
store and provider (``dnsplane.store.memory``, ``dnsplane.providers.memory``)
are the fakes proper; they are re-exported here so tests import one place.
"""

from __future__ import annotations

from collections.abc import Callable

from dnsplane import execute
from dnsplane.model import EndpointKey, Generation, Marker, Member, RecordSet, normalise_name
from dnsplane.protocol.messages import Step, WriteBatch, WriteDone
from dnsplane.providers.base import Provider
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.base import Store
from dnsplane.store.memory import MemoryStore

ZONE = "demo.test."

__all__ = ["ZONE", "MemoryProvider", "MemoryStore", "key", "marker", "member", "rs"]


def member(id: str, *addrs: str, weight: int = 1) -> Member:
    """A weighted target inside a record set."""
    return Member(id, tuple(addrs), weight)


def rs(*members: Member, ttl: int = 30) -> RecordSet:
    """A record set of ``members`` (sorted by target id, as ``RecordSet.of`` does)."""
    return RecordSet.of(ttl, members)


def key(name: str, rtype: str = "A") -> EndpointKey:
    """An endpoint key; the name is normalised (lower case, trailing dot)."""
    return EndpointKey(normalise_name(name), rtype)


def marker(generation: int, records: RecordSet, prev: str = "") -> Marker:
    """The marker that goes beside ``records`` when generation ``generation`` writes them (``prev``:
    the chain token of the marker it replaced; empty, as in markers written before tokens existed,
    unless a test needs one)."""
    return Marker(Generation(generation), records.digest, prev)


FenceRead = Callable[[Store, Provider, WriteBatch], execute.Fenced]


def fence_only_unchained_writes(real: FenceRead) -> FenceRead:
    """``execute.fence_read`` as it was until the store's fence and the write token went on every write
    (issue 13, sixth round): none for a batch whose every write is over a marker with a chain token (the
    provider's compare-and-swap alone). The controls of the restored-markers tests run with it."""

    def fence_read(store: Store, provider: Provider, cmd: WriteBatch) -> execute.Fenced:
        if all(w.expect is not None and w.expect.prev for w in cmd.writes):
            return execute.NOT_FENCED
        return real(store, provider, cmd)

    return fence_read


def run_held(ex: execute.Interpreter, actor: str, held: Step, fenced: execute.Fenced | None, now: float) -> WriteDone:
    """Run a step held at its ``WriteBatch``: as the runtime runs it now (``fenced`` None), or with its
    writer's half read earlier (``execute.fence_read``), as a request stalled after that read reaches the
    provider."""
    assert isinstance(held.request, WriteBatch), held
    if fenced is None:
        done = ex.run(actor, held, now)
    else:
        for effect in held.effects:
            ex.one(actor, effect, now)
        done = execute._write_batch(ex, actor, held.request, now, fenced=fenced)
    assert isinstance(done, WriteDone), done
    return done
