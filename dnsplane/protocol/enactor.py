"""The enactor: brings a provider to the newest plan, one compare-and-swap per endpoint.

Guarantees:
- there is no "check first, write later": each write carries the exact marker
  read for that endpoint as its precondition, so a write made stale by a pause,
  a crash or another enactor fails as a whole at the provider (DESIGN.md point 1);
- a marker never goes down: an endpoint whose marker is past the generation
  wanted here is left alone;
- an endpoint is written only when its marker is behind, absent or does not
  match the content (I6: applying an applied plan costs no write);
- an invalid or empty record set is refused before any write, whatever the plan
  says (I1, I5), and journalled as "refused";
- a plan that changed k endpoints since this enactor last finished costs O(k)
  reads and writes.

Limits: it trusts nothing but the marker; content edited by hand under an
intact marker is found by reading the records too (the digest must match).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnsplane.errors import InvalidPlan
from dnsplane.model import (
    NO_GENERATION,
    Applied,
    Conflict,
    Desired,
    EndpointKey,
    Generation,
    Marker,
    Observed,
    Write,
    validate_record_set,
)
from dnsplane.protocol.messages import (
    Begin,
    ChangesLoaded,
    Command,
    Event,
    Failed,
    Finish,
    HeadRead,
    Journal,
    LoadChanges,
    Log,
    MarkersRead,
    ReadHead,
    ReadMarkers,
    Tick,
    WriteBatch,
    WriteDone,
)


def decide(desired: Desired, observed: Observed) -> str:
    """What to do for one endpoint. Returns "skip-newer", "skip-applied" or "write".

    | marker at the provider                 | records match desired | decision     |
    |----------------------------------------|-----------------------|--------------|
    | absent                                 | any                   | write        |
    | generation > desired.generation        | any                   | skip-newer   |
    | generation == desired, digest matches  | yes                   | skip-applied |
    | generation == desired, digest matches  | no (hand edit)        | write        |
    | generation == desired, digest differs  | any                   | write        |
    | generation < desired.generation        | any                   | write        |
    """
    marker = observed.marker
    if marker is None:
        return "write"
    if marker.generation > desired.generation:
        return "skip-newer"
    if marker.generation == desired.generation and marker.digest == desired.records.digest:
        records = observed.records
        if records is not None and records.digest == desired.records.digest:
            return "skip-applied"
    return "write"


@dataclass
class Enactor:
    """One redundant enactor. Several may run at once; the provider's CAS keeps them safe."""

    name: str
    zone: str
    batch_size: int = 1000
    applied_upto: Generation = NO_GENERATION  # newest generation this enactor finished
    working: Generation | None = None  # generation in flight
    pending: dict[EndpointKey, Desired] = field(default_factory=dict)
    in_batch: tuple[EndpointKey, ...] = ()
    sent: dict[EndpointKey, Write] = field(default_factory=dict)
    total: int = 0  # endpoints in the plan being enacted, for progress reports
    # Endpoints whose newest content this enactor refused (invalid), with that generation: until a
    # later change replaces it, this enactor does not report any generation at or past it as fully
    # applied, so the collector keeps the valid content those endpoints' markers still name (I3).
    refused: dict[EndpointKey, Generation] = field(default_factory=dict)
    busy: bool = False
    stats: dict[str, int] = field(default_factory=lambda: {"writes": 0, "conflicts": 0, "skips": 0, "refused": 0})

    def handle(self, event: Event) -> list[Command]:
        match event:
            case Tick():
                if self.busy:
                    return []
                self.busy = True
                return [ReadHead()]
            case HeadRead(head=head):
                if head <= self.applied_upto:
                    self.busy = False
                    return []
                self.working = head
                return [Begin(head), LoadChanges(self.applied_upto, head)]
            case ChangesLoaded(changes=changes):
                for key in changes:
                    self.refused.pop(key, None)  # a later change replaced what was refused
                refused = self._refuse_invalid(changes)
                self.pending = changes
                self.total = len(changes)
                return refused + self._next_batch()
            case MarkersRead(observed=observed):
                return self._on_markers(observed)
            case WriteDone(results=results):
                return self._on_results(results)
            case Failed(error=error):
                # Start over from the last finished generation: every step is re-decided
                # from a fresh marker read, so nothing done so far needs undoing.
                self.busy = False
                self.working = None
                self.pending = {}
                return [Log("warning", "enactor step failed; will retry", {"actor": self.name, "error": error})]
            case _:
                return []

    # ------------------------------------------------------------------ steps

    def _refuse_invalid(self, changes: dict[EndpointKey, Desired]) -> list[Command]:
        entries = []
        for key in list(changes):
            try:
                validate_record_set(key, changes[key].records, self.zone)
            except InvalidPlan as err:
                refused = changes.pop(key)
                self.refused[key] = refused.generation
                self.stats["refused"] += 1
                entries.append((key, "refused", None, refused.generation, str(err)))
        if not entries:
            return []
        return [
            Journal(tuple(entries)),
            Log("error", "refused invalid record sets", {"actor": self.name, "count": len(entries)}),
        ]

    def _next_batch(self) -> list[Command]:
        if not self.pending:
            return self._finish()
        keys = []
        for key in self.pending:
            keys.append(key)
            if len(keys) >= self.batch_size:
                break
        self.in_batch = tuple(keys)
        out: list[Command] = []
        if self.total > 4 * self.batch_size:  # long work: say how far it got
            done = self.total - len(self.pending)
            out.append(Log("info", "enacting", {"actor": self.name, "generation": self.working,
                                                "done": done, "of": self.total}))
        return [*out, ReadMarkers(self.in_batch)]

    def _on_markers(self, observed: dict[EndpointKey, Observed]) -> list[Command]:
        writes: list[Write] = []
        for key in self.in_batch:
            desired = self.pending[key]
            seen = observed.get(key, Observed(None, None))
            verdict = decide(desired, seen)
            if verdict == "write":
                marker = Marker(desired.generation, desired.records.digest)
                writes.append(Write(key, seen.marker, desired.records, marker))
            else:
                self.stats["skips"] += 1
                del self.pending[key]
        if not writes:
            return self._next_batch()
        self.sent = {w.key: w for w in writes}
        return [WriteBatch(tuple(writes))]

    def _on_results(self, results: list[Applied | Conflict]) -> list[Command]:
        entries = []
        for result in results:
            desired = self.pending.get(result.key)
            sent = self.sent.get(result.key)
            if desired is None or sent is None:
                continue
            before = sent.expect.generation if sent.expect else None
            match result:
                case Applied(key=key, written=False):
                    self.stats["skips"] += 1  # another writer got there with the same content
                    del self.pending[key]
                case Applied(key=key):
                    self.stats["writes"] += 1
                    del self.pending[key]
                    entries.append((key, "write", before, desired.generation, desired.records.digest))
                case Conflict(key=key, current=current):
                    # Someone wrote first: the endpoint stays pending and is re-read and
                    # re-decided against the marker that won.
                    self.stats["conflicts"] += 1
                    found = current.generation if current else None
                    entries.append((key, "conflict", before, desired.generation,
                                    f"marker changed to {found} before the write"))
        out: list[Command] = [Journal(tuple(entries))] if entries else []
        return out + self._next_batch()

    def _finish(self) -> list[Command]:
        done = self.working
        self.busy = False
        self.working = None
        self.in_batch = ()
        if done is None:
            return []
        self.applied_upto = done
        reported = min([done, *(Generation(g - 1) for g in self.refused.values())])
        return [Finish(reported), Log("info", "plan applied", {"actor": self.name, "generation": done})]

