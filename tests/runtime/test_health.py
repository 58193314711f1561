"""Health checks: down is the target's, unknown is dnsplane's own trouble (runtime/health.py)."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dnsplane.model import HealthCheck
from dnsplane.runtime import health
from dnsplane.runtime.health import HealthChecker, check


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (an HTTP check times out on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_is_down() -> None:
    ok, detail = asyncio.run(check(HealthCheck("tcp", "127.0.0.1", closed_port(), timeout=1.0)))
    assert ok is False, detail


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
def test_a_local_resource_error_is_unknown(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    async def no_fds(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, "local trouble")

    monkeypatch.setattr(health.asyncio, "open_connection", no_fds)
    ok, detail = asyncio.run(check(HealthCheck("tcp", "127.0.0.1", 9, timeout=1.0)))
    assert ok is None and "local" in detail


def test_a_timeout_that_fired_late_because_the_loop_was_busy_is_unknown(silent_server: int) -> None:
    hc = HealthCheck("http", url=f"http://127.0.0.1:{silent_server}/", timeout=0.2)

    async def starved() -> tuple[bool | None, str]:
        task = asyncio.create_task(check(hc))
        await asyncio.sleep(0.05)  # the check is now waiting on the silent server
        time.sleep(1.0)  # the loop is busy elsewhere: the check's 0.2 s timer cannot fire on time
        return await task

    ok, detail = asyncio.run(starved())
    assert ok is None and "starved" in detail
    ok, detail = asyncio.run(check(hc))  # not starved: the same check is a plain timeout, down
    assert ok is False and "timeout" in detail


def test_the_checker_thread_is_not_starved_by_a_busy_main_loop(silent_server: int) -> None:
    """The checks run on their own loop: blocking the main loop neither delays nor falsifies them."""
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen(16)
    checks = [HealthCheck("tcp", "127.0.0.1", up.getsockname()[1], timeout=0.5),
              HealthCheck("tcp", "127.0.0.1", closed_port(), timeout=0.5)]

    async def main() -> list[tuple[bool | None, str]]:
        checker = HealthChecker()
        try:
            task = asyncio.create_task(checker.round(checks))
            await asyncio.sleep(0)
            time.sleep(1.0)  # the main loop is stuck for twice the checks' timeout
            return await task
        finally:
            checker.close()

    try:
        results = asyncio.run(main())
    finally:
        up.close()
    assert [ok for ok, _ in results] == [True, False], results


def test_one_crashing_check_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    real = health.check

    async def sometimes_broken(hc: HealthCheck) -> tuple[bool | None, str]:
        if hc.port == 1:
            raise RuntimeError("a bug in one check")
        return await real(hc)

    monkeypatch.setattr(health, "check", sometimes_broken)
    port = closed_port()
    checks = [HealthCheck("tcp", "127.0.0.1", 1), HealthCheck("tcp", "127.0.0.1", port)]
    results = asyncio.run(health.check_all(checks))
    assert results[0][0] is None and "RuntimeError" in results[0][1]
    assert results[1][0] is False
