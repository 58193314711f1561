"""The record-set codec writes exactly what json.dumps would, and reads it back."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from dnsplane.codec import RecordSetCodec
from dnsplane.model import Member, RecordSet

ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
members = st.lists(st.builds(Member, ids, st.lists(ids, min_size=1, max_size=3).map(tuple), st.integers(0, 1000)),
                   max_size=5, unique_by=lambda m: m.target_id)


@given(st.integers(1, 86_400), members, st.sampled_from(["weighted", "all"]))
def test_encode_is_compact_json_and_round_trips(ttl: int, ms: list[Member], answer: str) -> None:
    rs = RecordSet.of(ttl, ms, answer)  # type: ignore[arg-type]
    text = RecordSetCodec().encode(rs)
    assert text == json.dumps(rs.to_json(), separators=(",", ":"))
    assert RecordSetCodec().decode(text) == rs


def test_cache_is_bounded() -> None:
    codec = RecordSetCodec(limit=4)
    for i in range(10):
        codec.encode(RecordSet.of(30 + i, [Member("a", ("192.0.2.1",), 1)]))
    assert len(codec._parsed) <= 4
