"""The executor's own behaviour beyond dispatch: what it logs for ``AdvanceHead``, and the order of a
``WriteBatch``'s reads (the write token, then the store's fence)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from dnsplane.execute import Interpreter
from dnsplane.model import Desired, EndpointKey, Generation, Marker, Write, WriteResult
from dnsplane.protocol.messages import AdvanceHead, Step, WriteBatch
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.memory import MemoryStore
from tests.fakes import key, member, rs


def test_advance_head_warns_only_when_the_head_moves(caplog: pytest.LogCaptureFixture) -> None:
    """A marker ahead of the verifier's snapshot is mostly an enactor's write of a newer plan, the head
    already past it: no warning then (a single process logged thousands of false ones). A head that really
    moves (a store behind the markers) is warned about once, with where it went."""
    store = MemoryStore()
    store.advance_head(Generation(7), 0.0)
    ex = Interpreter(store, MemoryProvider("demo.test."))
    with caplog.at_level(logging.WARNING, logger="dnsplane.runtime"):
        ex.run("verifier", Step((AdvanceHead(Generation(5)), AdvanceHead(Generation(7)))), 1.0)
        assert [r for r in caplog.records if "head advanced" in r.getMessage()] == []
        ex.run("verifier", Step((AdvanceHead(Generation(9)),)), 2.0)
    moved = [r for r in caplog.records if "head advanced" in r.getMessage()]
    assert len(moved) == 1 and moved[0].fields == {"actor": "verifier", "from": 7, "to": 9}  # type: ignore[attr-defined]
    assert store.head() == 9


class Recording(MemoryProvider):
    """A memory provider that notes its reads of the write token and what each ``apply`` was given."""

    def __init__(self, zone: str, calls: list[object]) -> None:
        super().__init__(zone)
        self.calls = calls

    def write_token(self) -> str:
        self.calls.append("write_token")
        return super().write_token()

    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        self.calls.append(tuple(writes))
        return super()._apply(writes)


class RecordingStore(MemoryStore):
    def __init__(self, calls: list[object]) -> None:
        super().__init__()
        self.calls = calls

    def changed_between(self, after: Generation, upto: Generation) -> dict[EndpointKey, Desired]:
        self.calls.append("changed_between")
        return super().changed_between(after, upto)


def test_a_write_batch_reads_the_write_token_before_the_store_and_puts_it_on_every_write() -> None:
    """The fence's window (docs/design.md): the token must be read BEFORE the store, so that a plan the store
    does not show yet is written after it; every write carries it, over a chained marker too (an endpoint
    put back byte for byte is exactly what the writer read: restored-markers 34). No fence: nothing read."""
    calls: list[object] = []
    store, provider = RecordingStore(calls), Recording("demo.test.", calls)
    ex = Interpreter(store, provider)
    a, b = key("a.demo.test"), key("b.demo.test")
    one, two = rs(member("lb1", "192.0.2.1")), rs(member("lb2", "192.0.2.2"))
    provider.apply([Write(b, None, one, Marker.after(None, Generation(1), one.digest))])  # b: a chained marker
    token = provider.write_token()
    calls.clear()
    chained = Marker.after(None, Generation(1), one.digest)
    batch = (Write(a, None, one, Marker.after(None, Generation(1), one.digest)),
             Write(b, chained, two, Marker.after(chained, Generation(2), two.digest), one))
    ex.run("enactor-1", Step((), WriteBatch(batch, fence=Generation(1))), 1.0)
    assert calls[:2] == ["write_token", "changed_between"], calls
    sent = calls[2]
    assert isinstance(sent, tuple) and [w.token for w in sent] == [token, token], sent
    # no fence: nothing read, no token carried
    calls.clear()
    again = Marker.after(batch[1].marker, Generation(3), one.digest)
    ex.run("enactor-1", Step((), WriteBatch((Write(b, batch[1].marker, one, again, two),))), 2.0)
    assert "write_token" not in calls and "changed_between" not in calls, calls
    assert [w.token for w in calls[0]] == [None], calls  # type: ignore[union-attr]
