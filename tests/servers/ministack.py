"""ministack (a local AWS emulator, PyPI ``ministack``) as a subprocess on a loopback port, for Route 53 tests.

``ministack`` (module-scoped fixture) starts ``python -m ministack`` with
``BIND_HOST=127.0.0.1 GATEWAY_PORT=<free port>``, waits (with a deadline) until
``/_ministack/health`` answers, yields a ``Ministack`` handle and stops the
process on teardown. boto3 gets fake credentials through the environment
(AWS_ACCESS_KEY_ID=test, AWS_SECRET_ACCESS_KEY=test, AWS_DEFAULT_REGION=us-east-1).
``Ministack.create_zone`` makes a fresh hosted zone per test, so tests are isolated.
``ministack_server()`` is the same process as a context manager, for benchmarks.

``ministack`` answers through ``route53_rules`` (tests/servers/route53_rules.py), a proxy that refuses
what Route 53 documents it refuses (at ``SUITE_RATE`` requests/s): ``Ministack.url`` is the proxy's,
``Ministack.rules`` its counters; ``ministack_direct`` is ministack itself, for tests of the emulator
and of the proxy. ``provider()`` gives the provider a request budget of the proxy's rate.

When ministack is not installed the fixture skips, unless DNSPLANE_REQUIRE_SERVERS=1
(then it fails, saying what is missing).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dnsplane.providerconfig import Route53Config
from dnsplane.providers.route53 import Route53Provider, ThrottleBudget
from tests.servers.route53_rules import RulesProxy, route53_rules

FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
START_TIMEOUT = 30.0
# requests/s of the rules proxy in front of the ``ministack`` fixture: twenty times Route 53's 5 (the rules
# proxy's default), so the provider suites' thousands of calls take seconds, not minutes (434 s against
# 33 s at 5/s); Throttling at the real rate is tested in tests/servers/test_route53_rules.py
SUITE_RATE = 100.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ministack:
    url: str  # what boto3 is given: the rules proxy's address, or ministack's (``ministack_direct``)
    process: subprocess.Popen[bytes]
    rules: RulesProxy | None = None

    def client(self) -> Any:
        import boto3

        return boto3.client("route53", endpoint_url=self.url, region_name="us-east-1")

    def create_zone(self, name: str) -> str:
        """A new hosted zone named ``name``; returns its id (``Z...``)."""
        resp = self.client().create_hosted_zone(Name=name, CallerReference=uuid.uuid4().hex)
        return str(resp["HostedZone"]["Id"]).rsplit("/", 1)[-1]

    def provider(self, zone: str, *, wait_insync: bool = False, **kwargs: Any) -> Route53Provider:
        """A ``Route53Provider`` on a fresh hosted zone, with a budget generous enough for tests."""
        kwargs.setdefault("budget", ThrottleBudget(self.rules.rate if self.rules else 10_000))
        config = Route53Config(self.create_zone(zone), endpoint_url=self.url, wait_insync=wait_insync)
        return Route53Provider(zone, config, **kwargs)


def _unavailable(reason: str) -> None:
    if os.environ.get("DNSPLANE_REQUIRE_SERVERS") == "1":
        pytest.fail(f"DNSPLANE_REQUIRE_SERVERS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class MinistackUnavailable(RuntimeError):
    """ministack is not installed, exited at start, or did not answer in time (the message says which)."""


@contextlib.contextmanager
def ministack_server() -> Iterator[Ministack]:
    """``python -m ministack`` on a free loopback port in a temporary directory, until the block ends;
    ``MinistackUnavailable`` if it cannot be had. Sets the fake credentials in ``os.environ`` (if unset)."""
    if importlib.util.find_spec("ministack") is None:
        raise MinistackUnavailable("ministack is not installed (pip install ministack)")
    for k, v in FAKE_AWS_ENV.items():
        os.environ.setdefault(k, v)
    port = _free_port()
    env = {**os.environ, **FAKE_AWS_ENV, "BIND_HOST": "127.0.0.1", "GATEWAY_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="ministack-") as workdir, open(f"{workdir}/log", "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ministack"], env=env, cwd=workdir, stdout=logf, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    with open(f"{workdir}/log", "rb") as f:
                        tail = f.read()[-2000:].decode(errors="replace")
                    raise MinistackUnavailable(f"ministack exited with {proc.returncode}: {tail}")
                try:
                    with urllib.request.urlopen(f"{url}/_ministack/health", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise MinistackUnavailable(f"ministack did not answer on {url} within {START_TIMEOUT:.0f}s")
                time.sleep(0.1)
            yield Ministack(url, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def ministack(ministack_direct: Ministack) -> Iterator[Ministack]:
    """ministack behind the rules proxy: Route 53's documented limits, at ``SUITE_RATE`` requests/s."""
    with route53_rules(ministack_direct.url, rate=SUITE_RATE) as rules:
        yield Ministack(rules.url, ministack_direct.process, rules)


@pytest.fixture(scope="module")
def ministack_direct() -> Iterator[Ministack]:
    """ministack itself, no rules in front (for tests of the emulator and of the proxy)."""
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(ministack_server())
        except MinistackUnavailable as exc:
            _unavailable(str(exc))
        yield handle
