"""DNS messages of the RFC 2136 provider, built and parsed straight on wire bytes.

Why by hand: an apply of 500 endpoints and a read of a thousand queries spend most of their
time building and parsing dnspython objects; bytes are several times cheaper. dnspython stays
the reference: ``tests/providers/test_rfc2136_wire.py`` checks on generated writes that what
``UpdateBuilder`` builds parses with ``dns.message.from_wire`` into the same prerequisite and
update sections that ``dns.update.UpdateMessage`` builds for the same writes.

Promises:
- ``encode_write`` adds one endpoint's write to an UPDATE: a prerequisite on the whole marker
  TXT RRset last seen (RFC 2136 §2.4.2 value-dependent "RRset exists", TTL 0; or §2.4.3
  "RRset does not exist" when there was none); a second one on
  its A/AAAA RRset as last seen (§2.4.3 when there were no addresses, else §2.4.2 on exactly
  those addresses; RFC 2136 compares rdata, not TTL); more that no CNAME RRset exists at the
  name nor at the marker name (§2.4.3; a server ignores address records added at a CNAME's name,
  RFC 2136 §3.4.2.2 and 1.1.4, and applied the marker alone: a marker that said written), no DNAME
  at the name (it hides the marker below it) and, below the apex, no NS at the name (a delegation:
  its address records are not served); then
  replaces the records (only if they differ) and the marker TXT (only if it differs), so the server
  applies it all or nothing;
- ``UpdateBuilder.move_token`` adds to a message the replacement of the zone's write token
  (``token``), conditional on its exact value (§2.4.2) or absence (§2.4.3) when asked;
- the marker TXT is written as ``providers/marker_txt.py`` lays it out (a record of at most 3,900
  characters each); a write that cannot be encoded at all (a record longer than one RR's 65,535
  bytes: a guard) raises ``Unwritable`` with the reason, before anything is added to the message;
- owner names are compressed against the zone name and the marker name of the same endpoint;
- ``parse_response`` reads the answers of a one-question response and locates its TSIG RR.

Prerequisites see only the zone's own data (RFC 2136 §1.1.3, 1.1.4: no wildcard, no alias is
followed), which is why reads must not take a wildcard's synthesized answer for records.

Limits: only A/AAAA endpoints and their marker TXT; names are ASCII labels of 1..63 bytes
(anything else is ``Permanent``); no EDNS; the message size is the caller's to keep below 64 KiB.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from dnsplane.errors import Permanent
from dnsplane.model import EndpointKey, Observed
from dnsplane.providers.base import Write
from dnsplane.providers.rfc2136.marker import MARKER_TTL, RawState, norm, txt_rdatas
from dnsplane.providers.rfc2136.token import LABEL_WIRE

TYPES = {"A": 1, "AAAA": 28}
TXT, SOA, TSIG, CNAME, DNAME, NS = 16, 6, 250, 5, 39, 2
IN, NONE, ANY = 1, 254, 255
OPCODE_UPDATE = 5

_ZONE_PTR = b"\xc0\x0c"  # the zone name sits right after the 12-byte header
_RR = struct.Struct("!HHIH")
MAX_RDATA = 0xFFFF


class Unwritable(Exception):
    """One endpoint's write cannot be put in an UPDATE message; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def labels(relative: str) -> bytes:
    """Wire labels of a name relative to the zone, without the terminator."""
    if not relative:
        return b""
    out = bytearray()
    for label in relative.split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise Permanent(f"bad DNS label {label!r} in {relative!r}")
        out.append(len(raw))
        out += raw
    return bytes(out)


def relative(name: str, zone: str) -> str:
    """``name`` relative to ``zone`` (both absolute, normalised); '' for the apex."""
    return name[: -len(zone)].rstrip(".") if name != zone else ""


class UpdateBuilder:
    """One UPDATE message built straight to wire: prerequisites and updates, names compressed."""

    def __init__(self, zone_wire: bytes) -> None:
        self.zone_section = zone_wire + struct.pack("!HH", SOA, IN)
        self.prereq = bytearray()
        self.updates = bytearray()
        self.n_prereq = 0
        self.n_updates = 0
        self.keys: list[EndpointKey] = []
        self.expect_token: str | None = None  # the write token its writes expect (None: not conditional on it)

    def size(self) -> int:
        return 12 + len(self.zone_section) + len(self.prereq) + len(self.updates)

    def mark(self) -> tuple[int, int, int, int]:
        """A point to come back to with ``undo``."""
        return len(self.prereq), len(self.updates), self.n_prereq, self.n_updates

    def undo(self, mark: tuple[int, int, int, int]) -> None:
        del self.prereq[mark[0]:], self.updates[mark[1]:]
        self.n_prereq, self.n_updates = mark[2], mark[3]

    def add(
        self, rel: str, rtype: int, old_txt: tuple[bytes, ...] | None, new_txt: tuple[bytes, ...] | None,
        records: tuple[int, list[bytes]] | None, *, check: bool = True, drop_txt: bool = False,
        old_records: list[bytes] | None = None,
    ) -> None:
        """Prerequisite on the marker TXT (unless not ``check``) and, when ``old_records`` is given, on the
        endpoint's address RRset (``[]``: it does not exist; else exactly those rdatas); then replace the
        records (unless None) and the marker TXT RRset by the rdatas ``new_txt`` (unless None; ``drop_txt``
        deletes it)."""
        label = b"\x0b_dnsplane-a" if rtype == 1 else b"\x0e_dnsplane-aaaa"
        rel_wire = labels(rel)
        offset = 12 + len(self.zone_section) + len(self.prereq)
        if offset + len(label) + len(rel_wire) < 0x3FFF:  # point into the prerequisite written below
            marker_owner = struct.pack("!H", 0xC000 | offset)
            name_owner = struct.pack("!H", 0xC000 | (offset + len(label))) if rel_wire else _ZONE_PTR
        else:
            marker_owner = label + rel_wire + _ZONE_PTR
            name_owner = rel_wire + _ZONE_PTR
        full_marker = label + rel_wire + _ZONE_PTR
        if not check:
            marker_owner, name_owner = full_marker, rel_wire + _ZONE_PTR
        elif old_txt is None:  # RFC 2136 §2.4.3: RRset does not exist
            self.prereq += full_marker + _RR.pack(TXT, NONE, 0, 0)
            self.n_prereq += 1
        else:  # §2.4.2: RRset exists (value dependent), the whole RRset, TTL 0
            for i, rdata in enumerate(old_txt):  # the first names the marker in full, the others point to it
                self.prereq += (marker_owner if i else full_marker) + _RR.pack(TXT, IN, 0, len(rdata)) + rdata
            self.n_prereq += len(old_txt)
        if check:  # §2.4.3: nothing at the name that would make the server ignore or not serve what we add
            self.prereq += name_owner + _RR.pack(CNAME, NONE, 0, 0) + marker_owner + _RR.pack(CNAME, NONE, 0, 0)
            self.prereq += name_owner + _RR.pack(DNAME, NONE, 0, 0)  # a DNAME at the name hides the marker
            self.n_prereq += 3
            if rel_wire:  # NS at the name: a delegation, whose address records are not served (not the apex's)
                self.prereq += name_owner + _RR.pack(NS, NONE, 0, 0)
                self.n_prereq += 1
        if check and old_records is not None:
            if not old_records:  # §2.4.3: RRset does not exist
                self.prereq += name_owner + _RR.pack(rtype, NONE, 0, 0)
                self.n_prereq += 1
            else:  # §2.4.2: RRset exists (value dependent): exactly these addresses, TTL 0
                for rdata in old_records:
                    self.prereq += name_owner + _RR.pack(rtype, IN, 0, len(rdata)) + rdata
                self.n_prereq += len(old_records)
        if records is not None:
            ttl, rdatas = records
            self.updates += name_owner + _RR.pack(rtype, ANY, 0, 0)
            for rdata in rdatas:
                self.updates += name_owner + _RR.pack(rtype, IN, ttl, len(rdata)) + rdata
            self.n_updates += 1 + len(rdatas)
        if new_txt is not None or drop_txt:
            self.updates += marker_owner + _RR.pack(TXT, ANY, 0, 0)
            self.n_updates += 1
        for rdata in new_txt or ():
            self.updates += marker_owner + _RR.pack(TXT, IN, MARKER_TTL, len(rdata)) + rdata
            self.n_updates += 1

    def move_token(self, expected: tuple[bytes, ...] | None, new_rdata: bytes) -> None:
        """Replace the zone's write token (``token``) by the TXT rdata ``new_rdata``; when ``expected`` is not
        None, only if the token RRset is exactly those rdatas (§2.4.2, TTL 0; ``()``: §2.4.3, it does not
        exist). Call it once, when the message's writes are all added."""
        owner = LABEL_WIRE + _ZONE_PTR
        if expected is not None:
            if not expected:
                self.prereq += owner + _RR.pack(TXT, NONE, 0, 0)
            for rdata in expected:
                self.prereq += owner + _RR.pack(TXT, IN, 0, len(rdata)) + rdata
            self.n_prereq += len(expected) or 1
        self.updates += owner + _RR.pack(TXT, ANY, 0, 0) + owner + _RR.pack(TXT, IN, 0, len(new_rdata)) + new_rdata
        self.n_updates += 2

    def require_zone(self) -> None:
        """A prerequisite that the zone's SOA RRset exists (RFC 2136 §2.4.1: class ANY, type SOA, no rdata):
        with no update, a message that shows the server takes this key's updates for the zone."""
        self.prereq += _ZONE_PTR + _RR.pack(SOA, ANY, 0, 0)
        self.n_prereq += 1

    def body(self, msg_id: int) -> bytes:
        """The unsigned message."""
        header = struct.pack("!HHHHHH", msg_id, OPCODE_UPDATE << 11, 1, self.n_prereq, self.n_updates, 0)
        return header + self.zone_section + bytes(self.prereq) + bytes(self.updates)


def address_rdata(rtype: int, address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET if rtype == 1 else socket.AF_INET6, address)


def encode_write(w: Write, state: RawState, zone: str, builder: UpdateBuilder) -> RawState:
    """Add the write to the message, fenced on ``state``; return the endpoint's state once it is applied."""
    rtype = TYPES[w.key.rtype]
    new_addresses = frozenset(norm(a) for a in w.records.addresses())
    records = None
    if new_addresses != state.addresses or w.records.ttl != state.ttl:
        records = (w.records.ttl, [address_rdata(rtype, a) for a in sorted(new_addresses)])
    new_txt = txt_rdatas(w.marker, w.records)
    if any(len(rdata) > MAX_RDATA for rdata in new_txt):  # never with marker_txt.MAX_VALUE: a guard
        raise Unwritable(f"its marker TXT (with the record set of {len(w.records.members)} targets) needs a "
                         f"record of more bytes than one DNS record holds ({MAX_RDATA}): give the endpoint "
                         "fewer targets, or shorter target ids")
    # The records are fenced beside the marker (see ``Write``): a marker set back by hand, or deleted,
    # must not let a delayed write land over records that moved on.
    old_records = [address_rdata(rtype, a) for a in sorted(state.addresses)]
    builder.add(relative(w.key.name, zone), rtype, state.txt, None if new_txt == state.txt else new_txt, records,
                old_records=old_records)
    return RawState(new_txt, new_addresses, w.records.ttl, Observed(w.records, w.marker))


def query_body(qname_wire: bytes, rdtype: int, msg_id: int) -> bytes:
    """An unsigned one-question query (no recursion desired)."""
    return struct.pack("!HHHHHH", msg_id, 0, 1, 0, 0, 0) + qname_wire + struct.pack("!HH", rdtype, IN)


def skip_name(wire: bytes, at: int) -> int:
    """Offset just past the (possibly compressed) name starting at ``at``."""
    while True:
        n = wire[at]
        if n == 0:
            return at + 1
        if n >= 0xC0:
            return at + 2
        at += 1 + n


@dataclass(frozen=True, slots=True)
class Response:
    """The parts of a response to a one-question query that a read needs."""

    rcode: int
    rdatas: list[bytes]  # rdata of each answer RR of the question's type (none when the name is an alias)
    ttl: int
    alias: int = 0  # CNAME or DNAME when the answer went through one (the name is an alias), else 0
    authoritative: bool = True  # AA: False in a referral (the name is below a delegation)


def parse_response(wire: bytes, qtype: int) -> tuple[Response, int, int]:
    """Parse a response without building dnspython objects. Returns it with the offsets of the TSIG RR
    (its owner) and of its rdata (-1, -1 when unsigned)."""
    _msg_id, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", wire)
    at = 12
    for _ in range(qd):
        at = skip_name(wire, at) + 4
    rdatas: list[bytes] = []
    ttl = 0
    alias = 0
    for _ in range(an):
        at = skip_name(wire, at)
        rtype, _cls, rttl, rdlen = _RR.unpack_from(wire, at)
        at += 10
        if rtype == qtype:
            rdatas.append(wire[at : at + rdlen])
            ttl = rttl
        elif rtype == DNAME or (rtype == CNAME and not alias):  # the records answered belong to another name
            alias = rtype
        at += rdlen
    tsig_at = rdata_at = -1
    for _ in range(ns + ar):
        owner = at
        at = skip_name(wire, at)
        rtype, _cls, _ttl, rdlen = _RR.unpack_from(wire, at)
        at += 10
        if rtype == TSIG:
            tsig_at, rdata_at = owner, at
        at += rdlen
    return Response(flags & 0xF, [] if alias else rdatas, ttl, alias, bool(flags & 0x0400)), tsig_at, rdata_at
