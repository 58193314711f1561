"""UDP answering workers (``DnsServer(..., workers=N)``, dnsplane.dns.worker) on real sockets and real
processes: several processes answer, a write is seen by every one of them once it returned, the
serial and the SERVFAIL-until-written are the same everywhere, a killed worker is restarted while the
port keeps answering, and TCP (queries, signed zone transfers) stays with the main process."""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import signal
import socket
import threading
import time
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import dnsplane.dns.worker as worker_module
from dnsplane.dns import DnsServer
from dnsplane.model import EndpointKey, Member
from tests.dns.test_server import API, HOST, ZONE, FakeSource, Running, initial_data, obs
from tests.dns.test_transfer import KEY, KEYRING, axfr, policy
from tests.realworld.harness import wait_for

NEW = EndpointKey("new.demo.test.", "A")
CLIENTS = 48  # source ports per round: enough that SO_REUSEPORT hashes some onto each of 2 workers


@pytest.fixture
def source() -> FakeSource:
    return FakeSource(ZONE, initial_data())


def start(source: FakeSource, workers: int = 2, declared: tuple[EndpointKey, ...] = (), **kw: object) -> Running:
    server = DnsServer([source], HOST, 0, rng=random.Random(5), workers=workers, **kw)  # type: ignore[arg-type]
    server.declare(declared)
    running = Running(server)
    wait_for("every worker answering UDP", server.workers_ready, deadline=30)
    return running


@pytest.fixture
def srv(source: FakeSource) -> Iterator[Running]:
    running = start(source)
    try:
        yield running
    finally:
        running.close()


def fan_out(port: int, name: str, rdtype: str = "A", clients: int = CLIENTS) -> list[dns.message.Message]:
    """The same question from ``clients`` sockets (each its own source port) at once; every answer."""
    socks = []
    sel = selectors.DefaultSelector()
    try:
        for i in range(clients):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            socks.append(s)
            q = dns.message.make_query(name, rdtype, id=i)
            s.sendto(q.to_wire(), (HOST, port))
            sel.register(s, selectors.EVENT_READ, i)
        answers: dict[int, dns.message.Message] = {}
        while len(answers) < clients:
            events = sel.select(timeout=5.0)
            assert events, f"{clients - len(answers)} of {clients} queries unanswered"
            for key, _ in events:
                answers[key.data] = dns.message.from_wire(key.fileobj.recv(4096))  # type: ignore[union-attr]
                sel.unregister(key.fileobj)
        return [answers[i] for i in range(clients)]
    finally:
        for s in socks:
            s.close()
        sel.close()


def values(answers: list[dns.message.Message]) -> set[str]:
    return {
        " ".join(sorted(rd.to_text() for rrset in r.answer for rd in rrset)) or dns.rcode.to_text(r.rcode())
        for r in answers
    }


def counts(running: Running) -> dict[int, int]:
    return {s["pid"]: s["udp_queries"] for s in running.server.worker_stats()}


def every_worker_answers(running: Running, name: str, rdtype: str, want: set[str]) -> None:
    """Ask ``name`` from many ports, round after round, until each worker answered some of them
    (which worker takes a datagram from the shared socket is the kernel's choice); every answer is ``want``."""
    start = counts(running)
    assert len(start) == running.server.workers

    def each_answered() -> bool:
        assert values(fan_out(running.port, name, rdtype)) == want
        now = counts(running)
        return now.keys() == start.keys() and all(now[pid] > start[pid] for pid in start)

    wait_for(f"every worker to answer {name} {rdtype}", each_answered, deadline=30)


def test_several_worker_processes_answer_udp(srv: Running) -> None:
    before = srv.server.stats.udp_queries  # the main process's: it answered until the workers listened
    every_worker_answers(srv, "api.demo.test.", "A", {"10.0.0.1"})
    seen = counts(srv)
    assert len(seen) == 2 and os.getpid() not in seen
    assert sum(seen.values()) % CLIENTS == 0  # every query answered by a worker...
    assert srv.server.stats.udp_queries == before  # ...none by the main process any more


def test_a_write_is_seen_on_every_worker_once_it_returned(srv: Running, source: FakeSource) -> None:
    start = counts(srv)
    for i in range(20):
        address = f"10.20.0.{i + 1}"
        source.commit(API, obs(30, [Member("lb-1", (address,), 1000)]))  # returns once every worker applied it
        assert values(fan_out(srv.port, "api.demo.test.")) == {address}, f"round {i}"
    # and until each worker has answered right after a write (the kernel spreads the datagrams as it likes)
    for i in range(20, 200):
        now = counts(srv)
        if all(now[pid] > start[pid] for pid in start):
            break
        address = f"10.20.{i}.1"
        source.commit(API, obs(30, [Member("lb-1", (address,), 1000)]))
        assert values(fan_out(srv.port, "api.demo.test.")) == {address}, f"round {i}"
    else:
        raise AssertionError(f"a worker answered nothing in 200 rounds: {start} -> {counts(srv)}")


def test_serial_and_servfail_until_written_are_the_same_on_every_worker(source: FakeSource) -> None:
    running = start(source, declared=(NEW,))
    try:
        every_worker_answers(running, "new.demo.test.", "A", {"SERVFAIL"})
        main_serial = dns.query.tcp(dns.message.make_query(ZONE, "SOA"), HOST, port=running.port, timeout=5).answer[0]
        every_worker_answers(running, ZONE, "SOA", {main_serial[0].to_text()})
        source.commit(NEW, obs(30, [Member("lb-1", ("10.7.0.1",), 1000)]))
        every_worker_answers(running, "new.demo.test.", "A", {"10.7.0.1"})
        soa = main_serial[0].replace(serial=main_serial[0].serial + 1)  # one applied batch: one serial, main's
        every_worker_answers(running, ZONE, "SOA", {soa.to_text()})
        source.commit(NEW, None)  # written once: NXDOMAIN now, on every worker
        every_worker_answers(running, "new.demo.test.", "A", {"NXDOMAIN"})
    finally:
        running.close()


def test_a_killed_worker_is_restarted_and_the_port_keeps_answering(srv: Running, source: FakeSource) -> None:
    victim, survivor = srv.server.worker_pids()
    os.kill(victim, signal.SIGKILL)
    wait_for("the killed worker noticed", lambda: victim not in srv.server.worker_pids())
    # the survivor answers every client meanwhile
    assert values(fan_out(srv.port, "api.demo.test.")) == {"10.0.0.1"}
    wait_for("a new worker", lambda: len(srv.server.worker_pids()) == 2 and srv.server.workers_ready(), deadline=30)
    wait_for("the new worker listening", lambda: len(counts(srv)) == 2, deadline=30)
    assert survivor in srv.server.worker_pids() and victim not in srv.server.worker_pids()
    source.commit(API, obs(30, [Member("lb-1", ("10.30.0.1",), 1000)]))
    every_worker_answers(srv, "api.demo.test.", "A", {"10.30.0.1"})  # the new one serves the write too


def test_tcp_and_signed_transfers_stay_with_the_main_process(source: FakeSource) -> None:
    running = start(source, transfer=policy())
    try:
        r = dns.query.tcp(dns.message.make_query("api.demo.test.", "A"), HOST, port=running.port, timeout=5)
        assert {rd.to_text() for rd in r.answer[0]} == {"10.0.0.1"}
        source.commit(API, obs(30, [Member("lb-1", ("10.40.0.1",), 1000)]))
        zone = axfr(running)
        rrset = zone.find_rrset("api", dns.rdatatype.A)
        assert {rd.to_text() for rd in rrset} == {"10.40.0.1"}
        assert values(fan_out(running.port, "api.demo.test.")) == {"10.40.0.1"}
        assert running.server.stats.tcp_queries >= 2
        # a secondary's SOA check over UDP is signed with the transfer key: the workers verify and sign it too
        udp_before = running.server.stats.udp_queries
        for _ in range(8):
            q = dns.message.make_query(ZONE, "SOA")
            q.use_tsig(KEYRING, KEY)
            r = dns.query.udp(q, HOST, port=running.port, timeout=5)  # raises unless the answer is signed
            assert r.rcode() == dns.rcode.NOERROR and r.had_tsig and r.answer
        assert running.server.stats.udp_queries == udp_before  # answered by the workers, not the main process
    finally:
        running.close()


def test_with_its_only_worker_dead_the_main_process_answers_until_a_new_one_listens(source: FakeSource) -> None:
    running = start(source, workers=1)
    try:
        (victim,) = running.server.worker_pids()
        before = running.server.stats.udp_queries
        os.kill(victim, signal.SIGKILL)
        wait_for("the killed worker noticed", lambda: victim not in running.server.worker_pids())
        assert values(fan_out(running.port, "api.demo.test.")) == {"10.0.0.1"}  # by whoever reads the socket
        wait_for("a new worker answering", running.server.workers_ready, deadline=30)
        (new,) = running.server.worker_pids()
        assert new != victim
        source.commit(API, obs(30, [Member("lb-1", ("10.50.0.1",), 1000)]))
        taken = running.server.stats.udp_queries
        every_worker_answers(running, "api.demo.test.", "A", {"10.50.0.1"})
        assert running.server.stats.udp_queries == taken  # the main process stopped reading again
        assert taken > before  # it answered while no worker did
    finally:
        running.close()


def test_a_hung_worker_is_replaced_and_writes_do_not_wait_for_it(srv: Running, source: FakeSource) -> None:
    hung, other = srv.server.worker_pids()
    os.kill(hung, signal.SIGSTOP)  # alive, holding the socket's wakeups, applying nothing
    try:
        source.commit(API, obs(30, [Member("lb-1", ("10.60.0.1",), 1000)]))  # returns: the late one is killed
        assert hung not in srv.server.worker_pids()
        assert values(fan_out(srv.port, "api.demo.test.")) == {"10.60.0.1"}
        wait_for("a replacement", lambda: len(srv.server.worker_pids()) == 2 and srv.server.workers_ready(), 30)
        every_worker_answers(srv, "api.demo.test.", "A", {"10.60.0.1"})
        assert other in srv.server.worker_pids()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGKILL)


def test_a_hung_worker_is_found_without_any_change(srv: Running) -> None:
    hung, _ = srv.server.worker_pids()
    os.kill(hung, signal.SIGSTOP)
    try:
        wait_for("the hung worker replaced by the heartbeat", lambda: hung not in srv.server.worker_pids(), 30)
        assert values(fan_out(srv.port, "api.demo.test.")) == {"10.0.0.1"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGKILL)


def test_a_large_batch_does_not_get_the_workers_restarted(srv: Running, source: FakeSource) -> None:
    """A first plan writes thousands of endpoints in one commit; every process renders them for seconds:
    the workers are given that time, not killed as late (which would make them reload the whole zone)."""
    keys = [EndpointKey(f"n{i}.bulk.demo.test.", "A") for i in range(3000)]
    with source._lock:
        for i, key in enumerate(keys):
            source.data[key] = obs(30, [Member("lb-1", (f"10.{i // 250}.{i % 250}.9",), 1000)])
    pids = srv.server.worker_pids()
    for fn in source.listeners:
        fn(keys)  # one commit of 3,000 endpoints, in this (the writer's) thread
    assert srv.server.worker_pids() == pids and srv.server._pool is not None and srv.server._pool.restarts == 0
    every_worker_answers(srv, "n2999.bulk.demo.test.", "A", {"10.11.249.9"})


def test_a_worker_behind_on_a_large_change_is_not_replaced_while_it_acknowledges_parts(
    srv: Running, source: FakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker starved of CPU (at 1,000,000 endpoints the control plane takes the cores) takes far longer
    than the bound to apply a large change; it acknowledges each part as it goes, so it is given the time,
    not killed and replaced by one that must load the whole zone again (seen three times in one run at
    1,000,000 endpoints: each replacement a gap in the answers)."""
    monkeypatch.setattr(worker_module, "ACK_TIMEOUT", 1.0)
    monkeypatch.setattr(worker_module, "FORWARD_CHUNK", 256)
    keys = [EndpointKey(f"n{i}.bulk.demo.test.", "A") for i in range(10_000)]
    with source._lock:
        for i, key in enumerate(keys):
            source.data[key] = obs(30, [Member("lb-1", (f"10.{i // 250}.{i % 250}.9",), 1000)])
    slow, other = srv.server.worker_pids()
    starving = threading.Event()

    def starve() -> None:  # the fault: the worker runs about a tenth of the time
        with contextlib.suppress(ProcessLookupError):  # killed as late: the assertions below say so
            while not starving.is_set():
                os.kill(slow, signal.SIGSTOP)
                time.sleep(0.3)
                os.kill(slow, signal.SIGCONT)
                time.sleep(0.03)

    thread = threading.Thread(target=starve)
    thread.start()
    try:
        started = time.monotonic()
        for fn in source.listeners:
            fn(keys)  # one commit of 10,000 endpoints, in this (the writer's) thread
        took = time.monotonic() - started
    finally:
        starving.set()
        thread.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(slow, signal.SIGCONT)
    assert took > 2 * worker_module.ACK_TIMEOUT, "the fault did not make the worker late"
    assert srv.server.worker_pids() == [slow, other] and srv.server._pool is not None
    assert srv.server._pool.restarts == 0
    every_worker_answers(srv, "n9999.bulk.demo.test.", "A", {"10.39.249.9"})


def test_a_worker_killed_in_the_middle_of_a_large_change_is_replaced_by_one_serving_all_of_it(
    srv: Running, source: FakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that dies after applying some parts of a change and before others: the write still returns,
    and its replacement starts from the whole change (its snapshot is taken once the change is applied),
    never from the parts the dead one had."""
    monkeypatch.setattr(worker_module, "FORWARD_CHUNK", 256)
    keys = [EndpointKey(f"n{i}.bulk.demo.test.", "A") for i in range(10_000)]
    with source._lock:
        for i, key in enumerate(keys):
            source.data[key] = obs(30, [Member("lb-1", (f"10.{i // 250}.{i % 250}.9",), 1000)])
    pool = srv.server._pool
    assert pool is not None
    victim = next(w for w in pool._workers if w is not None)
    before = victim.acked
    killed = threading.Event()
    at_kill: list[int] = []

    def kill_midway() -> None:  # once it acknowledged three parts of the change (its reader notifies each)
        with victim.cond:
            victim.cond.wait_for(lambda: victim.acked >= before + 3 or victim.dead, timeout=60)
        if not victim.dead:
            at_kill.append(victim.acked)
            os.kill(victim.proc.pid, signal.SIGKILL)
            killed.set()

    thread = threading.Thread(target=kill_midway)
    thread.start()
    for fn in source.listeners:
        fn(keys)  # one commit of 10,000 endpoints: forty parts
    thread.join()
    assert killed.is_set(), "the worker was not killed"
    parts = len(keys) // worker_module.FORWARD_CHUNK
    assert at_kill[0] < before + parts, "killed after the whole change: not in the middle of it"
    assert victim.proc.pid not in srv.server.worker_pids()
    wait_for("a replacement", lambda: len(srv.server.worker_pids()) == 2 and srv.server.workers_ready(), 60)
    for name, want in (("n0.bulk.demo.test.", "10.0.0.9"), ("n9999.bulk.demo.test.", "10.39.249.9")):
        every_worker_answers(srv, name, "A", {want})


def test_a_change_committed_by_another_process_reaches_every_worker(srv: Running, source: FakeSource) -> None:
    source.external_commit(API, obs(30, [Member("lb-1", ("10.70.0.1",), 1000)]))  # no listener: data_version only
    wait_for("the main process's periodic check", lambda: values(fan_out(srv.port, "api.demo.test.")) == {"10.70.0.1"})
    every_worker_answers(srv, "api.demo.test.", "A", {"10.70.0.1"})


def test_a_worker_starved_while_it_loads_is_given_time(source: FakeSource, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that takes nothing for longer than ``SEND_TIMEOUT`` while it loads its zone (a nice'd worker
    behind busy processes on a loaded host) answers nothing yet, so it cannot answer stale: it is not
    killed (which would restart a load of minutes on a large zone, again and again under the same load)."""
    monkeypatch.setattr(worker_module, "SEND_TIMEOUT", 1)
    with source._lock:  # a zone whose init is far larger than the socketpair's buffers: its send blocks
        for i in range(8_000):
            source.data[EndpointKey(f"n{i}.bulk.demo.test.", "A")] = obs(30, [Member("lb-1", ("10.9.9.9",), 1000)])
    server = DnsServer([source], HOST, 0, rng=random.Random(5), workers=1)
    running = Running(server)
    try:
        (loading,) = wait_for("the worker started", server.worker_pids, deadline=60)
        os.kill(loading, signal.SIGSTOP)  # it reads nothing: the init's send waits on it
        time.sleep(3 * worker_module.SEND_TIMEOUT)  # the fault: three times the bound of an answering worker
        assert server.worker_pids() == [loading], "the loading worker was killed as hung"
        os.kill(loading, signal.SIGCONT)
        wait_for("the worker answering", server.workers_ready, deadline=120)
        assert server.worker_pids() == [loading] and server._pool is not None and server._pool.restarts == 0
        every_worker_answers(running, "n7999.bulk.demo.test.", "A", {"10.9.9.9"})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(loading, signal.SIGCONT)
        running.close()


def test_a_worker_answers_between_chunks_of_a_change_and_serves_each_endpoint_whole() -> None:
    """A change of thousands of endpoints is tens of milliseconds of rendering in a worker; it looks at its
    socket every ``APPLY_CHUNK`` endpoints. What it answers there is, for each endpoint, the old content or
    the new one, records and marker together; the serial moves once, at the end."""
    answerer = worker_module._Answerer(worker_module.Init([(ZONE, 100, {})], (frozenset(), frozenset())))
    keys = [EndpointKey(f"n{i}.{ZONE}", "A") for i in range(3 * worker_module.APPLY_CHUNK + 10)]
    change = {k: obs(30, [Member("lb-a", ("192.0.2.1",), 1)], gen=3) for k in keys}
    served: list[tuple[int, int]] = []  # (endpoints answering then, serial then)

    def between() -> None:
        table = answerer.tables[0]
        answering = 0
        for k in keys:
            q = dns.message.make_query(k.name, "A")
            r = dns.message.from_wire(answerer.responder.handle(q.to_wire(), True))
            t = dns.message.make_query(f"_dnsplane-a.{k.name}", "TXT")
            m = dns.message.from_wire(answerer.responder.handle(t.to_wire(), True))
            assert bool(r.answer) == bool(m.answer), k  # records and marker together
            answering += bool(r.answer)
        served.append((answering, table.serial))

    answerer.apply(0, change, 101, between)
    chunk = worker_module.APPLY_CHUNK
    assert served == [(chunk, 100), (2 * chunk, 100), (3 * chunk, 100)]
    assert answerer.tables[0].serial == 101


def answered(running: Running) -> tuple[int, int]:
    """NOERROR responses counted and NOERROR answers timed, over the server and its workers."""
    totals = running.server.answer_stats()
    times = totals.times.get("NOERROR")
    return totals.responses["NOERROR"], 0 if times is None else sum(times.counts)


def test_answer_counts_never_go_back_when_a_worker_dies_or_is_too_slow_to_report(srv: Running) -> None:
    """``/metrics``' DNS counters (``DnsServer.answer_stats``): a worker killed and restarted counts from 0,
    and a stopped one cannot report, yet the totals keep what each had counted (they fell from 38,377 to
    12,243 when a worker was killed, and dipped while one was stopped, helper-60)."""
    every_worker_answers(srv, "api.demo.test.", "A", {"10.0.0.1"})
    for _ in range(4):
        fan_out(srv.port, "api.demo.test.")
    before = answered(srv)
    assert before[0] >= 4 * CLIENTS and before[1] >= 1
    victim, survivor = srv.server.worker_pids()
    os.kill(survivor, signal.SIGSTOP)
    try:
        during = answered(srv)
        assert during >= before, (before, during)
    finally:
        os.kill(survivor, signal.SIGCONT)
    os.kill(victim, signal.SIGKILL)
    wait_for("a new worker listening", lambda: victim not in srv.server.worker_pids()
             and len(counts(srv)) == 2, deadline=30)
    after = answered(srv)
    assert after >= during, (during, after)
    fan_out(srv.port, "api.demo.test.")
    assert answered(srv)[0] >= after[0] + CLIENTS


def test_a_badvers_answer_is_counted_and_timed_as_badvers(source: FakeSource) -> None:
    running = start(source, workers=0)
    try:
        for _ in range(32):
            query = dns.message.make_query("api.demo.test.", "A", use_edns=1)  # EDNS version 1: BADVERS
            reply = dns.query.udp(query, HOST, port=running.port, timeout=2)
            assert reply.rcode() == dns.rcode.BADVERS
        totals = running.server.answer_stats()
        assert totals.responses["BADVERS"] == 32 and sum(totals.times["BADVERS"].counts) == 32 // 16
        assert "NOERROR" not in totals.times
    finally:
        running.close()
