"""The planner after a failed ``Publish`` (issue 8: "after a full disk was freed the planner published
nothing more"). The store raised ``sqlite3.OperationalError`` ("database or disk is full"), which
``Interpreter.run`` let out: the planner never heard back and stayed busy. Now the publish ends in
``Failed``; the planner requeues what it was publishing and publishes it at its next tick."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from dnsplane.model import EndpointKey, Generation, RecordSet
from dnsplane.protocol.messages import Failed, Tick
from dnsplane.protocol.planner import Planner
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")


def test_a_publish_that_raised_is_published_at_the_next_tick() -> None:
    h = Harness()
    real = h.store.publish
    full = {"disk": True}

    def publish(expect_head: Generation, changes: Sequence[tuple[EndpointKey, RecordSet]], now: float,
                planner: str, expect_at: float | None = None) -> Generation | None:
        if full["disk"]:
            raise sqlite3.OperationalError("database or disk is full")
        return real(expect_head, changes, now, planner, expect_at)

    h.store.publish = publish  # type: ignore[method-assign]
    p = Planner("planner", ZONE, (endpoint(),))
    replies = []
    reply = h.step(p, Tick(h.now))
    while reply is not None:
        replies.append(reply)
        reply = h.step(p, reply)
    assert any(isinstance(r, Failed) and "disk is full" in r.error for r in replies), replies
    assert not p.busy and h.store.head() == 0
    for _ in range(3):  # still full: every tick tries again, none wedges
        h.run(p, Tick(h.now))
        assert not p.busy
    full["disk"] = False  # freed
    h.run(p, Tick(h.now))
    assert h.store.head() == 1
    assert API in h.store.desired([API], h.store.head())
