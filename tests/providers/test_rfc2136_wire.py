"""The RFC 2136 provider's hand-written wire format and TSIG, checked against dnspython (the reference).

``wire.UpdateBuilder``/``encode_write`` and ``tsig.Signer`` build and verify bytes by hand for
speed. On generated writes (endpoints, addresses, TTLs, markers, prerequisites from an absent or
a present marker and from absent or present records, batches of one to many
endpoints, every HMAC algorithm):

1. the hand-built, hand-signed UPDATE parses with ``dns.message.from_wire(keyring=...)`` — which
   verifies the TSIG with dnspython's own code — into the same zone, prerequisite and update
   sections (as sets of RRsets, TTLs included) and the same RR counts as the message that
   ``dns.update.UpdateMessage`` builds for the same writes;
2. a response that dnspython signs (``make_response`` + ``to_wire``) to a hand-signed query is
   parsed by ``wire.parse_response`` into the answers dnspython sees and verifies with
   ``Signer.verify``; a response with any one byte changed is never accepted by ``Signer.verify``
   when dnspython rejects it, and every change to the signed part, the MAC or the key name fails.

No server is needed.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.tsig
import dns.update
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsplane.codec import encode_records
from dnsplane.model import EndpointKey, Marker, RecordSet, Write, marker_name
from dnsplane.providers.rfc2136.marker import RawState, norm, pseudo, raw_state, split_txt, txt_rdata, txt_rdatas
from dnsplane.providers.rfc2136.tsig import Signer
from dnsplane.providers.rfc2136.wire import UpdateBuilder, encode_write, parse_response, query_body
from tests.fakes import ZONE, marker, member

ALGORITHMS = ["hmac-sha256", "hmac-sha1", "hmac-sha224", "hmac-sha384", "hmac-sha512",
              "hmac-md5.sig-alg.reg.int."]  # the wire name; a key file saying "hmac-md5" means this one
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ------------------------------------------------------------------------

label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
relative_names = st.lists(label, min_size=0, max_size=3).map(".".join)


@st.composite
def tsig_keys(draw: st.DrawFn) -> dns.tsig.Key:
    name = draw(st.lists(label, min_size=1, max_size=3).map(".".join))
    secret = base64.b64encode(draw(st.binary(min_size=8, max_size=64))).decode()
    return dns.tsig.Key(name + ".", secret, draw(st.sampled_from(ALGORITHMS)))


def addresses(rtype: str) -> st.SearchStrategy[str]:
    return st.ip_addresses(v=4 if rtype == "A" else 6).map(str)


@st.composite
def record_sets(draw: st.DrawFn, rtype: str) -> RecordSet:
    n = draw(st.integers(1, 4))
    ids = draw(st.lists(label, min_size=n, max_size=n, unique=True))
    members = [member(i, *draw(st.lists(addresses(rtype), min_size=1, max_size=3)),
                      weight=draw(st.integers(0, 1000))) for i in ids]
    if not any(m.weight for m in members):
        members[0] = member(members[0].target_id, *members[0].addresses, weight=1)
    ttl = draw(st.integers(1, 86_400))
    if draw(st.booleans()):  # one address per member, weight 1: the marker carries no JSON
        return pseudo({norm(m.addresses[0]) for m in members}, ttl)
    return RecordSet.of(ttl, members, draw(st.sampled_from(["weighted", "all"])))


@st.composite
def write_and_state(draw: st.DrawFn, name: str) -> tuple[Write, RawState]:
    """A write and the state it is fenced on: no marker (expect None: also the records, none or some
    made by hand) or the marker expected (two TXT records by hand read as no marker: the records too)."""
    rtype = draw(st.sampled_from(["A", "AAAA"]))
    k = EndpointKey(name, rtype)
    new = draw(record_sets(rtype))
    write_marker = marker(draw(st.integers(1, 2**40)), new)
    if draw(st.booleans()):  # first write: "RRset does not exist" on the marker TXT
        served = draw(st.sampled_from([None, new])) if draw(st.booleans()) else None  # records made by hand?
        addrs = frozenset(norm(a) for a in served.addresses()) if served else frozenset()
        return Write(k, None, new, write_marker, served), raw_state(None, addrs, served.ttl if served else 0)
    old = draw(st.sampled_from([new]) | record_sets(rtype))
    expect = draw(st.sampled_from([write_marker, marker(draw(st.integers(1, 2**40)), old)]))
    txt = txt_rdatas(expect, old)
    if draw(st.booleans()):  # the layout written before marker_txt: one record, the marker then the JSON
        txt = (old_layout(expect, old),)
    if draw(st.integers(0, 9)) == 0:  # a second TXT added by hand: the prerequisite names both
        txt = tuple(sorted({*txt, txt_rdata([b"hand", b"made"])}))
    addrs = frozenset(norm(a) for a in old.addresses())
    return Write(k, expect, new, write_marker, old), raw_state(txt, addrs, old.ttl)


def old_layout(m: Marker, records: RecordSet) -> bytes:
    """The marker TXT record the RFC 2136 provider wrote before ``marker_txt``: the marker, then the JSON
    in strings of 255 bytes."""
    text = encode_records(records).encode()
    return txt_rdata([m.to_text().encode(), *(text[i : i + 255] for i in range(0, len(text), 255))])


@st.composite
def batches(draw: st.DrawFn, max_size: int = 12) -> list[tuple[Write, RawState]]:
    rels = draw(st.lists(relative_names, min_size=1, max_size=max_size, unique=True))
    return [draw(write_and_state((r + "." + ZONE) if r else ZONE)) for r in rels]


# -- the reference: dnspython's builder ------------------------------------------------------


def reference_update(items: list[tuple[Write, RawState]]) -> dns.update.UpdateMessage:
    """What ``dns.update.UpdateMessage`` builds for the writes (the same decisions, its own encoding)."""
    u = dns.update.UpdateMessage(ZONE, id=1)
    for w, state in items:
        mname = marker_name(w.key)
        if state.txt is None:
            u.absent(mname, "TXT")
        else:
            rdatas = [dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.TXT, r, 0, len(r)) for r in state.txt]
            u.present(mname, dns.rdataset.from_rdata_list(0, rdatas))
        rtype = dns.rdatatype.from_text(w.key.rtype)  # the records seen are a prerequisite too (``Write``)
        if not state.addresses:
            u.absent(w.key.name, w.key.rtype)
        else:
            seen = [dns.rdata.from_text(dns.rdataclass.IN, rtype, a) for a in state.addresses]
            u.present(w.key.name, dns.rdataset.from_rdata_list(0, seen))
        u.absent(w.key.name, "CNAME")  # RFC 2136 §2.4.3: a CNAME would make the server ignore the records
        u.absent(mname, "CNAME")
        u.absent(w.key.name, "DNAME")  # it would hide the marker below the name
        if w.key.name != ZONE:
            u.absent(w.key.name, "NS")  # a delegation: the records would not be served
        new_addresses = {norm(a) for a in w.records.addresses()}
        if new_addresses != state.addresses or w.records.ttl != state.ttl:
            u.delete(w.key.name, w.key.rtype)
            rtype = dns.rdatatype.from_text(w.key.rtype)
            rdatas = [dns.rdata.from_text(dns.rdataclass.IN, rtype, a) for a in new_addresses]
            if rdatas:
                u.add(w.key.name, w.records.ttl, *rdatas)
        new_txt = [dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, split_txt(r))
                   for r in txt_rdatas(w.marker, w.records)]
        if state.txt != tuple(sorted(r.to_wire() for r in new_txt)):
            u.delete(mname, "TXT")
            u.add(mname, 60, *new_txt)
    return u


def rrsets(section: list[dns.rrset.RRset]) -> set[tuple[object, ...]]:
    return {(r.name.canonicalize(), r.rdclass, r.rdtype, r.deleting, r.ttl,
             frozenset(rd.to_digestable() for rd in r)) for r in section}  # fmt: skip


def counts(wire: bytes) -> tuple[int, int, int, int]:
    return struct.unpack_from("!HHHH", wire, 4)


def hand_built(items: list[tuple[Write, RawState]], signer: Signer, msg_id: int) -> tuple[bytes, bytes]:
    b = UpdateBuilder(dns.name.from_text(ZONE).to_wire())
    for w, state in items:
        encode_write(w, state, ZONE, b)
    return signer.sign(b.body(msg_id), msg_id)


def assert_same_update(wire: bytes, key: dns.tsig.Key, items: list[tuple[Write, RawState]]) -> None:
    parsed = dns.message.from_wire(wire, keyring=key)  # verifies the TSIG: raises if dnspython disagrees
    assert isinstance(parsed, dns.update.UpdateMessage)
    assert parsed.had_tsig and parsed.keyname == key.name
    ref = dns.message.from_wire(reference_update(items).to_wire())  # parsed too: the same normal form
    assert parsed.opcode() == ref.opcode() and parsed.flags == ref.flags
    assert rrsets(parsed.zone) == rrsets(ref.zone)
    assert rrsets(parsed.prerequisite) == rrsets(ref.prerequisite)
    assert rrsets(parsed.update) == rrsets(ref.update)
    # the same number of RRs (a duplicate RR would vanish when parsed into RRsets); +1: the TSIG
    assert counts(wire) == (*counts(ref.to_wire())[:3], 1)


# -- 1. UPDATE messages ---------------------------------------------------------------------


@EXAMPLES
@given(items=batches(), key=tsig_keys(), msg_id=st.integers(1, 0xFFFF))
def test_hand_built_updates_are_what_dnspython_builds(
    items: list[tuple[Write, RawState]], key: dns.tsig.Key, msg_id: int
) -> None:
    wire, _ = hand_built(items, Signer(key), msg_id)
    assert_same_update(wire, key, items)


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "hmac-sha512"])
def test_large_batches_past_the_compression_limit_agree(algorithm: str) -> None:
    """Past 16 KiB of prerequisites, owner names can no longer point into them: written in full."""
    key = dns.tsig.Key("dnsplane.", base64.b64encode(b"s" * 32).decode(), algorithm)
    items = []
    for i in range(125):  # fits one message with every prerequisite (record, marker, two "no CNAME")
        rs_ = RecordSet.of(300, [member(f"t{j}", f"10.{j}.{i // 250}.{i % 250}", weight=j + 2) for j in range(2)])
        old = RecordSet.of(60, [member("old", f"192.0.2.{i % 250}")])
        k = EndpointKey(f"host-{i}.pool.{ZONE}", "A")
        if i % 3 == 0:  # records left without a marker, repaired: a prerequisite on them too
            served = pseudo({f"192.0.2.{i % 250}", f"198.51.100.{i % 250}"}, 60)
            items.append((Write(k, None, rs_, marker(2, rs_), served),
                          raw_state(None, frozenset(served.addresses()), 60)))
            continue
        items.append((Write(k, marker(1, old), rs_, marker(2, rs_), old),
                      raw_state(txt_rdatas(marker(1, old), old), frozenset({f"192.0.2.{i % 250}"}),
                               60)))
    wire, _ = hand_built(items, Signer(key), 7)
    b = UpdateBuilder(dns.name.from_text(ZONE).to_wire())
    for w, state in items:
        encode_write(w, state, ZONE, b)
    assert len(b.prereq) > 0x3FFF + 3_000  # the last endpoints' owners cannot point into the prerequisites
    assert len(wire) < 65_535  # one message, as the provider sends it
    assert_same_update(wire, key, items)


# -- 2. queries and responses ---------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """A query signed here and its response signed by dnspython; built outside the strategy
    (dnspython draws message ids from ``random``, which hypothesis forbids inside strategies)."""

    key: dns.tsig.Key
    qname: dns.name.Name
    qtype: dns.rdatatype.RdataType
    msg_id: int
    nxdomain: bool
    rdatas: tuple[dns.rdata.Rdata, ...]
    ttl: int

    def run(self) -> tuple[bytes, bytes]:
        """(the query's MAC, the response's wire)."""
        query, mac = Signer(self.key).sign(query_body(self.qname.to_wire(), self.qtype, self.msg_id), self.msg_id)
        q = dns.message.from_wire(query, keyring=self.key)  # dnspython verifies the hand-signed query
        resp = dns.message.make_response(q)  # signed by dnspython under the query's key and MAC
        if self.nxdomain:
            resp.set_rcode(dns.rcode.NXDOMAIN)
        elif self.rdatas:
            resp.answer.append(dns.rrset.from_rdata_list(self.qname, self.ttl, self.rdatas))
        return mac, resp.to_wire()


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    rel = draw(relative_names)
    rtype = draw(st.sampled_from(["A", "AAAA", "TXT"]))
    qtype = dns.rdatatype.from_text(rtype)
    if rtype == "TXT":
        values = draw(st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=3), max_size=3))
        rdatas = [dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, qtype, v) for v in values]
    else:
        texts = draw(st.lists(addresses(rtype), max_size=4))
        rdatas = [dns.rdata.from_text(dns.rdataclass.IN, qtype, a) for a in texts]
    return Exchange(draw(tsig_keys()), dns.name.from_text(rel + "." + ZONE if rel else ZONE), qtype,
                    draw(st.integers(1, 0xFFFF)), draw(st.booleans()), tuple(rdatas), draw(st.integers(0, 86_400)))


def dnspython_accepts(wire: bytes, key: dns.tsig.Key, mac: bytes) -> bool:
    try:
        dns.message.from_wire(wire, keyring=key, request_mac=mac)
    except Exception:
        return False
    return True


def hand_accepts(wire: bytes, key: dns.tsig.Key, mac: bytes, qtype: int) -> bool:
    try:
        _, tsig_at, rdata_at = parse_response(wire, qtype)
        Signer(key).verify(wire, tsig_at, rdata_at, mac)
    except Exception:
        return False
    return True


@EXAMPLES
@given(exchange=exchanges())
def test_responses_signed_by_dnspython_verify_and_parse_alike(exchange: Exchange) -> None:
    key, qtype = exchange.key, exchange.qtype
    mac, wire = exchange.run()
    resp, tsig_at, rdata_at = parse_response(wire, qtype)
    Signer(key).verify(wire, tsig_at, rdata_at, mac)
    ref = dns.message.from_wire(wire, keyring=key, request_mac=mac)
    assert resp.rcode == ref.rcode()
    answers = [rd.to_wire() for rrset in ref.answer for rd in rrset]
    assert sorted(resp.rdatas) == sorted(answers)
    assert resp.ttl == (ref.answer[0].ttl if ref.answer else 0)
    with pytest.raises(dns.tsig.BadSignature):  # another request's MAC: not the response to this query
        Signer(key).verify(wire, tsig_at, rdata_at, bytes(len(mac)))


@settings(max_examples=100, deadline=None)
@given(exchange=exchanges(), flip=st.sampled_from([0x01, 0x20, 0x80, 0xFF]) | st.integers(1, 255))
def test_a_tampered_response_never_verifies_where_dnspython_refuses(exchange: Exchange, flip: int) -> None:
    """Every byte of the response in turn, changed by ``flip``."""
    key, qtype = exchange.key, exchange.qtype
    mac, wire = exchange.run()
    _, tsig_at, rdata_at = parse_response(wire, qtype)
    alg_end = rdata_at + len(key.algorithm.to_wire())
    mac_end = alg_end + 10 + len(mac)  # time signed (6), fudge (2), MAC size (2), MAC
    for at in range(len(wire)):
        tampered = wire[:at] + bytes([wire[at] ^ flip]) + wire[at + 1 :]
        case_only = tampered[at : at + 1].lower() == wire[at : at + 1].lower()  # names compare ignoring case
        owner = tsig_at <= at < rdata_at - 10
        # the message but its ID (the MAC covers the original ID instead), the TSIG owner (the key name) and
        # type, algorithm, time, fudge, MAC and original ID are all covered
        checked = 2 <= at < tsig_at or (owner and not case_only) or rdata_at - 10 <= at < rdata_at - 8 \
            or rdata_at <= at < mac_end + 2
        hand = hand_accepts(tampered, key, mac, qtype)
        if checked:
            assert not hand, f"byte {at} (TSIG RR at {tsig_at}) changed ^{flip:#x}, still verified"
        if hand:
            assert dnspython_accepts(tampered, key, mac), f"byte {at} ^{flip:#x}: accepted here, refused by dnspython"
