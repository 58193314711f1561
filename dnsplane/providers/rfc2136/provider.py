"""The RFC 2136 provider: records and markers in any dynamic-UPDATE server (BIND9), TSIG-signed.

This module decides what to send (I6, compare-and-swap, resend rounds, the read cache); how an
endpoint is encoded is in ``marker``, the bytes in ``wire`` and ``tsig``, the connection in
``transport``, reads in ``reads``, errors in ``failures``.

Layout of one endpoint ``(name, rtype)`` in the zone:

- ``name rtype``: the addresses of every member with weight > 0, TTL = the record set's TTL.
  BIND keeps no weights: weighted answers are not served (``weighted_answers=False``);
- ``_dnsplane-<rtype>.name TXT``: the marker TXT as every provider lays it out (``providers/marker_txt.py``):
  a record holding ``Marker.to_text()`` (``dnsplane g=<generation> d=<digest> p=<prev> o=<owner>``), followed
  — only when the record set cannot be rebuilt from the addresses alone (other target ids, weights other
  than 1, ``answer: all``) — by records ``"dnsplane-rs <i>" "<chunk>" ...`` carrying the compact
  ``RecordSet.to_json()``. The layout written before (one record: the marker, then the JSON) is still read
  (``marker``). The digest in the marker covers weights and target ids even though BIND serves neither.

Guarantees:
- every write of an endpoint is conditional on the WHOLE marker TXT RRset this provider last saw,
  ``p=`` included (RFC 2136 §2.4.2 value-dependent "RRset exists", TTL 0; or §2.4.3 "RRset does not exist" when
  there was none) and replaces the records and the marker in the same UPDATE message, which the
  server applies all or nothing: a stale writer's change fails as a whole (NXRRSET/YXRRSET);
- every write is also conditional on the endpoint's A/AAAA RRset as last seen, which must be
  what the write expects (``Write.expect_records``): "RRset does not exist" for a first write,
  else exactly the addresses seen (a marker set back or deleted by hand over records that moved
  on must not let a delayed write land). BIND keeps no weights, so these records are their addresses
  (and the record-set JSON a marker-less TXT may carry, fenced by the TXT prerequisite); the
  prerequisite does not compare TTLs (it carries TTL 0; servers compare rdata only);
- every write also carries "no CNAME RRset" prerequisites at the name and the marker name (a
  server ignores address records added at a CNAME's name and would apply the marker alone: a
  marker that says written over a name that answers nothing), "no DNAME" at the name (it would
  hide the marker) and, below the apex, "no NS" at the name (a delegation is not served); what
  prerequisites cannot say (a DNAME or a delegation above the name) is read back after the write;
- many endpoints go in one UPDATE (a prerequisite each); when a message is refused for a
  prerequisite, its endpoints are re-read, the ones whose marker moved come back ``Conflict``
  (or ``Applied(written=False)`` when they already hold the write), and the rest are sent again,
  each again with its own prerequisite — at most ``MAX_ROUNDS`` rounds, then ``ProviderUnavailable``.
  One endpoint never blocks the others: the endpoints of a refused message that the re-read shows
  unchanged (nothing explains the refusal) are sent again one per message, and one refused alone
  although it reads unchanged is ``Rejected``; so is, before anything is sent, an endpoint whose
  write does not fit one DNS message (or one record: the marker TXT), and one where a read saw
  what makes the server ignore records written there (``RawState.blocked``: a CNAME at the name,
  a DNAME above, a delegation covering it). A rejected endpoint is not written at all, its marker
  included; the other endpoints are written;
- I6: a write whose records and marker (generation and digest, seal intact: ``Marker.same_content``) the
  endpoint already holds is not sent. The state used for
  that decision is the provider's own last read of the endpoint (the enactor reads right before it
  writes) when at most ``FRESH`` seconds old, else a new read; a stale view can cost one refused
  message, never a wrong write, because the prerequisite is what fences;
- reads are consistent snapshots: keys are read with queries pipelined on one TCP connection,
  bracketed by two SOA queries whose serials must agree (retried, then AXFR); ``read_all``, and
  ``read`` of more keys than make queries cheaper than a transfer, use one TSIG-signed AXFR, which
  the server serves from one version of the zone;
- records edited by hand are seen: when the addresses or TTL served differ from what the marker's
  record set implies, ``read`` returns the served addresses as one member per address (weight 1,
  target id = the address), whose digest differs from the marker's, so enactor and verifier repair it;
- the zone's write token (``Provider.write_token``, providers/base.py) is a TXT at ``_dnsplane-token.<zone>``
  (``token``; ``write_token`` is one TSIG-signed query). Every UPDATE message that writes endpoints also
  replaces it by a fresh ``uuid4`` value, in the same all-or-nothing message. A message holding writes that
  carry a token (``Write.token``) also carries the prerequisite that the token is exactly the value this
  apply's chain expects (§2.4.2, TTL 0; §2.4.3 "does not exist" for ``TOKEN_ABSENT``): the writes' value,
  or the value this apply's own previous conditional message set. Those messages go first, one at a time
  (each waits for the one before); the others go only once all of them were applied (an unconditional
  message moves the token without knowing from where: after it, the apply's own change and another
  writer's look alike). When a conditional message is refused, the token is read again: if it is not
  where the chain expects it, an automated write reached the zone since it was read, and every write
  carrying it not yet written comes back ``Conflict`` (the endpoint as re-read), never ``Rejected``;
  if it is (token values never repeat, so it was there when the server compared), the refusal is the
  endpoints' and is handled as above, the prerequisite kept on every retry. This closes the store
  fence's window (docs/design.md): a plan written after the writer's token read moved the token, and a
  person deleting the endpoint afterwards does not put it back. The undo of an unserved write (below)
  does not move it: it puts back what was there before the write, which itself moved the token; a
  plan published before the write was read by any fence that read the token after it;
- every message (UPDATE, query, AXFR) is TSIG-signed and responses are verified; UPDATEs go over
  TCP, several messages pipelined on one connection (conditional ones one at a time).

Limits:
- the write token's price: a conditional message fails if ANY automated write (of any endpoint, by any
  dnsplane writer of the zone) reached the zone since the token was read (its writes come back
  ``Conflict``; the enactor re-reads and decides again); BIND raises nothing else. Each conditional message
  costs a round trip of its own (they are not pipelined), and the unconditional writes of an apply whose
  conditional message was refused wait one more round. Hand edits do not move the token (``hand_edit``,
  a person's UPDATE); a token TXT edited by hand is still compared exactly (``token``);
- an ``apply`` larger than one DNS message (64 KiB: about 350 endpoints of one address without
  record-set JSON, fewer with it) is sent as several messages; each is all-or-nothing, the apply
  as a whole is not;
- a DNAME or a delegation added above a name between the read and the write (no prerequisite
  can say "no DNAME above") lets that write land unserved: the read-back after it (one query per
  distinct parent name) sees it and undoes the write, conditional on what it wrote, so the marker
  does not say written; the endpoint is ``Rejected``. Between the write and its undo (one round
  trip) the marker says written over an unserved name, and an undo refused because someone wrote
  in between is logged and left to the next read;
- ``read_all`` lists the endpoints that have a marker TXT; A/AAAA records without any dnsplane TXT
  are not taken as managed (they may belong to someone else);
- the generation order of markers is not checked here (the enactor does); the exact-marker
  prerequisite is the fence.
"""

from __future__ import annotations

import binascii
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import ClassVar, assert_never

import dns.exception
import dns.name
import dns.rcode
import dns.tsig

from dnsplane.errors import Permanent, ProviderUnavailable
from dnsplane.model import EndpointKey, Marker, Observed, RecordSet, Verdict, normalise_name
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.base import Applied, Capabilities, Conflict, Provider, Rejected, Write, WriteResult
from dnsplane.providers.memory import Listener, notify
from dnsplane.providers.rfc2136.failures import PREREQ_FAILED, Failures
from dnsplane.providers.rfc2136.keys import TsigKey, known_algorithm, parse_key_file
from dnsplane.providers.rfc2136.marker import RawState, norm, txt_rdatas
from dnsplane.providers.rfc2136.reads import ZoneReader
from dnsplane.providers.rfc2136.token import Chain, fresh, token_rdatas
from dnsplane.providers.rfc2136.transport import Channel
from dnsplane.providers.rfc2136.wire import TYPES, Unwritable, UpdateBuilder, address_rdata, encode_write, relative

log = logging.getLogger("dnsplane.providers.rfc2136")

MAX_ROUNDS = 8  # UPDATE rounds per apply when prerequisites keep failing
FRESH = 5.0  # seconds a read of an endpoint is trusted for the I6 decision and the prerequisite
_CACHE_LIMIT = 262_144
_Net = tuple[Write, int, "str | None"]  # a key's net write, how many writes it stands for, the token it carries
_MAX_MESSAGE = 65_535 - 512  # room for the TSIG record (about 120 bytes) and the write token's parts (about 150)


class Rfc2136Provider(Provider):
    """``Provider`` on a zone of an RFC 2136 server, every message TSIG-signed."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        atomic_batches=True, native_cas=True, weighted_answers=False, max_batch=500
    )
    kind: ClassVar[str] = "rfc2136"
    fresh_for: float = FRESH  # seconds a read of an endpoint stands for its state in ``apply``
    read_back: bool = True  # ask the server, after each write, whether the names written are served

    def __init__(
        self, zone: str, config: Rfc2136Config, *, key_secret: str | None = None, algorithm: str = "hmac-sha256"
    ) -> None:
        """``config`` holds the fleet file's options; ``key_secret`` (base64) and ``algorithm`` give a key
        inline instead of ``config.key_file`` (with ``config.key_name``): tests and scripts, never a fleet file."""
        super().__init__(normalise_name(zone))
        self.config = config
        server, port, key_name, max_batch = config.server, config.port, config.key_name, config.max_batch
        self.server = server
        self.port = port
        self.timeout = timeout = config.timeout
        self.capabilities = Capabilities(  # type: ignore[misc]  # a ClassVar in Provider; max_batch is per instance here
            atomic_batches=True, native_cas=True, weighted_answers=False, max_batch=max_batch
        )
        if config.key_file is not None:
            tsig = parse_key_file(config.key_file, key_name)
        elif key_name is not None and key_secret is not None:
            if not known_algorithm(algorithm):
                raise Permanent(f"rfc2136 provider for {self.zone}: unknown TSIG algorithm {algorithm!r}")
            tsig = TsigKey(normalise_name(key_name), algorithm.lower(), key_secret)
        else:
            raise Permanent(
                f"rfc2136 provider for {self.zone} at {server}:{port} needs a TSIG key: "
                "give key_file (a BIND key file), or key_name and key_secret"
            )
        try:
            key = dns.tsig.Key(tsig.name, tsig.secret, tsig.algorithm)
        except (binascii.Error, ValueError) as exc:
            raise Permanent(f"TSIG key {tsig.name}: secret is not valid base64 ({exc})") from exc
        self.key_name = tsig.name
        self._failures = Failures(self.where, self.zone, self.key_name)
        self._channel = Channel(server, port, timeout, key, self._failures)
        self._reader = ZoneReader(self._channel, self.zone)
        self._zone_wire = dns.name.from_text(self.zone).to_digestable()  # uncompressed wire, as bytes
        self._lock = threading.Lock()
        self._seen: dict[EndpointKey, tuple[float, RawState]] = {}
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        return f"Rfc2136Provider(zone={self.zone!r}, server={self.server!r}, port={self.port})"

    @property
    def where(self) -> str:
        return f"{self.server}:{self.port} zone {self.zone}"

    # -- reads -----------------------------------------------------------------------

    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        keys = list(dict.fromkeys(keys))
        raw = self._read_raw(keys)
        return {k: raw[k].observed for k in keys}

    def read_all(self) -> dict[EndpointKey, Observed]:
        raw = self._reader.axfr(None)
        return {k: r.observed for k, r in raw.items()}

    def write_token(self) -> str:
        """The zone's write token: the TXT at ``_dnsplane-token.<zone>`` (``token``), one TSIG-signed query."""
        return self._reader.token()

    def _read_raw(self, keys: list[EndpointKey]) -> dict[EndpointKey, RawState]:
        if not keys:
            return {}
        started = time.monotonic()  # the state read is at least this old
        raw = self._reader.read(keys)
        with self._lock:
            self._remember_unlocked({k: (started, r) for k, r in raw.items()})
        return raw

    def _remember_unlocked(self, entries: dict[EndpointKey, tuple[float, RawState]]) -> None:
        if len(self._seen) + len(entries) > _CACHE_LIMIT:
            self._seen.clear()  # forgetting only costs a read
        for k, entry in entries.items():
            # a read that began before a write this instance saw answered may hold the state before
            # it: it must not replace what the write left (a stale view costs a refused message, or a
            # Conflict decided on it with nothing sent)
            known = self._seen.get(k)
            if known is None or known[0] <= entry[0]:
                self._seen[k] = entry

    # -- writes ----------------------------------------------------------------------

    def _known(self, keys: list[EndpointKey]) -> dict[EndpointKey, RawState]:
        """The last read of each key when fresh enough, else a new read (I6 and the prerequisites use it)."""
        now = time.monotonic()
        known: dict[EndpointKey, RawState] = {}
        with self._lock:
            for k in keys:
                seen = self._seen.get(k)
                if seen is not None and now - seen[0] <= self.fresh_for:
                    known[k] = seen[1]
        missing = [k for k in keys if k not in known]
        known.update(self._read_raw(missing))
        return known

    def _decide(
        self, writes: Sequence[Write], indices: list[int], raw: RawState, results: list[WriteResult | None],
        chain: Chain,
    ) -> _Net | None:
        """Run one key's writes in order against its state; return the net write to send, how many
        writes it stands for and the write token it is conditional on (None: nothing to send)."""
        marker, records = raw.observed.marker, raw.observed.records
        last: Write | None = None
        count = 0
        token: str | None = None  # the token (as the writes carry it) whose chain the net write expects
        for i in indices:
            w = writes[i]
            match w.verdict(marker, records):
                case Verdict.APPLIED:
                    results[i] = Applied(w.key, written=False)  # I6: already there, nothing to send
                case Verdict.CONFLICT:
                    results[i] = Conflict(w.key, marker)
                case Verdict.WRITE:
                    if w.token is not None:
                        want = chain.expects(w.token)
                        if want is None or (token is not None and want != chain.expects(token)):
                            # an automated write reached the zone since the token was read
                            results[i] = Conflict(w.key, marker)
                            continue
                        token = w.token if token is None else token  # TOKEN_ABSENT is "": test None
                    results[i] = Applied(w.key)
                    marker, records, last = w.marker, w.records, w
                    count += 1
                case unreachable:
                    assert_never(unreachable)
        if last is None or (marker == raw.observed.marker and records == raw.observed.records):
            return None
        return last, count, token

    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        by_key: dict[EndpointKey, list[int]] = {}
        for i, w in enumerate(writes):
            by_key.setdefault(w.key, []).append(i)
        results: list[WriteResult | None] = [None] * len(writes)
        chain = Chain(w.token for w in writes)
        raw = self._known(list(by_key))
        todo = list(by_key)
        alone: set[EndpointKey] = set()  # refused where nothing moved: sent one per message to find the culprit
        try:
            for round_no in range(MAX_ROUNDS):
                sends = {}
                for k in todo:
                    net = self._decide(writes, by_key[k], raw[k], results, chain)
                    if net is None:
                        continue
                    if raw[k].blocked:  # the server would ignore the records: do not let the marker say otherwise
                        _reject(k, raw[k].blocked, by_key[k], results)
                    else:
                        sends[k] = net
                if not sends:
                    break
                refused, failed, unfit, todo = self._send(sends, raw, alone, chain)
                for k, reason in unfit.items():
                    _reject(k, reason, by_key[k], results)
                for msg, error in failed:
                    if len(msg) == 1 and msg[0] in alone:
                        # refused alone while the server took other messages of the same exchange: the
                        # server will not take this endpoint (BIND's max-records-per-type, an
                        # update-policy that does not grant the name...)
                        _reject(msg[0], f"{self.where} answered {error} to its write alone while it took the rest "
                                "of the exchange; the server's log says why (BIND: 'too many records' is "
                                "max-records-per-type, 100 by default; REFUSED: update-policy does not grant the "
                                "name)", by_key[msg[0]], results)
                    else:  # nothing was written: send them again one per message to find the one at fault
                        alone.update(msg)
                        todo.extend(msg)
                if not refused:
                    if todo:
                        continue
                    break
                keys = [k for msg, _, _ in refused for k in msg]
                log.info(
                    "prerequisite failed; re-reading",
                    extra={"fields": {"provider": self.kind, "zone": self.zone, "keys": len(keys),
                                      "round": round_no + 1}},
                )
                fenced = {k: raw[k] for k in keys}
                raw.update(self._read_raw(keys))
                if any(token is not None for _, _, token in refused):
                    # Token values never repeat: if the token is where this apply's chain expects it, it was
                    # there when each refused message was applied, so their endpoints refused them
                    chain.observed(self._reader.token())
                for msg, rcode, token in refused:
                    if token is not None and chain.expects(token) is None:
                        # an automated write moved the token since it was read: these writes come back
                        # Conflict (``_decide``), on the endpoints as just read, and nobody is at fault
                        todo.extend(msg)
                        continue
                    unchanged = [k for k in msg if _same(raw[k], fenced[k])]
                    if len(msg) == 1 and unchanged:  # refused alone although nothing moved: this one is at fault
                        k = msg[0]
                        _reject(k, raw[k].blocked or (
                            f"{self.where} refused its write ({rcode}) although a re-read shows the endpoint "
                            "unchanged: something the reads do not show stands at or above the name (see "
                            "`dnsplane status` and the zone); the other endpoints were written"), by_key[k], results)
                        continue
                    alone.update(unchanged)
                    todo.extend(msg)
                if not todo:
                    break
            else:
                raise ProviderUnavailable(
                    reason=f"UPDATE at {self.where}: prerequisites kept failing for {len(todo)} endpoints after "
                    f"{MAX_ROUNDS} rounds (concurrent writers); retrying later", retry_after=1.0)
        except BaseException:
            with self._lock:  # the outcome of messages in flight is unknown: read them again next time
                for k in by_key:
                    self._seen.pop(k, None)
            raise
        return [r for r in results if r is not None]

    def _pack(
        self, sends: dict[EndpointKey, _Net], raw: dict[EndpointKey, RawState], alone: set[EndpointKey]
    ) -> tuple[list[UpdateBuilder], dict[EndpointKey, RawState], dict[EndpointKey, str]]:
        """Encode the writes into as few messages as fit (the ``alone`` keys one per message; the writes
        conditional on one write token apart from the others); return the messages, each written key's
        state once applied, and the keys whose write fits no message, why."""
        builders: list[UpdateBuilder] = []
        shared: dict[str | None, UpdateBuilder] = {}  # the message being filled, by the token its writes expect
        new_raw: dict[EndpointKey, RawState] = {}
        unfit: dict[EndpointKey, str] = {}
        for k, (w, _, token) in sends.items():
            b = shared.get(token)
            if k in alone or b is None:
                b = UpdateBuilder(self._zone_wire)
                b.expect_token = token
                builders.append(b)
                if k not in alone:
                    shared[token] = b
            mark = b.mark()
            try:
                after = encode_write(w, raw[k], self.zone, b)
                if b.size() > _MAX_MESSAGE and b.keys:  # undo and start a new message
                    b.undo(mark)
                    b = shared[token] = UpdateBuilder(self._zone_wire)
                    b.expect_token = token
                    builders.append(b)
                    mark = b.mark()
                    after = encode_write(w, raw[k], self.zone, b)
            except Unwritable as exc:
                b.undo(mark)
                unfit[k] = exc.reason
                continue
            if b.size() > _MAX_MESSAGE:
                size = b.size()
                b.undo(mark)
                unfit[k] = (f"its write needs a {size}-byte UPDATE, more than one DNS message holds "
                            f"({_MAX_MESSAGE}): give the endpoint fewer targets")
                continue
            b.keys.append(k)
            new_raw[k] = after
        return [b for b in builders if b.keys], new_raw, unfit

    def _send(
        self, sends: dict[EndpointKey, _Net], raw: dict[EndpointKey, RawState], alone: set[EndpointKey],
        chain: Chain,
    ) -> tuple[list[tuple[list[EndpointKey], str, str | None]], list[tuple[list[EndpointKey], str]],
               dict[EndpointKey, str], list[EndpointKey]]:
        """Send the writes in as few messages as fit, each moving the write token. Return the messages
        refused for a prerequisite (their keys, rcode and the token their writes carry), those refused
        otherwise while the server took another message of the exchange (their keys and the error), the
        keys whose write fits no message (with the reason; nothing of them was sent), and the keys to
        decide again without judging them (not sent: see below).

        The messages whose writes carry a token go first, one at a time, each conditional on the token as
        this apply's chain (``token.Chain``) expects it after the ones before; the others go after them,
        pipelined, and only when every conditional message was applied: once an unconditional message has
        moved the token, this apply can no longer tell its own change from another writer's. When a
        conditional message is not applied, the unconditional ones wait for the next round.

        When endpoints go one per message (``alone``), a control message goes with them (a prerequisite
        that the zone's SOA exists, no update): if the server takes it, a refusal is the endpoint's, not
        the server's; if it refuses the control too, the server (or the key, the zone) is at fault: raised
        (``failures.Failures.rcode``). Messages refused otherwise come back for one more, narrowing round."""
        builders, new_raw, unfit = self._pack(sends, raw, alone)
        if not builders:
            return [], [], unfit, []
        checked = any(k in alone for b in builders for k in b.keys)
        conditional = [b for b in builders if b.expect_token is not None]
        plain = [b for b in builders if b.expect_token is None]
        ch = self._channel
        doing = f"UPDATE of {len(new_raw)} endpoints"
        refused: list[tuple[list[EndpointKey], str, str | None]] = []
        failed: list[tuple[list[EndpointKey], int]] = []
        again: list[EndpointKey] = []
        written: list[EndpointKey] = []
        error: Exception | None = None
        taken = False  # the server took at least one message of the exchange

        def outcome(b: UpdateBuilder, mac: bytes, resp: bytes) -> bool:
            """Record one message's response; whether the server applied it."""
            nonlocal error, taken
            try:
                msg = ch.verify(resp, mac, doing)
            except Permanent as exc:
                error = error or exc
                return False
            rcode = msg.rcode()
            if rcode == dns.rcode.NOERROR:
                taken = True
                written.extend(b.keys)
                with self._lock:
                    self.writes += sum(sends[k][1] for k in b.keys)
                    self._remember_unlocked({k: (time.monotonic(), new_raw[k]) for k in b.keys})
                return True
            if rcode in PREREQ_FAILED:
                taken = True  # the server read the message and compared its prerequisites
                refused.append((b.keys, dns.rcode.to_text(rcode), b.expect_token))
            else:
                failed.append((b.keys, rcode))
            return False

        try:
            with ch.connect() as sock:
                for b in conditional:
                    want = chain.expects(b.expect_token) if b.expect_token is not None else None
                    if want is None or error is not None:  # the chain broke in this exchange: Conflict
                        again.extend(b.keys)
                        continue
                    new, rdata = fresh()
                    b.move_token(token_rdatas(want), rdata)
                    (msg_id,) = ch.ids(1)
                    wire, mac = ch.signer.sign(b.body(msg_id), msg_id)
                    (resp,) = ch.exchange(sock, [wire])
                    if outcome(b, mac, resp):
                        chain.moved(want, new)
                if refused or failed or again or error is not None:
                    again.extend(k for b in plain for k in b.keys)
                    plain = []
                batch = plain
                for b in plain:
                    b.move_token(None, fresh()[1])
                if checked:
                    control = UpdateBuilder(self._zone_wire)
                    control.require_zone()
                    batch = [*plain, control]
                if batch:
                    signed = [ch.signer.sign(b.body(i), i) for b, i in zip(batch, ch.ids(len(batch)), strict=True)]
                    responses = ch.exchange(sock, [w for w, _ in signed])
                    for b, (_, mac), resp in zip(batch, signed, responses, strict=True):
                        outcome(b, mac, resp)
        except (OSError, dns.exception.Timeout) as exc:
            notify(self._listeners, written)
            raise self._failures.unavailable(exc, doing) from exc
        if written and error is None and self.read_back:
            for k, reason in self._read_back(written, sends, raw, new_raw).items():
                unfit[k] = reason
                written.remove(k)
        notify(self._listeners, written)
        if error is None and failed and not taken and checked:
            # not even the control was taken: the server (or the key, the zone) is at fault
            error = self._failures.rcode(failed[0][1], doing)
        if error is not None:
            raise error
        log.debug("update sent", extra={"fields": {"provider": self.kind, "zone": self.zone,
                                                   "endpoints": len(new_raw), "messages": len(builders),
                                                   "refused": len(refused), "failed": len(failed)}})
        return refused, [(keys, dns.rcode.Rcode.to_text(rcode)) for keys, rcode in failed], unfit, again

    def _read_back(
        self, written: list[EndpointKey], sends: dict[EndpointKey, _Net],
        before: dict[EndpointKey, RawState], after: dict[EndpointKey, RawState],
    ) -> dict[EndpointKey, str]:
        """Ask the server, for the names just written, whether they are served: where the answer comes
        through a DNAME or a referral (one added ABOVE the name since the read: no prerequisite can say
        "no DNAME above"; at the name itself the prerequisites exclude them), the records are not
        served, so the write is undone (its marker must not say written) and the key comes back with
        the reason, to be ``Rejected``. What is above a name is what is above its parent: one query
        per distinct parent (usually one per apply), its answer standing for every name under it."""
        by_parent: dict[str, list[EndpointKey]] = {}
        for k in written:
            if k.name != self.zone:  # nothing of the zone is above its apex
                by_parent.setdefault(k.name.split(".", 1)[1], []).append(k)
        if not by_parent:
            return {}
        probes = self._reader.occluded([keys[0] for keys in by_parent.values()])
        occluded = {k: reason.replace(keys[0].name, k.name) for keys in by_parent.values()
                    if (reason := probes.get(keys[0])) for k in keys}
        for k, reason in occluded.items():
            log.warning("written records are not served; undoing the write",
                        extra={"fields": {"provider": self.kind, "endpoint": str(k), "reason": reason}})
            self._undo(k, after[k], before[k])
            with self._lock:
                self.writes -= sends[k][1]
                self._seen.pop(k, None)
        return occluded

    def _send_one(self, b: UpdateBuilder, doing: str) -> dns.rcode.Rcode:
        """Send one UPDATE on its own connection; its verified response's rcode."""
        ch = self._channel
        (msg_id,) = ch.ids(1)
        wire, mac = ch.signer.sign(b.body(msg_id), msg_id)
        try:
            with ch.connect() as sock:
                (resp,) = ch.exchange(sock, [wire])
        except (OSError, dns.exception.Timeout) as exc:
            raise self._failures.unavailable(exc, doing) from exc
        return ch.verify(resp, mac, doing).rcode()

    def _undo(self, key: EndpointKey, now: RawState, before: RawState) -> None:
        """Put back the records and marker TXT ``before`` where the endpoint still holds ``now``."""
        rtype = TYPES[key.rtype]
        b = UpdateBuilder(self._zone_wire)
        b.add(relative(key.name, self.zone), rtype, now.txt, before.txt,
              (before.ttl, [address_rdata(rtype, a) for a in sorted(before.addresses)]), drop_txt=before.txt is None,
              old_records=[address_rdata(rtype, a) for a in sorted(now.addresses)])
        rcode = self._send_one(b, "undoing a write")
        if rcode != dns.rcode.NOERROR:  # it moved on since: whoever wrote it owns what it says
            log.warning("could not undo a write whose records are not served",
                        extra={"fields": {"provider": self.kind, "endpoint": str(key),
                                          "rcode": dns.rcode.to_text(rcode)}})

    # -- test and repair drills --------------------------------------------------------

    def hand_edit(self, key: EndpointKey, records: RecordSet | None, marker: Marker | None) -> None:
        """Overwrite an endpoint's records and marker with no check at all (``None`` removes that part).

        Stands for a human editing the zone; the records' JSON is kept in the TXT so that a record
        set BIND cannot express (weights, empty) reads back as given.
        """
        b = UpdateBuilder(self._zone_wire)
        rtype = TYPES[key.rtype]
        addrs = sorted({norm(a) for a in records.addresses()}) if records is not None else []
        txt = None if records is None and marker is None else txt_rdatas(marker, records,
                                                                         force_json=records is not None)
        b.add(relative(key.name, self.zone), rtype, None, txt,
              (records.ttl if records else 0, [address_rdata(rtype, a) for a in addrs]), check=False, drop_txt=True)
        rcode = self._send_one(b, "hand edit")
        if rcode != dns.rcode.NOERROR:
            raise self._failures.rcode(rcode, "hand edit")
        with self._lock:
            self._seen.pop(key, None)
        log.info("hand edit", extra={"fields": {"endpoint": str(key), "marker": str(marker)}})
        notify(self._listeners, [key])

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(keys)`` after each UPDATE message of this instance that the server applied (in the
        writer's thread). Changes made by other writers are not announced."""
        with self._lock:
            self._listeners.append(fn)


def _same(a: RawState, b: RawState) -> bool:
    """Whether two reads of an endpoint found the same marker TXT and records."""
    return a.txt == b.txt and a.addresses == b.addresses and a.ttl == b.ttl


def _reject(key: EndpointKey, reason: str, indices: list[int], results: list[WriteResult | None]) -> None:
    """The writes of ``key`` that were to be sent are ``Rejected``: nothing of the endpoint is written."""
    for i in indices:
        r = results[i]
        if isinstance(r, Applied) and r.written:
            results[i] = Rejected(key, reason)
