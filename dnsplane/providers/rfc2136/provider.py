"""The RFC 2136 provider: records and markers in any dynamic-UPDATE server (BIND9), TSIG-signed.

Layout of one endpoint ``(name, rtype)`` in the zone:

- ``name rtype``: the addresses of every member with weight > 0, TTL = the record set's TTL.
  BIND keeps no weights: weighted answers are not served (``weighted_answers=False``);
- ``_dnsplane-<rtype>.name TXT``: ONE TXT record whose first string is ``Marker.to_text()``
  (``dnsplane g=<generation> d=<digest>``), followed — only when the record set cannot be rebuilt
  from the addresses alone (other target ids, weights other than 1, ``answer: all``) — by the
  compact ``RecordSet.to_json()`` split into strings of at most 255 bytes. The digest in the
  marker covers weights and target ids even though BIND serves neither.

Guarantees:
- every write of an endpoint is conditional on the WHOLE marker TXT RRset this provider last saw
  (RFC 2136 §2.4.2 value-dependent "RRset exists", TTL 0; or §2.4.3 "RRset does not exist" when
  there was none) and replaces the records and the marker in the same UPDATE message, which the
  server applies all or nothing: a stale writer's change fails as a whole (NXRRSET/YXRRSET);
- many endpoints go in one UPDATE (a prerequisite each); when a message is refused for a
  prerequisite, its endpoints are re-read, the ones whose marker moved come back ``Conflict``
  (or ``Applied(written=False)`` when they already hold the write), and the rest are sent again,
  each again with its own prerequisite — at most ``_MAX_ROUNDS`` rounds, then ``ProviderUnavailable``;
- I6: a write whose records and marker the endpoint already holds is not sent. The state used for
  that decision is the provider's own last read of the endpoint (the enactor reads right before it
  writes) when at most ``_FRESH`` seconds old, else a new read; a stale view can cost one refused
  message, never a wrong write, because the prerequisite is what fences;
- reads are consistent snapshots: keys are read with queries pipelined on one TCP connection,
  bracketed by two SOA queries whose serials must agree (retried, then AXFR); ``read_all``, and
  ``read`` of more keys than make queries cheaper than a transfer, use one TSIG-signed AXFR, which
  the server serves from one version of the zone;
- records edited by hand are seen: when the addresses or TTL served differ from what the marker's
  record set implies, ``read`` returns the served addresses as one member per address (weight 1,
  target id = the address), whose digest differs from the marker's, so enactor and verifier repair it;
- every message (UPDATE, query, AXFR) is TSIG-signed and responses are verified; UPDATEs go over
  TCP, several messages pipelined on one connection.

Limits:
- an ``apply`` larger than one DNS message (64 KiB: about 400 endpoints of one address without
  record-set JSON, fewer with it) is sent as several messages; each is all-or-nothing, the apply
  as a whole is not;
- ``read_all`` lists the endpoints that have a marker TXT; A/AAAA records without any dnsplane TXT
  are not taken as managed (they may belong to someone else);
- the generation order of markers is not checked here (the enactor does); the exact-marker
  prerequisite is the fence.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import ipaddress
import json
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig
import dns.wire
import dns.xfr

from dnsplane.errors import InvalidConfig, Permanent, ProviderUnavailable
from dnsplane.model import EndpointKey, Marker, Member, Observed, RecordSet, marker_name, normalise_name
from dnsplane.providers.base import Applied, Capabilities, Conflict, Provider, Write, WriteResult
from dnsplane.providers.memory import Listener, notify

log = logging.getLogger(__name__)

AXFR_THRESHOLD = 50  # at most this many keys are always read with targeted queries
# More keys are read with one AXFR when that is cheaper: an AXFR costs about one unit per RR of the
# zone, targeted queries about _QUERY_COST units per key (measured with BIND 9.18 and dnspython 2.9).
_QUERY_COST = 6
_UNKNOWN_ZONE_KEYS = 2_000  # before the first AXFR the zone's size is unknown: AXFR above this many keys
_MAX_ROUNDS = 8  # UPDATE rounds per apply when prerequisites keep failing
_FRESH = 5.0  # seconds a read of an endpoint is trusted for the I6 decision and the prerequisite
_CACHE_LIMIT = 262_144
_MAX_MESSAGE = 65_535 - 512  # room for the TSIG record
_PREREQ_FAILED = frozenset({dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET})
_TYPES = {"A": 1, "AAAA": 28}
_TXT, _SOA, _TSIG = 16, 6, 250
_IN, _NONE, _ANY = 1, 254, 255
_NO_MARKER_TEXT = "dnsplane -"  # first TXT string of a record-set-only TXT (hand edits without a marker)
_ABSENT = Observed(None, None)

_clock = time.time  # the TSIG time; tests replace it to provoke BADTIME


# -- key files ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TsigKey:
    """A TSIG key: its name (absolute), algorithm and base64 secret."""

    name: str
    algorithm: str
    secret: str


_KEY_BLOCK = re.compile(r'\bkey\s+"?([A-Za-z0-9._-]+)"?\s*\{(.*?)\}\s*;', re.S)
_ALGORITHM = re.compile(r'\balgorithm\s+"?([A-Za-z0-9.-]+)"?\s*;')
_SECRET = re.compile(r'\bsecret\s+"([^"]*)"\s*;')


def parse_key_file(path: str | Path, key_name: str | None = None) -> TsigKey:
    """Read a BIND-format key file (``key "name" { algorithm hmac-sha256; secret "..."; };``).

    Several keys may be in the file; ``key_name`` chooses one (required then). Raises
    ``InvalidConfig(path, line, message)`` naming what is wrong.
    """
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidConfig(path, 0, f"cannot read TSIG key file: {exc.strerror or exc}") from exc
    # comments: '#', '//' to end of line and '/* */', kept as blanks so line numbers stay right
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    text = re.sub(r"(#|//)[^\n]*", "", text)

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    blocks = list(_KEY_BLOCK.finditer(text))
    if not blocks:
        expected = 'key "name" { algorithm hmac-sha256; secret "..."; };'
        raise InvalidConfig(path, 1, f"no key block found; expected {expected}")
    if key_name is not None:
        wanted = normalise_name(key_name)
        blocks = [b for b in blocks if normalise_name(b.group(1)) == wanted]
        if not blocks:
            raise InvalidConfig(path, 1, f"no key named {key_name!r} in the file")
    elif len(blocks) > 1:
        names = ", ".join(b.group(1) for b in blocks)
        raise InvalidConfig(path, line_of(blocks[1].start()), f"several keys ({names}); choose one with key_name")
    block = blocks[0]
    body, at = block.group(2), block.start(2)
    algorithm = _ALGORITHM.search(body)
    secret = _SECRET.search(body)
    if algorithm is None:
        raise InvalidConfig(path, line_of(block.start()), f"key {block.group(1)!r} has no 'algorithm ...;'")
    if secret is None:
        raise InvalidConfig(path, line_of(block.start()), f"key {block.group(1)!r} has no 'secret \"...\";'")
    alg = algorithm.group(1).lower()
    if not _known_algorithm(alg):
        raise InvalidConfig(path, line_of(at + algorithm.start()), f"unknown TSIG algorithm {alg!r}")
    try:
        raw = base64.b64decode(secret.group(1), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise InvalidConfig(path, line_of(at + secret.start()), "secret is not valid, non-empty base64")
    return TsigKey(normalise_name(block.group(1)), alg, secret.group(1))


def _known_algorithm(name: str) -> bool:
    try:
        return dns.name.from_text(name) in dns.tsig.mac_sizes
    except dns.exception.DNSException:
        return False


# -- raw state of one endpoint ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Raw:
    """What the server holds for one endpoint, as read: the marker TXT rdata and the served records."""

    txt: tuple[bytes, ...] | None  # wire rdatas of the marker TXT RRset (None: no such RRset)
    addresses: frozenset[str]  # normalised addresses served at name/rtype
    ttl: int
    observed: Observed


_NO_RAW = _Raw(None, frozenset(), 0, _ABSENT)


@functools.lru_cache(maxsize=1 << 16)
def _norm(address: str) -> str:
    return ipaddress.ip_address(address).compressed


def _pseudo(addresses: Iterable[str], ttl: int) -> RecordSet:
    """The record set that the served addresses alone describe: one member per address, weight 1."""
    return RecordSet.of(ttl, [Member(a, (a,), 1) for a in sorted(addresses)])


def _rs_json(rs: RecordSet) -> str:
    return json.dumps(rs.to_json(), separators=(",", ":"), ensure_ascii=True)


def _txt_strings(marker: Marker | None, records: RecordSet | None, force_json: bool = False) -> list[bytes]:
    head = (marker.to_text() if marker is not None else _NO_MARKER_TEXT).encode()
    if records is None:
        return [head]
    if not force_json and marker is not None and records.live_members() == records.members:
        addresses = {_norm(a) for a in records.addresses()}
        if records == _pseudo(addresses, records.ttl):
            return [head]  # the addresses say it all: keep the marker small
    text = _rs_json(records).encode()
    return [head] + [text[i : i + 255] for i in range(0, len(text), 255)]


def _txt_rdata(strings: list[bytes]) -> bytes:
    return b"".join(bytes([len(s)]) + s for s in strings)


def _split_txt(rdata: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(rdata):
        n = rdata[i]
        out.append(rdata[i + 1 : i + 1 + n])
        i += 1 + n
    return out


def _observe(txt: tuple[bytes, ...] | None, addresses: frozenset[str], ttl: int) -> Observed:
    """Decode what the server holds (decision table in the module docstring: hand edits show as pseudo-members)."""
    marker: Marker | None = None
    declared: RecordSet | None = None
    if txt is not None and len(txt) == 1:  # several TXT records at the marker name: no marker (a hand edit)
        strings = _split_txt(txt[0])
        if strings:
            marker = Marker.from_text(strings[0].decode(errors="replace"))
            if len(strings) > 1:
                try:
                    declared = RecordSet.from_json(json.loads(b"".join(strings[1:]).decode()))
                except (ValueError, TypeError, KeyError):
                    declared = None  # unreadable JSON: trust the served addresses
    if declared is not None:
        try:
            implied = {_norm(a) for a in declared.addresses()}
        except ValueError:
            implied = set()
        if implied == addresses and (not addresses or declared.ttl == ttl):
            return Observed(declared, marker)
    return Observed(_pseudo(addresses, ttl) if addresses else None, marker)


# -- wire format ---------------------------------------------------------------------


def _labels(relative: str) -> bytes:
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


_ZONE_PTR = b"\xc0\x0c"  # the zone name sits right after the 12-byte header


class _UpdateBuilder:
    """One UPDATE message built straight to wire: prerequisites and updates, names compressed."""

    def __init__(self, zone_wire: bytes) -> None:
        self.zone_section = zone_wire + struct.pack("!HH", _SOA, _IN)
        self.prereq = bytearray()
        self.updates = bytearray()
        self.n_prereq = 0
        self.n_updates = 0
        self.keys: list[EndpointKey] = []

    def size(self) -> int:
        return 12 + len(self.zone_section) + len(self.prereq) + len(self.updates)

    def add(
        self, rel: str, rtype: int, old_txt: tuple[bytes, ...] | None, new_txt: bytes | None,
        records: tuple[int, list[bytes]] | None, *, check: bool = True, drop_txt: bool = False,
    ) -> None:
        """Prerequisite on the marker TXT (unless not ``check``), then replace the records (unless None)
        and the marker TXT (unless ``new_txt`` is None; ``drop_txt`` deletes it)."""
        label = b"\x0b_dnsplane-a" if rtype == 1 else b"\x0e_dnsplane-aaaa"
        rel_wire = _labels(rel)
        offset = 12 + len(self.zone_section) + len(self.prereq)
        if offset + len(label) + len(rel_wire) < 0x3FFF:
            marker_owner = struct.pack("!H", 0xC000 | offset)
            name_owner = struct.pack("!H", 0xC000 | (offset + len(label))) if rel_wire else _ZONE_PTR
        else:
            marker_owner = label + rel_wire + _ZONE_PTR
            name_owner = rel_wire + _ZONE_PTR
        full_marker = label + rel_wire + _ZONE_PTR
        if not check:
            marker_owner, name_owner = full_marker, rel_wire + _ZONE_PTR
        elif old_txt is None:  # RFC 2136 §2.4.3: RRset does not exist
            self.prereq += full_marker + struct.pack("!HHIH", _TXT, _NONE, 0, 0)
            self.n_prereq += 1
        else:  # §2.4.2: RRset exists (value dependent), the whole RRset, TTL 0
            for rdata in old_txt:
                self.prereq += full_marker + struct.pack("!HHIH", _TXT, _IN, 0, len(rdata)) + rdata
            self.n_prereq += len(old_txt)
        if records is not None:
            ttl, rdatas = records
            self.updates += name_owner + struct.pack("!HHIH", rtype, _ANY, 0, 0)
            for rdata in rdatas:
                self.updates += name_owner + struct.pack("!HHIH", rtype, _IN, ttl, len(rdata)) + rdata
            self.n_updates += 1 + len(rdatas)
        if new_txt is not None or drop_txt:
            self.updates += marker_owner + struct.pack("!HHIH", _TXT, _ANY, 0, 0)
            self.n_updates += 1
        if new_txt is not None:
            self.updates += marker_owner + struct.pack("!HHIH", _TXT, _IN, 60, len(new_txt)) + new_txt
            self.n_updates += 1

    def wire(self, msg_id: int, signer: _Signer) -> tuple[bytes, bytes]:
        """The signed message and its MAC (to verify the response)."""
        header = struct.pack("!HHHHHH", msg_id, 5 << 11, 1, self.n_prereq, self.n_updates, 0)
        body = header + self.zone_section + bytes(self.prereq) + bytes(self.updates)
        return signer.sign(body, msg_id)


_HMAC = {"hmac-md5.sig-alg.reg.int.": "md5", "hmac-sha1.": "sha1", "hmac-sha224.": "sha224",
         "hmac-sha256.": "sha256", "hmac-sha384.": "sha384", "hmac-sha512.": "sha512"}
_FUDGE = 300


class _Signer:
    """TSIG (RFC 8945) signing of requests and verification of responses, straight on wire bytes.

    The plain HMAC algorithms are done here with ``hmac`` (a tenth of dnspython's per-message cost,
    which matters when a read sends a thousand queries); others go through ``dns.tsig``.
    """

    def __init__(self, key: dns.tsig.Key) -> None:
        self.key = key
        self.name_wire = key.name.canonicalize().to_wire()
        self.alg_wire = key.algorithm.canonicalize().to_wire()
        self.digest = _HMAC.get(key.algorithm.canonicalize().to_text())

    def sign(self, body: bytes, msg_id: int) -> tuple[bytes, bytes]:
        """The message with its TSIG record appended, and the MAC (to verify the response)."""
        (arcount,) = struct.unpack_from("!H", body, 10)
        now = int(_clock())
        if self.digest is None:
            rdata = dns.rdtypes.ANY.TSIG.TSIG(
                dns.rdataclass.ANY, dns.rdatatype.TSIG, self.key.algorithm, 0, _FUDGE, b"", msg_id, 0, b"")
            tsig, _ = dns.tsig.sign(body, self.key, rdata, now, None)
            tsig_wire, mac = tsig.to_wire(), tsig.mac
        else:
            when = struct.pack("!HIH", now >> 32, now & 0xFFFFFFFF, _FUDGE)
            variables = self.name_wire + struct.pack("!HI", _ANY, 0) + self.alg_wire + when + b"\0\0\0\0"
            mac = hmac.new(self.key.secret, body + variables, self.digest).digest()
            tsig_wire = self.alg_wire + when + struct.pack("!H", len(mac)) + mac + struct.pack("!HHH", msg_id, 0, 0)
        signed = (
            body[:10] + struct.pack("!H", arcount + 1) + body[12:]
            + self.name_wire + struct.pack("!HHIH", _TSIG, _ANY, 0, len(tsig_wire)) + tsig_wire
        )
        return signed, mac

    def verify(self, wire: bytes, tsig_at: int, rdata_at: int, request_mac: bytes) -> None:
        """Check a response's TSIG; raises ``dns.tsig`` errors (Peer* when the server reports one)."""
        if tsig_at < 0:
            raise dns.tsig.BadSignature("the response is not signed")
        if self.digest is None:
            owner = dns.name.from_wire(wire, tsig_at)[0]
            rdlen = struct.unpack_from("!H", wire, rdata_at - 2)[0]
            rdata = dns.rdtypes.ANY.TSIG.TSIG.from_wire_parser(
                dns.rdataclass.ANY, dns.rdatatype.TSIG, dns.wire.Parser(wire[rdata_at : rdata_at + rdlen]), None)
            dns.tsig.validate(wire, self.key, owner, rdata, int(_clock()), request_mac, tsig_at)
            return
        at = _skip_name(wire, rdata_at)  # the algorithm name is never compressed (RFC 8945 §4.2)
        hi, lo, fudge, mac_size = struct.unpack_from("!HIHH", wire, at)
        mac = wire[at + 10 : at + 10 + mac_size]
        _orig_id, error, other_len = struct.unpack_from("!HHH", wire, at + 10 + mac_size)
        if error == dns.rcode.BADSIG:
            raise dns.tsig.PeerBadSignature
        if error == dns.rcode.BADKEY:
            raise dns.tsig.PeerBadKey
        if error == dns.rcode.BADTIME:
            raise dns.tsig.PeerBadTime
        if error:
            raise dns.tsig.PeerError(f"TSIG error {error}")
        end = at + 16 + mac_size + other_len
        (arcount,) = struct.unpack_from("!H", wire, 10)
        message = wire[:10] + struct.pack("!H", arcount - 1) + wire[12:tsig_at]
        variables = (self.name_wire + struct.pack("!HI", _ANY, 0) + wire[rdata_at:at] + wire[at : at + 8]
                     + wire[at + 12 + mac_size : end])
        expected = hmac.new(self.key.secret, struct.pack("!H", len(request_mac)) + request_mac + message + variables,
                            self.digest).digest()
        if not hmac.compare_digest(mac, expected):
            raise dns.tsig.BadSignature
        signed_at = (hi << 32) | lo
        if abs(int(_clock()) - signed_at) > fudge:
            raise dns.tsig.BadTime


def _skip_name(wire: bytes, at: int) -> int:
    """Offset just past the (possibly compressed) name starting at ``at``."""
    while True:
        n = wire[at]
        if n == 0:
            return at + 1
        if n >= 0xC0:
            return at + 2
        at += 1 + n


_RR = struct.Struct("!HHIH")


@dataclass(frozen=True, slots=True)
class _Response:
    """The parts of a response to a one-question query that a read needs."""

    rcode: int
    rdatas: list[bytes]  # rdata of each answer RR of the question's type (none when the name is an alias)
    ttl: int


def _parse_response(wire: bytes, qtype: int) -> tuple[_Response, int, int]:
    """Parse a response without building dnspython objects. Returns it with the offsets of the TSIG RR
    (its owner) and of its rdata (-1, -1 when unsigned)."""
    _msg_id, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", wire)
    at = 12
    for _ in range(qd):
        at = _skip_name(wire, at) + 4
    rdatas: list[bytes] = []
    ttl = 0
    alias = False
    for _ in range(an):
        at = _skip_name(wire, at)
        rtype, _cls, rttl, rdlen = _RR.unpack_from(wire, at)
        at += 10
        if rtype == qtype:
            rdatas.append(wire[at : at + rdlen])
            ttl = rttl
        elif rtype in (5, 39):  # CNAME, DNAME: the records answered belong to another name
            alias = True
        at += rdlen
    tsig_at = rdata_at = -1
    for _ in range(ns + ar):
        owner = at
        at = _skip_name(wire, at)
        rtype, _cls, _ttl, rdlen = _RR.unpack_from(wire, at)
        at += 10
        if rtype == _TSIG:
            tsig_at, rdata_at = owner, at
        at += rdlen
    return _Response(flags & 0xF, [] if alias else rdatas, ttl), tsig_at, rdata_at


# -- the provider --------------------------------------------------------------------


class Rfc2136Provider(Provider):
    """``Provider`` on a zone of an RFC 2136 server, every message TSIG-signed."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        atomic_batches=True, native_cas=True, weighted_answers=False, max_batch=500
    )
    kind: ClassVar[str] = "rfc2136"
    fresh_for: float = _FRESH  # seconds a read of an endpoint stands for its state in ``apply``

    def __init__(
        self,
        zone: str,
        server: str,
        port: int = 53,
        *,
        key_file: str | None = None,
        key_name: str | None = None,
        key_secret: str | None = None,
        algorithm: str = "hmac-sha256",
        timeout: float = 5.0,
        max_batch: int = 500,
    ) -> None:
        super().__init__(normalise_name(zone))
        self.server = server
        self.port = port
        self.timeout = timeout
        self.capabilities = Capabilities(  # type: ignore[misc]  # per instance: max_batch is configurable
            atomic_batches=True, native_cas=True, weighted_answers=False, max_batch=max_batch
        )
        if key_file is not None:
            tsig = parse_key_file(key_file, key_name)
        elif key_name is not None and key_secret is not None:
            if not _known_algorithm(algorithm):
                raise Permanent(f"rfc2136 provider for {self.zone}: unknown TSIG algorithm {algorithm!r}")
            tsig = TsigKey(normalise_name(key_name), algorithm.lower(), key_secret)
        else:
            raise Permanent(
                f"rfc2136 provider for {self.zone} at {server}:{port} needs a TSIG key: "
                "give key_file (a BIND key file), or key_name and key_secret"
            )
        try:
            self._key = dns.tsig.Key(tsig.name, tsig.secret, tsig.algorithm)
        except (binascii.Error, ValueError) as exc:
            raise Permanent(f"TSIG key {tsig.name}: secret is not valid base64 ({exc})") from exc
        self.key_name = tsig.name
        self._signer = _Signer(self._key)
        self._origin = dns.name.from_text(self.zone)
        self._zone_wire = self._origin.to_wire()
        self._lock = threading.Lock()
        self._seen: dict[EndpointKey, tuple[float, _Raw]] = {}
        self._next_id = 1
        self._listeners: list[Listener] = []
        self._zone_rrs: int | None = None  # RRs in the zone at the last AXFR

    def __repr__(self) -> str:
        return f"Rfc2136Provider(zone={self.zone!r}, server={self.server!r}, port={self.port})"

    @property
    def where(self) -> str:
        return f"{self.server}:{self.port} zone {self.zone}"

    # -- errors --------------------------------------------------------------------

    def _rcode_error(self, rcode: int, doing: str) -> Exception:
        text = dns.rcode.to_text(rcode)  # type: ignore[arg-type]
        at = f"{doing} at {self.where}"
        if rcode == dns.rcode.SERVFAIL:
            return ProviderUnavailable(reason=f"{at}: SERVFAIL (server failure; retrying)", retry_after=1.0)
        if rcode == dns.rcode.REFUSED:
            return Permanent(
                f"{at}: REFUSED — the server does not serve {self.zone} there or does not allow key "
                f"{self.key_name} to do this; check the zone name and grant the key in the zone's update-policy "
                "(or allow-update), allow-transfer and allow-query"
            )
        if rcode == dns.rcode.NOTAUTH:
            return Permanent(
                f"{at}: NOTAUTH — the server is not authoritative for {self.zone} or does not accept key "
                f"{self.key_name}; check the zone name, that it is a primary zone there, and the key"
            )
        if rcode == dns.rcode.NOTZONE:
            return Permanent(f"{at}: NOTZONE — a name of the update is outside {self.zone}; check the zone setting")
        return Permanent(f"{at}: {text}")

    def _tsig_error(self, exc: Exception, doing: str) -> Exception:
        at = f"{doing} at {self.where}"
        if isinstance(exc, dns.tsig.PeerBadTime):
            return Permanent(f"{at}: TSIG BADTIME — clock skew between this host and the server; fix NTP on both")
        if isinstance(exc, dns.tsig.PeerBadKey | dns.tsig.PeerBadSignature | dns.tsig.BadSignature):
            return Permanent(
                f"{at}: TSIG key rejected ({type(exc).__name__}) — key {self.key_name} is unknown to the "
                "server or its secret/algorithm differ; compare the key file with the server's key"
            )
        return Permanent(f"{at}: TSIG verification failed: {exc}")

    def _unavailable(self, exc: BaseException, doing: str) -> ProviderUnavailable:
        return ProviderUnavailable(reason=f"{doing} at {self.where}: {exc or type(exc).__name__}", retry_after=1.0)

    # -- transport -------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.server, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @staticmethod
    def _recv(sock: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionResetError("server closed the connection")
            buf += chunk
        return bytes(buf)

    def _exchange(self, sock: socket.socket, wires: list[bytes]) -> list[bytes]:
        """Send every message (pipelined), then read as many responses; returned by message id order sent."""
        sock.sendall(b"".join(struct.pack("!H", len(w)) + w for w in wires))
        by_id: dict[int, bytes] = {}
        for _ in wires:
            (n,) = struct.unpack("!H", self._recv(sock, 2))
            resp = self._recv(sock, n)
            by_id[struct.unpack("!H", resp[:2])[0]] = resp
        return [by_id[struct.unpack("!H", w[:2])[0]] for w in wires]

    def _ids(self, n: int) -> list[int]:
        with self._lock:
            first = self._next_id
            self._next_id = (first + n) % 0xFFFF or 1
        return [((first + i) % 0xFFFF) or 1 for i in range(n)]

    def _verify(self, wire: bytes, mac: bytes, doing: str) -> dns.message.Message:
        try:
            return dns.message.from_wire(wire, keyring=self._key, request_mac=mac)
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime) as exc:
            raise self._tsig_error(exc, doing) from exc
        except dns.message.UnknownTSIGKey as exc:
            raise self._tsig_error(exc, doing) from exc

    # -- reads -----------------------------------------------------------------------

    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        keys = list(dict.fromkeys(keys))
        raw = self._read_raw(keys)
        return {k: raw[k].observed for k in keys}

    def read_all(self) -> dict[EndpointKey, Observed]:
        raw = self._axfr(None)
        return {k: r.observed for k, r in raw.items()}

    def _read_raw(self, keys: list[EndpointKey]) -> dict[EndpointKey, _Raw]:
        if not keys:
            return {}
        raw = self._axfr(keys) if self._prefer_axfr(len(keys)) else self._query(keys)
        now = time.monotonic()
        with self._lock:
            self._remember_unlocked({k: (now, r) for k, r in raw.items()})
        return raw

    def _prefer_axfr(self, n: int) -> bool:
        if n <= AXFR_THRESHOLD:
            return False
        if self._zone_rrs is None:
            return n > _UNKNOWN_ZONE_KEYS
        return n * _QUERY_COST >= self._zone_rrs

    def _remember_unlocked(self, entries: dict[EndpointKey, tuple[float, _Raw]]) -> None:
        if len(self._seen) + len(entries) > _CACHE_LIMIT:
            self._seen.clear()  # forgetting only costs a read
        self._seen.update(entries)

    def _query_message(self, name: str, rdtype: int, msg_id: int) -> tuple[bytes, bytes]:
        qname = dns.name.from_text(name).to_wire()
        body = struct.pack("!HHHHHH", msg_id, 0, 1, 0, 0, 0) + qname + struct.pack("!HH", rdtype, _IN)
        return self._signer.sign(body, msg_id)

    def _query(self, keys: list[EndpointKey]) -> dict[EndpointKey, _Raw]:
        """Targeted queries on one connection, between two SOA queries that must show the same serial."""
        doing = f"reading {len(keys)} endpoints"
        for _ in range(5):
            try:
                with self._connect() as sock:
                    before = self._soa_serial(sock, doing)
                    questions = []
                    for k in keys:
                        questions.append((k.name, _TYPES[k.rtype]))
                        questions.append((marker_name(k), _TXT))
                    signed = [self._query_message(n, t, i) for (n, t), i in zip(
                        questions, self._ids(len(questions)), strict=True)]
                    responses = self._exchange(sock, [w for w, _ in signed])
                    after = self._soa_serial(sock, doing)
            except (OSError, dns.exception.Timeout) as exc:
                raise self._unavailable(exc, doing) from exc
            if before != after:
                continue  # an update landed in between: read again for a consistent snapshot
            out: dict[EndpointKey, _Raw] = {}
            for i, k in enumerate(keys):
                rec = self._fast_answer(responses[2 * i], signed[2 * i][1], questions[2 * i][1], doing)
                txt = self._fast_answer(responses[2 * i + 1], signed[2 * i + 1][1], _TXT, doing)
                family = socket.AF_INET if questions[2 * i][1] == 1 else socket.AF_INET6
                addresses = frozenset(_norm(socket.inet_ntop(family, r)) for r in rec.rdatas)
                ttl = rec.ttl if rec.rdatas else 0
                txt_rdata = tuple(sorted(txt.rdatas)) if txt.rdatas else None
                out[k] = _Raw(txt_rdata, addresses, ttl, _observe(txt_rdata, addresses, ttl))
            return out
        return self._axfr(keys)  # the zone kept changing under the queries: one AXFR is one version

    def _answer(self, wire: bytes, mac: bytes, doing: str) -> dns.rrset.RRset | None:
        msg = self._verify(wire, mac, doing)
        rcode = msg.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return None
        if rcode != dns.rcode.NOERROR:
            raise self._rcode_error(rcode, doing)
        question = msg.question[0]
        for rrset in msg.answer:
            if rrset.name == question.name and rrset.rdtype == question.rdtype:
                return rrset
        return None

    def _fast_answer(self, wire: bytes, mac: bytes, qtype: int, doing: str) -> _Response:
        """Parse and verify (TSIG) the response to one query; NXDOMAIN is an empty answer."""
        try:
            resp, tsig_at, rdata_at = _parse_response(wire, qtype)
            self._signer.verify(wire, tsig_at, rdata_at, mac)
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadKey) as exc:
            raise self._tsig_error(exc, doing) from exc
        except (struct.error, IndexError, dns.exception.FormError) as exc:
            raise Permanent(f"{doing} at {self.where}: malformed response ({exc})") from exc
        if resp.rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise self._rcode_error(resp.rcode, doing)
        return resp

    def _soa_serial(self, sock: socket.socket, doing: str) -> int:
        (msg_id,) = self._ids(1)
        wire, mac = self._query_message(self.zone, _SOA, msg_id)
        (resp,) = self._exchange(sock, [wire])
        soa = self._answer(resp, mac, doing)
        if soa is None:
            raise Permanent(f"{doing} at {self.where}: no SOA for {self.zone}; is the zone served there?")
        return int(soa[0].serial)

    def _axfr(self, keys: list[EndpointKey] | None) -> dict[EndpointKey, _Raw]:
        """One AXFR; ``keys`` None: every endpoint that has a marker TXT."""
        doing = "zone transfer (AXFR)"
        records: dict[tuple[str, int], tuple[set[str], int]] = {}
        txts: dict[str, list[bytes]] = {}
        count = 0
        try:
            for msg in dns.query.xfr(
                self.server, self._origin, port=self.port, keyring={self._key.name: self._key},
                keyname=self._key.name, keyalgorithm=self._key.algorithm, relativize=False,
                timeout=self.timeout, lifetime=max(self.timeout * 6, 30.0),
            ):
                count += len(msg.answer)
                for rrset in msg.answer:  # one RR per RRset in a transfer: gather them by name and type
                    t = rrset.rdtype
                    if t == _TXT:
                        name = rrset.name.to_text().lower()
                        if name.startswith("_dnsplane-"):
                            txts.setdefault(name, []).extend(r.to_wire() for r in rrset)
                    elif t in (1, 28):
                        addrs, _ = records.setdefault((rrset.name.to_text().lower(), t), (set(), rrset.ttl))
                        addrs.update(_norm(r.to_text()) for r in rrset)
        except dns.xfr.TransferError as exc:
            raise self._rcode_error(exc.rcode, doing) from exc
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime) as exc:
            raise self._tsig_error(exc, doing) from exc
        except (OSError, EOFError, dns.exception.Timeout) as exc:
            raise self._unavailable(exc, doing) from exc
        self._zone_rrs = count
        if keys is None:
            keys = []
            for name in txts:
                label, _, rest = name.partition(".")
                rtype = label.removeprefix("_dnsplane-").upper()
                if rtype in _TYPES and rest:
                    keys.append(EndpointKey(rest, rtype))
        out: dict[EndpointKey, _Raw] = {}
        for k in keys:
            addrs, ttl = records.get((k.name, _TYPES[k.rtype]), (set(), 0))
            addresses = frozenset(addrs)
            found = txts.get(marker_name(k))
            txt = tuple(sorted(found)) if found else None
            out[k] = _Raw(txt, addresses, ttl, _observe(txt, addresses, ttl))
        return out

    # -- writes ----------------------------------------------------------------------

    def _known(self, keys: list[EndpointKey]) -> dict[EndpointKey, _Raw]:
        """The last read of each key when fresh enough, else a new read (I6 and the prerequisites use it)."""
        now = time.monotonic()
        known: dict[EndpointKey, _Raw] = {}
        with self._lock:
            for k in keys:
                seen = self._seen.get(k)
                if seen is not None and now - seen[0] <= self.fresh_for:
                    known[k] = seen[1]
        missing = [k for k in keys if k not in known]
        known.update(self._read_raw(missing))
        return known

    def _decide(
        self, writes: Sequence[Write], indices: list[int], raw: _Raw, results: list[WriteResult | None]
    ) -> tuple[Write, int] | None:
        """Run one key's writes in order against its state; return the net write to send and how many
        writes it stands for (None: nothing to send)."""
        marker, records = raw.observed.marker, raw.observed.records
        last: Write | None = None
        count = 0
        for i in indices:
            w = writes[i]
            if marker == w.marker and records == w.records:
                results[i] = Applied(w.key, written=False)  # I6: already there, nothing to send
            elif marker != w.expect:
                results[i] = Conflict(w.key, marker)
            else:
                results[i] = Applied(w.key)
                marker, records, last = w.marker, w.records, w
                count += 1
        if last is None or (marker == raw.observed.marker and records == raw.observed.records):
            return None
        return last, count

    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        by_key: dict[EndpointKey, list[int]] = {}
        for i, w in enumerate(writes):
            by_key.setdefault(w.key, []).append(i)
        results: list[WriteResult | None] = [None] * len(writes)
        raw = self._known(list(by_key))
        todo = list(by_key)
        try:
            for round_no in range(_MAX_ROUNDS):
                sends = {}
                for k in todo:
                    net = self._decide(writes, by_key[k], raw[k], results)
                    if net is not None:
                        sends[k] = net
                if not sends:
                    break
                refused = self._send(sends, raw)
                if not refused:
                    break
                log.info(
                    "prerequisite failed; re-reading",
                    extra={"fields": {"provider": self.kind, "zone": self.zone, "keys": len(refused),
                                      "round": round_no + 1}},
                )
                raw.update(self._read_raw(refused))
                todo = refused
            else:
                raise ProviderUnavailable(
                    reason=f"UPDATE at {self.where}: prerequisites kept failing for {len(todo)} endpoints after "
                    f"{_MAX_ROUNDS} rounds (concurrent writers); retrying later", retry_after=1.0)
        except BaseException:
            with self._lock:  # the outcome of messages in flight is unknown: read them again next time
                for k in by_key:
                    self._seen.pop(k, None)
            raise
        return [r for r in results if r is not None]

    def _encode(self, w: Write, raw: _Raw, builder: _UpdateBuilder) -> _Raw:
        """Add the write to the message; return the endpoint's state once the message is applied."""
        rtype = _TYPES[w.key.rtype]
        family = socket.AF_INET if rtype == 1 else socket.AF_INET6
        new_addresses = frozenset(_norm(a) for a in w.records.addresses())
        records = None
        if new_addresses != raw.addresses or w.records.ttl != raw.ttl:
            records = (w.records.ttl, [socket.inet_pton(family, a) for a in sorted(new_addresses)])
        new_txt = _txt_rdata(_txt_strings(w.marker, w.records))
        rel = w.key.name[: -len(self.zone)].rstrip(".") if w.key.name != self.zone else ""
        builder.add(rel, rtype, raw.txt, None if (new_txt,) == raw.txt else new_txt, records)
        return _Raw((new_txt,), new_addresses, w.records.ttl, Observed(w.records, w.marker))

    def _send(self, sends: dict[EndpointKey, tuple[Write, int]], raw: dict[EndpointKey, _Raw]) -> list[EndpointKey]:
        """Send the writes in as few messages as fit, pipelined; return the keys of refused messages."""
        builders: list[_UpdateBuilder] = [_UpdateBuilder(self._zone_wire)]
        new_raw: dict[EndpointKey, _Raw] = {}
        for k, (w, _) in sends.items():
            b = builders[-1]
            mark = (len(b.prereq), len(b.updates), b.n_prereq, b.n_updates)
            after = self._encode(w, raw[k], b)
            if b.size() > _MAX_MESSAGE and b.keys:  # undo and start a new message
                del b.prereq[mark[0]:], b.updates[mark[1]:]
                b.n_prereq, b.n_updates = mark[2], mark[3]
                b = _UpdateBuilder(self._zone_wire)
                builders.append(b)
                after = self._encode(w, raw[k], b)
            if b.size() > _MAX_MESSAGE:
                raise Permanent(f"the write of {k} alone does not fit in one DNS message at {self.where}")
            b.keys.append(k)
            new_raw[k] = after
        signed = [b.wire(i, self._signer) for b, i in zip(builders, self._ids(len(builders)), strict=True)]
        doing = f"UPDATE of {len(sends)} endpoints"
        try:
            with self._connect() as sock:
                responses = self._exchange(sock, [w for w, _ in signed])
        except (OSError, dns.exception.Timeout) as exc:
            raise self._unavailable(exc, doing) from exc
        refused: list[EndpointKey] = []
        written: list[EndpointKey] = []
        error: Exception | None = None
        now = time.monotonic()
        for b, (_, mac), resp in zip(builders, signed, responses, strict=True):
            try:
                msg = self._verify(resp, mac, doing)
            except Permanent as exc:
                error = error or exc
                continue
            rcode = msg.rcode()
            if rcode == dns.rcode.NOERROR:
                written.extend(b.keys)
                with self._lock:
                    self.writes += sum(sends[k][1] for k in b.keys)
                    self._remember_unlocked({k: (now, new_raw[k]) for k in b.keys})
            elif rcode in _PREREQ_FAILED:
                refused.extend(b.keys)
            else:
                error = error or self._rcode_error(rcode, doing)
        notify(self._listeners, written)
        if error is not None:
            raise error
        log.debug("update sent", extra={"fields": {"provider": self.kind, "zone": self.zone,
                                                   "endpoints": len(sends), "messages": len(builders),
                                                   "refused": len(refused)}})
        return refused

    # -- test and repair drills --------------------------------------------------------

    def hand_edit(self, key: EndpointKey, records: RecordSet | None, marker: Marker | None) -> None:
        """Overwrite an endpoint's records and marker with no check at all (``None`` removes that part).

        Stands for a human editing the zone; the records' JSON is kept in the TXT so that a record
        set BIND cannot express (weights, empty) reads back as given.
        """
        b = _UpdateBuilder(self._zone_wire)
        rtype = _TYPES[key.rtype]
        family = socket.AF_INET if rtype == 1 else socket.AF_INET6
        rel = key.name[: -len(self.zone)].rstrip(".") if key.name != self.zone else ""
        addrs = sorted({_norm(a) for a in records.addresses()}) if records is not None else []
        txt = None if records is None and marker is None else _txt_rdata(
            _txt_strings(marker, records, force_json=records is not None))
        b.add(rel, rtype, None, txt, (records.ttl if records else 0, [socket.inet_pton(family, a) for a in addrs]),
              check=False, drop_txt=True)
        wire, mac = b.wire(self._ids(1)[0], self._signer)
        try:
            with self._connect() as sock:
                (resp,) = self._exchange(sock, [wire])
        except (OSError, dns.exception.Timeout) as exc:
            raise self._unavailable(exc, "hand edit") from exc
        rcode = self._verify(resp, mac, "hand edit").rcode()
        if rcode != dns.rcode.NOERROR:
            raise self._rcode_error(rcode, "hand edit")
        with self._lock:
            self._seen.pop(key, None)
        log.info("hand edit", extra={"fields": {"endpoint": str(key), "marker": str(marker)}})
        notify(self._listeners, [key])

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(keys)`` after each UPDATE message of this instance that the server applied (in the
        writer's thread). Changes made by other writers are not announced."""
        with self._lock:
            self._listeners.append(fn)
