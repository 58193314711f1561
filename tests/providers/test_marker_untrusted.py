"""Marker text from the zone is untrusted (issue 14, part 6): whatever a zone can hold at a marker name,
reading it gives a marker, a corrupt marker or none, and a record set or none; it never raises.

Every provider that keeps markers as text reads them through ``providers/marker_txt.read`` (Route 53 after
``encoding.txt_strings``, RFC 2136 after ``marker.split_txt``); the embedded provider keeps markers as
columns (``embedded._marker``) and its record sets through ``codec``, whose ``RecordSet.from_json`` is the
one shape check for all of them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsplane.codec import decode_records
from dnsplane.model import Marker, RecordSet
from dnsplane.providers import marker_txt
from dnsplane.providers.embedded import _marker
from dnsplane.providers.rfc2136.marker import observe, txt_rdata
from dnsplane.providers.route53.encoding import parse_marker, txt_strings, unescape_name
from dnsplane.providers.route53.state import State

MARKER = '"dnsplane g=1 d=abc p=0 o=x"'
HAND_WRITTEN = {  # the three texts the issue found raising, as Route 53 lists the values
    "1e400": [MARKER, '"dnsplane-rs 0" "{\\"ttl\\":1e400,\\"members\\":[]}"'],
    "nested 3,000 deep": [MARKER, '"dnsplane-rs 0" "' + "[" * 3000 + '"'],
    "a backslash before a newline": [MARKER, '"dnsplane-rs 0" "{\\"ttl\\"\\\n:1}"'],
}


def _sets(values: list[str], name: str = "_dnsplane-a.unmanaged.example.") -> list[dict[str, object]]:
    return [{"Name": name, "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": v} for v in values]}]


def _sound(result: tuple[Marker | None, RecordSet | None]) -> None:
    marker, records = result
    assert marker is None or isinstance(marker, Marker)
    assert records is None or isinstance(records, RecordSet)


@pytest.mark.parametrize("case", HAND_WRITTEN)
def test_hand_written_marker_text_reads_as_a_marker_without_a_record_set(case: str) -> None:
    """Raised OverflowError, RecursionError and AssertionError (txt_strings' assert) before the fix, at a name
    no fleet manages as at any other (``read_all`` reads every marker name)."""
    marker, records = parse_marker(_sets(HAND_WRITTEN[case]))
    assert marker is not None and marker.generation == 1
    assert records is None
    state = State((), tuple(_sets(HAND_WRITTEN[case])))  # what the provider builds from a listing
    assert state.observed.marker == marker and state.observed.records is None


@pytest.mark.parametrize("case", HAND_WRITTEN)
def test_rfc2136_reads_the_same_texts_the_same_way(case: str) -> None:
    def wire(value: str) -> bytes:  # each string cut in pieces of 255 bytes, as a TXT on the wire holds them
        return txt_rdata([b[i : i + 255] for s in txt_strings(value) for b in [s.encode()]
                          for i in range(0, max(len(b), 1), 255)])

    rdatas = tuple(wire(v) for v in HAND_WRITTEN[case])
    observed = observe(rdatas, frozenset(), 0)
    assert observed.marker is not None and observed.marker.generation == 1
    assert observed.records is None


@pytest.mark.parametrize("text", ['{"ttl":1e400,"members":[]}', '{"ttl":30,"members":"192.0.2.1"}',
                                  '{"ttl":30,"members":[["t","192.0.2.1",1]]}', '{"ttl":30,"members":[{}]}',
                                  '{"ttl":true,"members":[]}', '{"ttl":30,"members":[],"answer":[]}', "[]", '"x"',
                                  '{"ttl":30,"members":[["t",["192.0.2.1"],1.5]]}', "[" * 3000])
def test_a_record_set_of_another_shape_is_refused_not_coerced(text: str) -> None:
    with pytest.raises((ValueError, RecursionError)):
        decode_records(text)
    assert marker_txt.read([[MARKER.strip('"')], ["dnsplane-rs 0", text]])[1] is None


# Text made of the pieces that matter to the parsers: quotes, backslashes and escapes, the marker's and
# the record-set parts' heads, JSON punctuation and numbers out of range, any character at all.
pieces = st.sampled_from(['"', "\\", "\\\n", "\\0", "\\255", "\\999", " ", "\n", "dnsplane ", "dnsplane g=",
                          "g=99999999999999999999", "d=", "p=", "o=", " r=1", "dnsplane-rs ", "dnsplane-rs 0",
                          "dnsplane-rs -1", "{", "}", "[", "]", ":", ",", '\\"ttl\\"', '\\"members\\"', "1e400",
                          "-0", "9" * 5000, "NaN", "Infinity", "null", "true", "[" * 1200])
texts = st.lists(st.one_of(pieces, st.text(max_size=20)), max_size=30).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["ttl", "members", "answer", "x"]), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.lists(texts, max_size=6))
def test_route53_marker_values_never_raise(values: list[str]) -> None:
    for v in values:
        assert all(isinstance(s, str) for s in txt_strings(v))
    _sound(parse_marker(_sets(values)))
    state = State((), tuple(_sets(values)))
    _sound((state.observed.marker, state.observed.records))
    assert isinstance(unescape_name(f"{values[0] if values else ''}.example."), str)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.binary(max_size=300), max_size=4).map(lambda ss: txt_rdata([s[:255] for s in ss])),
                max_size=5), st.binary(max_size=40))
def test_rfc2136_marker_rdatas_never_raise(rdatas: list[bytes], garbage: bytes) -> None:
    """Any TXT rdata a server can hold, and rdata cut short (a length past its end)."""
    for txt in (tuple(rdatas), (*rdatas, garbage)):
        observed = observe(txt, frozenset({"192.0.2.1"}), 30)
        _sound((observed.marker, observed.records))


@settings(max_examples=300, deadline=None)
@given(json_values, st.lists(st.lists(texts, max_size=4), max_size=5))
def test_any_json_and_any_strings_read_as_a_record_set_or_none(value: object, records: list[list[str]]) -> None:
    text = json.dumps(value)
    try:
        decoded = decode_records(text)
    except ValueError:
        decoded = None
    if decoded is not None:  # exactly what the JSON says, nothing coerced
        assert isinstance(value, dict)
        assert decoded.to_json() == {"ttl": value["ttl"], "members": value["members"],
                                     "answer": value.get("answer", "weighted")}
    _sound(marker_txt.read([[MARKER.strip('"')], ["dnsplane-rs 0", text]]))
    _sound(marker_txt.read(records))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.integers()), st.one_of(st.none(), st.text(max_size=30)),
       st.one_of(st.none(), st.text(max_size=30)), st.one_of(st.none(), st.text(max_size=30)),
       st.one_of(st.none(), st.integers()))
def test_embedded_marker_columns_never_raise(gen: int | None, digest: str | None, prev: str | None,
                                             owner: str | None, released: int | None) -> None:
    """The embedded provider keeps markers as columns, not text: any values a person can set with sqlite3
    read as a marker, a corrupt marker or none."""
    marker = _marker(gen, digest, prev, owner, released)
    assert marker is None or isinstance(marker, Marker)
