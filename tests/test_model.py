"""Markers: the text form and the chain token (``prev``) that names the marker a write replaced."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dnsplane.model import Generation, Marker, chain_token
from tests.fakes import member, rs

A = rs(member("lb1", "192.0.2.1"))
B = rs(member("lb2", "192.0.2.2"))


def test_text_form_with_and_without_prev() -> None:
    old = Marker(Generation(14), A.digest)
    assert old.to_text() == f"dnsplane g=14 d={A.digest}"  # no prev: the form written before tokens
    assert Marker.from_text(old.to_text()) == old
    new = Marker.after(old, Generation(15), B.digest)
    assert new.to_text() == f"dnsplane g=15 d={B.digest} p={new.prev}"
    assert Marker.from_text(new.to_text()) == new
    assert Marker.from_text(f'"{new.to_text()}"') == new  # quoted, as a TXT value may come


def test_text_that_is_not_a_marker_reads_as_none() -> None:
    for text in ("", "dnsplane -", "dnsplane g=x d=ab", "other g=1 d=ab", f"dnsplane g=1 d={A.digest} q=1",
                 f"dnsplane g=1 d={A.digest} p=ab extra"):
        assert Marker.from_text(text) is None, text


@given(g=st.integers(0, 10**12), digest=st.text("0123456789abcdef", min_size=1, max_size=16),
       prev=st.one_of(st.just(""), st.text("0123456789abcdef", min_size=12, max_size=12)))
def test_text_round_trip(g: int, digest: str, prev: str) -> None:
    m = Marker(Generation(g), digest, prev)
    assert Marker.from_text(m.to_text()) == m


def test_chain_token_is_a_short_deterministic_hash_of_the_replaced_marker() -> None:
    first = Marker.after(None, Generation(1), A.digest)
    chain, seal = first.prev.split(".")
    assert chain == chain_token(None) and len(chain) == 12 and len(seal) == 8
    int(chain, 16), int(seal, 16)
    # two writers that write the same generation over the same marker write the same marker
    assert Marker.after(first, Generation(2), B.digest) == Marker.after(first, Generation(2), B.digest)
    # the token covers the replaced marker's whole text, its own prev included
    other_first = Marker(Generation(1), A.digest, "0" * 12)
    assert Marker.after(other_first, Generation(2), B.digest) != Marker.after(first, Generation(2), B.digest)


def test_a_generation_set_back_by_hand_matches_no_marker_of_the_chain() -> None:
    """A -> B -> A, then a human sets ``g=`` back to 1 and keeps the rest (chaos 12537): the marker
    equals no marker the endpoint held before, so no writer that read one of them can pass its CAS."""
    m1 = Marker.after(None, Generation(1), A.digest)
    m2 = Marker.after(m1, Generation(2), B.digest)
    m3 = Marker.after(m2, Generation(3), A.digest)
    lowered = Marker(Generation(1), m3.digest, m3.prev)
    assert (lowered.generation, lowered.digest) == (m1.generation, m1.digest) and lowered != m1
    assert lowered not in (m1, m2, m3)
    # and its seal no longer matches (chaos 13470): enactors leave it to the verifier
    assert all(m.sealed() for m in (m1, m2, m3)) and not lowered.sealed()


def test_the_seal_covers_generation_and_digest() -> None:
    m = Marker.after(None, Generation(4), A.digest)
    assert m.sealed()
    assert not Marker(Generation(3), m.digest, m.prev).sealed()
    assert not Marker(m.generation, B.digest, m.prev).sealed()
    assert not Marker(m.generation, m.digest, m.prev.split(".")[0]).sealed()  # the seal cut off
    assert Marker(m.generation, m.digest).sealed()  # no p= at all: written before tokens, nothing to check
    assert Marker.from_text(m.to_text()) == m and Marker.from_text(m.to_text()).sealed()  # type: ignore[union-attr]


def test_same_content_ignores_prev_only() -> None:
    """The chain a sealed marker names does not matter to "already applied" (I6); a broken seal does: a
    repair over a hand-edited marker of the same generation and digest is a real write (issue 8, F)."""
    m = Marker.after(None, Generation(3), A.digest)
    assert m.same_content(Marker.after(Marker.after(None, Generation(1), B.digest), Generation(3), A.digest))
    assert m.same_content(Marker(Generation(3), A.digest))  # written before chain tokens: nothing to check
    assert not m.same_content(Marker(Generation(3), A.digest, "b" * 12))  # a p= without its seal
    assert not m.same_content(Marker(Generation(4), A.digest, m.prev))
    assert not m.same_content(Marker(Generation(3), B.digest, m.prev))
    assert not m.same_content(None)
