"""SQLite data files: schema version at open (PRAGMA user_version), damage as ``DamagedDataFile``."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from dnsplane.errors import DamagedDataFile
from dnsplane.providers.embedded import EmbeddedProvider
from dnsplane.store.sqlite import SqliteStore


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def set_user_version(path: Path, version: int) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {version}")
    db.close()


@pytest.mark.parametrize("open_file", [lambda p: SqliteStore(p), lambda p: EmbeddedProvider(p, "demo.test.")],
                         ids=["store", "embedded"])
def test_versions_damage_and_stamping(tmp_path: Path, open_file) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f.sqlite"
    open_file(path).close()
    assert user_version(path) == 1  # a new file carries the current version
    set_user_version(path, 0)  # a file made before versions were recorded
    open_file(path).close()
    assert user_version(path) == 1  # stamped on first open
    set_user_version(path, 7)
    with pytest.raises(DamagedDataFile, match="schema version 7"):
        open_file(path)
    path.write_bytes(os.urandom(4096))
    with pytest.raises(DamagedDataFile, match="damaged"):
        open_file(path)


def test_malformed_pages_behind_a_good_header_are_damaged_data_file(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = SqliteStore(path)
    store.check_integrity()
    store.close()
    raw = bytearray(path.read_bytes())
    raw[100:] = os.urandom(len(raw) - 100)  # the 100-byte header stays valid: "malformed", not "not a database"
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedDataFile, match="damaged"):
        SqliteStore(path).check_integrity()
