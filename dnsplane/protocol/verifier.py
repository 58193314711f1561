"""The verifier: looks at what DNS actually answers and repairs what is wrong.

It compares, for each endpoint, the DNS answer (a real query to the serving
address) and the provider's records and marker with the newest plan, and repairs
every difference through the same compare-and-swap the enactors use. States it
repairs, none of which may block later updates (DESIGN.md point 5):

| state found                                   | repair                                        |
|-----------------------------------------------|-----------------------------------------------|
| empty answer, NXDOMAIN, no records            | write desired, expect the marker found        |
| ("empty-answer", "nxdomain", "empty-records") |                                               |
| marker missing                                | write desired, expect "no marker" and exactly |
|                                               | the records found (``Write.expect_records``), |
|                                               | in the next round (see below)                 |
| records edited by hand, or a write applied in | write desired, marker generation kept or up   |
| part: not what the marker names               |                                               |
| ("marker-mismatch"); marker and records agree |                                               |
| on content the plan does not give             |                                               |
| ("content-differs")                           |                                               |
| marker edited by hand (its seal broken)       | same, in the next round (from a snapshot      |
|                                               | loaded after the edit was seen), at the head: |
|                                               | its ``g=``, even above the head, is never a   |
|                                               | head nor the repair's generation              |
| answer has addresses outside the plan         | same                                          |
| sealed marker past the store's head (store    | advance the store's head past it, so that the |
| behind, or a marker naming a plan that never  | next plan outranks it; then repair content    |
| was)                                          |                                               |
| marker behind the plan for two rounds in a    | write desired (the enactors are late)         |
| row (enactors stuck)                          |                                               |
| newest change invalid (a malformed plan)      | check against the newest valid content below  |
| marker out of range (``g=`` negative, past    | as a marker edited by hand: repaired in the   |
| ``MAX_GENERATION``: only a hand could write   | next round; it is never taken for a head, and |
| it; a text marker so read comes back as none) | the repair does not go by its generation      |
| no answer (TIMEOUT, SERVFAIL, REFUSED, ERROR, | nothing this round ("unreachable"): reported,  |
| TRUNCATED: the server did not say what it     | not counted right, not repaired               |
| holds, or not whole)                          |                                               |

Guarantees: a repair never lowers a marker (I2): it writes the head of the plan it checked against,
and every marker it repairs is at most that head (a sealed marker above it is "marker-ahead", never
repaired: the head is advanced past it first; one out of range, unsealed or another owner's names no
generation of this store); and it is conditional on the marker
found (where there is none, on the records found), so a newer enactor write in between wins and
the repair is dropped. The marker it writes names the one it replaced (``Marker.after``), as an
enactor's does.
It sets the last-known-good generation when every endpoint checked was right.

Ownership (I7, ``protocol/ownership.py``), checked before anything else: an endpoint whose
records carry no marker, or a marker of another owner, is foreign, except records without a marker
whose addresses are all the endpoint's own target addresses (dnsplane's, their marker lost: repaired
as "marker missing", the round after they are first seen). Unless the fleet adopts it, it
is never repaired: it is reported (journalled "foreign", logged once per reason) and does not
count against the last-known-good (its content is not this installation's). A marker of another
owner is never taken for a head (no ``AdvanceHead`` past another installation's numbering).
An adopted endpoint is taken over: a marker-less one by the "marker missing" repair above, one
of another owner the round after it is first seen (chaos 31360), at the head (journalled "adopt"). Once: an
endpoint found under this installation's marker, or taken over (a takeover whose reply was lost counts:
it may have landed, rivals seed 22), that carries another owner's marker again is CONTESTED (two fleets
adopt it): never written, journalled "contested", logged once, until ``FleetChanged`` or a restart
(or until it is found empty: unowned). A marker without an owner id (written before owner ids) is
read as this installation's and rewritten once with its id, same generation and content
("marker-unowned").

Released endpoints (I7: in the store but no longer in the fleet, ``FleetChanged`` or a fleet file
edited while the process was down) are never repaired, so a released endpoint a person deleted is
not recreated. Each is looked at until its marker says released, then no more (``settled``): a
marker of this installation not yet released, sealed, over the records it names, gets ONE
"release" write, journalled "release": the same records, generation and digest, the marker marked
released (``Marker.released``, ``r=1``), conditional on exactly the marker and records read. A
conflict (someone wrote in between) is looked at again next round; anything else (no marker,
another owner's, one already released, a hand-made state) is left as it is. A released marker of
this installation is still its own: when the endpoint comes back to the fleet and is found right,
it is rewritten unreleased once, same generation and content ("marker-released", journalled
"reclaim"); a content change goes through the enactors as usual (their marker is unreleased).

Repair budget (``max_repairs``, the runtime's ``--repair-rate`` times the verifier's period): at most
that many repairs are sent in one round; a further endpoint found wrong is left, as found, for the
next round ("deferred": counted in ``stats``, logged once a round, not repaired, no last-known-good that
round, as for an unanswered one; releases are not counted: they change nothing DNS answers). A budget
only delays repairs: a repair that lands makes its endpoint right, so the endpoints wrong at once are
all repaired within ``ceil(wrong / max_repairs)`` rounds when nothing else changes them. 0: no budget.

Quarantine: a repair the provider ``Rejected`` (it cannot be written: too big for one message, a
CNAME at the name...) quarantines the endpoint: journalled "quarantined" with the reason and logged
once (again only when the reason changes), then tried again only after a backoff of 1, 2, 4 ...
``QUARANTINE_MAX_ROUNDS`` rounds, so a write that cannot land is not sent every round forever;
meanwhile the endpoint is reported wrong (no last-known-good). The other endpoints are repaired
as usual. An endpoint found right, or repaired, leaves quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum

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
    generation_in_range,
    validate_record_set,
    zone_order,
)
from dnsplane.protocol.identity import CONFIG, NOTE, ROUND
from dnsplane.protocol.messages import (
    NOTHING,
    AdvanceHead,
    ContentLoaded,
    DesiredLoaded,
    Effect,
    Event,
    Failed,
    FleetChanged,
    Journal,
    LoadContentAt,
    LoadDesired,
    Log,
    Resolution,
    Resolve,
    Resolved,
    SetLastKnownGood,
    Step,
    Tick,
    WriteBatch,
    WriteDone,
    effects,
    request,
)
from dnsplane.protocol.ownership import Ownership


class Problem(StrEnum):
    """What the verifier found at one endpoint (``last_problems``). A member equals its string, as it
    is journalled and logged ("repair of lagging")."""

    # found by ``diagnose`` (see the module docstring's table)
    MARKER_CORRUPT = "marker-corrupt"
    MARKER_AHEAD = "marker-ahead"
    UNREACHABLE = "unreachable"
    NXDOMAIN = "nxdomain"
    EMPTY_ANSWER = "empty-answer"
    EMPTY_RECORDS = "empty-records"
    MARKER_MISSING = "marker-missing"
    MARKER_EDITED = "marker-edited"
    LAGGING = "lagging"
    FOREIGN_ADDRESSES = "foreign-addresses"
    MARKER_MISMATCH = "marker-mismatch"
    CONTENT_DIFFERS = "content-differs"
    # another owner's marker on an adopted endpoint: taken over
    FOREIGN_OWNER = "foreign-owner"
    # not this installation's (I7): reported, never repaired
    FOREIGN = "foreign"
    CONTESTED = "contested"
    # right, but its marker is rewritten once: released and back in the fleet, or without an owner id
    MARKER_RELEASED = "marker-released"
    MARKER_UNOWNED = "marker-unowned"


class VerifierPhase(Enum):
    """What the verifier waits for: the reply to the request it made last, or nothing (``IDLE``)."""

    IDLE = "no round in progress: the next Tick starts one"
    SNAPSHOT = "the head and the newest plans (LoadDesired)"
    FALLBACK = "the newest valid content below invalid changes (LoadContentAt)"
    RESOLVE = "a batch's DNS answers and provider state (Resolve)"
    REPAIR = "a batch of repairs (WriteBatch)"

# Python 3.11 reads an enum member through its class slowly (``EnumType.__getattr__``): the paths the
# simulator runs at every step (or for every endpoint) read these module constants.
_UNREACHABLE = Problem.UNREACHABLE
_IDLE, _SNAPSHOT, _FALLBACK, _RESOLVE, _REPAIR = (VerifierPhase.IDLE, VerifierPhase.SNAPSHOT, VerifierPhase.FALLBACK,
                                                   VerifierPhase.RESOLVE, VerifierPhase.REPAIR)


def diagnose(desired: Desired, seen: Resolution, head: Generation) -> Problem | None:
    """Name what is wrong with one endpoint, or None when it is right."""
    marker = seen.observed.marker
    records = seen.observed.records
    if marker is not None and not generation_in_range(marker.generation):
        return Problem.MARKER_CORRUPT  # a generation no store hands out: hand-written, never a head
    if marker is not None and (marker.generation > head or (
            marker.generation == head and marker.prev and marker.digest != desired.records.digest)) and marker.sealed():
        # Only a marker as dnsplane wrote it names a plan: one whose g= was raised by hand (its seal
        # broken) is "marker-edited" below, never a head (AdvanceHead to it could leave the store
        # no generation to publish: g=MAX_GENERATION). At the head, with a seal (``p=``: not one written
        # by hand from scratch) and content the store does not give the endpoint there, it names a plan
        # the store lost under that number (a store put back to a backup, its head lifted to the
        # marker): repaired at that number, the endpoint would serve two contents under one generation,
        # so the head goes past it first
        return Problem.MARKER_AHEAD
    if seen.rcode not in _ANSWERED:
        return Problem.UNREACHABLE  # unknown this round: an empty answer is a fact, no answer is not
    if marker is not None and not marker.sealed():
        # g= or d= changed by hand, whatever the records: before "empty", which is repaired at once from
        # this round's snapshot, older perhaps than what the endpoint served (dns-silent with every
        # ``corrupt`` mode, seed 2868: emptied, then its g= set back, repaired with 45's content after 47's)
        return Problem.MARKER_EDITED
    if seen.rcode == "NXDOMAIN":
        return Problem.NXDOMAIN  # repaired as an empty answer
    if not seen.addresses:
        return Problem.EMPTY_ANSWER
    if records is None or not records.live_members():
        return Problem.EMPTY_RECORDS
    if marker is None:
        return Problem.MARKER_MISSING
    if marker.generation < desired.generation:
        return Problem.LAGGING  # old content is expected until the enactors catch up
    wanted = set(desired.records.addresses())
    if not set(seen.addresses) <= wanted:
        return Problem.FOREIGN_ADDRESSES
    if marker.digest != records.digest:
        # the records are not what the marker names: edited by hand, or a write applied only in part
        return Problem.MARKER_MISMATCH
    if records.digest != desired.records.digest:
        return Problem.CONTENT_DIFFERS  # records and marker agree, on content the plan does not give
    return None


QUARANTINE_MAX_ROUNDS = 64  # the longest wait, in rounds, between two repairs of a quarantined endpoint


@dataclass
class Quarantine:
    """An endpoint whose repair the provider rejected: why, and when to try again."""

    reason: str
    wait: int = 1  # rounds to skip before the next attempt (doubles after each rejection)
    skip: int = 1  # rounds still to skip


# Records whose marker a human edited or deleted, or another installation wrote (an adopted endpoint's
# takeover): what this installation served before may be newer than the round's snapshot, so the repair
# waits for a snapshot loaded after the state was seen (chaos 31360: a takeover at a stale snapshot's
# head served generation 1's content after 2).
_HAND_MADE = frozenset({Problem.MARKER_EDITED, Problem.MARKER_MISSING, Problem.MARKER_CORRUPT, Problem.FOREIGN_OWNER})
# Answers that say what the server holds; any other rcode (TIMEOUT, SERVFAIL, REFUSED, ERROR, TRUNCATED) says nothing.
_ANSWERED = frozenset({"NOERROR", "NXDOMAIN"})


@dataclass
class Verifier:
    name: str = field(metadata=CONFIG)
    batch_size: int = field(default=500, metadata=CONFIG)
    # repairs sent at most in one round (takeovers and marker rewrites count); 0: no limit (module docstring)
    max_repairs: int = field(default=0, metadata=CONFIG)
    # each round's endpoints in the zone's DNS order (``model.zone_order``): see ``Enactor.zone_ordered``
    zone_ordered: bool = field(default=False, metadata=CONFIG)
    head: Generation = field(default=NO_GENERATION, metadata=ROUND)
    desired: dict[EndpointKey, Desired] = field(default_factory=dict, metadata=ROUND)
    queue: list[EndpointKey] = field(default_factory=list, metadata=ROUND)
    lagging: dict[EndpointKey, Generation] = field(default_factory=dict)
    # seen with a hand-made problem (a marker edited or deleted by hand, another owner's) last round, and
    # what the endpoint held then: repaired only if it still holds exactly that
    edited: dict[EndpointKey, Observed] = field(default_factory=dict)
    unanswered: int = 0  # endpoints of this round whose DNS query got no answer (TIMEOUT, SERVFAIL, ...)
    repairs_sent: int = field(default=0, metadata=ROUND)  # repairs this round has sent (``max_repairs``)
    deferred: int = field(default=0, metadata=ROUND)  # endpoints found wrong and left for the next round
    deferred_keys: set[EndpointKey] = field(default_factory=set, metadata=NOTE)  # which (the runtime's alerts)
    phase: VerifierPhase = VerifierPhase.IDLE  # what it waits for (``busy``: anything)
    last_problems: dict[EndpointKey, Problem] = field(default_factory=dict, metadata=NOTE)
    expected_before: dict[EndpointKey, Generation | None] = field(default_factory=dict, metadata=NOTE)
    quarantined: dict[EndpointKey, Quarantine] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: {"checked": 0, "repairs": 0, "rounds": 0, "deferred": 0},
                                  metadata=NOTE)
    repairs_by: dict[str, int] = field(default_factory=dict, metadata=NOTE)  # repairs per problem found (metrics)
    # for validating repairs; "" checks everything but the zone (the provider checks that too)
    zone: str = field(default="", metadata=CONFIG)
    ownership: Ownership = field(default_factory=Ownership)  # owner id, managed and adopted endpoints (I7)
    foreign: dict[EndpointKey, str] = field(default_factory=dict)  # endpoints found foreign, and why
    adopting: set[EndpointKey] = field(default_factory=set)  # this round's repairs that take over foreign records
    # Released endpoints (not in the fleet) looked at this round, and their release writes in flight
    releasing: set[EndpointKey] = field(default_factory=set)
    release_writes: dict[EndpointKey, Generation] = field(default_factory=dict)
    settled: set[EndpointKey] = field(default_factory=set)  # released endpoints left alone from now on
    # Endpoints found under this installation's marker, or taken over, since the fleet last changed: a
    # marker of another owner there now is a second installation taking it back (CONTESTED, not adopted)
    mine: set[EndpointKey] = field(default_factory=set)
    contested: dict[EndpointKey, str] = field(default_factory=dict)  # refused until the fleet changes
    # The takeovers of another owner's marker in the repair batch in flight: if its reply is lost they
    # count as taken over (``Failed``: the provider may have applied them)
    taking: frozenset[EndpointKey] = field(default=frozenset(), metadata=ROUND)

    @property
    def busy(self) -> bool:
        """A round is in progress: it waits for a reply, and ignores its ticks meanwhile."""
        return self.phase is not _IDLE

    def reset(self, ownership: Ownership | None = None) -> None:
        """Forget every round and what it saw, as a restarted process does: the state of a fresh verifier
        with this one's name, batch size and zone, and ``ownership`` (by default its own)."""
        fresh = Verifier(self.name, self.batch_size, self.max_repairs, self.zone_ordered, zone=self.zone,
                         ownership=self.ownership if ownership is None else ownership)
        vars(self).update(vars(fresh))

    def handle(self, event: Event) -> Step:
        match event:
            case Tick():
                if self.phase is not _IDLE:
                    return NOTHING
                self.phase = _SNAPSHOT
                return request(LoadDesired())
            case FleetChanged(endpoints=endpoints):
                self.ownership = Ownership.of_fleet(self.ownership.owner, endpoints)
                self.settled = {k for k in self.settled if not self.ownership.manages(k)}  # back: ours again
                self.mine, self.contested = set(), {}  # a reload may take a contested endpoint over once more
                return NOTHING
            case DesiredLoaded(head=head, desired=desired):
                self.releasing = set()
                self.release_writes = {}  # a round that failed mid-write left its entries here
                if self.ownership.managed is not None:  # released endpoints are not checked (I7)
                    self.releasing = {k for k in desired if not self.ownership.manages(k) and k not in self.settled}
                    desired = {k: d for k, d in desired.items() if self.ownership.manages(k)}
                self.head = head
                self.desired = dict(desired)
                order = zone_order if self.zone_ordered else None
                self.queue = sorted(desired, key=order) + sorted(self.releasing, key=order)
                self.unanswered = self.repairs_sent = self.deferred = 0
                self.deferred_keys = set()
                return self._fall_back(list(desired))
            case ContentLoaded(content=content):
                self.desired.update(content)
                return self._fall_back(list(content))
            case Resolved(results=results):
                return self._on_resolved(results)
            case WriteDone(results=results):
                repaired = self._on_repaired(results)  # before ``_next``, which reads what it settled
                return self._next().after(repaired)
            case Failed(error=error, unsent=unsent):
                if self.phase is _REPAIR and not unsent:
                    # A takeover whose reply was lost may have landed (a timeout after the provider applied
                    # it): taken over, so another owner's marker there next is a contest, not a second
                    # takeover (rivals seed 22)
                    self.mine |= self.taking
                self.phase = _IDLE
                return effects(Log("warning", "verifier step failed", {"actor": self.name, "error": error}))
            case _:
                return NOTHING

    def _fall_back(self, keys: list[EndpointKey]) -> Step:
        """An invalid newest change (a malformed plan) is never repaired toward: the endpoint's
        newest valid content below it is the one to check against (I4, I5)."""
        invalid = []
        for key in keys:
            desired = self.desired[key]
            try:
                validate_record_set(key, desired.records, self.zone or key.name)
            except InvalidPlan:
                invalid.append((key, Generation(desired.generation - 1)))
                del self.desired[key]
        if invalid:
            self.phase = _FALLBACK
            return request(LoadContentAt(tuple(invalid)))
        self.queue = [k for k in self.queue if k in self.desired or k in self.releasing]
        return self._next()

    def _next(self) -> Step:
        if not self.queue:
            self.phase = _IDLE
            self.stats["rounds"] += 1
            if self.unanswered or self.deferred:
                out: list[Effect] = []
                if self.unanswered:
                    out.append(Log("warning", "endpoints not answered over DNS this round; not judged, not repaired",
                                   {"actor": self.name, "endpoints": self.unanswered}))
                if self.deferred:
                    out.append(Log("warning", "repairs over this round's budget left for the next round",
                                   {"actor": self.name, "endpoints": self.deferred, "budget": self.max_repairs}))
                return effects(*out)
            if self.head:
                return effects(SetLastKnownGood(self.head))
            return NOTHING
        batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        self.phase = _RESOLVE
        return request(Resolve(tuple(batch)))

    def _on_resolved(self, results: dict[EndpointKey, Resolution]) -> Step:
        out: list[Effect] = []
        writes: list[Write] = []
        self.taking = frozenset()
        for key, seen in results.items():
            if key in self.releasing:
                out += self._release(key, seen, writes)
                continue
            desired = self.desired[key]
            self.stats["checked"] += 1
            # marker-less records of the endpoint's own target addresses are ours: "marker-missing"
            foreign = self.ownership.foreign(seen.observed, key)
            if foreign is not None and not self.ownership.adopts(key):
                # I7: not ours; reported once per reason, never repaired, not counted against the LKG
                self.edited.pop(key, None)
                self.lagging.pop(key, None)
                self.last_problems[key] = Problem.FOREIGN
                out += self._report_foreign(key, foreign, desired.generation)
                continue
            self.foreign.pop(key, None)
            other = self.ownership.other_owner(seen.observed)
            if seen.observed.records is None and seen.observed.marker is None:
                self.contested.pop(key, None)  # nothing there: unowned, no longer contested
            if key in self.contested or (other is not None and key in self.mine):
                # I7: ours (or taken over) before, another owner's now: two installations adopt it.
                # Taking it back every round would flip the zone: refused until the fleet changes.
                self.edited.pop(key, None)
                self.lagging.pop(key, None)
                self.last_problems[key] = Problem.CONTESTED
                out += self._report_contested(key, other, desired.generation)
                continue
            if seen.observed.marker is not None and other is None:
                self.mine.add(key)
            adopting = foreign is not None  # adopted: its foreign records are taken over
            if adopting and self.ownership.other_owner(seen.observed):
                problem: Problem | None = Problem.FOREIGN_OWNER  # another numbering: never a head, never kept
            else:
                problem = diagnose(desired, seen, self.head)
            if problem is _UNREACHABLE:
                # No answer: what it serves is unknown this round. Not right, not repaired (a repair
                # on no evidence could overwrite what it serves), and its other state is left as is.
                self.last_problems[key] = problem
                self.unanswered += 1
                continue
            if problem not in _HAND_MADE:
                self.edited.pop(key, None)
            released = seen.observed.marker is not None and seen.observed.marker.released
            if problem is None and (released or self.ownership.pre_owner(seen.observed)):
                if self._over_budget(key):
                    continue
                found = seen.observed.marker
                assert found is not None
                # Written before owner ids, or released and back in the fleet: ours, once. Rewritten
                # with our id, unreleased, same generation and content.
                marker = Marker.after(found, found.generation, found.digest, self.ownership.owner)
                writes.append(Write(key, found, desired.records, marker, seen.observed.records))
                self.expected_before[key] = found.generation
                self.last_problems[key] = Problem.MARKER_RELEASED if released else Problem.MARKER_UNOWNED
                out.append(Log("info", "released marker of an endpoint back in the fleet: taking it back"
                               if released else "marker without an owner id: taking it as ours and adding the id",
                               {"actor": self.name, "endpoint": str(key), "generation": found.generation}))
                continue
            if problem is None:
                self.lagging.pop(key, None)
                self.last_problems.pop(key, None)
                self.quarantined.pop(key, None)
                continue
            self.last_problems[key] = problem
            found = seen.observed.marker
            if problem is Problem.MARKER_AHEAD:
                assert found is not None
                # ahead: at least to it (mostly a newer plan than the snapshot, a no-op at the store); at the
                # head, a lost plan's: past it
                out.append(AdvanceHead(found.generation if found.generation > self.head
                                       else Generation(found.generation + 1)))
                # Mostly an enactor's write of a plan newer than this round's snapshot: the executor
                # warns only when the store's head really moves (two processes logged ~1,000 false
                # warnings a minute when this line was a warning).
                out.append(Log("debug", "marker ahead of this round's snapshot; the head must be past it",
                               {"actor": self.name, "endpoint": str(key), "generation": found.generation}))
                continue
            if problem is Problem.LAGGING and self.lagging.get(key) != desired.generation:
                self.lagging[key] = desired.generation  # give the enactors one round first
                continue
            if problem in _HAND_MADE and self.edited.get(key) != seen.observed:
                # The marker no longer says which generation the records hold, and they may hold content
                # newer than this round's snapshot (written after it was loaded, before the edit): repair
                # next round, from a snapshot loaded after the edit was seen. No enactor writes over an
                # edited or missing marker, so the records stay (chaos 22489, 99906). Only that very
                # state: one seen last round may have been written over since (an enactor's newer plan,
                # after this round's snapshot) and edited again (slow-reads 277: generation 62's content
                # repaired over 65's), a new edit that waits a round like the first.
                self.edited[key] = seen.observed
                continue
            held = self.quarantined.get(key)
            if held is not None and held.skip > 0:
                held.skip -= 1  # rejected before: wait out the backoff, do not resend every round
                continue
            try:  # one invalid desired set must not fail the whole repair batch at the provider
                validate_record_set(key, desired.records, self.zone or key.name)
            except InvalidPlan as err:
                self.lagging.pop(key, None)
                out.append(Log("error", "not repairing toward an invalid plan",
                               {"actor": self.name, "endpoint": str(key), "error": str(err)}))
                continue
            if self._over_budget(key):
                continue  # as found, lagging and edit notes kept: repaired in a later round
            self.lagging.pop(key, None)
            # The head, not t(e): content at the head equals content at t(e). Never below the marker
            # found: ``diagnose`` names a sealed in-range marker above this head "marker-ahead", which
            # is never repaired (the head is advanced past it first), so a marker repaired here that
            # names a generation is at most the head (docs/design.md, "The verifier": no max() needed).
            # The generation it replaces, for the journal: none for a corrupt marker (out of range: no
            # writer wrote it) or an unsealed one (g= edited by hand: it may lie above the head).
            kept = (found.generation if found is not None and generation_in_range(found.generation)
                    and found.sealed() else None)
            if problem is Problem.FOREIGN_OWNER:
                # Another installation's generation means nothing in this store: not the one replaced.
                # The takeover is at the head, even below it (writing above it would make it this
                # store's head next round: "marker-ahead", a head no plan wrote, chaos 167)
                kept = None
                self.taking |= {key}
            generation = self.head
            marker = Marker.after(found, Generation(generation), desired.records.digest, self.ownership.owner)
            if adopting and self.ownership.adopted is not None:  # the fleet file said adopt: true
                self.adopting.add(key)
            # Conditional on the marker and the records found (see ``Write``): a newer write, or a
            # hand edit, in between makes the repair fail and the next round look again.
            writes.append(Write(key, found, desired.records, marker, seen.observed.records))
            self.expected_before[key] = kept
            out.append(Log("warning", f"repairing: {problem}", {"actor": self.name, "endpoint": str(key),
                                                               "generation": generation}))
        if writes:
            self.phase = _REPAIR
            # ``fence``: a repair is not sent if a plan newer than this round's snapshot changed the
            # endpoint (``WriteBatch``; slow-reads 565, 759): the next round repairs it
            return Step(tuple(out), WriteBatch(tuple(writes), fence=self.head))
        return self._next().after(out)

    def _over_budget(self, key: EndpointKey) -> bool:
        """This round's repair budget is spent (``key`` is deferred), or one more repair is counted."""
        if self.max_repairs and self.repairs_sent >= self.max_repairs:
            self.deferred += 1
            self.deferred_keys.add(key)
            self.stats["deferred"] += 1
            return True
        self.repairs_sent += 1
        return False

    def _on_repaired(self, results: list[WriteResult]) -> list[Effect]:
        entries = []
        logs: list[Effect] = []
        for result in results:
            if result.key in self.release_writes:
                entries += self._on_released(result, logs)
                continue
            found = self.last_problems.get(result.key)
            problem = "" if found is None else found.value  # journalled as its plain string
            match result:
                case Applied(key=key, written=False):
                    pass
                case Applied(key=key):
                    self.quarantined.pop(key, None)
                    self.stats["repairs"] += 1
                    self.repairs_by[problem or "unknown"] = self.repairs_by.get(problem or "unknown", 0) + 1
                    self.mine.add(key)  # taken over once: another owner's marker here again is a contest
                    action = ("adopt" if key in self.adopting
                              else "reclaim" if found is Problem.MARKER_RELEASED else "repair")
                    entries.append((key, action, self.expected_before.get(key), self.desired[key].generation,
                                    problem))
                case Conflict(key=key, newer=newer) if newer is not None:
                    entries.append((key, "conflict", None, self.desired[key].generation,
                                    f"repair of {problem}: plan {newer} changed it after this round's snapshot"))
                case Conflict(key=key, current=current):
                    before = current.generation if current and generation_in_range(current.generation) else None
                    entries.append((key, "conflict", before, self.desired[key].generation, f"repair of {problem}"))
                case Rejected(key=key, reason=reason):
                    held = self.quarantined.get(key)
                    if held is None or held.reason != reason:
                        self.quarantined[key] = Quarantine(reason)
                        entries.append((key, "quarantined", self.expected_before.get(key),
                                        self.desired[key].generation, f"repair of {problem}: {reason}"))
                        logs.append(Log("error", "endpoint quarantined: the provider rejected its repair",
                                        {"actor": self.name, "endpoint": str(key), "reason": reason}))
                    else:
                        held.wait = held.skip = min(2 * held.wait, QUARANTINE_MAX_ROUNDS)
        self.adopting.clear()
        return [Journal(tuple(entries)), *logs] if entries else logs

    def _release(self, key: EndpointKey, seen: Resolution, writes: list[Write]) -> tuple[Effect, ...]:
        """A released endpoint (not in the fleet): ONE write marking its marker released, if the
        marker is this installation's and as dnsplane wrote it; otherwise it is left as it is."""
        found, records = seen.observed.marker, seen.observed.records
        if found is None or found.released or self.ownership.foreign(seen.observed) is not None:
            self.settled.add(key)  # nothing of ours to mark, or marked already
            return ()
        why = None
        if not generation_in_range(found.generation) or not found.sealed():
            why = "its marker was edited by hand"
        elif records is None or records.digest != found.digest:
            why = "its records are not the ones its marker names"
        else:
            try:
                validate_record_set(key, records, self.zone or key.name)
            except InvalidPlan as err:
                why = f"its records cannot be written back: {err}"
        if why is not None:
            # A released endpoint is not repaired: a marker that says released must not say more
            # than the records show, so a hand-made state stays as found.
            self.settled.add(key)
            return (Log("warning", f"released endpoint left as found, its marker not marked released: {why}",
                        {"actor": self.name, "endpoint": str(key)}),)
        assert records is not None
        marker = Marker.after(found, found.generation, found.digest, self.ownership.owner, released=True)
        writes.append(Write(key, found, records, marker, records))
        self.release_writes[key] = found.generation
        return (Log("info", "endpoint released from the fleet: marking its marker released",
                    {"actor": self.name, "endpoint": str(key), "generation": found.generation}),)

    def _on_released(self, result: WriteResult, logs: list[Effect]) -> list[
            tuple[EndpointKey, str, Generation | None, Generation | None, str]]:
        """The journal entry of a release write; a conflict leaves the endpoint to the next round."""
        key = result.key
        generation = self.release_writes.pop(key)
        match result:
            case Applied(written=False):
                self.settled.add(key)
            case Applied():
                self.settled.add(key)
                return [(key, "release", generation, generation, "no longer in the fleet; marker marked released")]
            case Conflict(current=current):
                before = current.generation if current and generation_in_range(current.generation) else None
                return [(key, "conflict", before, generation, "release: the marker changed before the write")]
            case Rejected(reason=reason):
                self.settled.add(key)  # a write that cannot land is not sent every round
                logs.append(Log("error", "the provider rejected the release of an endpoint",
                                {"actor": self.name, "endpoint": str(key), "reason": reason}))
                return [(key, "quarantined", generation, generation, f"release: {reason}")]
        return []

    def _report_contested(self, key: EndpointKey, other: str | None, generation: Generation) -> tuple[Effect, ...]:
        """Journal and log, once, an endpoint two installations both take over (I7)."""
        if key in self.contested:
            return ()
        why = (f"CONTESTED: this installation had it, and now it carries a marker of another owner {other!r}; "
               "both fleets adopt it (adopt: true). Not written until the fleet changes: leave the endpoint "
               "to one installation")
        self.contested[key] = why
        return (Journal(((key, "contested", None, generation, why),)),
                Log("error", "endpoint contested by another installation: not writing it",
                    {"actor": self.name, "endpoint": str(key), "owner": other or ""}))

    def _report_foreign(self, key: EndpointKey, why: str, generation: Generation) -> tuple[Effect, ...]:
        """Journal and log an endpoint found foreign (I7), once per reason."""
        if self.foreign.get(key) == why:
            return ()
        self.foreign[key] = why
        return (Journal(((key, "foreign", None, generation, why),)),
                Log("error", "foreign records at an endpoint: not repairing (set adopt: true to take it over)",
                    {"actor": self.name, "endpoint": str(key), "reason": why}))
