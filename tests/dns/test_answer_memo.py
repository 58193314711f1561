"""The responder's memo of answers by query bytes (issue 11: qps): it answers exactly as the tables do.

A responder with the memo and one without it (``_memoise`` a no-op), both seeded alike, are given the
same sequence of queries and table changes; every response must be byte for byte the same. Both draw
one random number per weighted answer, so even the weighted picks agree; a memo that outlived a change
(a forgotten ``forget``) answers the old records or the old SOA serial and fails the comparison.
"""

from __future__ import annotations

import random
from typing import Any

import dns.message
import dns.rdatatype
from hypothesis import given, settings
from hypothesis import strategies as st

import dnsplane.dns.responder as responder_module
from dnsplane.dns.responder import Responder
from dnsplane.model import EndpointKey, Generation, Marker, Member, Observed, RecordSet

ZONE = "memo.test."
NAMES = [f"n{i}.{ZONE}" for i in range(4)] + [f"deep.n0.{ZONE}"]
QTYPES = ["A", "AAAA", "TXT", "SOA", "NS"]


def observed(i: int, members: int, addrs: int, weight_base: int) -> Observed:
    rs = RecordSet.of(
        30 + i,
        [
            Member(
                f"lb-{m}",
                tuple(f"192.0.2.{(i * 7 + m * 3 + a) % 250 + 1}" for a in range(addrs * (m + 1))),
                weight_base + m,
            )
            for m in range(members)
        ],
    )
    return Observed(rs, Marker.after(None, Generation(i + 1), rs.digest))


def query(name: str, qtype: str, edns: int, rd: bool, upper: bool, qid: int) -> bytes:
    q = dns.message.make_query(
        name.upper() if upper else name,
        dns.rdatatype.from_text(qtype),
        use_edns=edns if edns >= 0 else False,
        want_dnssec=edns == 1,
        payload=512 if edns == 0 else 1232,
    )
    q.id = qid
    if not rd:
        q.flags &= ~dns.flags.RD
    return q.to_wire()


queries = st.tuples(
    st.just("q"),
    st.sampled_from([*NAMES, f"missing.{ZONE}", "elsewhere.example."]),
    st.sampled_from(QTYPES),
    st.integers(-1, 1),  # no EDNS, EDNS with a 512-byte payload, EDNS with DO
    st.booleans(),
    st.booleans(),
    st.integers(0, 0xFFFF),
)
changes = st.tuples(
    st.just("set"), st.integers(0, len(NAMES) - 1), st.integers(1, 4), st.integers(1, 15), st.integers(1, 5)
)
removals = st.tuples(st.just("remove"), st.integers(0, len(NAMES) - 1))
bumps = st.tuples(st.just("bump"))


def pair() -> tuple[Responder, Responder]:
    with_memo, without = Responder(random.Random(11)), Responder(random.Random(11))
    without._memoise = lambda key, entry: None  # type: ignore[method-assign]
    for r in (with_memo, without):
        table = r.add_zone(ZONE, 5)
        for i, name in enumerate(NAMES):
            table.set(EndpointKey(name, "A"), observed(i, 2, 1, 10))
    return with_memo, without


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(queries, queries, queries, changes, removals, bumps), min_size=1, max_size=60))
def test_memoised_answers_are_the_tables_answers_through_every_change(ops: list[tuple[Any, ...]]) -> None:
    with_memo, without = pair()
    for op in ops:
        if op[0] == "q":
            _, name, qtype, edns, rd, upper, qid = op
            wire = query(name, qtype, edns, rd, upper, qid)
            for _ in range(2):  # the second is answered from the memo when the first could be memoised
                assert with_memo.handle(wire, True) == without.handle(wire, True), op
        else:
            for r in (with_memo, without):
                table = r.zones[next(iter(r.zones))]
                if op[0] == "set":
                    _, i, members, addrs, base = op
                    table.set(EndpointKey(NAMES[i], "A"), observed(i, members, addrs, base))
                elif op[0] == "remove":
                    table.remove(EndpointKey(NAMES[op[1]], "A"))
                else:
                    table.bump_serial()
    assert with_memo.stats.responses == without.stats.responses
    assert with_memo.stats.truncated == without.stats.truncated


def test_repeated_queries_are_answered_from_the_memo_and_weights_hold() -> None:
    r = Responder(random.Random(5))
    table = r.add_zone(ZONE, 1)
    rs = RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 1), Member("lb-2", ("192.0.2.2",), 3)])
    table.set(EndpointKey(NAMES[0], "A"), Observed(rs, None))
    wire = query(NAMES[0], "A", -1, True, False, 1)
    picks = {"192.0.2.1": 0, "192.0.2.2": 0}
    for _ in range(4000):
        resp = dns.message.from_wire(r.handle(wire, True) or b"")
        picks[resp.answer[0][0].address] += 1
    assert r.stats.memo_hits == 3999
    assert 0.2 < picks["192.0.2.1"] / 4000 < 0.3  # weight 1 of 4: 0.25


def test_the_memo_is_bounded() -> None:
    r = Responder(random.Random(5))
    r.add_zone(ZONE, 1)
    bound = 16
    old = responder_module.MEMO_ENTRIES
    responder_module.MEMO_ENTRIES = bound
    try:
        for i in range(200):  # a flood of distinct missing names
            r.handle(query(f"x{i}.{ZONE}", "A", -1, True, False, i), True)
            assert len(r._memo) <= bound
    finally:
        responder_module.MEMO_ENTRIES = old


def test_an_answer_whose_members_truncate_differently_is_not_memoised() -> None:
    """Members of 15 to 60 addresses: over 512 bytes some are truncated, some not, depending on the draw."""
    with_memo, without = pair()
    for r in (with_memo, without):
        r.zones[next(iter(r.zones))].set(EndpointKey(NAMES[1], "A"), observed(1, 4, 15, 1))
    wire = query(NAMES[1], "A", -1, True, False, 5)
    for _ in range(50):
        assert with_memo.handle(wire, True) == without.handle(wire, True)
    assert 0 < without.stats.truncated < 50
