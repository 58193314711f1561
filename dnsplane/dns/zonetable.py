"""The zone's name tree: which names exist in a served zone, and what each one answers.

What this module owns:
- ``ZoneTable``: the prerendered content of one zone, updated one endpoint at a time
  (``set``/``remove``), with the zone's built-in records (NS ``ns1.<zone>`` and its glue A
  ``127.0.0.1``, or the name servers ``set_nameservers`` gives, without glue; and the SOA, whose
  MNAME is the first name server) and its serial (``bump_serial``, which re-renders the SOA);
- ``Node``: a name that exists in a zone, with its answers by qtype;
- the server-wide ``names`` dict (lower-case name wire -> ``Node``) that the responder reads
  on its hot path; every zone table writes into the same dict, and calls ``changed`` (the
  responder's: it forgets the answers it memoised) before each change of it.

Guarantees:
- a name exists (has a ``Node``) exactly while some name at or below it, within the zone,
  holds data: its ancestors up to the apex exist as empty non-terminals (a ``Node`` with no
  rrsets), so the responder answers NOERROR/no data there rather than NXDOMAIN; ``refs``
  counts the names with data at or below a node, and a node is removed when it drops to 0;
- an endpoint that stops rendering a slot held by a built-in record (NS or SOA at the apex,
  A at ``ns1``) gives the built-in back;
- an endpoint outside the zone is logged and not served; one whose content dnspython
  refuses is logged and serves nothing (its earlier answers are withdrawn);
- the serial is 32-bit and never 0 after a bump; ``bump_serial`` closes one version of the zone:
  the endpoints changed since the previous bump (first content before, last content after) go
  into ``journal`` as a ``Version`` (at most ``journal_size`` kept, oldest dropped), which is
  what IXFR answers from (``dnsplane.dns.transfer``).

Limits: not thread-safe (see ``dnsplane.dns.responder``); zones may nest, but a record set
whose name falls inside a more specific served zone is not served by the parent (the caller
filters, see server.py).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dnsplane.dns.render import Answer, Slot, name_wire, render_endpoint, render_response, rrset_wire
from dnsplane.model import EndpointKey, Observed, in_zone

log = logging.getLogger("dnsplane.dns")

SOA_TTL = 60
NS_TTL = 3600
NS_ADDRESS = "127.0.0.1"

_IN = dns.rdataclass.IN
_QTYPE_A = dns.rdatatype.A
_QTYPE_NS = dns.rdatatype.NS
_QTYPE_SOA = dns.rdatatype.SOA


def ancestors(owner: bytes, apex: bytes) -> Iterator[bytes]:
    """``owner`` then each parent name, down to and including ``apex`` (wire forms)."""
    i = 0
    while True:
        suffix = owner[i:]
        yield suffix
        if suffix == apex or owner[i] == 0:
            return
        i += owner[i] + 1


@dataclass(frozen=True, slots=True)
class Version:
    """One applied batch: the serial before and after it, and each changed endpoint's (before, after)."""

    before: int
    after: int
    changes: dict[EndpointKey, tuple[Observed | None, Observed | None]]


JOURNAL_SIZE = 100


class Node:
    """A name that exists in a zone: its answers by qtype (empty for an empty non-terminal)."""

    __slots__ = ("refs", "rrsets", "zone")

    def __init__(self, zone: ZoneTable) -> None:
        self.zone = zone
        self.rrsets: dict[int, Answer] = {}
        self.refs = 0  # names with data at or below this one


class ZoneTable:
    """The prerendered content of one zone, updated one endpoint at a time.

    Writes into ``names``, the server-wide dict from lower-case name wire to
    ``Node`` that the hot path reads.
    """

    def __init__(
        self, zone: str, names: dict[bytes, Node], serial: int, changed: Callable[[], None] = lambda: None
    ) -> None:
        self.zone = zone
        self._changed = changed  # called on every change of ``names`` (the responder forgets its memo)
        self.origin = dns.name.from_text(zone)
        self.apex = name_wire(self.origin)
        self.names = names
        self.serial = serial & 0xFFFFFFFF
        self.observed: dict[EndpointKey, Observed] = {}
        self.journal: deque[Version] = deque(maxlen=JOURNAL_SIZE)
        self._changes: dict[EndpointKey, tuple[Observed | None, Observed | None]] = {}
        self._rendered: dict[EndpointKey, dict[Slot, Answer]] = {}
        self._builtin: dict[Slot, Answer] = {}
        self.soa_rr = b""  # uncompressed SOA RR for the authority section of negative answers
        self.nameservers: tuple[str, ...] = ()  # () = ns1.<zone> with its glue A 127.0.0.1
        self._render_ns()
        self._render_soa()
        for (owner, qtype), ans in self._builtin.items():
            self._put(owner, qtype, ans)

    # --- NS ------------------------------------------------------------
    def builtin_rrsets(self) -> list[dns.rrset.RRset]:
        """The apex NS RRset, and the glue A of ``ns1.<zone>`` when it is the name server."""
        if self.nameservers:
            return [dns.rrset.from_text_list(self.origin, NS_TTL, _IN, _QTYPE_NS, list(self.nameservers))]
        ns1 = dns.name.from_text("ns1", self.origin)
        return [dns.rrset.from_text(self.origin, NS_TTL, _IN, _QTYPE_NS, ns1.to_text()),
                dns.rrset.from_text(ns1, NS_TTL, _IN, _QTYPE_A, NS_ADDRESS)]

    def _render_ns(self) -> None:
        ns, *glue = self.builtin_rrsets()
        self._builtin[(self.apex, _QTYPE_NS)] = Answer([render_response(self.origin, _QTYPE_NS, [ns], glue)])
        for rrset in glue:
            self._builtin[(name_wire(rrset.name), _QTYPE_A)] = Answer([render_response(rrset.name, _QTYPE_A, [rrset])])

    def set_nameservers(self, names: tuple[str, ...]) -> None:
        """Serve NS ``names`` (absolute, outside the zone: no glue) at the apex instead of ``ns1.<zone>``.
        Call it before any endpoint is set (it does not look for endpoints holding the built-ins' slots)."""
        if names == self.nameservers:
            return
        self.nameservers = tuple(names)
        old = dict(self._builtin)
        self._builtin = {slot: ans for slot, ans in old.items() if slot[1] == _QTYPE_SOA}
        self._render_ns()
        for slot in old.keys() - self._builtin.keys():
            self._drop(*slot)
        for (owner, qtype), ans in self._builtin.items():
            self._put(owner, qtype, ans)

    # --- SOA / serial -------------------------------------------------
    def soa_rrset(self) -> dns.rrset.RRset:
        mname = self.nameservers[0] if self.nameservers else f"ns1.{self.zone}"
        text = f"{mname} hostmaster.{self.zone} {self.serial} 3600 600 86400 60"
        return dns.rrset.from_text(self.origin, SOA_TTL, _IN, _QTYPE_SOA, text)

    def _render_soa(self) -> None:
        soa = self.soa_rrset()
        ans = Answer([render_response(self.origin, _QTYPE_SOA, [soa])])
        self._builtin[(self.apex, _QTYPE_SOA)] = ans
        self.soa_rr = rrset_wire(soa)
        self._put(self.apex, _QTYPE_SOA, ans)

    def bump_serial(self) -> None:
        before = self.serial
        self.serial = (self.serial + 1) & 0xFFFFFFFF or 1
        self._render_soa()
        changes = {k: v for k, v in self._changes.items() if v[0] != v[1]}
        self._changes = {}
        self.journal.append(Version(before, self.serial, changes))

    def set_journal_size(self, size: int) -> None:
        self.journal = deque(self.journal, maxlen=size)

    def _note(self, key: EndpointKey, after: Observed | None) -> None:
        first = self._changes[key][0] if key in self._changes else self.observed.get(key)
        self._changes[key] = (first, after)

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
        self._note(key, observed)
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
        if key in self.observed:
            self._note(key, None)
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
        self._changed()
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
        self._changed()
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
