"""The one marker TXT layout (dnsplane/providers/marker_txt.py): written the same by every provider, read
back whatever the order of its records, and the layout the RFC 2136 provider wrote before still read."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from dnsplane.codec import encode_records
from dnsplane.model import CORRUPT_GENERATION, Generation, Marker, Member, RecordSet
from dnsplane.providers import marker_txt
from dnsplane.providers.rfc2136.marker import observe, split_txt, txt_rdata, txt_rdatas
from dnsplane.providers.route53.encoding import marker_values, txt_strings
from tests.fakes import marker, member, rs

ids = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=70)
members = st.lists(st.builds(Member, ids, st.just(("192.0.2.1",)), st.integers(0, 1000)),
                   min_size=1, max_size=60, unique_by=lambda m: m.target_id)


def quoted(text: str) -> int:
    return len(text) + 2 + text.count('"') + text.count("\\")


@given(members, st.integers(1, 2**40), st.randoms())
def test_the_layout_reads_back_whatever_the_order_of_its_records(ms: list[Member], g: int, rnd: random.Random) -> None:
    records = RecordSet.of(30, ms)
    m = Marker.after(None, Generation(g), records.digest, "dp-one")
    layout = marker_txt.layout(m, records)
    assert layout[0] == [m.to_text()]
    assert all(quoted(s) <= marker_txt.MAX_STRING + 2 for r in layout for s in r)
    assert all(sum(quoted(s) + 1 for s in r) <= marker_txt.MAX_VALUE for r in layout)
    assert "".join(s for r in layout[1:] for s in r[1:]) == encode_records(records)
    rnd.shuffle(layout)
    assert marker_txt.read(layout) == (m, records)


def test_route53_and_rfc2136_write_the_same_layout() -> None:
    wide = RecordSet.of(30, [Member(f"t-{i:03d}-" + "x" * 40, (f"192.0.2.{i + 1}",), i) for i in range(120)])
    m = marker(3, wide)
    layout = marker_txt.layout(m, wide)
    assert len(layout) > 2, "a record set this wide spans several records"
    assert [txt_strings(v) for v in marker_values(m, wide)] == layout
    assert sorted([s.decode() for s in split_txt(r)] for r in txt_rdatas(m, wide)) == sorted(layout)


def test_the_rfc2136_layout_written_before_is_read() -> None:
    """One TXT record: the marker, then the JSON in strings of 255 bytes (what RFC 2136 wrote before)."""
    wide = rs(*(member(f"target-with-a-long-id-{i:02d}", f"192.0.2.{i + 1}", weight=i + 1) for i in range(8)))
    m = marker(4, wide)
    text = encode_records(wide)
    old = [m.to_text(), *(text[i : i + 255] for i in range(0, len(text), 255))]
    assert len(old) > 2
    assert marker_txt.read([old]) == (m, wide)
    assert marker_txt.read([[m.to_text(), "{not json"]]) == (m, None)
    assert marker_txt.read([["dnsplane -", text]]) == (None, wide)  # a hand edit without a marker
    addresses = frozenset(wide.addresses())
    assert observe((txt_rdata([s.encode() for s in old]),), addresses, wide.ttl).marker == m
    assert observe((txt_rdata([s.encode() for s in old]),), addresses, wide.ttl).records == wide
    assert observe(txt_rdatas(m, wide), addresses, wide.ttl) == observe(
        (txt_rdata([s.encode() for s in old]),), addresses, wide.ttl)


def test_what_is_not_the_layout() -> None:
    one = rs(member("lb1", "192.0.2.1"))
    m = marker(1, one)
    layout = marker_txt.layout(m, one)
    assert marker_txt.read([]) == (None, None)
    assert marker_txt.read([["v=spf1 -all"], *layout]) == (m, one), "a record of someone else is ignored"
    assert marker_txt.read([layout[0]]) == (m, None), "a marker without its record set"
    assert marker_txt.read(layout[1:]) == (None, one)
    assert marker_txt.read([layout[0], ["dnsplane-rs 1", *layout[1][1:]]]) == (m, None), "a part missing"
    assert marker_txt.read([layout[0], ["dnsplane-rs x", "{}"]]) == (m, None)
    garbage = marker_txt.read([["dnsplane g=99999999999999999 d=ab"]])[0]
    assert garbage is not None and garbage.generation == CORRUPT_GENERATION
    later = marker(2, one)
    assert marker_txt.read([layout[0], [later.to_text()]]) == (later, None), "several markers: the last read"


def test_a_part_edited_by_hand_loses_the_record_set_never_the_marker() -> None:
    """Records come back in any order: a garbled part header read before the marker dropped the
    marker too (the endpoint then looked foreign, records without a marker); JSON a person wrote
    1e400 into, or nested thousands deep, raised OverflowError or RecursionError out of the read."""
    one = rs(member("lb1", "192.0.2.1"))
    m = marker(1, one)
    layout = marker_txt.layout(m, one)
    assert marker_txt.read([["dnsplane-rs x", "{}"], *layout]) == (m, None)
    assert marker_txt.read([["dnsplane-rs "], *layout]) == (m, None)
    for text in ('{"ttl":1e400,"members":[]}', "[" * 5000 + "]" * 5000):
        assert marker_txt.read([layout[0], ["dnsplane-rs 0", text]]) == (m, None)
