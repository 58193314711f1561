"""``dnsplane validate`` refuses an endpoint whose write cannot fit the provider's limits, with file:line.

The limits ``config.fit_problem`` checks are the providers' own (checked here), and an endpoint it
accepts at the edge is written by a real ``named`` (first write and a change), so validate neither
refuses what works nor accepts what every later write would have rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsplane.cli import main
from dnsplane.config import (
    RFC2136_MAX_MESSAGE,
    RFC2136_MAX_RDATA,
    ROUTE53_MAX_CHARS,
    ROUTE53_MAX_RECORDS,
    ROUTE53_MAX_WEIGHTED,
    ROUTE53_TOKEN_RESERVE,
    fit_problem,
    parse_fleet,
)
from dnsplane.errors import InvalidConfig
from dnsplane.model import Marker, Member, RecordSet, Write
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.base import Applied
from dnsplane.providers.rfc2136 import Rfc2136Provider, wire
from dnsplane.providers.rfc2136 import provider as rfc2136_provider
from dnsplane.providers.route53 import batches
from dnsplane.providers.route53.token import TokenChain
from tests.servers.named import NamedServer, named  # noqa: F401 - the module's named

NETS = ("192.0.2", "198.51.100", "203.0.113")
PROVIDERS = {
    "rfc2136": "provider:\n  kind: rfc2136\n  server: 127.0.0.1\n",
    "route53": "provider:\n  kind: route53\n  hosted_zone_id: Z1\n",
    "embedded": "",
}


def fleet_text(provider: str, n: int, id_len: int = 8, addresses: int = 90, answer: str = "weighted") -> str:
    """A fleet of two normal endpoints around one with ``n`` targets (its ``name`` on line 4 + n + 3)."""
    lines = ["zone: demo.test", PROVIDERS[provider].rstrip("\n"), "targets:", "  lb-a: {addresses: [192.0.2.250]}"]
    lines = [x for x in lines if x]
    for i in range(n):
        j = i % addresses
        lines.append(f"  t{i:0{id_len}d}: {{addresses: [{NETS[j // 250]}.{j % 250 + 1}]}}")
    lines += ["endpoints:", "  - {name: api, ttl: 30, targets: [lb-a]}",
              "  - name: big", "    ttl: 30",
              "    targets: [" + ", ".join(f"t{i:0{id_len}d}" for i in range(n)) + "]",
              *([f"    policy: {{answer: {answer}}}"] if answer != "weighted" else []),
              "  - {name: www, ttl: 30, targets: [lb-a]}"]
    return "\n".join(lines) + "\n"


def big_line(text: str) -> int:
    return text.splitlines().index("  - name: big") + 1


def test_the_limits_are_the_providers_own() -> None:
    assert RFC2136_MAX_MESSAGE == rfc2136_provider._MAX_MESSAGE
    assert RFC2136_MAX_RDATA == wire.MAX_RDATA
    assert (ROUTE53_MAX_RECORDS, ROUTE53_MAX_CHARS) == (batches.MAX_RECORDS, batches.MAX_CHARS)
    assert ROUTE53_MAX_WEIGHTED == batches.MAX_WEIGHTED
    assert TokenChain("demo.test.").reserve == ROUTE53_TOKEN_RESERVE  # a batch's token changes, at most


def test_a_marker_name_over_255_octets_is_refused_for_route53_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 248-character name is a DNS name (253 at most), but ``_dnsplane-aaaa.`` before it is not."""
    name = ".".join(["x" * 60, "y" * 60, "z" * 60, "w" * 55])  # 238 characters, 248 with the zone
    text = (PROVIDERS["route53"] + "zone: demo.test\ntargets:\n  lb-a: {addresses: ['2001:db8::1']}\n"
            "endpoints:\n  - {name: api, ttl: 30, targets: [lb-a], type: AAAA}\n"
            f"  - {{name: {name}, ttl: 30, targets: [lb-a], type: AAAA}}\n")
    f = tmp_path / "fleet.yaml"
    f.write_text(text)
    assert main(["validate", str(f)]) == 2
    out = capsys.readouterr().err.replace("\n", " ")
    assert "fleet.yaml:9" in out and "is 265 octets, over the 255" in out and "Traceback" not in out
    with pytest.raises(InvalidConfig) as err:
        parse_fleet(text, "fleet.yaml")
    assert err.value.line == 9 and f"its marker's name _dnsplane-aaaa.{name}.demo.test. is 265 octets" in str(err.value)
    assert parse_fleet(text.replace("provider:\n  kind: route53\n  hosted_zone_id: Z1\n", ""))  # embedded: fine


@pytest.mark.parametrize(
    ("provider", "n", "id_len", "addresses", "answer", "fragment"),
    [
        ("rfc2136", 660, 8, 660, "weighted", "max-records-per-type"),  # 660 distinct addresses: BIND keeps 100
        ("rfc2136", 660, 40, 90, "weighted", "one DNS message"),  # a change carries the old and new JSON: past 64 KiB
        ("rfc2136", 800, 60, 90, "weighted", "one DNS\nrecord"),  # the marker TXT alone is past 65,535 bytes
        ("route53", 660, 8, 90, "all", "change batch"),  # one simple set of 660 values, old and new
        ("route53", 101, 8, 90, "weighted", "at most 100 weighted record sets"),  # Route 53's quota per name and type
    ],
)
def test_an_endpoint_that_cannot_fit_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: str, n: int, id_len: int, addresses: int,
    answer: str, fragment: str,
) -> None:
    text = fleet_text(provider, n, id_len, addresses, answer)
    with pytest.raises(InvalidConfig) as err:
        parse_fleet(text, "fleet.yaml")
    assert err.value.line == big_line(text) and "big.demo.test. A" in str(err.value)
    assert fragment.replace("\n", " ") in str(err.value)
    f = tmp_path / "fleet.yaml"
    f.write_text(text)
    assert main(["validate", str(f)]) == 2
    out = capsys.readouterr().err.replace("\n", " ")
    assert f"fleet.yaml:{big_line(text)}" in out and "Traceback" not in out


def test_fitting_endpoints_and_the_embedded_provider_are_accepted() -> None:
    assert parse_fleet(fleet_text("rfc2136", 90, 8, 90)).endpoints[1].key.name == "big.demo.test."
    assert parse_fleet(fleet_text("route53", 100, 8, 90))  # Route 53's weighted quota, exactly
    assert parse_fleet(fleet_text("route53", 200, 8, 90, "all"))
    assert parse_fleet(fleet_text("embedded", 800, 60, 660))  # no limit there
    more = "server: 127.0.0.1\n  max_records_per_type: 200"
    assert parse_fleet(fleet_text("rfc2136", 150, 8, 150).replace("server: 127.0.0.1", more))


def largest_accepted(id_len: int) -> int:
    """The most targets (ids of ``id_len`` characters, 90 addresses) validate accepts for rfc2136."""
    rfc2136 = Rfc2136Config(server="127.0.0.1")
    lo, hi = 1, 4_000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        endpoint = parse_fleet(fleet_text("embedded", mid, id_len, 90)).endpoints[1]
        if fit_problem(endpoint, rfc2136) is None:
            lo = mid
        else:
            hi = mid - 1
    return lo


@pytest.fixture
def provider(named: NamedServer) -> Iterator[Rfc2136Provider]:  # noqa: F811
    named.reset()
    p = Rfc2136Provider(named.zone, Rfc2136Config(named.host, named.port, key_file=named.key_file))
    yield p
    p.close()


def test_what_validate_accepts_at_the_edge_a_real_named_writes(provider: Rfc2136Provider) -> None:
    n = largest_accepted(40)
    assert 100 < n < 1_000
    endpoint = parse_fleet(fleet_text("embedded", n, 40, 90)).endpoints[1]

    def content(weight: int) -> RecordSet:  # 4-digit weights: the worst case validate assumes
        return RecordSet.of(30, [Member(t.id, t.addresses, weight + i % 3) for i, t in enumerate(endpoint.targets)])

    old, new = content(1000), content(1003)
    m1 = Marker.after(None, 1, old.digest)  # type: ignore[arg-type]
    m2 = Marker.after(m1, 2, new.digest)  # type: ignore[arg-type]
    assert provider.apply([Write(endpoint.key, None, old, m1)]) == [Applied(endpoint.key)]
    assert provider.apply([Write(endpoint.key, m1, new, m2, old)]) == [Applied(endpoint.key)]
