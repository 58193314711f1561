"""The store's fence on a write into an endpoint without a marker, against a real BIND9 and SQLite.

The race the simulator found (slow-reads 67, 565, 759; hand-edits 3543, 5357): an enactor reads an endpoint
and finds nothing there; before its write is sent, a newer plan is published and written by another
enactor, and a person deletes the endpoint whole by hand. The endpoint is "nothing" again, equal by value
to what the slow enactor read, so BIND's prerequisite ("no such records, no marker") holds and the old
write would land: the older plan's content served after the newer one's (I2). With the fence
(``WriteBatch.fence``) the interpreter asks the store, in the write's own step, whether a plan newer than
the writer's changed the endpoint, and does not send the write.

The slow enactor is held between its decision and its write by running its steps one at a time here
(the runtime runs each step in a later thread call: a pause, a GC or another process can fall there).
The control endpoint is written with the fence taken out, on the same BIND: the stale write lands.
"""

from __future__ import annotations

import time

import dns.message
import dns.query
import dns.rdatatype
import pytest

from dnsplane import execute
from dnsplane.execute import Interpreter, drain
from dnsplane.model import Conflict, EndpointKey, Generation, RecordSet, marker_name
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Event, Step, Tick, WriteBatch, WriteDone
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.rfc2136 import Rfc2136Provider
from dnsplane.store.sqlite import SqliteStore
from tests.fakes import ZONE, key, member, rs
from tests.servers.named import NamedServer, named  # noqa: F401 - module fixture

FENCED = key("fenced.demo.test")
CONTROL = key("control.demo.test")
OLD = rs(member("lb-1", "10.0.0.1"), member("lb-2", "10.0.0.2"))
NEW = rs(member("lb-2", "10.0.0.2"), member("lb-3", "10.0.0.3"))


def served(server: NamedServer, k: EndpointKey) -> set[str]:
    """The A addresses BIND answers for ``k`` (empty for NXDOMAIN or no records)."""
    r = dns.query.tcp(dns.message.make_query(k.name, "A"), server.host, port=server.port, timeout=5)
    return {rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}


def addresses(records: RecordSet) -> set[str]:
    return {a for m in records.members for a in m.addresses}


def delete_whole_by_hand(server: NamedServer, k: EndpointKey) -> None:
    """A person deletes the endpoint's records and its marker TXT."""
    u = server.update()
    u.delete(k.name)
    u.delete(marker_name(k))
    server.send(u)


def until_write(actor: Enactor, event: Event, ex: Interpreter, now: float) -> Step:
    """Run the actor's steps until the one that sends a ``WriteBatch``; return it, not run."""
    step = actor.handle(event)
    while not isinstance(step.request, WriteBatch):
        reply = ex.run(actor.name, step, now)
        assert reply is not None, "the enactor finished without writing"
        step = actor.handle(reply)
    return step


def test_a_stale_write_into_an_endpoint_deleted_whole_by_hand_is_not_sent(
        named: NamedServer, tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    named.reset()
    store = SqliteStore(str(tmp_path / "plans.sqlite"))  # type: ignore[operator]
    # one provider each, as two processes have: each keeps its own view of what it read (``fresh_for``)
    provider = Rfc2136Provider(ZONE, Rfc2136Config(named.host, named.port, key_file=named.key_file))
    other = Rfc2136Provider(ZONE, Rfc2136Config(named.host, named.port, key_file=named.key_file))
    ex = Interpreter(store, provider)
    now = time.time()
    try:
        assert store.publish(Generation(0), [(FENCED, OLD), (CONTROL, OLD)], now, "planner") == 1
        # the slow enactor decides generation 1's writes (both endpoints empty) and is held before sending
        slow = Enactor("slow", ZONE)
        held = until_write(slow, Tick(now), ex, now)
        assert isinstance(held.request, WriteBatch) and held.request.fence == 1
        assert {w.key for w in held.request.writes} == {FENCED, CONTROL}
        # generation 2 is published and written by another enactor; then a person deletes both whole
        assert store.publish(Generation(1), [(FENCED, NEW), (CONTROL, NEW)], now, "planner") == 2
        fast = Enactor("fast", ZONE)
        drain(fast, Tick(now), Interpreter(store, other), now)
        assert fast.applied_upto == 2
        assert served(named, FENCED) == served(named, CONTROL) == addresses(NEW)
        delete_whole_by_hand(named, FENCED)
        delete_whole_by_hand(named, CONTROL)
        assert served(named, FENCED) == served(named, CONTROL) == set()

        # control, the fence taken out: BIND's prerequisite holds on "nothing", the old content lands (I2)
        control = WriteBatch(tuple(w for w in held.request.writes if w.key == CONTROL), fence=1)
        with monkeypatch.context() as m:
            m.setattr(execute, "fence_read", lambda *a: execute.NOT_FENCED)  # as before the fence and the token
            control_done = ex.run("slow", Step((), control), now)
        assert isinstance(control_done, WriteDone)
        assert served(named, CONTROL) == addresses(OLD)

        # with the fence: not sent, and the reply names the newer plan
        fenced = WriteBatch(tuple(w for w in held.request.writes if w.key == FENCED), fence=1)
        done = ex.run("slow", Step((), fenced), now)
        assert isinstance(done, WriteDone)
        assert done.results == [Conflict(FENCED, None, newer=Generation(2))]
        assert served(named, FENCED) == set()

        # the enactor itself: fed the fenced reply, it re-reads, finds the endpoint still empty, and
        # writes the newest plan's content (MarkersRead.newer), never generation 1's
        drain(slow, WriteDone(now, [*control_done.results, *done.results]), ex, now)
        assert served(named, FENCED) == addresses(NEW)
        marker = provider.read([FENCED])[FENCED].marker
        assert marker is not None and marker.generation == 2
        journal = [e for e in store.history(FENCED) if e.actor == "slow" and e.action == "conflict"]
        assert journal and "plan 2 changed the endpoint" in journal[0].detail
    finally:
        provider.close()
        other.close()
        store.close()
