"""Consistent reads of endpoints from an RFC 2136 server: SOA-bracketed pipelined queries, or AXFR.

Promises:
- ``read(keys)`` returns one snapshot of the zone: the keys' record and marker TXT queries go
  pipelined on one TCP connection between two SOA queries whose serials must agree (retried up
  to 5 times, then one AXFR);
- ``axfr`` is one TSIG-signed zone transfer, which the server serves from one version of the zone;
  with ``keys=None`` it lists every endpoint that has a marker TXT; the write token's TXT
  (``token``) is never taken for one, nor is it ever queried as an endpoint's marker;
- ``token`` reads the zone's write token with one TSIG-signed query (one AXFR when a wildcard
  ``*.<zone>`` TXT could answer for it);
- more keys than ``AXFR_THRESHOLD`` are read by AXFR when that is cheaper than queries (by the
  zone's size at the last transfer; before any, above ``_UNKNOWN_ZONE_KEYS`` keys);
- every query and response is TSIG-signed and verified; an alias (CNAME/DNAME) answer is no records;
- a wildcard's synthesized answer is never taken for an endpoint's own records or marker: each
  query read also asks for the literal ``*.<ancestor>`` of every endpoint name (its own type and
  TXT); when one answers, the zone may synthesize answers for these names and the keys are read
  by AXFR instead, which carries only the zone's own records (prerequisites compare those: RFC
  2136 §1.1.3, wildcards are not expanded in updates);
- what would make the server ignore records written at an endpoint is reported in
  ``RawState.blocked``: a CNAME at the name or its marker name, a DNAME above them, a delegation
  (NS below the apex) at or above the name; queries see it in the answer (an alias, or a referral
  without AA), AXFR in the zone's records.

Limits: in a zone with a wildcard above endpoint names every read is an AXFR;
A/AAAA endpoints only; A/AAAA records without any dnsplane TXT are not listed by
``axfr(None)`` (they may belong to someone else); no caching here (the provider keeps it).
"""

from __future__ import annotations

import socket
import struct

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.rrset
import dns.tsig
import dns.xfr

from dnsplane.errors import Permanent
from dnsplane.model import EndpointKey, marker_name
from dnsplane.providers.rfc2136.failures import TSIG_ERRORS
from dnsplane.providers.rfc2136.marker import RawState, norm, raw_state
from dnsplane.providers.rfc2136.token import token_name, token_text
from dnsplane.providers.rfc2136.transport import MAX_IDS, Channel
from dnsplane.providers.rfc2136.wire import (
    CNAME,
    DNAME,
    NS,
    SOA,
    TXT,
    TYPES,
    Response,
    parse_response,
    query_body,
)


def name_wire(name: str) -> bytes:
    """The uncompressed wire form of ``name``, its case kept."""
    wire = dns.name.from_text(name).to_wire()
    assert wire is not None  # without a file to write into, ``to_wire`` returns the bytes
    return wire


AXFR_THRESHOLD = 50  # at most this many keys are always read with targeted queries
# More keys are read with one AXFR when that is cheaper: an AXFR costs about one unit per RR of the
# zone, targeted queries about _QUERY_COST units per key (measured with BIND 9.18 and dnspython 2.9).
_QUERY_COST = 6
_UNKNOWN_ZONE_KEYS = 2_000  # before the first AXFR the zone's size is unknown: AXFR above this many keys
_SNAPSHOT_TRIES = 5


class ZoneReader:
    """Reads endpoints of one zone through a ``Channel``."""

    def __init__(self, channel: Channel, zone: str) -> None:
        self.channel = channel
        self.zone = zone
        self.origin = dns.name.from_text(zone)
        self.failures = channel.failures
        self.zone_rrs: int | None = None  # RRs in the zone at the last AXFR

    def read(self, keys: list[EndpointKey]) -> dict[EndpointKey, RawState]:
        if not keys:
            return {}
        return self.axfr(keys) if self._prefer_axfr(len(keys)) else self.query(keys)

    def _prefer_axfr(self, n: int) -> bool:
        if n <= AXFR_THRESHOLD:
            return False
        if self.zone_rrs is None:
            return n > _UNKNOWN_ZONE_KEYS
        return n * _QUERY_COST >= self.zone_rrs

    def _query_message(self, name: str, rdtype: int, msg_id: int) -> tuple[bytes, bytes]:
        return self.channel.signer.sign(query_body(name_wire(name), rdtype, msg_id), msg_id)

    def query(self, keys: list[EndpointKey]) -> dict[EndpointKey, RawState]:
        """Targeted queries on one connection, between two SOA queries that must show the same serial."""
        doing = f"reading {len(keys)} endpoints"
        ch = self.channel
        questions = []
        for k in keys:
            questions.append((k.name, TYPES[k.rtype]))
            questions.append((marker_name(k), TXT))
        questions += wildcard_probes(keys, self.zone)
        if len(questions) > MAX_IDS:  # one pipelined exchange has at most that many distinct message ids
            return self.axfr(keys)
        for _ in range(_SNAPSHOT_TRIES):
            try:
                with ch.connect() as sock:
                    before = self._soa_serial(sock, doing)
                    signed = [self._query_message(n, t, i) for (n, t), i in zip(
                        questions, ch.ids(len(questions)), strict=True)]
                    responses = ch.exchange(sock, [w for w, _ in signed])
                    after = self._soa_serial(sock, doing)
            except (OSError, dns.exception.Timeout) as exc:
                raise self.failures.unavailable(exc, doing) from exc
            if before != after:
                continue  # an update landed in between: read again for a consistent snapshot
            for j in range(2 * len(keys), len(questions)):
                probe = self._fast_answer(responses[j], signed[j][1], questions[j][1], doing)
                if probe.rdatas or probe.alias:
                    # a wildcard may synthesize answers for these names: only a transfer shows what
                    # the zone really holds at them (and what prerequisites will compare)
                    return self.axfr(keys)
            out: dict[EndpointKey, RawState] = {}
            for i, k in enumerate(keys):
                rec = self._fast_answer(responses[2 * i], signed[2 * i][1], questions[2 * i][1], doing)
                txt = self._fast_answer(responses[2 * i + 1], signed[2 * i + 1][1], TXT, doing)
                family = socket.AF_INET if questions[2 * i][1] == 1 else socket.AF_INET6
                addresses = frozenset(norm(socket.inet_ntop(family, r)) for r in rec.rdatas)
                ttl = rec.ttl if rec.rdatas else 0
                txt_rdata = tuple(sorted(txt.rdatas)) if txt.rdatas else None
                out[k] = raw_state(txt_rdata, addresses, ttl, blocked_by_answers(k, rec, txt))
            return out
        return self.axfr(keys)  # the zone kept changing under the queries: one AXFR is one version

    def occluded(self, keys: list[EndpointKey]) -> dict[EndpointKey, str]:
        """Ask the server for each key's name: the keys whose answer comes through an alias (a DNAME
        above, a CNAME) or a referral (a delegation), with why: records written there are not served."""
        doing = f"reading back {len(keys)} endpoints"
        ch = self.channel
        questions = [(k.name, TYPES[k.rtype]) for k in keys]
        out: dict[EndpointKey, str] = {}
        for start in range(0, len(questions), MAX_IDS):
            part = questions[start : start + MAX_IDS]
            signed = [self._query_message(n, t, i) for (n, t), i in zip(part, ch.ids(len(part)), strict=True)]
            try:
                with ch.connect() as sock:
                    responses = ch.exchange(sock, [w for w, _ in signed])
            except (OSError, dns.exception.Timeout) as exc:
                raise self.failures.unavailable(exc, doing) from exc
            for k, (_, qtype), (_, mac), wire in zip(keys[start:], part, signed, responses, strict=False):
                resp = self._fast_answer(wire, mac, qtype, doing)
                if resp.alias == DNAME:
                    out[k] = _dname_above(k.name)
                elif resp.alias == CNAME:
                    out[k] = _cname_at(k.name)
                elif not resp.authoritative:
                    out[k] = _delegated(k.name)
        return out

    def _answer(self, wire: bytes, mac: bytes, doing: str) -> dns.rrset.RRset | None:
        msg = self.channel.verify(wire, mac, doing)
        rcode = msg.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return None
        if rcode != dns.rcode.NOERROR:
            raise self.failures.rcode(rcode, doing)
        question = msg.question[0]
        for rrset in msg.answer:
            if rrset.name == question.name and rrset.rdtype == question.rdtype:
                return rrset
        return None

    def _fast_answer(self, wire: bytes, mac: bytes, qtype: int, doing: str) -> Response:
        """Parse and verify (TSIG) the response to one query; NXDOMAIN is an empty answer."""
        try:
            resp, tsig_at, rdata_at = parse_response(wire, qtype)
            self.channel.signer.verify(wire, tsig_at, rdata_at, mac)
        except TSIG_ERRORS as exc:
            raise self.failures.tsig(exc, doing) from exc
        except (struct.error, IndexError, dns.exception.FormError) as exc:
            raise Permanent(f"{doing} at {self.failures.where}: malformed response ({exc})") from exc
        if resp.rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise self.failures.rcode(resp.rcode, doing)
        return resp

    def _soa_serial(self, sock: socket.socket, doing: str) -> int:
        (msg_id,) = self.channel.ids(1)
        wire, mac = self._query_message(self.zone, SOA, msg_id)
        (resp,) = self.channel.exchange(sock, [wire])
        soa = self._answer(resp, mac, doing)
        if soa is None:
            raise Permanent(f"{doing} at {self.failures.where}: no SOA for {self.zone}; is the zone served there?")
        return int(soa[0].serial)

    def token(self) -> str:
        """The zone's write token (``token``): one TSIG-signed query of its TXT, with a query of ``*.<zone>``
        TXT beside it; when that wildcard exists (it would answer for an absent token), one AXFR instead."""
        doing = "reading the write token"
        ch = self.channel
        questions = [(token_name(self.zone), TXT), (f"*.{self.zone}", TXT)]
        signed = [self._query_message(n, t, i) for (n, t), i in zip(questions, ch.ids(2), strict=True)]
        try:
            with ch.connect() as sock:
                responses = ch.exchange(sock, [w for w, _ in signed])
        except (OSError, dns.exception.Timeout) as exc:
            raise self.failures.unavailable(exc, doing) from exc
        answer = self._fast_answer(responses[0], signed[0][1], TXT, doing)
        probe = self._fast_answer(responses[1], signed[1][1], TXT, doing)
        if probe.rdatas or probe.alias:
            return token_text(self._transfer()[1].get(token_name(self.zone), []))
        return token_text(answer.rdatas)

    def axfr(self, keys: list[EndpointKey] | None) -> dict[EndpointKey, RawState]:
        """One AXFR; ``keys`` None: every endpoint that has a marker TXT."""
        records, txts, shapes = self._transfer()
        if keys is None:
            keys = []
            for name in txts:
                label, _, rest = name.partition(".")
                rtype = label.removeprefix("_dnsplane-").upper()
                if rtype in TYPES and rest:  # never the write token's name (``token``)
                    keys.append(EndpointKey(rest, rtype))
        out: dict[EndpointKey, RawState] = {}
        for k in keys:
            addrs, ttl = records.get((k.name, TYPES[k.rtype]), (set(), 0))
            found = txts.get(marker_name(k))
            blocked = blocked_in_zone(k, self.zone, shapes[CNAME], shapes[DNAME], shapes[NS] - {self.zone})
            out[k] = raw_state(tuple(sorted(found)) if found else None, frozenset(addrs), ttl, blocked)
        return out

    def _transfer(
        self,
    ) -> tuple[dict[tuple[str, int], tuple[set[str], int]], dict[str, list[bytes]], dict[int, set[str]]]:
        """One AXFR: the A/AAAA addresses and TTL by (name, type), the TXT rdatas of ``_dnsplane-`` names,
        and the owners of CNAME, DNAME and NS records."""
        doing = "zone transfer (AXFR)"
        ch = self.channel
        records: dict[tuple[str, int], tuple[set[str], int]] = {}
        txts: dict[str, list[bytes]] = {}
        shapes: dict[int, set[str]] = {CNAME: set(), DNAME: set(), NS: set()}  # owners of what blocks writes
        count = 0
        try:
            for msg in dns.query.xfr(
                ch.server, self.origin, port=ch.port, keyring={ch.key.name: ch.key},
                keyname=ch.key.name, keyalgorithm=ch.key.algorithm, relativize=False,
                timeout=ch.timeout, lifetime=max(ch.timeout * 6, 30.0),
            ):
                count += len(msg.answer)
                for rrset in msg.answer:  # one RR per RRset in a transfer: gather them by name and type
                    t = rrset.rdtype
                    if t == TXT:
                        name = rrset.name.to_text().lower()
                        if name.startswith("_dnsplane-"):
                            txts.setdefault(name, []).extend(r.to_wire() for r in rrset)
                    elif t in (1, 28):
                        addrs, _ = records.setdefault((rrset.name.to_text().lower(), t), (set(), rrset.ttl))
                        addrs.update(norm(r.to_text()) for r in rrset)
                    elif t in shapes:
                        shapes[t].add(rrset.name.to_text().lower())
        except dns.xfr.TransferError as exc:
            raise self.failures.rcode(exc.rcode, doing) from exc
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime) as exc:
            raise self.failures.tsig(exc, doing) from exc
        except (OSError, EOFError, dns.exception.Timeout) as exc:
            raise self.failures.unavailable(exc, doing) from exc
        self.zone_rrs = count
        return records, txts, shapes


def ancestors(name: str, zone: str) -> list[str]:
    """The names strictly above ``name`` down from it to ``zone`` included (``a.b.z.`` → ``b.z.``, ``z.``)."""
    out = []
    while name != zone and "." in name.rstrip("."):
        name = name.split(".", 1)[1]
        out.append(name)
        if not name.endswith(zone):
            break
    return [a for a in out if a == zone or a.endswith("." + zone)]


def wildcard_probes(keys: list[EndpointKey], zone: str) -> list[tuple[str, int]]:
    """The literal wildcard names (and types) whose answer says whether the zone may synthesize answers
    at the keys' names: ``*.<a>`` for every ancestor ``a`` of a name, of its type and TXT."""
    probes = {(f"*.{a}", t) for k in keys for a in ancestors(k.name, zone) for t in (TYPES[k.rtype], TXT)}
    return sorted(probes)


def _cname_at(name: str) -> str:
    return (f"a CNAME is at {name}: a server ignores records added at a CNAME's name (RFC 2136 §3.4.2.2); "
            "remove the CNAME, or the endpoint from the fleet")


def _dname_above(name: str) -> str:
    return (f"a DNAME above {name} redirects it: records written there are not served; remove the DNAME, "
            "or the endpoint from the fleet")


def _delegated(name: str) -> str:
    return (f"{name} is at or below a delegation (NS records below the zone apex): records written there are "
            "not served; remove the delegation, or the endpoint from the fleet")


def blocked_by_answers(k: EndpointKey, rec: Response, txt: Response) -> str:
    """What in the answers for the endpoint's name and marker name would make the server ignore a write."""
    if rec.alias == CNAME:
        return _cname_at(k.name)
    if DNAME in (rec.alias, txt.alias):
        return _dname_above(k.name if rec.alias == DNAME else marker_name(k))
    if txt.alias == CNAME:
        return _cname_at(marker_name(k))
    if not rec.authoritative or not txt.authoritative:
        return _delegated(k.name)
    return ""


def blocked_in_zone(k: EndpointKey, zone: str, cnames: set[str], dnames: set[str], cuts: set[str]) -> str:
    """The same, from a zone's records (an AXFR): CNAME owners, DNAME owners, delegation points."""
    mname = marker_name(k)
    if k.name in cnames:
        return _cname_at(k.name)
    if mname in cnames:
        return _cname_at(mname)
    if dnames and any(a in dnames for a in ancestors(mname, zone)):
        return _dname_above(mname)
    if cuts and any(a in cuts for a in [k.name, *ancestors(k.name, zone)]):
        return _delegated(k.name)
    return ""
