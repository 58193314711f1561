"""An endpoint emptied by hand whose marker's ``g=`` was set back, against a real BIND9, SQLite and DNS.

The race the simulator found (dns-silent with every ``corrupt`` mode, seed 2868, I2): the verifier loads
its round's snapshot (head 1); plan 2 is published and an enactor writes it; a person then deletes the
endpoint's address records and sets its marker's ``g=`` back to 1 (the marker kept, its seal broken). The
verifier's round goes on with its snapshot. ``diagnose`` used to name the state "empty" before it looked
at the seal, and "empty" is repaired at once: from head 1, plan 1's content after plan 2's had been
served, and BIND's prerequisite (the marker found, no records) holds, so it lands. Since 336ae1b a broken
seal is "marker-edited" first: repaired only in a later round, from a snapshot loaded after it was seen.

Run as the runtime runs it: the runtime's ``App`` over an RFC 2136 fleet (its SQLite store, its
``Interpreter``, its verifier's DNS view: the provider read and UDP queries to BIND), the verifier held
between its snapshot and the rest of its round by feeding it one step here. The control endpoint goes
through a second verifier with ``diagnose`` as it was before 336ae1b: the store's fence, on every write
since issue 13's sixth round, refuses the stale repair (plan 2 changed the endpoint after the snapshot);
with the fence also as it was then (none over a marker with ``p=``) the stale repair lands, so the race
is live in this setup, not only in the simulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest

from dnsplane import execute
from dnsplane.config import Fleet
from dnsplane.model import Desired, Endpoint, EndpointKey, Generation, Marker, RecordSet, Target, marker_name
from dnsplane.protocol import verifier
from dnsplane.protocol.messages import DesiredLoaded, Resolution, Tick
from dnsplane.protocol.verifier import Problem, Verifier
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.runtime.app import App, Options
from tests.fakes import ZONE, fence_only_unchained_writes, key, member, rs
from tests.servers.named import NamedServer, named  # noqa: F401 - module fixture

EMPTIED = key("api.demo.test")
CONTROL = key("control.demo.test")
TARGETS = (Target("lb-1", ("10.0.0.1",)), Target("lb-2", ("10.0.0.2",)), Target("lb-3", ("10.0.0.3",)))
OLD = rs(member("lb-1", "10.0.0.1"), member("lb-2", "10.0.0.2"))
NEW = rs(member("lb-2", "10.0.0.2"), member("lb-3", "10.0.0.3"))
_diagnose = verifier.diagnose


def empty_first(desired: Desired, seen: Resolution, head: Generation) -> Problem | None:
    """``diagnose`` as it was before 336ae1b: an empty answer or empty records named before a broken seal."""
    problem = _diagnose(desired, seen, head)
    if problem is Problem.MARKER_EDITED:
        if seen.rcode != "NOERROR" or not seen.addresses:
            return Problem.EMPTY_ANSWER
        if seen.observed.records is None or not seen.observed.records.live_members():
            return Problem.EMPTY_RECORDS
    return problem


def served(server: NamedServer, k: EndpointKey) -> set[str]:
    """The A addresses BIND answers for ``k`` (empty for NXDOMAIN or no records)."""
    r = dns.query.tcp(dns.message.make_query(k.name, "A"), server.host, port=server.port, timeout=5)
    return {rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}


def served_marker(server: NamedServer, k: EndpointKey) -> tuple[str, int]:
    """The marker BIND answers for ``k`` (the TXT record ``dnsplane g=...`` at its marker name; the
    records beside it carry the record set's description) and its TTL."""
    r = dns.query.tcp(dns.message.make_query(marker_name(k), "TXT"), server.host, port=server.port, timeout=5)
    found = [(b"".join(rd.strings).decode(), rrset.ttl) for rrset in r.answer if rrset.rdtype == dns.rdatatype.TXT
             for rd in rrset if rd.strings[0].startswith(b"dnsplane g=")]
    assert len(found) == 1, r.answer
    return found[0]


def addresses(records: RecordSet) -> set[str]:
    return {a for m in records.members for a in m.addresses}


def empty_and_set_back_by_hand(server: NamedServer, k: EndpointKey, generation: int) -> None:
    """A person, with nsupdate: deletes the endpoint's address records and sets its marker's ``g=`` back to
    ``generation`` (the rest of the marker kept, its seal no longer matching), in one UPDATE."""
    text, ttl = served_marker(server, k)
    u = server.update()
    u.delete(k.name, dns.rdatatype.A)
    u.delete(marker_name(k), dns.rdatatype.TXT, f'"{text}"')
    u.add(marker_name(k), ttl, dns.rdatatype.TXT, '"{}"'.format(re.sub(r"\bg=\d+", f"g={generation}", text)))
    server.send(u)


async def snapshot(app: App, actor: Verifier) -> DesiredLoaded:
    """Start ``actor``'s round and carry out its first request only: the snapshot it checks against."""
    loaded = await asyncio.to_thread(app.interpreter.run, actor.name, actor.handle(Tick(time.time())), time.time())
    assert isinstance(loaded, DesiredLoaded), loaded
    return loaded


def test_an_emptied_endpoint_whose_marker_was_set_back_is_not_repaired_from_an_older_snapshot(
        named: NamedServer, tmp_path: Path) -> None:  # noqa: F811
    named.reset()
    endpoints = tuple(Endpoint(k.name, "A", 30, TARGETS) for k in (EMPTIED, CONTROL))
    fleet = Fleet(ZONE, endpoints, provider=Rfc2136Config(named.host, named.port, key_file=named.key_file),
                  owner="mine")

    async def scenario() -> None:
        app = App(fleet, Options(data_dir=tmp_path))
        store, enactor = app.store, app.enactors[0]
        try:
            assert store.publish(Generation(0), [(EMPTIED, OLD), (CONTROL, OLD)], time.time(), "planner") == 1
            assert await app.feed(enactor, Tick(time.time())) is None and enactor.applied_upto == 1
            # both verifiers load their snapshot at head 1 and are held there
            control = Verifier("control-verifier", zone=ZONE, ownership=app.ownership())
            stale = await snapshot(app, app.verifier)
            stale_control = await snapshot(app, control)
            assert stale.head == stale_control.head == 1
            # plan 2 is published and written; BIND serves it, under sealed markers naming 2
            assert store.publish(Generation(1), [(EMPTIED, NEW), (CONTROL, NEW)], time.time(), "planner") == 2
            assert await app.feed(enactor, Tick(time.time())) is None and enactor.applied_upto == 2
            assert served(named, EMPTIED) == served(named, CONTROL) == addresses(NEW)
            # then a person empties both and sets their markers' g= back to 1
            for k in (EMPTIED, CONTROL):
                empty_and_set_back_by_hand(named, k, 1)
                assert served(named, k) == set()
                edited = Marker.from_text(served_marker(named, k)[0])
                assert edited is not None and edited.generation == 1 and not edited.sealed()
            hand_made = served_marker(named, EMPTIED)

            # control: the round as diagnose ran it before 336ae1b (the control endpoint alone in its
            # snapshot): "empty", repaired at once from head 1. Since the store's fence went on every write
            # (issue 13, sixth round) that repair is refused too: plan 2 changed the endpoint after the
            # snapshot (the fence's second line of defence)...
            only_control = dataclasses.replace(stale_control, desired={CONTROL: stale_control.desired[CONTROL]})
            with pytest.MonkeyPatch.context() as m:
                m.setattr(verifier, "diagnose", empty_first)
                assert await app.feed(control, only_control) is None
            assert control.last_problems[CONTROL] is Problem.EMPTY_ANSWER
            assert served(named, CONTROL) == set(), "the fence let a repair from an older snapshot through"
            refused = [e for e in store.history(CONTROL) if e.actor == "control-verifier"]
            assert [e.action for e in refused] == ["conflict"], refused
            # ... and with the fence as it was then (none over a marker with p=), BIND takes it: the race
            # is live here
            with pytest.MonkeyPatch.context() as m:
                m.setattr(verifier, "diagnose", empty_first)
                m.setattr(execute, "fence_read", fence_only_unchained_writes(execute.fence_read))
                assert await app.feed(control, only_control) is None
            assert served(named, CONTROL) == addresses(OLD), "control: the old order serves plan 1 after 2 (I2)"

            # the runtime's verifier goes on with its round at head 1: a broken seal, not "empty"
            assert await app.feed(app.verifier, stale) is None
            assert served(named, EMPTIED) != addresses(OLD), (
                "I2: plan 1's content (the round's snapshot) written after plan 2's had been served")
            assert served(named, EMPTIED) == set() and served_marker(named, EMPTIED) == hand_made, (
                "the round that first saw the hand-made state wrote over it")
            assert app.verifier.last_problems[EMPTIED] is Problem.MARKER_EDITED
            assert not [e for e in store.history(EMPTIED) if e.actor == "verifier" and e.action == "repair"]

            # the next round's snapshot (head 2) was loaded after the state was seen: repaired from it
            assert await app.feed(app.verifier, Tick(time.time())) is None
            assert served(named, EMPTIED) == addresses(NEW), "I1: the emptied endpoint not repaired to plan 2"
            repaired = Marker.from_text(served_marker(named, EMPTIED)[0])
            assert repaired is not None and repaired.sealed(), f"I4: marker not resealed: {repaired}"
            assert repaired.generation == 2 and repaired.digest == NEW.digest, f"I2: repaired as {repaired}"
            journal = [e for e in store.history(EMPTIED) if e.actor == "verifier" and e.action == "repair"]
            assert [(e.after, e.detail) for e in journal] == [(2, "marker-edited")], journal
        finally:
            app.store.close()
            app.provider.close()

    asyncio.run(scenario())
