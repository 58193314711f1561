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

from dnsplane.execute import WriteGate
from dnsplane.model import Generation, Write, WriteResult
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Collect, Failed, Step, Tick
from dnsplane.protocol.planner import Planner
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.base import Freeze
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
