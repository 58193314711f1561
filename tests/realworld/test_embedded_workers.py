"""``dnsplane up --dns-workers 2`` end to end: two worker processes of the running ``dnsplane up``
answer UDP on its port (each some of the clients), a health change reaches every one of them, a
killed worker is replaced while the port keeps answering, TCP is answered, and stopping ``dnsplane up``
stops the workers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import dns.message
import dns.query

from tests.realworld.harness import World, addresses, wait_for

A1, A2 = "192.0.2.21", "192.0.2.22"


def workers_of(pid: int | None) -> set[int]:
    """The worker processes (children running dnsplane.dns.worker) of process ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"dnsplane.dns.worker" in cmdline:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def from_many_ports(server: tuple[str, int], name: str, count: int = 32) -> set[frozenset[str]]:
    """The answers to ``name`` from ``count`` sockets (SO_REUSEPORT hashes them over the workers)."""
    return {frozenset(addresses(server, name)) for _ in range(count)}


def test_dns_workers_answer_udp_and_follow_health(embedded_world: World) -> None:
    world = embedded_world
    lb1, lb2 = world.target("lb-1", A1), world.target("lb-2", A2)
    fleet = world.fleet([lb1, lb2], {"api": ["lb-1", "lb-2"]}, provider="embedded", policy={"answer": "all"})
    up = world.dnsplane(fleet, extra_args=["--dns-workers", "2"])
    server = up.dns
    wait_for("api served with both targets", lambda: addresses(server, "api.demo.test") == {A1, A2}, detail=up.log_tail)
    wait_for("two worker processes", lambda: len(workers_of(up.pid)) == 2, detail=up.log_tail)
    up.wait_log(r"dns_workers_ready|dns workers answer UDP")
    assert from_many_ports(server, "api.demo.test") == {frozenset({A1, A2})}

    world.listeners["lb-2"].down()
    wait_for(
        "lb-2 out of every worker's answer",
        lambda: from_many_ports(server, "api.demo.test") == {frozenset({A1})},
        detail=up.log_tail,
    )

    victim = min(workers_of(up.pid))
    os.kill(victim, signal.SIGKILL)
    wait_for("the killed worker gone", lambda: not alive(victim))  # its socket closed: no query lost in it
    assert from_many_ports(server, "api.demo.test") == {frozenset({A1})}  # the other worker answers
    wait_for("the killed worker replaced", lambda: len(workers_of(up.pid) - {victim}) == 2, detail=up.log_tail)
    up.wait_log(r"dns worker \d+ exited")

    world.listeners["lb-2"].up()
    wait_for(
        "lb-2 back on every worker",
        lambda: from_many_ports(server, "api.demo.test") == {frozenset({A1, A2})},
        detail=up.log_tail,
    )
    r = dns.query.tcp(dns.message.make_query("api.demo.test.", "A"), server[0], port=server[1], timeout=5)
    assert {rd.to_text() for rd in r.answer[0]} == {A1, A2}

    children = workers_of(up.pid)
    assert up.stop() == 0, up.log_tail()
    wait_for("the workers gone", lambda: not any(alive(p) for p in children))
