"""ISC's EDNS compliance checks (``genreport`` of DNS-Compliance-Testing, the battery behind ednscomp and
DNS flag day) as tests against the embedded server, and against BIND 9.18 on the same machine to show
that the checks are read the way genreport reads them (BIND passes genreport).

genreport is a C program (libresolv, OpenSSL) that is not packaged in Debian; rather than building it
in the test, its queries and its verdict are written here, from its source: the table of tests (the
``EDNS``, ``FULL``, ``TYPE`` and ``COMM`` groups: name, EDNS payload/flags/version/options, TCP, header
bits, opcode, query type) and, per response, the tags it reports (``ok`` when none): wrong opcode or
rcode, ``noopt``/``opt``, ``version-not-zero``, ``badversion``, ``nosoa``/``soa``, ``echoed``,
``nodo``/``nocd``, ``noaa``/``aa``, ``ra``, ``rd``/``nord``, ``ad``, ``cd``, ``z``, ``mbz``,
``toobig``, ``non-empty-*-section`` for an unknown opcode, ``malformed``. A truncated answer is
asked again over TCP, as genreport does, unless the test ignores TC (``edns@512``). Not written:
``dnswkk`` (a TSIG with a well-known key: dnsplane has no TSIG on queries; genreport only runs it on
request) and ``icmp`` (ping). The checks follow genreport's non-recursive mode (RD clear unless the
test sets it), which is how an authoritative server is tested.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dnsplane.dns import DnsServer
from tests.dns.shapes import DO, Edns, Shape, ask, build
from tests.dns.test_server import ZONE, FakeSource, Running, initial_data
from tests.servers.named import NamedServer, start_named

HOST = "127.0.0.1"
SOA, DNSKEY = 6, 48
BADVERS, BADCOOKIE, NOTIMP = 16, 23, 4
COOKIE = b"\x00\x0a\x00\x08\x01\x02\x03\x04\x05\x06\x07\x08"
NSID = b"\x00\x03\x00\x00"
ECS = b"\x00\x08\x00\x04\x00\x01\x00\x00"
EXPIRE = b"\x00\x09\x00\x00"
OPT100 = b"\x00\x64\x00\x00"


@dataclass(frozen=True)
class Check:
    """One row of genreport's table of tests."""

    name: str
    qtype: int = SOA
    udpsize: int = 0  # 0: no EDNS
    eflags: int = 0
    version: int = 0
    rdata: bytes = b""
    tcp: bool = False
    cookie: bool = False
    ignore: bool = False  # ignore TC in the response
    tc: bool = False
    rd: bool = False
    ra: bool = False
    cd: bool = False
    ad: bool = False
    aa: bool = False
    z: bool = False
    opcode: int = 0

    def wire(self, zone: str) -> bytes:
        flags = ((0x0200 if self.tc else 0) | (0x0100 if self.rd else 0) | (0x0080 if self.ra else 0)
                 | (0x0040 if self.z else 0) | (0x0020 if self.ad else 0) | (0x0010 if self.cd else 0)
                 | (0x0400 if self.aa else 0))
        edns = Edns(version=self.version, payload=self.udpsize, flags=self.eflags, raw_rdata=self.rdata) \
            if self.udpsize else None
        if self.opcode == 15:  # genreport sends a bare header for the unknown opcode
            return build(zone, self.qtype, opcode=self.opcode, flags=flags, qdcount=0, questions=0, edns=edns)
        return build(zone, self.qtype, opcode=self.opcode, flags=flags, edns=edns)


_TYPES = {"A": 1, "NS": 2, "MD": 3, "MF": 4, "CNAME": 5, "SOA": 6, "MB": 7, "MG": 8, "MR": 9, "NULL": 10,
          "WKS": 11, "PTR": 12, "HINFO": 13, "MINFO": 14, "MX": 15, "TXT": 16, "RP": 17, "AFSDB": 18, "X25": 19,
          "ISDN": 20, "RT": 21, "NSAP": 22, "NSAP-PTR": 23, "SIG": 24, "KEY": 25, "PX": 26, "GPOS": 27,
          "AAAA": 28, "LOC": 29, "NXT": 30, "SRV": 33, "NAPTR": 35, "KX": 36, "CERT": 37, "A6": 38, "DNAME": 39,
          "APL": 42, "DS": 43, "SSHFP": 44, "IPSECKEY": 45, "RRSIG": 46, "NSEC": 47, "DNSKEY": 48, "DHCID": 49,
          "NSEC3": 50, "NSEC3PARAM": 51, "TLSA": 52, "SMIMEA": 53, "HIP": 55, "CDS": 59, "CDNSKEY": 60,
          "OPENPGPKEY": 61, "SPF": 99, "NID": 104, "L32": 105, "L64": 106, "LP": 107, "EUI48": 108, "EUI64": 109,
          "URI": 256, "CAA": 257, "AVC": 258, "DOA": 259, "DLV": 32769, "TYPE1000": 1000}

CHECKS = [
    # FULL and EDNS groups
    Check("dns"),
    Check("aa", aa=True),
    Check("ad", ad=True),
    Check("cd", cd=True),
    Check("ra", ra=True),
    Check("rd", rd=True),
    Check("tc", tc=True),
    Check("zflag", z=True),
    Check("opcode", qtype=0, opcode=15),
    Check("opcodeflg", qtype=0, opcode=15, tc=True, rd=True, ra=True, cd=True, ad=True, aa=True, z=True),
    Check("type666", qtype=666),
    Check("tcp", tcp=True),
    Check("edns", udpsize=4096),
    Check("edns1", udpsize=4096, version=1),
    Check("edns@512", qtype=DNSKEY, udpsize=512, eflags=DO, ignore=True),
    Check("ednsopt", udpsize=4096, rdata=OPT100),
    Check("edns1opt", udpsize=4096, version=1, rdata=OPT100),
    Check("do", udpsize=4096, eflags=DO),
    Check("docd", udpsize=4096, eflags=DO, cd=True),
    Check("edns1do", udpsize=4096, eflags=DO, version=1),
    Check("ednsflags", udpsize=4096, eflags=0x0080),
    Check("optlist", udpsize=4096, rdata=NSID + ECS + EXPIRE + COOKIE, cookie=True),
    Check("ednsnsid", udpsize=4096, rdata=NSID),
    Check("ednscookie", udpsize=4096, rdata=COOKIE, cookie=True),
    Check("ednsexpire", udpsize=4096, rdata=EXPIRE),
    Check("ednssubnet", udpsize=4096, rdata=ECS),
    Check("edns1nsid", udpsize=4096, version=1, rdata=NSID),
    Check("edns1cookie", udpsize=4096, version=1, rdata=COOKIE, cookie=True),
    Check("edns1expire", udpsize=4096, version=1, rdata=EXPIRE),
    Check("edns1subnet", udpsize=4096, version=1, rdata=ECS),
    Check("ednstcp", qtype=DNSKEY, udpsize=512, eflags=DO, tcp=True),
    # COMM group: what BIND 9.11's resolver and dig send
    Check("bind11", udpsize=4096, eflags=DO, rdata=COOKIE, cookie=True),
    Check("dig11", udpsize=4096, rdata=COOKIE, cookie=True, rd=True, ad=True),
    # TYPE group: a plain query of each type at the apex
    *(Check(name, qtype=code) for name, code in _TYPES.items()),
]


def _name(data: bytes, i: int) -> tuple[str, int]:
    """The name at ``i`` (lower case, pointers followed) and the offset after it; IndexError when bad."""
    labels: list[str] = []
    end = None
    for _ in range(128):
        ln = data[i]
        if ln & 0xC0 == 0xC0:
            if end is None:
                end = i + 2
            i = ((ln & 0x3F) << 8) | data[i + 1]
            continue
        if ln == 0:
            return ".".join(labels).lower() + ".", (i + 1 if end is None else end)
        labels.append(data[i + 1:i + 1 + ln].decode("latin-1"))
        if i + 1 + ln > len(data):
            raise IndexError("label past the end")
        i += ln + 1
    raise IndexError("name loop")


def verdict(check: Check, zone: str, data: bytes, size_limit: int | None = None) -> list[str]:
    """genreport's tags for one response to ``check`` ([] is its ``ok``)."""
    tags: list[str] = []
    if len(data) < 12:
        return ["malformed"]
    flags = struct.unpack("!H", data[2:4])[0]
    opcode = (flags >> 11) & 0xF
    aa, rd, ra, z, ad, cd = (bool(flags & bit) for bit in (0x0400, 0x0100, 0x0080, 0x0040, 0x0020, 0x0010))
    rcode = flags & 0xF
    qd, an, ns, ar = struct.unpack("!HHHH", data[4:12])
    seensoa = seenrrsig = seenecho = seencookie = goodcookie = False
    ednsttl: int | None = None
    i = 12
    try:
        if check.opcode and qd:
            tags.append("non-empty-question-section")
        else:
            for _ in range(qd):
                name, i = _name(data, i)
                qtype = struct.unpack("!H", data[i:i + 2])[0]
                i += 4
                if check.opcode == 0 and (name != zone or qtype != check.qtype):
                    return ["mismatch"]
        for section, count in (("answer", an), ("authority", ns), ("additional", ar)):
            if check.opcode and count:
                tags.append(f"non-empty-{section}-section")
                continue
            for _ in range(count):
                owner, i = _name(data, i)
                rtype, _rclass, ttl, rdlen = struct.unpack("!HHIH", data[i:i + 10])
                i += 10
                if i + rdlen > len(data):
                    return ["malformed"]
                if section == "answer" and rtype == SOA and owner == zone:
                    seensoa = True
                if section == "answer" and rtype == 46:
                    seenrrsig = True
                if section == "additional" and rtype == 41:
                    if ednsttl is not None:
                        return ["malformed"]
                    ednsttl = ttl
                    j = i
                    while i + rdlen - j >= 4:
                        code, optlen = struct.unpack("!HH", data[j:j + 4])
                        j += 4
                        if i + rdlen - j < optlen:
                            return ["malformed"]
                        if code == 10 and 16 <= optlen <= 40:
                            seencookie = True
                            goodcookie = data[j:j + 8] == COOKIE[4:]
                            if not goodcookie and check.cookie:
                                tags.append("cookie-mismatch")
                        if code == 100:
                            seenecho = True
                        j += optlen
                    if j != i + rdlen:
                        return ["malformed"]
                i += rdlen
        if i != len(data):
            return ["malformed"]
    except (IndexError, struct.error, UnicodeDecodeError):
        return ["malformed"]
    seenopt = ednsttl is not None
    ettl = ednsttl or 0
    rcode += (ettl >> 24) << 4
    if opcode != check.opcode:
        tags.append(f"opcode{opcode}")
    if check.version == 0:
        if check.opcode == 0 and rcode != 0 and (not check.cookie or rcode != BADCOOKIE or not seencookie):
            tags.append(f"rcode{rcode}")
        if check.opcode != 0 and rcode != NOTIMP:
            tags.append(f"rcode{rcode}")
    elif rcode != BADVERS:
        tags.append(f"rcode{rcode}")
    ednsvers = (ettl >> 16) & 0xFF
    if seenopt and ednsvers != 0:
        tags.append("version-not-zero")
    if seenopt and ((ednsvers < check.version and rcode != BADVERS)
                    or (ednsvers >= check.version and rcode == BADVERS)):
        tags.append("badversion")
    if not seenopt and check.udpsize:
        tags.append("noopt")
    if seenopt and not check.udpsize:
        tags.append("opt")
    if check.qtype == SOA and check.version == 0 and not check.ignore and not seensoa and rcode == 0:
        tags.append("nosoa")
    if check.qtype == SOA and seensoa and (check.version != 0 or rcode != 0):
        tags.append("soa")
    if seenecho:
        tags.append("echoed")
    if seenopt and check.eflags & DO and not ettl & DO and seenrrsig:
        tags.append("nodo")
    if seenopt and check.eflags & DO and check.cd and ettl & DO and not cd and seenrrsig:
        tags.append("nocd")
    if not aa and check.version == 0 and rcode == 0 and check.opcode == 0:
        tags.append("noaa")
    if aa and check.opcode:
        tags.append("aa")
    if ra and check.opcode:
        tags.append("ra")
    if rd and (check.opcode or not check.rd):
        tags.append("rd")
    if not rd and check.rd and check.opcode == 0:
        tags.append("nord")
    if ad and (check.opcode or (not check.ad and not check.eflags & DO)):
        tags.append("ad")
    if cd and (check.opcode or not check.cd):
        tags.append("cd")
    if z:
        tags.append("z")
    if ettl & 0x7FFF:
        tags.append("mbz")
    if check.ignore and len(data) > (size_limit or check.udpsize or 512):
        tags.append("toobig")
    return tags


def run(check: Check, port: int, zone: str) -> list[str]:
    """Send ``check`` as genreport does (TCP when asked; a TC answer asked again over TCP unless ignored)."""
    wire = check.wire(zone)
    data = ask(HOST, port, Shape(check.name, wire, check.tcp))
    if data is None:
        return ["timeout"]
    if len(data) >= 4 and data[2] & 0x02 and not check.tcp and not check.ignore:
        data = ask(HOST, port, Shape(check.name, wire, True))
        if data is None:
            return ["timeout (tcp)"]
    return verdict(check, zone, data)


@pytest.fixture(scope="module")
def embedded() -> Iterator[Running]:
    running = Running(DnsServer([FakeSource(ZONE, initial_data())], HOST, 0, rng=random.Random(7)))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedServer]:
    server = start_named(Path(tmp_path_factory.mktemp("ednscomp")), (ZONE,))
    try:
        yield server
    finally:
        server.stop()


def test_the_checks_are_genreports() -> None:
    """All of genreport's EDNS, FULL, COMM and TYPE tests are here, once each."""
    names = [c.name for c in CHECKS]
    assert len(names) == len(set(names)) == 33 + len(_TYPES)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
def test_embedded_server_passes(embedded: Running, check: Check) -> None:
    assert run(check, embedded.port, ZONE) == [], f"ednscomp {check.name}: not ok"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
def test_bind_passes_the_same_checks(named: NamedServer, check: Check) -> None:
    """The reference: BIND 9.18 passes genreport, so a check BIND fails here is a misreading of genreport."""
    assert run(check, named.port, ZONE) == [], f"ednscomp {check.name} against BIND: not ok"
