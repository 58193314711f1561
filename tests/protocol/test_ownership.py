"""Ownership (I7): dnsplane writes only what it owns or what the fleet adopts; foreign records are
reported, never overwritten; a second installation is refused; pre-owner markers are taken once;
released endpoints are never recreated."""

from __future__ import annotations

import sqlite3
from itertools import pairwise
from pathlib import Path

import pytest

from dnsplane.execute import Interpreter
from dnsplane.model import EndpointKey, Generation, Marker, Member, RecordSet, Write
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import FleetChanged, HealthObserved, Log, Tick
from dnsplane.protocol.ownership import Ownership
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier
from dnsplane.providers.embedded import EmbeddedProvider
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")
NS1 = EndpointKey(f"ns1.{ZONE}", "A")
GLUE = RecordSet.of(3600, [Member("198.51.100.53", ("198.51.100.53",), 1)])


def owned_by(owner: str, *endpoints_: object, adopt: bool = False) -> Ownership:
    eps = [endpoint(str(n)) for n in endpoints_]
    keys = frozenset(e.key for e in eps)
    return Ownership(owner, keys, keys if adopt else frozenset())


def installation(owner: str, names: tuple[str, ...] = ("api",), adopt: bool = False,
                 share: Harness | None = None) -> tuple[Harness, Planner, Enactor, Verifier]:
    """A planner, an enactor and a verifier of one installation; ``share``: another's provider."""
    h = Harness()
    if share is not None:
        h.provider = share.provider
        h.interpreter = Interpreter(h.store, h.provider, h.resolve)
    ownership = owned_by(owner, *names, adopt=adopt)
    p = Planner("planner", ZONE, tuple(endpoint(n) for n in names))
    return h, p, Enactor("enactor", ZONE, ownership=ownership), Verifier("verifier", ownership=ownership)


# ---------------------------------------------------------------- the marker


def test_marker_carries_its_owner_and_the_seal_covers_it() -> None:
    m = Marker.after(None, Generation(3), "ab" * 8, "dp-one")
    text = m.to_text()
    assert text.endswith(" o=dp-one") and " p=" in text
    back = Marker.from_text(text)
    assert back == m and back.sealed()
    forged = Marker.from_text(text.replace("o=dp-one", "o=dp-two"))
    assert forged is not None and forged.owner == "dp-two" and not forged.sealed(), "a hand edit of o= breaks the seal"


def test_markers_written_before_owner_ids_still_read() -> None:
    old = Marker.after(None, Generation(3), "ab" * 8)  # no owner: the pre-owner seal
    assert old.to_text().count("=") == 3 and Marker.from_text(old.to_text()) == old and old.sealed()
    assert Marker.from_text("dnsplane g=7 d=abc") == Marker(Generation(7), "abc")
    assert Marker.from_text("dnsplane g=7 d=abc o=x") == Marker(Generation(7), "abc", "", "x")
    assert Marker.from_text("dnsplane g=7 d=abc q=1") is None


def test_same_content_of_another_owner_is_not_already_applied() -> None:
    a = Marker.after(None, Generation(3), "ab" * 8)
    b = Marker.after(a, Generation(3), "ab" * 8, "dp-one")
    assert not b.same_content(a), "adding the owner id must be a real write, not an I6 no-op"


# ---------------------------------------------------------------- foreign records


def test_records_without_a_marker_are_never_overwritten_and_are_reported() -> None:
    """The zone's own ns1 glue at an endpoint name: the verifier used to overwrite it."""
    h, p, e, v = installation("dp-one", ("api", "ns1"))
    h.provider.hand_edit(NS1, GLUE, None)
    h.run(p)
    h.run(e)
    logs = []
    for _ in range(4):
        commands = v.handle(Tick(h.now))
        reply = h.interpreter.run(v.name, commands, h.now)
        while reply is not None:
            commands = v.handle(reply)
            logs += [c for c in commands.effects if isinstance(c, Log) and "foreign" in c.message]
            reply = h.interpreter.run(v.name, commands, h.now)
    assert h.provider.read([NS1])[NS1].records == GLUE, "foreign glue was overwritten"
    assert h.provider.read([NS1])[NS1].marker is None
    assert len(logs) == 1, "reported once, not every round"
    assert [x.action for x in h.store.history(NS1)].count("foreign") >= 1
    assert h.provider.read([API])[API].marker.owner == "dp-one"  # type: ignore[union-attr]
    assert v.foreign and NS1 in v.foreign


def test_adopted_records_without_a_marker_are_taken_over_and_journalled() -> None:
    h, p, e, v = installation("dp-one", ("api", "ns1"), adopt=True)
    h.provider.hand_edit(NS1, GLUE, None)
    h.run(p)
    h.run(e)
    for _ in range(3):  # marker-missing waits one round for a fresh snapshot
        h.run(v)
    seen = h.provider.read([NS1])[NS1]
    assert seen.marker is not None and seen.marker.owner == "dp-one"
    assert seen.records == h.store.desired([NS1], h.store.head())[NS1].records
    assert "adopt" in [x.action for x in h.store.history(NS1)]


def test_a_second_installation_is_refused_and_never_flips_the_content() -> None:
    """Two installations, separate stores, one zone: the second refuses, alerts, writes nothing."""
    one, p1, e1, v1 = installation("dp-one")
    two, p2, e2, v2 = installation("dp-two", share=one)
    one.run(p1)
    one.run(e1)
    owned = one.provider.read([API])[API]
    # the second installation's plans differ (lb-1 down), and its store numbers them anew
    two.run(p2)
    two.run(p2, HealthObserved(two.now, "lb-1", False))
    two.run(p2, Tick(two.now))
    writes = one.provider.writes
    for _ in range(3):
        two.run(e2)
        two.run(v2)
        one.run(v1)
        one.run(e1)
    assert one.provider.read([API])[API] == owned, "the second installation overwrote the first"
    assert one.provider.writes == writes
    assert two.store.head() == 2, "another owner's marker must not advance this store's head"
    assert "foreign" in [x.action for x in two.store.history(API)]
    assert "another owner 'dp-one'" in v2.foreign[API]


def test_an_adopted_endpoint_of_another_owner_is_taken_over_at_this_stores_head() -> None:
    one, p1, e1, _ = installation("dp-one")
    one.run(p1)
    one.run(e1)
    one.run(p1, HealthObserved(one.now, "lb-1", False))
    for _ in range(5):
        one.run(p1, Tick(one.now))
    two, p2, e2, v2 = installation("dp-two", adopt=True, share=one)
    two.checking = False  # the takeover lowers the marker's generation: another numbering
    two.run(p2)
    two.run(e2)
    assert one.provider.read([API])[API].marker.owner == "dp-one"  # type: ignore[union-attr]
    two.run(v2)  # first seen: the takeover waits for a snapshot loaded after it (chaos 31360)
    assert one.provider.read([API])[API].marker.owner == "dp-one"  # type: ignore[union-attr]
    two.run(v2)
    seen = one.provider.read([API])[API]
    assert seen.marker is not None and seen.marker.owner == "dp-two"
    assert seen.marker.generation == two.store.head()
    assert "adopt" in [x.action for x in two.store.history(API)]


# ---------------------------------------------------------------- markers written before owner ids


def test_a_pre_owner_marker_is_taken_once_and_rewritten_with_the_owner_id() -> None:
    h = Harness()
    p = Planner("planner", ZONE, (endpoint(),))
    h.run(p)
    h.run(Enactor("old", ZONE))  # an installation from before owner ids
    before = h.provider.read([API])[API]
    assert before.marker is not None and before.marker.owner == ""
    v = Verifier("verifier", ownership=owned_by("dp-one", "api"))
    h.run(v)
    after = h.provider.read([API])[API]
    assert after.marker is not None and after.marker.owner == "dp-one" and after.marker.sealed()
    assert after.marker.generation == before.marker.generation and after.records == before.records
    writes = h.provider.writes
    h.run(v)
    h.run(Enactor("enactor", ZONE, ownership=owned_by("dp-one", "api")))
    assert h.provider.writes == writes, "rewritten once, then left alone"


# ---------------------------------------------------------------- released endpoints


def test_a_released_endpoint_deleted_by_a_person_is_not_recreated() -> None:
    h, p, e, v = installation("dp-one", ("api", "ns1"))
    h.run(p)
    h.run(e)
    fleet = (endpoint("api"),)
    for actor in (p, e, v):
        actor.handle(FleetChanged(h.now, fleet))
    h.checking = False
    h.provider.hand_edit(NS1, None, None)  # a person deletes the released endpoint
    for _ in range(3):
        h.run(v)
        h.run(p, HealthObserved(h.now, "lb-1", False))
        h.run(p, Tick(h.now))
        h.run(e)
    assert h.provider.read([NS1])[NS1].records is None, "a released endpoint was recreated"
    assert h.provider.read([API])[API].records is not None


# ---------------------------------------------------------------- the embedded provider keeps the owner


def test_embedded_provider_keeps_the_owner_and_migrates_old_files(tmp_path: Path) -> None:
    path = tmp_path / "dns.sqlite"
    db = sqlite3.connect(path)  # a file from before owner ids (and before chain tokens)
    db.execute("CREATE TABLE endpoints (name TEXT NOT NULL, rtype TEXT NOT NULL, records TEXT, marker_gen INTEGER,"
               " marker_digest TEXT, PRIMARY KEY (name, rtype)) WITHOUT ROWID")
    rs = RecordSet.of(30, [Member("a", ("192.0.2.1",), 1)])
    db.execute("INSERT INTO endpoints VALUES (?, ?, ?, ?, ?)", (API.name, API.rtype,
               '{"ttl":30,"answer":"weighted","members":[["a",["192.0.2.1"],1]]}', 4, rs.digest))
    db.commit()
    db.close()
    provider = EmbeddedProvider(path, ZONE)
    old = provider.read([API])[API].marker
    assert old == Marker(Generation(4), rs.digest)
    new = Marker.after(old, Generation(4), rs.digest, "dp-one")
    [result] = provider.apply([Write(API, old, rs, new, rs)])
    assert result.written, "adding the owner id is a write"  # type: ignore[union-attr]
    assert provider.read([API])[API].marker == new
    [again] = provider.apply([Write(API, old, rs, new, rs)])
    assert not again.written  # type: ignore[union-attr]
    provider.close()


# ---------------------------------------------------------------- where the owner id comes from, and adopt:


OWNED_FLEET = """\
zone: demo.test
owner: {owner}
targets:
  lb-1: {{addresses: [192.0.2.1]}}
endpoints:
  - name: api
    ttl: 30
    targets: [lb-1]
    adopt: {adopt}
  - name: www
    ttl: 30
    targets: [lb-1]
"""


def test_the_fleet_file_sets_the_owner_id_and_adopts_endpoints() -> None:
    from dnsplane.config import parse_fleet

    fleet = parse_fleet(OWNED_FLEET.format(owner="blue-1", adopt="true"))
    assert fleet.owner == "blue-1"
    ownership = Ownership.of_fleet(fleet.owner, fleet.endpoints)
    assert ownership.adopts(API) and not ownership.adopts(EndpointKey(f"www.{ZONE}", "A"))
    assert not ownership.manages(NS1)


@pytest.mark.parametrize(("owner", "adopt", "line", "fragment"), [
    ("'two words'", "true", 2, "owner: owner id 'two words' must be"),
    ("ok", "'yes'", 9, "endpoints[0].adopt: must be true or false"),
])
def test_a_bad_owner_or_adopt_is_refused_with_its_line(owner: str, adopt: str, line: int, fragment: str) -> None:
    from dnsplane.config import parse_fleet
    from dnsplane.errors import InvalidConfig

    with pytest.raises(InvalidConfig) as err:
        parse_fleet(OWNED_FLEET.format(owner=owner, adopt=adopt), "fleet.yaml")
    assert str(err.value).startswith(f"fleet.yaml:{line}:") and fragment in str(err.value), str(err.value)


def test_the_data_dirs_owner_id_is_generated_once_and_kept(tmp_path: Path) -> None:
    from dnsplane.store.sqlite import SqliteStore

    first = SqliteStore(tmp_path / "store.sqlite")
    owner = first.owner_id()
    assert owner.startswith("dp-") and owner == first.owner_id()
    first.close()
    again = SqliteStore(tmp_path / "store.sqlite")
    assert again.owner_id() == owner, "a restart keeps the owner id"
    again.close()
    other = SqliteStore(tmp_path / "other.sqlite")
    assert other.owner_id() != owner, "another data dir is another installation"
    other.close()


def test_route53_and_rfc2136_markers_carry_the_owner() -> None:
    from dnsplane.providers.rfc2136.marker import observe, txt_rdatas
    from dnsplane.providers.route53.encoding import marker_values, parse_marker

    rs = RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 5)])
    m = Marker.after(None, Generation(9), rs.digest, "dp-one")
    values = marker_values(m, rs)
    assert parse_marker([{"Name": "_dnsplane-a.api.demo.test.", "Type": "TXT", "TTL": 60,
                          "ResourceRecords": [{"Value": v} for v in values]}]) == (m, rs)
    assert observe(txt_rdatas(m, rs), frozenset({"192.0.2.1"}), 30).marker == m


# ---------------------------------------------------------------- a lost marker, two adopters (issue 8)


def test_records_of_the_endpoints_own_targets_without_a_marker_get_their_marker_back() -> None:
    """A person deleted only the marker TXT: the records are what dnsplane wrote (every address one of
    the endpoint's own targets), so they are repaired as "marker missing", not left foreign for good.
    The zone's glue at another endpoint name (no target's address) stays foreign."""
    h = Harness()
    eps = (endpoint("api"), endpoint("ns1"))
    ownership = Ownership.of_fleet("dp-one", eps)
    p, e, v = Planner("planner", ZONE, eps), Enactor("enactor", ZONE, ownership=ownership), \
        Verifier("verifier", ownership=ownership)
    h.run(p)
    h.run(e)
    h.provider.hand_edit(NS1, GLUE, None)
    written = h.provider.read([API])[API]
    assert written.marker is not None and written.records is not None
    h.provider.hand_edit(API, written.records, None)  # the marker TXT alone is deleted
    assert ownership.refusal(API, h.provider.read([API])[API]) is None
    for _ in range(3):  # marker-missing waits one round for a fresh snapshot
        h.run(v)
    back = h.provider.read([API])[API]
    assert back.marker is not None and back.marker.owner == "dp-one" and back.records == written.records
    assert back.marker.generation >= written.marker.generation
    assert ("repair", "marker-missing") in [(x.action, x.detail) for x in h.store.history(API)]
    assert API not in v.foreign
    assert h.provider.read([NS1])[NS1].records == GLUE and NS1 in v.foreign, "glue is no target's address"


def test_two_installations_that_both_adopt_an_endpoint_take_it_over_once_then_it_is_contested() -> None:
    """Both fleets say adopt: true: each used to take the other's marker back every round."""
    one, p1, e1, v1 = installation("dp-one", adopt=True)
    two, p2, e2, v2 = installation("dp-two", adopt=True, share=one)
    one.checking = two.checking = False  # two numberings on one zone
    one.run(p1)
    one.run(e1)
    one.run(v1)  # the first installation has seen its marker
    owners = [one.provider.read([API])[API].marker.owner]  # type: ignore[union-attr]
    two.run(p2)
    for _ in range(6):
        two.run(e2)
        two.run(v2)
        owners.append(one.provider.read([API])[API].marker.owner)  # type: ignore[union-attr]
        one.run(v1)
        one.run(e1)
        owners.append(one.provider.read([API])[API].marker.owner)  # type: ignore[union-attr]
    changes = sum(a != b for a, b in pairwise(owners))
    assert changes == 1, f"the endpoint changed hands {changes} times: {owners}"
    assert API in v1.contested and API not in v2.contested
    assert [x.action for x in one.store.history(API)].count("contested") == 1, "journalled once"
    v1.handle(FleetChanged(one.now, (endpoint("api"),)))
    assert not v1.contested, "a reload lifts the contest"
