"""The RFC 2136 provider against a real BIND9: key files, compare-and-swap at the server, resends,
reads, hand edits, and the errors a user meets (wrong key, clock skew, server down, zone not served).

The conformance suite (test_conformance.py, param "rfc2136") covers the shared contract; these
tests cover what is particular to RFC 2136. ``named`` is started once for the module.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest

import dnsplane.providers.rfc2136.tsig as rfc2136_tsig
from dnsplane.codec import encode_records
from dnsplane.errors import InvalidConfig, Permanent, ProviderUnavailable
from dnsplane.model import Desired, Generation, Marker, Observed, RecordSet, Write, marker_name
from dnsplane.protocol.enactor import decide
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.base import Applied, Conflict, Rejected
from dnsplane.providers.rfc2136 import Rfc2136Provider, parse_key_file
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.named import NamedServer, free_port, key_file_text, named, running_named  # noqa: F401

A = key("a.demo.test")
ONE = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2", weight=3))
TWO = rs(member("lb1", "192.0.2.1"), ttl=60)
PLAIN = rs(member("192.0.2.9", "192.0.2.9"))  # what the addresses alone describe: no JSON in the marker


@pytest.fixture
def server(named: NamedServer) -> NamedServer:  # noqa: F811 - the module's named, emptied per test
    named.reset()
    return named


@pytest.fixture
def provider(server: NamedServer) -> Iterator[Rfc2136Provider]:
    p = Rfc2136Provider(ZONE, Rfc2136Config(server.host, server.port, key_file=server.key_file))
    yield p
    p.close()


def another(server: NamedServer) -> Rfc2136Provider:
    return Rfc2136Provider(ZONE, Rfc2136Config(server.host, server.port, key_file=server.key_file))


def first(k, records, g: int = 1) -> Write:  # type: ignore[no-untyped-def]
    return Write(k, None, records, marker(g, records))


# -- key files ---------------------------------------------------------------------------


def test_parses_a_bind_key_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text(
        "# made by tsig-keygen\n/* a block\n comment */\n"
        'key "ddns-key.example" {\n\talgorithm hmac-sha512; // the default of tsig-keygen is sha256\n'
        '\tsecret "c2VjcmV0c2VjcmV0c2VjcmV0";\n};\n'
    )
    k = parse_key_file(path)
    assert (k.name, k.algorithm, k.secret) == ("ddns-key.example.", "hmac-sha512", "c2VjcmV0c2VjcmV0c2VjcmV0")


def test_a_secret_holding_comment_marks_is_read_whole(tmp_path: Path) -> None:
    # base64 may hold '//': a random test secret did once in a hundred runs, and the parser took it
    # for a comment and refused the key
    path = tmp_path / "k.key"
    path.write_text('key "k" { algorithm hmac-sha256; /* "quoted" in a comment */ secret "ab//cd+/ef==";\n};\n')
    assert parse_key_file(path).secret == "ab//cd+/ef=="


@pytest.mark.skipif(shutil.which("tsig-keygen") is None, reason="tsig-keygen (bind9-utils) not installed")
def test_parses_what_tsig_keygen_writes(tmp_path: Path) -> None:
    out = subprocess.run(["tsig-keygen", "-a", "hmac-sha256", "dnsplane"], capture_output=True, text=True, check=True)
    (tmp_path / "k.key").write_text(out.stdout)
    k = parse_key_file(tmp_path / "k.key")
    assert k.name == "dnsplane." and k.algorithm == "hmac-sha256" and len(k.secret) >= 40


def test_bind_hmac_md5_is_tsig_wire_name(tmp_path: Path) -> None:
    """BIND key files say ``hmac-md5``; TSIG (and dnspython) name it ``hmac-md5.sig-alg.reg.int``."""
    path = tmp_path / "k.key"
    path.write_text(key_file_text("old", "b2xk", "hmac-md5"))
    assert parse_key_file(path).algorithm == "hmac-md5.sig-alg.reg.int"


def test_chooses_among_several_keys_by_name(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text(key_file_text("one", "b25l") + key_file_text("two", "dHdv", "hmac-sha1"))
    assert parse_key_file(path, "two.").secret == "dHdv"
    with pytest.raises(InvalidConfig, match=r"k\.key:5: several keys \(one, two\); choose one with key_name"):
        parse_key_file(path)
    with pytest.raises(InvalidConfig, match="no key named 'three'"):
        parse_key_file(path, "three")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r":1: no key block found"),
        ('key "k" {\n algorithm hmac-sha256;\n};\n', r":1: key 'k' has no 'secret"),
        ('key "k" {\n secret "b25l";\n};\n', r":1: key 'k' has no 'algorithm"),
        ('key "k" {\n algorithm hmac-rot13;\n secret "b25l";\n};\n', r":2: unknown TSIG algorithm 'hmac-rot13'"),
        ('key "k" {\n algorithm hmac-sha256;\n secret "not base64!";\n};\n', r":3: secret is not valid"),
    ],
)
def test_malformed_key_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(InvalidConfig, match=message) as err:
        parse_key_file(path)
    assert str(err.value).startswith(str(path))


def test_missing_key_file_and_missing_key_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="cannot read TSIG key file"):
        Rfc2136Provider(ZONE, Rfc2136Config("127.0.0.1", key_file=str(tmp_path / "nope.key")))
    with pytest.raises(Permanent, match="needs a TSIG key"):
        Rfc2136Provider(ZONE, Rfc2136Config("127.0.0.1"))


# -- compare-and-swap at the server --------------------------------------------------


def test_a_stale_writer_is_refused_by_the_server_itself(server: NamedServer, provider: Rfc2136Provider) -> None:
    stale = another(server)
    assert stale.read([A])[A] == Observed(None, None)  # the stale writer reads: absent
    assert provider.apply([first(A, ONE)]) == [Applied(A)]  # someone else writes first
    # its view says "absent", so it sends "RRset does not exist" and BIND refuses it (YXRRSET)
    assert stale.apply([first(A, TWO, 2)]) == [Conflict(A, marker(1, ONE))]
    assert "prerequisite not satisfied" in server.log_tail(200)
    assert stale.writes == 0
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE))
    # with the marker it now knows, its write goes through
    assert stale.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO), ONE)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(TWO, marker(2, TWO))


def test_a_stale_first_write_is_refused_by_the_server_when_records_lost_their_marker(
    server: NamedServer, provider: Rfc2136Provider, caplog: pytest.LogCaptureFixture
) -> None:
    # chaos seeds 1412 and 5315, at the server: the stale writer's view is "never written"; meanwhile
    # another writer writes and a human deletes only the marker TXT, so "no marker" holds again
    stale = another(server)
    stale.fresh_for = 60.0  # its view stays the one it read, as an enactor's read does while it waits
    assert stale.read([A])[A] == Observed(None, None)
    assert provider.apply([first(A, ONE)]) == [Applied(A)]
    gone = server.update()
    gone.delete(marker_name(A), "TXT")
    server.send(gone)
    caplog.set_level(logging.INFO, logger="dnsplane.providers.rfc2136")
    # "RRset does not exist" on the A records is refused by BIND itself; the re-read shows why
    assert stale.apply([first(A, TWO, 2)]) == [Conflict(A, None)]
    assert any("prerequisite failed" in r.message for r in caplog.records)
    assert stale.writes == 0
    served = rs(member("192.0.2.1", "192.0.2.1"), member("192.0.2.2", "192.0.2.2"))  # BIND keeps no weights
    assert provider.read([A])[A] == Observed(served, None)


def test_a_repair_of_records_without_a_marker_is_fenced_on_the_addresses_seen(
    server: NamedServer, provider: Rfc2136Provider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.apply([first(A, ONE)])
    gone = server.update()
    gone.delete(marker_name(A), "TXT")
    server.send(gone)
    repairer = another(server)
    repairer.fresh_for = 60.0
    seen = repairer.read([A])[A]
    assert seen.marker is None and seen.records is not None
    edit = server.update()  # the addresses change after the repairer read them
    edit.replace(A.name, 30, "A", "198.51.100.7")
    server.send(edit)
    caplog.set_level(logging.INFO, logger="dnsplane.providers.rfc2136")
    # the value-dependent "RRset exists" on the addresses seen is refused by BIND
    assert repairer.apply([Write(A, None, TWO, marker(2, TWO), seen.records)]) == [Conflict(A, None)]
    assert any("prerequisite failed" in r.message for r in caplog.records)
    now = repairer.read([A])[A]
    assert now == Observed(rs(member("198.51.100.7", "198.51.100.7")), None)
    assert repairer.apply([Write(A, None, TWO, marker(2, TWO), now.records)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(TWO, marker(2, TWO))


def test_a_refused_batch_is_resent_without_its_conflicts(
    server: NamedServer, provider: Rfc2136Provider, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [key(f"e{i}.demo.test") for i in range(10)]
    provider.apply([first(k, ONE) for k in keys])
    seen = provider.read(keys)  # this writer's view: everything at generation 1
    other = another(server)
    moved = keys[2:5]
    other.apply([Write(k, marker(1, ONE), TWO, marker(5, TWO), ONE) for k in moved])
    caplog.set_level(logging.INFO, logger="dnsplane.providers.rfc2136")
    results = provider.apply([Write(k, seen[k].marker, PLAIN, marker(2, PLAIN), seen[k].records) for k in keys])
    assert results == [Conflict(k, marker(5, TWO)) if k in moved else Applied(k) for k in keys]
    assert any("prerequisite failed" in r.message for r in caplog.records)
    assert provider.writes == 10 + 7
    after = provider.read(keys)
    for k in keys:
        assert after[k] == (Observed(TWO, marker(5, TWO)) if k in moved else Observed(PLAIN, marker(2, PLAIN)))


def test_a_write_someone_already_made_is_not_sent_again(server: NamedServer, provider: Rfc2136Provider) -> None:
    other = another(server)
    provider.read([A])
    other.apply([first(A, ONE)])
    # same write from a stale view: the server refuses the prerequisite, the re-read shows it is held
    assert provider.apply([first(A, ONE)]) == [Applied(A, written=False)]
    assert provider.writes == 0


def test_large_batches_split_into_messages_and_all_apply(server: NamedServer, provider: Rfc2136Provider) -> None:
    keys = [key(f"host-{i}.pool.demo.test") for i in range(500)]
    sets = [rs(member(f"lb-{i}-a", f"10.0.{i // 250}.{i % 250 + 1}", weight=700),
               member(f"lb-{i}-b", f"10.1.{i // 250}.{i % 250 + 1}", weight=300)) for i in range(500)]
    results = provider.apply([first(k, s) for k, s in zip(keys, sets, strict=True)])
    assert results == [Applied(k) for k in keys]
    assert provider.writes == 500
    fresh = another(server).read(keys)
    assert all(fresh[k] == Observed(s, marker(1, s)) for k, s in zip(keys, sets, strict=True))


def test_a_marker_in_the_layout_written_before_marker_txt_is_read_and_compared(
    server: NamedServer, provider: Rfc2136Provider
) -> None:
    """Markers already on a server keep working: the layout this provider wrote before
    ``providers/marker_txt.py`` (ONE TXT record: the marker, then the record set's JSON in strings of
    255 bytes) reads as the marker and records written; a write the endpoint already holds is not sent;
    the next write is fenced on that TXT (a stale one conflicts) and leaves the marker in the new layout."""
    wide = rs(*(member(f"target-with-a-long-id-{i:02d}", f"192.0.2.{i + 1}", weight=i + 1) for i in range(8)))
    old = marker(1, wide)
    text = encode_records(wide).encode()
    assert len(text) > 255, "the JSON spans several strings"
    u = server.update()
    u.replace(A.name, wide.ttl, "A", *wide.addresses())
    u.replace(marker_name(A), 60, dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [
        old.to_text().encode(), *(text[i : i + 255] for i in range(0, len(text), 255))]))
    server.send(u)
    assert provider.read([A])[A] == Observed(wide, old)
    assert another(server).read_all() == {A: Observed(wide, old)}
    assert provider.apply([first(A, wide)]) == [Applied(A, written=False)]
    assert provider.apply([Write(A, marker(1, ONE), TWO, marker(2, TWO), wide)]) == [Conflict(A, old)]
    new = Marker.after(old, Generation(2), TWO.digest)
    assert provider.apply([Write(A, old, TWO, new, wide)]) == [Applied(A)]
    assert another(server).read([A])[A] == Observed(TWO, new)
    answer = dns.query.tcp(dns.message.make_query(marker_name(A), "TXT"), server.host, port=server.port).answer
    records = sorted([s.decode() for s in rd.strings] for rr in answer for rd in rr)
    assert records[0] == [new.to_text()] and records[1][0] == "dnsplane-rs 0" and len(records) == 2
    assert provider.writes == 1


def test_a_record_set_part_edited_by_hand_at_the_marker_name_never_hides_the_marker(
    server: NamedServer, provider: Rfc2136Provider
) -> None:
    """A person adds a ``dnsplane-rs x`` TXT at the marker name of an endpoint dnsplane wrote. Before,
    a part header that does not parse dropped the marker as well when the server returned it first,
    so the endpoint read as records without a marker (foreign: never written again). Now its
    marker reads as written, by targeted reads and by the zone transfer, whatever the order
    named returns; the record set it carried is lost (rebuilt from the addresses served, so a write
    expecting the one written conflicts), and a write made on what is read now replaces the
    hand-made record."""
    wide = rs(*(member(f"lb-{i}", f"192.0.2.{i + 1}", weight=i + 1) for i in range(3)))
    assert provider.apply([first(A, wide)]) == [Applied(A)]
    written = provider.read([A])[A]
    assert written.marker is not None
    u = server.update()
    u.add(marker_name(A), 60, "TXT", '"dnsplane-rs x" "{not json"')
    server.send(u)
    for _ in range(8):  # named may return the TXT records in any order
        assert provider.read([A])[A].marker == written.marker
        assert another(server).read_all()[A].marker == written.marker
    seen = provider.read([A])[A]  # the record set rebuilt from the addresses served: the carried one is lost
    new = Marker.after(written.marker, Generation(2), TWO.digest)
    assert provider.apply([Write(A, written.marker, TWO, new, written.records)]) == [Conflict(A, written.marker)]
    assert provider.apply([Write(A, written.marker, TWO, new, seen.records)]) == [Applied(A)]
    answer = dns.query.tcp(dns.message.make_query(marker_name(A), "TXT"), server.host, port=server.port).answer
    assert not any(bytes(rd.strings[0]).startswith(b"dnsplane-rs x") for rr in answer for rd in rr)
    assert another(server).read([A])[A] == Observed(TWO, new)


# -- reads -------------------------------------------------------------------------------


def test_axfr_and_targeted_reads_agree(server: NamedServer, provider: Rfc2136Provider) -> None:
    keys = [key(f"e{i}.demo.test") for i in range(30)] + [key(f"v6-{i}.demo.test", "AAAA") for i in range(30)]
    sets = {k: (rs(member("x", f"2001:db8::{i + 1}")) if k.rtype == "AAAA" else rs(member("x", f"192.0.2.{i + 1}")))
            for i, k in enumerate(keys)}
    provider.apply([first(k, s, 3) for k, s in sets.items()][:50])
    provider.hand_edit(keys[3], TWO, None)
    provider.hand_edit(keys[4], None, marker(9, ONE))
    absent = key("nothing-here.demo.test")
    targeted: dict = {}
    for i in range(0, len(keys), 10):
        targeted.update(provider.read([*keys[i : i + 10], absent]))  # 11 keys: queries
    by_axfr = {k: raw.observed for k, raw in provider._reader.axfr([*keys, absent]).items()}
    assert targeted == by_axfr
    assert provider.read([*keys, absent]) == by_axfr  # 61 keys: queries or AXFR, the same answer
    assert by_axfr[absent] == Observed(None, None)
    assert by_axfr[keys[3]] == Observed(TWO, None)
    assert set(provider.read_all()) == set(keys[:50])  # ns1's A record has no marker: not managed


def test_records_edited_by_hand_are_seen_and_repaired(server: NamedServer, provider: Rfc2136Provider) -> None:
    provider.apply([first(A, ONE)])
    edit = server.update()  # a human replaces the addresses, leaving the marker alone
    edit.replace(A.name, 30, "A", "198.51.100.7")
    server.send(edit)
    for seen in (provider.read([A])[A], provider.read_all()[A]):
        assert seen.marker == marker(1, ONE)
        assert seen.records == rs(member("198.51.100.7", "198.51.100.7"))  # what is really served
        # records and marker no longer describe each other: nothing of plan 1 is left to write (the verifier
        # repairs the mismatch), and a later plan writes over them (the marker decides, not the records)
        assert decide(Desired(Generation(1), ONE), seen) == "skip-applied"
        assert decide(Desired(Generation(2), ONE), seen) == "write"
    # the verifier's repair: the same compare-and-swap on the marker found
    assert provider.apply([Write(A, marker(1, ONE), ONE, marker(1, ONE), seen.records)]) == [Applied(A)]
    assert provider.read([A])[A] == Observed(ONE, marker(1, ONE))
    # a deleted record set is an empty read, never the marker's content
    gone = server.update()
    gone.delete(A.name, "A")
    server.send(gone)
    assert provider.read([A])[A] == Observed(None, marker(1, ONE))


def test_what_bind_serves_is_the_live_addresses(server: NamedServer, provider: Rfc2136Provider) -> None:
    weighted = rs(member("lb1", "192.0.2.1", weight=5), member("lb2", "192.0.2.2", weight=0), ttl=45)
    provider.apply([first(A, weighted)])
    r = dns.query.udp(dns.message.make_query(A.name, "A"), server.host, port=server.port, timeout=2)
    assert [(rr.ttl, sorted(x.to_text() for x in rr)) for rr in r.answer] == [(45, ["192.0.2.1"])]
    assert provider.read([A])[A] == Observed(weighted, marker(1, weighted))  # weights round-trip in the marker


def test_update_policy_variant_from_the_docs(tmp_path: Path) -> None:
    with running_named(tmp_path / "policy", policy="update-policy") as srv:
        p = Rfc2136Provider(ZONE, Rfc2136Config(srv.host, srv.port, key_file=srv.key_file))
        assert p.apply([first(A, ONE)]) == [Applied(A)]
        assert p.read([A])[A] == Observed(ONE, marker(1, ONE))


# -- errors ------------------------------------------------------------------------------


def test_wrong_secret_is_a_permanent_tsig_error(server: NamedServer) -> None:
    p = Rfc2136Provider(ZONE, Rfc2136Config(server.host, server.port, key_name=server.key_name),
                        key_secret="d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA==")
    for call in (lambda: p.read([A]), lambda: p.read_all(), lambda: p.apply([first(A, ONE)])):
        with pytest.raises(Permanent, match="TSIG key rejected") as err:
            call()
        assert f"{server.host}:{server.port}" in str(err.value) and ZONE in str(err.value)


def test_unknown_key_name_is_a_permanent_tsig_error(server: NamedServer) -> None:
    p = Rfc2136Provider(ZONE, Rfc2136Config(server.host, server.port, key_name="nobody"), key_secret=server.key_secret)
    with pytest.raises(Permanent, match="TSIG key rejected"):
        p.read([A])


def test_clock_skew_is_badtime(server: NamedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    p = Rfc2136Provider(ZONE, Rfc2136Config(server.host, server.port, key_file=server.key_file))
    monkeypatch.setattr(rfc2136_tsig, "clock", lambda: time.time() - 3600)  # an hour behind: beyond the fudge
    with pytest.raises(Permanent, match="clock skew"):
        p.read([A])


def test_zone_not_served_is_permanent(server: NamedServer) -> None:
    p = Rfc2136Provider("elsewhere.test.", Rfc2136Config(server.host, server.port, key_file=server.key_file))
    with pytest.raises(Permanent, match=r"elsewhere\.test") as err:
        p.apply([first(key("a.elsewhere.test"), ONE)])
    assert "REFUSED" in str(err.value) or "NOTAUTH" in str(err.value)


def test_server_down_is_retryable() -> None:
    port = free_port()  # nothing listens there
    p = Rfc2136Provider(ZONE, Rfc2136Config("127.0.0.1", port, key_name="k", timeout=1), key_secret="b25l")
    for call in (lambda: p.read([A]), lambda: p.read_all(), lambda: p.apply([first(A, ONE)])):
        with pytest.raises(ProviderUnavailable) as err:
            call()
        assert err.value.retry_after > 0 and f"127.0.0.1:{port}" in str(err.value)


def test_an_invalid_record_set_sends_nothing(server: NamedServer, provider: Rfc2136Provider) -> None:
    from dnsplane.errors import InvalidPlan

    with pytest.raises(InvalidPlan):
        provider.apply([first(A, ONE), first(key("b.demo.test"), rs(member("x", "192.0.2.1", weight=0)))])
    serial = server.soa_serial()
    assert provider.read_all() == {} and server.soa_serial() == serial


# -- one endpoint never blocks the others; writes that prove themselves; message ids -----------


def big(n: int, id_len: int = 8, salt: str = "", addresses: int = 90) -> RecordSet:
    """A record set of ``n`` targets whose ids are ``id_len`` characters long, sharing ``addresses``
    TEST-NET addresses (BIND 9.18 keeps at most 100 records of one type at a name by default)."""
    nets = ("192.0.2", "198.51.100", "203.0.113")
    return rs(*(member(f"{salt}{i:0{id_len}d}", f"{nets[i % addresses % 3]}.{i % addresses + 1}", weight=1 + i % 7)
                for i in range(n)))


def add_by_hand(server: NamedServer, *records: tuple[str, int, str, str]) -> None:
    u = server.update()
    for name, ttl, rtype, data in records:
        u.add(name, ttl, rtype, data)
    server.send(u)


def test_a_wildcard_neither_blocks_first_writes_nor_the_repair_of_an_emptied_endpoint(
    server: NamedServer, provider: Rfc2136Provider
) -> None:
    emptied, new = key("emptied.demo.test"), [key(f"new-{i}.demo.test") for i in range(3)]
    provider.apply([first(emptied, ONE)])
    add_by_hand(server, ("*.demo.test.", 300, "A", "198.51.100.99"), ("*.demo.test.", 300, "TXT", "hello"))
    u = server.update()
    u.delete(emptied.name, "A")  # a person empties it; the wildcard now answers for it
    server.send(u)
    fresh = another(server)
    seen = fresh.read([emptied, *new])
    # the wildcard's synthesized answers are not taken for the names' own records or markers
    assert seen[emptied] == Observed(None, marker(1, ONE))
    assert all(seen[k] == Observed(None, None) for k in new)
    results = fresh.apply([Write(emptied, marker(1, ONE), ONE, marker(2, ONE), None)] + [first(k, ONE) for k in new])
    assert results == [Applied(emptied)] + [Applied(k) for k in new]
    after = another(server).read([emptied, *new])
    assert after[emptied] == Observed(ONE, marker(2, ONE))
    assert all(after[k] == Observed(ONE, marker(1, ONE)) for k in new)


def test_an_endpoint_too_big_for_one_message_is_rejected_and_the_others_written(
    server: NamedServer, provider: Rfc2136Provider
) -> None:
    small = [key(f"small-{i}.demo.test") for i in range(4)]
    huge, longer = key("huge.demo.test"), key("longer.demo.test")
    large = big(660, id_len=40)
    # 660 targets: the first write fits, a change to other content does not (old and new JSON in one message)
    assert provider.apply([first(huge, large)]) == [Applied(huge)]
    other = big(660, id_len=40, salt="x")
    writes = [first(small[0], ONE), first(small[1], ONE),
              Write(huge, marker(1, large), other, marker(2, other), large),
              # its marker TXT alone is past 65,535 bytes: past one record before marker_txt (was struct.error), now
              # in records of 3,900 characters, past one message
              first(longer, big(800, id_len=60)),
              first(small[2], ONE), first(small[3], ONE)]
    results = provider.apply(writes)
    assert [r for r in results if not isinstance(r, Rejected)] == [Applied(k) for k in small]
    rejected = [r for r in results if isinstance(r, Rejected)]
    assert [r.key for r in rejected] == [huge, longer]
    assert all("one DNS message" in r.reason for r in rejected)
    seen = another(server).read([*small, huge, longer])
    assert all(seen[k] == Observed(ONE, marker(1, ONE)) for k in small)
    assert seen[huge] == Observed(large, marker(1, large)), "nothing of a rejected endpoint is written"
    assert seen[longer] == Observed(None, None)


def test_an_endpoint_the_server_refuses_alone_is_rejected_and_the_others_written(
    server: NamedServer, provider: Rfc2136Provider
) -> None:
    """BIND 9.18 refuses (SERVFAIL, "too many records") more than 100 records of one type at a name."""
    small = [key(f"small-{i}.demo.test") for i in range(3)]
    crowded = key("crowded.demo.test")
    many = big(150, addresses=150)
    results = provider.apply([first(small[0], ONE), first(crowded, many), first(small[1], ONE), first(small[2], ONE)])
    assert [r for r in results if not isinstance(r, Rejected)] == [Applied(k) for k in small]
    (rejected,) = [r for r in results if isinstance(r, Rejected)]
    assert rejected.key == crowded and "SERVFAIL" in rejected.reason
    assert another(server).read([crowded])[crowded] == Observed(None, None)
    # alone in its apply too: the control message shows the server takes updates, so it is the endpoint's
    (result,) = provider.apply([first(crowded, many)])
    assert isinstance(result, Rejected)


def test_a_cname_at_the_name_rejects_the_write_and_leaves_the_marker_alone(
    server: NamedServer, provider: Rfc2136Provider
) -> None:
    aliased, fine = key("aliased.demo.test"), key("fine.demo.test")
    provider.read([aliased, fine])  # this writer's fresh view: nothing there
    add_by_hand(server, ("aliased.demo.test.", 300, "CNAME", "ns1.demo.test."))
    # the view is stale: the UPDATE goes out; only its "no CNAME" prerequisite stops BIND from applying
    # the marker alone (it ignores A records added at a CNAME's name)
    results = provider.apply([first(aliased, ONE), first(fine, ONE)])
    assert results[1] == Applied(fine)
    assert isinstance(results[0], Rejected) and "CNAME" in results[0].reason
    q = dns.message.make_query(marker_name(aliased), "TXT")
    answer = dns.query.tcp(q, server.host, port=server.port, timeout=5)
    assert not answer.answer, "the marker must not say written while the name answers nothing"
    # a fresh writer sees the CNAME in its read and rejects without sending
    again = another(server)
    (result,) = again.apply([first(aliased, ONE)])
    assert isinstance(result, Rejected) and again.writes == 0


@pytest.mark.parametrize("shape", ["dname", "delegation"])
def test_a_name_the_server_would_not_serve_is_rejected(
    server: NamedServer, provider: Rfc2136Provider, shape: str
) -> None:
    if shape == "dname":
        add_by_hand(server, ("moved.demo.test.", 300, "DNAME", "elsewhere.test."))
        k = key("api.moved.demo.test")
    else:
        add_by_hand(server, ("sub.demo.test.", 300, "NS", "ns.elsewhere.test."))
        k = key("api.sub.demo.test")
    for reader in (provider, another(server)):
        if reader is not provider:
            reader._reader.zone_rrs = 0  # read by AXFR: the zone's records show the same
        (result,) = reader.apply([first(k, ONE)])
        assert isinstance(result, Rejected), result
        assert ("DNAME" if shape == "dname" else "delegation") in result.reason
    assert provider.writes == 0


def test_message_ids_are_distinct_and_never_zero_across_the_wrap(server: NamedServer) -> None:
    p = another(server)
    ch = p._channel
    for counter in (65_533, 65_534, 65_535, 65_536, 0, 1, 2**20, -5):
        ch._next_id = counter
        ids = ch.ids(6) + ch.ids(3)
        assert len(set(ids)) == 9 and all(0 < i <= 65_535 for i in ids), (counter, ids)
    ch._next_id = 12_345
    full = ch.ids(65_535)
    assert sorted(full) == list(range(1, 65_536))
    with pytest.raises(ValueError):
        ch.ids(65_536)


def test_a_pipelined_read_across_the_id_wrap(server: NamedServer, provider: Rfc2136Provider) -> None:
    keys = [key(f"wrap-{i}.demo.test") for i in range(10)]
    provider.apply([first(k, ONE) for k in keys])
    reader = another(server)
    for start in (65_518, 65_530, 65_535):
        reader._channel._next_id = start  # the counter after ~65,518 messages
        seen = reader.read(keys)  # SOA, 20 queries pipelined and wildcard probes, SOA: across 65535 -> 1
        assert all(seen[k] == Observed(ONE, marker(1, ONE)) for k in keys)
    reader._channel._next_id = 65_534
    assert reader.apply([Write(k, marker(1, ONE), TWO, marker(2, TWO), ONE) for k in keys]) == [
        Applied(k) for k in keys]


@pytest.mark.parametrize("shape", ["dname", "delegation"])
def test_a_write_that_lands_unserved_is_read_back_undone_and_rejected(
    server: NamedServer, provider: Rfc2136Provider, shape: str
) -> None:
    """A DNAME or a delegation added above a name between the read and the write: no prerequisite can
    say "no DNAME above", the server takes the write, the read-back sees the name not served, the write
    is undone (no marker says written) and the endpoint is Rejected; the other endpoint is written."""
    k, fine = key("api.moved.demo.test"), key("fine.demo.test")
    provider.read([k, fine])  # this writer's fresh view: nothing above api.moved
    if shape == "dname":
        add_by_hand(server, ("moved.demo.test.", 300, "DNAME", "elsewhere.test."))
    else:
        add_by_hand(server, ("moved.demo.test.", 300, "NS", "ns.elsewhere.test."))
    results = provider.apply([first(k, ONE), first(fine, ONE)])
    assert results[1] == Applied(fine)
    assert isinstance(results[0], Rejected), results[0]
    assert ("DNAME" if shape == "dname" else "delegation") in results[0].reason
    zone = another(server).read_all()  # AXFR: the zone's own records, occluded ones included
    assert k not in zone, "the undone write left a marker behind"
    assert zone[fine] == Observed(ONE, marker(1, ONE))
    assert provider.writes == 1
