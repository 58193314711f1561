"""The operators' controls where they are enforced (issue 12, part 1).

The freeze, in the interpreter's ``WriteGate`` (``dnsplane/execute.py``): a shut gate lets no automated
write out, whoever asks: an enactor's ``WriteBatch``, a verifier's repair (also a ``WriteBatch``), the
collector's ``Collect``; each gets a ``Failed`` naming the freeze, the provider and the store are untouched,
and the same actor writes once the gate opens. ``quiet`` tells the runtime when a freeze has taken hold:
not while a write that passed before it is in flight. An ``App`` starts with the freeze and the dials the
store holds, before any actor runs; ``dnsplane plan`` plans under the dials. The CLI's side with no
instance running is here too; a running ``up`` on a real BIND is in tests/realworld/test_freeze.py and
test_dials.py, the planner's dials in tests/protocol/test_planner_dials.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dnsplane.execute import WriteGate
from dnsplane.model import EndpointKey, Generation, Write, WriteResult
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Collect, Failed, Step, Tick
from dnsplane.protocol.planner import Planner
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.base import Freeze, OperatorAction
from dnsplane.store.sqlite import SqliteStore
from tests.protocol.harness import ZONE, Harness, endpoint

ICE = Freeze(1.0, "alice@ops", "INC-1")


def planned(n: int = 3) -> Harness:
    h = Harness()
    h.run(Planner("planner", ZONE, tuple(endpoint(f"e{i}") for i in range(n))))
    return h


def test_a_shut_gate_sends_no_write_of_an_enactor_and_it_writes_once_open() -> None:
    h = planned()
    h.interpreter.gate.set(ICE)
    e = Enactor("e1", ZONE)
    failures: list[Failed] = []
    reply = h.step(e, Tick(h.now))
    while reply is not None:
        if isinstance(reply, Failed):
            failures.append(reply)
        reply = h.step(e, reply)
    assert h.provider.writes == 0 and h.provider.read_all() == {}
    assert [f.error for f in failures] == [
        "frozen by alice@ops: INC-1 (no automated write until `dnsplane unfreeze`)"]
    assert failures[0].retryable
    assert not [j for k in h.store.desired(None, h.store.head()) for j in h.store.history(k)], "nothing journalled"

    h.interpreter.gate.set(None)
    h.run(e)
    assert h.provider.writes == 3


def test_a_shut_gate_lets_the_collector_delete_nothing() -> None:
    h = planned()
    h.run(Enactor("e1", ZONE))
    h.run(Planner("planner-2", ZONE, tuple(endpoint(f"e{i}", targets=2) for i in range(3))))  # generation 2
    h.run(Enactor("e1", ZONE))
    plans = h.store.plans()
    h.interpreter.gate.set(ICE)
    reply = h.interpreter.run("collector", Step(request=Collect(Generation(2))), h.now)
    assert isinstance(reply, Failed) and "frozen by alice@ops" in reply.error
    h.run(Collector("collector"))
    assert h.store.plans() == plans
    h.interpreter.gate.set(None)
    h.run(Collector("collector"))
    assert len(h.store.plans()) < len(plans)


class HeldProvider(MemoryProvider):
    """A provider whose ``apply`` waits for ``release``: a write in flight when the freeze comes."""

    def __init__(self) -> None:
        super().__init__(ZONE)
        self.entered, self.release = threading.Event(), threading.Event()

    def apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        self.entered.set()
        assert self.release.wait(10)
        return super().apply(writes)


def test_quiet_only_once_the_write_that_passed_before_the_freeze_is_done() -> None:
    h = planned()
    h.provider = h.interpreter.provider = held = HeldProvider()
    gate: WriteGate = h.interpreter.gate
    writer = threading.Thread(target=h.run, args=(Enactor("e1", ZONE, 1),), kwargs={"limit": 100})  # batches of one
    h.checking = False  # the monitor reads the provider from this thread while the write is held
    writer.start()
    assert held.entered.wait(10)
    gate.set(ICE)
    assert gate.freeze == ICE and not gate.quiet(), "a write is in flight: the freeze has not taken hold"
    held.release.set()
    writer.join(10)
    assert gate.quiet()
    assert held.writes == 1, "the write in flight finished; the next batch (one endpoint each) was refused"
    gate.set(None)
    assert not gate.quiet()


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnsplane.cli", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60)


def test_freeze_without_a_running_instance_is_kept_for_the_next_start(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "store.sqlite").close()
    res = cli(tmp_path, "freeze", "--reason", "maintenance window", "--by", "bob")
    assert res.returncode == 0, res.stderr
    assert "frozen at" in res.stdout and "no expiry" in res.stdout.lower()
    assert "the next `dnsplane up` starts frozen" in res.stdout
    again = cli(tmp_path, "freeze", "--reason", "other", "--by", "carol")
    assert again.returncode == 0 and "already frozen" in again.stdout and "by bob" in again.stdout
    status = cli(tmp_path, "status")
    assert "FROZEN" in status.stdout and "maintenance window" in status.stdout, status.stdout
    assert cli(tmp_path, "unfreeze", "--by", "bob").returncode == 0
    lifted = cli(tmp_path, "unfreeze")
    assert lifted.returncode == 0 and "not frozen" in lifted.stdout
    history = cli(tmp_path, "history")
    rows = [ln for ln in history.stdout.splitlines() if " bob " in ln]
    assert [("unfreeze" in r, "freeze" in r) for r in rows] == [(False, True), (True, True)], history.stdout
    assert "carol" not in history.stdout, "a freeze over a freeze is not journalled"
    store = SqliteStore(tmp_path / "store.sqlite")
    assert store.frozen() is None
    store.close()


def test_freeze_without_data_says_where_it_looked(tmp_path: Path) -> None:
    res = cli(tmp_path / "nothing", "freeze")
    assert res.returncode == 1 and "no dnsplane data in" in res.stderr and "Traceback" not in res.stderr


def test_an_app_starts_with_the_freeze_and_the_dials_the_store_holds(tmp_path: Path) -> None:
    """Read at construction, before any actor runs: a planner that planned once without the drain, or an
    enactor that wrote once before the freeze was read, would undo by hand what the operator set."""
    from dnsplane.config import demo_fleet, demo_target_ids
    from dnsplane.model import Dial
    from dnsplane.runtime.app import App, Options
    from dnsplane.store.base import OperatorAction

    store = SqliteStore(tmp_path / "store.sqlite")
    store.set_freeze(ICE, OperatorAction(1.0, "alice@ops", "freeze", "INC-1"))
    store.set_dial(Dial("drain", "lb-2", (), 1.0, "alice@ops", "patching", None),
                   OperatorAction(1.0, "alice@ops", "drain", "patching", "lb-2"))
    store.close()
    app = App(demo_fleet(dict.fromkeys(demo_target_ids(), 1)), Options(data_dir=tmp_path, dns_port=0))
    try:
        assert app.gate.freeze == ICE
        assert app.planner.drains == {"lb-2"}
    finally:
        app.store.close()
        app.provider.close()


def test_plan_shows_what_up_would_publish_under_the_dials(tmp_path: Path) -> None:
    from dnsplane.model import Dial
    from dnsplane.store.base import OperatorAction

    SqliteStore(tmp_path / "store.sqlite").close()
    before = cli(tmp_path, "plan")
    assert before.returncode == 0 and "+ lb-2 " in before.stdout, before.stdout
    store = SqliteStore(tmp_path / "store.sqlite")
    store.set_dial(Dial("drain", "lb-2", (), 1.0, "bob", "", None), OperatorAction(1.0, "bob", "drain", "", "lb-2"))
    store.close()
    after = cli(tmp_path, "plan")
    assert after.returncode == 0 and "+ lb-2 " not in after.stdout and "+ lb-1 " in after.stdout, after.stdout


# -- what an adversarial operator found (helper-59): each fails without its fix ------------------------------

def two_endpoint_fleet() -> Any:
    from dnsplane.config import parse_fleet

    return parse_fleet("zone: demo.test.\ndefaults: {ttl: 30}\ntargets:\n  lb-1: {addresses: [192.0.2.1]}\n"
                       "  lb-2: {addresses: [192.0.2.2]}\n  lb-3: {addresses: [192.0.2.3]}\nendpoints:\n"
                       "  - {name: a, targets: [lb-1, lb-2]}\n  - {name: b, targets: [lb-1, lb-2, lb-3],"
                       " policy: {min_targets: 2}}\n", "fleet.yaml")


def test_two_drains_at_once_are_judged_one_after_the_other(tmp_path: Path) -> None:
    """The check runs inside the store's write transaction: a drain whose check is still running holds it, and a
    second drain, from another connection (another process), waits and then sees the first."""
    from dnsplane.runtime import operators

    fleet = two_endpoint_fleet()
    first, second = SqliteStore(tmp_path / "store.sqlite"), SqliteStore(tmp_path / "store.sqlite")
    checking, go_on = threading.Event(), threading.Event()

    def slow_up(tid: str) -> bool:
        checking.set()
        assert go_on.wait(10)
        return True

    outcome: list[BaseException | None] = []

    def drain_first() -> None:
        try:
            operators.drain(first, fleet, slow_up, "lb-1", 1.0, "alice", "", None)
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    t = threading.Thread(target=drain_first)
    t.start()
    assert checking.wait(10)
    threading.Timer(0.2, go_on.set).start()  # the second drain is already waiting for the write lock by then
    try:
        operators.drain(second, fleet, lambda tid: True, "lb-2", 2.0, "bob", "", None)
    except operators.Refused as err:
        refused = err
    else:
        raise AssertionError("both drains accepted: a.demo.test. A is left with no undrained target")
    t.join(10)
    assert outcome == [None]
    assert "a.demo.test. A would keep 0 healthy undrained target(s)" in " ".join(refused.reasons)
    assert [(d.kind, d.subject) for d in second.dials()] == [("drain", "lb-1")]
    first.close()
    second.close()


def test_a_pin_is_refused_where_the_drains_in_force_would_leave_it_below_its_floor() -> None:
    from dnsplane.runtime import operators
    from dnsplane.store.memory import MemoryStore

    fleet, store = two_endpoint_fleet(), MemoryStore()
    operators.drain(store, fleet, lambda tid: True, "lb-1", 1.0, "alice", "", None)
    with pytest.raises(operators.Refused, match=r"b\.demo\.test\. A would keep 1 healthy undrained"):
        operators.pin(store, fleet, lambda tid: True, EndpointKey("b.demo.test.", "A"), ["lb-1", "lb-2"], 2.0,
                      "bob", "", None)
    operators.pin(store, fleet, lambda tid: True, EndpointKey("b.demo.test.", "A"), ["lb-2", "lb-3"], 2.0, "bob",
                  "", None)


def test_who_and_why_are_kept_without_terminal_escapes() -> None:
    from dnsplane.runtime import operators
    from dnsplane.store.memory import MemoryStore

    store = MemoryStore()
    operators.freeze(store, 1.0, "eve\x1b]0;owned\x07", "a\nb \u00e9")
    assert store.frozen() == Freeze(1.0, "eve\ufffd]0;owned\ufffd", "a\ufffdb \u00e9")


def test_freeze_waits_for_its_own_freeze_not_an_earlier_quiet_one(tmp_path: Path) -> None:
    import json
    import os

    SqliteStore(tmp_path / "store.sqlite").close()
    (tmp_path / "instance.json").write_text(json.dumps(
        {"pid": os.getpid(), "frozen": {"at": 1.0, "by": "earlier", "reason": "", "quiet": True}}))
    res = cli(tmp_path, "freeze", "--by", "bob", "--timeout", "1")
    assert res.returncode == 1 and "did not report" in res.stderr, res.stdout + res.stderr
    store = SqliteStore(tmp_path / "store.sqlite")
    at = store.frozen().at  # type: ignore[union-attr]
    store.close()
    (tmp_path / "instance.json").write_text(json.dumps(
        {"pid": os.getpid(), "frozen": {"at": at, "by": "bob", "reason": "", "quiet": True}}))
    again = cli(tmp_path, "freeze", "--by", "carol", "--timeout", "5")
    assert again.returncode == 0 and "already frozen" in again.stdout and "no automated write is in flight" in \
        again.stdout, again.stdout + again.stderr


def test_a_store_whose_operators_journal_predates_dials_is_brought_up_to_date(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "store.sqlite"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE operator_journal")
    db.execute("CREATE TABLE operator_journal (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
               "who TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL)")
    db.execute("INSERT INTO operator_journal (at, who, action, reason) VALUES (1.0, 'alice', 'freeze', 'old')")
    db.commit()
    db.close()
    store = SqliteStore(path)
    store.record_action(OperatorAction(2.0, "bob", "confirm", "", "7"))
    assert store.operator_actions() == [OperatorAction(1.0, "alice", "freeze", "old", ""),
                                        OperatorAction(2.0, "bob", "confirm", "", "7")]
    store.close()


@pytest.mark.parametrize("args", [["history", ""], ["pin", " ", "--targets", "lb-1", "--for", "1m"],
                                  ["unpin", ""], ["drain", "lb-1", "--for", "9" * 400 + "d"]])
def test_empty_names_and_huge_durations_are_bad_input_not_tracebacks(tmp_path: Path, args: list[str]) -> None:
    SqliteStore(tmp_path / "store.sqlite").close()
    res = cli(tmp_path, *args)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr


def test_freeze_given_while_up_is_starting_waits_for_it(tmp_path: Path) -> None:
    """An ``up`` holds the data directory before it writes ``instance.json``: a freeze given then says so
    and waits for the instance to confirm it, rather than saying no dnsplane is running."""
    import json
    import os

    from dnsplane.runtime.datadir import DataDirLock

    SqliteStore(tmp_path / "store.sqlite").close()
    with DataDirLock(tmp_path):  # this test is the starting `up`
        proc = subprocess.Popen([sys.executable, "-m", "dnsplane.cli", "freeze", "--by", "bob", "--timeout", "30",
                                 "--data-dir", str(tmp_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline(), proc.stdout.readline()]
            assert f"dnsplane (pid {os.getpid()}) is starting" in lines[1], lines
            store = SqliteStore(tmp_path / "store.sqlite")
            at = store.frozen().at  # type: ignore[union-attr]
            store.close()
            (tmp_path / "instance.json").write_text(json.dumps(
                {"pid": os.getpid(), "frozen": {"at": at, "by": "bob", "reason": "", "quiet": True}}))
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0 and "no automated write is in flight" in out, out + err
    assert "no dnsplane is running" not in out


def test_a_freeze_or_drain_given_while_up_starts_for_longer_than_its_timeout_says_so(tmp_path: Path) -> None:
    """Past ``--timeout`` with the ``up`` still starting: exit 1 naming it, never "no dnsplane is running"
    (helper-60); the freeze is in the store all the same, the drain (no --fleet to check it) is not."""
    from dnsplane.runtime.datadir import DataDirLock

    SqliteStore(tmp_path / "store.sqlite").close()
    with DataDirLock(tmp_path):
        frozen = cli(tmp_path, "freeze", "--by", "bob", "--timeout", "0.3")
        drained = cli(tmp_path, "drain", "lb-1", "--for", "1m", "--timeout", "0.3")
    assert frozen.returncode == 1 and "is still starting" in frozen.stderr, frozen.stdout + frozen.stderr
    assert "no dnsplane is running" not in frozen.stdout + frozen.stderr
    assert drained.returncode == 1 and "is still starting" in drained.stderr and "nothing changed" in drained.stderr
    store = SqliteStore(tmp_path / "store.sqlite")
    assert store.frozen() is not None and store.dials() == []
    store.close()
