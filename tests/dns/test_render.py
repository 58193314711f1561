"""``render_endpoint`` writes its responses' bytes directly (an applied batch renders every endpoint of it
on the server's event loop); they must be exactly what dnspython renders for the same messages, and it
must refuse what dnspython refuses."""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsplane.dns.render import MARKER_MAX_TTL, MAX_ROTATIONS, Answer, Slot, name_wire, render_endpoint, render_response
from dnsplane.model import EndpointKey, Generation, Marker, Member, Observed, RecordSet, marker_name


def reference(key: EndpointKey, observed: Observed) -> dict[Slot, Answer]:
    """The same answers built from dnspython messages (``render_response``), as they were before."""
    out: dict[Slot, Answer] = {}
    rs = observed.records
    live = [m for m in rs.live_members() if m.addresses] if rs is not None else []
    if rs is not None and live:
        rdtype = dns.rdatatype.from_text(key.rtype)
        qname = dns.name.from_text(key.name)
        groups = [(rs.addresses(), 1)] if rs.answer == "all" else [(list(m.addresses), m.weight) for m in live]
        wires, weights = [], []
        for addrs, weight in groups:
            n = min(len(addrs), MAX_ROTATIONS)
            for i in range(n):
                rrset = dns.rrset.from_text_list(qname, rs.ttl, dns.rdataclass.IN, rdtype, addrs[i:] + addrs[:i])
                wires.append(render_response(qname, rdtype, [rrset]))
                weights.append(weight * 840 // n)
        out[(name_wire(qname), int(rdtype))] = Answer(wires, weights)
    if observed.marker is not None:
        ttl = max(0, min(MARKER_MAX_TTL, rs.ttl)) if rs is not None else MARKER_MAX_TTL
        mname = dns.name.from_text(marker_name(key))
        txt = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [observed.marker.to_text().encode()])
        out[(name_wire(mname), int(dns.rdatatype.TXT))] = Answer(
            [render_response(mname, dns.rdatatype.TXT, [dns.rrset.from_rdata(mname, ttl, txt)])])
    return out


def same(a: dict[Slot, Answer], b: dict[Slot, Answer]) -> None:
    assert a.keys() == b.keys()
    for slot in a:
        assert a[slot].plain == b[slot].plain, slot
        assert (a[slot].cum, a[slot].total) == (b[slot].cum, b[slot].total), slot


label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
v4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
v6 = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))


@st.composite
def endpoints(draw: st.DrawFn) -> tuple[EndpointKey, Observed]:
    rtype = draw(st.sampled_from(["A", "AAAA"]))
    name = ".".join(draw(st.lists(label, min_size=1, max_size=4))) + ".demo.test."
    address = v4 if rtype == "A" else v6
    members = [Member(f"t{i}", tuple(draw(st.lists(address, max_size=10))), draw(st.integers(0, 5)))
               for i in range(draw(st.integers(0, 4)))]
    for m in list(members):  # the same address twice in one member: the rdataset holds it once
        if m.addresses and draw(st.booleans()):
            members.append(Member(m.target_id + "x", m.addresses + m.addresses[:1], m.weight))
    records = RecordSet.of(draw(st.integers(0, 86_400)), members, draw(st.sampled_from(["weighted", "all"])))
    marker = Marker(Generation(draw(st.integers(1, 10**9))), records.digest,
                    draw(st.sampled_from(["", "0123456789abcdef.fedcba9876543210"])),
                    draw(st.sampled_from(["", "owner-1"])), draw(st.booleans()))
    observed = Observed(draw(st.sampled_from([records, None])), draw(st.sampled_from([marker, None])))
    return EndpointKey(name, rtype), observed


@settings(max_examples=400, deadline=None)
@given(endpoints())
def test_rendering_is_dnspythons(case: tuple[EndpointKey, Observed]) -> None:
    key, observed = case
    same(render_endpoint(key, observed), reference(key, observed))


def test_rendering_of_a_weighted_pair_with_a_marker() -> None:
    """The common case, fixed (the generated cases above may rarely draw two live members)."""
    records = RecordSet.of(30, [Member("a", ("192.0.2.1", "192.0.2.2"), 2), Member("b", ("198.51.100.1",), 1)])
    observed = Observed(records, Marker(Generation(7), records.digest))
    key = EndpointKey("api.demo.test.", "A")
    answers = render_endpoint(key, observed)
    same(answers, reference(key, observed))
    assert len(answers[(name_wire("api.demo.test."), int(dns.rdatatype.A))].plain) == 3  # two rotations, one


@pytest.mark.parametrize(("rtype", "address"), [("A", "2001:db8::1"), ("AAAA", "192.0.2.1"), ("A", "192.0.2.01"),
                                                ("A", "192.0.2"), ("AAAA", "2001:db8:::1")])
def test_an_address_dnspython_refuses_is_refused(rtype: str, address: str) -> None:
    observed = Observed(RecordSet.of(30, [Member("a", (address,), 1)]), None)
    key = EndpointKey("api.demo.test.", rtype)
    with pytest.raises(dns.exception.DNSException):
        reference(key, observed)
    with pytest.raises((dns.exception.DNSException, ValueError)):
        render_endpoint(key, observed)


@pytest.mark.parametrize("with_marker", [False, True])
def test_a_name_too_long_is_refused(with_marker: bool) -> None:
    """255 bytes of wire at most: a name of 250 fits, its marker's name (12 more) does not."""
    records = RecordSet.of(30, [Member("a", ("192.0.2.1",), 1)])
    observed = Observed(records, Marker(Generation(1), records.digest) if with_marker else None)
    fits = EndpointKey(".".join(["a" * 60] * 4) + ".test.", "A")
    too_long = EndpointKey(".".join(["a" * 60] * 5) + ".test.", "A")
    for key in (too_long, fits) if with_marker else (too_long,):
        with pytest.raises(dns.exception.DNSException):
            reference(key, observed)
        with pytest.raises(dns.exception.DNSException):
            render_endpoint(key, observed)
    if not with_marker:
        same(render_endpoint(fits, observed), reference(fits, observed))
