"""One SQLite file as the store and the embedded provider use it: WAL, a busy timeout, a schema
version, and transactions under an instance lock.

Guarantees: every ``tx()`` is one SQLite transaction (``BEGIN IMMEDIATE`` takes the write
lock at once, so a read-modify-write cannot interleave with another process's); an error
inside rolls it back; a locked or busy database raises the caller's ``Retryable`` class.
Safe for several processes on one machine; one connection per instance, shared by threads
under the lock.

Damage and versions: a file that is not a SQLite database, or whose pages SQLite finds
malformed, raises ``DamagedDataFile`` (``Permanent``, with the path and what to do) — at open
and from any later ``tx()`` — never a bare ``sqlite3`` error. The schema version is SQLite's
``PRAGMA user_version``: a file whose version is above the owner's ``version`` is refused at
open (written by a newer dnsplane); 0 is a new file or one made before versions were recorded,
which the owner creates or migrates and then stamps with ``stamp_unlocked`` in the same
transaction. ``quick_check`` reads every page (O(file size)): callers run it once at start,
not on every open.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator

from dnsplane.errors import DamagedDataFile, Retryable


def is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_CORRUPT and SQLITE_NOTADB: Python raises them as plain ``DatabaseError`` (no subclass)."""
    return type(exc) is sqlite3.DatabaseError


class SqliteFile:
    def __init__(self, path: str | os.PathLike[str], *, timeout: float, synchronous: str,
                 unavailable: type[Retryable], what: str = "database", version: int = 0) -> None:
        self.path = os.fspath(path)
        self.what = what
        self.version = version
        self.lock = threading.Lock()
        self.unavailable = unavailable
        try:
            self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:  # e.g. the directory is missing or not writable
            raise DamagedDataFile(self.path, f"cannot open the {what}: {exc}") from exc
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute(f"PRAGMA synchronous = {synchronous}")
            self.found_version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # parses the schema
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                raise unavailable(reason=f"{self.path}: {exc}") from exc
            if is_damage(exc):
                raise self.damaged(exc) from exc
            raise DamagedDataFile(self.path, f"cannot open the {what}: {exc}") from exc
        if self.found_version > version:
            self.db.close()
            raise DamagedDataFile(
                self.path,
                f"the {what} has schema version {self.found_version}, but this dnsplane knows versions up to "
                f"{version}: it was written by a newer dnsplane; run that version, or move the file away "
                "(dnsplane starts a new one) if its contents may be lost")

    def damaged(self, exc: sqlite3.DatabaseError) -> DamagedDataFile:
        return DamagedDataFile(
            self.path,
            f"the {self.what} is damaged ({exc}); stop dnsplane, then restore the file from a backup or move it "
            "away (dnsplane starts a new one)")

    def stamp_unlocked(self, db: sqlite3.Connection) -> None:
        """Record this schema version in the file (inside the transaction that made the schema current)."""
        if self.found_version != self.version:
            db.execute(f"PRAGMA user_version = {int(self.version)}")
            self.found_version = self.version

    def quick_check(self) -> None:
        """Read every page (``PRAGMA quick_check``); raise ``DamagedDataFile`` when SQLite finds damage."""
        with self.tx() as db:
            rows = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)")]
        if rows != ["ok"]:
            raise DamagedDataFile(self.path, f"the {self.what} is damaged ({'; '.join(rows)}); stop dnsplane, then "
                                  "restore the file from a backup or move it away (dnsplane starts a new one)")

    @contextlib.contextmanager
    def tx(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction under the instance lock; ``immediate`` takes the write lock at once."""
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield self.db
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self.db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    if is_busy(exc):
                        raise self.unavailable(reason=f"{self.path}: {exc}", retry_after=0.1) from exc
                    raise
                if is_damage(exc):
                    raise self.damaged(exc) from exc
                raise

    def close(self) -> None:
        with self.lock:
            self.db.close()
