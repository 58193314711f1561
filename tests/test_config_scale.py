"""Fleet files at scale: endpoint ranges (``name: "t{1..500}"``) expand to exactly the endpoints written out
one by one, every range mistake is refused at its line, and the fast YAML path changes nothing a user sees."""

from __future__ import annotations

import gc

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsplane.config import MAX_RANGE, parse_fleet
from dnsplane.errors import InvalidConfig

HEAD = """zone: big.test.
defaults:
  ttl: 30
targets:
  lb-1: {addresses: [192.0.2.1]}
  lb-2: {addresses: [192.0.2.2]}
  v6: {addresses: ["2001:db8::1"]}
endpoints:
  - name: api
    targets: [lb-1]
"""


def fleet(*entries: str) -> str:
    return HEAD + "".join(entries)


def entry(name: str, targets: str = "[lb-1, lb-2]", extra: str = "") -> str:
    return f'  - name: "{name}"\n    targets: {targets}\n{extra}'


def refused(text: str) -> InvalidConfig:
    with pytest.raises(InvalidConfig) as caught:
        parse_fleet(text, "f.yaml")
    return caught.value


def test_a_range_gives_one_endpoint_per_number_in_order_sharing_the_entry() -> None:
    text = fleet(entry("t{8..11}.tenants", extra="    ttl: 60\n    policy: {min_targets: 2}\n"))
    endpoints = parse_fleet(text).endpoints
    assert [e.name for e in endpoints] == [
        "api.big.test.", "t8.tenants.big.test.", "t9.tenants.big.test.", "t10.tenants.big.test.",
        "t11.tenants.big.test.",
    ]
    ranged = endpoints[1:]
    shared = {(e.ttl, e.policy.min_targets, tuple(t.id for t in e.targets)) for e in ranged}
    assert shared == {(60, 2, ("lb-1", "lb-2"))}


def test_a_leading_zero_pads_every_number_to_the_first_ones_width() -> None:
    names = [e.name for e in parse_fleet(fleet(entry("n{098..101}"))).endpoints[1:]]
    assert names == ["n098.big.test.", "n099.big.test.", "n100.big.test.", "n101.big.test."]


def test_a_range_and_the_same_endpoints_written_out_are_the_same_fleet() -> None:
    ranged = parse_fleet(fleet(entry("Web-{7..12}.EU.big.test.", extra="    type: a\n")))
    written = parse_fleet(fleet(*(entry(f"web-{i}.eu", extra="    type: A\n") for i in range(7, 13))))
    assert ranged == written


@settings(max_examples=150, deadline=None)
@given(
    head=st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,6}", fullmatch=True),
    tail=st.from_regex(r"(-[a-z0-9]{1,4})?(\.[A-Za-z][a-z0-9]{0,4}){0,2}", fullmatch=True),
    lo=st.integers(0, 120),
    count=st.integers(1, 30),
    pad=st.integers(0, 3),
    absolute=st.booleans(),
)
def test_any_range_is_its_names_written_out(
    head: str, tail: str, lo: int, count: int, pad: int, absolute: bool
) -> None:
    hi = lo + count - 1
    width = len(str(lo)) + pad
    first = f"{lo:0{width}d}" if pad else str(lo)
    suffix = ".big.test." if absolute else ""
    numbers = [f"{n:0{width}d}" if pad else str(n) for n in range(lo, hi + 1)]
    ranged = parse_fleet(fleet(entry(f"{head}{{{first}..{hi}}}{tail}{suffix}")))
    written = parse_fleet(fleet(*(entry(f"{head}{n}{tail}{suffix}") for n in numbers)))
    assert ranged == written


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("t{5..1}", "the range {5..1} counts down; write the smaller number first"),
        ("t{1..3}-{1..2}", "has 2 ranges; a name takes at most one {FIRST..LAST}"),
        (f"t{{1..{MAX_RANGE + 1}}}", f"names {MAX_RANGE + 1:,} endpoints, more than {MAX_RANGE:,} in one entry"),
        ("t{0..5}-", "('t0-' of 't{0..5}-'): 't0-.big.test.' has a bad label 't0-'"),
        ("a{1..2}.big.test", "('a1.big.test' of 'a{1..2}.big.test'): 'a1.big.test' is relative to the zone"),
        # The last name is the longest: its label is checked, not only the first's.
        ("x" * 61 + "{1..100}", "has a bad label"),
        ("_dnsplane{1..2}", "labels starting with '_dnsplane' are reserved"),
        ("x{1..2}.other.", "is outside the zone big.test."),
    ],
)
def test_range_mistakes_are_refused_at_the_name(name: str, fragment: str) -> None:
    err = refused(fleet(entry(name)))
    assert err.line == 11, err
    assert fragment in str(err), err


def test_a_name_of_a_range_that_is_already_defined_is_refused_at_the_later_entry() -> None:
    err = refused(fleet(entry("a{1..3}"), entry("a2")))
    assert (err.line, "endpoints[2]: duplicate endpoint a2.big.test. A (first at line 11)") == (
        13, str(err).split(": ", 1)[1]
    )
    err = refused(fleet(entry("a2"), entry("a{1..3}")))
    assert err.line == 13 and "duplicate endpoint a2.big.test. A (first at line 11)" in str(err)


def test_a_target_that_cannot_serve_the_range_names_the_range() -> None:
    err = refused(fleet(entry("v{1..3}", targets="[v6]")))
    assert err.line == 12 and "cannot serve v1.big.test...v3.big.test. A" in str(err), err


def test_the_pure_python_composer_is_not_run_on_a_good_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """libyaml composes good files (3-8x faster); the pure-Python composer only words errors."""

    def no(*_: object) -> None:
        raise AssertionError("the pure-Python composer ran on a good file")

    monkeypatch.setattr(yaml, "SafeLoader", no)
    assert len(parse_fleet(fleet(entry("t{1..3}"))).endpoints) == 4


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("zone: a.\ntargets:\n\t- x\n", 3, "found character '\\t' that cannot start any token"),
        ("a: &x 1\nb: *y\n", 2, "found undefined alias 'y'"),
        ('zone: "\\q"\n', 1, "found unknown escape character 'q'"),
        ("x: \ud800\n", 1, "unacceptable character #xd800"),  # libyaml cannot even take this text
    ],
)
def test_yaml_errors_keep_the_pure_python_composers_words(text: str, line: int, fragment: str) -> None:
    err = refused(text)
    assert err.line == line and fragment in str(err), err


def test_the_cyclic_collector_is_back_on_after_a_parse_good_or_bad() -> None:
    assert gc.isenabled()
    parse_fleet(fleet(entry("t{1..3}")))
    assert gc.isenabled()
    refused(fleet(entry("t{3..1}")))
    assert gc.isenabled()
    gc.disable()
    try:
        parse_fleet(fleet())
        assert not gc.isenabled(), "a caller's own gc.disable() must stay"
    finally:
        gc.enable()
