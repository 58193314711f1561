"""End to end: `dnsplane up` as a subprocess, real DNS over UDP and TCP, a demo load balancer
failing and recovering. Everything waits by polling with a deadline, never by sleeping a fixed time."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

LB2 = "192.0.2.12"
DEADLINE = 30.0


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def wait_for(what: str, cond: Callable[[], bool], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if cond():
                return
        except dns.exception.Timeout:
            pass  # a query lost under load counts as "not yet"
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline}s waiting for {what}")


def cli(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnsplane.cli", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[str]]]:
    port = free_port()
    data = tmp_path / "data"
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "dnsplane.cli", "up", "--dns", f"127.0.0.1:{port}",
                             "--data-dir", str(data)], stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner, banner + (tmp_path / "up.log").read_text()
        yield port, data, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def query(port: int, name: str, rtype: str = "A", tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rtype)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=2)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=2)


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.address for rrset in msg.answer for rd in rrset if hasattr(rd, "address")}


def seen_in(port: int, n: int = 40) -> set[str]:
    out: set[str] = set()
    for _ in range(n):
        out |= addresses(query(port, "api.demo.test.", tcp=len(out) % 2 == 1))
    return out


def test_up_serves_demo_and_follows_a_failing_load_balancer(running) -> None:  # type: ignore[no-untyped-def]
    port, data, proc = running
    wait_for("api.demo.test. to answer", lambda: bool(addresses(query(port, "api.demo.test."))))
    udp = query(port, "api.demo.test.")
    tcp = query(port, "api.demo.test.", tcp=True)
    assert udp.rcode() == dns.rcode.NOERROR and tcp.rcode() == dns.rcode.NOERROR
    assert len(addresses(udp)) == 1, "weighted routing answers one load balancer per response"
    wait_for("all three targets to be answered", lambda: seen_in(port) == {"192.0.2.11", LB2, "192.0.2.13"})
    assert query(port, "nope.demo.test.").rcode() == dns.rcode.NXDOMAIN
    assert query(port, "example.com.").rcode() == dns.rcode.REFUSED

    failed = cli("demo", "fail", "lb-2", data=data)
    assert failed.returncode == 0, failed.stderr
    wait_for("lb-2 to leave the answers", lambda: LB2 not in seen_in(port))
    assert seen_in(port, 100) == {"192.0.2.11", "192.0.2.13"}

    status = cli("status", data=data)
    assert status.returncode == 0, status.stderr
    assert "api.demo.test. A" in status.stdout and "DOWN" in status.stdout

    recovered = cli("demo", "recover", "lb-2", data=data)
    assert recovered.returncode == 0, recovered.stderr
    wait_for("lb-2 to come back", lambda: LB2 in seen_in(port))

    history = cli("history", "api.demo.test", data=data)
    assert history.returncode == 0
    assert "write" in history.stdout
    instance = json.loads((data / "instance.json").read_text())
    assert instance["dns"] == ["127.0.0.1", port]
    assert proc.poll() is None


def test_validate_refuses_a_bad_file_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("zone: demo.test\ntargets:\n  lb-1: {addresses: [not-an-ip]}\nendpoints: []\n")
    res = subprocess.run([sys.executable, "-m", "dnsplane.cli", "validate", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert f"{bad}:3:" in res.stderr.replace("\n", "")


def test_up_with_a_bad_fleet_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("zone: demo.test\nbogus: 1\n")
    data = tmp_path / "data"
    res = subprocess.run([sys.executable, "-m", "dnsplane.cli", "up", "--fleet", str(bad), "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert f"{bad}:2:" in res.stderr
    assert not data.exists(), "a refused fleet must not create anything"
