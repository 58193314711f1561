"""The executor's own behaviour beyond dispatch: what it logs for ``AdvanceHead``."""

from __future__ import annotations

import logging

import pytest

from dnsplane.execute import Interpreter
from dnsplane.model import Generation
from dnsplane.protocol.messages import AdvanceHead, Step
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.memory import MemoryStore


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
