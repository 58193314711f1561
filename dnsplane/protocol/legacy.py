"""THE DESIGN THAT FAILED. The enactor of AWS DynamoDB's DNS automation before 19 October 2025.

Kept only so that the simulator can reproduce the outage of that night on demand
and show, beside it, that the safe protocol (enactor.py, collector.py) never
produces it. It is never an option for a real provider: its writes are
``ForceWrite`` commands, which only the simulator executes (the runtime's
``Interpreter`` does not know them and fails the step).

What it does, as the AWS post-event summary (aws.amazon.com/message/101925)
describes:

1. **Check once, at the start.** It loads the newest plan and reads the markers,
   and goes on only if its plan is newer than every generation applied.
   It never checks again, however long the rest takes.
2. **Unconditional writes.** It then writes every endpoint of the plan, one at
   a time, with no precondition: whatever the provider holds is overwritten.
   A delayed enactor therefore writes an old plan over a newer one.
3. **Clean-up that deletes records.** After applying generation g it deletes
   every plan "significantly older" (below ``g - keep``) and, with each deleted
   plan, the records that plan created: an endpoint whose marker names a
   deleted plan is left with no records at all. When a delayed enactor has just
   written an old plan, that is an empty record set (I1), which nothing repairs.

None of DESIGN.md's invariants is promised here; the simulator exists to show
which ones break.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from dnsplane.model import NO_GENERATION, Desired, EndpointKey, Generation, Marker, RecordSet
from dnsplane.protocol.identity import CONFIG, NOTE, ROUND
from dnsplane.protocol.messages import (
    NOTHING,
    DesiredLoaded,
    Event,
    Failed,
    Finish,
    LoadDesired,
    Log,
    MarkersRead,
    ReadMarkers,
    Request,
    Resource,
    Step,
    Tick,
    WriteDone,
    effects,
    request,
)

LEGACY_KEEP = 3  # plans older than (applied - LEGACY_KEEP) count as "significantly older"


@dataclass(frozen=True, slots=True)
class CleanedUp:
    now: float
    plans_deleted: int
    emptied: tuple[EndpointKey, ...]


@dataclass(frozen=True, slots=True)
class ForceWrite(Request[WriteDone]):
    """Overwrite one endpoint's records and marker with no precondition.

    Simulator only: no real provider offers an unconditional write to dnsplane.
    """

    WRITES = frozenset({Resource.PROVIDER})
    key: EndpointKey
    records: RecordSet
    marker: Marker


@dataclass(frozen=True, slots=True)
class CleanUp(Request[CleanedUp]):
    """Delete plans below ``keep_from`` (the store re-reads its rows, as ``collect`` does) and the
    records those plans created."""

    READS = frozenset({Resource.HEAD, Resource.ROWS, Resource.LAST_KNOWN_GOOD, Resource.PLANS,
                       Resource.PROVIDER})
    WRITES = frozenset({Resource.PLANS, Resource.PROVIDER})
    COLLECTS = True
    keep_from: Generation


LEGACY_REQUESTS = (ForceWrite, CleanUp)


class LegacyPhase(Enum):
    """What a legacy enactor waits for: the reply to the request it made last, or nothing (``IDLE``)."""

    IDLE = "no round in progress: the next Tick starts one"
    PLAN = "the newest plan (LoadDesired)"
    MARKERS = "the markers of every endpoint of the plan (ReadMarkers)"
    WRITE = "one unconditional write (ForceWrite)"
    CLEANUP = "the clean-up of older plans and their records (CleanUp)"

# Python 3.11 reads an enum member through its class slowly (``EnumType.__getattr__``): the paths the
# simulator runs at every step read these module constants.
_IDLE, _PLAN, _MARKERS, _WRITE, _CLEANUP = (LegacyPhase.IDLE, LegacyPhase.PLAN, LegacyPhase.MARKERS,
                                             LegacyPhase.WRITE, LegacyPhase.CLEANUP)


@dataclass
class LegacyEnactor:
    """One of the redundant enactors of the failed design (check once, write blindly, clean up)."""

    name: str = field(metadata=CONFIG)
    zone: str = field(metadata=CONFIG)
    keep: int = field(default=LEGACY_KEEP, metadata=CONFIG)
    applied_upto: Generation = NO_GENERATION
    working: Generation | None = field(default=None, metadata=ROUND)
    plan: dict[EndpointKey, Desired] = field(default_factory=dict, metadata=ROUND)
    queue: list[EndpointKey] = field(default_factory=list, metadata=ROUND)
    phase: LegacyPhase = LegacyPhase.IDLE  # what it waits for (``busy``: anything)
    stats: dict[str, int] = field(default_factory=lambda: {"writes": 0, "skips": 0, "cleanups": 0, "emptied": 0},
                                  metadata=NOTE)

    @property
    def busy(self) -> bool:
        """A round is in progress: it waits for a reply, and ignores its ticks meanwhile."""
        return self.phase is not _IDLE

    def handle(self, event: Event | CleanedUp) -> Step:
        match event:
            case Tick():
                if self.phase is not _IDLE:
                    return NOTHING
                self.phase = _PLAN
                return request(LoadDesired())
            case DesiredLoaded(head=head, desired=desired):
                # Taken as the reply whatever the phase (the simulator redelivers a stale plan to an
                # idle enactor).
                if head <= self.applied_upto:
                    self.phase = _IDLE
                    return NOTHING
                self.working = head
                self.plan = dict(desired)
                self.phase = _MARKERS
                return request(ReadMarkers(tuple(sorted(desired))))
            case MarkersRead(observed=observed):
                # The one and only staleness check: is this plan newer than what is applied?
                applied = max((o.marker.generation for o in observed.values() if o.marker), default=NO_GENERATION)
                assert self.working is not None
                if applied >= self.working:
                    self.stats["skips"] += 1
                    return self._done(write_finish=False)
                self.queue = sorted(self.plan)
                return self._next()
            case WriteDone():
                self.stats["writes"] += 1
                return self._next()
            case CleanedUp(emptied=emptied):
                self.phase = _IDLE
                self.stats["cleanups"] += 1
                self.stats["emptied"] += len(emptied)
                return NOTHING
            case Failed(error=error):
                self.phase = _IDLE
                self.working = None
                self.queue = []
                return effects(Log("warning", "legacy enactor step failed", {"actor": self.name, "error": error}))
            case _:
                return NOTHING

    def _next(self) -> Step:
        if not self.queue:
            return self._done(write_finish=True)
        key = self.queue.pop(0)
        desired = self.plan[key]
        assert self.working is not None
        self.phase = _WRITE
        return request(ForceWrite(key, desired.records, Marker(self.working, desired.records.digest)))

    def _done(self, write_finish: bool) -> Step:
        done = self.working
        self.working = None
        self.plan = {}
        if done is None or not write_finish:
            self.phase = _IDLE
            return NOTHING
        self.applied_upto = done
        self.phase = _CLEANUP
        return Step((Finish(done),), CleanUp(Generation(done - self.keep)))
