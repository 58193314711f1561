"""The October 2025 race, against a real BIND9: a delayed enactor's stale write is refused by the server.

Three enactor *processes* share one SQLite plan store and one ``named``. The victim starts a big
batch of generation 2, writes half of it, announces it and is frozen with SIGSTOP while it waits to
write the other half. The planner (this test) publishes generations 3..5; the two other enactors
apply them. The victim is resumed with SIGCONT: its write of the second half — prerequisites on the
generation-1 markers it read — must be refused by BIND and journalled as conflicts. Throughout, a
prober queries every endpoint over DNS and must never see NXDOMAIN or an empty answer; at the end
every endpoint holds the newest plan.

Every wait is a poll with a deadline; the only fixed pauses pace loops, none orders events.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from dnsplane.execute import Interpreter, drain
from dnsplane.model import EndpointKey, Generation, RecordSet, Write, WriteResult
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Tick
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.rfc2136 import Rfc2136Provider
from dnsplane.store.sqlite import SqliteStore
from tests.fakes import ZONE, key, member, rs
from tests.servers.named import NamedServer, named  # noqa: F401 - module fixture

ENDPOINTS = 300
NEWEST = 5
DEADLINE = 120.0
KEYS = [key(f"r{i}.demo.test") for i in range(ENDPOINTS)]


def content(i: int, g: int) -> RecordSet:
    """Endpoint i at generation g: a different address (and target) every generation."""
    return rs(member(f"lb-{g}", f"10.{g}.{i // 250}.{i % 250 + 1}"),
              member("lb-base", f"10.200.{i // 250}.{i % 250 + 1}"))


def wait_for(what: str, check, deadline: float) -> None:  # type: ignore[no-untyped-def]
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval


class PausingProvider(Rfc2136Provider):
    """Writes half of its first batch of generation >= 2, says so, then waits for ``go`` before the rest."""

    control: Path
    fresh_for = DEADLINE  # keep the generation-1 view however long the pause: the write must reach BIND

    def apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        if not writes or writes[0].marker.generation < 2 or (self.control / "ready").exists():
            return super().apply(writes)
        half = len(writes) // 2
        done = super().apply(writes[:half])
        (self.control / "ready").write_text(str(len(writes)))
        end = time.monotonic() + DEADLINE
        while not (self.control / "go").exists() and time.monotonic() < end:
            time.sleep(0.01)  # here the test freezes this process with SIGSTOP
        return done + super().apply(writes[half:])


def enactor_process(
    name: str, store_path: str, host: str, port: int, key_file: str, control: str, batch: int, victim: bool
) -> None:
    store = SqliteStore(store_path)
    cls = PausingProvider if victim else Rfc2136Provider
    provider = cls(ZONE, Rfc2136Config(host, port, key_file=key_file))
    if victim:
        provider.control = Path(control)  # type: ignore[attr-defined]
    executor = Interpreter(store, provider)
    enactor = Enactor(name, ZONE, batch_size=batch)
    end = time.monotonic() + DEADLINE
    try:
        while not (Path(control) / "stop").exists() and time.monotonic() < end:
            now = time.time()
            drain(enactor, Tick(now), executor, now)
            time.sleep(0.02)  # pace the ticks
    finally:
        provider.close()
        store.close()


class Prober(threading.Thread):
    """Queries every published endpoint in a loop; records NXDOMAIN and empty answers."""

    def __init__(self, server: NamedServer, keys: list[EndpointKey]) -> None:
        super().__init__(daemon=True)
        self.server, self.keys = server, keys
        self.stop = threading.Event()
        self.bad: list[str] = []
        self.answers = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for k in self.keys:
                try:
                    r = dns.query.udp(dns.message.make_query(k.name, "A"), self.server.host,
                                      port=self.server.port, timeout=1)
                except dns.exception.Timeout:
                    continue  # a lost datagram is not an answer
                self.answers += 1
                if r.rcode() != dns.rcode.NOERROR or not any(len(rr) for rr in r.answer):
                    self.bad.append(f"{k}: {dns.rcode.to_text(r.rcode())} {r.answer}")


def test_a_paused_enactors_stale_batch_is_refused_by_bind(named: NamedServer, tmp_path: Path) -> None:  # noqa: F811
    named.reset()
    start = time.monotonic()
    deadline = start + DEADLINE
    control = tmp_path / "control"
    control.mkdir()
    store_path = str(tmp_path / "plans.sqlite")
    store = SqliteStore(store_path)
    provider = Rfc2136Provider(ZONE, Rfc2136Config(named.host, named.port, key_file=named.key_file))

    def publish(g: int) -> None:
        assert store.publish(Generation(g - 1), [(k, content(i, g)) for i, k in enumerate(KEYS)], time.time(),
                             "planner") == g

    # generation 1, applied before anyone looks: from here on every endpoint is published
    publish(1)
    first = Enactor("setup", ZONE, batch_size=500)
    drain(first, Tick(time.time()), Interpreter(store, provider), time.time())
    assert first.applied_upto == 1
    prober = Prober(named, KEYS)
    prober.start()

    ctx = multiprocessing.get_context("spawn")
    args = (store_path, named.host, named.port, named.key_file, str(control))
    victim = ctx.Process(target=enactor_process, args=("victim", *args, ENDPOINTS, True))
    others = [ctx.Process(target=enactor_process, args=(f"enactor-{n}", *args, 100, False)) for n in (2, 3)]
    try:
        victim.start()
        publish(2)
        wait_for("the victim to be in the middle of its generation-2 batch", (control / "ready").exists, deadline)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGSTOP)
        (control / "go").write_text("")  # it sees this only once resumed
        for p in others:
            p.start()
        for g in range(3, NEWEST + 1):
            publish(g)
            wait_for(f"generation {g} applied by the others",
                     lambda g=g: all(store.applied().get(f"enactor-{n}", 0) >= g for n in (2, 3)), deadline)
        os.kill(victim.pid, signal.SIGCONT)
        wait_for("the victim to catch up", lambda: store.applied().get("victim", 0) >= NEWEST, deadline)
    finally:
        (control / "stop").write_text("")
        if victim.pid is not None:
            os.kill(victim.pid, signal.SIGCONT)
        for p in [victim, *others]:
            if p.pid is not None:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
        prober.stop.set()
        prober.join(timeout=10)

    # the stale half-batch was sent, refused by BIND itself, and journalled as conflicts by the victim
    assert "prerequisite not satisfied" in named.log_path.read_text()
    conflicts = [e for k in KEYS for e in store.history(k) if e.actor == "victim" and e.action == "conflict"]
    assert len(conflicts) >= ENDPOINTS - ENDPOINTS // 2
    assert all(e.after == 2 for e in conflicts)
    # every endpoint holds the newest plan, and the prober never saw an empty answer
    final = provider.read_all()
    assert {k: (o.marker.generation if o.marker else None) for k, o in final.items()} == dict.fromkeys(KEYS, NEWEST)
    assert all(final[k].records == content(i, NEWEST) for i, k in enumerate(KEYS))
    assert prober.bad == []
    assert prober.answers > len(KEYS)
    assert victim.exitcode == 0 and all(p.exitcode == 0 for p in others)
    provider.close()
    store.close()

