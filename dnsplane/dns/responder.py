"""The query hot path of the embedded server: query bytes in, response bytes out, no I/O.

What this module owns:
- ``Responder``: the served zones (``add_zone``, ``zone_of``) over one shared name tree
  (see ``dnsplane.dns.zonetable``) and ``handle(data, udp)``, which turns one query into
  its response (or None: send nothing);
- ``ServerStats``: the server's counters, updated here on every query.

How a query is answered:
- an ordinary query (one IN question, optionally one OPT whose options are well framed, opcode
  QUERY) is answered by
  parsing only the header and the question name from the wire, then patching the ID, the
  RD/CD bits and the question name (same length, only the case may differ: DNS 0x20 is
  echoed exactly) into a response prerendered by ``dnsplane.dns.render``. Compression
  pointers into the question stay valid;
- everything unusual (other classes, several questions, extra records, EDNS version > 0,
  meta types such as ANY/AXFR, compressed question names) goes through
  ``dns.message.from_wire`` on a slow path;
- the memo: an ordinary UDP query's answer is a function of the query's bytes after its ID
  (flags, question with its case, OPT) and of the tables, but for the weighted draw. So the
  first answer to such bytes memoises every possible response (all but the ID) with the
  weights to draw from, and a query with the same bytes is answered by one dict lookup, the
  draw and the ID. Every change of the tables forgets the whole memo (the zone table calls
  ``forget``) before the changed tables can answer, so a memoised answer is never older than
  the tables; the memo is forgotten too when it reaches ``MEMO_ENTRIES`` (a flood of distinct
  names costs a miss each, never unbounded memory). Truncated answers, TCP, REFUSED and the
  slow path are not memoised.

Guarantees:
- AA is set on every authoritative answer, RA never; NXDOMAIN and NOERROR/no data (a name
  that exists with other types, or an empty non-terminal) carry the zone SOA in the
  authority section; names outside every zone get REFUSED; unparsable queries with a
  readable header get FORMERR; shorter packets and responses (QR set) are dropped; opcodes
  other than QUERY get NOTIMP (no question, no RD/CD); QDCOUNT != 1 gets FORMERR (no
  question); EDNS version > 0 gets BADVERS; a malformed OPT (options past the record, two
  OPTs, an owner other than the root), a COOKIE of a length RFC 7873 §5.2.2 forbids, QTYPE
  OPT and the other meta types (but ANY, AXFR, IXFR, MAILA, MAILB), and QCLASS NONE/ANY/0 get
  FORMERR (the question echoed when there is one);
- RD, CD and DO are copied into every response but NOTIMP's (DO into our OPT, RFC 3225 §3),
  and every response to a query with a readable OPT carries ours (RFC 6891 §6.1.1, §7);
- ANY is answered with one RRset over UDP and every RRset over TCP (RFC 8482);
- docs/dns-protocol.md lists every choice and where the answers differ from BIND 9.18's
  (tests/dns/test_bind_differential.py holds the server to that list).
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
- no wildcards, delegations, CNAMEs or DNSSEC; AXFR and IXFR are REFUSED here (the server
  answers them over TCP with ``dnsplane.dns.transfer``);
- no DNS cookies: a COOKIE of a valid length is ignored like every other option
  (RFC 6891 §6.1.2), so no server cookie is returned.
"""

from __future__ import annotations

import bisect
import logging
import random
import struct
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from dnsplane.dns.render import EDNS_PAYLOAD, OPT_RR, OPT_RR_DO, PLAIN_UDP_LIMIT, name_wire
from dnsplane.dns.zonetable import Node, ZoneTable
from dnsplane.histogram import Histogram

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
_FLAG_RD = 0x0100
_FLAG_CD = 0x0010
_EDNS_DO = 0x8000
_OPTION_COOKIE = 10
_INVALID_QCLASSES = frozenset((0, dns.rdataclass.NONE, dns.rdataclass.ANY))
# RFC 8482 §4.1 leaves to the server which RRset a minimal ANY answer holds: the zone's SOA at an
# apex, else the addresses (what ANY askers such as old MTAs want), else the lowest type number
_ANY_PREFERENCE = (dns.rdatatype.SOA, dns.rdatatype.A, dns.rdatatype.AAAA)
# answers memoised by query bytes (see the module docstring): about 475 bytes each (3 weighted choices),
# so at most ~62 MB per answering process; more than the distinct questions of a 100,000-name zone
MEMO_ENTRIES = 1 << 17


_PLUS_ONE = {n.to_bytes(2, "big"): (n + 1).to_bytes(2, "big") for n in range(8)}


def _plus_one(count: bytes) -> bytes:
    """A section count (2 bytes, big-endian) plus one: the additional section with the OPT record."""
    return _PLUS_ONE.get(count) or (int.from_bytes(count, "big") + 1).to_bytes(2, "big")


def _minimal_any(rrsets: Collection[int]) -> int:
    for qtype in _ANY_PREFERENCE:
        if qtype in rrsets:
            return qtype
    return min(rrsets)


def _options_ok(data: bytes, i: int, end: int, cookies: bool = True) -> bool:
    """The EDNS options in ``data[i:end]`` are framed right and (``cookies``) a COOKIE has a length
    RFC 7873 §5.2.2 allows (8: a client cookie; 16 to 40: client and server cookie)."""
    while i < end:
        if i + 4 > end:
            return False
        code = (data[i] << 8) | data[i + 1]
        length = (data[i + 2] << 8) | data[i + 3]
        i += 4 + length
        if i > end or (cookies and code == _OPTION_COOKIE and length != 8 and not 16 <= length <= 40):
            return False
    return True


def _skip_name(data: bytes, i: int) -> tuple[int, bool]:
    """The offset after the name at ``i`` and whether it ends in a compression pointer (IndexError when
    it runs past the end or is not a name)."""
    for _ in range(128):
        ln = data[i]
        if ln == 0:
            return i + 1, False
        if ln & 0xC0 == 0xC0:
            if i + 2 > len(data):
                raise IndexError("pointer cut short")
            return i + 2, True
        if ln > 63:
            raise IndexError("bad label")
        i += ln + 1
    raise IndexError("name too long")


def _scan(data: bytes) -> tuple[bytes, bytes]:
    """What a response to an unusual query may carry over from it: (the question's wire when the query
    has exactly one, uncompressed; our OPT, DO copied, when the query has exactly one OPT, owned by the
    root, in the additional section, with well-framed options, and nothing after the last record)."""
    qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
    question = b""
    opts: list[int] = []
    try:
        i = 12
        for _ in range(qd):
            start = i
            i, compressed = _skip_name(data, i)
            i += 4
            if i > len(data):
                return b"", b""
            if qd == 1 and not compressed:
                question = data[start:i]
        for k in range(an + ns + ar):
            owner = i
            i = _skip_name(data, i)[0]
            rtype, _, ttl, rdlen = struct.unpack_from("!HHIH", data, i)
            i += 10 + rdlen
            if i > len(data):
                return question, b""
            if rtype == 41:
                good = k >= an + ns and data[owner] == 0 and _options_ok(data, i - rdlen, i, cookies=False)
                opts.append(ttl if good else -1)
    except (IndexError, struct.error):
        return question, b""
    if i != len(data) or len(opts) != 1 or opts[0] < 0:
        return question, b""
    return question, OPT_RR_DO if opts[0] & _EDNS_DO else OPT_RR


# Answer latency: every ANSWER_SAMPLE-th query (a power of two) is timed, from its read to its response ready
# (the server's UDP and TCP paths and each worker's loop): a timer on every query cost about a fifth of the
# answering rate, one in 16 nothing measurable (bench/answer_timing.py)
ANSWER_SAMPLE = 16
ANSWER_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05)


def rcode_text(response: bytes) -> str:
    """The rcode of a response this server rendered, as ``responses`` counts it: the header's 4 bits, and
    the OPT record's upper 8 where one ends the message without options, as every OPT this server writes
    (BADVERS is 16: NOERROR's bits in the header)."""
    low = response[3] & 15
    tail = response[-11:]
    if response[10:12] != b"\x00\x00" and len(response) >= 23 and tail[:3] == b"\x00\x00\x29" and tail[5]:
        return dns.rcode.to_text(dns.rcode.Rcode.make(tail[5] << 4 | low))
    return _RCODE_TEXT[low]


@dataclass
class ServerStats:
    """Counters of the server; ``responses`` is keyed by rcode text (``"NOERROR"``...), and so is
    ``answer_times``: the sampled answer latencies (``ANSWER_SAMPLE``)."""

    queries: int = 0
    udp_queries: int = 0
    tcp_queries: int = 0
    dropped: int = 0
    truncated: int = 0
    slow_path: int = 0
    memo_hits: int = 0
    send_errors: int = 0
    reloads: int = 0
    refreshes: int = 0
    responses: Counter[str] = field(default_factory=Counter)
    answer_times: dict[str, Histogram] = field(default_factory=dict)

    def time_answer(self, response: bytes, seconds: float) -> None:
        """One sampled answer's latency, under the rcode of ``response`` (``rcode_text``)."""
        rcode = rcode_text(response)
        times = self.answer_times.get(rcode)
        if times is None:
            times = self.answer_times[rcode] = Histogram(ANSWER_BUCKETS)
        times.add(seconds)

    def replaced(self, counted: bytes, sent: bytes) -> None:
        """``sent`` went out in place of ``counted`` (a SERVFAIL for a name not yet written): counted as sent."""
        self.responses[rcode_text(counted)] -= 1
        self.responses[rcode_text(sent)] += 1

    def answers(self) -> dict[str, Any]:
        """Responses by rcode and the sampled latencies, in plain numbers (a worker sends them to the server)."""
        return _plain(self.responses, self.answer_times)


class AnswerTotals:
    """Responses by rcode and sampled answer latencies summed over answering processes, from the plain
    numbers ``ServerStats.answers`` gives (a worker's sent over its channel)."""

    def __init__(self) -> None:
        self.responses: Counter[str] = Counter()
        self.times: dict[str, Histogram] = {}

    def add(self, part: dict[str, Any]) -> None:
        self.responses.update(part.get("responses", {}))
        for rcode, (counts, total) in part.get("times", {}).items():
            self.times.setdefault(rcode, Histogram(ANSWER_BUCKETS)).merge(counts, total)

    def plain(self) -> dict[str, Any]:
        """The totals in ``ServerStats.answers``' form (for ``add``)."""
        return _plain(self.responses, self.times)


def _plain(responses: Counter[str], times: dict[str, Histogram]) -> dict[str, Any]:
    # list() and dict() copy in one step under the GIL: another thread may read while the loop counts
    return {"responses": dict(responses), "times": {rc: h.state() for rc, h in list(times.items())}}


class Responder:
    """Turns query bytes into response bytes from the prerendered tables. No I/O."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.names: dict[bytes, Node] = {}
        self.zones: dict[bytes, ZoneTable] = {}
        self.stats = ServerStats()
        self._random = (rng or random.Random()).random
        self.signed: Callable[[bytes, bool], bytes | None] | None = None  # answers TSIG-signed queries
        # query bytes after the ID -> (responses after the ID, cumulative weights or None, total, rcode text)
        self._memo: dict[bytes, tuple[tuple[bytes, ...], list[int] | None, int, str]] = {}
        self.forget = self._memo.clear

    def add_zone(self, zone: str, serial: int) -> ZoneTable:
        table = ZoneTable(zone, self.names, serial, self.forget)
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
        if udp:
            hit = self._memo.get(data[2:])
            if hit is not None:
                tails, cum, total, text = hit
                stats.memo_hits += 1
                stats.responses[text] += 1
                if cum is None:
                    return data[:2] + tails[0]
                return data[:2] + tails[bisect.bisect_right(cum, self._random() * total)]
        n = len(data)
        if n < 12:
            stats.dropped += 1
            return None
        b2 = data[2]
        if b2 & 0x80:  # a response: never answer it
            stats.dropped += 1
            return None
        if b2 & 0x78:
            return self._notimp(data)
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
        if qtype >= 128 or qtype == 0 or qtype == 41:
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
                or (pos + 11 != n and not _options_ok(data, pos + 11, n))
            ):
                return self._slow(data, udp)
            payload = (data[pos + 3] << 8) | data[pos + 4]
            do = bool(data[pos + 7] & 0x80)
        elif pos != n:
            return self._slow(data, udp)
        memo_key = data[2:] if udp else None
        return self.respond(data[:2], b2, data[3], data[12:qe], qtype, edns, payload, do, udp, memo_key)

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
        memo_key: bytes | None = None,
    ) -> bytes:
        """Answer a parsed question. ``qname`` is the query's name wire (any case, uncompressed);
        ``memo_key``: the query's bytes after its ID, when its answer may be memoised under them."""
        node = self.names.get(qname.lower())
        if node is not None:
            ans = node.rrsets.get(qtype)
            if ans is not None:
                cum = ans.cum
                idx = 0 if cum is None else bisect.bisect_right(cum, self._random() * ans.total)
                plain = ans.plain
                wire = plain[idx]
                # the answer held without EDNS; with it, ARCOUNT + 1 and the OPT record appended here
                if edns:
                    opt = OPT_RR_DO if do else OPT_RR
                    limit = PLAIN_UDP_LIMIT if payload < PLAIN_UDP_LIMIT else min(payload, EDNS_PAYLOAD)
                else:
                    opt = b""
                    limit = PLAIN_UDP_LIMIT
                if udp and len(wire) + len(opt) > limit:
                    return self._truncated(qid, b2, b3, qname, qtype, edns, do, 0x84)
                self.stats.responses["NOERROR"] += 1
                qe = 12 + len(qname)
                flags = bytes((wire[2] | (b2 & 0x01), wire[3] | (b3 & 0x10)))
                if memo_key is not None and max(map(len, plain)) + len(opt) <= limit:
                    if edns:
                        tails = tuple(flags + w[4:10] + _plus_one(w[10:12]) + qname + w[qe:] + opt for w in plain)
                    else:
                        tails = tuple(flags + w[4:12] + qname + w[qe:] for w in plain)
                    self._memoise(memo_key, (tails, ans.cum, ans.total, "NOERROR"))
                    return qid + tails[idx]
                if edns:
                    return qid + flags + wire[4:10] + _plus_one(wire[10:12]) + qname + wire[qe:] + opt
                return qid + flags + wire[4:12] + qname + wire[qe:]
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
        if memo_key is not None:
            self._memoise(memo_key, ((resp[2:],), None, 0, _RCODE_TEXT[rcode]))
        return resp

    def _memoise(self, key: bytes, entry: tuple[tuple[bytes, ...], list[int] | None, int, str]) -> None:
        memo = self._memo
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[key] = entry

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

    def _header_only(
        self, data: bytes, rcode: int, flag_mask: int = _FLAG_RD, question: bytes = b"", opt: bytes = b""
    ) -> bytes:
        """A response of a header (ID, opcode, the query's flags under ``flag_mask``), ``question``, ``opt``."""
        self.stats.responses[_RCODE_TEXT[rcode]] += 1
        return (
            data[:2]
            + bytes((0x80 | (data[2] & (0x78 | flag_mask >> 8)), rcode | (data[3] & flag_mask & 0xFF)))
            + struct.pack("!HHHH", 1 if question else 0, 0, 0, 1 if opt else 0)
            + question
            + opt
        )

    def _notimp(self, data: bytes) -> bytes:
        """An opcode we do not implement: NOTIMP, no question, no flags but the opcode (as BIND answers,
        ednscomp's ``opcodeflg``), and our OPT when the query had a readable one (RFC 6891 §7)."""
        _, opt = _scan(data)
        return self._header_only(data, RCODE_NOTIMP, 0, b"", opt)

    def _formerr(self, data: bytes) -> bytes:
        """FORMERR for a query we cannot take apart: RD and CD copied; the question echoed when there is
        exactly one and it reads; our OPT (DO copied) when the query's single OPT is well formed."""
        question, opt = _scan(data)
        return self._header_only(data, RCODE_FORMERR, _FLAG_RD | _FLAG_CD, question, opt)

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
            # dnspython refuses malformed OPTs too (an option past the record, a COOKIE of a length
            # RFC 7873 §5.2.2 forbids): FORMERR, with our OPT when the OPT itself reads (see _scan)
            log.debug("unparsable query: %s", exc, extra={"event": "formerr", "size": len(data)})
            return self._formerr(data)
        if q.edns > 0:
            return self._dnspython_response(q, dns.rcode.BADVERS, udp)
        if len(q.question) != 1:
            return self._formerr(data)
        question = q.question[0]
        if question.rdclass in _INVALID_QCLASSES:  # NONE and ANY belong to UPDATE, 0 is reserved: as BIND
            return self._dnspython_response(q, dns.rcode.FORMERR, udp)
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
        if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return self._dnspython_response(q, dns.rcode.REFUSED, udp)
        if qtype in (dns.rdatatype.MAILA, dns.rdatatype.MAILB):
            return self._dnspython_response(q, dns.rcode.NOTIMP, udp)
        if dns.rdatatype.is_metatype(question.rdtype):
            # OPT (41) is not a question (RFC 6891 §6.1.1), nor are TKEY/TSIG or the other meta types
            # without a message of their own (RFC 6895 §3.1): FORMERR, as BIND answers
            return self._dnspython_response(q, dns.rcode.FORMERR, udp)
        return self.respond(data[:2], data[2], data[3], qname, qtype, edns, q.payload, do, udp)

    def _any(self, q: dns.message.Message, qname: bytes, udp: bool) -> bytes | None:
        """ANY: over UDP one RRset of the name (RFC 8482 §4.1; see _minimal_any), over TCP every RRset
        (RFC 8482 §4.4; weighted ones: one pick each); or the negative answer."""
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
        chosen = [_minimal_any(node.rrsets)] if udp else list(node.rrsets)
        for qtype in chosen:
            ans = node.rrsets[qtype]
            idx = 0 if ans.cum is None else bisect.bisect_right(ans.cum, self._random() * ans.total)
            parsed = dns.message.from_wire(ans.plain[idx])
            for rrset in parsed.answer:
                r.answer.append(rrset)
        return self._finish(r, udp)

    def _make_response(self, q: dns.message.Message) -> dns.message.Message:
        r = self._response(q)
        r.flags |= dns.flags.AA
        return r

    def _response(self, q: dns.message.Message) -> dns.message.Message:
        """dnspython's response to ``q``, with CD and DO copied as well as RD (RFC 3225 §3 for DO)."""
        r = dns.message.make_response(q, our_payload=EDNS_PAYLOAD)
        r.flags |= q.flags & dns.flags.CD
        if r.edns >= 0:
            r.ednsflags |= q.ednsflags & dns.flags.DO
        return r

    def _dnspython_response(self, q: dns.message.Message, rcode: dns.rcode.Rcode, udp: bool) -> bytes | None:
        r = self._response(q)
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
