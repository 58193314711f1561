"""Protocol exactness of the responder, one rule per test (issue 11, part 5), each checked against what
BIND 9.18 answers on the same zone (tests/dns/test_bind_differential.py sends the same shapes to both).

The responder is pure (query bytes in, response bytes out), so these tests call ``Responder.handle``
on queries built byte by byte (``tests/dns/shapes.build``) and read the answer with the same
summary the differential test compares.
"""

from __future__ import annotations

import random

import dns.message
import dns.rdatatype
import pytest

from dnsplane.dns.responder import Responder
from dnsplane.model import EndpointKey, Generation, Marker, Member, Observed, RecordSet
from tests.dns.shapes import (
    AD,
    CD,
    DO,
    OPT_COOKIE,
    OPT_NSID,
    RD,
    ZONE,
    Edns,
    Summary,
    build,
    summarize,
)

API = "api." + ZONE


@pytest.fixture
def responder() -> Responder:
    r = Responder(random.Random(3))
    table = r.add_zone(ZONE, 7)
    for key, rs in {
        EndpointKey(API, "A"): RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 1000)]),
        EndpointKey(API, "AAAA"): RecordSet.of(30, [Member("lb-1", ("2001:db8::1",), 1000)]),
        EndpointKey("x.deep." + ZONE, "A"): RecordSet.of(30, [Member("lb-1", ("192.0.2.9",), 1000)]),
    }.items():
        table.set(key, Observed(rs, Marker.after(None, Generation(1), rs.digest)))
    return r


def ask(responder: Responder, wire: bytes, udp: bool = True) -> Summary:
    out = summarize(responder.handle(wire, udp))
    assert isinstance(out, Summary), out
    return out


EDO = Edns(flags=DO)


# --- DO and CD copied (RFC 3225 §3, RFC 4035 §3.1.6) ---------------------------------------------


COPIES = {
    "ANY": (build(API, "ANY", flags=CD, edns=EDO), 0),
    "ANY at an empty non-terminal": (build("deep." + ZONE, "ANY", flags=CD, edns=EDO), 0),
    "NXDOMAIN for ANY": (build("nope." + ZONE, "ANY", flags=CD, edns=EDO), 3),
    "BADVERS": (build(API, "A", flags=RD | CD, edns=Edns(version=1, flags=DO)), 16),
    "REFUSED for CH": (build(API, "A", 3, flags=RD | CD, edns=EDO), 5),
    "FORMERR for QTYPE OPT": (build(API, "OPT", flags=RD | CD, edns=EDO), 1),
    "FORMERR for a bad COOKIE": (build(API, "A", flags=CD, edns=Edns(flags=DO, options=((OPT_COOKIE, b"12345"),))), 1),
}


@pytest.mark.parametrize("what", list(COPIES))
def test_do_and_cd_are_copied(responder: Responder, what: str) -> None:
    wire, rcode = COPIES[what]
    r = ask(responder, wire)
    assert r.rcode == rcode, what
    assert "cd" in r.flags.split(), f"{what}: CD not copied ({r})"
    assert r.edns == (0, "do", 1232), f"{what}: DO not copied ({r})"


def test_formerr_for_two_questions_copies_rd_cd_and_keeps_the_opt(responder: Responder) -> None:
    """QDCOUNT=2 with EDNS: FORMERR, no question (as BIND), RD and CD copied, and our OPT with DO
    (RFC 6891 §6.1.1: an OPT in the request asks for one in the response; BIND leaves it out)."""
    r = ask(responder, build(API, "A", questions=2, flags=RD | CD, edns=EDO))
    assert (r.rcode, r.flags, r.counts, r.edns) == (1, "qr rd cd", (0, 0, 0, 1), (0, "do", 1232))
    assert ask(responder, build(qdcount=0, questions=0, edns=EDO)).edns == (0, "do", 1232)


# --- NOTIMP: an OPT when the query had one, no RD (RFC 6891 §7; ednscomp opcodeflg) ---------------


@pytest.mark.parametrize("opcode", [1, 2, 3, 6, 15])
def test_notimp_has_an_opt_for_an_edns_query(responder: Responder, opcode: int) -> None:
    r = ask(responder, build(API, "A", opcode=opcode, flags=CD, edns=EDO))
    assert (r.rcode, r.opcode, r.counts, r.edns) == (4, opcode, (0, 0, 0, 1), (0, "do", 1232))
    plain = ask(responder, build(API, "A", opcode=opcode))
    assert plain.edns is None and plain.counts == (0, 0, 0, 0)


@pytest.mark.parametrize("opcode", [1, 2])
def test_notimp_does_not_copy_rd_or_cd(responder: Responder, opcode: int) -> None:
    r = ask(responder, build(API, "A", opcode=opcode, flags=RD | CD | AD))
    assert (r.rcode, r.flags) == (4, "qr")


# --- malformed OPT and COOKIE lengths (RFC 6891 §6.1.1, RFC 7873 §5.2.2) ---------------------------


@pytest.mark.parametrize("length", [0, 1, 5, 7, 9, 15, 41, 64])
def test_cookie_of_a_forbidden_length_is_formerr(responder: Responder, length: int) -> None:
    r = ask(responder, build(API, "A", flags=RD, edns=Edns(options=((OPT_COOKIE, bytes(length)),))))
    assert (r.rcode, r.flags, r.counts, r.edns) == (1, "qr rd", (1, 0, 0, 1), (0, "", 1232))


@pytest.mark.parametrize("length", [8, 16, 24, 40])
def test_cookie_of_an_allowed_length_is_ignored(responder: Responder, length: int) -> None:
    r = ask(responder, build(API, "A", edns=Edns(options=((OPT_NSID, b""), (OPT_COOKIE, bytes(length))))))
    assert (r.rcode, r.counts, r.edns) == (0, (1, 1, 0, 1), (0, "", 1232))


MALFORMED = {
    "option length past the record": (Edns(flags=DO, raw_rdata=b"\x00\x0a\x00\x08ab"), 0),
    "option header cut short": (Edns(raw_rdata=b"\x00\x0a\x00"), 0),
    "OPT owned by a name other than the root": (Edns(owner=b"\x01a\x00"), 0),
    "two OPT records": (Edns(), 1),
}


@pytest.mark.parametrize("what", list(MALFORMED))
def test_malformed_opt_is_formerr_with_the_question(responder: Responder, what: str) -> None:
    """As BIND: FORMERR, the question echoed, no OPT (the query's OPT could not be read as one)."""
    edns, extra_opt = MALFORMED[what]
    wire = build(API, "A", flags=RD, edns=edns, extra_opt=extra_opt)
    r = ask(responder, wire)
    assert (r.rcode, r.flags, r.counts, r.edns) == (1, "qr rd", (1, 0, 0, 0), None), what
    assert bytes.fromhex(r.question) == wire[12:12 + len(r.question) // 2]


# --- query types and classes -----------------------------------------------------------------------


@pytest.mark.parametrize("qtype", ["OPT", "TKEY", "TSIG", "TYPE128"])
def test_meta_qtypes_are_formerr(responder: Responder, qtype: str) -> None:
    r = ask(responder, build(API, qtype))
    assert (r.rcode, r.flags, r.counts, r.soa) == (1, "qr", (1, 0, 0, 0), "")
    with_edns = ask(responder, build(API, qtype, edns=EDO))
    assert (with_edns.rcode, with_edns.edns) == (1, (0, "do", 1232))


def test_qtype_zero_is_an_ordinary_nodata(responder: Responder) -> None:
    r = ask(responder, build(API, "TYPE0"))
    assert (r.rcode, r.flags, r.counts, r.soa) == (0, "qr aa", (1, 0, 1, 0), "authority")


@pytest.mark.parametrize("qclass", [0, 254, 255])
def test_meta_qclasses_are_formerr(responder: Responder, qclass: int) -> None:
    assert ask(responder, build(API, "A", qclass)).rcode == 1


# --- ANY (RFC 8482) --------------------------------------------------------------------------------


def test_any_over_udp_is_one_rrset_over_tcp_all(responder: Responder) -> None:
    def types(udp: bool, name: str = API) -> list[int]:
        wire = responder.handle(build(name, "ANY", edns=EDO), udp)
        assert wire is not None
        return [rrset.rdtype for rrset in dns.message.from_wire(wire).answer]

    assert types(True) == [dns.rdatatype.A]
    assert sorted(types(False)) == [dns.rdatatype.A, dns.rdatatype.AAAA]
    assert types(True, ZONE) == [dns.rdatatype.SOA]
    assert sorted(types(False, ZONE)) == [dns.rdatatype.NS, dns.rdatatype.SOA]
