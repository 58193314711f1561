"""Generations out of range (issue 8): a hand-written marker ``g=`` negative, past ``MAX_GENERATION``
or garbage is a corrupt marker, read without raising by every provider, and never a store's head.

Seen before the fix: ``g=99999999999999999999`` raised ``OverflowError`` in the verifier's
``AdvanceHead`` (SQLite's integers are 64-bit), and ``g=9223372036854775807`` became the head,
after which every publish overflowed, across restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dnsplane.errors import GenerationOutOfRange
from dnsplane.model import (
    CORRUPT_GENERATION,
    MAX_GENERATION,
    Applied,
    Desired,
    Generation,
    Marker,
    Observed,
    Write,
    generation_in_range,
    parse_generation,
    read_marker,
)
from dnsplane.protocol.enactor import decide
from dnsplane.protocol.ownership import Ownership
from dnsplane.providers.embedded import EmbeddedProvider
from dnsplane.providers.rfc2136.marker import observe, txt_rdata
from dnsplane.providers.route53.encoding import parse_marker, txt_quote
from dnsplane.store.memory import MemoryStore
from dnsplane.store.sqlite import SqliteStore
from tests.fakes import ZONE, key, marker, member, rs

API = key("api.demo.test")
RECORDS = rs(member("lb-1", "192.0.2.11"))
OUT_OF_RANGE = ["99999999999999999999", "9223372036854775807", str(MAX_GENERATION + 1), "-1", "+5", "1_0",
                "0x10", "", "g", "١٢"]  # the last: Arabic-Indic digits, which int() accepts


@pytest.mark.parametrize("g", OUT_OF_RANGE)
def test_marker_text_with_a_generation_out_of_range_or_garbage_is_no_marker(g: str) -> None:
    assert parse_generation(g) is None
    assert Marker.from_text(f"dnsplane g={g} d={RECORDS.digest}") is None


def test_marker_text_in_range_parses() -> None:
    assert parse_generation(str(MAX_GENERATION)) == MAX_GENERATION
    assert Marker.from_text(f"dnsplane g=42 d={RECORDS.digest}") == Marker(Generation(42), RECORDS.digest)
    assert generation_in_range(0) and generation_in_range(MAX_GENERATION)
    assert not generation_in_range(MAX_GENERATION + 1) and not generation_in_range(-1)
    assert not generation_in_range(1e20) and not generation_in_range(True)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("g", [2**63 - 1, 99999999999999999999, MAX_GENERATION + 1, -1])
def test_advance_head_refuses_a_generation_out_of_range(tmp_path: Path, kind: str, g: int) -> None:
    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "store.sqlite")
    assert store.publish(Generation(0), [(API, RECORDS)], 1.0, "planner") == 1
    with pytest.raises(GenerationOutOfRange):
        store.advance_head(Generation(g), 2.0)
    assert store.head() == 1
    assert store.publish(Generation(1), [(API, rs(member("lb-2", "192.0.2.12")))], 3.0, "planner") == 2
    store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_no_publish_past_the_bound(tmp_path: Path, kind: str) -> None:
    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "store.sqlite")
    assert store.advance_head(MAX_GENERATION, 1.0) == MAX_GENERATION  # the bound itself is a generation
    with pytest.raises(GenerationOutOfRange):
        store.publish(MAX_GENERATION, [(API, RECORDS)], 2.0, "planner")
    assert store.head() == MAX_GENERATION
    store.close()


def test_a_store_whose_head_went_past_the_bound_recovers_at_open(tmp_path: Path) -> None:
    """What the code before the fix left behind: an empty plan at 2**63-1 (the verifier's
    ``advance_head`` past a hand-written marker) as the head, enactors and last-known-good there."""
    path = tmp_path / "store.sqlite"
    store = SqliteStore(path)
    assert store.publish(Generation(0), [(API, RECORDS)], 1.0, "planner") == 1
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    huge = 2**63 - 1
    db.execute("INSERT INTO plans (generation, created_at, planner, changes) VALUES (?, 2.0, 'advance_head', 0)",
               (huge,))
    db.execute("UPDATE meta SET value = ? WHERE key = 'head'", (huge,))
    db.execute("INSERT INTO meta (key, value) VALUES ('lkg', ?)", (huge,))
    db.execute("INSERT INTO applied (actor, generation, at) VALUES ('enactor-1', ?, 2.0)", (huge,))
    db.close()

    store = SqliteStore(path)
    assert store.head() == 1
    assert store.low_watermark(3.0) <= 1
    assert store.publish(Generation(1), [(API, rs(member("lb-2", "192.0.2.12")))], 3.0, "planner") == 2
    assert store.desired([API], Generation(2))[API].generation == 2
    store.close()


def test_read_marker_tells_a_corrupt_marker_from_no_marker() -> None:
    assert read_marker(f"dnsplane g=7 d={RECORDS.digest}") == Marker(Generation(7), RECORDS.digest)
    corrupt = read_marker("dnsplane g=99999999999999999999 d=abc")
    assert corrupt is not None and corrupt.generation == CORRUPT_GENERATION
    assert corrupt == read_marker("dnsplane g=99999999999999999999 d=abc")  # a CAS can expect it
    assert corrupt != read_marker("dnsplane g=9223372036854775807 d=abc")
    assert read_marker("dnsplane -") is None and read_marker("v=spf1 -all") is None


def test_a_corrupt_marker_keeps_its_owner_id() -> None:
    """Another installation's marker with g= garbled by hand stays another owner's: read without its
    o=, it passed for one written before owner ids (this installation's) and the verifier repaired over
    it (I7). A corrupt marker of this installation's keeps its id too; one without o= has none."""
    theirs = read_marker("dnsplane g=99999999999999999999 d=abc p=0123456789ab.01234567 o=other")
    assert theirs is not None and theirs.generation == CORRUPT_GENERATION and theirs.owner == "other"
    assert Ownership(owner="mine").foreign(Observed(RECORDS, theirs)) == "marker of another owner 'other'"
    mine = read_marker("dnsplane g=x d=abc o=mine")
    assert mine is not None and mine.owner == "mine"
    assert Ownership(owner="mine").foreign(Observed(RECORDS, mine)) is None
    assert read_marker("dnsplane g=-1 d=abc").owner == ""  # type: ignore[union-attr]


@pytest.mark.parametrize("g", OUT_OF_RANGE)
def test_rfc2136_reads_a_marker_txt_out_of_range_as_a_corrupt_marker(g: str) -> None:
    """Not as no marker: records without a marker are foreign (I7) and would never be repaired."""
    text = f"dnsplane g={g} d={RECORDS.digest}".encode()
    observed = observe((txt_rdata([text]),), frozenset({"192.0.2.11"}), 30)
    assert observed.marker is not None and not generation_in_range(observed.marker.generation)
    assert observed.records is not None


@pytest.mark.parametrize("g", OUT_OF_RANGE)
def test_route53_reads_a_marker_txt_out_of_range_as_a_corrupt_marker(g: str) -> None:
    sets = [{"Name": "_dnsplane-a.api.demo.test.", "Type": "TXT", "TTL": 30,
             "ResourceRecords": [{"Value": txt_quote(f"dnsplane g={g} d={RECORDS.digest}")}]}]
    found, _ = parse_marker(sets)
    assert found is not None and not generation_in_range(found.generation)


@pytest.mark.parametrize("prev", ["kept", "cleared"])
@pytest.mark.parametrize("g", [2**63 - 1, 99999999999999999999, MAX_GENERATION + 1, -5])
def test_embedded_reads_a_marker_column_out_of_range_as_a_corrupt_marker(tmp_path: Path, g: int, prev: str) -> None:
    """As the text providers read a ``g=`` out of range: a corrupt marker, which the enactors leave to the
    verifier. Cleared ``p=`` too (a row a person wrote whole), it would otherwise pass for a marker written
    before chain tokens, whose seal there is nothing to check, and read as newer than every plan."""
    provider = EmbeddedProvider(tmp_path / "dns.sqlite", ZONE)
    provider.hand_edit(API, RECORDS, marker(1, RECORDS))
    provider.close()
    db = sqlite3.connect(tmp_path / "dns.sqlite", isolation_level=None)
    db.execute("UPDATE endpoints SET marker_gen = ?", (str(g),))  # a person with the sqlite3 shell
    if prev == "cleared":
        db.execute("UPDATE endpoints SET marker_prev = NULL")
    db.close()
    provider = EmbeddedProvider(tmp_path / "dns.sqlite", ZONE)
    seen = provider.read([API])[API]
    assert seen.marker is not None and seen.marker.generation == CORRUPT_GENERATION
    assert seen.records == RECORDS
    assert provider.read([API])[API] == seen, "two reads of one row are equal (the compare-and-swap's expect)"
    desired = Desired(Generation(2), rs(member("lb-2", "192.0.2.12")))
    # behind every plan, and the store confirms no content at it: left to the verifier (the enactor's side:
    # tests/protocol/test_verifier_liveness.py)
    assert decide(desired, seen) == "write"
    # the verifier's repair, conditional on the marker as read, lands
    repair = Write(API, seen.marker, RECORDS, Marker.after(seen.marker, Generation(3), RECORDS.digest), RECORDS)
    assert provider.apply([repair]) == [Applied(API)]
    assert provider.read([API])[API].marker == repair.marker
    provider.close()
