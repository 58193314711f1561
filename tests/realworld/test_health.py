"""Cause 5, "Restart forgets health": health that knows what it does not know, on real processes.

- A load balancer known down before a restart of ``dnsplane up`` is not served again after it:
  the planner publishes nothing for an endpoint until its targets are observed (``--health-grace``)
  and starts from the health it acted on, kept in the store (``--health-grace 0`` leaves only the
  kept health to stand between the restart and serving the dead target).
- Out of file descriptors, health checks fail for dnsplane's own reason: they are unknown, never
  down, so healthy targets stay in DNS, and the health loop keeps running (a target that really
  goes down afterwards is still taken out).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realworld.harness import PERIODS, Dnsplane, Prober, World, wait_for

LB0, LB1, LB2, LB3 = "192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"
API = "api.demo.test."
WWW = "www.demo.test."


def served_since(prober: Prober, since: float, address: str) -> list[str]:
    """Answers (as timeline lines) for ``API`` sent after ``since`` that contained ``address``."""
    return [o.describe(since) for o in prober.snapshot()
            if o.sent >= since and not o.is_marker and address in o.addresses]


@pytest.mark.parametrize("grace", [None, "0"], ids=["default-grace", "no-grace"])
def test_a_target_known_down_is_not_served_again_after_a_restart(world: World, grace: str | None) -> None:
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2), world.target("lb-3", LB3)]
    fleet = world.fleet(targets, {"api": ["lb-1", "lb-2", "lb-3"]})
    extra = ["--health-grace", grace] if grace is not None else []
    up = world.dnsplane(fleet, extra_args=extra)
    prober = world.prober(fleet)
    wait_for("every target in api's answer", lambda: prober.served(API) == {LB1, LB2, LB3}, detail=world.logs)

    world.listeners["lb-2"].down()
    wait_for("lb-2 to leave api's answer", lambda: prober.served(API) == {LB1, LB3}, detail=world.logs)
    left = prober.now()

    assert up.stop() == 0, up.log_tail()
    up.start()
    # the restarted planner has checked lb-2 (down) and lb-1/lb-3 (up), and had time to act on it
    wait_for("the restarted dnsplane to hold lb-2 down", lambda: ((up.instance() or {}).get("health", {})
                                                                  .get("lb-2", {}).get("healthy") is False),
             detail=world.logs)
    prober.watch(4 * PERIODS["enactor"] + 2 * PERIODS["planner"] + 2 * PERIODS["health"])

    prober.stop()
    seen = served_since(prober, left, LB2)
    assert not seen, "lb-2, known down before the restart, was served after it:\n" + "\n".join(seen[:10])
    assert prober.served(API) == {LB1, LB3}
    prober.assert_invariants(world.logs)
    up.assert_every_actor_running()


# ----------------------------------------------------------------------------- out of file descriptors

NOFILE = 96  # dnsplane's descriptor limit: enough to start, few enough for a test to use up

_LIMITED = ("import os, resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


class LimitedDnsplane(Dnsplane):
    """``dnsplane up`` under ``RLIMIT_NOFILE = NOFILE`` (set, then exec: the pid stays the harness's)."""

    def command(self) -> list[str]:
        cmd = super().command()
        return [sys.executable, "-c", _LIMITED, str(NOFILE), *cmd[1:]]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def hogs() -> Iterator[list[socket.socket]]:
    """Idle TCP connections the test opens to dnsplane's DNS server (each accepted one costs it a descriptor)."""
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def test_out_of_file_descriptors_healthy_targets_stay_and_health_keeps_checking(
        embedded_world: World, tmp_path: Path, hogs: list[socket.socket]) -> None:
    world = embedded_world
    targets = [world.target("lb-0", LB0, check=False), world.target("lb-1", LB1), world.target("lb-2", LB2),
               world.target("lb-3", LB3)]
    world.listeners["lb-3"].down()  # really down from the start
    # api: a target without a check keeps fail-open out of play, so a healthy target read as down
    # would leave; www: every target checked, so all read as down would fail open and re-add lb-3
    fleet = world.fleet(targets, {"api": ["lb-0", "lb-1", "lb-2"], "www": ["lb-1", "lb-2", "lb-3"]},
                        provider="embedded", policy={"answer": "all"})
    up = LimitedDnsplane(tmp_path / "limited", fleet)
    world.processes.append(up)  # stopped by the fixture
    up.start()
    assert up.pid is not None
    prober = world.prober(fleet, server=up.dns)
    wait_for("every target in api's answer", lambda: prober.served(API) == {LB0, LB1, LB2}, detail=world.logs)
    wait_for("www without lb-3", lambda: prober.served(WWW) == {LB1, LB2}, detail=world.logs)
    wait_for("lb-1 and lb-2 checked up", lambda: all(
        (up.instance() or {}).get("health", {}).get(t, {}).get("healthy") is True for t in ("lb-1", "lb-2")),
        detail=world.logs)

    # use up dnsplane's descriptors: idle TCP connections to its DNS server, until it has none left
    mark = up.log_mark()
    started = prober.now()
    for _ in range(NOFILE + 20):
        try:
            hogs.append(socket.create_connection(up.dns, timeout=1.0))
        except OSError:
            break  # the accept queue is full too
        if open_fds(up.pid) >= NOFILE:
            break
    wait_for("dnsplane to run out of file descriptors", lambda: open_fds(up.pid) >= NOFILE - 1, detail=up.log_tail)
    up.wait_log(r"Too many open files", since=mark)
    # long enough for `fall` failed rounds, a plan and a write, several times over
    prober.watch(10 * PERIODS["health"] + 2 * PERIODS["planner"] + 2 * PERIODS["enactor"])
    want = {API: {LB0, LB1, LB2}, WWW: {LB1, LB2}}
    changed = [o.describe(started) for o in prober.snapshot() if o.sent >= started and not o.is_marker
               and o.rcode == "NOERROR" and o.addresses != want[o.qname]]
    assert not changed, ("out of descriptors, health moved weight (a healthy target left, or a dead one "
                         "came back by fail-open):\n" + "\n".join(changed[:10]))
    assert "health check unknown" in up.log_since(mark), up.log_tail()

    # descriptors back: the health loop is still running, so a target that really goes down leaves
    for s in hogs:
        s.close()
    hogs.clear()
    wait_for("dnsplane to get its descriptors back", lambda: open_fds(up.pid) < NOFILE // 2, detail=up.log_tail)
    world.listeners["lb-1"].down()
    wait_for("lb-1, really down, to leave the answers", lambda: prober.served(API) == {LB0, LB2}
             and prober.served(WWW) == {LB2}, detail=world.logs)
    prober.stop()
    prober.assert_invariants(world.logs)
    assert up.running, up.log_tail()
