"""An in-memory DNS provider with native compare-and-swap, for tests and the simulator.

Guarantees (the same as ``EmbeddedProvider``; tests/providers/test_conformance.py
runs both side by side):
- every ``Write`` is decided on the endpoint's current marker and records
  (``Write.verdict``), under one lock, and an
  endpoint's records and marker change together;
- all writes of one ``apply`` happen under that lock: no reader sees half a batch;
- a write whose records and marker (generation and digest, seal intact: ``Marker.same_content``) already
  equal the current ones is not made (I6) and still comes back ``Applied`` (the endpoint
  holds what was asked, whichever marker each replaced);
- writes of one batch apply in order: a later write to the same key sees the earlier;
- deterministic: no clock, no randomness, no threads started;
- the write token (base.py): a counter every ``_apply`` that writes moves; a write carrying a token
  (``Write.token``) is written only if the counter still reads as that token when the batch begins (the
  batch is one change: no earlier change of its own to chain through); hand edits do not move it;
- ``reject(key, reason)`` makes every later write of ``key`` that would change it come back
  ``Rejected(key, reason)`` with nothing written (a write already applied is still
  ``Applied(written=False)``, a stale one still ``Conflict``), until ``reject(key, None)``: it stands
  for a provider that refuses one endpoint of a batch (too big, a CNAME at the name...) and writes
  the others.

Limits:
- nothing survives the process.
- ``hand_edit`` bypasses every check on purpose: it stands for a human or a
  corrupted backend, so that repair paths can be tested.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, assert_never

from dnsplane.model import (
    APPLIED,
    CONFLICT,
    WRITE,
    EndpointKey,
    Marker,
    Observed,
    RecordSet,
    corrupt_marker,
    generation_in_range,
    read_marker,
)
from dnsplane.providers.base import (
    TOKEN_ABSENT,
    Applied,
    Capabilities,
    Conflict,
    Provider,
    Rejected,
    Write,
    WriteResult,
)

log = logging.getLogger(__name__)

Listener = Callable[[list[EndpointKey]], None]
_ABSENT = Observed(None, None)


def notify(listeners: Sequence[Listener], keys: list[EndpointKey]) -> None:
    """Call each listener with the written keys; a failing listener is logged, not raised."""
    if not keys:
        return
    for fn in listeners:
        try:
            fn(keys)
        except Exception:  # a listener's bug must not turn a committed write into an error
            log.exception("provider listener %r failed on %d keys", fn, len(keys))


class MemoryProvider(Provider):
    """Records and markers in two dictionaries."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        atomic_batches=True, native_cas=True, weighted_answers=True, max_batch=10_000
    )
    kind: ClassVar[str] = "memory"

    def __init__(self, zone: str) -> None:
        super().__init__(zone)
        self._lock = threading.Lock()
        self._records: dict[EndpointKey, RecordSet] = {}
        self._markers: dict[EndpointKey, Marker] = {}
        # what ``read`` answers for each endpoint holding records or a marker, kept with every change of
        # either (an ``Observed`` is frozen: reads hand out the same one until the endpoint changes)
        self._seen: dict[EndpointKey, Observed] = {}
        self._listeners: list[Listener] = []
        self._version = 0
        self._token = 0  # the write token: moved by every _apply that writes, never by a hand edit
        self._rejects: dict[EndpointKey, str] = {}

    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        results: list[WriteResult] = []
        written: list[EndpointKey] = []
        with self._lock:
            token = self._token_text()
            for w in writes:
                current = self._markers.get(w.key)
                verdict = w.verdict(current, self._records.get(w.key))
                if verdict is APPLIED:  # ``is`` on module names, not ``match``: the simulator's hot path
                    results.append(Applied(w.key, written=False))  # I6: already there, no write
                elif verdict is CONFLICT:
                    results.append(Conflict(w.key, current))
                elif verdict is WRITE:
                    if w.token is not None and w.token != token:  # an automated write came since it was read
                        results.append(Conflict(w.key, current))
                        continue
                    if w.key in self._rejects:
                        results.append(Rejected(w.key, self._rejects[w.key]))
                        continue
                    self._records[w.key] = w.records
                    self._markers[w.key] = w.marker
                    self._saw_unlocked(w.key)
                    written.append(w.key)
                    results.append(Applied(w.key))
                else:
                    assert_never(verdict)
            if written:
                self.writes += len(written)
                self._version += 1
                self._token += 1
        notify(self._listeners, written)
        return results

    def _token_text(self) -> str:
        return TOKEN_ABSENT if not self._token else str(self._token)

    def write_token(self) -> str:
        with self._lock:
            return self._token_text()

    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        with self._lock:
            seen = self._seen
            return {k: seen.get(k, _ABSENT) for k in keys}

    def _saw_unlocked(self, key: EndpointKey) -> None:
        """Keep ``read``'s answer for ``key`` after a change of its records or marker."""
        r, m = self._records.get(key), self._markers.get(key)
        if r is None and m is None:
            self._seen.pop(key, None)
        else:
            self._seen[key] = Observed(r, m)

    def read_all(self) -> dict[EndpointKey, Observed]:
        with self._lock:
            keys = list(dict.fromkeys([*self._records, *self._markers]))
            return {k: Observed(self._records.get(k), self._markers.get(k)) for k in keys}

    def hand_edit(self, key: EndpointKey, records: RecordSet | None, marker: Marker | None) -> None:
        """Overwrite an endpoint's records and marker with no check at all (``None`` removes that part). The
        marker is kept as a row of columns, and read as the embedded provider reads one: a generation out of
        range is a corrupt marker (``model.corrupt_marker``)."""
        if marker is not None and not generation_in_range(marker.generation):
            marker = corrupt_marker(repr(marker), marker.owner)
        self._hand_edit(key, records, marker)

    def hand_edit_text(self, key: EndpointKey, records: RecordSet | None, text: str) -> None:
        """As ``hand_edit``, the marker written as TXT text and read as the providers that keep markers as
        text read it (RFC 2136, Route 53: ``model.read_marker``): the simulator's hand edits of text."""
        self._hand_edit(key, records, read_marker(text))

    def _hand_edit(self, key: EndpointKey, records: RecordSet | None, marker: Marker | None) -> None:
        with self._lock:
            if records is None:
                self._records.pop(key, None)
            else:
                self._records[key] = records
            if marker is None:
                self._markers.pop(key, None)
            else:
                self._markers[key] = marker
            self._saw_unlocked(key)
            self._version += 1
        log.info("hand edit of %s: records %s, marker %s", key, records and records.digest, marker)
        notify(self._listeners, [key])

    def reject(self, key: EndpointKey, reason: str | None) -> None:
        """Refuse every later write that would change ``key`` with ``Rejected(key, reason)`` (``None``:
        accept them again). The other writes of the same ``apply`` are written as usual."""
        with self._lock:
            if reason is None:
                self._rejects.pop(key, None)
            else:
                self._rejects[key] = reason

    def fork(self) -> MemoryProvider:
        """An independent copy, for the explorer: its own lock, no listeners; records and markers are
        frozen and shared, only the dictionaries are copied."""
        new = copy.copy(self)  # every attribute, the base class's too
        new._lock = threading.Lock()
        new._listeners = []
        with self._lock:
            new._records, new._markers, new._rejects = dict(self._records), dict(self._markers), dict(self._rejects)
            new._seen = dict(self._seen)
        return new

    def rejected(self) -> frozenset[EndpointKey]:
        """The endpoints whose writes ``reject`` refuses now."""
        with self._lock:
            return frozenset(self._rejects)

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(keys)`` after every commit that changed ``keys`` (in the writer's thread)."""
        with self._lock:
            self._listeners.append(fn)

    def data_version(self) -> int:
        """Changes when someone other than this instance changed the data: never, for memory.

        Every change of a memory provider goes through ``_apply`` or ``hand_edit``, which call the listeners;
        ``commits`` counts them for whoever wants a number.
        """
        return 0

    @property
    def commits(self) -> int:
        """Number of commits (applies that wrote something, and hand edits) so far."""
        with self._lock:
            return self._version
