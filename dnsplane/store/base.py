"""The plan store interface: plans, in-flight registrations, the journal.

Guarantees every store keeps (tests/store/test_store_conformance.py checks them):
- generations only grow, and ``publish`` is a compare-and-swap on the head:
  two planners publishing at once never get the same number for two plans;
- a plan stores only the endpoints it changed (O(k) for k changes); the desired
  content of an endpoint at generation g is its newest change at or below g;
- ``collect`` deletes plans below the low watermark it was given, and only if
  the store's current watermark is still at least that (the delete is
  conditional on the watermark read). It keeps, for every endpoint, the newest
  change at or below the watermark: deleting a plan never removes content that
  some endpoint still holds, and never changes a DNS record (stores do not
  touch providers);
- no head ever passes ``model.MAX_GENERATION``: ``advance_head`` past it and a
  ``publish`` at it raise ``GenerationOutOfRange`` (a hand-written marker
  ``g=9223372036854775807`` once became the head, and every publish overflowed);
- ``save_health`` / ``health``: the health the planner last acted on, per target,
  survives a restart of the store's process (the SQLite store) as plans do;
- ``set_freeze`` / ``frozen``: the operator's freeze (``dnsplane freeze``) is one row every
  process on the store reads, set or cleared together with its line in the operators' journal
  (``operator_actions``), and it survives restarts as plans do;
- ``set_dial`` / ``lift_dial`` / ``expire_dials`` / ``dials``: the operators' pins and drains, one per
  (kind, subject), each change journalled in the same transaction, kept across restarts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dnsplane.model import Desired, Dial, EndpointKey, Generation, HealthRecord, RecordSet

INFLIGHT_TTL = 600.0  # an in-flight registration older than this is taken as a crashed enactor


@dataclass(frozen=True, slots=True)
class PlanInfo:
    generation: Generation
    created_at: float
    planner: str
    changes: int


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One event in an endpoint's history: a write, a conflict, a refusal, a repair."""

    at: float
    actor: str
    key: EndpointKey
    action: str  # "write" | "repair" | "conflict" | "refused" | "skip"
    before: Generation | None
    after: Generation | None
    detail: str = ""


# The journal actions that wrote an endpoint's records (the enactors' writes, the verifier's repairs and
# takeovers); a "release" or "reclaim" rewrites the marker only
WRITE_ACTIONS = ("write", "repair", "adopt")


@dataclass(frozen=True, slots=True)
class Freeze:
    """The operator's freeze: no automated write (enactors, collector, verifier repairs) until it is
    lifted. It has no expiry: only ``dnsplane unfreeze`` ends it."""

    at: float
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """One line of the operators' journal: who did what by hand, when and why."""

    at: float
    by: str
    action: str  # "freeze" | "unfreeze" | "pin" | "unpin" | "drain" | "undrain" | "expired" | "held" | "confirm"
    reason: str
    subject: str = ""  # what it acted on: an endpoint (pin), a target (drain); "" for the whole zone


class Store(ABC):
    @abstractmethod
    def head(self) -> Generation:
        """The newest published generation (0 when none)."""

    @abstractmethod
    def publish(
        self, expect_head: Generation, changes: Sequence[tuple[EndpointKey, RecordSet]], now: float, planner: str,
        expect_at: float | None = None,
    ) -> Generation | None:
        """Publish ``changes`` as generation ``expect_head + 1`` iff the head is still ``expect_head`` and,
        with ``expect_at``, the plan at the head is still the one created at ``expect_at``. The number
        alone is not the plan: a store put back to a backup hands its numbers out again, and
        ``advance_head`` can lift it back to the very number a planner published last, under other
        content; a planner that published over it would plan on content the store no longer holds.

        Returns the new generation, or None when another planner published first (or the plan at the
        head is not the one the planner knows: it reloads).
        """

    def oldest_plan(self) -> Generation:
        """The oldest plan kept (0: none). Stores override this scan."""
        return min((p.generation for p in self.plans()), default=Generation(0))

    def created_at(self, generation: Generation) -> float | None:
        """When plan ``generation`` was created (None: no such plan). Stores override this scan."""
        return next((p.created_at for p in self.plans() if p.generation == generation), None)

    @abstractmethod
    def advance_head(self, at_least: Generation, now: float) -> Generation:
        """Make the head at least ``at_least`` (an empty plan), e.g. past a marker seen at a provider."""

    @abstractmethod
    def desired(self, keys: Iterable[EndpointKey] | None, at: Generation) -> dict[EndpointKey, Desired]:
        """Newest change at or below ``at`` for each key (all keys when ``keys`` is None)."""

    @abstractmethod
    def content_at(self, pairs: Sequence[tuple[EndpointKey, Generation]]) -> dict[EndpointKey, Desired]:
        """Per (key, g): the key's newest change at or below g (absent when none is stored).

        Enactors use it to check that a marker's digest is the content of the generation
        it names (a marker lowered by hand is not).
        """

    @abstractmethod
    def changed_between(self, after: Generation, upto: Generation) -> dict[EndpointKey, Desired]:
        """Keys changed by a plan in (after, upto], each with its newest change at or below ``upto``."""

    @abstractmethod
    def plans(self) -> list[PlanInfo]:
        """Plans still stored, oldest first."""

    @abstractmethod
    def begin(self, actor: str, generation: Generation, now: float) -> None:
        """Register ``actor`` as in flight on ``generation`` (keeps that plan from the collector).

        Raises ``PlanCollected`` when ``generation`` is older than the oldest plan kept: its content
        may be gone, and no one may work on it (I3; chaos 21244: an old head redelivered to an
        enactor after the collector deleted that plan)."""

    @abstractmethod
    def finish(self, actor: str, generation: Generation, now: float) -> None:
        """``actor`` brought every endpoint to at least ``generation``; it is no longer in flight.

        A generation above the head is not recorded as applied: no plan of this store has it (the actor
        worked on plans of a store since put back to a backup), and counting it would raise the low
        watermark past plans that markers written since still name."""

    @abstractmethod
    def set_last_known_good(self, generation: Generation) -> None:
        """The verifier's newest generation whose content it saw served correctly.

        Raises ``PlanCollected`` when ``generation`` is older than the oldest plan kept, as ``begin``
        does: the verifier judged DNS against that head, and while its reply was on its way the
        enactors moved on and the collector deleted it (the explorer found it once reads could go
        stale, issue 13). A last-known-good naming gone content would be a reference to nothing (I3)."""

    @abstractmethod
    def low_watermark(self, now: float) -> Generation:
        """Smallest generation still referenced: min(newest fully applied, in-flight, last-known-good)."""

    @abstractmethod
    def collect(self, watermark: Generation, now: float) -> int:
        """Delete plans below ``watermark`` iff the current watermark is still >= it. Returns plans deleted."""

    @abstractmethod
    def record(self, entries: Sequence[JournalEntry]) -> None:
        """Append to the audit journal."""

    @abstractmethod
    def history(self, key: EndpointKey) -> list[JournalEntry]:
        """Every journal entry of ``key``, oldest first."""

    @abstractmethod
    def recent_journal(self, limit: int) -> list[JournalEntry]:
        """The newest ``limit`` journal entries of every endpoint, oldest first (the dashboard's timeline)."""

    @abstractmethod
    def last_writes(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, JournalEntry]:
        """Each of ``keys``' newest journal entry that wrote its records (``WRITE_ACTIONS``), where it has one
        (the dashboard's endpoints table: the generation written and when)."""

    @abstractmethod
    def applied(self) -> dict[str, Generation]:
        """Per enactor: the newest generation it finished."""

    # -- health the planner acted on ------------------------------------------

    @abstractmethod
    def save_health(self, records: Mapping[str, HealthRecord]) -> None:
        """Keep, per target id, the health the planner last acted on (replacing what was kept)."""

    @abstractmethod
    def health(self) -> dict[str, HealthRecord]:
        """Per target id, the health last kept by ``save_health`` (empty when none was kept).

        A restarted planner starts from it, so a target known down before a restart is not
        served again after it while its first checks are pending."""

    # -- the operator's freeze -----------------------------------------------

    @abstractmethod
    def set_freeze(self, freeze: Freeze | None, action: OperatorAction) -> Freeze | None:
        """Set (``freeze``) or lift (None) the freeze and journal ``action`` with it, in one transaction;
        return the freeze it replaced. Setting a freeze over one, or lifting none, changes nothing and
        journals nothing: the caller sees why from what is returned."""

    @abstractmethod
    def frozen(self) -> Freeze | None:
        """The freeze in force, or None."""

    @abstractmethod
    def operator_actions(self) -> list[OperatorAction]:
        """The operators' journal, oldest first."""

    @abstractmethod
    def record_action(self, action: OperatorAction) -> None:
        """Append ``action`` to the operators' journal (a confirmation, a plan the zone guard held)."""

    @abstractmethod
    def confirmation(self, generation: Generation, since: float) -> OperatorAction | None:
        """The newest ``confirm`` of ``generation`` journalled at or after ``since`` (None: none)."""

    # -- the operators' dials --------------------------------------------------

    @abstractmethod
    def set_dial(self, dial: Dial, action: OperatorAction,
                 check: Callable[[list[Dial]], None] | None = None) -> Dial | None:
        """Set ``dial``, replacing the one of its kind and subject (returned), and journal ``action``. ``check``
        is called first, in the same transaction, with every dial kept: what it raises refuses the change (two
        drains at once are judged one after the other, each seeing the other's)."""

    @abstractmethod
    def lift_dial(self, kind: str, subject: str, action: OperatorAction) -> Dial | None:
        """Remove the dial of ``kind`` and ``subject`` and journal ``action``; None (and nothing
        journalled) when there is none."""

    @abstractmethod
    def expire_dials(self, now: float, by: str) -> list[Dial]:
        """Remove the dials expired at ``now``, each journalled as ``expired`` by ``by``; return them."""

    @abstractmethod
    def dials(self) -> list[Dial]:
        """Every dial kept (expired ones too until ``expire_dials`` removes them), by kind and subject."""

    def owner_id(self) -> str:
        """The owner id of the installation this store belongs to (I7: every marker it writes carries
        it). A store that persists one (SQLite: a ``meta`` row, generated once) overrides this; "" is the
        owner of a world without owner ids (the memory store unless given one)."""
        owner = getattr(self, "owner", "")
        return owner if isinstance(owner, str) else ""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
