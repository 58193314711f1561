"""A change Route 53 committed but answered with a 500 is journalled (issue 14, part 5).

The enactor's batch fails (``ProviderUnavailable``), and it starts over from a fresh read; the endpoint then
already holds the plan's marker, which used to be a silent skip: ``history`` showed 3 -> 4, then 5 -> 6.
Now the enactor remembers the writes of a batch that failed without an answer and journals each one whose
exact marker the next read finds. The 500 comes from a botocore hook on ministack's real answer: the change
is committed there first, as Route 53 can commit a change whose answer is lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dnsplane.cli import main
from dnsplane.execute import Interpreter, drain
from dnsplane.model import Generation
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Tick
from dnsplane.providers.route53 import Route53Provider
from dnsplane.store.sqlite import SqliteStore
from tests.fakes import ZONE, key, member, rs
from tests.servers.ministack import Ministack, ministack, ministack_direct  # noqa: F401 - fixtures

API = key("api.demo.test")
CONTENTS = [rs(member("lb-1", "192.0.2.1")), rs(member("lb-2", "192.0.2.2")), rs(member("lb-3", "192.0.2.3"))]


class AnswerLost:
    """A botocore ``after-call`` hook: once armed, the next ChangeResourceRecordSets that Route 53 (here
    ministack) committed is answered as a 500 InternalError instead."""

    def __init__(self) -> None:
        self.armed = 0
        self.lost: list[str] = []

    def __call__(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if self.armed and http_response.status_code == 200:
            self.armed -= 1
            self.lost.append(parsed["ChangeInfo"]["Id"])
            raise ClientError({"Error": {"Code": "InternalError", "Message": "answer lost"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, model.name)


@pytest.fixture
def r53(ministack: Ministack) -> Iterator[tuple[Route53Provider, AnswerLost]]:  # noqa: F811
    p = ministack.provider(ZONE)
    hook = AnswerLost()
    p.client.meta.events.register("after-call.route53.ChangeResourceRecordSets", hook)
    yield p, hook
    p.close()


def test_a_change_committed_but_answered_500_is_journalled_as_written(
        r53: tuple[Route53Provider, AnswerLost], tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    provider, hook = r53
    store = SqliteStore(str(tmp_path / "store.sqlite"))  # the data directory's store
    ex = Interpreter(store, provider)
    enactor = Enactor("e1", ZONE)
    now = time.time()
    for g, content in enumerate(CONTENTS, start=1):
        assert store.publish(Generation(g - 1), [(API, content)], now, "planner") == g
        hook.armed = 1 if g == 2 else 0
        drain(enactor, Tick(now), ex, now)
        if g == 2:
            assert hook.lost, "the change of generation 2 was committed and its answer replaced by a 500"
            assert enactor.applied_upto == 1, "the batch failed: the enactor starts over"
            observed = provider.read([API])[API]
            assert observed.marker is not None and observed.marker.generation == 2  # committed all the same
            drain(enactor, Tick(now), ex, now)  # the next round reads it back
        assert enactor.applied_upto == g
    writes = [(e.before, e.after) for e in store.history(API) if e.action == "write"]
    assert writes == [(None, 1), (1, 2), (2, 3)], "every committed write is journalled, none twice"
    lost = [e for e in store.history(API) if e.after == 2 and e.action == "write"]
    assert "answer lost" in lost[0].detail
    assert enactor.stats["writes"] == 3 and not enactor.unanswered
    store.close()
    # and as a person reads it: `dnsplane history`
    assert main(["history", "api.demo.test", "--data-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "1 -> 2" in shown and "answer lost" in shown


def test_a_lost_answer_is_journalled_at_once_and_found_under_a_faster_writers_marker(
        r53: tuple[Route53Provider, AnswerLost], tmp_path: Any) -> None:
    """Two gaps of the first version (found by an adversarial run): the lost write lived only in the sender's
    memory (killed before its next read, nothing in the journal said a write may have landed), and another
    enactor that wrote the next plan before the sender's next read hid it (the sender looked for its exact
    marker). Now the batch's failure journals each write ``unanswered`` at once, and the next read finds the
    write committed under a later marker whose ``p=`` chain names it."""
    provider, hook = r53
    store = SqliteStore(str(tmp_path / "store.sqlite"))
    ex = Interpreter(store, provider)
    slow, fast = Enactor("e1", ZONE), Enactor("e2", ZONE)
    now = time.time()
    store.publish(Generation(0), [(API, CONTENTS[0])], now, "planner")
    drain(slow, Tick(now), ex, now)
    drain(fast, Tick(now), ex, now)
    store.publish(Generation(1), [(API, CONTENTS[1])], now, "planner")
    hook.armed = 1
    drain(slow, Tick(now), ex, now)
    assert hook.lost and slow.applied_upto == 1
    sent = [(e.before, e.after) for e in store.history(API) if e.action == "unanswered"]
    assert sent == [(1, 2)], "journalled when the batch failed, before any read says more"
    store.publish(Generation(2), [(API, CONTENTS[2])], now, "planner")
    drain(fast, Tick(now), ex, now)  # the faster enactor moves the endpoint on, over the committed 2
    assert provider.read([API])[API].marker.generation == 3  # type: ignore[union-attr]
    drain(slow, Tick(now), ex, now)  # its next read finds 3, which replaced its 2
    writes = [(e.actor, e.before, e.after) for e in store.history(API) if e.action == "write"]
    assert ("e1", 1, 2) in writes and ("e2", 2, 3) in writes, writes
    assert not slow.unanswered
    store.close()
