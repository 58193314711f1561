"""The fence's window, an open race, against a real BIND9 and SQLite (docs/design.md "The fence's window").

A ``WriteBatch`` is two calls: the store's half (``execute.fence_read``: did a plan newer than the writer's
change the endpoint?), then the provider's (``provider.apply``). An old writer W (an enactor holding plan 1)
decides to write plan 1's content into an endpoint that holds nothing. Its store read happens; before its
UPDATE reaches BIND, plan 2 is published, written to the endpoint by another enactor, and a person deletes
the endpoint whole by hand. The endpoint is "nothing" again, which is what W's prerequisite ("RRset does not
exist", for the records and the marker) expects: BIND applies it, and plan 1's content is served after plan
2's (I2). The simulator finds the same race (``tests/sim/test_hand_edits.py``,
``test_open_race_the_fence_read_when_the_write_is_sent_leaves_a_window``, hand-edits seeds 5357 and 8896).

The stall between the two halves (a request's way to the provider, a retransmitted TCP segment, a paused
thread) is made explicit and deterministic: ``execute.fence_read``, which ``_write_batch`` looks up by its
global name, is wrapped, and the other enactor, the publication and the hand deletion run inside the
wrapper, right after (the race) or right before (the control) the real store read for W's batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dns.rcode
import pytest

from dnsplane import execute
from dnsplane.execute import Interpreter, drain
from dnsplane.model import Conflict, EndpointKey, Generation, marker_name
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Tick, WriteBatch, WriteDone
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.base import Applied
from dnsplane.providers.rfc2136 import Rfc2136Provider
from dnsplane.store.base import Store
from dnsplane.store.sqlite import SqliteStore
from tests.fakes import ZONE, key
from tests.providers.test_rfc2136_fence import NEW, OLD, addresses, served, until_write
from tests.servers.named import NamedServer, named  # noqa: F401 - module fixture

WINDOW = key("window.demo.test")


def delete_whole_by_hand(server: NamedServer, k: EndpointKey) -> None:
    """A person deletes the endpoint's records and its marker TXT with one raw UPDATE."""
    u = server.update()
    u.delete(k.name)
    u.delete(marker_name(k))
    assert server.send(u).rcode() == dns.rcode.NOERROR


@dataclass
class World:
    named: NamedServer
    store: Store
    provider: Rfc2136Provider  # W's
    other: Rfc2136Provider  # the other enactor's
    serials: list[int]  # the zone's SOA serial when W decided, and when its UPDATE left


@pytest.fixture
def world(named: NamedServer, tmp_path: pytest.TempPathFactory) -> Iterator[World]:  # noqa: F811
    named.reset()
    store = SqliteStore(str(tmp_path / "plans.sqlite"))  # type: ignore[operator]
    # one provider each, as two processes have: each keeps its own view of what it read (``fresh_for``)
    provider = Rfc2136Provider(ZONE, Rfc2136Config(named.host, named.port, key_file=named.key_file))
    other = Rfc2136Provider(ZONE, Rfc2136Config(named.host, named.port, key_file=named.key_file))
    try:
        yield World(named, store, provider, other, [])
    finally:
        provider.close()
        other.close()
        store.close()


def stalled_write(
        world: World, monkeypatch: pytest.MonkeyPatch, *,
        plan2_after_the_store_read: bool) -> tuple[WriteDone, list[set[str]], Enactor, Interpreter]:
    """Run W's write of plan 1 into the empty endpoint with plan 2 published, written by another enactor
    and deleted whole by hand inside the wrapped ``fence_read`` of W's batch: after the real store read
    (the window) or before it (the control). Return W's reply, what BIND served in order, W and its
    interpreter."""
    server, store, other = world.named, world.store, world.other
    ex = Interpreter(store, world.provider)
    now = time.time()
    assert store.publish(Generation(0), [(WINDOW, OLD)], now, "planner") == 1
    # W decides generation 1's write (the endpoint is empty) and is held before its request
    slow = Enactor("slow", ZONE)
    held = until_write(slow, Tick(now), ex, now)
    assert isinstance(held.request, WriteBatch) and held.request.fence == 1
    assert [(w.key, w.expect) for w in held.request.writes] == [(WINDOW, None)]
    seen: list[set[str]] = [served(server, WINDOW)]
    world.serials.append(server.soa_serial())

    def plan2_written_then_deleted() -> None:
        assert store.publish(Generation(1), [(WINDOW, NEW)], now, "planner") == 2
        fast = Enactor("fast", ZONE)
        drain(fast, Tick(now), Interpreter(store, other), now)
        assert fast.applied_upto == 2
        seen.append(served(server, WINDOW))
        assert seen[-1] == addresses(NEW), "plan 2 was not served before the hand deletion"
        delete_whole_by_hand(server, WINDOW)
        seen.append(served(server, WINDOW))
        assert seen[-1] == set()

    real: Callable[[Store, WriteBatch], dict[EndpointKey, Generation]] = execute.fence_read
    stalls: list[WriteBatch] = []

    def fence_read(s: Store, cmd: WriteBatch) -> dict[EndpointKey, Generation]:
        if cmd is not held.request or stalls:  # the other enactor's batches, and W's later ones
            return real(s, cmd)
        stalls.append(cmd)
        if not plan2_after_the_store_read:
            plan2_written_then_deleted()
        stale = real(s, cmd)
        if plan2_after_the_store_read:  # the window: W's UPDATE is on its way to BIND
            plan2_written_then_deleted()
        world.serials.append(server.soa_serial())
        return stale

    monkeypatch.setattr(execute, "fence_read", fence_read)
    done = ex.run("slow", held, now)
    assert stalls == [held.request], "W's batch did not go through execute.fence_read"
    assert isinstance(done, WriteDone), done
    seen.append(served(server, WINDOW))
    return done, seen, slow, ex


def test_open_race_a_write_stalled_after_its_store_fence_read_lands_after_a_newer_plan(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OPEN RACE, shown as it is: docs/design.md "The fence's window". W's store read saw no plan newer
    than 1; plan 2 was published, written and served, and deleted whole by hand before W's UPDATE reached
    BIND, whose prerequisite ("nothing there") holds again: plan 1's content is served after plan 2's (I2).
    The simulator's twin: tests/sim/test_hand_edits.py,
    ``test_open_race_the_fence_read_when_the_write_is_sent_leaves_a_window``. This test turns red the day a
    provider-side write token (for RFC 2136, a prerequisite on the SOA serial read before the fence) closes
    the window; then assert the control's outcome here instead."""
    done, seen, _, _ = stalled_write(world, monkeypatch, plan2_after_the_store_read=True)
    assert seen[0] == set()
    assert seen[1] == addresses(NEW) and seen[2] == set()
    assert done.results == [Applied(WINDOW)], done.results
    assert seen[3] == addresses(OLD), (
        f"I2 (open race): plan 1's content {addresses(OLD)} is served after plan 2's {addresses(NEW)} was; "
        f"BIND served, in order: {seen}. If this fails, the fence's window was closed: make this test "
        "assert the control's outcome")
    # what the design's write token would use: the zone's SOA serial moved in the window (BIND raises it
    # on every UPDATE, the hand deletion's included), while the endpoint went back to "nothing"
    before, sent = world.serials
    assert sent > before, world.serials


def test_control_plan_2_published_before_the_store_read_is_fenced(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same interleaving with plan 2 published, written and deleted before W's store read: the fence
    sees plan 2 and W's write is not sent. The window, not the fence, lets the race through."""
    done, seen, slow, ex = stalled_write(world, monkeypatch, plan2_after_the_store_read=False)
    assert seen[1] == addresses(NEW) and seen[2] == set()
    assert done.results == [Conflict(WINDOW, None, newer=Generation(2))], done.results
    assert seen[3] == set(), "W's write of plan 1 was sent although the fence saw plan 2"
    # W, fed the fenced reply, re-reads, finds the endpoint empty, and writes plan 2's content, never plan 1's
    drain(slow, done, ex, time.time())
    assert served(world.named, WINDOW) == addresses(NEW)
