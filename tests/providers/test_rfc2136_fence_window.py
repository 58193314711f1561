"""The fence's window, closed by the write token, against a real BIND9 and SQLite (docs/design.md "The
fence's window").

A ``WriteBatch`` is two calls: the store's half (``execute.fence_read``: the zone's write token, then did a
plan newer than the writer's change the endpoint?), then the provider's (``provider.apply``). An old writer
W (an enactor holding plan 1) decides to write plan 1's content into an endpoint that holds nothing. Its
token and store reads happen; before its UPDATE reaches BIND, plan 2 is published, written to the endpoint
by another enactor, and a person deletes the endpoint whole by hand. The endpoint is "nothing" again, which
is what W's prerequisites on the endpoint ("RRset does not exist", for the records and the marker) expect;
the write token does not: plan 2's write moved it, and W's UPDATE carries the token it read as a
prerequisite, so BIND refuses it and W's write comes back ``Conflict``. Without the token (the control,
the runtime before it read one) BIND applies it, and plan 1's content is served after plan 2's (I2), the
race the simulator found (``tests/sim/test_hand_edits.py``, hand-edits seeds 5357 and 8896).

The stall between the two halves (a request's way to the provider, a retransmitted TCP segment, a paused
thread) is made explicit and deterministic: ``execute.fence_read``, which ``_write_batch`` looks up by its
global name, is wrapped, and the other enactor, the publication and the hand deletion run inside the
wrapper, right after (the window) or right before (the fence's own case) the real token and store reads
for W's batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dns.rcode
import pytest

from dnsplane import execute
from dnsplane.execute import Fenced, Interpreter, drain
from dnsplane.model import Conflict, EndpointKey, Generation, marker_name
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Tick, WriteBatch, WriteDone
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.base import TOKEN_ABSENT, Applied, Provider
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
    tokens: list[str | None]  # the token W's fence read, and the zone's token when W's UPDATE left


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
        world: World, monkeypatch: pytest.MonkeyPatch, *, plan2_after_the_store_read: bool,
        token: bool = True) -> tuple[WriteDone, list[set[str]], Enactor, Interpreter]:
    """Run W's write of plan 1 into the empty endpoint with plan 2 published, written by another enactor
    and deleted whole by hand inside the wrapped ``fence_read`` of W's batch: after the real token and
    store reads (the window) or before them. ``token`` False: W's write carries no token (the runtime
    before it read one). Return W's reply, what BIND served in order, W and its interpreter."""
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

    real: Callable[[Store, Provider, WriteBatch], Fenced] = execute.fence_read
    stalls: list[WriteBatch] = []

    def fence_read(s: Store, p: Provider, cmd: WriteBatch) -> Fenced:
        if cmd is not held.request or stalls:  # the other enactor's batches, and W's later ones
            return real(s, p, cmd)
        stalls.append(cmd)
        if not plan2_after_the_store_read:
            plan2_written_then_deleted()
        fenced = real(s, p, cmd)
        if plan2_after_the_store_read:  # the window: W's UPDATE is on its way to BIND
            plan2_written_then_deleted()
        world.tokens += [fenced.token, world.provider.write_token()]
        return fenced if token else Fenced(None, fenced.stale)

    monkeypatch.setattr(execute, "fence_read", fence_read)
    done = ex.run("slow", held, now)
    assert stalls == [held.request], "W's batch did not go through execute.fence_read"
    assert isinstance(done, WriteDone), done
    seen.append(served(server, WINDOW))
    return done, seen, slow, ex


def test_a_write_stalled_after_its_store_fence_read_is_refused_by_the_write_token(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/design.md "The fence's window", closed: W's store read saw no plan newer than 1; plan 2 was
    published, written and served, and deleted whole by hand before W's UPDATE reached BIND. The endpoint's
    prerequisites ("nothing there") hold again; the token W read before its store read does not (plan 2's
    write moved it): BIND refuses W's UPDATE and plan 1's content is never served. W, fed the reply,
    re-reads, finds the endpoint empty and writes plan 2's content, the newest. The simulator's twin:
    tests/sim/test_hand_edits.py (hand-edits seeds 5357 and 8896)."""
    done, seen, slow, ex = stalled_write(world, monkeypatch, plan2_after_the_store_read=True)
    assert seen[0] == set()
    assert seen[1] == addresses(NEW) and seen[2] == set()
    read, sent = world.tokens
    assert read == TOKEN_ABSENT and sent not in (None, read), world.tokens  # plan 2's write moved it
    assert done.results == [Conflict(WINDOW, None)], done.results
    assert seen[3] == set(), f"I2: plan 1's content was served after plan 2's; BIND served, in order: {seen}"
    drain(slow, done, ex, time.time())
    assert served(world.named, WINDOW) == addresses(NEW)


def test_control_without_the_token_the_stalled_write_lands_after_a_newer_plan(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same interleaving with the token taken off W's write (the runtime before it read one): BIND
    applies W's UPDATE, whose prerequisites on the endpoint ("nothing there") hold again, and plan 1's
    content is served after plan 2's (I2). The stall is real; the token, not the endpoint's prerequisites
    nor the store's fence, is what refuses the write above."""
    done, seen, _, _ = stalled_write(world, monkeypatch, plan2_after_the_store_read=True, token=False)
    assert seen[1] == addresses(NEW) and seen[2] == set()
    assert done.results == [Applied(WINDOW)], done.results
    assert seen[3] == addresses(OLD), f"BIND served, in order: {seen}"


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
