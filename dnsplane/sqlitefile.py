"""One SQLite file as the store and the embedded provider use it: WAL, a busy timeout, and
transactions under an instance lock.

Guarantees: every ``tx()`` is one SQLite transaction (``BEGIN IMMEDIATE`` takes the write
lock at once, so a read-modify-write cannot interleave with another process's); an error
inside rolls it back; a locked or busy database raises the caller's ``Retryable`` class.
Safe for several processes on one machine; one connection per instance, shared by threads
under the lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator

from dnsplane.errors import Retryable


def is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteFile:
    def __init__(self, path: str | os.PathLike[str], *, timeout: float, synchronous: str,
                 unavailable: type[Retryable]) -> None:
        self.path = os.fspath(path)
        self.lock = threading.Lock()
        self.unavailable = unavailable
        self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute(f"PRAGMA synchronous = {synchronous}")
        except sqlite3.OperationalError as exc:
            self.db.close()
            if is_busy(exc):
                raise unavailable(reason=f"{self.path}: {exc}") from exc
            raise

    @contextlib.contextmanager
    def tx(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction under the instance lock; ``immediate`` takes the write lock at once."""
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if is_busy(exc):
                    raise self.unavailable(reason=f"{self.path}: {exc}", retry_after=0.1) from exc
                raise

    def close(self) -> None:
        with self.lock:
            self.db.close()
