"""Reading a Route 53 hosted zone in proportion to what is asked, and the zone as this provider last knew it.

Route 53 lists record sets in one order: by name with its labels reversed (``test.demo.a.``), then by
type (API reference, ListResourceRecordSets, "Sort order":
https://docs.aws.amazon.com/Route53/latest/APIReference/API_ListResourceRecordSets.html). An endpoint's
members (``name A``) and its marker (``_dnsplane-a.name TXT``, a child of the name) are next to each
other in it.

Promises:
- a sweep (``_sweep``) reads the record sets at some (name, type) positions: it sorts them in that order,
  starts a ``ListResourceRecordSets`` at the first position not yet covered, takes every wanted position
  its page covers, and jumps to the next uncovered one. The pages' ranges never overlap, so a sweep costs
  at most one call per position and never more calls than a listing of the whole zone (plus one): a read
  of k endpoints costs O(k) calls, not O(zone). A position counts as covered only where both candidate
  orders agree (the documented one compares the reversed name as one string, trailing dot included;
  ministack compares label by label: they differ for names with characters below ``.``, such as ``-``);
- ``read(keys)`` is what Route 53 holds now: the token, then one sweep (never a cached state); it also
  refreshes ``ZoneView``. Its calls are the background's (the verifier's rounds, ``status``): each leaves
  ``BACKGROUND_RESERVE`` requests in the budget (throttle.py), so a writer's round never waits behind a
  verifier reading the whole zone, and the verifier reads on whatever the writers leave;
- ``read_for_write(keys)`` (what an enactor decides its writes on) and ``apply``'s own reads are served
  from ``ZoneView`` when it is current, which costs one ``ListResourceRecordSets`` (the write token,
  MaxItems 1) or none (when the writes carry the token the view holds). The view is current while the
  zone's write token is the one it was read under: every automated write of any process moves the token
  in the same change batch as its records, so an unchanged token means no automated write since. Only
  hand edits (which need not move it) can make a current view stale. That cannot make a compare-and-swap
  unsafe: every write decided on a view DELETEs the endpoint's record sets and marker exactly as the view
  holds them, and the token exactly as the view read it, and Route 53 refuses the whole change batch if
  any of them is not so (after which the endpoint is re-read from Route 53, never from the view).
  ``apply`` decides a first write (the marker CREATEd, which a record set of another set identifier
  added by hand would not refuse) on a fresh read, and answers ``Conflict`` or ``Applied(written=False)``
  from the view only for an enactor's writes (they carry the token: the enactor read the endpoint from
  this view and re-reads it from there after a conflict), any other writer's on a fresh read; an
  enactor's read that is stale
  through a hand edit makes it skip or write (refused, re-read), and the verifier, which reads with
  ``read``, repairs the hand edit as before;
- the view is updated from this provider's own accepted change batches when they were chained to the
  token the view holds (then exactly what Route 53 holds, up to hand edits), and dropped otherwise; a
  read whose token an apply of another thread moved before its sweep ended does not put its states
  (under the older token) over the view that apply left (``ZoneView.epoch``);
  after ``read_all`` (a listing: ``dnsplane up``'s preflight makes one) it is complete, and an endpoint
  not in it is empty without a call (to an enactor's read; its first write is re-read in ``apply``);
- every ``read``, ``read_for_write`` and ``apply`` is a round: its API calls by kind (the write token
  read of the enactor's fence included) are logged on one line (event ``route53_round``) and kept in
  ``stats()``; a round reads the zone at most once (a sweep, or ``read_all``'s listing).

Limits: a name outside both orders' agreement is read with a sweep position of its own (one call or
two); the view holds every endpoint read or written since the token last moved (memory O(zone)); a
round's calls are those made since the provider's previous round ended, so rounds run at once in
several threads share their counts; a hand edit stays out of an enactor's reads until a ``read`` (the
verifier's) or a refused batch sees it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dnsplane.model import EndpointKey, Observed, marker_name
from dnsplane.providers.route53.encoding import RRSet, unescape_name
from dnsplane.providers.route53.state import EMPTY, State, same_set
from dnsplane.providers.route53.token import token_name, token_value

log = logging.getLogger("dnsplane.providers.route53")

PAGE = 300  # list_resource_record_sets page size (Route 53's maximum)
READ_ATTEMPTS = 4  # reads of one endpoint before a moving state is taken as it is
LIST = "list_resource_record_sets"

Position = tuple[str, str]  # (name, type) as Route 53 lists it, name normalised
# requests a background call (``read``) leaves in the budget for the writers: a small round of theirs (the
# token, a page of a sweep, a change batch) never waits behind the verifier
BACKGROUND_RESERVE = 3.0

_priority = threading.local()


@contextmanager
def background() -> Iterator[None]:
    """The calls this thread makes meanwhile leave ``BACKGROUND_RESERVE`` requests of the budget to others."""
    before = getattr(_priority, "reserve", 0.0)
    _priority.reserve = BACKGROUND_RESERVE
    try:
        yield
    finally:
        _priority.reserve = before


def reserve() -> float:
    """Requests this thread's next call must leave in the budget (0: none, a writer's call)."""
    return float(getattr(_priority, "reserve", 0.0))


def _orders(name: str) -> tuple[tuple[str, ...], str]:
    """The two candidate sort keys of a name: label by label (ministack) and one string (Route 53's doc)."""
    labels = tuple(reversed(name.rstrip(".").split(".")))
    return labels, ".".join(labels) + "."


def _before(a: str, b: str) -> bool:
    """``a`` sorts strictly before ``b`` in both orders."""
    (la, sa), (lb, sb) = _orders(a), _orders(b)
    return la < lb and sa < sb


def _not_after(a: str, b: str) -> bool:
    """``a`` sorts before ``b`` or is ``b``, in both orders."""
    return a == b or _before(a, b)


@dataclass
class ZoneView:
    """What this provider knows the zone holds, read (or written by it) after the token ``tag`` was read.

    ``known`` False: nothing is known. Thread-safe: every method takes the view's lock."""

    known: bool = False
    tag: RRSet | None = None  # the token set as read (None: the zone had none)
    states: dict[EndpointKey, State] = field(default_factory=dict)
    complete: bool = False  # every endpoint of the zone is in ``states`` (a listing): one not there is empty
    # moves whenever the view is replaced, written or dropped: states read after a token whose view moved on
    # meanwhile (another thread's apply wrote, its token now the view's) are not put over it
    epoch: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tag_for(self, token_text: str) -> tuple[bool, RRSet | None]:
        """(True, the token set) when the view is known under the token ``token_text``, else (False, None)."""
        with self._lock:
            if self.known and token_value(self.tag) == token_text:
                return True, self.tag
            return False, None

    def lookup(self, keys: Iterable[EndpointKey], token: RRSet | None) -> dict[EndpointKey, State]:
        with self._lock:
            if not (self.known and _same(self.tag, token)):
                return {}
            if self.complete:
                return {k: self.states.get(k, EMPTY) for k in keys}
            return {k: self.states[k] for k in keys if k in self.states}

    def put(self, token: RRSet | None, states: dict[EndpointKey, State], *, complete: bool = False,
            since: int | None = None) -> None:
        """States read after ``token`` was read (when the view's ``epoch`` was ``since``): added, or the whole
        view when the token moved (``complete``: they are every endpoint of the zone, a listing) and the view
        did not move on since that token was read (it did: ``token`` may be older than the view's, and a
        verifier's read would replace the enactors' current view with a stale one)."""
        with self._lock:
            if complete or not (self.known and _same(self.tag, token)):
                if since is not None and since != self.epoch and not complete:
                    return
                self.known, self.tag, self.states, self.complete = True, token, {}, complete
                self.epoch += 1
            self.states.update(states)

    def wrote(self, before: RRSet | None, after: RRSet | None, states: dict[EndpointKey, State]) -> None:
        """A change batch moved the token ``before`` -> ``after`` exactly (chained) and wrote ``states``."""
        with self._lock:
            self.epoch += 1
            if self.known and _same(self.tag, before):
                self.tag = after
                self.states.update(states)
            else:
                self.known, self.states, self.complete = False, {}, False

    def drop(self) -> None:
        with self._lock:
            self.epoch += 1
            self.known, self.states, self.complete = False, {}, False


def _same(a: RRSet | None, b: RRSet | None) -> bool:
    if a is None or b is None:
        return a is b
    return token_value(a) == token_value(b) and a.get("TTL") == b.get("TTL")


def written_state(key: EndpointKey, before: State, changes: Sequence[dict[str, Any]]) -> State:
    """What an endpoint that held ``before`` holds after a change batch with its ``changes`` was accepted: the
    member sets it kept (``state.swap_changes`` leaves a set the write keeps alone), and those it CREATEd."""
    created = [c["ResourceRecordSet"] for c in changes if c["Action"] == "CREATE"]
    deleted = {same_set(c["ResourceRecordSet"]) for c in changes if c["Action"] == "DELETE"}
    kept = [s for s in before.members if same_set(s) not in deleted]
    return State((*kept, *(s for s in created if s["Type"] == key.rtype)),
                 tuple(s for s in created if s["Type"] == "TXT"))  # fmt: skip


class ZoneReads:
    """The read path of ``Route53Provider``: sweeps, the zone view, rounds (mixed into the provider)."""

    hosted_zone_id: str
    zone: str
    calls: dict[str, int]
    view: ZoneView
    _call: Callable[..., Any]
    _round_start: dict[str, int]
    rounds: int
    last_round: dict[str, Any]

    # -- calls ----------------------------------------------------------------------

    def _list(self, start: Position | None = None, page: int = PAGE) -> Iterator[RRSet]:
        kwargs: dict[str, Any] = {"HostedZoneId": self.hosted_zone_id, "MaxItems": str(page)}
        if start is not None:
            kwargs["StartRecordName"], kwargs["StartRecordType"] = start
        while True:
            resp = self._call(LIST, **kwargs)
            yield from resp.get("ResourceRecordSets", [])
            if not resp.get("IsTruncated"):
                return
            _continue(kwargs, resp)

    def _sweep(self, positions: Iterable[Position]) -> dict[Position, list[RRSet]]:
        """The record sets at each position, in one pass over the zone in Route 53's order."""
        found: dict[Position, list[RRSet]] = {p: [] for p in positions}
        left = sorted(found, key=lambda p: (_orders(p[0]), p[1]))
        while left:
            start = left[0]
            kwargs: dict[str, Any] = {"HostedZoneId": self.hosted_zone_id, "MaxItems": str(PAGE),
                                      "StartRecordName": start[0], "StartRecordType": start[1]}  # fmt: skip
            while True:
                resp = self._call(LIST, **kwargs)
                for s in resp.get("ResourceRecordSets", []):
                    p = (unescape_name(s["Name"]), s["Type"])
                    if p in found:
                        found[p].append(s)
                if not resp.get("IsTruncated"):
                    covered = [p for p in left if _covered_from(start, p)]
                    nxt = None
                else:
                    nxt = unescape_name(resp["NextRecordName"])
                    covered = [p for p in left if _covered_from(start, p) and _before(p[0], nxt)]
                done = set(covered) | {start}  # the start is read to the page's end or to ``nxt``
                if nxt is not None and start[0] == nxt:
                    done.discard(start)
                left = [p for p in left if p not in done]
                if nxt is None or not left or left[0][0] != nxt:
                    break
                _continue(kwargs, resp)  # the next wanted name goes on on the next page
        return found

    def _sets_at(self, name: str, rtype: str) -> tuple[RRSet, ...]:
        return tuple(self._sweep([(name, rtype)])[(name, rtype)])

    # -- states ---------------------------------------------------------------------

    def _read_one(self, key: EndpointKey) -> State:
        """One endpoint, read until its records agree with its marker or stop moving."""
        state = self._swept([key])[key]
        for _ in range(READ_ATTEMPTS):
            if state.consistent:
                return state
            again = self._sets_at(key.name, key.rtype)
            if again == state.members:
                return state  # the same records around the marker read: a real (hand-edited) state
            state = self._swept([key])[key]
        log.warning("route53 %s kept changing while read", key, extra={"event": "route53_unstable_read"})
        return state

    def _swept(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, State]:
        found = self._sweep([p for k in keys for p in ((k.name, k.rtype), (marker_name(k), "TXT"))])
        return {k: State(tuple(found[(k.name, k.rtype)]), tuple(found[(marker_name(k), "TXT")])) for k in keys}

    def _fresh(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, State]:
        """What Route 53 holds now (the token first, so that the view may keep what follows)."""
        keys = list(dict.fromkeys(keys))
        since = self.view.epoch
        token = self._token_set()
        states = self._settled(self._swept(keys)) if keys else {}
        self.view.put(token, states, since=since)
        return states

    def _settled(self, states: dict[EndpointKey, State]) -> dict[EndpointKey, State]:
        return {k: s if s.consistent else self._read_one(k) for k, s in states.items()}

    def _known(self, keys: Sequence[EndpointKey], token: RRSet | None, since: int
               ) -> tuple[dict[EndpointKey, State], set[EndpointKey]]:
        """States to decide writes on: from the view where it is current under ``token`` (the token set as
        just read, or as the view holds it when the writes carry it), the rest swept. Returns the states and
        the keys served from the view."""
        keys = list(dict.fromkeys(keys))
        cached = self.view.lookup(keys, token)
        missing = [k for k in keys if k not in cached]
        swept = self._settled(self._swept(missing)) if missing else {}
        self.view.put(token, swept, since=since)
        return {**cached, **swept}, set(cached)

    def _token_set(self) -> RRSet | None:
        """The write token's record set as Route 53 holds it now (None: none yet): one call."""
        name = token_name(self.zone)
        resp = self._call(LIST, HostedZoneId=self.hosted_zone_id, StartRecordName=name, StartRecordType="TXT",
                          MaxItems="1")  # fmt: skip
        for s in resp.get("ResourceRecordSets", [])[:1]:
            if unescape_name(s["Name"]) == name and s["Type"] == "TXT":
                return dict(s)
        return None  # the listing began past it: the zone has none

    def _group_listing(self, sets: Iterable[RRSet]) -> dict[EndpointKey, State]:
        members: dict[EndpointKey, list[RRSet]] = {}
        markers: dict[EndpointKey, list[RRSet]] = {}
        for s in sets:
            name, rtype = unescape_name(s["Name"]), s["Type"]
            if rtype in ("A", "AAAA"):
                members.setdefault(EndpointKey(name, rtype), []).append(s)
            elif rtype == "TXT" and name.startswith("_dnsplane-"):  # a marker; never the write token (token.py)
                label, _, rest = name.partition(".")
                kind = label.removeprefix("_dnsplane-").upper()
                if kind in ("A", "AAAA") and rest:
                    markers.setdefault(EndpointKey(rest, kind), []).append(s)
        keys = dict.fromkeys([*members, *markers])
        return {k: State(tuple(members.get(k, ())), tuple(markers.get(k, ()))) for k in keys}

    # -- the provider's reads ------------------------------------------------------------

    def write_token(self) -> str:
        return token_value(self._token_set())

    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        keys = list(keys)
        with background():
            states = self._fresh(keys)
        self._end_round("read", len(keys))
        return {k: s.observed for k, s in states.items()}

    def read_for_write(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        keys = list(keys)
        since = self.view.epoch
        states, _ = self._known(keys, self._token_set(), since)
        self._end_round("read_for_write", len(keys))
        return {k: s.observed for k, s in states.items()}

    def read_all(self) -> dict[EndpointKey, Observed]:
        token = self._token_set()
        states = self._settled(self._group_listing(self._list()))
        self.view.put(token, states, complete=True)
        self._end_round("read_all", len(states))
        return {k: s.observed for k, s in states.items()}

    # -- rounds ---------------------------------------------------------------------------

    def _end_round(self, kind: str, endpoints: int) -> None:
        """Log the calls made since the last round ended (this round's), by kind."""
        spent = {op: n - self._round_start.get(op, 0) for op, n in self.calls.items()}
        spent = {op: n for op, n in spent.items() if n}
        self._round_start = dict(self.calls)
        self.rounds += 1
        self.last_round = {"kind": kind, "endpoints": endpoints, "calls": spent}
        log.info("route53 round %s of %d endpoint(s): %s", kind, endpoints,
                 ", ".join(f"{n} {op}" for op, n in sorted(spent.items())) or "no call",
                 extra={"event": "route53_round", "fields": self.last_round})  # fmt: skip

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls.copy(), "rounds": self.rounds, "last_round": self.last_round}  # copies: atomic


def _covered_from(start: Position, p: Position) -> bool:
    """``p`` is at or after ``start`` in both orders (types compared only at the same name)."""
    if p[0] == start[0]:
        return p[1] >= start[1]
    return _before(start[0], p[0])


def _continue(kwargs: dict[str, Any], resp: dict[str, Any]) -> None:
    kwargs["StartRecordName"] = resp["NextRecordName"]
    kwargs["StartRecordType"] = resp["NextRecordType"]
    kwargs.pop("StartRecordIdentifier", None)
    if resp.get("NextRecordIdentifier"):
        kwargs["StartRecordIdentifier"] = resp["NextRecordIdentifier"]
