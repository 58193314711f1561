"""Events that drivers feed to actors, and commands that actors return.

Every actor has one entry point, ``handle(event) -> list[Command]``. Time comes in
with every event (``now``); nothing in ``protocol/`` reads a clock or draws a
random number. Of the commands one ``handle`` returns, all but the last are
*effects* (no reply); the last may be a *request*, whose reply the driver feeds
back to the same actor as the event named beside it below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnsplane.model import (
    Desired,
    Endpoint,
    EndpointKey,
    Generation,
    HealthRecord,
    Observed,
    RecordSet,
    Write,
    WriteResult,
)

# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Tick:
    now: float


@dataclass(frozen=True, slots=True)
class HeadRead:
    now: float
    head: Generation


@dataclass(frozen=True, slots=True)
class ChangesLoaded:
    now: float
    changes: dict[EndpointKey, Desired]


@dataclass(frozen=True, slots=True)
class MarkersRead:
    now: float
    observed: dict[EndpointKey, Observed]
    newer: dict[EndpointKey, Desired] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContentLoaded:
    now: float
    content: dict[EndpointKey, Desired]


@dataclass(frozen=True, slots=True)
class WriteDone:
    now: float
    results: list[WriteResult]


@dataclass(frozen=True, slots=True)
class Failed:
    """A request failed; ``retryable`` errors are tried again after ``retry_after``."""

    now: float
    error: str
    retryable: bool = True
    retry_after: float = 0.5


@dataclass(frozen=True, slots=True)
class HealthObserved:
    """One health check's result: ``ok`` True (up), False (down), or None (unknown).

    Unknown is a check that failed for a reason on dnsplane's side, not the target's: no file
    descriptors or buffers, a checker starved of CPU so its own timeout fired late, a checker cut
    off. The planner counts it toward neither ``rise`` nor ``fall``: it never moves weight."""

    now: float
    target_id: str
    ok: bool | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FleetChanged:
    """The fleet file was re-read and validated whole (``dnsplane reload`` or SIGHUP): from now on
    ``endpoints`` is the fleet. The planner plans it; endpoints missing from it are no
    longer planned. Fed to the enactors and the verifier too, it RELEASES the endpoints missing
    from it (never written, verified or recreated again, I7) and sets which are adopted
    (``Ownership.of_fleet``)."""

    now: float
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class DesiredLoaded:
    now: float
    head: Generation
    desired: dict[EndpointKey, Desired]
    health: dict[str, HealthRecord] = field(default_factory=dict)  # the health the store kept, per target


@dataclass(frozen=True, slots=True)
class Published:
    now: float
    generation: Generation


@dataclass(frozen=True, slots=True)
class PublishConflict:
    now: float


@dataclass(frozen=True, slots=True)
class WatermarkRead:
    now: float
    watermark: Generation


@dataclass(frozen=True, slots=True)
class Collected:
    now: float
    plans_deleted: int


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one endpoint looks like from outside: a DNS answer plus the provider's state."""

    rcode: str  # "NOERROR", "NXDOMAIN", "SERVFAIL", "TIMEOUT", ...
    addresses: tuple[str, ...]  # addresses in the DNS answer
    dns_marker: str | None  # marker TXT text as served over DNS
    observed: Observed  # what the provider holds


@dataclass(frozen=True, slots=True)
class Resolved:
    now: float
    results: dict[EndpointKey, Resolution]


Event = (
    Tick
    | HeadRead
    | ChangesLoaded
    | MarkersRead
    | ContentLoaded
    | WriteDone
    | Failed
    | HealthObserved
    | FleetChanged
    | DesiredLoaded
    | Published
    | PublishConflict
    | WatermarkRead
    | Collected
    | Resolved
)

# ---------------------------------------------------------------- commands: requests


@dataclass(frozen=True, slots=True)
class ReadHead:
    """Reply: HeadRead."""


@dataclass(frozen=True, slots=True)
class LoadChanges:
    """Reply: ChangesLoaded with store.changed_between(after, upto)."""

    after: Generation
    upto: Generation


@dataclass(frozen=True, slots=True)
class ReadMarkers:
    """Reply: MarkersRead with provider.read(keys); with ``newer_than``, then, for the endpoints
    that came back empty (no records, no marker) and that a plan newer than it changed, their
    newest content, read from the store after the provider (``MarkersRead.newer``; the store is
    not read when none came back empty)."""

    keys: tuple[EndpointKey, ...]
    newer_than: Generation | None = None


@dataclass(frozen=True, slots=True)
class LoadContentAt:
    """Reply: ContentLoaded with store.content_at(pairs)."""

    pairs: tuple[tuple[EndpointKey, Generation], ...]


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Reply: WriteDone with provider.apply(writes)."""

    writes: tuple[Write, ...]


@dataclass(frozen=True, slots=True)
class LoadDesired:
    """Reply: DesiredLoaded with the head and store.desired(None, head)."""


@dataclass(frozen=True, slots=True)
class Publish:
    """Reply: Published, or PublishConflict when the head moved. Once published, ``health``
    (the targets whose acted-on health changed since the store last kept it) is kept too."""

    expect_head: Generation
    changes: tuple[tuple[EndpointKey, RecordSet], ...]
    health: tuple[tuple[str, HealthRecord], ...] = ()


@dataclass(frozen=True, slots=True)
class ReadWatermark:
    """Reply: WatermarkRead."""


@dataclass(frozen=True, slots=True)
class Collect:
    """Reply: Collected."""

    watermark: Generation


@dataclass(frozen=True, slots=True)
class Resolve:
    """Reply: Resolved: query DNS for each key and read the provider."""

    keys: tuple[EndpointKey, ...]


# ---------------------------------------------------------------- commands: effects


@dataclass(frozen=True, slots=True)
class Begin:
    generation: Generation


@dataclass(frozen=True, slots=True)
class Finish:
    generation: Generation


@dataclass(frozen=True, slots=True)
class AdvanceHead:
    at_least: Generation


@dataclass(frozen=True, slots=True)
class SetLastKnownGood:
    generation: Generation


@dataclass(frozen=True, slots=True)
class Journal:
    """Append to the audit journal: (key, action, before, after, detail) per entry."""

    entries: tuple[tuple[EndpointKey, str, Generation | None, Generation | None, str], ...]


@dataclass(frozen=True, slots=True)
class Log:
    """A structured log line from an actor."""

    level: str
    message: str
    fields: dict[str, object] = field(default_factory=dict)


Request = (
    ReadHead | LoadChanges | ReadMarkers | LoadContentAt | WriteBatch | LoadDesired | Publish | ReadWatermark
    | Collect | Resolve
)
Effect = Begin | Finish | AdvanceHead | SetLastKnownGood | Journal | Log
Command = Request | Effect
