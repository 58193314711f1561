"""Fixtures of the integration suite: a fresh ``named`` per test and a ``World`` that stops everything.

Tests here skip when BIND's ``named`` is missing, and fail instead when DNSPLANE_REQUIRE_SERVERS=1
(``tests.servers.named.require_named``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realworld.harness import World
from tests.servers.named import NamedServer, require_named, start_named


@pytest.fixture
def named(tmp_path: Path) -> Iterator[NamedServer]:
    """A fresh ``named`` serving ``demo.test.`` with the test TSIG key (about 0.1 s to start)."""
    require_named()
    server = start_named(tmp_path / "named")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(tmp_path: Path, named: NamedServer) -> Iterator[World]:
    """Targets, fleet files, ``dnsplane up`` processes and probers on ``named``; all stopped at the end."""
    w = World(tmp_path, named)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def embedded_world(tmp_path: Path) -> Iterator[World]:
    """A ``World`` without ``named``: fleets use the embedded provider and dnsplane's own DNS server."""
    w = World(tmp_path, None)
    try:
        yield w
    finally:
        w.close()
