"""The RFC 2136 provider's zone write token (``providers/rfc2136/token.py``) against a real BIND9.

The conformance suite (test_conformance.py, the five token tests) covers the contract; these tests cover
what is particular to RFC 2136: the token is a TXT at ``_dnsplane-token.<zone>`` that no reader takes for
an endpoint, a wildcard cannot stand in for it, a hand-edited token is still compared exactly, the
messages conditional on it go before the others, and a refusal the token does not explain (it is still
where the apply's chain expects it) is the endpoints' as before, not a Conflict of every write.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from dnsplane.errors import Permanent
from dnsplane.model import EndpointKey, Observed, RecordSet, Write, marker_name
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.base import TOKEN_ABSENT, Applied, Conflict, Rejected
from dnsplane.providers.rfc2136 import Rfc2136Provider
from dnsplane.providers.rfc2136.token import token_rdatas, token_text
from dnsplane.providers.rfc2136.wire import UpdateBuilder
from dnsplane.runtime.preflight import Server, check_update
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.named import NamedServer, named, running_named  # noqa: F401 - module fixture

A, B, C, D = (key(f"{n}.demo.test") for n in "abcd")
ONE = rs(member("lb1", "192.0.2.1"))
TWO = rs(member("lb2", "192.0.2.2"))
TOKEN_NAME = "_dnsplane-token.demo.test."


@pytest.fixture
def server(named: NamedServer) -> NamedServer:  # noqa: F811 - the module's named, emptied per test
    named.reset()
    return named


@pytest.fixture
def provider(server: NamedServer) -> Iterator[Rfc2136Provider]:
    p = Rfc2136Provider(ZONE, Rfc2136Config(server.host, server.port, key_file=server.key_file))
    yield p
    p.close()


def first(k: EndpointKey, records: RecordSet, token: str | None = None) -> Write:
    return Write(k, None, records, marker(1, records), None, token)


def served_txt(server: NamedServer, name: str) -> list[bytes]:
    r = dns.query.tcp(dns.message.make_query(name, "TXT"), server.host, port=server.port, timeout=5)
    return [s for rrset in r.answer if rrset.rdtype == dns.rdatatype.TXT for rd in rrset for s in rd.strings]


def test_token_text_and_rdatas_are_inverse() -> None:
    for rdatas in [(), (b"\x20" + b"a" * 32,), (b"\x01x\x01y", b"\x02=z"), (b"\x00",), (b"\x02=a",)]:
        text = token_text(rdatas)
        assert token_rdatas(text) == tuple(sorted(rdatas)), (rdatas, text)
    assert token_text([]) == TOKEN_ABSENT
    assert token_text([b"\x03abc"]) == "abc"


def test_the_token_is_a_txt_beside_the_apex_that_no_reader_takes_for_an_endpoint(
        server: NamedServer, provider: Rfc2136Provider) -> None:
    assert provider.write_token() == TOKEN_ABSENT
    assert provider.apply([first(A, ONE)]) == [Applied(A)]
    token = provider.write_token()
    assert served_txt(server, TOKEN_NAME) == [token.encode()] and len(token) == 32
    assert provider.read_all() == {A: Observed(ONE, marker(1, ONE))}
    assert provider.write_token() == token  # reads move nothing
    # BIND's check-names refuses address records at an underscore name: no endpoint can live there
    at_token = key(TOKEN_NAME)
    assert isinstance(provider.apply([first(at_token, TWO)])[0], Rejected)
    assert provider.write_token() == token  # nothing written, nothing moved


def test_a_wildcard_txt_at_the_apex_does_not_stand_in_for_an_absent_token(
        server: NamedServer, provider: Rfc2136Provider) -> None:
    # BIND answers a query of the absent token's name with the wildcard's TXT; a prerequisite does not
    # expand wildcards (RFC 2136 §1.1.3): taken for the token, it would refuse every conditional write
    u = server.update()
    u.add("*", 300, "TXT", '"not a token"')
    server.send(u)
    assert served_txt(server, TOKEN_NAME) == [b"not a token"]
    assert provider.write_token() == TOKEN_ABSENT
    assert provider.apply([first(A, ONE, TOKEN_ABSENT)]) == [Applied(A)]
    moved = provider.write_token()
    assert moved != TOKEN_ABSENT and served_txt(server, TOKEN_NAME) == [moved.encode()]


def test_a_token_edited_by_hand_is_compared_exactly(server: NamedServer, provider: Rfc2136Provider) -> None:
    u = server.update()
    u.replace("_dnsplane-token", 0, "TXT", '"x" "y"', '"=z"')
    server.send(u)
    token = provider.write_token()
    assert token.startswith("=")
    assert provider.apply([first(A, ONE, token)]) == [Applied(A)]
    assert provider.apply([first(B, ONE, token)]) == [Conflict(B, None)]  # the write of A moved it
    assert len(provider.write_token()) == 32


def test_conditional_messages_go_first_and_a_refusal_the_token_does_not_explain_is_the_endpoints(
        server: NamedServer, provider: Rfc2136Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    provider.apply([first(D, ONE)])  # a token to expect
    token = provider.write_token()
    assert provider.read([A, B, C]) == dict.fromkeys([A, B, C], Observed(None, None))  # the provider's view
    u = server.update()  # records put at B by hand after that read: B's message is refused
    u.add(B.name, 300, "A", "192.0.2.7")
    server.send(u)
    expected: list[tuple[bytes, ...] | None] = []  # each message's token prerequisite, in the order sent
    real = UpdateBuilder.move_token

    def spy(b: UpdateBuilder, want: tuple[bytes, ...] | None, new_rdata: bytes) -> None:
        expected.append(want)
        real(b, want, new_rdata)

    monkeypatch.setattr(UpdateBuilder, "move_token", spy)
    results = provider.apply([first(C, TWO), first(A, ONE, token), first(B, TWO, token)])
    # the token did not move: B's records refused the message, A is written, C (no token) too
    assert results == [Applied(C), Applied(A), Conflict(B, None)]
    # A and B's message expected the token; refused, it wrote nothing, so A's alone expected it again;
    # C's message went last, unconditional
    assert expected == [token_rdatas(token), token_rdatas(token), None]
    assert provider.read([A, C]) == {A: Observed(ONE, marker(1, ONE)), C: Observed(TWO, marker(1, TWO))}
    assert provider.write_token() not in (token, TOKEN_ABSENT)


def test_a_refused_message_inside_a_chain_leaves_the_next_ones_expecting_the_same_token(
        server: NamedServer, provider: Rfc2136Provider) -> None:
    # 400 endpoints with record-set JSON in their marker: several messages, each conditional on the token
    # the one before it left; the first is refused (one endpoint changed by hand after the provider's read),
    # so the second expects the token as it was, and the first's other endpoints are written after it
    many = [key(f"n{i}.demo.test") for i in range(400)]
    weighted = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2", weight=3))
    provider.read(many)
    u = server.update()
    u.add(many[0].name, 300, "A", "192.0.2.7")
    server.send(u)
    token = provider.write_token()
    results = provider.apply([first(k, weighted, token) for k in many])
    assert results == [Conflict(many[0], None)] + [Applied(k) for k in many[1:]]
    assert provider.writes == len(many) - 1


@pytest.mark.parametrize("expected", [None, TOKEN_ABSENT, "0f" * 16, "=0178,023d7a"])
def test_the_token_parts_are_what_dnspython_builds(expected: str | None) -> None:
    b = UpdateBuilder(dns.name.from_text(ZONE).to_digestable())
    b.move_token(None if expected is None else token_rdatas(expected), b"\x03new")
    ref = dns.update.UpdateMessage(ZONE, id=1)
    if expected == TOKEN_ABSENT:
        ref.absent("_dnsplane-token", "TXT")
    elif expected is not None:
        ref.present("_dnsplane-token", dns.rdataset.from_rdata_list(0, [
            dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.TXT, r, 0, len(r)) for r in token_rdatas(expected)]))
    ref.replace("_dnsplane-token", 0, "TXT", '"new"')
    parsed, want = dns.message.from_wire(b.body(1)), dns.message.from_wire(ref.to_wire())
    assert isinstance(parsed, dns.update.UpdateMessage) and isinstance(want, dns.update.UpdateMessage)
    assert (parsed.prerequisite, parsed.update) == (want.prerequisite, want.update)


def test_a_policy_that_does_not_grant_the_token_is_refused_at_start(tmp_path: Path) -> None:
    # every write replaces the token: without the grant every one would be refused and its endpoint
    # quarantined, so the preflight's no-op UPDATE names the token too
    with running_named(tmp_path / "named", policy="no-token") as server:
        p = Rfc2136Provider(ZONE, Rfc2136Config(server.host, server.port, key_file=server.key_file))
        try:
            assert isinstance(p.apply([first(A, ONE)])[0], Rejected)
        finally:
            p.close()
        s = Server(ZONE, server.host, server.port, dns.tsig.Key(server.key_name, server.key_secret,
                                                                 server.algorithm), 5.0)
        with pytest.raises(Permanent, match="refuses dynamic updates"):
            check_update(s, marker_name(A), ((A.name, "A"),))
