"""Consistent reads of endpoints from an RFC 2136 server: SOA-bracketed pipelined queries, or AXFR.

Promises:
- ``read(keys)`` returns one snapshot of the zone: the keys' record and marker TXT queries go
  pipelined on one TCP connection between two SOA queries whose serials must agree (retried up
  to 5 times, then one AXFR);
- ``axfr`` is one TSIG-signed zone transfer, which the server serves from one version of the zone;
  with ``keys=None`` it lists every endpoint that has a marker TXT;
- more keys than ``AXFR_THRESHOLD`` are read by AXFR when that is cheaper than queries (by the
  zone's size at the last transfer; before any, above ``_UNKNOWN_ZONE_KEYS`` keys);
- every query and response is TSIG-signed and verified; an alias (CNAME/DNAME) answer is no records.

Limits: A/AAAA endpoints only; A/AAAA records without any dnsplane TXT are not listed by
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
from dnsplane.providers.rfc2136.transport import Channel
from dnsplane.providers.rfc2136.wire import SOA, TXT, TYPES, Response, parse_response, query_body


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
        for _ in range(_SNAPSHOT_TRIES):
            try:
                with ch.connect() as sock:
                    before = self._soa_serial(sock, doing)
                    questions = []
                    for k in keys:
                        questions.append((k.name, TYPES[k.rtype]))
                        questions.append((marker_name(k), TXT))
                    signed = [self._query_message(n, t, i) for (n, t), i in zip(
                        questions, ch.ids(len(questions)), strict=True)]
                    responses = ch.exchange(sock, [w for w, _ in signed])
                    after = self._soa_serial(sock, doing)
            except (OSError, dns.exception.Timeout) as exc:
                raise self.failures.unavailable(exc, doing) from exc
            if before != after:
                continue  # an update landed in between: read again for a consistent snapshot
            out: dict[EndpointKey, RawState] = {}
            for i, k in enumerate(keys):
                rec = self._fast_answer(responses[2 * i], signed[2 * i][1], questions[2 * i][1], doing)
                txt = self._fast_answer(responses[2 * i + 1], signed[2 * i + 1][1], TXT, doing)
                family = socket.AF_INET if questions[2 * i][1] == 1 else socket.AF_INET6
                addresses = frozenset(norm(socket.inet_ntop(family, r)) for r in rec.rdatas)
                ttl = rec.ttl if rec.rdatas else 0
                txt_rdata = tuple(sorted(txt.rdatas)) if txt.rdatas else None
                out[k] = raw_state(txt_rdata, addresses, ttl)
            return out
        return self.axfr(keys)  # the zone kept changing under the queries: one AXFR is one version

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

    def axfr(self, keys: list[EndpointKey] | None) -> dict[EndpointKey, RawState]:
        """One AXFR; ``keys`` None: every endpoint that has a marker TXT."""
        doing = "zone transfer (AXFR)"
        ch = self.channel
        records: dict[tuple[str, int], tuple[set[str], int]] = {}
        txts: dict[str, list[bytes]] = {}
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
        except dns.xfr.TransferError as exc:
            raise self.failures.rcode(exc.rcode, doing) from exc
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime) as exc:
            raise self.failures.tsig(exc, doing) from exc
        except (OSError, EOFError, dns.exception.Timeout) as exc:
            raise self.failures.unavailable(exc, doing) from exc
        self.zone_rrs = count
        if keys is None:
            keys = []
            for name in txts:
                label, _, rest = name.partition(".")
                rtype = label.removeprefix("_dnsplane-").upper()
                if rtype in TYPES and rest:
                    keys.append(EndpointKey(rest, rtype))
        out: dict[EndpointKey, RawState] = {}
        for k in keys:
            addrs, ttl = records.get((k.name, TYPES[k.rtype]), (set(), 0))
            found = txts.get(marker_name(k))
            out[k] = raw_state(tuple(sorted(found)) if found else None, frozenset(addrs), ttl)
        return out
