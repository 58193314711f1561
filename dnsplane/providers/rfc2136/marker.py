"""How one endpoint ``(name, rtype)`` is stored in an RFC 2136 zone, and how it is read back.

- ``name rtype``: the addresses of every member with weight > 0, TTL = the record set's TTL;
- ``_dnsplane-<rtype>.name TXT``: the marker TXT as every provider lays it out
  (``providers/marker_txt.py``): one record holding ``Marker.to_text()`` (``dnsplane g=<generation>
  d=<digest> p=<prev> o=<owner>``, then `` r=1`` when released; ``dnsplane -`` when there is no
  marker, a hand edit), followed — only when the record set cannot be rebuilt from the addresses
  alone (other target ids, weights other than 1, ``answer: all``) — by records
  ``"dnsplane-rs <i>" "<chunk>" ...`` carrying the compact ``RecordSet.to_json()``. Read too: the
  layout this provider wrote before, ONE TXT record whose first string is the marker and whose
  further strings are that JSON split every 255 bytes (markers already on a server keep working, and
  are rewritten in the new layout by their endpoint's next write).

Promises (``observe``, a pure function of what the server holds):
- the marker TXT as written reads back as exactly the marker and record set written;
- records edited by hand are seen: when the addresses or TTL served differ from what the
  marker's record set implies, the served addresses come back as one member per address
  (weight 1, target id = the address), whose digest differs from the marker's;
- a marker TXT whose ``g=`` is out of range or garbage (a hand edit) reads as a corrupt marker
  (``model.read_marker``: generation -1, never a head; the verifier repairs it, fenced on the TXT
  actually there), never raises;
- TXT records at the marker name that are neither the marker nor its record-set parts (a hand
  edit) are ignored (the write's prerequisite still names them all, and the write replaces them);
  several marker records: the last in wire order; unreadable JSON is ignored in favour of the
  served addresses.

Limits: no I/O here; the marker's generation order is not checked (the enactor does).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from dnsplane.model import Marker, Member, Observed, RecordSet
from dnsplane.providers import marker_txt

MARKER_TTL = 60


@dataclass(frozen=True, slots=True)
class RawState:
    """What the server holds for one endpoint, as read: the marker TXT rdata and the served records."""

    txt: tuple[bytes, ...] | None  # wire rdatas of the marker TXT RRset (None: no such RRset)
    addresses: frozenset[str]  # normalised addresses served at name/rtype
    ttl: int
    observed: Observed
    # Why the server would ignore records written at this name, when a read found it: a CNAME at the
    # name or the marker name, a DNAME above, a delegation covering it ("" when none was seen)
    blocked: str = ""


NO_STATE = RawState(None, frozenset(), 0, Observed(None, None))


@functools.lru_cache(maxsize=1 << 16)
def norm(address: str) -> str:
    """The canonical text of an IPv4 or IPv6 address."""
    return ipaddress.ip_address(address).compressed


def pseudo(addresses: Iterable[str], ttl: int) -> RecordSet:
    """The record set that the served addresses alone describe: one member per address, weight 1."""
    return RecordSet.of(ttl, [Member(a, (a,), 1) for a in sorted(addresses)])


def txt_rdatas(marker: Marker | None, records: RecordSet | None, force_json: bool = False) -> tuple[bytes, ...]:
    """The wire rdatas of the marker TXT for ``marker`` and ``records`` (the record set only when needed,
    or ``force_json``), sorted as a read returns them."""
    carried = records
    if records is not None and not force_json and marker is not None and records.live_members() == records.members:
        addresses = {norm(a) for a in records.addresses()}
        if records == pseudo(addresses, records.ttl):
            carried = None  # the addresses say it all: keep the marker small
    return tuple(sorted(txt_rdata([s.encode() for s in strings]) for strings in marker_txt.layout(marker, carried)))


def txt_rdata(strings: list[bytes]) -> bytes:
    """TXT rdata on the wire: each string preceded by its length."""
    return b"".join(bytes([len(s)]) + s for s in strings)


def split_txt(rdata: bytes) -> list[bytes]:
    """The strings of a TXT rdata (inverse of ``txt_rdata``)."""
    out, i = [], 0
    while i < len(rdata):
        n = rdata[i]
        out.append(rdata[i + 1 : i + 1 + n])
        i += 1 + n
    return out


def observe(txt: tuple[bytes, ...] | None, addresses: frozenset[str], ttl: int) -> Observed:
    """Decode what the server holds (hand edits show as pseudo-members, see the module docstring)."""
    marker: Marker | None = None
    declared: RecordSet | None = None
    if txt is not None:
        marker, declared = marker_txt.read([[s.decode(errors="replace") for s in split_txt(r)] for r in txt])
    if declared is not None:
        try:
            implied = {norm(a) for a in declared.addresses()}
        except ValueError:
            implied = set()
        if implied == addresses and (not addresses or declared.ttl == ttl):
            return Observed(declared, marker)
    return Observed(pseudo(addresses, ttl) if addresses else None, marker)


def raw_state(txt: tuple[bytes, ...] | None, addresses: frozenset[str], ttl: int, blocked: str = "") -> RawState:
    """``RawState`` of what was read, with its decoded ``Observed``."""
    return RawState(txt, addresses, ttl, observe(txt, addresses, ttl), blocked)
