"""Fleet files: good files load into the expected values; every bad input is refused at its line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st
from yaml.nodes import MappingNode, Node, ScalarNode

from dnsplane.config import DEMO_SOURCE, Fleet, demo_fleet, demo_target_ids, load_fleet, parse_fleet
from dnsplane.errors import InvalidConfig
from dnsplane.model import (
    MAX_TTL,
    MIN_TTL,
    Endpoint,
    EndpointKey,
    HealthCheck,
    Policy,
    Target,
    validate_address,
)
from dnsplane.providerconfig import Rfc2136Config

BASE_LINES = [
    "zone: demo.test",  # 1
    "defaults:",  # 2
    "  ttl: 30",  # 3
    "  policy: {min_targets: 1, max_weight_shift: 0.5, fail_open: true, rise: 2, fall: 2, answer: weighted}",  # 4
    "targets:",  # 5
    "  lb-1:",  # 6
    "    addresses: [192.0.2.11]",  # 7
    "    capacity: 100",  # 8
    '    check: {tcp: "127.0.0.1:9001"}',  # 9
    "  lb-2:",  # 10
    "    addresses: [192.0.2.12]",  # 11
    '    check: {http: "http://127.0.0.1:9002/health", expect_status: 200, timeout: 1.0}',  # 12
    "  lb-3:",  # 13
    "    addresses: [192.0.2.13]",  # 14
    "  lb-1-v6:",  # 15
    '    addresses: ["2001:db8::11"]',  # 16
    "endpoints:",  # 17
    "  - name: api",  # 18
    "    type: A",  # 19
    "    ttl: 30",  # 20
    "    targets: [lb-1, lb-2, lb-3]",  # 21
    "    policy: {min_targets: 2}",  # 22
    "  - name: api",  # 23
    "    type: AAAA",  # 24
    "    targets: [lb-1-v6]",  # 25
]
BASE = "\n".join(BASE_LINES) + "\n"


def edited(changes: dict[int, str]) -> str:
    """BASE with 1-based line n replaced by changes[n] (which may hold several lines)."""
    lines = list(BASE_LINES)
    for n, text in changes.items():
        lines[n - 1] = text
    return "\n".join(lines) + "\n"


LB1 = Target("lb-1", ("192.0.2.11",), 100, HealthCheck("tcp", host="127.0.0.1", port=9001))
LB2 = Target("lb-2", ("192.0.2.12",), 100, HealthCheck("http", url="http://127.0.0.1:9002/health"))
LB3 = Target("lb-3", ("192.0.2.13",), 100, None)
LB1V6 = Target("lb-1-v6", ("2001:db8::11",), 100, None)


def test_good_file_loads_into_expected_values() -> None:
    fleet = parse_fleet(BASE, "good.yaml")
    assert fleet.zone == "demo.test."
    assert fleet.source == "good.yaml"
    assert fleet.endpoints == (
        Endpoint("api.demo.test.", "A", 30, (LB1, LB2, LB3), Policy(min_targets=2)),
        Endpoint("api.demo.test.", "AAAA", 30, (LB1V6,), Policy()),
    )
    assert list(fleet.targets()) == ["lb-1", "lb-2", "lb-3", "lb-1-v6"]
    assert fleet.endpoint(EndpointKey("api.demo.test.", "AAAA")).targets == (LB1V6,)
    assert fleet.endpoint("API.demo.test").rtype == "A"
    with pytest.raises(KeyError):
        fleet.endpoint("www.demo.test.")


def test_documented_example_loads() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "fleet-file.md").read_text()
    match = re.search(r"## Full example\n\n```yaml\n(.*?)```", doc, re.S)
    assert match
    fleet = parse_fleet(match.group(1), "example.yaml")
    assert [str(e.key) for e in fleet.endpoints] == [
        "api.demo.test. A",
        "www.demo.test. A",
        "api.demo.test. AAAA",
        "demo.test. A",
    ]
    api = fleet.endpoints[0]
    assert api.ttl == 60 and api.policy == Policy(min_targets=2)
    assert fleet.endpoints[1].ttl == 30 and fleet.endpoints[1].policy.answer == "all"
    lb2 = fleet.targets()["lb-2"]
    assert lb2 == Target(
        "lb-2",
        ("192.0.2.12", "192.0.2.22"),
        200,
        HealthCheck("http", url="http://127.0.0.1:9002/health", expect_status=200, timeout=1.5),
    )
    assert fleet.targets()["lb-1-v6"].check == HealthCheck("tcp", host="::1", port=9001, timeout=0.5)


def test_names_and_addresses_are_normalised() -> None:
    text = edited(
        {
            1: "zone: Demo.TEST.",
            16: '    addresses: ["2001:DB8:0:0::11"]',
            18: "  - name: API.Demo.Test.",
            24: "    type: aaaa",
        }
    )
    fleet = parse_fleet(text)
    assert fleet.zone == "demo.test."
    assert [str(e.key) for e in fleet.endpoints] == ["api.demo.test. A", "api.demo.test. AAAA"]
    assert fleet.targets()["lb-1-v6"].addresses == ("2001:db8::11",)


def test_text_fields_take_scalars_as_written() -> None:
    # 1:2:3:4:5:6:7:8 is a YAML 1.1 sexagesimal integer; a text field still takes it as written.
    text = edited({16: "    addresses: [1:2:3:4:5:6:7:8]", 18: "  - name: 123"})
    fleet = parse_fleet(text)
    assert fleet.endpoints[0].name == "123.demo.test."
    assert fleet.targets()["lb-1-v6"].addresses == ("1:2:3:4:5:6:7:8",)


# (id, text, line, message fragment)
BAD: list[tuple[str, str, int, str]] = [
    # YAML itself
    ("yaml-unclosed-flow", edited({21: "    targets: [lb-1, lb-2"}), 22, "YAML syntax error"),
    ("yaml-bad-indent", edited({8: "      capacity: 100"}), 8, "YAML syntax error"),
    ("yaml-tab", edited({8: "\tcapacity: 100"}), 8, "YAML syntax error"),
    ("yaml-two-documents", "zone: a.test\n---\nzone: b.test\n", 2, "single document"),
    ("yaml-control-char", edited({9: "    check: {tcp: \x07}"}), 9, "unacceptable character"),
    ("empty-file", "# nothing here\n", 1, "the fleet file is empty"),
    ("not-a-mapping", "- zone: demo.test\n", 1, "top level: must be a mapping, got a list"),
    # duplicate keys
    ("dup-top-key", edited({17: "zone: other.test\nendpoints:"}), 17, "duplicate key 'zone' (first at line 1)"),
    (
        "dup-target-key",
        edited({8: "    capacity: 100\n    capacity: 200"}),
        9,
        "targets.lb-1: duplicate key 'capacity'",
    ),
    ("dup-flow-key", edited({22: "    policy: {min_targets: 2, min_targets: 3}"}), 22, "duplicate key 'min_targets'"),
    ("dup-target-id", edited({13: "  lb-1:"}), 13, "targets: duplicate key 'lb-1' (first at line 6)"),
    # unknown keys
    ("unknown-top", edited({1: "zone: demo.test\nzones: x"}), 2, "unknown key 'zones'"),
    ("unknown-defaults", edited({3: "  tll: 30"}), 3, "defaults: unknown key 'tll' (did you mean 'ttl'?)"),
    ("unknown-target", edited({8: "    capacty: 100"}), 8, "allowed keys: addresses, capacity, check"),
    ("unknown-check", edited({9: '    check: {tcp: "127.0.0.1:9001", expect: 200}'}), 9, "unknown key 'expect'"),
    (
        "unknown-endpoint",
        edited({20: "    tll: 30"}),
        20,
        "endpoints[0]: unknown key 'tll' (did you mean 'ttl'?); allowed keys: name, type, ttl, targets, policy",
    ),
    (
        "unknown-policy",
        edited({22: "    policy: {min_target: 2}"}),
        22,
        "endpoints[0].policy: unknown key 'min_target'",
    ),
    ("merge-key", edited({13: "  lb-3:\n    <<: {capacity: 5}"}), 14, "merge keys"),
    # missing required keys
    ("missing-zone", edited({1: "# no zone"}), 2, "top level: missing required key 'zone'"),
    ("missing-targets", "zone: a.test\nendpoints: []\n", 1, "missing required key 'targets'"),
    ("missing-name", edited({18: "  -", 19: "    type: A"}), 19, "endpoints[0]: missing required key 'name'"),
    ("missing-ttl", edited({3: "  # no ttl"}), 23, "endpoints[1]: missing required key 'ttl'"),
    ("missing-addresses", edited({14: "    capacity: 5"}), 14, "targets.lb-3: missing required key 'addresses'"),
    ("missing-check-kind", edited({9: "    check: {timeout: 1}"}), 9, "needs one of tcp"),
    # wrong types
    ("ttl-text", edited({20: "    ttl: abc"}), 20, "endpoints[0].ttl: must be an integer, got 'abc'"),
    ("ttl-quoted", edited({3: '  ttl: "30"'}), 3, "defaults.ttl: must be an integer, got '30'"),
    ("ttl-float", edited({20: "    ttl: 30.5"}), 20, "ttl: must be an integer, got 30.5"),
    ("capacity-null", edited({8: "    capacity:"}), 8, "capacity: must be an integer, got nothing (null)"),
    ("capacity-bool", edited({8: "    capacity: true"}), 8, "capacity: must be an integer, got true"),
    ("capacity-tagged", edited({8: "    capacity: !big 100"}), 8, "tagged !big"),
    ("addresses-scalar", edited({14: "    addresses: 192.0.2.13"}), 14, "addresses: must be a list"),
    ("name-list", edited({18: "  - name: [api]"}), 18, "endpoints[0].name: must be text, got a list"),
    ("fail-open-text", edited({22: '    policy: {fail_open: "yes"}'}), 22, "must be true or false, got 'yes'"),
    ("shift-text", edited({22: "    policy: {max_weight_shift: half}"}), 22, "must be a number, got 'half'"),
    ("timeout-text", edited({9: '    check: {tcp: "127.0.0.1:9001", timeout: fast}'}), 9, "must be a number"),
    ("endpoints-mapping", "zone: a.test\ntargets: {a: {addresses: [192.0.2.1]}}\nendpoints: {}\n", 3, "must be a list"),
    ("targets-list", "zone: a.test\ntargets: [a]\nendpoints: []\n", 2, "targets: must be a mapping, got a list"),
    ("defaults-null", edited({2: "defaults:", 3: "", 4: ""}), 2, "defaults: must be a mapping, got nothing"),
    # ranges
    ("ttl-zero", edited({20: "    ttl: 0"}), 20, f"must be within {MIN_TTL}..{MAX_TTL}, got 0"),
    ("ttl-too-big", edited({3: f"  ttl: {MAX_TTL + 1}"}), 3, f"got {MAX_TTL + 1}"),
    ("capacity-zero", edited({8: "    capacity: 0"}), 8, "targets.lb-1.capacity: must be at least 1, got 0"),
    ("tcp-port-range", edited({9: '    check: {tcp: "127.0.0.1:70000"}'}), 9, "port must be within 1..65535"),
    ("tcp-port-zero", edited({9: '    check: {tcp: "127.0.0.1:0"}'}), 9, "port must be within 1..65535, got 0"),
    ("tcp-no-port", edited({9: "    check: {tcp: localhost}"}), 9, "must be 'host:port'"),
    ("tcp-placeholder", edited({9: '    check: {tcp: "127.0.0.1:${port:lb-1}"}'}), 9, "unsubstituted placeholder"),
    ("http-scheme", edited({12: "    check: {http: ftp://127.0.0.1/x}"}), 12, "must be an http:// or https:// URL"),
    ("http-port", edited({12: '    check: {http: "http://127.0.0.1:99999/"}'}), 12, "bad port"),
    ("status-range", edited({12: '    check: {http: "http://h/", expect_status: 99}'}), 12, "within 100..599, got 99"),
    ("status-for-tcp", edited({9: '    check: {tcp: "h:1", expect_status: 200}'}), 9, "applies only to http"),
    ("timeout-zero", edited({9: '    check: {tcp: "h:1", timeout: 0}'}), 9, "timeout: must be more than 0"),
    ("tcp-and-http", edited({9: '    check: {tcp: "h:1", http: "http://h/"}'}), 9, "either tcp or http, not both"),
    ("min-targets-zero", edited({22: "    policy: {min_targets: 0}"}), 22, "must be at least 1, got 0"),
    ("min-targets-over", edited({22: "    policy: {min_targets: 4}"}), 22, "4 is more than its 3 targets"),
    (
        "min-targets-over-from-defaults",
        edited({4: "  policy: {min_targets: 2}"}),
        25,
        "endpoints[1].targets: policy.min_targets 2 (from defaults, line 4) is more than its 1 targets",
    ),
    ("shift-zero", edited({22: "    policy: {max_weight_shift: 0}"}), 22, "more than 0 and at most 1, got 0"),
    ("shift-over", edited({4: "  policy: {max_weight_shift: 1.5}"}), 4, "more than 0 and at most 1, got 1.5"),
    ("rise-zero", edited({22: "    policy: {rise: 0}"}), 22, "policy.rise: must be at least 1"),
    ("fall-zero", edited({4: "  policy: {fall: 0}"}), 4, "defaults.policy.fall: must be at least 1"),
    ("answer-bogus", edited({22: "    policy: {answer: random}"}), 22, "must be one of weighted, all, got 'random'"),
    ("type-cname", edited({19: "    type: CNAME"}), 19, "must be A or AAAA, got 'CNAME'"),
    # addresses
    ("address-not-ip", edited({14: "    addresses: [not-an-ip]"}), 14, "'not-an-ip' is not an IP address"),
    ("address-multicast", edited({14: "    addresses: [224.0.0.1]"}), 14, "cannot be served as a record"),
    ("address-duplicate", edited({14: "    addresses: [192.0.2.13, 192.0.2.13]"}), 14, "duplicate address"),
    ("address-mixed", edited({14: '    addresses: [192.0.2.13, "2001:db8::13"]'}), 14, "one address family"),
    ("v6-target-in-a", edited({21: "    targets: [lb-1, lb-1-v6]"}), 21, "not an IPv4 address (endpoint type A)"),
    ("v4-target-in-aaaa", edited({25: "    targets: [lb-1]"}), 25, "not an IPv6 address (endpoint type AAAA)"),
    # endpoints and their targets
    ("dup-endpoint", edited({24: "    type: A"}), 23, "duplicate endpoint api.demo.test. A (first at line 18)"),
    ("dup-target-in-endpoint", edited({21: "    targets: [lb-1, lb-2, lb-1]"}), 21, "'lb-1' is listed twice"),
    ("undefined-target", edited({21: "    targets: [lb-1, lb-2, lb-9]"}), 21, "target 'lb-9' is not defined"),
    ("empty-target-list", edited({21: "    targets: []"}), 21, "endpoints[0].targets: must not be empty"),
    ("bad-target-id", edited({13: "  'lb 3':"}), 13, "targets: id 'lb 3' must be"),
    ("outside-zone", edited({18: "  - name: api.other.test."}), 18, "api.other.test. is outside the zone demo.test."),
    ("zone-suffix-no-dot", edited({18: "  - name: api.demo.test"}), 18, "trailing dot"),
    ("bad-label", edited({18: "  - name: a..b"}), 18, "bad label ''"),
    ("reserved-label", edited({18: "  - name: _dnsplane-a.api"}), 18, "reserved"),
    ("bad-zone", edited({1: "zone: ."}), 1, "zone: must be a domain name"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_at_its_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_fleet(text, "fleet.yaml")
    err = info.value
    assert err.path == "fleet.yaml"
    assert (err.line, fragment in err.message) == (line, True), str(err)
    assert str(err).startswith(f"fleet.yaml:{line}: ")


def test_unused_targets_are_checked_but_left_out() -> None:
    fleet = parse_fleet(edited({14: "    addresses: [192.0.2.13]\n  spare: {addresses: [192.0.2.99]}"}))
    assert "spare" not in fleet.targets()
    with pytest.raises(InvalidConfig) as info:
        parse_fleet(edited({14: "    addresses: [192.0.2.13]\n  spare: {addresses: [nope]}"}))
    assert info.value.line == 15


def test_load_fleet_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(BASE)
    fleet = load_fleet(path)
    assert fleet == parse_fleet(BASE)
    assert fleet.source == str(path)


def test_load_fleet_errors_carry_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(edited({20: "    ttl: abc"}))
    with pytest.raises(InvalidConfig, match=r"fleet\.yaml:20: endpoints\[0\]\.ttl: must be an integer, got 'abc'"):
        load_fleet(str(path))


def test_load_fleet_unreadable_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig) as info:
        load_fleet(tmp_path / "missing.yaml")
    assert info.value.line == 0 and "cannot read" in info.value.message
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"zone: demo.test\n# caf\xe9\n")
    with pytest.raises(InvalidConfig) as info:
        load_fleet(path)
    assert info.value.line == 2 and "not UTF-8" in info.value.message


def test_fleet_refuses_conflicting_target_definitions_and_duplicate_endpoints() -> None:
    other_lb1 = Target("lb-1", ("192.0.2.99",))
    a = Endpoint("a.demo.test.", "A", 30, (LB1,))
    b = Endpoint("b.demo.test.", "A", 30, (other_lb1,))
    with pytest.raises(InvalidConfig, match="lb-1 has two different definitions"):
        Fleet("demo.test.", (a, b), "code")
    with pytest.raises(InvalidConfig, match="duplicate endpoint"):
        Fleet("demo.test.", (a, a), "code")


# ---- the demo fleet ------------------------------------------------------------------------------

DEMO_PORTS = {"lb-1": 9101, "lb-2": 9102, "lb-3": 9103, "lb-4": 9104}


def test_demo_fleet_loads_and_validates() -> None:
    assert demo_target_ids() == ["lb-1", "lb-2", "lb-3", "lb-4"]
    fleet = demo_fleet(DEMO_PORTS)
    assert fleet.zone == "demo.test."
    assert fleet.source == DEMO_SOURCE
    assert [str(e.key) for e in fleet.endpoints] == [
        "api.demo.test. A",
        "www.demo.test. A",
        "static.demo.test. A",
        "api.demo.test. AAAA",
    ]
    for e in fleet.endpoints:
        assert e.ttl == 5
        assert len(e.targets) >= 3
        assert e.policy.rise == 2 and e.policy.fall == 2
        assert e.policy.max_weight_shift == 1.0 and e.policy.min_targets == 1
        for t in e.targets:
            assert all(validate_address(e.rtype, a) is None for a in t.addresses)
    assert [t.id for t in fleet.endpoint("api.demo.test. A").targets] == ["lb-1", "lb-2", "lb-3"]
    assert fleet.endpoint("static.demo.test.").policy.answer == "all"
    targets = fleet.targets()
    assert targets["lb-1"].addresses == ("192.0.2.11",)
    assert targets["lb-4"].addresses == ("192.0.2.14",)
    assert targets["lb-2-v6"].addresses == ("2001:db8::12",)
    for tid, target in targets.items():
        twin = tid.removesuffix("-v6")
        assert target.check == HealthCheck("tcp", host="127.0.0.1", port=DEMO_PORTS[twin])


def test_demo_fleet_needs_every_port() -> None:
    ports = dict(DEMO_PORTS)
    del ports["lb-3"]
    with pytest.raises(InvalidConfig) as info:
        demo_fleet(ports)
    assert info.value.path == DEMO_SOURCE and info.value.line > 1
    assert "no port given for demo target 'lb-3'" in info.value.message
    with pytest.raises(InvalidConfig, match=r"port must be within 1\.\.65535"):
        demo_fleet({**DEMO_PORTS, "lb-2": 70000})


# ---- properties ----------------------------------------------------------------------------------

_labels = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_ids = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
_v4 = st.ip_addresses(v=4).map(str).filter(lambda a: validate_address("A", a) is None)
_v6 = st.ip_addresses(v=6).map(str).filter(lambda a: validate_address("AAAA", a) is None)
_timeouts = st.floats(min_value=0.001, max_value=60, allow_nan=False, allow_infinity=False)
_hosts = st.sampled_from(["127.0.0.1", "localhost", "lb.example", "::1"])
_ports = st.integers(1, 65535)


@st.composite
def _checks(draw: st.DrawFn) -> HealthCheck | None:
    kind = draw(st.sampled_from(["none", "tcp", "http"]))
    if kind == "none":
        return None
    host = draw(_hosts)
    if kind == "tcp":
        return HealthCheck("tcp", host=host, port=draw(_ports), timeout=draw(_timeouts))
    netloc = f"[{host}]" if ":" in host else host
    url = f"{draw(st.sampled_from(['http', 'https']))}://{netloc}:{draw(_ports)}/{draw(_ids)}"
    return HealthCheck("http", url=url, expect_status=draw(st.integers(100, 599)), timeout=draw(_timeouts))


@st.composite
def _policies(draw: st.DrawFn, max_min_targets: int) -> Policy:
    return Policy(
        min_targets=draw(st.integers(1, max_min_targets)),
        max_weight_shift=draw(st.floats(min_value=0.001, max_value=1.0)),
        fail_open=draw(st.booleans()),
        rise=draw(st.integers(1, 5)),
        fall=draw(st.integers(1, 5)),
        answer=draw(st.sampled_from(["weighted", "all"])),
    )


@st.composite
def fleets_and_documents(draw: st.DrawFn) -> tuple[Fleet, dict[str, Any]]:
    """A valid Fleet and a YAML document (as data) that should load into it."""
    zone_labels = draw(st.lists(_labels, min_size=1, max_size=3))
    zone = ".".join(zone_labels) + "."
    ids = draw(st.lists(_ids, min_size=2, max_size=8, unique=True))
    pool: dict[str, list[Target]] = {"A": [], "AAAA": []}
    for tid in ids:
        rtype = draw(st.sampled_from(["A", "AAAA"]))
        addresses = draw(st.lists(_v4 if rtype == "A" else _v6, min_size=1, max_size=3, unique=True))
        target = Target(tid, tuple(addresses), draw(st.integers(1, 1000)), draw(_checks()))
        pool[rtype].append(target)
    keys = draw(
        st.lists(
            st.tuples(st.lists(_labels, min_size=0, max_size=2), st.sampled_from([t for t in pool if pool[t]])),
            min_size=1,
            max_size=6,
            unique_by=lambda k: (tuple(k[0]), k[1]),
        )
    )
    default_ttl = draw(st.none() | st.integers(MIN_TTL, MAX_TTL))
    default_policy = draw(st.just(Policy()) | _policies(1))
    endpoints: list[Endpoint] = []
    docs: list[dict[str, Any]] = []
    for labels, rtype in keys:
        chosen = draw(st.lists(st.sampled_from(pool[rtype]), min_size=1, unique_by=lambda t: t.id))
        ttl = (
            draw(st.integers(MIN_TTL, MAX_TTL))
            if default_ttl is None
            else draw(st.just(default_ttl) | st.integers(1, 9))
        )
        policy = draw(st.just(default_policy) | _policies(len(chosen)))
        name = ".".join([*labels, zone[:-1]]) + "."
        endpoints.append(Endpoint(name, rtype, ttl, tuple(chosen), policy))
        doc: dict[str, Any] = {}
        if not labels:
            doc["name"] = draw(st.sampled_from(["@", name, name.upper()]))
        else:
            relative = ".".join(labels)
            ambiguous = relative == zone[:-1] or relative.endswith("." + zone[:-1])  # refused: see the docs
            doc["name"] = name if ambiguous else draw(st.sampled_from([relative, name]))
        if rtype != "A" or draw(st.booleans()):
            doc["type"] = rtype
        if ttl != default_ttl:
            doc["ttl"] = ttl
        doc["targets"] = [t.id for t in chosen]
        overrides = {
            k: getattr(policy, k) for k in Policy.__slots__ if getattr(policy, k) != getattr(default_policy, k)
        }
        if overrides:
            doc["policy"] = overrides
        docs.append(doc)
    fleet = Fleet(zone, tuple(endpoints))
    defaults: dict[str, Any] = {}
    if default_ttl is not None:
        defaults["ttl"] = default_ttl
    # defaults.policy gives the keys that differ from the model defaults, or all of them
    every_key = draw(st.booleans())
    given_policy = {
        k: getattr(default_policy, k)
        for k in Policy.__slots__
        if every_key or getattr(default_policy, k) != getattr(Policy(), k)
    }
    if given_policy:
        defaults["policy"] = given_policy
    document: dict[str, Any] = {"zone": draw(st.sampled_from([zone, zone[:-1]]))}
    if defaults:
        document["defaults"] = defaults
    document["targets"] = {tid: _target_doc(t) for tid, t in fleet.targets().items()}
    document["endpoints"] = docs
    return fleet, document


def _target_doc(t: Target) -> dict[str, Any]:
    doc: dict[str, Any] = {"addresses": list(t.addresses), "capacity": t.capacity}
    if t.check is not None:
        c = t.check
        doc["check"] = {"tcp": f"[{c.host}]:{c.port}" if ":" in c.host else f"{c.host}:{c.port}"}
        if c.kind == "http":
            doc["check"] = {"http": c.url, "expect_status": c.expect_status}
        doc["check"]["timeout"] = c.timeout
    return doc


def _dump(document: dict[str, Any], flow: bool | None) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=flow, width=1000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HypothesisHealthCheck.too_slow])
@given(fleets_and_documents(), st.sampled_from([False, None]))
def test_property_dump_then_load_yields_the_same_model(case: tuple[Fleet, dict[str, Any]], flow: bool | None) -> None:
    fleet, document = case
    assert parse_fleet(_dump(document, flow)) == fleet


def _schema_keys(root: Node) -> list[ScalarNode]:
    """Every key node whose name the schema fixes (not target ids)."""
    keys: list[ScalarNode] = []

    def mapping_keys(node: Node) -> list[tuple[ScalarNode, Node]]:
        assert isinstance(node, MappingNode)
        return list(node.value)

    for key, value in mapping_keys(root):
        keys.append(key)
        if key.value == "defaults":
            for k, v in mapping_keys(value):
                keys.append(k)
                if k.value == "policy":
                    keys.extend(pk for pk, _ in mapping_keys(v))
        elif key.value == "targets":
            for _, target in mapping_keys(value):
                for k, v in mapping_keys(target):
                    keys.append(k)
                    if k.value == "check":
                        keys.extend(ck for ck, _ in mapping_keys(v))
        elif key.value == "endpoints":
            for endpoint in value.value:
                for k, v in mapping_keys(endpoint):
                    keys.append(k)
                    if k.value == "policy":
                        keys.extend(pk for pk, _ in mapping_keys(v))
    return keys


@settings(max_examples=150, deadline=None, suppress_health_check=[HypothesisHealthCheck.too_slow])
@given(fleets_and_documents(), st.sampled_from([False, None]), st.data())
def test_property_an_unknown_key_is_refused_at_its_line(
    case: tuple[Fleet, dict[str, Any]], flow: bool | None, data: st.DataObject
) -> None:
    text = _dump(case[1], flow)
    key = data.draw(st.sampled_from(_schema_keys(yaml.compose(text))))
    mutated = text[: key.start_mark.index] + "bogus_key" + text[key.end_mark.index :]
    with pytest.raises(InvalidConfig) as info:
        parse_fleet(mutated, "m.yaml")
    assert info.value.line == key.start_mark.line + 1
    assert "unknown key 'bogus_key'" in info.value.message
    assert "allowed keys: " in info.value.message
    assert str(info.value).startswith(f"m.yaml:{key.start_mark.line + 1}: ")


# -- provider selection -----------------------------------------------------------------------------

PROVIDER_BASE = """zone: demo.test
provider:
  kind: {kind}
targets:
  lb-1: {{addresses: [192.0.2.1]}}
endpoints:
  - {{name: api, ttl: 30, targets: [lb-1]}}
"""


def test_provider_defaults_to_embedded() -> None:
    fleet = parse_fleet("zone: demo.test\ntargets:\n  lb-1: {addresses: [192.0.2.1]}\n"
                        "endpoints:\n  - {name: api, ttl: 30, targets: [lb-1]}\n")
    assert fleet.provider.kind == "embedded"


def test_provider_rfc2136_resolves_key_file_next_to_the_fleet(tmp_path: Path) -> None:
    (tmp_path / "k.key").write_text('key "k" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    f = tmp_path / "fleet.yaml"
    f.write_text(PROVIDER_BASE.format(kind="rfc2136\n  server: 127.0.0.1\n  port: 5300\n  key_file: k.key"))
    p = load_fleet(f).provider
    assert p == Rfc2136Config(server="127.0.0.1", port=5300, key_file=str(tmp_path / "k.key"))
    assert p.kind == "rfc2136" and p.timeout == 5.0  # the defaults come from the class


@pytest.mark.parametrize(
    ("kind", "line", "fragment"),
    [
        ("nope", 3, "must be one of embedded, rfc2136, route53"),
        ("rfc2136", 3, "missing required key 'server'"),
        ("rfc2136\n  server: 127.0.0.1\n  port: 0", 5, "provider.port: must be within 1..65535"),
        ("rfc2136\n  server: 127.0.0.1\n  key_file: missing.key", 5, "no such file"),
        ("route53", 3, "missing required key 'hosted_zone_id'"),
        ("route53\n  hosted_zone_id: Z1\n  server: x", 5, "unknown key 'server'"),
        ("embedded\n  port: 53", 4, "unknown key 'port'"),
        ("rfc2136\n  server: ns1.example", 4, "must be an IP address"),
    ],
)
def test_bad_provider_is_refused_with_its_line(tmp_path: Path, kind: str, line: int, fragment: str) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text(PROVIDER_BASE.format(kind=kind))
    with pytest.raises(InvalidConfig) as err:
        load_fleet(f)
    assert str(err.value).startswith(f"{f}:{line}:"), str(err.value)
    assert fragment in str(err.value)
