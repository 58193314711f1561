"""The Route 53 provider: weighted record sets plus a marker TXT, compare-and-swap by exact-match DELETE.

This module calls the API and decides what to send; reads (sweeps over the keys asked, the zone view
writes are decided on, API calls counted by round) are in ``reads``, the encoding in ``encoding``, the
state of an endpoint and its changes in ``state``, batch packing in ``batches``, pacing in ``throttle``,
the zone's write token as a record set in ``token``.

Layout of one endpoint ``name A`` in the hosted zone:

- one weighted record set per member with weight > 0: ``SetIdentifier`` = target id,
  ``Weight`` = the member's weight scaled to 1..255 (kept as is when every weight
  of the set is ≤ 255, else ``round(w * 255 / max)``, at least 1), the member's
  addresses, the record set's TTL. An ``answer: all`` record set is one simple
  (non-weighted) record set holding every live address instead;
- the marker TXT at ``model.marker_name(key)`` (``_dnsplane-a.name``), not weighted:
  one value ``"dnsplane g=<gen> d=<digest> p=<prev>"`` (``Marker.to_text()``) and values
  ``"dnsplane-rs <i>" "<chunk>" ...`` that carry the exact ``RecordSet`` as compact
  JSON in strings of at most 255 characters, so a read returns exactly what was written.

And once per zone, the write token (``token``): a TXT at ``_dnsplane-token.<zone>``, one uuid4 hex.

Guarantees:
- compare-and-swap at Route 53 itself: an endpoint's write is one group of changes
  inside one change batch — DELETE of every record set found at the endpoint's name
  and type and of the marker TXT, exactly as listed (values, TTL, weight), then
  CREATE of the new members and marker (a member set the write keeps exactly as it is
  is left alone: the marker's exact DELETE refuses a stale writer; ``state.swap_changes``).
  A write to an endpoint without a marker
  (``expect=None``) CREATEs the marker, which Route 53 refuses if one exists, and
  DELETEs exactly the member record sets it expects (``Write.expect_records``: none
  for a first write, those it saw for the verifier's repair of records left without
  a marker) before CREATEing its own, which Route 53 refuses where a record set of
  the same name, type and set identifier exists. Route 53 applies a batch all or
  nothing and refuses a DELETE that does not match exactly, so a writer whose read
  went stale fails as a whole (``InvalidChangeBatch``). UPSERT is never used for an endpoint's
  record sets (only for the token, below);
- the precondition (the marker at Route 53 is ``expect`` and the records are
  ``expect_records``) is checked against the state read just before sending, or held by the
  zone view (``reads``: current while the write token has not moved), whose member sets the batch
  DELETEs exactly; an answer other than a write is taken on the view only for an enactor's writes
  (they carry the token; the enactor read from that view), another writer's is re-read first: a
  write that already fails it is answered ``Conflict`` without a change batch (so a delayed
  first write finds the records a marker deleted by hand left behind, and fails); a
  write whose records and marker (generation and digest, seal intact: ``Marker.same_content``) are
  already there is answered ``Applied(written=False)`` without a change batch (I6);
- several endpoints share a change batch (≤ 1,000 ResourceRecord elements and
  ≤ 32,000 characters of values, DELETEs and CREATEs counted); an endpoint is never
  split across batches. When a batch is refused, its endpoints are re-read: those
  whose state moved are re-decided against the new state (usually ``Conflict``),
  the others are sent again. Where nothing moved, the batch is narrowed: its endpoints
  are sent again one per batch, and one refused alone although it did not move is
  ``Rejected(key, reason)`` (Route 53's message), the others written;
- the write token (base.py): every change batch that writes endpoints also moves the token to a
  fresh value, in the same batch (hand edits through ``hand_edit`` do not). A write that carries a
  token (``Write.token``) is written only if no automated write reached the zone since that token
  was read: the apply reads the token once (one ``ListResourceRecordSets``; none when the zone view
  holds the token the writes carry, the one the enactor read just before) and answers the token
  writes whose token is not the one read ``Conflict(current marker)`` without a call; while any
  token write of the apply is left, each of its batches DELETEs the token exactly as last known
  (read, then as its own previous batch wrote it: a chain) and CREATEs a fresh one (CREATE only
  when the zone had none, refused if one appeared), so Route 53 refuses the batch if any other
  writer moved it meanwhile; the other batches UPSERT it (no conflict between them). A refused
  chained batch re-reads the token first: if it moved, every token write not yet written is
  ``Conflict(current marker, as re-read)`` (never ``Rejected``), the others go on unchained; if
  not, the refusal is handled as below, the chain kept. This closes the fence's window
  (docs/design.md): a newer plan's write after the writer's token read moved the token, whatever a
  person did to the endpoint afterwards;
- an endpoint whose changes alone exceed a change batch's quotas, or that Route 53 can never hold
  (``batches.endpoint_problem``: over 100 weighted sets, a name or marker name over 255 octets or a
  label over 63) is ``Rejected`` before any call, logged with the reason (``dnsplane validate``
  refuses such a fleet first); the others of its batch are written;
- one apply in flight per hosted zone in this process (a lock per zone id, shared by every
  instance, held from the apply's first read to its last change batch): the enactors of one process
  take turns instead of sending chained batches in lockstep, each refusing the others' (the one that
  waited reads the token its predecessor left, and finds that predecessor's writes in the view);
  every API call takes a token from a ``Budget`` (default: one
  bucket of 5 requests/s shared by the whole process, Route 53's per-account limit;
  ``dnsplane up`` passes its account's ``SharedBudget``, shared through the store by every
  process using it); ``Throttling``, ``PriorRequestNotComplete`` and HTTP 429 are
  retried with exponential backoff and full jitter, then raised as ``ProviderUnavailable``;
- a read is consistent per endpoint: when the weighted sets found do not match the
  record set the marker describes (a read torn by a concurrent write, or a hand
  edit), the endpoint is read again until two reads of its records agree; a hand
  edit then reads back as records rebuilt from what Route 53 really holds, whose
  digest differs from the marker's, so the enactor rewrites it.

Limits:
- the token's price: a token write fails (``Conflict``; the enactor re-reads) if ANY automated write
  reached the zone since its token was read, whatever endpoint it wrote (milliseconds, but several
  enactors writing first writes into one zone at once refuse each other's); an apply with token writes
  costs one more ``ListResourceRecordSets`` (two more when a chained batch is refused); every change
  batch carries one record more (UPSERT) or two (DELETE + CREATE), counted in its quotas. The token
  holds only if it is moved by automated writes alone: a person who sets it back by hand to a value a
  delayed writer read reopens the window for that writer (a person who deletes it refuses the writes
  that read it, once); one edited into weighted sets makes every batch refused;
- Route 53 has no "name and type has no other record set" precondition: a record set
  added by hand at a managed name between this provider's read and its change batch
  (milliseconds, inside one ``apply``) survives that write when its set identifier
  differs from every member written (it is found and repaired by the next read); a
  first write's "no records" is therefore exact up to that window, not beyond it;
- a record set rebuilt from a hand edit has the weights as Route 53 holds them
  (scaled) and TTL 0 when the members' TTLs disagree;
- ``read_all`` reports every A/AAAA name of the zone, managed or not (unmanaged ones
  have no marker);
- with ``wait_insync`` each change batch waits until GetChange answers INSYNC (polled with
  exponential backoff); one not INSYNC after ``INSYNC_TIMEOUT`` seconds of waiting raises
  ``ProviderUnavailable`` (Retryable) although it is committed: the apply's later batches are not
  sent, and its results are lost with the error (the next read finds what was written).

Errors: AccessDenied → ``Permanent`` naming the IAM action; NoSuchHostedZone →
``Permanent``; throttling after the retries, 5xx and connection failures →
``ProviderUnavailable`` (``Retryable``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, assert_never

from dnsplane.errors import Permanent, ProviderUnavailable
from dnsplane.model import EndpointKey, Marker, Observed, RecordSet, Verdict, normalise_name
from dnsplane.providerconfig import Route53Config
from dnsplane.providers.base import Applied, Capabilities, Conflict, Provider, Rejected, Write, WriteResult
from dnsplane.providers.memory import Listener, notify
from dnsplane.providers.route53.batches import MAX_CHARS, MAX_RECORDS, batch_cost, endpoint_problem, pack_batches
from dnsplane.providers.route53.reads import ZoneReads, ZoneView, reserve, written_state
from dnsplane.providers.route53.state import EMPTY, State, new_sets, swap_changes
from dnsplane.providers.route53.throttle import DEFAULT_BUDGET, Budget, zone_lock
from dnsplane.providers.route53.token import TokenChain

log = logging.getLogger("dnsplane.providers.route53")

ROUNDS = 8  # re-reads after refused batches before giving up (Retryable)

_THROTTLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "TooManyRequestsException", "RequestLimitExceeded"}
)
_IAM_ACTIONS = {
    "change_resource_record_sets": "route53:ChangeResourceRecordSets",
    "list_resource_record_sets": "route53:ListResourceRecordSets",
    "get_change": "route53:GetChange",
    "get_hosted_zone": "route53:GetHostedZone",
}


class _Refused(Exception):
    """Route 53 refused a change batch (InvalidChangeBatch)."""


@dataclass
class _Group:
    """The writes of one endpoint in one apply, decided against one state."""

    key: EndpointKey
    writes: list[tuple[int, Write]]
    state: State = EMPTY
    results: list[tuple[int, WriteResult]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    alone: bool = False  # refused in a batch where nothing moved: sent in a batch of its own
    conditional: bool = False  # a write that carries a token is to be written: its batch must be chained

    def decide(self, chain: TokenChain) -> None:
        """Replay the writes in order against ``state`` (as MemoryProvider does); keep the final changes.
        A write that would be written but carries a token ``chain`` no longer allows is a ``Conflict``."""
        current = self.state.observed
        self.results, final, self.conditional = [], None, False
        for idx, w in self.writes:
            match w.verdict(current.marker, current.records):
                case Verdict.APPLIED:
                    self.results.append((idx, Applied(w.key, written=False)))
                case Verdict.CONFLICT:
                    self.results.append((idx, Conflict(w.key, current.marker)))
                case Verdict.WRITE if w.token is not None and not chain.allows(w.token):
                    self.results.append((idx, Conflict(w.key, current.marker)))  # an automated write came since
                case Verdict.WRITE:
                    current = Observed(w.records, w.marker)
                    final = w
                    self.conditional = self.conditional or w.token is not None
                    self.results.append((idx, Applied(w.key)))
                case unreachable:
                    assert_never(unreachable)
        problem = None if final is None else endpoint_problem(self.key, final.records)
        if problem is not None:  # Route 53 would refuse its batch whatever else it holds: never sent
            self.reject(problem)
            return
        new = [] if final is None else new_sets(self.key, final.records, final.marker)
        self.changes = [] if final is None else swap_changes(self.state, new)
        records, chars = batch_cost(self.changes)
        max_records, max_chars = MAX_RECORDS - chain.reserve[0], MAX_CHARS - chain.reserve[1]
        if records > max_records or chars > max_chars:
            self.reject(f"the write needs {records} records / {chars} characters of values in one change "
                        f"batch; Route 53 allows {max_records} / {max_chars} beside the zone's write token: "
                        "give the endpoint fewer targets")

    def reject(self, reason: str) -> None:
        """Nothing of this endpoint is sent: the writes that would have changed it are ``Rejected``."""
        self.results = [(i, Rejected(self.key, reason) if isinstance(r, Applied) and r.written else r)
                        for i, r in self.results]
        log.warning("route53 %s rejected: %s", self.key, reason,
                    extra={"event": "route53_rejected", "fields": {"endpoint": str(self.key), "reason": reason}})
        self.changes = []
        self.conditional = False

    @property
    def enacting(self) -> bool:
        """Every write of the endpoint is an enactor's: it carries the token its writer read."""
        return all(w.token is not None for _, w in self.writes)

    @property
    def written(self) -> int:
        return sum(1 for _, r in self.results if isinstance(r, Applied) and r.written)


class Route53Provider(ZoneReads, Provider):
    """``Provider`` on a Route 53 hosted zone, through boto3 (credentials: boto3's normal chain)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        # an apply packs its endpoints into as many change batches as their records need; 500 endpoints (a
        # sweep of a few pages in zone order) keep an apply's reads and token read few per endpoint
        atomic_batches=True, native_cas=True, weighted_answers=True, max_batch=500, ordered_reads=True
    )
    kind: ClassVar[str] = "route53"

    MAX_ATTEMPTS: ClassVar[int] = 6  # tries of one throttled call
    BACKOFF_BASE: ClassVar[float] = 0.2
    BACKOFF_CAP: ClassVar[float] = 10.0
    INSYNC_TIMEOUT: ClassVar[float] = 180.0  # seconds of waiting for INSYNC before wait_insync gives up
    INSYNC_FIRST_POLL: ClassVar[float] = 1.0  # seconds before the first GetChange; doubled up to BACKOFF_CAP

    def __init__(
        self,
        zone: str,
        config: Route53Config,
        *,
        client: Any | None = None,
        budget: Budget | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``config`` holds the fleet file's options; a ``client`` passed in is used as is (its endpoint
        and region are its own); ``budget``, ``rng`` and ``sleep`` govern retries (tests pass their own)."""
        super().__init__(normalise_name(zone))
        self.config = config
        self.hosted_zone_id = config.hosted_zone_id.rsplit("/", 1)[-1]
        if client is None:
            import boto3
            from botocore.config import Config

            # our own backoff and budget govern retries: botocore must not retry behind them
            client = boto3.client("route53", endpoint_url=config.endpoint_url, region_name=config.region,
                                  config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                                connect_timeout=10, read_timeout=30))
        self.client = client
        self.wait_insync = config.wait_insync
        self.budget = budget if budget is not None else DEFAULT_BUDGET
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep
        self._lock = zone_lock(self.hosted_zone_id)
        self._listeners: list[Listener] = []
        self.calls: dict[str, int] = {}  # API calls made, by operation
        self.view = ZoneView()  # the zone as last read or written here (reads.py)
        self._round_start: dict[str, int] = {}
        self.rounds = 0
        self.last_round: dict[str, Any] = {}

    # -- API calls -------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (0-based): full jitter on an exponential cap."""
        return self._rng.uniform(0, min(self.BACKOFF_CAP, self.BACKOFF_BASE * 2**attempt))

    def _call(self, op: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        from botocore.parsers import ResponseParserError

        for attempt in range(self.MAX_ATTEMPTS):
            self.budget.acquire(reserve())
            self.calls[op] = self.calls.get(op, 0) + 1
            try:
                return getattr(self.client, op)(**kwargs)
            except ClientError as exc:
                err = exc.response.get("Error", {})
                code, message = str(err.get("Code", "")), str(err.get("Message", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
                if code in _THROTTLE_CODES or status == 429:
                    if attempt + 1 < self.MAX_ATTEMPTS:
                        delay = self.backoff(attempt)
                        log.info("route53 %s throttled (%s); retry in %.2fs", op, code or status,
                                 delay, extra={"event": "route53_throttled", "op": op, "attempt": attempt})  # fmt: skip
                        self._sleep(delay)
                        continue
                    raise ProviderUnavailable(reason=f"route53 {op}: still throttled after {self.MAX_ATTEMPTS} "
                                              f"attempts ({code or status})", retry_after=self.BACKOFF_CAP) from exc
                if code == "InvalidChangeBatch":
                    raise _Refused(message) from exc
                if code in ("AccessDenied", "AccessDeniedException") or status == 403:
                    raise Permanent(f"route53: access denied for {_IAM_ACTIONS.get(op, op)} on hosted zone "
                                    f"{self.hosted_zone_id}: {message}") from exc  # fmt: skip
                if code == "NoSuchHostedZone":
                    raise Permanent(f"route53: no hosted zone {self.hosted_zone_id}: {message}") from exc
                if status >= 500 or code in ("ServiceUnavailable", "InternalError"):
                    raise ProviderUnavailable(reason=f"route53 {op}: {code} {message}", retry_after=1.0) from exc
                raise Permanent(f"route53 {op} failed: {code}: {message}") from exc
            except BotoCoreError as exc:
                raise ProviderUnavailable(reason=f"route53 {op}: {exc}", retry_after=1.0) from exc
            except ResponseParserError as exc:  # an answer that is not Route 53's XML (a proxy's page, another API)
                raise ProviderUnavailable(reason=f"route53 {op}: the answer is not Route 53's: "
                                          f"{str(exc).splitlines()[0][:200]}", retry_after=1.0) from exc
        raise AssertionError("unreachable")

    # -- writes ------------------------------------------------------------------

    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        with self._lock:  # one apply at a time per zone in this process: see the module docstring
            return self._apply_alone(writes)

    def _apply_alone(self, writes: Sequence[Write]) -> list[WriteResult]:
        groups: dict[EndpointKey, _Group] = {}
        for i, w in enumerate(writes):
            groups.setdefault(w.key, _Group(w.key, [])).writes.append((i, w))
        carried = {w.token for w in writes if w.token is not None}
        since = self.view.epoch
        held, token = self.view.tag_for(carried.pop()) if len(carried) == 1 else (False, None)
        if not held:  # the token read once: the view's states are current while it has not moved (reads.py)
            token = self._token_set()
        states, cached = self._known(list(groups), token, since)
        chain = TokenChain(self.zone)
        for g in groups.values():
            g.state = states[g.key]
            g.decide(chain)
        # only a write that DELETEs the marker exactly is decided on the view: a first write (CREATE of the
        # marker) is not refused by a record set of another id added by hand, so it is decided on Route 53's
        # state now, and so is every answer that is not a write, but for an enactor's (a write carrying the
        # token): it read the endpoint from this same view (``read_for_write``) and re-reads it from there
        # after a ``Conflict``, so a fresh read would decide nothing its own read does not, and would cost
        # the enactors of one process, which find each other's writes done, a sweep each
        unsure = [g for g in groups.values()
                  if g.key in cached and (g.state.observed.marker is None if g.changes else not g.enacting)]
        if unsure:
            fresh = self._fresh([g.key for g in unsure])
            for g in unsure:
                g.state = fresh[g.key]
                g.decide(chain)
        if any(g.conditional for g in groups.values()):  # writes the token no longer allows conflict
            chain.start(token)
            for g in groups.values():
                g.decide(chain)
        pending = [g for g in groups.values() if g.changes]
        written: list[EndpointKey] = []
        rounds = 0
        while pending:
            if rounds == ROUNDS:
                raise ProviderUnavailable(reason=f"route53: change batches kept being refused after {ROUNDS} re-reads",
                                      retry_after=1.0)  # fmt: skip
            pending = self._send(pending, written, chain)
            rounds += 1
        results: list[WriteResult | None] = [None] * len(writes)
        for g in groups.values():
            for idx, r in g.results:
                results[idx] = r
        notify(self._listeners, written)
        self._end_round("apply", len(groups))
        return [r for r in results if r is not None]

    def _send(self, pending: list[_Group], written: list[EndpointKey], chain: TokenChain) -> list[_Group]:
        """Send the groups in packed batches, each moving the write token (``TokenChain``: chained while the
        apply has token writes left and no other writer moved it); returns the groups to send again (re-read
        and re-decided)."""
        again: list[_Group] = []
        together = [g for g in pending if not g.alone]
        packed = pack_batches([batch_cost(g.changes) for g in together],
                              MAX_RECORDS - chain.reserve[0], MAX_CHARS - chain.reserve[1])  # fmt: skip
        batches = [[together[i] for i in b] for b in packed] + [[g] for g in pending if g.alone]
        for n, groups in enumerate(batches):
            if not chain.intact:  # decided before another writer's move was seen: those writes now conflict
                for g in groups:
                    if g.conditional:
                        g.decide(chain)
                groups = [g for g in groups if g.changes]
                if not groups:
                    continue
            # chained while any token write is left (this batch, the later ones, or sent again): an UPSERT
            # before it would hide another writer's move from it
            chained = chain.intact and any(g.conditional for g in (*(g for b in batches[n:] for g in b), *again))
            changes = [c for g in groups for c in g.changes] + chain.changes(chained)
            try:
                self._change(changes, f"dnsplane: {len(groups)} endpoint(s)")
            except _Refused as refused:
                token_moved = chained and chain.moved(self._token_set())
                if token_moved:  # not by this apply: its token writes not yet written conflict, the rest go on
                    chain.break_chain()
                fresh = self._fresh([g.key for g in groups])
                moved = [g for g in groups if fresh[g.key].raw() != g.state.raw()]
                log.info("route53 batch refused; %d of %d endpoints moved, token moved: %s", len(moved), len(groups),
                         token_moved, extra={"event": "route53_refused", "reason": str(refused)})  # fmt: skip
                for g in groups:
                    if not moved and not token_moved and len(groups) == 1:
                        g.reject(f"Route 53 refused the endpoint's change batch although it did not move: {refused}")
                        continue
                    # narrow a refusal no move explains to the endpoints at fault
                    g.alone = g.alone or not (moved or token_moved)
                    g.state = fresh[g.key]
                    g.decide(chain)
                    if g.changes:
                        again.append(g)
                continue
            before = chain.held
            chain.landed()
            if chained:  # the token moved from the one the batch DELETEd exactly: the view may follow
                self.view.wrote(before, chain.held, {g.key: written_state(g.key, g.state, g.changes) for g in groups})
            else:  # an UPSERT does not say which token it replaced
                self.view.drop()
            for g in groups:
                self.writes += g.written
                if g.written:
                    written.append(g.key)
        return again

    def _change(self, changes: list[dict[str, Any]], comment: str) -> None:
        with self._lock:
            resp = self._call(
                "change_resource_record_sets",
                HostedZoneId=self.hosted_zone_id,
                ChangeBatch={"Comment": comment, "Changes": changes},
            )
            info = resp.get("ChangeInfo", {})
            log.debug("route53 change %s: %d changes", info.get("Id"), len(changes),
                      extra={"event": "route53_change", "zone": self.hosted_zone_id})  # fmt: skip
            if self.wait_insync and info.get("Id"):
                self._wait_insync(info["Id"], info.get("Status"))

    def _wait_insync(self, change_id: str, status: str | None) -> None:
        """Poll GetChange until the change is INSYNC (on every Route 53 DNS server): the first poll after
        ``INSYNC_FIRST_POLL`` s, each wait twice the last (full range jitter of half), at most
        ``BACKOFF_CAP`` s. Raises ``ProviderUnavailable`` once ``INSYNC_TIMEOUT`` s were spent waiting
        and it is still not INSYNC: the change is committed (a read sees it), only not yet served
        everywhere, so the caller retries the apply and finds it already applied."""
        left, attempt = self.INSYNC_TIMEOUT, 0
        while status != "INSYNC":
            if left <= 0:
                raise ProviderUnavailable(
                    reason=f"route53 change {change_id} of hosted zone {self.hosted_zone_id} is committed but still "
                    f"{status} after {self.INSYNC_TIMEOUT:.1f}s of polling GetChange (the wait_insync bound): "
                    "its records are written, not yet served by every Route 53 DNS server",
                    retry_after=self.BACKOFF_CAP,
                )
            step = min(self.BACKOFF_CAP, self.INSYNC_FIRST_POLL * 2**attempt)
            delay = min(left, step * (0.5 + self._rng.random() / 2))  # the last poll at the bound itself
            self._sleep(delay)
            left -= delay
            attempt += 1
            status = self._call("get_change", Id=change_id).get("ChangeInfo", {}).get("Status")

    # -- test and repair hooks ------------------------------------------------------

    def hand_edit(self, key: EndpointKey, records: RecordSet | None, marker: Marker | None) -> None:
        """Overwrite an endpoint's records and marker with no check at all (``None`` removes that part)."""
        state = self._read_one(key)
        edit = swap_changes(state, new_sets(key, records, marker))
        if edit:
            self._change(edit, "dnsplane: hand edit")
            self.view.drop()  # it does not move the token
        log.info("hand edit of %s: records %s, marker %s", key, records and records.digest, marker)
        notify(self._listeners, [key])

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(keys)`` after every apply of this instance that wrote ``keys`` (in the writer's thread)."""
        self._listeners.append(fn)
