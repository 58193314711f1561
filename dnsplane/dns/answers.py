"""Prerendered DNS answers and the query hot path of the embedded server.

What this module does:
- renders, with dnspython, every answer the server can give for a zone into
  wire bytes ONCE per change: per name and type, one response per weighted
  member (or one for ``answer="all"``), each in a plain, an EDNS and an
  EDNS+DO variant (the EDNS variants are the plain bytes plus dnspython's own
  OPT RR, which dnspython always renders last; a unit test checks the bytes
  equal dnspython's rendering of the same message with EDNS);
- answers an ordinary query (one IN question, optionally one OPT, opcode
  QUERY) by parsing only the header and the question name from the wire,
  then patching the ID, the RD/CD bits and the question name (same length,
  only the case may differ: DNS 0x20 is echoed exactly) into a prerendered
  response. Compression pointers into the question stay valid.
- everything unusual (other classes, several questions, extra records, EDNS
  version > 0, meta types such as ANY/AXFR, compressed question names) goes
  through ``dns.message.from_wire`` on a slow path.

Guarantees:
- AA is set on every authoritative answer, RA never; NXDOMAIN and NOERROR/no
  data (a name that exists with other types, or an empty non-terminal) carry
  the zone SOA in the authority section; names outside every zone get
  REFUSED; unparsable queries with a readable header get FORMERR; shorter
  packets and responses (QR set) are dropped; opcodes other than QUERY get
  NOTIMP; QDCOUNT != 1 gets FORMERR; EDNS version > 0 gets BADVERS.
- UDP responses never exceed 512 bytes without EDNS, nor
  ``max(512, min(client payload, 1232))`` with EDNS: a larger answer is sent
  as a truncated response (TC, empty answer section).
- Weighted answers pick ONE member per response, in proportion to its weight
  (weight 0 is never picked), with all of that member's addresses; ``"all"``
  answers carry every address of every member with weight > 0. The order of
  the addresses in a response is one of up to 8 prerendered rotations, picked
  at random (weights stay exact), so clients that use the first address spread.

Limits:
- not thread-safe: the tables are mutated and read in one thread (the
  server's event loop thread), or mutated under the server's lock while no
  loop serves queries;
- no wildcards, delegations, CNAMEs, DNSSEC, zone transfers or ANY beyond
  "every RRset this server holds at the name" (slow path);
- zones may nest, but a record set whose name falls inside a more specific
  served zone is not served by the parent (the caller filters, see server.py);
- no DNS cookies (the OPT options of a query are ignored, as RFC 7873 allows).
"""

from __future__ import annotations

import bisect
import io
import logging
import random
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from dnsplane.model import EndpointKey, Observed, in_zone, marker_name

log = logging.getLogger("dnsplane.dns")

EDNS_PAYLOAD = 1232  # what we advertise, and the largest UDP answer we send
PLAIN_UDP_LIMIT = 512
MARKER_MAX_TTL = 60
SOA_TTL = 60
NS_TTL = 3600
NS_ADDRESS = "127.0.0.1"
MAX_ROTATIONS = 8  # address orders prerendered per answer
_ROTATION_SCALE = 840  # lcm(1..8): each rotation of a member gets weight * 840 / rotations, exactly

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

_IN = dns.rdataclass.IN
_QTYPE_A = dns.rdatatype.A
_QTYPE_NS = dns.rdatatype.NS
_QTYPE_SOA = dns.rdatatype.SOA
_QTYPE_TXT = dns.rdatatype.TXT
_QTYPE_ANY = dns.rdatatype.ANY
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_ONE_ADDITIONAL = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_CLASS_IN = b"\x00\x01"
_OPT_TYPE = b"\x00\x29"

_RCODE_TEXT = {i: dns.rcode.to_text(dns.rcode.Rcode(i)) for i in range(16)}


def _opt_rr(do: bool) -> bytes:
    """dnspython's rendering of our OPT RR (version 0, payload 1232, no options)."""
    m = dns.message.Message(id=0)
    m.use_edns(0, dns.flags.DO if do else 0, EDNS_PAYLOAD)
    wire = m.to_wire()
    return wire[12:]


OPT_RR = _opt_rr(False)
OPT_RR_DO = _opt_rr(True)
assert len(OPT_RR) == 11 and OPT_RR[0] == 0, "unexpected OPT rendering"


def name_wire(name: str | dns.name.Name) -> bytes:
    """Lower-case uncompressed wire form of a name: the key of every table here."""
    n = dns.name.from_text(name) if isinstance(name, str) else name
    return n.to_digestable()


def ancestors(owner: bytes, apex: bytes) -> Iterator[bytes]:
    """``owner`` then each parent name, down to and including ``apex`` (wire forms)."""
    i = 0
    while True:
        suffix = owner[i:]
        yield suffix
        if suffix == apex or owner[i] == 0:
            return
        i += owner[i] + 1


class Answer:
    """Prerendered responses for one name and type: one choice, or weighted choices.

    ``plain[i]``, ``edns[i]`` and ``edns_do[i]`` are complete responses with ID 0
    and a lower-case question; ``cum`` holds the cumulative weights (None when
    there is a single choice).
    """

    __slots__ = ("cum", "edns", "edns_do", "plain", "total")

    def __init__(self, plain: list[bytes], weights: list[int] | None = None) -> None:
        if not plain:
            raise ValueError("an Answer needs at least one response")
        self.plain = tuple(plain)
        self.edns = tuple(_with_opt(w, OPT_RR) for w in plain)
        self.edns_do = tuple(_with_opt(w, OPT_RR_DO) for w in plain)
        if weights is None or len(plain) == 1:
            self.cum: list[int] | None = None
            self.total = 0
        else:
            if len(weights) != len(plain) or min(weights) <= 0:
                raise ValueError("weights must be positive, one per response")
            acc = 0
            cum = []
            for w in weights:
                acc += w
                cum.append(acc)
            self.cum = cum
            self.total = acc


def _with_opt(wire: bytes, opt: bytes) -> bytes:
    arcount = int.from_bytes(wire[10:12], "big") + 1
    return wire[:10] + arcount.to_bytes(2, "big") + wire[12:] + opt


def render_response(
    qname: dns.name.Name,
    rdtype: int,
    answer: list[dns.rrset.RRset],
    additional: list[dns.rrset.RRset] | None = None,
) -> bytes:
    """A complete authoritative response (ID 0, no EDNS) built by dnspython."""
    m = dns.message.Message(id=0)
    m.flags = dns.flags.QR | dns.flags.AA
    m.find_rrset(m.question, qname, _IN, dns.rdatatype.RdataType.make(rdtype), create=True, force_unique=True)
    for rrset in answer:
        m.answer.append(rrset)
    for rrset in additional or []:
        m.additional.append(rrset)
    return m.to_wire(want_shuffle=False)


def rrset_wire(rrset: dns.rrset.RRset) -> bytes:
    """An RRset alone, uncompressed (for the authority section of negative answers)."""
    buf = io.BytesIO()
    rrset.to_wire(buf)
    return buf.getvalue()


Slot = tuple[bytes, int]  # (owner name wire, qtype)


def render_endpoint(key: EndpointKey, observed: Observed) -> dict[Slot, Answer]:
    """Every prerendered answer one endpoint contributes: its records and its marker TXT.

    Raises ``dns.exception.DNSException`` or ``ValueError`` for content dnspython
    refuses (an address of the wrong family, a name too long).
    """
    out: dict[Slot, Answer] = {}
    rs = observed.records
    live = [m for m in rs.live_members() if m.addresses] if rs is not None else []
    if rs is not None and live:
        rdtype = dns.rdatatype.from_text(key.rtype)
        qname = dns.name.from_text(key.name)
        groups = [(rs.addresses(), 1)] if rs.answer == "all" else [(list(m.addresses), m.weight) for m in live]
        wires: list[bytes] = []
        weights: list[int] = []
        for addrs, weight in groups:
            # a few rotations of the address order, so that clients taking the first address spread out
            n = min(len(addrs), MAX_ROTATIONS)
            for i in range(n):
                rrset = dns.rrset.from_text_list(qname, rs.ttl, _IN, rdtype, addrs[i:] + addrs[:i])
                wires.append(render_response(qname, rdtype, [rrset]))
                weights.append(weight * _ROTATION_SCALE // n)
        out[(name_wire(qname), int(rdtype))] = Answer(wires, weights)
    if observed.marker is not None:
        ttl = max(0, min(MARKER_MAX_TTL, rs.ttl)) if rs is not None else MARKER_MAX_TTL
        mname = dns.name.from_text(marker_name(key))
        txt = dns.rdtypes.ANY.TXT.TXT(_IN, _QTYPE_TXT, [observed.marker.to_text().encode()])
        rrset = dns.rrset.from_rdata(mname, ttl, txt)
        out[(name_wire(mname), _QTYPE_TXT)] = Answer([render_response(mname, _QTYPE_TXT, [rrset])])
    return out


class Node:
    """A name that exists in a zone: its answers by qtype (empty for an empty non-terminal)."""

    __slots__ = ("refs", "rrsets", "zone")

    def __init__(self, zone: ZoneTable) -> None:
        self.zone = zone
        self.rrsets: dict[int, Answer] = {}
        self.refs = 0  # names with data at or below this one


@dataclass
class ServerStats:
    """Counters of the server; ``responses`` is keyed by rcode text (``"NOERROR"``...)."""

    queries: int = 0
    udp_queries: int = 0
    tcp_queries: int = 0
    dropped: int = 0
    truncated: int = 0
    slow_path: int = 0
    send_errors: int = 0
    reloads: int = 0
    refreshes: int = 0
    responses: Counter[str] = field(default_factory=Counter)


class ZoneTable:
    """The prerendered content of one zone, updated one endpoint at a time.

    Writes into ``names``, the server-wide dict from lower-case name wire to
    ``Node`` that the hot path reads.
    """

    def __init__(self, zone: str, names: dict[bytes, Node], serial: int) -> None:
        self.zone = zone
        self.origin = dns.name.from_text(zone)
        self.apex = name_wire(self.origin)
        self.names = names
        self.serial = serial & 0xFFFFFFFF
        self.observed: dict[EndpointKey, Observed] = {}
        self._rendered: dict[EndpointKey, dict[Slot, Answer]] = {}
        self._builtin: dict[Slot, Answer] = {}
        self.soa_rr = b""  # uncompressed SOA RR for the authority section of negative answers
        ns1 = dns.name.from_text("ns1", self.origin)
        ns_rrset = dns.rrset.from_text(self.origin, NS_TTL, _IN, _QTYPE_NS, ns1.to_text())
        glue = dns.rrset.from_text(ns1, NS_TTL, _IN, _QTYPE_A, NS_ADDRESS)
        self._builtin[(self.apex, _QTYPE_NS)] = Answer([render_response(self.origin, _QTYPE_NS, [ns_rrset], [glue])])
        self._builtin[(name_wire(ns1), _QTYPE_A)] = Answer([render_response(ns1, _QTYPE_A, [glue])])
        self._render_soa()
        for (owner, qtype), ans in self._builtin.items():
            self._put(owner, qtype, ans)

    # --- SOA / serial -------------------------------------------------
    def soa_rrset(self) -> dns.rrset.RRset:
        text = f"ns1.{self.zone} hostmaster.{self.zone} {self.serial} 3600 600 86400 60"
        return dns.rrset.from_text(self.origin, SOA_TTL, _IN, _QTYPE_SOA, text)

    def _render_soa(self) -> None:
        soa = self.soa_rrset()
        ans = Answer([render_response(self.origin, _QTYPE_SOA, [soa])])
        self._builtin[(self.apex, _QTYPE_SOA)] = ans
        self.soa_rr = rrset_wire(soa)
        self._put(self.apex, _QTYPE_SOA, ans)

    def bump_serial(self) -> None:
        self.serial = (self.serial + 1) & 0xFFFFFFFF or 1
        self._render_soa()

    # --- endpoints ------------------------------------------------------
    def set(self, key: EndpointKey, observed: Observed) -> bool:
        """Serve ``observed`` for ``key``; returns False when nothing changed."""
        if not in_zone(key.name, self.zone):
            log.warning(
                "endpoint %s is outside zone %s: not served",
                key,
                self.zone,
                extra={"event": "outside_zone", "endpoint": str(key), "zone": self.zone},
            )
            return False
        if self.observed.get(key) == observed:
            return False
        if observed.records is None and observed.marker is None:
            self.remove(key)
            return True
        try:
            new = render_endpoint(key, observed)
        except (dns.exception.DNSException, ValueError) as exc:
            log.error(
                "cannot render endpoint %s: %s",
                key,
                exc,
                extra={"event": "render_failed", "endpoint": str(key), "zone": self.zone},
            )
            new = {}
        self._replace(key, new)
        self.observed[key] = observed
        return True

    def remove(self, key: EndpointKey) -> None:
        self._replace(key, {})
        self.observed.pop(key, None)

    def endpoints(self) -> list[EndpointKey]:
        return list(self.observed)

    def _replace(self, key: EndpointKey, new: dict[Slot, Answer]) -> None:
        old = self._rendered.pop(key, {})
        for slot in old.keys() - new.keys():
            builtin = self._builtin.get(slot)
            if builtin is not None:
                self._put(slot[0], slot[1], builtin)
            else:
                self._drop(slot[0], slot[1])
        for (owner, qtype), ans in new.items():
            self._put(owner, qtype, ans)
        if new:
            self._rendered[key] = new

    # --- name tree ------------------------------------------------------
    def _put(self, owner: bytes, qtype: int, ans: Answer) -> None:
        node = self.names.get(owner)
        if node is not None and node.zone is self:
            was_empty = not node.rrsets
            node.rrsets[qtype] = ans
            if was_empty:
                self._ref(owner, +1)
            return
        node = Node(self)
        node.rrsets[qtype] = ans
        node.refs = 0
        self.names[owner] = node
        self._ref(owner, +1)

    def _drop(self, owner: bytes, qtype: int) -> None:
        node = self.names.get(owner)
        if node is None or node.zone is not self or qtype not in node.rrsets:
            return
        del node.rrsets[qtype]
        if not node.rrsets:
            self._ref(owner, -1)

    def _ref(self, owner: bytes, delta: int) -> None:
        for name in ancestors(owner, self.apex):
            node = self.names.get(name)
            if node is None or node.zone is not self:
                node = Node(self)
                self.names[name] = node
            node.refs += delta
            if node.refs <= 0 and not node.rrsets:
                del self.names[name]


class Responder:
    """Turns query bytes into response bytes from the prerendered tables. No I/O."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.names: dict[bytes, Node] = {}
        self.zones: dict[bytes, ZoneTable] = {}
        self.stats = ServerStats()
        self._random = (rng or random.Random()).random

    def add_zone(self, zone: str, serial: int) -> ZoneTable:
        table = ZoneTable(zone, self.names, serial)
        if table.apex in self.zones:
            raise ValueError(f"zone {zone} is served twice")
        self.zones[table.apex] = table
        return table

    def zone_of(self, name: str) -> ZoneTable | None:
        """The most specific served zone containing ``name`` (text), if any."""
        return self._find_zone(name_wire(name))

    def _find_zone(self, key: bytes) -> ZoneTable | None:
        zones = self.zones
        i = 0
        n = len(key)
        while i < n:
            z = zones.get(key[i:])
            if z is not None:
                return z
            i += key[i] + 1
        return None

    # --- hot path -----------------------------------------------------
    def handle(self, data: bytes, udp: bool) -> bytes | None:
        """The response to one query, or None to send nothing."""
        stats = self.stats
        stats.queries += 1
        n = len(data)
        if n < 12:
            stats.dropped += 1
            return None
        b2 = data[2]
        if b2 & 0x80:  # a response: never answer it
            stats.dropped += 1
            return None
        if b2 & 0x78:
            return self._header_only(data, RCODE_NOTIMP)
        counts = data[4:12]
        if counts == _ONE_QUESTION:
            edns = False
        elif counts == _ONE_QUESTION_ONE_ADDITIONAL:
            edns = True
        else:
            return self._slow(data, udp)
        i = 12
        while True:
            if i >= n:
                return self._slow(data, udp)
            ln = data[i]
            if ln == 0:
                break
            if ln > 63:
                return self._slow(data, udp)
            i += ln + 1
        qe = i + 1
        pos = qe + 4
        if qe > 267 or pos > n or data[qe + 2 : pos] != _CLASS_IN:
            return self._slow(data, udp)
        qtype = (data[qe] << 8) | data[qe + 1]
        if qtype >= 128 or qtype == 0:
            return self._slow(data, udp)
        payload = 0
        do = False
        if edns:
            if (
                pos + 11 > n
                or data[pos] != 0
                or data[pos + 1 : pos + 3] != _OPT_TYPE
                or data[pos + 6] != 0
                or pos + 11 + ((data[pos + 9] << 8) | data[pos + 10]) != n
            ):
                return self._slow(data, udp)
            payload = (data[pos + 3] << 8) | data[pos + 4]
            do = bool(data[pos + 7] & 0x80)
        elif pos != n:
            return self._slow(data, udp)
        return self.respond(data[:2], b2, data[3], data[12:qe], qtype, edns, payload, do, udp)

    def respond(
        self,
        qid: bytes,
        b2: int,
        b3: int,
        qname: bytes,
        qtype: int,
        edns: bool,
        payload: int,
        do: bool,
        udp: bool,
    ) -> bytes:
        """Answer a parsed question. ``qname`` is the query's name wire (any case, uncompressed)."""
        node = self.names.get(qname.lower())
        if node is not None:
            ans = node.rrsets.get(qtype)
            if ans is not None:
                cum = ans.cum
                idx = 0 if cum is None else bisect.bisect_right(cum, self._random() * ans.total)
                if edns:
                    wire = (ans.edns_do if do else ans.edns)[idx]
                    limit = PLAIN_UDP_LIMIT if payload < PLAIN_UDP_LIMIT else min(payload, EDNS_PAYLOAD)
                else:
                    wire = ans.plain[idx]
                    limit = PLAIN_UDP_LIMIT
                if udp and len(wire) > limit:
                    return self._truncated(qid, b2, b3, qname, qtype, edns, do, 0x84)
                self.stats.responses["NOERROR"] += 1
                qe = 12 + len(qname)
                return qid + bytes((wire[2] | (b2 & 0x01), wire[3] | (b3 & 0x10))) + wire[4:12] + qname + wire[qe:]
            zone = node.zone
            rcode = RCODE_NOERROR
        else:
            found = self._find_zone(qname.lower())
            if found is None:
                return self._refused(qid, b2, b3, qname, qtype, edns, do)
            zone = found
            rcode = RCODE_NXDOMAIN
        resp = (
            qid
            + bytes((0x84 | (b2 & 0x01), rcode | (b3 & 0x10)))
            + (b"\x00\x01\x00\x00\x00\x01\x00\x01" if edns else b"\x00\x01\x00\x00\x00\x01\x00\x00")
            + qname
            + struct.pack("!HH", qtype, 1)
            + zone.soa_rr
            + ((OPT_RR_DO if do else OPT_RR) if edns else b"")
        )
        if udp and len(resp) > (min(max(payload, PLAIN_UDP_LIMIT), EDNS_PAYLOAD) if edns else PLAIN_UDP_LIMIT):
            return self._truncated(qid, b2, b3, qname, qtype, edns, do, 0x84 | rcode << 8)
        self.stats.responses[_RCODE_TEXT[rcode]] += 1
        return resp

    # --- unusual queries ------------------------------------------------
    def _truncated(
        self, qid: bytes, b2: int, b3: int, qname: bytes, qtype: int, edns: bool, do: bool, flags: int
    ) -> bytes:
        """Header with TC, the question, no records (but the OPT when the query had EDNS)."""
        self.stats.truncated += 1
        self.stats.responses[_RCODE_TEXT[flags >> 8 & 0xF]] += 1
        hi = (flags & 0xFF) | 0x02 | (b2 & 0x01)
        lo = (flags >> 8 & 0xF) | (b3 & 0x10)
        return (
            qid
            + bytes((hi, lo))
            + struct.pack("!HHHH", 1, 0, 0, 1 if edns else 0)
            + qname
            + struct.pack("!HH", qtype, 1)
            + ((OPT_RR_DO if do else OPT_RR) if edns else b"")
        )

    def _refused(self, qid: bytes, b2: int, b3: int, qname: bytes, qtype: int, edns: bool, do: bool) -> bytes:
        self.stats.responses["REFUSED"] += 1
        return (
            qid
            + bytes((0x80 | (b2 & 0x01), RCODE_REFUSED | (b3 & 0x10)))
            + struct.pack("!HHHH", 1, 0, 0, 1 if edns else 0)
            + qname
            + struct.pack("!HH", qtype, 1)
            + ((OPT_RR_DO if do else OPT_RR) if edns else b"")
        )

    def _header_only(self, data: bytes, rcode: int) -> bytes:
        """A response of just a header: ID, opcode and RD copied, the rcode, no sections."""
        self.stats.responses[_RCODE_TEXT[rcode]] += 1
        return data[:2] + bytes((0x80 | (data[2] & 0x79), rcode)) + b"\x00" * 8

    def _slow(self, data: bytes, udp: bool) -> bytes | None:
        """Queries the hot path does not handle: parsed with dnspython."""
        self.stats.slow_path += 1
        try:
            q = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            self.stats.dropped += 1
            return None
        except (dns.exception.DNSException, ValueError, IndexError, struct.error, UnicodeError) as exc:
            log.debug("unparsable query: %s", exc, extra={"event": "formerr", "size": len(data)})
            return self._header_only(data, RCODE_FORMERR)
        if q.edns > 0:
            return self._dnspython_response(q, dns.rcode.BADVERS, udp)
        if len(q.question) != 1:
            return self._dnspython_response(q, dns.rcode.FORMERR, udp)
        question = q.question[0]
        if question.rdclass != _IN:
            return self._dnspython_response(q, dns.rcode.REFUSED, udp)
        qtype = int(question.rdtype)
        qname_wire = question.name.to_wire()  # the query's own case, patched into the answer
        assert qname_wire is not None  # without a file to write into, ``to_wire`` returns the bytes
        qname = qname_wire
        edns = q.edns == 0
        do = bool(q.ednsflags & dns.flags.DO)
        if qtype == _QTYPE_ANY:
            return self._any(q, qname, udp)
        if dns.rdatatype.is_metatype(question.rdtype) or qtype == 0:
            code = dns.rcode.REFUSED if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR) else dns.rcode.NOTIMP
            return self._dnspython_response(q, code, udp)
        return self.respond(data[:2], data[2], data[3], qname, qtype, edns, q.payload, do, udp)

    def _any(self, q: dns.message.Message, qname: bytes, udp: bool) -> bytes | None:
        """ANY: every RRset held at the name (weighted ones: one pick each), or the negative answer."""
        node = self.names.get(qname.lower())
        if node is None or not node.rrsets:
            zone = node.zone if node is not None else self._find_zone(qname.lower())
            if zone is None:
                return self._dnspython_response(q, dns.rcode.REFUSED, udp)
            r = self._make_response(q)
            r.set_rcode(dns.rcode.NOERROR if node is not None else dns.rcode.NXDOMAIN)
            r.authority.append(zone.soa_rrset())
            return self._finish(r, udp)
        r = self._make_response(q)
        for ans in node.rrsets.values():
            idx = 0 if ans.cum is None else bisect.bisect_right(ans.cum, self._random() * ans.total)
            parsed = dns.message.from_wire(ans.plain[idx])
            for rrset in parsed.answer:
                r.answer.append(rrset)
        return self._finish(r, udp)

    def _make_response(self, q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q, our_payload=EDNS_PAYLOAD)
        r.flags |= dns.flags.AA
        return r

    def _dnspython_response(self, q: dns.message.Message, rcode: dns.rcode.Rcode, udp: bool) -> bytes | None:
        r = dns.message.make_response(q, our_payload=EDNS_PAYLOAD)
        r.set_rcode(rcode)
        return self._finish(r, udp)

    def _finish(self, r: dns.message.Message, udp: bool) -> bytes | None:
        if udp:
            limit = max(PLAIN_UDP_LIMIT, min(r.request_payload, EDNS_PAYLOAD)) if r.edns >= 0 else PLAIN_UDP_LIMIT
        else:
            limit = 65535
        try:
            wire = r.to_wire(max_size=limit, prefer_truncation=True)
        except dns.exception.TooBig:
            log.warning("response too big even when truncated", extra={"event": "too_big"})
            return None
        if r.flags & dns.flags.TC:
            self.stats.truncated += 1
        self.stats.responses[dns.rcode.to_text(r.rcode())] += 1
        return wire
