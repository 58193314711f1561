"""The enactor: brings a provider to the newest plan, one compare-and-swap per endpoint.

Guarantees:
- there is no "check first, write later": each write carries the exact marker
  read for that endpoint as its precondition, so a write made stale by a pause,
  a crash or another enactor fails as a whole at the provider (DESIGN.md point 1);
  the marker it writes names the marker it replaced (``Marker.after``), so a marker
  whose generation a human set back equals none a delayed writer read;
- a marker never goes down: an endpoint whose marker is past the generation
  wanted here is left alone;
- an endpoint is written only when nothing is there (with the newest content, when
  the store, read after the provider, says a newer plan changed it), or its marker
  is behind the plan and names content the store confirms (I6: applying an applied
  plan costs no write; see ``decide``);
- an invalid or empty record set is refused before any write, whatever the plan
  says (I1, I5), and journalled as "refused"; the endpoint is brought to its
  newest valid content instead;
- a plan that changed k endpoints since this enactor last finished costs O(k)
  reads and writes.

Quarantine: an endpoint whose write the provider ``Rejected`` (a reason retrying will not fix:
too big for one message, a CNAME at the name...) is quarantined: journalled "quarantined" with
the reason and logged once (again only when the reason changes), dropped from this plan, and held
for the collector as a skip-corrupt endpoint is (``held``: the content its marker names is kept,
I3). It is tried again only with a later plan (every plan re-reads held endpoints); every other
endpoint of the batch is written as usual. A write that lands lifts the quarantine.

Ownership (I7, ``protocol/ownership.py``): an endpoint is written only if it is unowned and
empty, or its marker is this installation's (or carries no owner id: a pre-owner marker). Records
without a marker or a marker of another owner are foreign: unless the fleet adopts the endpoint
they are never written, only reported (journalled "foreign" and logged once per reason); an
adopted one is left to the verifier, which takes it over (held meanwhile as a marker deleted by
hand is: another owner's generation names nothing in this store). An endpoint removed from the
fleet (released, ``FleetChanged``) is no longer written at all (the verifier marks its marker
released, once). Back in the fleet, a released marker of this installation is its own like any
other: a later plan writes over it (unreleased); one already at the plan's content is
skip-applied, and the verifier rewrites it unreleased. Every marker written carries the owner id.

An endpoint deleted whole by hand (records and marker) looks never written, and one a person put back
from a backup looks as it did then: no compare-and-swap on the provider can tell either from the state a
delayed writer read, so that write, delayed past a newer plan's write and the person's edit, would land.
So every write carries the plan's generation as a fence (``WriteBatch.fence``): in the write's own step
the store is asked whether a newer plan changed the endpoint, and if one did the write is not sent
(``Conflict(newer=...)``); an empty endpoint is read again, and written with the newest content if it is
still empty; any other is left to the newer plan. A plan published after that store read is written after
the provider's write token was read, and moves it: the write carries the token and fails.

Limits: it writes only over a marker dnsplane could have written (sealed, and naming content the store
confirms at its generation), whatever records a person left beside it; other hand-made states are the
verifier's to repair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import assert_never

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
    Rejected,
    Write,
    WriteResult,
    chain_token,
    generation_in_range,
    validate_record_set,
    zone_order,
)
from dnsplane.protocol.identity import CONFIG, NOTE, ROUND
from dnsplane.protocol.messages import (
    NOTHING,
    Begin,
    ChangesLoaded,
    ContentLoaded,
    Effect,
    Event,
    Failed,
    Finish,
    FleetChanged,
    HeadRead,
    Journal,
    LoadChanges,
    LoadContentAt,
    Log,
    MarkersRead,
    ReadHead,
    ReadMarkers,
    Step,
    Tick,
    WriteBatch,
    WriteDone,
    effects,
    request,
)
from dnsplane.protocol.ownership import Ownership


class Verdict(StrEnum):
    """What ``decide`` says to do with one endpoint (a member equals its string: "skip-corrupt")."""

    WRITE = "write"
    SKIP_NEWER = "skip-newer"  # a newer plan's writer got there first: leave it
    SKIP_APPLIED = "skip-applied"  # already holds this plan's content (I6: no write)
    SKIP_CORRUPT = "skip-corrupt"  # a state dnsplane could not have written: the verifier's to repair


class EnactorPhase(Enum):
    """What an enactor waits for: the reply to the request it made last, or nothing (``IDLE``).

    ``ContentLoaded`` answers three different requests; the phase says which."""

    IDLE = "no round in progress: the next Tick starts one"
    HEAD = "the head (ReadHead)"
    CHANGES = "the changes since the last finished generation (LoadChanges)"
    FALLBACK = "the newest content below refused generations (LoadContentAt)"
    RECHECK = "held endpoints' content at the plan, for those the plan did not change (LoadContentAt)"
    MARKERS = "a batch's markers (ReadMarkers)"
    CONFIRM = "the content markers behind the plan name, to confirm them (LoadContentAt)"
    WRITE = "a batch of writes (WriteBatch)"


# Python 3.11 reads an enum member through its class slowly (``EnumType.__getattr__``: ~0.2 us a read,
# five times a module constant's), and the simulator runs these paths millions of times: they read
# these constants. ``match`` statements name the members, for the type checker's exhaustiveness.
_WRITE, _SKIP_NEWER, _SKIP_APPLIED, _SKIP_CORRUPT = (Verdict.WRITE, Verdict.SKIP_NEWER, Verdict.SKIP_APPLIED,
                                                     Verdict.SKIP_CORRUPT)
_IDLE, _HEAD, _CHANGES, _FALLBACK = EnactorPhase.IDLE, EnactorPhase.HEAD, EnactorPhase.CHANGES, EnactorPhase.FALLBACK
_RECHECK, _MARKERS, _CONFIRM, _WRITING = (EnactorPhase.RECHECK, EnactorPhase.MARKERS, EnactorPhase.CONFIRM,
                                          EnactorPhase.WRITE)


def decide(desired: Desired, observed: Observed) -> Verdict:
    """What to do for one endpoint (``Verdict``): write, skip-newer, skip-applied or skip-corrupt.

    | what the provider holds                        | decision     |
    |------------------------------------------------|--------------|
    | nothing (never written, or deleted by hand)    | write (expect no marker, no records); |
    |                                                | the newest content if a newer plan    |
    |                                                | changed it (``MarkersRead.newer``)    |
    | records without marker, marker without records | skip-corrupt |
    | marker names (desired generation, digest)      | skip-applied (whatever its prev, |
    |                                                | whatever the records beside it)  |
    | marker generation == desired, other digest     | skip-corrupt |
    | marker generation != desired, seal broken      | skip-corrupt (``g=`` or ``d=`` edited by hand; |
    |                                                | raised past the plan, it names no newer plan)  |
    | marker generation > desired.generation         | skip-newer   |
    | marker generation < desired.generation         | write, once the store confirms |
    |                                                | the marker's digest is the content |
    |                                                | of the generation it names     |

    The marker decides, not the records beside it (issue 13's tenth round took the row "records whose
    digest is not the marker's: skip-corrupt" out as redundant, docs/design.md "Removed as redundant"):
    records a person edited under a marker are the state the write replaces, whole, under the
    compare-and-swap on both (DESIGN.md point 7), once the store confirms the marker; under the plan's
    own marker there is nothing of this plan to write, and the verifier repairs records that do not
    match their marker ("records-mismatch"). Every write is fenced (``WriteBatch.fence``): the content
    it writes is the newest any plan gave the endpoint, whatever a person left there.

    A marker generation out of range (< 0, past ``MAX_GENERATION``: written by hand) needs no row of
    its own (issue 13's eighth round removed it): every provider reads one as a corrupt marker
    (``model.corrupt_marker``: ``CORRUPT_GENERATION``), which is behind every plan, and the store
    confirms no content at it (``_on_content``): left to the verifier, held as a deleted marker is.

    What the enactor leaves: a marker without records or records without a marker (made by hand,
    or another installation's), a marker whose seal is broken, and a marker the store does not
    confirm. This enactor may be holding an old plan, and such a state names no content it can
    prove it replaces; "skip-corrupt" leaves it to the verifier, which repairs it against the
    newest plan with the same compare-and-swap.
    """
    records, marker = observed.records, observed.marker
    if marker is None and records is None:
        return _WRITE
    if marker is None or records is None:
        return _SKIP_CORRUPT
    if marker.generation == desired.generation:
        return _SKIP_APPLIED if marker.digest == desired.records.digest else _SKIP_CORRUPT
    if not marker.sealed():
        # A generation set back by hand over content that A -> B -> A made equal to the older
        # generation's again passes every other check (chaos 13470); this plan may be older than
        # the content the endpoint served, so it is the verifier's to repair, against the newest.
        # A generation raised by hand names no plan either: not "skip-newer" (which would take it
        # for a newer writer's and leave it there), the verifier repairs it at the head.
        return _SKIP_CORRUPT
    if marker.generation > desired.generation:
        return _SKIP_NEWER
    return _WRITE


def _committed(write: Write, found: Marker | None) -> bool:
    """Whether the marker ``found`` shows that ``write`` was committed: it is ``write``'s own marker (it names
    the marker it replaced: no other plan's write has it), or a later write's that replaced it (its ``p=``
    chain is the hash of ``write``'s marker: a faster writer moved the endpoint on before the read)."""
    if found is None:
        return False
    return found == write.marker or found.prev.partition(".")[0] == chain_token(write.marker)


def _held_at(verdict: Verdict, desired: Desired, seen: Observed, finished: Generation) -> Generation | None:
    """The generation to report at most while an endpoint is left to the verifier, or None.

    A sealed marker names the content to keep: its own generation. Records without a marker
    (deleted by hand), or nothing at all that a newer plan changed, name nothing, and nor does a
    marker whose seal is broken (its ``g=`` edited by hand, even past the head: held no higher than
    its ``g=`` either); the verifier's repair will
    name its snapshot's head, at least the head H when the marker was deleted, and its content
    must outlive the repair (chaos 80234, 100980: unheld, the watermark passed the generation a
    slow repair then named, and the collector deleted that content, I3). The hold is
    ``finished``, the last generation this enactor finished before this plan, and is never raised
    while it lasts: any change of the endpoint after H was published after the deletion, so a plan
    carrying it would have made this enactor hold already. No change lies in (H, hold], so the
    content at every head from H on survives the collector, even for an enactor that restarted
    (finished 0) or missed the plan of the first change.
    """
    if verdict is not _SKIP_CORRUPT:
        return None
    marker = seen.marker
    if marker is not None and generation_in_range(marker.generation) and marker.sealed():
        return marker.generation
    held = min(finished, Generation(desired.generation - 1))
    if marker is not None and generation_in_range(marker.generation):
        # Seal broken: its g= names nothing for sure (raised by hand it may lie past the head, and
        # held there it would hold nothing). The verifier repairs it at its snapshot's head, as a
        # deleted marker: hold as for one, and never above the g= it shows (set back by hand, the
        # records' content may be older still).
        return min(held, marker.generation)
    return held


@dataclass
class Enactor:
    """One redundant enactor. Several may run at once; the provider's CAS keeps them safe."""

    name: str = field(metadata=CONFIG)
    zone: str = field(metadata=CONFIG)
    batch_size: int = field(default=1000, metadata=CONFIG)
    # batches of neighbours in the zone's DNS order (``model.zone_order``), for a provider whose reads cost
    # by position (Route 53: a batch of neighbours is read in a page or two, a scattered one a page each)
    zone_ordered: bool = field(default=False, metadata=CONFIG)
    # (i, n): the i-th of n enactors walks each plan's changes from their i-th n-th on, round to the start,
    # so n enactors write different endpoints first instead of all racing for the same ones (measured at
    # 100,000 endpoints: three in step each read and tried to write every batch). Each still walks every
    # change and decides it on a fresh read, so the start spreads the work and nothing else: the
    # compare-and-swap is what makes several writers safe, whatever their order.
    share: tuple[int, int] = field(default=(0, 1), metadata=CONFIG)
    applied_upto: Generation = NO_GENERATION  # newest generation this enactor finished
    working: Generation | None = None  # generation in flight
    # when the plans at ``applied_upto`` and ``working`` were created, as the store said: a store put back
    # to a backup hands their numbers out again, and the changes after ``applied_upto`` are then not the
    # ones after the plan this enactor finished (``HeadRead.lost``)
    applied_at: float | None = None
    working_at: float | None = None
    pending: dict[EndpointKey, Desired] = field(default_factory=dict)
    in_batch: tuple[EndpointKey, ...] = field(default=(), metadata=ROUND)
    sent: dict[EndpointKey, Write] = field(default_factory=dict, metadata=ROUND)
    # markers behind, awaiting the store
    unchecked: dict[EndpointKey, Write] = field(default_factory=dict, metadata=ROUND)
    total: int = field(default=0, metadata=NOTE)  # endpoints in the plan being enacted, for progress reports
    # Endpoints whose newest content this enactor refused (invalid), with that generation: until a
    # later change replaces it, this enactor does not report any generation at or past it as fully
    # applied, so the collector keeps the valid content those endpoints' markers still name (I3).
    refused: dict[EndpointKey, Generation] = field(default_factory=dict)
    # Refused endpoints still looking for their newest valid content below the refused generation.
    fallback: dict[EndpointKey, Generation] = field(default_factory=dict)
    # Endpoints left to the verifier (skip-corrupt) whose marker names a generation: until this
    # enactor sees them sound again, it reports nothing past that generation as applied, so the
    # collector keeps what the marker names (I3). They are re-read with every plan.
    held: dict[EndpointKey, Generation] = field(default_factory=dict)
    recheck: bool = False  # held endpoints this plan did not change are still to be re-read
    phase: EnactorPhase = EnactorPhase.IDLE  # what it waits for (``busy``: anything)
    ownership: Ownership = field(default_factory=Ownership)  # owner id, managed and adopted endpoints (I7)
    foreign: dict[EndpointKey, str] = field(default_factory=dict)  # endpoints refused as foreign, and why
    # Endpoints whose last write the provider rejected, with the reason (see the module docstring).
    quarantined: dict[EndpointKey, str] = field(default_factory=dict)
    stats: dict[str, int] = field(
        default_factory=lambda: {"writes": 0, "conflicts": 0, "skips": 0, "refused": 0, "rejected": 0}, metadata=NOTE)
    # Writes of a batch that failed without an answer (a 500 after the provider committed, a lost
    # connection): each is journalled as written if the next read of its endpoint finds the exact marker
    # it wrote (``_on_markers``). Only the journal reads it, never a decision.
    unanswered: dict[EndpointKey, Write] = field(default_factory=dict, metadata=NOTE)

    @property
    def busy(self) -> bool:
        """A round is in progress: the enactor waits for a reply, and ignores its ticks meanwhile."""
        return self.phase is not _IDLE

    def reset(self, ownership: Ownership | None = None) -> None:
        """Forget every round, as a restarted process does: the state of a fresh enactor with this
        one's name, zone and batch size, and ``ownership`` (by default its own)."""
        fresh = Enactor(self.name, self.zone, self.batch_size, self.zone_ordered, self.share,
                        ownership=self.ownership if ownership is None else ownership)
        vars(self).update(vars(fresh))

    def handle(self, event: Event) -> Step:
        match event:
            case Tick():
                if self.phase is not _IDLE:
                    return NOTHING
                self.phase = _HEAD
                return request(ReadHead(self.applied_upto, self.applied_at))
            case HeadRead(head=head, head_at=head_at, lost=lost):
                # Taken as the reply whatever the phase: the simulator redelivers a stale head (a
                # duplicated or reordered reply) to an idle enactor, and the round starts from it.
                logs: tuple[Effect, ...] = ()
                if lost:  # every change is walked again, from the first plan the store holds
                    logs = (Log("warning", "the plan this enactor finished last is not in the store any more "
                                "(put back to a backup?): walking every change again",
                                {"actor": self.name, "generation": self.applied_upto}),)
                    self.applied_upto, self.applied_at = NO_GENERATION, None
                if head <= self.applied_upto:
                    self.phase = _IDLE
                    return Step(logs) if logs else NOTHING
                self.working, self.working_at = head, head_at
                self.phase = _CHANGES
                return Step((*logs, Begin(head)), LoadChanges(self.applied_upto, head))
            case FleetChanged(endpoints=endpoints):
                # The fleet file changed: endpoints gone from it are released (never written again),
                # the ``adopt:`` flags are the new ones; the owner id stays.
                self.ownership = Ownership.of_fleet(self.ownership.owner, endpoints)
                return NOTHING
            case ChangesLoaded(changes=changes):
                if self.ownership.managed is not None:  # released endpoints are not written
                    changes = {k: d for k, d in changes.items() if self.ownership.manages(k)}
                    for key in [k for k in self.held if not self.ownership.manages(k)]:
                        del self.held[key]
                for key in changes:
                    self.refused.pop(key, None)  # a later change replaced what was refused
                refused = self._refuse_invalid(changes)
                if self.zone_ordered and len(changes) > self.batch_size:
                    changes = dict(sorted(changes.items(), key=lambda kv: zone_order(kv[0])))
                i, n = self.share
                if n > 1 and len(changes) > self.batch_size:
                    walk = list(changes.items())
                    start = len(walk) * i // n
                    changes = dict(walk[start:] + walk[:start])
                self.pending = changes
                self.total = len(changes)
                self.recheck = any(k not in changes for k in self.held)
                return self._fall_back_or_continue().after(refused)
            case MarkersRead(observed=observed, newer=newer):
                return self._on_markers(observed, newer)
            case ContentLoaded(content=content):
                return self._on_content_loaded(content)
            case WriteDone(results=results):
                return self._on_results(results)
            case Failed(error=error, unsent=unsent):
                # Start over from the last finished generation: every step is re-decided
                # from a fresh marker read, so nothing done so far needs undoing. A failed write may
                # still have landed: its marker, read next, says so (``unanswered``); one refused
                # before it was sent (``unsent``: a freeze) did not.
                sent: tuple[Effect, ...] = ()
                if self.phase is _WRITING and not unsent:
                    self.unanswered.update(self.sent)
                    sent = self._journal_sent_unanswered(error)
                self.phase = _IDLE
                self.working = None
                self.pending = {}
                self.fallback = {}
                self.unchecked = {}
                self.recheck = False
                return effects(*sent, Log("warning", "enactor step failed; will retry",
                                          {"actor": self.name, "error": error}))
            case _:
                return NOTHING

    # ------------------------------------------------------------------ steps

    def _on_content_loaded(self, content: dict[EndpointKey, Desired]) -> Step:
        """``ContentLoaded`` answers one of three requests: which one, the phase says."""
        phase = self.phase
        match phase:
            case EnactorPhase.CONFIRM:  # the most frequent first: each case reads its member
                return self._on_content(content)
            case EnactorPhase.FALLBACK:
                return self._on_fallback(content)
            case EnactorPhase.RECHECK:
                self.recheck = False
                return self._on_fallback(content)
            case (EnactorPhase.IDLE | EnactorPhase.HEAD | EnactorPhase.CHANGES | EnactorPhase.MARKERS
                  | EnactorPhase.WRITE):
                return NOTHING  # not asked for: a stale reply changes nothing
            case _:
                assert_never(phase)

    def _refuse_invalid(self, changes: dict[EndpointKey, Desired]) -> tuple[Effect, ...]:
        entries = []
        for key in list(changes):
            try:
                validate_record_set(key, changes[key].records, self.zone)
            except InvalidPlan as err:
                refused = changes.pop(key)
                # the lowest refused generation of the chain, the endpoint's content below it: the last
                # one set, since a chain only goes down (``_on_fallback`` looks below it) and is walked
                # whole before any Finish, from its top (a change, or the recheck of a held endpoint);
                # no ``min`` with what was kept (docs/design.md, "Checks no model kills")
                self.refused[key] = refused.generation
                self.fallback[key] = refused.generation
                self.stats["refused"] += 1
                entries.append((key, "refused", None, refused.generation, str(err)))
        if not entries:
            return ()
        return (
            Journal(tuple(entries)),
            Log("error", "refused invalid record sets", {"actor": self.name, "count": len(entries)}),
        )

    def _fall_back_or_continue(self) -> Step:
        """A refused endpoint keeps its newest valid content: look for it below what was refused."""
        if self.fallback:
            self.phase = _FALLBACK
            return request(LoadContentAt(tuple((k, Generation(g - 1)) for k, g in self.fallback.items())))
        if self.recheck and self.working is not None:
            at = self.working
            self.phase = _RECHECK
            return request(LoadContentAt(tuple((k, at) for k in self.held if k not in self.pending)))
        return self._next_batch()

    def _on_fallback(self, content: dict[EndpointKey, Desired]) -> Step:
        wanted = self.fallback or content
        candidates = {k: content[k] for k in wanted if k in content}
        self.fallback = {}  # keys with no earlier content have nothing valid to fall back to
        refused = self._refuse_invalid(candidates)  # re-fills self.fallback with any still invalid
        self.pending.update(candidates)
        self.total += len(candidates)
        return self._fall_back_or_continue().after(refused)

    def _next_batch(self) -> Step:
        if not self.pending:
            return self._finish()
        keys = []
        for key in self.pending:
            keys.append(key)
            if len(keys) >= self.batch_size:
                break
        self.in_batch = tuple(keys)
        out: list[Effect] = []
        if self.total > 4 * self.batch_size:  # long work: say how far it got
            done = self.total - len(self.pending)
            out.append(Log("info", "enacting", {"actor": self.name, "generation": self.working,
                                                "done": done, "of": self.total}))
        # ``newer_than``: the store is asked, after the provider, which endpoints found empty a newer
        # plan changed (see ``_on_markers``)
        self.phase = _MARKERS
        return Step(tuple(out), ReadMarkers(self.in_batch, self.working))

    def _on_markers(self, observed: dict[EndpointKey, Observed], newer: dict[EndpointKey, Desired]) -> Step:
        writes: list[Write] = []
        behind: list[Write] = []
        reports: list[Effect] = []
        for key in self.in_batch:
            desired = self.pending[key]
            seen = observed.get(key, Observed(None, None))
            if (lost := self.unanswered.pop(key, None)) is not None and _committed(lost, seen.marker):
                reports.append(self._journal_unanswered(lost))
            refusal = self.ownership.refusal(key, seen)
            if refusal is not None:
                # I7: not this installation's to write. Reported once per reason; nothing is held
                # for it (its content is not ours to keep).
                self.stats["skips"] += 1
                del self.pending[key]
                self._hold(key, None)
                reports += self._report_foreign(key, refusal, desired.generation)
                continue
            self.foreign.pop(key, None)
            verdict = decide(desired, seen)
            if verdict is _WRITE and self.ownership.other_owner(seen) is not None:
                verdict = _SKIP_CORRUPT  # adopted from another owner: the verifier takes it over
            if verdict is _WRITE and key in newer:
                # Nothing there, and a plan newer than this one changed the endpoint (the store said
                # so after the provider was read): never written, or deleted whole by hand, which no
                # compare-and-swap can tell apart; in the second case this plan may be older than
                # content the endpoint served (the explorer, 2 generations and 2 faults: a human
                # emptied it and deleted its marker, and an enactor on generation 1 wrote it after
                # 2, I2). Write the newest content instead; if it is invalid, leave the endpoint to
                # the newer plan's enactors and the verifier, held meanwhile.
                try:
                    validate_record_set(key, newer[key].records, self.zone)
                except InvalidPlan:
                    verdict = _SKIP_CORRUPT
                else:
                    desired = self.pending[key] = newer[key]
            match verdict:
                case Verdict.WRITE:
                    marker = Marker.after(seen.marker, desired.generation, desired.records.digest,
                                          self.ownership.owner)
                    write = Write(key, seen.marker, desired.records, marker, seen.records)
                    (writes if seen.marker is None else behind).append(write)
                case Verdict.SKIP_NEWER | Verdict.SKIP_APPLIED | Verdict.SKIP_CORRUPT:
                    self.stats["skips"] += 1
                    del self.pending[key]
                    # Another owner's marker (adopted: the verifier takes it over) names another store's
                    # generation: for the hold it names nothing, as a marker deleted by hand (owners 597)
                    mine = Observed(seen.records, None) if self.ownership.other_owner(seen) else seen
                    self._hold(key, _held_at(verdict, desired, mine, self.applied_upto))
                case _:
                    assert_never(verdict)
        if behind:
            # A marker behind the plan must name content the endpoint really had at that
            # generation; one lowered by hand (or naming a plan that never set this digest)
            # does not, and writing over it from a possibly old plan could regress (I2).
            self.unchecked = {w.key: w for w in behind}
            self.sent = {w.key: w for w in writes}
            pairs = tuple((w.key, w.expect.generation) for w in behind if w.expect is not None)
            self.phase = _CONFIRM
            return Step(tuple(reports), LoadContentAt(pairs))
        return self._send(writes).after(reports)

    def _journal_sent_unanswered(self, error: str) -> tuple[Effect, ...]:
        """Journalled at once when a batch of writes failed without an answer: whatever happens to this
        enactor next (killed before its next read, or another writer moving the endpoints on first), the
        journal says these writes were sent and may have landed; the next read says which did."""
        if not self.sent:
            return ()
        return (Journal(tuple((w.key, "unanswered", w.expect.generation if w.expect else None, w.marker.generation,
                               f"{w.records.digest}; sent, its answer lost ({error}): committed or not, the next "
                               "read says") for w in self.sent.values())),)

    def _journal_unanswered(self, write: Write) -> Effect:
        """The journal entry of a write whose batch failed but which the next read found committed: its exact
        marker is there, or a later marker that names it as the one it replaced (``_committed``)."""
        self.stats["writes"] += 1
        before = write.expect.generation if write.expect else None
        return Journal(((write.key, "write", before, write.marker.generation,
                         f"{write.records.digest}; committed, its answer lost (found by the next read)"),))

    def _report_foreign(self, key: EndpointKey, why: str, generation: Generation) -> tuple[Effect, ...]:
        """Journal and log a refused foreign (or released) endpoint, once per reason."""
        if self.foreign.get(key) == why:
            return ()
        self.foreign[key] = why
        level = "info" if why.startswith("released") else "error"
        return (Journal(((key, "foreign", None, generation, why),)),
                Log(level, "not writing an endpoint this installation does not own",
                    {"actor": self.name, "endpoint": str(key), "reason": why}))

    def _on_content(self, content: dict[EndpointKey, Desired]) -> Step:
        writes = list(self.sent.values())
        for key, write in self.unchecked.items():
            found = content.get(key)
            if write.expect is not None and found is not None and found.records.digest == write.expect.digest:
                writes.append(write)
            else:
                self.stats["skips"] += 1
                # skip-corrupt: the verifier repairs it against the newest plan; held as any such endpoint
                # (at the marker's own generation; a corrupt marker, out of range, names none)
                left = self.pending.pop(key)
                seen = Observed(write.expect_records, write.expect)
                self._hold(key, _held_at(_SKIP_CORRUPT, left, seen, self.applied_upto))
        self.unchecked = {}
        return self._send(writes)

    def _hold(self, key: EndpointKey, generation: Generation | None) -> None:
        if generation is None:
            self.held.pop(key, None)
        elif (before := self.held.get(key)) is None or generation < before:
            # never raised while held: a repair may name any generation from the first one held
            self.held[key] = generation

    def _send(self, writes: list[Write]) -> Step:
        if not writes:
            return self._next_batch()
        self.sent = {w.key: w for w in writes}
        self.phase = _WRITING
        # ``fence``: the store is asked again, in the write's own step, whether a plan newer than this
        # one changed an endpoint (one deleted whole, or put back by hand, after the newer plan's write
        # looks as it did when it was read: ``WriteBatch``)
        return request(WriteBatch(tuple(writes), fence=self.working))

    def _on_results(self, results: list[WriteResult]) -> Step:
        entries = []
        logs: list[Effect] = []
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
                    self.held.pop(key, None)
                    self.quarantined.pop(key, None)
                case Applied(key=key):
                    self.stats["writes"] += 1
                    del self.pending[key]
                    self.held.pop(key, None)
                    self.quarantined.pop(key, None)
                    entries.append((key, "write", before, desired.generation, desired.records.digest))
                case Rejected(key=key, reason=reason):
                    # Nothing of this endpoint was written, and retrying will not help: quarantine it
                    # (the rest of the batch went on without it), held like a skip-corrupt endpoint so
                    # that the content its marker names outlives it (I3); a later plan retries it.
                    self.stats["rejected"] += 1
                    del self.pending[key]
                    seen = Observed(sent.expect_records, sent.expect)
                    self._hold(key, _held_at(_SKIP_CORRUPT, desired, seen, self.applied_upto))
                    if self.quarantined.get(key) != reason:
                        self.quarantined[key] = reason
                        entries.append((key, "quarantined", before, desired.generation, reason))
                        logs.append(Log("error", "endpoint quarantined: the provider rejected its write",
                                        {"actor": self.name, "endpoint": str(key),
                                         "generation": desired.generation, "reason": reason}))
                case Conflict(key=key, newer=newer) if newer is not None:
                    # Not sent: a newer plan changed the endpoint since it was read (``WriteBatch.fence``).
                    # Found empty, it stays pending, is re-read, and gets the newest content if it is
                    # still empty (``MarkersRead.newer``); behind a marker, it is left to the newer plan's
                    # enactors and the verifier, held as a skip-corrupt one (at a sealed marker's own
                    # generation, whose content the endpoint still serves).
                    self.stats["conflicts"] += 1
                    entries.append((key, "conflict", before, desired.generation,
                                    f"plan {newer} changed the endpoint after it was read"))
                    if sent.expect is not None:
                        del self.pending[key]
                        left = Observed(sent.expect_records, sent.expect)
                        self._hold(key, _held_at(_SKIP_CORRUPT, desired, left, self.applied_upto))
                case Conflict(key=key, current=current):
                    # Someone wrote first: the endpoint stays pending and is re-read and
                    # re-decided against the marker that won.
                    self.stats["conflicts"] += 1
                    found = current.generation if current else None
                    entries.append((key, "conflict", before, desired.generation,
                                    f"marker changed to {found} before the write"))
        out: list[Effect] = [Journal(tuple(entries)), *logs] if entries else logs
        return self._next_batch().after(out)

    def _finish(self) -> Step:
        done, done_at = self.working, self.working_at
        self.phase = _IDLE
        self.working = self.working_at = None
        self.in_batch = ()
        self.unanswered = {}  # the round re-read every endpoint it had left: what it did not find is not known
        if done is None:
            return NOTHING
        self.applied_upto, self.applied_at = done, done_at
        reported = min([done, *(Generation(g - 1) for g in self.refused.values()), *self.held.values()])
        return effects(Finish(reported), Log("info", "plan applied", {"actor": self.name, "generation": done}))

