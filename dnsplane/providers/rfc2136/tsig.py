"""TSIG (RFC 8945) signing of requests and verification of responses, straight on wire bytes.

Why by hand: a read sends a query per endpoint and record type, and dnspython's TSIG path
(building ``Message`` objects, ``dns.tsig.sign``/``validate``) costs about ten times what an
``hmac`` over the bytes does; signing here doubled read throughput. dnspython stays the
reference: ``tests/providers/test_rfc2136_wire.py`` checks that what ``Signer.sign`` produces
verifies with ``dns.message.from_wire(keyring=...)`` and that responses dnspython signs verify
here, while any tampered byte fails.

Promises:
- ``sign`` appends one TSIG RR (time = ``clock()``, fudge 300 s, no error, no other data);
- ``verify`` raises ``dns.tsig`` errors: ``BadSignature`` when unsigned or the MAC differs,
  ``BadKey`` when signed under another key name, ``BadTime`` outside the fudge, ``Peer*`` when
  the server reports a TSIG error; ``FormError`` when the TSIG RR is not the last RR, not of
  class ANY, or its length disagrees with its fields. It accepts nothing dnspython refuses.

Limits: the plain HMAC algorithms are done here; others (not used by BIND's ``tsig-keygen``)
go through ``dns.tsig``. One request, one response: no multi-message (AXFR) signing — the
transfer goes through dnspython.
"""

from __future__ import annotations

import hmac
import struct
import time

import dns.exception
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig
import dns.wire

from dnsplane.providers.rfc2136.wire import ANY, TSIG, skip_name

clock = time.time  # the TSIG time; tests replace it to provoke BADTIME

_HMAC = {"hmac-md5.sig-alg.reg.int.": "md5", "hmac-sha1.": "sha1", "hmac-sha224.": "sha224",
         "hmac-sha256.": "sha256", "hmac-sha384.": "sha384", "hmac-sha512.": "sha512"}
FUDGE = 300


class Signer:
    """Signs request bodies and verifies responses under one ``dns.tsig.Key``."""

    def __init__(self, key: dns.tsig.Key) -> None:
        self.key = key
        self.name_wire = key.name.to_digestable()  # canonical: lower case, uncompressed
        self.alg_wire = key.algorithm.to_digestable()
        self.digest = _HMAC.get(key.algorithm.canonicalize().to_text())

    def sign(self, body: bytes, msg_id: int) -> tuple[bytes, bytes]:
        """The message with its TSIG record appended, and the MAC (to verify the response)."""
        (arcount,) = struct.unpack_from("!H", body, 10)
        now = int(clock())
        if self.digest is None:
            rdata = dns.rdtypes.ANY.TSIG.TSIG(
                dns.rdataclass.ANY, dns.rdatatype.TSIG, self.key.algorithm, 0, FUDGE, b"", msg_id, 0, b"")
            tsig, _ = dns.tsig.sign(body, self.key, rdata, now, None)
            tsig_wire, mac = tsig.to_digestable(), tsig.mac
        else:
            when = struct.pack("!HIH", now >> 32, now & 0xFFFFFFFF, FUDGE)
            variables = self.name_wire + struct.pack("!HI", ANY, 0) + self.alg_wire + when + b"\0\0\0\0"
            mac = hmac.new(self.key.secret, body + variables, self.digest).digest()
            tsig_wire = self.alg_wire + when + struct.pack("!H", len(mac)) + mac + struct.pack("!HHH", msg_id, 0, 0)
        signed = (
            body[:10] + struct.pack("!H", arcount + 1) + body[12:]
            + self.name_wire + struct.pack("!HHIH", TSIG, ANY, 0, len(tsig_wire)) + tsig_wire
        )
        return signed, mac

    def verify(self, wire: bytes, tsig_at: int, rdata_at: int, request_mac: bytes) -> None:
        """Check a response's TSIG RR (owner at ``tsig_at``, rdata at ``rdata_at``; -1 when unsigned)."""
        if tsig_at < 0:
            raise dns.tsig.BadSignature("the response is not signed")
        if self.digest is None:
            owner = dns.name.from_wire(wire, tsig_at)[0]
            rdlen = struct.unpack_from("!H", wire, rdata_at - 2)[0]
            rdata = dns.rdtypes.ANY.TSIG.TSIG.from_wire_parser(
                dns.rdataclass.ANY, dns.rdatatype.TSIG, dns.wire.Parser(wire[rdata_at : rdata_at + rdlen]), None)
            dns.tsig.validate(wire, self.key, owner, rdata, int(clock()), request_mac, tsig_at)
            return
        owner_wire = wire[tsig_at : rdata_at - 10]
        if owner_wire.lower() != self.name_wire and dns.name.from_wire(wire, tsig_at)[0] != self.key.name:
            raise dns.tsig.BadKey  # signed under another key name (the MAC covers our name, not the wire's)
        at = skip_name(wire, rdata_at)  # the algorithm name is never compressed (RFC 8945 §4.2)
        hi, lo, fudge, mac_size = struct.unpack_from("!HIHH", wire, at)
        mac = wire[at + 10 : at + 10 + mac_size]
        orig_id, error, other_len = struct.unpack_from("!HHH", wire, at + 10 + mac_size)
        if error == dns.rcode.BADSIG:
            raise dns.tsig.PeerBadSignature
        if error == dns.rcode.BADKEY:
            raise dns.tsig.PeerBadKey
        if error == dns.rcode.BADTIME:
            raise dns.tsig.PeerBadTime
        if error:
            raise dns.tsig.PeerError(f"TSIG error {error}")
        end = at + 16 + mac_size + other_len
        rdclass, _ttl, rdlen = struct.unpack_from("!HIH", wire, rdata_at - 8)
        if rdclass != ANY or rdata_at + rdlen != end or end != len(wire):  # as dnspython: class ANY, last RR
            raise dns.exception.FormError("malformed TSIG record")
        (arcount,) = struct.unpack_from("!H", wire, 10)
        # RFC 8945 §4.3.1: the MAC covers the message with the original ID (a forwarder may change the ID)
        message = struct.pack("!H", orig_id) + wire[2:10] + struct.pack("!H", arcount - 1) + wire[12:tsig_at]
        variables = (self.name_wire + struct.pack("!HI", ANY, 0) + wire[rdata_at:at] + wire[at : at + 8]
                     + wire[at + 12 + mac_size : end])
        expected = hmac.new(self.key.secret, struct.pack("!H", len(request_mac)) + request_mac + message + variables,
                            self.digest).digest()
        if not hmac.compare_digest(mac, expected):
            raise dns.tsig.BadSignature
        signed_at = (hi << 32) | lo
        if abs(int(clock()) - signed_at) > fudge:
            raise dns.tsig.BadTime
