"""Rendering answers to wire bytes: what one endpoint serves, done once per change.

What this module owns:
- ``render_endpoint``: every response one endpoint contributes (its records and its marker
  TXT) as complete wire bytes (ID 0, lower-case question, QR and AA set, no EDNS), keyed by
  ``Slot`` = (owner name wire, qtype): the bytes dnspython renders for those messages, written
  directly (a test compares them on generated endpoints);
- ``Answer``: the prerendered responses of one name and type, one per weighted member (or
  one for ``answer="all"``), each in a plain, an EDNS and an EDNS+DO variant, with the
  cumulative weights the responder draws from;
- the wire helpers the zone table and the responder share (``name_wire``, ``render_response``,
  ``rrset_wire``, our ``OPT_RR``) and the size limits (``EDNS_PAYLOAD``, ``PLAIN_UDP_LIMIT``).

Guarantees:
- the EDNS variants are the plain bytes plus dnspython's own OPT RR (version 0, payload 1232,
  no options), which dnspython always renders last; a unit test checks the bytes equal
  dnspython's rendering of the same message with EDNS;
- weighted answers: one response per member with addresses and weight > 0, carrying all of
  that member's addresses; ``"all"`` answers carry every address of every member with weight
  > 0. Each is rendered in up to ``MAX_ROTATIONS`` orders of its addresses, and each rotation
  of a member weighs ``weight * 840 / rotations`` (840 = lcm(1..8)), so weights stay exact;
- a marker TXT is served with the records' TTL capped at ``MARKER_MAX_TTL``.

Pure: no I/O, no clock, no randomness; knows nothing of zones or queries.
"""

from __future__ import annotations

import functools
import io

import dns.flags
import dns.ipv4
import dns.ipv6
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dnsplane.model import EndpointKey, Observed, marker_name

EDNS_PAYLOAD = 1232  # what we advertise, and the largest UDP answer we send
PLAIN_UDP_LIMIT = 512
MARKER_MAX_TTL = 60
MAX_ROTATIONS = 8  # address orders prerendered per answer
_ROTATION_SCALE = 840  # lcm(1..8): each rotation of a member gets weight * 840 / rotations, exactly

_IN = dns.rdataclass.IN
_QTYPE_TXT = dns.rdatatype.TXT


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
    """Lower-case uncompressed wire form of a name: the key of every table of the server."""
    n = dns.name.from_text(name) if isinstance(name, str) else name
    return n.to_digestable()


class Answer:
    """Prerendered responses for one name and type: one choice, or weighted choices.

    ``plain[i]`` is a complete response with ID 0 and a lower-case question, without EDNS: the
    responder appends the OPT record (``OPT_RR``, ``OPT_RR_DO``) for a query with EDNS. Only the
    plain responses are held: the two EDNS variants of every choice were a third of the memory of a
    served zone (about 1 KB an endpoint), and appending the record when a query misses the
    responder's memo costs about 0.4 µs. ``cum`` holds the cumulative weights (None when there is a
    single choice).
    """

    __slots__ = ("cum", "plain", "total")

    def __init__(self, plain: list[bytes], weights: list[int] | None = None) -> None:
        if not plain:
            raise ValueError("an Answer needs at least one response")
        self.plain = tuple(plain)
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

    The bytes are dnspython's (``render_response``) for the same message, written here directly:
    an applied batch renders each of its endpoints, on the server's event loop, and building a
    dnspython message per response cost about 280 µs an endpoint (two members and a marker), so
    a first plan of 100,000 endpoints held the loop for half a minute in all. Addresses are parsed
    by dnspython's own ``inet_aton`` (what its A and AAAA rdata use), so what it refuses is refused
    here; a test compares the bytes with ``render_response``'s on generated endpoints.

    Raises ``dns.exception.DNSException`` or ``ValueError`` for content dnspython
    refuses (an address of the wrong family, a name too long).
    """
    out: dict[Slot, Answer] = {}
    rs = observed.records
    live = [m for m in rs.live_members() if m.addresses] if rs is not None else []
    if rs is not None and live:
        rdtype = int(dns.rdatatype.from_text(key.rtype))
        question = _Question(dns.name.from_text(key.name), rdtype)
        parse = _ADDRESS_PARSERS.get(rdtype)
        if parse is None:
            raise ValueError(f"type {key.rtype} is not served")
        head = _rr_head(rdtype, rs.ttl)
        groups = [(rs.addresses(), 1)] if rs.answer == "all" else [(list(m.addresses), m.weight) for m in live]
        wires: list[bytes] = []
        weights: list[int] = []
        for addrs, weight in groups:
            # a few rotations of the address order, so that clients taking the first address spread out
            packed = [parse(a) for a in addrs]
            n = min(len(packed), MAX_ROTATIONS)
            for i in range(n):
                rdatas = dict.fromkeys(packed[i:] + packed[:i])  # an rdataset holds each rdata once
                wires.append(_response(question, [head + len(r).to_bytes(2, "big") + r for r in rdatas]))
                weights.append(weight * _ROTATION_SCALE // n)
        out[(question.slot, rdtype)] = Answer(wires, weights)
    if observed.marker is not None:
        ttl = max(0, min(MARKER_MAX_TTL, rs.ttl)) if rs is not None else MARKER_MAX_TTL
        text = observed.marker.to_text().encode()
        if len(text) > 255:
            raise ValueError("a marker longer than one TXT string (255 bytes)")
        question = _Question(dns.name.from_text(marker_name(key)), _QTYPE_TXT)
        rdata = bytes([len(text)]) + text
        rr = _rr_head(_QTYPE_TXT, ttl) + len(rdata).to_bytes(2, "big") + rdata
        out[(question.slot, _QTYPE_TXT)] = Answer([_response(question, [rr])])
    return out


class _Question:
    """A response's question section (the name as given, type, class IN) and the name's slot key."""

    __slots__ = ("slot", "wire")

    def __init__(self, name: dns.name.Name, rdtype: int) -> None:
        wire = name.to_wire()
        assert wire is not None  # None only when given a file to write to
        self.wire = wire + rdtype.to_bytes(2, "big") + b"\x00\x01"
        self.slot = name.to_digestable()


def _rr_head(rdtype: int, ttl: int) -> bytes:
    """An answer RR up to its RDLENGTH: owner compressed to the question's name (offset 12), type, IN, TTL."""
    if not 0 <= ttl <= 0xFFFFFFFF:
        raise ValueError(f"TTL {ttl} does not fit 32 bits")
    return b"\xc0\x0c" + rdtype.to_bytes(2, "big") + b"\x00\x01" + ttl.to_bytes(4, "big")


def _response(question: _Question, rrs: list[bytes]) -> bytes:
    """ID 0, QR and AA, one question, ``rrs`` in the answer section: what ``render_response`` gives."""
    return _HEADER + len(rrs).to_bytes(2, "big") + b"\x00\x00\x00\x00" + question.wire + b"".join(rrs)


_HEADER = b"\x00\x00" + int(dns.flags.QR | dns.flags.AA).to_bytes(2, "big") + b"\x00\x01"
# a fleet's endpoints share few addresses (their targets'): each parsed once, not once per endpoint
_ADDRESS_PARSERS = {int(dns.rdatatype.A): functools.lru_cache(maxsize=65536)(dns.ipv4.inet_aton),
                    int(dns.rdatatype.AAAA): functools.lru_cache(maxsize=65536)(dns.ipv6.inet_aton)}
