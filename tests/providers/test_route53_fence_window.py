"""The fence's window, closed by the write token, on Route 53 (ministack) and SQLite (docs/design.md "The
fence's window"; the BIND twin: tests/providers/test_rfc2136_fence_window.py).

An old writer W (an enactor holding plan 1) decides to write plan 1's content into an endpoint that holds
nothing. Its token and store reads happen (``execute.fence_read``); before its change batch reaches Route 53,
plan 2 is published, written to the endpoint by another enactor, and a person deletes the endpoint whole by
hand. The endpoint is "nothing" again, which W's change batch (CREATEs only) expects; the zone's write token
is not what W read: plan 2's change batch moved it. W's write comes back ``Conflict`` and plan 1's content
never reaches Route 53; without the token (the control) it lands after plan 2's (I2).

Two points inside the window: after W's ``fence_read`` and before its provider call (the provider's own
token read sees the move: no change batch is sent), and inside W's ``apply``, between the provider's reads
and its change batch (Route 53 itself refuses the batch's exact DELETE of the token, or its CREATE).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dnsplane import execute
from dnsplane.execute import Fenced, Interpreter, drain
from dnsplane.model import Applied, Conflict, EndpointKey, Generation, RecordSet
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Tick, WriteBatch, WriteDone
from dnsplane.providerconfig import Route53Config
from dnsplane.providers.base import Provider
from dnsplane.providers.route53 import Route53Provider
from dnsplane.store.base import Store
from dnsplane.store.sqlite import SqliteStore
from tests.fakes import ZONE, key, member, rs
from tests.providers.test_rfc2136_fence import until_write
from tests.servers.ministack import Ministack, ministack, ministack_direct  # noqa: F401 - module fixture

WINDOW = key("window.demo.test")
OLD = rs(member("lb-1", "10.0.0.1"), member("lb-2", "10.0.0.2"))
NEW = rs(member("lb-2", "10.0.0.2"), member("lb-3", "10.0.0.3"))


def held_records(p: Route53Provider, k: EndpointKey) -> RecordSet | None:
    return p.read([k])[k].records


@dataclass
class World:
    store: Store
    provider: Route53Provider  # W's
    other: Route53Provider  # the other enactor's, as another process has


@pytest.fixture
def world(ministack: Ministack, tmp_path: Path) -> Iterator[World]:  # noqa: F811
    store = SqliteStore(str(tmp_path / "plans.sqlite"))
    provider = ministack.provider(ZONE)
    other = Route53Provider(ZONE, Route53Config(provider.hosted_zone_id, endpoint_url=ministack.url),
                            budget=provider.budget)  # fmt: skip
    try:
        yield World(store, provider, other)
    finally:
        store.close()


def stalled_write(world: World, monkeypatch: pytest.MonkeyPatch, *, inside_the_apply: bool, token: bool = True
                  ) -> tuple[WriteDone, list[RecordSet | None], Enactor, Interpreter]:
    """W's write of plan 1 into the empty endpoint, with plan 2 published, written by another enactor and
    deleted whole by hand after W's ``fence_read`` (before its provider call, or inside its apply just before
    the change batch). ``token`` False: W's write carries none. Returns W's reply, what Route 53 held in
    order, W and its interpreter."""
    store, p = world.store, world.provider
    ex = Interpreter(store, p)
    now = time.time()
    assert store.publish(Generation(0), [(WINDOW, OLD)], now, "planner") == 1
    slow = Enactor("slow", ZONE)
    held = until_write(slow, Tick(now), ex, now)
    assert isinstance(held.request, WriteBatch) and [w.expect for w in held.request.writes] == [None]
    seen = [held_records(p, WINDOW)]

    def plan2_written_then_deleted() -> None:
        assert store.publish(Generation(1), [(WINDOW, NEW)], now, "planner") == 2
        fast = Enactor("fast", ZONE)
        drain(fast, Tick(now), Interpreter(store, world.other), now)
        assert fast.applied_upto == 2
        seen.append(held_records(world.other, WINDOW))
        world.other.hand_edit(WINDOW, None, None)  # a person deletes it whole
        seen.append(held_records(world.other, WINDOW))

    real_fence: Callable[[Store, Provider, WriteBatch], Fenced] = execute.fence_read
    real_change = p._change
    fired: list[str] = []

    def fence_read(s: Store, prov: Provider, cmd: WriteBatch) -> Fenced:
        fenced = real_fence(s, prov, cmd)
        if cmd is held.request and not inside_the_apply and not fired:
            fired.append("after the fence read")
            plan2_written_then_deleted()
        return fenced if token else Fenced(None, fenced.stale)

    def change(changes: list[dict[str, Any]], comment: str) -> None:
        if inside_the_apply and not fired:
            fired.append("before the change batch")
            plan2_written_then_deleted()
        real_change(changes, comment)

    monkeypatch.setattr(execute, "fence_read", fence_read)
    p._change = change  # type: ignore[method-assign]
    done = ex.run("slow", held, now)
    assert fired, "the window was not opened"
    assert isinstance(done, WriteDone), done
    seen.append(held_records(p, WINDOW))
    return done, seen, slow, ex


@pytest.mark.parametrize("inside_the_apply", [False, True], ids=["before-the-apply", "inside-the-apply"])
def test_a_write_stalled_after_its_fence_read_is_refused_by_the_write_token(
        world: World, monkeypatch: pytest.MonkeyPatch, inside_the_apply: bool) -> None:
    done, seen, slow, ex = stalled_write(world, monkeypatch, inside_the_apply=inside_the_apply)
    assert seen[:3] == [None, NEW, None]  # plan 2 written, then deleted by hand
    assert done.results == [Conflict(WINDOW, None)], done.results
    assert seen[3] is None, f"I2: plan 1's content reached Route 53 after plan 2's: {seen}"
    assert world.provider.writes == 0
    drain(slow, done, ex, time.time())  # W re-reads, finds nothing, and writes the newest plan
    assert held_records(world.provider, WINDOW) == NEW


def test_control_without_the_token_the_stalled_write_lands(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    done, seen, _, _ = stalled_write(world, monkeypatch, inside_the_apply=True, token=False)
    assert done.results == [Applied(WINDOW)]
    assert seen[3] == OLD and world.provider.writes == 1  # the race the token closes (I2)
