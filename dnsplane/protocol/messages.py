"""The actor contract: the events drivers feed to actors, and the ``Step`` an actor answers with.

Every actor has one entry point, ``handle(event) -> Step``. Time comes in with every event
(``now``); nothing in ``protocol/`` reads a clock or draws a random number. A ``Step`` is
``effects`` (commands with no reply, carried out in order) and at most one ``request``, whose
reply the driver feeds back to the same actor. Each request class names its reply in its base
(``class ReadHead(Request[HeadRead])``; any request may also be answered ``Failed``), and every
command class says, as class-level data, which parts of the world it reads and writes
(``READS``/``WRITES``, sets of ``Resource``). Drivers derive from those what they need (which
commands a store outage fails, which parts of a state an explorer move depends on) instead of
listing commands by hand.

Who interprets a ``Step``: ``dnsplane.execute.Interpreter``, the one place commands meet a store,
a provider and DNS. The asyncio runtime, the simulator, the explorer and the test harness all
call it; only *when* a request is carried out differs (at once, or after a simulated latency, or
in an order the explorer chooses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar, get_args

from dnsplane.model import (
    NO_GENERATION,
    Desired,
    Dial,
    Endpoint,
    EndpointKey,
    Generation,
    HealthRecord,
    Observed,
    RecordSet,
    Write,
    WriteResult,
    ZoneGuard,
    quick_init,
)


class Resource(Enum):
    """A part of the world a command reads or writes (``Command.READS``, ``Command.WRITES``)."""

    HEAD = "the store's head generation"
    PLANS = "the store's plans, content and kept health"
    ROWS = "the store's in-flight and applied rows of the enactors"
    LAST_KNOWN_GOOD = "the store's last-known-good generation"
    JOURNAL = "the audit journal"
    PROVIDER = "the records and markers at the provider"
    DNS = "answers over DNS"


STORE_RESOURCES = frozenset({Resource.HEAD, Resource.PLANS, Resource.ROWS, Resource.LAST_KNOWN_GOOD,
                             Resource.JOURNAL})

# ---------------------------------------------------------------- events


@quick_init
@dataclass(frozen=True, slots=True)
class Tick:
    now: float


@quick_init
@dataclass(frozen=True, slots=True)
class HeadRead:
    now: float
    head: Generation
    head_at: float | None = None  # when the plan at ``head`` was created
    # the plan the enactor finished last (``ReadHead.known``) is not the store's any more: the store was
    # put back to a backup, and the number names another plan or none (a collected plan is not lost)
    lost: bool = False


@quick_init
@dataclass(frozen=True, slots=True)
class HeadPlanRead:
    now: float
    head: Generation
    created_at: float | None  # when the plan at ``head`` was created (None: no plan)


@quick_init
@dataclass(frozen=True, slots=True)
class ChangesLoaded:
    now: float
    changes: dict[EndpointKey, Desired]


@quick_init
@dataclass(frozen=True, slots=True)
class MarkersRead:
    now: float
    observed: dict[EndpointKey, Observed]
    newer: dict[EndpointKey, Desired] = field(default_factory=dict)


@quick_init
@dataclass(frozen=True, slots=True)
class ContentLoaded:
    now: float
    content: dict[EndpointKey, Desired]


@quick_init
@dataclass(frozen=True, slots=True)
class WriteDone:
    now: float
    results: list[WriteResult]


@quick_init
@dataclass(frozen=True, slots=True)
class Failed:
    """A request failed; ``retryable`` errors are tried again after ``retry_after``. ``unsent``: it was
    refused before anything left (the operator's freeze), so a write it carried certainly did not land."""

    now: float
    error: str
    retryable: bool = True
    retry_after: float = 0.5
    unsent: bool = False


@quick_init
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


@quick_init
@dataclass(frozen=True, slots=True)
class DialsChanged:
    """The operators' pins and drains as the store holds them now (``dnsplane pin`` / ``drain``); the
    planner replans the endpoints whose dials changed, and at each ``Tick`` those whose dial expired."""

    now: float
    dials: tuple[Dial, ...]


@quick_init
@dataclass(frozen=True, slots=True)
class HoldConfirmed:
    """An operator confirmed the plan the zone guard holds (``dnsplane confirm GENERATION``): the planner
    publishes it if it still holds one to be published as ``generation``."""

    now: float
    generation: Generation


@quick_init
@dataclass(frozen=True, slots=True)
class FleetChanged:
    """The fleet file was re-read and validated whole (``dnsplane reload`` or SIGHUP): from now on
    ``endpoints`` is the fleet. The planner plans it; endpoints missing from it are no
    longer planned. Fed to the enactors and the verifier too, it RELEASES the endpoints missing
    from it (never written, verified or recreated again, I7) and sets which are adopted
    (``Ownership.of_fleet``)."""

    now: float
    endpoints: tuple[Endpoint, ...]
    guard: ZoneGuard | None = None  # the zone guard from now on (the planner's; the others ignore it)


@quick_init
@dataclass(frozen=True, slots=True)
class DesiredLoaded:
    now: float
    head: Generation
    desired: dict[EndpointKey, Desired]
    health: dict[str, HealthRecord] = field(default_factory=dict)  # the health the store kept, per target
    head_at: float | None = None  # when the plan at ``head`` was created (the planner's ``Publish.expect_at``)


@quick_init
@dataclass(frozen=True, slots=True)
class Published:
    now: float
    generation: Generation
    created_at: float | None = None  # the new plan's creation time, as the store keeps it


@quick_init
@dataclass(frozen=True, slots=True)
class PublishConflict:
    now: float


@quick_init
@dataclass(frozen=True, slots=True)
class WatermarkRead:
    now: float
    watermark: Generation
    oldest: Generation  # the oldest plan the store keeps (0: none): nothing to collect when at the watermark


@quick_init
@dataclass(frozen=True, slots=True)
class Collected:
    now: float
    plans_deleted: int


@quick_init
@dataclass(frozen=True, slots=True)
class Resolution:
    """What one endpoint looks like from outside: a DNS answer plus the provider's state."""

    rcode: str  # "NOERROR", "NXDOMAIN", "SERVFAIL", "TIMEOUT", ...
    addresses: tuple[str, ...]  # addresses in the DNS answer
    dns_marker: str | None  # marker TXT text as served over DNS
    observed: Observed  # what the provider holds


@quick_init
@dataclass(frozen=True, slots=True)
class Resolved:
    now: float
    results: dict[EndpointKey, Resolution]


Event = (
    Tick
    | HeadRead
    | HeadPlanRead
    | ChangesLoaded
    | MarkersRead
    | ContentLoaded
    | WriteDone
    | Failed
    | HealthObserved
    | FleetChanged
    | DialsChanged
    | HoldConfirmed
    | DesiredLoaded
    | Published
    | PublishConflict
    | WatermarkRead
    | Collected
    | Resolved
)

# ---------------------------------------------------------------- commands

H, P, R, L, J = Resource.HEAD, Resource.PLANS, Resource.ROWS, Resource.LAST_KNOWN_GOOD, Resource.JOURNAL
PROV, DNS = Resource.PROVIDER, Resource.DNS
ReplyT = TypeVar("ReplyT")


class Command:
    """A command an actor returns in a ``Step``; ``READS`` and ``WRITES`` say what it touches."""

    __slots__ = ()
    READS: ClassVar[frozenset[Resource]] = frozenset()
    WRITES: ClassVar[frozenset[Resource]] = frozenset()
    COLLECTS: ClassVar[bool] = False  # deletes plans: what referenced them must still be there (I3)


class Effect(Command):
    """A command with no reply; the effects of a step are carried out in order, before its request."""

    __slots__ = ()


class Request(Command, Generic[ReplyT]):
    """A command with a reply, named in the base: ``class ReadHead(Request[HeadRead])``.

    ``replies`` (derived from the base) are the event types it may be answered with besides
    ``Failed``, which answers any request that fails, for any reason."""

    __slots__ = ()
    replies: ClassVar[tuple[type, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if getattr(base, "__origin__", None) is Request:
                (reply,) = get_args(base)
                cls.replies = get_args(reply) or (reply,)


@quick_init
@dataclass(frozen=True, slots=True)
class ReadHead(Request[HeadRead]):
    """Reply: the head, and whether the store still holds the plan ``known`` created at ``known_at``
    (the generation the enactor finished last, as the store said it was created)."""

    READS = frozenset({H, P})
    known: Generation = NO_GENERATION
    known_at: float | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class ReadHeadPlan(Request[HeadPlanRead]):
    """Reply: the head and when the plan there was created (an idle planner's check that the plan at the
    head is the one it knows: a store put back to a backup shows another under the same number)."""

    READS = frozenset({H, P})


@quick_init
@dataclass(frozen=True, slots=True)
class LoadChanges(Request[ChangesLoaded]):
    """Reply: store.changed_between(after, upto)."""

    READS = frozenset({P})
    after: Generation
    upto: Generation


@quick_init
@dataclass(frozen=True, slots=True)
class ReadMarkers(Request[MarkersRead]):
    """Reply: provider.read(keys); with ``newer_than``, then, for the endpoints that came back
    empty (no records, no marker) and that a plan newer than it changed, their newest content,
    read from the store after the provider (``MarkersRead.newer``; the store is not read when
    none came back empty)."""

    READS = frozenset({PROV, P})
    keys: tuple[EndpointKey, ...]
    newer_than: Generation | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class LoadContentAt(Request[ContentLoaded]):
    """Reply: store.content_at(pairs)."""

    READS = frozenset({P})
    pairs: tuple[tuple[EndpointKey, Generation], ...]


@quick_init
@dataclass(frozen=True, slots=True)
class WriteBatch(Request[WriteDone]):
    """Reply: provider.apply(writes). With ``fence`` (the newest generation whose changes the writer
    had read from the store), each write is first checked against the store, in the same step, before
    the provider: if a plan newer than both the fence and the write's own generation changed the
    endpoint, the write is not sent and comes back ``Conflict(key, current, newer=that plan)``; the
    others carry the provider's write token, read just before the store (``Write.token``).

    The provider's compare-and-swap alone cannot tell an endpoint a person put back from the state a
    delayed writer read: deleted whole by hand after a newer plan's write, it is "nothing" again
    (slow-reads 67, 565, 759; hand-edits 5357: I2, I3); a marker written by hand with no ``p=`` after a
    deletion can name an older plan whose content the newer one set again (A -> B -> A; hand-edits
    3543); an older marker restored byte for byte over records A -> B -> A made its own again is exactly
    that state (restored-markers 34). A newer plan published before the store is read is seen there; one
    published after it is written after the token was read, and that write moved it, so the old write
    fails at the provider (hand-edits 5357, 8896: docs/design.md, "The fence's window")."""

    READS = frozenset({PROV, P})
    WRITES = frozenset({PROV})
    writes: tuple[Write, ...]
    fence: Generation | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class LoadDesired(Request[DesiredLoaded]):
    """Reply: the head and store.desired(None, head), with the health the store kept."""

    READS = frozenset({H, P})


@quick_init
@dataclass(frozen=True, slots=True)
class Publish(Request[Published | PublishConflict]):
    """Reply: Published, or PublishConflict when the head moved, or when the plan at the head is not
    the one created at ``expect_at`` (a store put back to a backup, or a head lifted by ``AdvanceHead``,
    shows the number under other content). Once published, ``health`` (the targets whose acted-on
    health changed since the store last kept it) is kept too."""

    READS = frozenset({H, P})  # the head, and when the plan there was created (``expect_at``)
    WRITES = frozenset({H, P})
    expect_head: Generation
    changes: tuple[tuple[EndpointKey, RecordSet], ...]
    health: tuple[tuple[str, HealthRecord], ...] = ()
    expect_at: float | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class ReadWatermark(Request[WatermarkRead]):
    READS = frozenset({H, R, L, P})  # and the oldest plan


@quick_init
@dataclass(frozen=True, slots=True)
class Collect(Request[Collected]):
    """Reply: store.collect(watermark): the plans below it deleted, if it still holds."""

    READS = frozenset({H, R, L})
    WRITES = frozenset({P})
    COLLECTS = True
    watermark: Generation


@quick_init
@dataclass(frozen=True, slots=True)
class Resolve(Request[Resolved]):
    """Reply: query DNS for each key and read the provider."""

    READS = frozenset({DNS, PROV})
    keys: tuple[EndpointKey, ...]


@quick_init
@dataclass(frozen=True, slots=True)
class Begin(Effect):
    READS = frozenset({P})  # the store refuses a generation older than every plan kept (collected)
    WRITES = frozenset({R})
    generation: Generation


@quick_init
@dataclass(frozen=True, slots=True)
class Finish(Effect):
    READS = frozenset({H})  # nothing above the head is recorded as applied
    WRITES = frozenset({R})
    generation: Generation


@quick_init
@dataclass(frozen=True, slots=True)
class AdvanceHead(Effect):
    READS = frozenset({H})
    WRITES = frozenset({H})
    at_least: Generation


@quick_init
@dataclass(frozen=True, slots=True)
class SetLastKnownGood(Effect):
    READS = frozenset({P})  # refused below the oldest plan
    WRITES = frozenset({L})
    generation: Generation


@quick_init
@dataclass(frozen=True, slots=True)
class Journal(Effect):
    """Append to the audit journal: (key, action, before, after, detail) per entry."""

    WRITES = frozenset({J})
    entries: tuple[tuple[EndpointKey, str, Generation | None, Generation | None, str], ...]


@quick_init
@dataclass(frozen=True, slots=True)
class Log(Effect):
    """A structured log line from an actor."""

    level: str
    message: str
    fields: dict[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------- steps


@dataclass(slots=True)
class Step:
    """What an actor answers an event with: ``effects`` in order, then at most one ``request``.

    Never changed once made (treat it as frozen): it is not declared ``frozen`` only because a
    frozen dataclass takes about 2.5 times as long to build, and the simulator builds millions."""

    effects: tuple[Effect, ...] = ()
    request: Request[Any] | None = None

    def after(self, effects: tuple[Effect, ...] | list[Effect]) -> Step:
        """This step with ``effects`` carried out first."""
        return Step((*effects, *self.effects), self.request) if effects else self

    def commands(self) -> tuple[Command, ...]:
        """Effects then the request, in the order they are carried out (for traces and tests)."""
        return self.effects if self.request is None else (*self.effects, self.request)


NOTHING = Step()


def request(req: Request[Any]) -> Step:
    """A step that only asks ``req``."""
    return Step((), req)


def effects(*commands: Effect) -> Step:
    """A step of effects only."""
    return Step(commands)


# Every command class of the safe protocol (the legacy design's are in ``protocol/legacy.py``).
REQUEST_CLASSES: tuple[type[Request[Any]], ...] = (
    ReadHead, LoadChanges, ReadMarkers, LoadContentAt, WriteBatch, LoadDesired, Publish, ReadWatermark, Collect,
    Resolve, ReadHeadPlan,
)
EFFECT_CLASSES: tuple[type[Effect], ...] = (Begin, Finish, AdvanceHead, SetLastKnownGood, Journal, Log)
