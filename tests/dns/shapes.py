"""Query shapes for comparing two DNS servers on the wire, and what of a response is compared.

- ``build``: a query built byte by byte (any name, type, class, opcode, header bits, QDCOUNT,
  EDNS version/payload/flags/options, a malformed OPT), so that shapes dnspython refuses to
  build can be sent too;
- ``Shape``: one named query and its transport; ``SHAPES``: the list the differential test
  against BIND sends (tests/dns/test_bind_differential.py);
- ``summarize``: what is compared of a response: rcode (extended by the OPT), opcode, header
  flags, section counts, EDNS presence/version/DO/payload, in which sections SOA records are,
  and the question echoed; parsed by hand, so that any response that has a header can be
  summarised;
- ``ask``: send one shape to a server (UDP or TCP on loopback) and return the response bytes,
  or None when no response comes within the timeout.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ZONE = "demo.test."

# header bits (the 16-bit flags word)
QR, AA, TC, RD, RA, Z, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0040, 0x0020, 0x0010
_FLAG_NAMES = (("qr", QR), ("aa", AA), ("tc", TC), ("rd", RD), ("ra", RA), ("z", Z), ("ad", AD), ("cd", CD))
DO = 0x8000  # EDNS flags

OPT_COOKIE = 10
OPT_NSID = 3
OPT_EXPIRE = 9
OPT_PADDING = 12
OPT_UNKNOWN = 65001

_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "OPT": 41, "DS": 43,
          "RRSIG": 46, "DNSKEY": 48, "HINFO": 13, "TKEY": 249, "TSIG": 250, "IXFR": 251, "AXFR": 252,
          "MAILB": 253, "MAILA": 254, "ANY": 255, "CAA": 257, "TYPE0": 0, "TYPE65280": 65280, "TYPE128": 128}


def name_to_wire(name: str) -> bytes:
    if name in (".", ""):
        return b"\x00"
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


@dataclass(frozen=True)
class Edns:
    version: int = 0
    payload: int = 1232
    flags: int = 0  # DO = 0x8000; other bits are "Z"
    options: tuple[tuple[int, bytes], ...] = ()
    raw_rdata: bytes | None = None  # the OPT's RDATA as given (a malformed option), RDLENGTH from its length
    owner: bytes = b"\x00"
    ext_rcode: int = 0


def opt_rr(e: Edns) -> bytes:
    rdata = e.raw_rdata if e.raw_rdata is not None else b"".join(
        struct.pack("!HH", code, len(data)) + data for code, data in e.options)
    ttl = (e.ext_rcode << 24) | (e.version << 16) | e.flags
    return e.owner + struct.pack("!HHIH", 41, e.payload, ttl, len(rdata)) + rdata


def build(name: str = "api." + ZONE, qtype: str | int = "A", qclass: int = 1, *, qid: int = 0x1234,
          opcode: int = 0, flags: int = 0, edns: Edns | None = None, qdcount: int | None = None,
          questions: int = 1, extra_opt: int = 0, extra: bytes = b"", arcount: int | None = None,
          ancount: int = 0, answer: bytes = b"") -> bytes:
    """A query: ``questions`` copies of the question; ``qdcount``/``arcount`` override the header's counts."""
    rtype = qtype if isinstance(qtype, int) else _TYPES[qtype]
    question = name_to_wire(name) + struct.pack("!HH", rtype, qclass)
    opts = b""
    if edns is not None:
        opts = opt_rr(edns) * (1 + extra_opt)
    ar = arcount if arcount is not None else (1 + extra_opt if edns is not None else 0)
    header = struct.pack("!HHHHHH", qid, (opcode << 11) | flags,
                         questions if qdcount is None else qdcount, ancount, 0, ar)
    return header + question * questions + answer + opts + extra


@dataclass(frozen=True)
class Shape:
    id: str
    wire: bytes
    tcp: bool = False

    @property
    def chaos(self) -> bool:
        """A CH-class question: BIND answers those from its built-in ``_bind`` view, which rate-limits
        UDP answers (3 a second, none slipped), so the differential test asks BIND over TCP."""
        try:
            end = _skip_name(self.wire, 12)
        except IndexError:
            return False
        return self.wire[4:6] != b"\x00\x00" and self.wire[end + 2:end + 4] == b"\x00\x03"


def _skip_name(data: bytes, i: int) -> int:
    while True:
        ln = data[i]
        if ln == 0:
            return i + 1
        if ln & 0xC0 == 0xC0:
            return i + 2
        i += ln + 1


@dataclass(frozen=True)
class Summary:
    """What the differential test compares of one response (None fields: not present)."""

    rcode: int
    opcode: int
    flags: str
    counts: tuple[int, int, int, int]
    edns: tuple[int, str, int] | None  # version, "do" or "", payload
    soa: str  # sections holding SOA records, e.g. "authority"
    question: str  # the question echoed, hex of its wire (name case included)

    def fields(self) -> dict[str, object]:
        return {"rcode": self.rcode, "opcode": self.opcode, "flags": self.flags, "counts": self.counts,
                "edns": self.edns, "soa": self.soa, "question": self.question}


def summarize(data: bytes | None) -> Summary | str:
    """The compared fields of a response, or a word: ``"no response"``, ``"unparsable: ..."``."""
    if data is None:
        return "no response"
    try:
        _qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
        i = 12
        qstart = i
        for _ in range(qd):
            i = _skip_name(data, i) + 4
        question = data[qstart:i].hex()
        sections = ["answer"] * an + ["authority"] * ns + ["additional"] * ar
        soa: list[str] = []
        edns: tuple[int, str, int] | None = None
        ext = 0
        for section in sections:
            i = _skip_name(data, i)
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", data[i:i + 10])
            i += 10 + rdlen
            if i > len(data):
                return "unparsable: record past the end"
            if rtype == 6 and section not in soa:
                soa.append(section)
            if rtype == 41:
                edns = ((ttl >> 16) & 0xFF, "do" if ttl & DO else "", rclass)
                ext = ttl >> 24
    except (struct.error, IndexError):
        return "unparsable: truncated"
    names = "".join(" " + n for n, bit in _FLAG_NAMES if flags & bit).strip()
    return Summary(rcode=(ext << 4) | (flags & 0xF), opcode=(flags >> 11) & 0xF, flags=names,
                   counts=(qd, an, ns, ar), edns=edns, soa=",".join(soa), question=question)


def ask(host: str, port: int, shape: Shape, timeout: float = 2.0) -> bytes | None:
    """The response to one shape, or None when none comes within ``timeout`` (or TCP closes)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not shape.tcp:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(shape.wire, (host, port))
            try:
                return s.recv(65535)
            except TimeoutError:
                return None
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(shape.wire)) + shape.wire)
        buf = b""
        try:
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    return None
                buf += chunk
        except (TimeoutError, ConnectionResetError):
            return None
        return buf[2:2 + struct.unpack("!H", buf[:2])[0]]


def shapes(marker: str) -> list[Shape]:
    """The shapes the differential test sends; ``marker`` is the marker TXT name of ``api.<zone> A``."""
    z = ZONE
    names = {"apex": z, "api": "api." + z, "all": "all." + z, "leaf": "x.y.deep." + z, "ent": "y.deep." + z,
             "nx": "nope." + z, "nxbelow": "nope.api." + z, "marker": marker, "ns1": "ns1." + z,
             "out": "example.com."}
    out: list[Shape] = []

    def add(sid: str, wire: bytes, tcp: bool = False) -> None:
        out.append(Shape(sid, wire, tcp))

    # every name x the types that matter, plain UDP, RD clear
    for nid, name in names.items():
        for t in ("A", "AAAA", "TXT", "SOA", "NS", "MX", "ANY"):
            add(f"{nid}-{t}", build(name, t))
    # RD and the other header bits a client may set
    add("api-A-rd", build(names["api"], "A", flags=RD))
    add("api-A-cd", build(names["api"], "A", flags=CD))
    add("api-A-ad", build(names["api"], "A", flags=AD))
    add("api-A-rd-cd-ad", build(names["api"], "A", flags=RD | CD | AD))
    add("api-A-tc", build(names["api"], "A", flags=TC))
    add("api-A-aa", build(names["api"], "A", flags=AA))
    add("api-A-ra", build(names["api"], "A", flags=RA))
    add("api-A-z", build(names["api"], "A", flags=Z))
    add("api-A-qr", build(names["api"], "A", flags=QR))
    add("nx-A-rd-cd", build(names["nx"], "A", flags=RD | CD))
    add("out-A-rd-cd", build(names["out"], "A", flags=RD | CD))
    add("api-A-0x20", build("ApI.dEmO.TeSt.", "A"))
    add("nx-A-0x20", build("NoPe.DEMO.test.", "A"))
    add("apex-SOA-0x20", build("DEMO.TEST.", "SOA"))
    # EDNS: version, DO, payload, flags, options
    e0 = Edns()
    edo = Edns(flags=DO)
    for nid in ("api", "nx", "ent", "out", "apex", "marker"):
        add(f"{nid}-A-edns", build(names[nid], "A", edns=e0))
        add(f"{nid}-A-edns-do-cd", build(names[nid], "A", flags=RD | CD, edns=edo))
    for nid in ("api", "nx", "ent", "apex"):
        add(f"{nid}-ANY-edns-do-cd", build(names[nid], "ANY", flags=CD, edns=edo))
    add("api-A-edns-zflag", build(names["api"], "A", edns=Edns(flags=0x4000)))
    for payload in (0, 511, 512, 1232, 4096, 65535):
        add(f"big-AAAA-payload-{payload}", build("big." + z, "AAAA", edns=Edns(payload=payload)))
    add("big-AAAA", build("big." + z, "AAAA"))
    add("big-AAAA-tcp", build("big." + z, "AAAA"), tcp=True)
    add("big-AAAA-edns-tcp", build("big." + z, "AAAA", edns=edo), tcp=True)
    add("big-ANY-edns", build("big." + z, "ANY", edns=edo))
    add("edns1-api-A", build(names["api"], "A", edns=Edns(version=1)))
    add("edns1-api-A-do-cd", build(names["api"], "A", flags=RD | CD, edns=Edns(version=1, flags=DO)))
    add("edns255-nx-A", build(names["nx"], "A", edns=Edns(version=255)))
    add("edns1-out-A", build(names["out"], "A", edns=Edns(version=1)))
    add("edns1-api-A-tcp", build(names["api"], "A", edns=Edns(version=1, flags=DO)), tcp=True)
    cookie = bytes(range(1, 9))
    add("cookie-client", build(names["api"], "A", edns=Edns(options=((OPT_COOKIE, cookie),))))
    add("cookie-client-server", build(names["api"], "A", edns=Edns(options=((OPT_COOKIE, cookie * 3),))))
    for length in (0, 5, 7, 9, 15, 41):
        add(f"cookie-len-{length}", build(names["api"], "A", flags=RD,
                                          edns=Edns(flags=DO, options=((OPT_COOKIE, bytes(length)),))))
    add("nsid", build(names["api"], "A", edns=Edns(options=((OPT_NSID, b""),))))
    add("expire", build(names["api"], "A", edns=Edns(options=((OPT_EXPIRE, b""),))))
    add("padding", build(names["api"], "A", edns=Edns(options=((OPT_PADDING, bytes(16)),))))
    add("unknown-option", build(names["api"], "A", edns=Edns(options=((OPT_UNKNOWN, b"x"),))))
    add("unknown-option-edns1", build(names["api"], "A", edns=Edns(version=1, options=((OPT_UNKNOWN, b"x"),))))
    add("cookie-nsid-unknown", build(names["nx"], "A", edns=Edns(options=(
        (OPT_NSID, b""), (OPT_COOKIE, cookie), (OPT_UNKNOWN, b"")))))
    # malformed OPT records
    add("opt-option-past-end", build(names["api"], "A", flags=RD, edns=Edns(flags=DO, raw_rdata=b"\x00\x0a\x00\x08ab")))
    add("opt-option-header-cut", build(names["api"], "A", edns=Edns(raw_rdata=b"\x00\x0a\x00")))
    add("opt-owner-not-root", build(names["api"], "A", edns=Edns(owner=b"\x01a\x00")))
    add("opt-twice", build(names["api"], "A", edns=Edns(), extra_opt=1))
    add("opt-ext-rcode", build(names["api"], "A", edns=Edns(ext_rcode=1)))
    # classes
    for nid in ("api", "apex", "out"):
        add(f"{nid}-A-CH", build(names[nid], "A", 3))
    add("version.bind-CH", build("version.bind.", "TXT", 3))
    add("api-A-CH-edns-do", build(names["api"], "A", 3, flags=RD | CD, edns=edo))
    add("api-A-HS", build(names["api"], "A", 4))
    add("api-A-class-NONE", build(names["api"], "A", 254))
    add("api-A-class-ANY", build(names["api"], "A", 255))
    add("api-A-class-0", build(names["api"], "A", 0))
    add("api-A-CH-tcp", build(names["api"], "A", 3), tcp=True)
    # opcodes (NOTIFY and UPDATE are left to the zone-transfer work)
    for opcode in (1, 2, 3, 6, 15):
        add(f"opcode-{opcode}-rd", build(names["api"], "A", opcode=opcode, flags=RD))
        add(f"opcode-{opcode}-edns-do", build(names["api"], "A", opcode=opcode, flags=CD, edns=edo))
    add("opcode-2-tcp", build(names["api"], "A", opcode=2, flags=RD), tcp=True)
    # question counts
    add("qdcount-0", build(qdcount=0, questions=0))
    add("qdcount-0-edns", build(qdcount=0, questions=0, edns=edo))
    add("qdcount-2", build(names["api"], "A", questions=2))
    add("qdcount-2-edns-do-cd", build(names["api"], "A", questions=2, flags=RD | CD, edns=edo))
    add("qdcount-2-says-1-present", build(names["api"], "A", qdcount=2))
    add("qdcount-1-two-present", build(names["api"], "A", questions=2, qdcount=1))
    add("answer-in-query", build(names["api"], "A", ancount=1,
                                 answer=name_to_wire(names["api"]) + struct.pack("!HHIH", 1, 1, 0, 4) + bytes(4)))
    # query types with special meanings
    for t in ("OPT", "TKEY", "TSIG", "MAILB", "MAILA", "TYPE0", "TYPE128", "TYPE65280", "RRSIG", "DNSKEY", "DS",
              "CAA", "SRV", "HINFO", "CNAME"):
        add(f"api-{t}", build(names["api"], t))
    add("api-OPT-edns-do", build(names["api"], "OPT", flags=RD | CD, edns=edo))
    add("apex-OPT", build(z, "OPT"))
    # TCP
    for nid, t in (("api", "A"), ("nx", "A"), ("apex", "ANY"), ("api", "ANY"), ("ent", "A"), ("out", "A")):
        add(f"{nid}-{t}-tcp", build(names[nid], t), tcp=True)
        add(f"{nid}-{t}-edns-do-tcp", build(names[nid], t, flags=RD | CD, edns=edo), tcp=True)
    return out
