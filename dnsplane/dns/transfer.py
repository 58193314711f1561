"""Zone transfers out of the embedded server: AXFR (RFC 5936) and IXFR (RFC 1995) over TCP, TSIG-signed.

What this module owns:
- ``TransferPolicy``: who may transfer (client address in one of ``allow``) and with which TSIG key
  (``keyring``; when set, an unsigned request or one signed with another key is refused), built
  from the fleet file's ``serve.transfer`` by ``policy_of``;
- ``zone_rrsets``: the zone as a secondary receives it: SOA, the apex NS (``serve.ns``, or
  ``ns1.<zone>`` and its glue A 127.0.0.1), and for each endpoint its records and its marker TXT;
- ``transfer_messages``: one TCP request in; out: None (not a transfer: the ordinary responder
  answers it), a refusal's messages, or a ``Transfer`` (the request and a ``ZoneSnapshot``) whose
  ``build`` renders the answer's messages;
- ``answer_signed``: an ordinary query signed with TSIG (secondaries sign their SOA checks with the
  key they transfer with), answered by the responder and signed.

What a secondary receives for an endpoint: every address of every member with weight > 0, in one
RRset (``answer: all`` semantics), whatever the endpoint's ``answer``: a secondary answers from a
plain zone and cannot pick one member per query. The marker TXT is transferred as served.

Guarantees:
- a transfer is answered only over TCP (the server calls this from its TCP path; UDP AXFR/IXFR
  stay REFUSED in the responder), to an allowed address with the configured key; otherwise
  REFUSED, as BIND answers (NOTAUTH for a TSIG that does not verify, with its TSIG error when
  dnspython can tell it);
- AXFR: SOA first and last, every RRset of the zone between them, split into messages of at most
  ``MESSAGE_SIZE`` bytes, each signed in one TSIG context when the request was signed (RFC 8945
  §5.3.1); the question is copied into the first message only (RFC 5936 §2.2.1);
- IXFR: when the client's serial is the current one, the current SOA alone; when the journal
  holds every version from the client's serial to the current one, the differences in RFC 1995's
  format (per version: old SOA, deleted RRs, new SOA, added RRs); otherwise (serial unknown,
  journal too short, client serial newer than ours) the full zone in AXFR form, which RFC 1995 §4
  allows;
- ``transfer_messages`` runs in the server's loop thread and only copies (the zone table's dict of
  frozen values, its journal): one consistent version of the zone; ``Transfer.build`` reads only
  that copy, so the server runs it in a worker thread while queries are answered.

Limits: the whole answer is built before the first byte is sent (about 3.5 s for 10,000 names on
the CI machine, in the worker thread); no IXFR over UDP; no SOA-only answer to AXFR.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.renderer
import dns.rrset
import dns.serial
import dns.tsig
import dns.tsigkeyring

from dnsplane.config import ServeConfig
from dnsplane.dns.render import MARKER_MAX_TTL
from dnsplane.dns.zonetable import Version, ZoneTable
from dnsplane.model import EndpointKey, Observed, marker_name
from dnsplane.providers.rfc2136.keys import parse_key_file

log = logging.getLogger("dnsplane.dns")

MESSAGE_SIZE = 16_384  # bytes of RRs per transfer message (TCP allows 65,535; BIND sends about 16 KB)

_IN = dns.rdataclass.IN
_SOA = dns.rdatatype.SOA
_TRANSFER_TYPES = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)

RRKey = tuple[dns.name.Name, int]  # (owner, rdtype)


@dataclass(frozen=True)
class TransferPolicy:
    """Who may transfer: addresses in ``allow``; requests signed with ``keyring``'s key, when set."""

    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    keyring: dict[dns.name.Name, dns.tsig.Key] | None = None
    key_name: dns.name.Name | None = None
    journal: int = 100
    notify: tuple[tuple[str, int], ...] = field(default=())
    nameservers: tuple[str, ...] = ()  # the apex NS; () = ns1.<zone>

    def allows(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allow)

    @property
    def key(self) -> dns.tsig.Key | None:
        if self.keyring is None or self.key_name is None:
            return None
        return self.keyring[self.key_name]


def policy_of(serve: ServeConfig) -> TransferPolicy:
    """The policy of the fleet file's ``serve:`` block; reads a key ``file`` (raises ``InvalidConfig``)."""
    allow = tuple(ipaddress.ip_network(a) for a in serve.allow) if serve.transfer else ()
    keyring = None
    key_name = None
    if serve.key is not None:
        k = serve.key
        if k.file:
            tsig = parse_key_file(k.file, k.name or None)
            name, algorithm, secret = tsig.name, tsig.algorithm, tsig.secret
        else:
            name, algorithm, secret = k.name, k.algorithm, k.secret
        key_name = dns.name.from_text(name)
        keyring = {key_name: dns.tsig.Key(key_name, secret, algorithm)}
    return TransferPolicy(allow, keyring, key_name, serve.journal, serve.notify, serve.ns)


# --- the zone as RRsets -----------------------------------------------------------------


def endpoint_rrsets(key: EndpointKey, observed: Observed | None) -> list[dns.rrset.RRset]:
    """What a secondary holds for one endpoint: all addresses with weight > 0, and the marker TXT.

    Content dnspython refuses (which the zone table serves as nothing) transfers as nothing, logged.
    """
    try:
        return _endpoint_rrsets(key, observed)
    except (dns.exception.DNSException, ValueError) as exc:
        log.error("endpoint %s left out of zone transfers: %s", key, exc,
                  extra={"event": "xfr_render_failed", "endpoint": str(key)})
        return []


def _endpoint_rrsets(key: EndpointKey, observed: Observed | None) -> list[dns.rrset.RRset]:
    out: list[dns.rrset.RRset] = []
    if observed is None:
        return out
    rs = observed.records
    if rs is not None:
        addresses = rs.addresses()
        if addresses:
            cls = dns.rdtypes.IN.A.A if key.rtype == "A" else dns.rdtypes.IN.AAAA.AAAA
            rdtype = dns.rdatatype.A if key.rtype == "A" else dns.rdatatype.AAAA
            out.append(dns.rrset.from_rdata_list(dns.name.from_text(key.name), rs.ttl,
                                                 [cls(_IN, rdtype, a) for a in addresses]))
    if observed.marker is not None:
        ttl = max(0, min(MARKER_MAX_TTL, rs.ttl)) if rs is not None else MARKER_MAX_TTL
        txt = dns.rdtypes.ANY.TXT.TXT(_IN, dns.rdatatype.TXT, [observed.marker.to_text().encode()])
        out.append(dns.rrset.from_rdata(dns.name.from_text(marker_name(key)), ttl, txt))
    return out


@dataclass(frozen=True)
class ZoneSnapshot:
    """One version of a zone, copied out of its table in the loop thread, read in a worker thread."""

    zone: str
    origin: dns.name.Name
    serial: int
    soa: dns.rrset.RRset
    builtin: list[dns.rrset.RRset]
    observed: dict[EndpointKey, Observed]
    journal: tuple[Version, ...]

    @classmethod
    def of(cls, table: ZoneTable) -> ZoneSnapshot:
        """Cheap (copies of a dict and a deque of frozen values): done in the loop thread."""
        return cls(table.zone, table.origin, table.serial, table.soa_rrset(), table.builtin_rrsets(),
                   dict(table.observed), tuple(table.journal))

    def builtin_rrsets(self) -> list[dns.rrset.RRset]:
        return self.builtin


def zone_rrsets(table: ZoneSnapshot) -> list[dns.rrset.RRset]:
    """Every RRset of the zone but the SOA: built-ins (unless an endpoint holds their slot), endpoints."""
    found: dict[RRKey, dns.rrset.RRset] = {(r.name, int(r.rdtype)): r for r in table.builtin_rrsets()}
    for key, observed in table.observed.items():
        for rrset in endpoint_rrsets(key, observed):
            found[(rrset.name, int(rrset.rdtype))] = rrset
    return [found[k] for k in sorted(found)]


def _soa(table: ZoneSnapshot, serial: int) -> dns.rrset.RRset:
    soa = table.soa
    return dns.rrset.from_rdata(soa.name, soa.ttl, soa[0].replace(serial=serial))


def _single_rrs(rrsets: Iterable[dns.rrset.RRset]) -> set[tuple[dns.name.Name, int, int, object]]:
    return {(r.name, int(r.rdtype), r.ttl, rd) for r in rrsets for rd in r}


def ixfr_body(table: ZoneSnapshot, client_serial: int) -> list[dns.rrset.RRset] | None:
    """RFC 1995 differences from ``client_serial`` to now, or None when the journal does not reach it."""
    steps: list[Version] = []
    want = client_serial
    for version in table.journal:
        if steps or version.before == want:
            if version.before != want:
                return None  # a gap (not expected: versions chain)
            steps.append(version)
            want = version.after
    if not steps or want != table.serial:
        return None
    builtin = {(r.name, int(r.rdtype)) for r in table.builtin_rrsets()}
    body: list[dns.rrset.RRset] = []
    for version in steps:
        old: set[tuple[dns.name.Name, int, int, object]] = set()
        new: set[tuple[dns.name.Name, int, int, object]] = set()
        for key, (before, after) in version.changes.items():
            old |= _single_rrs(endpoint_rrsets(key, before))
            new |= _single_rrs(endpoint_rrsets(key, after))
        if any((rr[0], rr[1]) in builtin for rr in old | new):
            return None  # an endpoint at a built-in's name and type (ns1.<zone> A): the full zone says it right
        body.append(_soa(table, version.before))
        body.extend(_as_rrsets(sorted(old - new, key=_order)))
        body.append(_soa(table, version.after))
        body.extend(_as_rrsets(sorted(new - old, key=_order)))
    return body


def _order(rr: tuple[dns.name.Name, int, int, object]) -> tuple[dns.name.Name, int, int, str]:
    return (rr[0], rr[1], rr[2], str(rr[3]))


def _as_rrsets(rrs: Sequence[tuple[dns.name.Name, int, int, object]]) -> list[dns.rrset.RRset]:
    out: list[dns.rrset.RRset] = []
    for name, rdtype, ttl, rdata in rrs:
        if out and out[-1].name == name and out[-1].rdtype == rdtype and out[-1].ttl == ttl:
            out[-1].add(rdata)  # type: ignore[arg-type]  # rdata of this RRset's type, from an RRset
        else:
            rrset = dns.rrset.RRset(name, _IN, dns.rdatatype.RdataType.make(rdtype))
            rrset.update_ttl(ttl)
            rrset.add(rdata)  # type: ignore[arg-type]
            out.append(rrset)
    return out


# --- requests -----------------------------------------------------------------------------


def is_transfer(data: bytes) -> bool:
    """Cheap test on the wire: one question whose type is AXFR or IXFR (the name is not parsed)."""
    if len(data) < 17 or data[2] & 0x80 or data[4:6] != b"\x00\x01":
        return False
    i = 12
    n = len(data)
    while i < n:
        ln = data[i]
        if ln == 0:
            break
        if ln > 63:
            return False
        i += ln + 1
    if i + 3 > n:
        return False
    return ((data[i + 1] << 8) | data[i + 2]) in _TRANSFER_TYPES


@dataclass(frozen=True)
class Transfer:
    """An allowed transfer: the request and a snapshot of the zone; ``build`` renders the answer.

    ``build`` reads only this value, so it may run in a worker thread while the loop answers queries.
    """

    query: dns.message.Message
    peer: str
    zone: ZoneSnapshot

    def build(self) -> list[bytes]:
        q, zone = self.query, self.zone
        body: list[dns.rrset.RRset] | None = None
        kind = "AXFR"
        if q.question[0].rdtype == dns.rdatatype.IXFR:
            client = _client_serial(q)
            assert client is not None  # checked by transfer_messages
            if client == zone.serial or dns.serial.Serial(client) > dns.serial.Serial(zone.serial):
                body = [_soa(zone, zone.serial)]  # up to date (or ahead of us: it gets our SOA, RFC 1995 §2)
                kind = "IXFR-current"
            else:
                diff = ixfr_body(zone, client)
                if diff is not None:
                    body = [_soa(zone, zone.serial), *diff, _soa(zone, zone.serial)]
                kind = "IXFR" if diff is not None else "AXFR-for-IXFR"
        if body is None:
            soa = _soa(zone, zone.serial)
            body = [soa, *zone_rrsets(zone), soa]
        messages = _render(q, body)
        log.info(
            "zone transfer %s of %s (serial %d) to %s: %d messages",
            kind,
            zone.zone,
            zone.serial,
            self.peer,
            len(messages),
            extra={"event": "xfr", "kind": kind, "zone": zone.zone, "serial": zone.serial, "peer": self.peer},
        )
        return messages


def transfer_messages(
    data: bytes, peer: str, zones: dict[dns.name.Name, ZoneTable], policy: TransferPolicy
) -> list[bytes] | Transfer | None:
    """What answers a TCP request: None when it is not a zone transfer (the responder answers it), the
    messages of a refusal, or an allowed ``Transfer`` to build (in the loop thread, it only copies)."""
    if not is_transfer(data):
        return None
    keyring = policy.keyring or {}
    try:
        q = dns.message.from_wire(data, keyring=keyring)
    except dns.message.UnknownTSIGKey:
        return _refusal(data, dns.rcode.NOTAUTH, peer, "unknown TSIG key")
    except (dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadAlgorithm, dns.tsig.PeerError) as exc:
        return _refusal(data, dns.rcode.NOTAUTH, peer, f"TSIG does not verify: {exc}")
    except (dns.exception.DNSException, ValueError):
        return None  # the responder answers FORMERR
    question = q.question[0]
    if q.opcode() != dns.opcode.QUERY or question.rdclass != _IN:
        return None  # not a transfer: the responder answers (NOTIMP, FORMERR or REFUSED, as for any query)
    zone = zones.get(question.name)
    if zone is None:
        return None  # not a zone served here: the responder answers (REFUSED, as for any query)
    why = None
    if not policy.allows(peer):
        why = "address not in serve.transfer.allow"
    elif policy.keyring is not None and not q.had_tsig:
        why = "request not signed with the transfer key"
    if why is not None:
        log.warning(
            "zone transfer refused to %s: %s",
            peer,
            why,
            extra={"event": "xfr_refused", "peer": peer, "zone": question.name.to_text(), "reason": why},
        )
        return [_answer(q, dns.rcode.REFUSED)]
    if question.rdtype == dns.rdatatype.IXFR and _client_serial(q) is None:
        return [_answer(q, dns.rcode.FORMERR)]
    return Transfer(q, peer, ZoneSnapshot.of(zone))


def answer_signed(
    data: bytes, udp: bool, policy: TransferPolicy, handle: Callable[[bytes, bool], bytes | None]
) -> bytes | None:
    """A TSIG-signed ordinary query (a secondary's SOA check, signed with the transfer key): verified,
    answered by ``handle`` (the responder) unsigned, and the answer signed (RFC 8945 §5.3). A query
    signed with another key, or one that does not verify, gets NOTAUTH (unsigned, as RFC 8945 §5.2 says)."""
    try:
        q = dns.message.from_wire(data, keyring=policy.keyring or {})
    except dns.message.UnknownTSIGKey:
        return _refusal(data, dns.rcode.NOTAUTH, "", "unknown TSIG key")[0]
    except (dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadAlgorithm, dns.tsig.PeerError) as exc:
        return _refusal(data, dns.rcode.NOTAUTH, "", f"TSIG does not verify: {exc}")[0]
    except (dns.exception.DNSException, ValueError):
        return _refusal(data, dns.rcode.FORMERR, "", "unparsable signed query")[0]
    keyring, mac, keyname, algorithm = q.keyring, q.mac, q.keyname, q.keyalgorithm
    q.tsig = None
    q.keyring = None
    resp = handle(q.to_wire(), udp)
    if resp is None or keyring is None or algorithm is None:
        return resp
    r = dns.message.from_wire(resp)
    r.use_tsig(keyring, keyname, algorithm=algorithm)
    r.request_mac = mac or b""
    return r.to_wire(max_size=len(resp) + 200 if udp else 65535)


def _client_serial(q: dns.message.Message) -> int | None:
    for rrset in q.authority:
        if rrset.rdtype == _SOA and len(rrset):
            return int(rrset[0].serial)
    return None


def _answer(q: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    """An answer to ``q`` with ``rcode`` and no records; RD and CD copied, as every answer of the responder."""
    r = dns.message.make_response(q)
    r.flags |= q.flags & dns.flags.CD
    r.set_rcode(rcode)
    return r.to_wire()


def _refusal(data: bytes, rcode: int, peer: str, why: str) -> list[bytes]:
    log.warning("zone transfer refused to %s: %s", peer, why, extra={"event": "xfr_refused", "peer": peer})
    flags = 0x80 | (data[2] & 0x79)
    return [data[:2] + bytes((flags, rcode)) + b"\x00" * 8]


def _render(q: dns.message.Message, body: list[dns.rrset.RRset]) -> list[bytes]:
    """``body`` over messages of at most MESSAGE_SIZE bytes (one RRset alone may take up to 65,535),
    the question in the first only, each signed in one TSIG context when the request was signed."""
    key = q.keyring if q.had_tsig and isinstance(q.keyring, dns.tsig.Key) else None
    question = q.question[0]
    flags = dns.flags.QR | dns.flags.AA | (q.flags & dns.flags.RD)
    out: list[bytes] = []
    ctx = None
    i = 0
    while i < len(body) or not out:
        size = MESSAGE_SIZE
        while True:
            r = dns.renderer.Renderer(q.id, flags, size)
            if not out:
                r.add_question(question.name, question.rdtype, question.rdclass)
            if key is not None:
                r.reserve(_TSIG_RESERVE)
            j = i
            try:
                while j < len(body):
                    r.add_rrset(dns.renderer.ANSWER, body[j])
                    j += 1
            except dns.exception.TooBig:
                if j == i:  # one RRset larger than a message of MESSAGE_SIZE: give it a message of its own
                    if size == 65535:
                        raise
                    size = 65535
                    continue
            break
        i = j
        r.release_reserved()
        r.write_header()
        if key is not None:
            ctx = r.add_multi_tsig(ctx, key.name, key, 300, q.id, 0, b"", q.mac if not out else b"", key.algorithm)
        out.append(r.get_wire())
    return out


_TSIG_RESERVE = 300  # bytes kept for the TSIG RR: name, fixed fields, a MAC of up to 64 bytes
