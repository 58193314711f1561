"""The data dir's owner id survives its store: a damaged ``store.sqlite`` moved away (as the error
message advises) must not turn every endpoint this installation wrote into another owner's."""

from __future__ import annotations

from pathlib import Path

from dnsplane.runtime.datadir import installation_owner
from dnsplane.store.sqlite import SqliteStore


def test_the_owner_id_outlives_a_store_moved_away(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    first = installation_owner(tmp_path, "", store)
    store.close()
    assert first.startswith("dp-") and (tmp_path / "owner").read_text().strip() == first
    (tmp_path / "store.sqlite").rename(tmp_path / "store.sqlite.bad")
    fresh = SqliteStore(tmp_path / "store.sqlite")
    try:
        assert fresh.owner_id() != first  # a new store alone would generate another id
        assert installation_owner(tmp_path, "", fresh) == first
    finally:
        fresh.close()


def test_the_fleet_files_owner_wins(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    try:
        assert installation_owner(tmp_path, "team-a", store) == "team-a"
        assert not (tmp_path / "owner").exists()  # the data dir's own id is not made when not needed
    finally:
        store.close()
