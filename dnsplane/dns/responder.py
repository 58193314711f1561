"""The query hot path of the embedded server: query bytes in, response bytes out, no I/O.

What this module owns:
- ``Responder``: the served zones (``add_zone``, ``zone_of``) over one shared name tree
  (see ``dnsplane.dns.zonetable``) and ``handle(data, udp)``, which turns one query into
  its response (or None: send nothing);
- ``ServerStats``: the server's counters, updated here on every query.

How a query is answered:
- an ordinary query (one IN question, optionally one OPT, opcode QUERY) is answered by
  parsing only the header and the question name from the wire, then patching the ID, the
  RD/CD bits and the question name (same length, only the case may differ: DNS 0x20 is
  echoed exactly) into a response prerendered by ``dnsplane.dns.render``. Compression
  pointers into the question stay valid;
- everything unusual (other classes, several questions, extra records, EDNS version > 0,
  meta types such as ANY/AXFR, compressed question names) goes through
  ``dns.message.from_wire`` on a slow path.

Guarantees:
- AA is set on every authoritative answer, RA never; NXDOMAIN and NOERROR/no data (a name
  that exists with other types, or an empty non-terminal) carry the zone SOA in the
  authority section; names outside every zone get REFUSED; unparsable queries with a
  readable header get FORMERR; shorter packets and responses (QR set) are dropped; opcodes
  other than QUERY get NOTIMP; QDCOUNT != 1 gets FORMERR; EDNS version > 0 gets BADVERS.
- a TSIG-signed query goes to ``signed`` (set by the server when a transfer key is configured,
  see ``dnsplane.dns.transfer.answer_signed``: verified, answered here, signed), else FORMERR.
- UDP responses never exceed 512 bytes without EDNS, nor
  ``max(512, min(client payload, 1232))`` with EDNS: a larger answer is sent as a
  truncated response (TC, empty answer section).
- Weighted answers pick ONE member per response, in proportion to its weight (weight 0 is
  never picked), with all of that member's addresses; ``"all"`` answers carry every
  address of every member with weight > 0. The order of the addresses in a response is one
  of up to 8 prerendered rotations, picked at random (weights stay exact), so clients that
  use the first address spread.

Limits:
- not thread-safe: the tables are mutated and read in one thread (the server's event loop
  thread), or mutated under the server's lock while no loop serves queries;
- no wildcards, delegations, CNAMEs, DNSSEC, zone transfers (AXFR and IXFR are
  REFUSED here; the server answers them over TCP with ``dnsplane.dns.transfer``) or ANY beyond "every RRset
  this server holds at the name" (slow path);
- no DNS cookies (the OPT options of a query are ignored, as RFC 7873 allows).
"""

from __future__ import annotations

import bisect
import logging
import random
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from dnsplane.dns.render import EDNS_PAYLOAD, OPT_RR, OPT_RR_DO, PLAIN_UDP_LIMIT, name_wire
from dnsplane.dns.zonetable import Node, ZoneTable

log = logging.getLogger("dnsplane.dns")

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

_IN = dns.rdataclass.IN
_QTYPE_ANY = dns.rdatatype.ANY
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_ONE_ADDITIONAL = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_CLASS_IN = b"\x00\x01"
_OPT_TYPE = b"\x00\x29"

_RCODE_TEXT = {i: dns.rcode.to_text(dns.rcode.Rcode(i)) for i in range(16)}


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


class Responder:
    """Turns query bytes into response bytes from the prerendered tables. No I/O."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.names: dict[bytes, Node] = {}
        self.zones: dict[bytes, ZoneTable] = {}
        self.stats = ServerStats()
        self._random = (rng or random.Random()).random
        self.signed: Callable[[bytes, bool], bytes | None] | None = None  # answers TSIG-signed queries

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
        except dns.message.UnknownTSIGKey:  # TSIG-signed: the server's keys verify it (dnsplane.dns.transfer)
            if self.signed is not None:
                return self.signed(data, udp)
            return self._header_only(data, RCODE_FORMERR)
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
