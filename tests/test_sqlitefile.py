"""SQLite data files: schema version at open (PRAGMA user_version), damage as ``DamagedDataFile``."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from dnsplane.errors import DamagedDataFile
from dnsplane.providers.embedded import EmbeddedProvider
from dnsplane.store.sqlite import SqliteStore
from tests.fakes import key, member, rs
from tests.providers.test_conformance import first_write


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


@pytest.mark.parametrize(("open_file", "current"), [(lambda p: SqliteStore(p), 1),
                                                    (lambda p: EmbeddedProvider(p, "demo.test."), 2)],
                         ids=["store", "embedded"])
def test_versions_damage_and_stamping(tmp_path: Path, open_file, current: int) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f.sqlite"
    open_file(path).close()
    assert user_version(path) == current  # a new file carries the current version
    set_user_version(path, 0)  # a file made before versions were recorded
    open_file(path).close()
    assert user_version(path) == current  # stamped on first open
    set_user_version(path, 7)
    with pytest.raises(DamagedDataFile, match="schema version 7"):
        open_file(path)
    path.write_bytes(os.urandom(4096))
    with pytest.raises(DamagedDataFile, match="damaged"):
        open_file(path)


def test_an_embedded_file_of_version_1_gains_the_write_token_and_a_write_moves_it(tmp_path: Path) -> None:
    path = tmp_path / "dns.sqlite"
    EmbeddedProvider(path, "demo.test.").close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE write_token")  # as a dnsplane of schema version 1 left it
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    provider = EmbeddedProvider(path, "demo.test.")
    assert user_version(path) == 2
    assert provider.write_token() == ""
    provider.apply([first_write(key("a.demo.test"), rs(member("lb1", "192.0.2.1")))])
    assert provider.write_token() not in ("", None)
    provider.close()


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
