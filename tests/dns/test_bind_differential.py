"""The embedded server against BIND 9.18 on the same zone, shape by shape, on the wire.

The embedded provider holds a small zone (one-target and ``answer: all`` endpoints, so that every
answer is deterministic, their markers, a 60-address AAAA set that does not fit in 512 bytes);
the zone the embedded server serves is rendered to a zone file (SOA, NS, ``ns1``'s A, every
endpoint's records and marker TXT) and a real ``named`` serves it. Each shape of
``tests/dns/shapes.py`` (over a hundred: names that exist, do not, empty non-terminals, outside the
zone; the query types, classes and opcodes that matter; header bits; EDNS versions, payloads, DO,
options, malformed OPTs; QDCOUNT 0 and 2; 0x20 case; UDP and TCP) goes to both, and the rcode,
opcode, flags, section counts, EDNS version/DO/payload, SOA placement and echoed question must be
equal, unless the (shape, field) pair is on the list of deliberate differences in
docs/dns-protocol.md, the one source of truth: the test reads that list (and the ``named``
options the comparison runs with) from the document. A new difference fails with both answers
printed; a listed difference that no longer differs fails too, so the list stays true.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import random
import re
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from dnsplane.dns import DnsServer
from dnsplane.dns.zonetable import ZoneTable
from dnsplane.model import EndpointKey, Generation, Marker, Member, RecordSet, Write, marker_name
from dnsplane.providers.embedded import EmbeddedProvider
from tests.dns.shapes import ZONE, Shape, Summary, ask, shapes, summarize
from tests.dns.test_server import Running
from tests.servers.named import NamedServer, start_named

HOST = "127.0.0.1"
DOC = Path(__file__).resolve().parents[2] / "docs" / "dns-protocol.md"

API = EndpointKey("api." + ZONE, "A")
ENDPOINTS = {
    API: RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 1000)]),
    EndpointKey("api." + ZONE, "AAAA"): RecordSet.of(30, [Member("lb-1", ("2001:db8::1", "2001:db8::2"), 1000)],
                                                     "all"),
    EndpointKey("all." + ZONE, "A"): RecordSet.of(
        20, [Member("a", ("192.0.2.11", "192.0.2.12"), 10), Member("b", ("192.0.2.13",), 5)], "all"),
    EndpointKey("x.y.deep." + ZONE, "A"): RecordSet.of(300, [Member("lb-1", ("198.51.100.9",), 1000)]),
    EndpointKey("big." + ZONE, "AAAA"): RecordSet.of(
        60, [Member(f"t{i:02d}", (f"2001:db8::{i + 1:x}",), 10) for i in range(60)], "all"),
}


def deliberate_differences(text: str) -> list[tuple[str, str]]:
    """(shape pattern, field) pairs from the table rows of the document's deliberate-differences section."""
    section = text.split("## Deliberate differences from BIND", 1)[1].split("\n## ", 1)[0]
    pairs = []
    for line in section.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|\s*`?(\w+)`?\s*\|", line)
        if m:
            pairs.append((m.group(1), m.group(2)))
    return pairs


def named_options(text: str) -> str:
    """The ``named`` options the comparison runs with: the fenced ``named-options`` block of the document."""
    m = re.search(r"```named-options\n(.*?)```", text, re.S)
    assert m, f"{DOC} has no named-options block"
    return m.group(1)


def zone_file(provider: EmbeddedProvider) -> str:
    """The zone the embedded server serves for ``provider``, as a zone file (rendered by the server's own code)."""
    table = ZoneTable(ZONE, {}, 1)
    for key, observed in provider.read_all().items():
        table.set(key, observed)
    lines = [f"$ORIGIN {ZONE}"]
    for node in table.names.values():
        for ans in node.rrsets.values():
            for rrset in dns.message.from_wire(ans.plain[0]).answer:
                lines.append(rrset.to_text())
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, NamedServer]]:
    tmp = tmp_path_factory.mktemp("differential")
    provider = EmbeddedProvider(tmp / "dns.sqlite", ZONE)
    provider.apply([Write(k, None, rs, Marker.after(None, Generation(1), rs.digest)) for k, rs in ENDPOINTS.items()])
    text = zone_file(provider)
    named = start_named(tmp / "named", (ZONE,), zone_texts={ZONE: text},
                        options=named_options(DOC.read_text()))
    embedded = Running(DnsServer([provider], HOST, 0, rng=random.Random(1)))
    try:
        yield embedded, named
    finally:
        embedded.close()
        named.stop()
        provider.close()


def differences(ours: Summary | str, bind: Summary | str) -> dict[str, tuple[object, object]]:
    if isinstance(ours, str) or isinstance(bind, str):
        return {} if ours == bind else {"response": (ours, bind)}
    a, b = ours.fields(), bind.fields()
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def test_shapes_are_many_and_named_once() -> None:
    all_shapes = shapes(marker_name(API))
    assert len(all_shapes) >= 100
    assert len({s.id for s in all_shapes}) == len(all_shapes)


def test_embedded_matches_bind_but_for_the_listed_differences(servers: tuple[Running, NamedServer]) -> None:
    embedded, named = servers
    allowed = deliberate_differences(DOC.read_text())
    used: set[tuple[str, str]] = set()
    unexpected: list[str] = []
    all_shapes: list[Shape] = shapes(marker_name(API))
    for shape in all_shapes:
        ours = ask(HOST, embedded.port, shape)
        bind = ask(HOST, named.port, dataclasses.replace(shape, tcp=True) if shape.chaos else shape)
        fields = []
        for field in differences(summarize(ours), summarize(bind)):
            hit = [(p, f) for p, f in allowed if f == field and fnmatch.fnmatchcase(shape.id, p)]
            used.update(hit)
            if not hit:
                fields.append(field)
        if fields:
            how = "tcp" if shape.tcp else "udp, BIND over tcp" if shape.chaos else "udp"
            unexpected.append(f"{shape.id} ({how}) differs in {', '.join(fields)}\n"
                              f"  query    {shape.wire.hex()}\n"
                              f"  dnsplane {summarize(ours)}\n  BIND     {summarize(bind)}")
    stale = [pair for pair in allowed if pair not in used]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} differences from BIND not listed in {DOC}:\n" + "\n".join(unexpected))
    if stale:
        problems.append(f"listed in {DOC} but no longer different from BIND (remove the rows): {stale}")
    assert not problems, "\n".join(problems)
