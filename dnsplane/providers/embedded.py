"""The embedded provider: records and markers in a SQLite file that dnsplane's DNS server serves.

Guarantees:
- an endpoint is one row (records and marker side by side), so its records and
  marker change in one statement and no reader sees one without the other;
- every ``apply`` is one ``BEGIN IMMEDIATE`` transaction (``atomic_batches``):
  the current rows are read, each write is decided on them (``Write.verdict``: the
  marker, all of it, and the records), and each
  write is made as a conditional ``UPDATE … WHERE records IS ? AND marker_gen IS ?
  AND marker_digest IS ? AND marker_prev IS ? AND marker_owner IS ? AND marker_released IS ?`` (or an
  ``INSERT`` where no row existed)
  under the database's write lock. The statements' row
  counts are checked against the decisions; a mismatch rolls everything back;
- the write token (base.py) is a counter in table ``write_token`` that every ``apply`` that writes
  raises in its transaction; a write carrying a token (``Write.token``) is written only if the counter
  reads as that token when the transaction begins (one change: nothing of its own to chain through);
  hand edits do not raise it;
- a write whose records and marker (generation, digest, owner, released, seal intact: ``Marker.same_content``)
  already equal the current ones is not made (I6) and still comes back ``Applied``;
  writes of one batch apply in order;
- a file made before markers carried ``prev`` gains the ``marker_prev`` column when
  opened (``ALTER TABLE``; its markers read with an empty ``prev``); likewise ``marker_owner``
  for a file made before owner ids (its markers read with no owner: pre-owner markers), and
  ``marker_released`` for one made before markers could say released (its markers read as not
  released);
- safe with several processes and threads on one machine (WAL, busy timeout);
  a busy or locked database raises ``ProviderUnavailable`` (``Retryable``);
- ``add_listener`` callbacks run after each commit, in the writer's thread,
  with the keys written; ``data_version()`` changes whenever another
  connection (another instance or process) committed to the file, so the two
  together tell a reader of every change.

It never answers ``Rejected``: a row holds any record set, and the embedded server answers over
TCP what does not fit UDP; ``dnsplane validate`` checks no size limit for it.

Limits:
- one machine only; ``synchronous=NORMAL``: a power loss may drop the last
  commits (never corrupt the file); the enactors then rewrite what is missing;
- the generation order of markers is not checked here (the enactor does that
  before writing); the compare-and-swap on the exact marker is what fences.

Schema (version 2, kept in ``PRAGMA user_version``; a file of a newer version, or damaged, is
refused at open with ``DamagedDataFile``, see ``dnsplane.sqlitefile``)::

    endpoints(name, rtype, records TEXT NULL, marker_gen INT NULL, marker_digest TEXT NULL,
              marker_prev TEXT NULL, marker_owner TEXT NULL, marker_released INT NULL, PK(name, rtype))
    write_token(one INT PK = 1, value INT)    -- version 2; a file of version 1 gains it when opened

``marker_prev`` NULL (a row written before the column existed) reads as an empty ``prev``;
``marker_owner`` NULL as an empty ``owner``; ``marker_released`` is 1 for a released marker
(``Marker.released``), NULL otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, assert_never

from dnsplane.codec import RecordSetCodec
from dnsplane.errors import DamagedDataFile, ProviderUnavailable
from dnsplane.model import (
    EndpointKey,
    Generation,
    Marker,
    Observed,
    RecordSet,
    Verdict,
    corrupt_marker,
    generation_in_range,
)
from dnsplane.providers.base import TOKEN_ABSENT, Applied, Capabilities, Conflict, Provider, Write, WriteResult
from dnsplane.providers.memory import Listener, notify
from dnsplane.sqlitefile import SqliteFile, is_busy

log = logging.getLogger(__name__)

_ABSENT = Observed(None, None)
_new_key = functools.partial(tuple.__new__, EndpointKey)  # EndpointKey((name, rtype)) minus NamedTuple's slow __new__

# PRAGMA user_version; 0: made before versions were recorded (stamped at open); 2: the write token. A
# dnsplane of version 1 refuses a file of version 2: it would write without moving the token.
SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT NOT NULL, rtype TEXT NOT NULL, records TEXT, marker_gen INTEGER, marker_digest TEXT,
    marker_prev TEXT, marker_owner TEXT, marker_released INTEGER, PRIMARY KEY (name, rtype)) WITHOUT ROWID
"""
_TOKEN_SCHEMA = ("CREATE TABLE IF NOT EXISTS write_token"
                 " (one INTEGER PRIMARY KEY CHECK (one = 1), value INTEGER NOT NULL)")
_SELECT_KEYS = (
    "SELECT e.name, e.rtype, e.records, e.marker_gen, e.marker_digest, e.marker_prev, e.marker_owner,"
    " e.marker_released FROM json_each(?) AS q"
    " JOIN endpoints AS e ON e.name = q.value ->> 0 AND e.rtype = q.value ->> 1"
)

# records JSON, marker generation, digest, prev, owner, released (1 or NULL)
Row = tuple[str | None, int | None, str | None, str | None, str | None, int | None]
_NO_ROW: Row = (None, None, None, None, None, None)


def _marker(gen: int | None, digest: str | None, prev: str | None, owner: str | None = None,
            released: int | None = None) -> Marker | None:
    """The marker of a row; a generation out of range (a person with the sqlite3 shell: dnsplane never
    writes one) reads as a corrupt marker (``model.corrupt_marker``, of the row's marker columns), as the
    text providers read a ``g=`` out of range."""
    if gen is None or digest is None:
        return None
    if not generation_in_range(gen):
        return corrupt_marker(json.dumps([str(gen), digest, prev, owner, released]), owner or "")
    return Marker(Generation(gen), digest, prev or "", owner or "", bool(released))


def _released_column(marker: Marker) -> int | None:
    return 1 if marker.released else None


def _migrate_unlocked(db: sqlite3.Connection) -> None:
    """Add ``marker_prev`` to a file made before markers named the marker they replaced,
    ``marker_owner`` to one made before markers carried an owner id, and ``marker_released`` to one
    made before markers could say released."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(endpoints)")}
    if "marker_prev" not in columns:
        db.execute("ALTER TABLE endpoints ADD COLUMN marker_prev TEXT")
    if "marker_owner" not in columns:
        db.execute("ALTER TABLE endpoints ADD COLUMN marker_owner TEXT")
    if "marker_released" not in columns:
        db.execute("ALTER TABLE endpoints ADD COLUMN marker_released INTEGER")
    db.execute(_TOKEN_SCHEMA)


def _token_unlocked(db: sqlite3.Connection) -> str:
    row = db.execute("SELECT value FROM write_token").fetchone()
    return TOKEN_ABSENT if row is None else str(row[0])


def _key_list(keys: Iterable[EndpointKey]) -> str:
    return json.dumps([[k.name, k.rtype] for k in keys], separators=(",", ":"))


class EmbeddedProvider(Provider):
    """``Provider`` on a SQLite file; the embedded DNS server reads the same file."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        atomic_batches=True, native_cas=True, weighted_answers=True, max_batch=10_000
    )
    kind: ClassVar[str] = "embedded"

    def __init__(self, path: str | os.PathLike[str], zone: str, *, timeout: float = 5.0) -> None:
        super().__init__(zone)
        self.path = os.fspath(path)
        self._codec = RecordSetCodec()
        self._listeners: list[Listener] = []
        self._file = SqliteFile(self.path, timeout=timeout, synchronous="NORMAL", unavailable=ProviderUnavailable,
                                what="embedded DNS database", version=SCHEMA_VERSION)
        self._db = self._file.db
        try:
            with self._tx(immediate=True) as db:
                db.execute(_SCHEMA)
                _migrate_unlocked(db)
                self._file.stamp_unlocked(db)
        except sqlite3.OperationalError as exc:
            self._db.close()
            raise DamagedDataFile(self.path, f"cannot open it as a dnsplane DNS database: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    # -- transactions --------------------------------------------------------

    def _tx(self, immediate: bool = False) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._file.tx(immediate)

    def close(self) -> None:
        self._file.close()

    def check_integrity(self) -> None:
        """Read every page once; ``DamagedDataFile`` when SQLite finds damage (O(file size): at start only)."""
        self._file.quick_check()

    # -- writes ------------------------------------------------------------

    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        decode = self._codec.decode
        results: list[WriteResult] = []
        written: list[EndpointKey] = []
        with self._tx(immediate=True) as db:
            start = self._rows_unlocked(db, dict.fromkeys(w.key for w in writes))
            state = dict(start)  # as the batch proceeds, in order
            token = _token_unlocked(db) if any(w.token is not None for w in writes) else None
            for w in writes:
                text, gen, digest, prev, owner, released = state.get(w.key, _NO_ROW)
                current = _marker(gen, digest, prev, owner, released)
                match w.verdict(current, None if text is None else decode(text)):
                    case Verdict.APPLIED:
                        results.append(Applied(w.key, written=False))  # I6: already there, no write
                    case Verdict.CONFLICT:
                        results.append(Conflict(w.key, current))
                    case Verdict.WRITE if w.token is not None and w.token != token:
                        results.append(Conflict(w.key, current))  # an automated write came since it was read
                    case Verdict.WRITE:
                        state[w.key] = (self._codec.encode(w.records), w.marker.generation, w.marker.digest,
                                        w.marker.prev, w.marker.owner or None, _released_column(w.marker))
                        written.append(w.key)
                        results.append(Applied(w.key))
                    case unreachable:
                        assert_never(unreachable)
            if written:
                self._write_unlocked(db, start, {k: state[k] for k in written})
                db.execute("INSERT INTO write_token VALUES (1, 1) ON CONFLICT (one) DO UPDATE SET value = value + 1")
                self.writes += len(written)
        notify(self._listeners, written)
        return results

    @staticmethod
    def _write_unlocked(
        db: sqlite3.Connection, start: dict[tuple[str, str], Row], final: dict[EndpointKey, Row]
    ) -> None:
        """Make each key's final row, conditional on the records and marker it had when the transaction began."""
        updates, inserts = [], []
        for k, (text, gen, digest, prev, owner, released) in final.items():
            before = start.get(k)
            if before is None:
                inserts.append((k.name, k.rtype, text, gen, digest, prev, owner, released))
            else:
                updates.append((text, gen, digest, prev, owner, released, k.name, k.rtype, *before))
        count = 0
        if updates:
            count += db.executemany(
                "UPDATE endpoints SET records = ?, marker_gen = ?, marker_digest = ?, marker_prev = ?,"
                " marker_owner = ?, marker_released = ? WHERE name = ? AND rtype = ? AND records IS ?"
                " AND marker_gen IS ? AND marker_digest IS ? AND marker_prev IS ? AND marker_owner IS ?"
                " AND marker_released IS ?",
                updates,
            ).rowcount
        if inserts:
            count += db.executemany(
                "INSERT INTO endpoints (name, rtype, records, marker_gen, marker_digest, marker_prev,"
                " marker_owner, marker_released) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            ).rowcount
        if count != len(final):
            # impossible while every writer takes the write lock; refuse rather than half-apply
            raise ProviderUnavailable(reason=f"marker changed during a locked batch ({count} of {len(final)} rows)")

    def write_token(self) -> str:
        with self._tx() as db:
            return _token_unlocked(db)

    def hand_edit(self, key: EndpointKey, records: RecordSet | None, marker: Marker | None) -> None:
        """Overwrite an endpoint's records and marker with no check at all (``None`` removes that part)."""
        with self._tx(immediate=True) as db:
            if records is None and marker is None:
                db.execute("DELETE FROM endpoints WHERE name = ? AND rtype = ?", (key.name, key.rtype))
            else:
                db.execute(
                    "INSERT INTO endpoints (name, rtype, records, marker_gen, marker_digest, marker_prev,"
                    " marker_owner, marker_released) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (name, rtype) DO UPDATE SET records = excluded.records,"
                    " marker_gen = excluded.marker_gen, marker_digest = excluded.marker_digest,"
                    " marker_prev = excluded.marker_prev, marker_owner = excluded.marker_owner,"
                    " marker_released = excluded.marker_released",
                    (
                        key.name,
                        key.rtype,
                        None if records is None else self._codec.encode(records),
                        None if marker is None else marker.generation,
                        None if marker is None else marker.digest,
                        None if marker is None else marker.prev,
                        None if marker is None else marker.owner or None,
                        None if marker is None else _released_column(marker),
                    ),
                )
        log.info("hand edit of %s: records %s, marker %s", key, records and records.digest, marker)
        notify(self._listeners, [key])

    # -- reads -------------------------------------------------------------

    @staticmethod
    def _rows_unlocked(db: sqlite3.Connection, keys: Iterable[EndpointKey]) -> dict[tuple[str, str], Row]:
        """Current rows by plain ``(name, rtype)`` tuples (equal to, and hashed as, ``EndpointKey``)."""
        cur = db.execute(_SELECT_KEYS, (_key_list(keys),))
        return {(n, t): (r, g, d, p, o, x) for n, t, r, g, d, p, o, x in cur}

    def _observed(self, text: str | None, gen: int | None, digest: str | None, prev: str | None,
                  owner: str | None, released: int | None) -> Observed:
        return Observed(None if text is None else self._codec.decode(text),
                        _marker(gen, digest, prev, owner, released))

    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        keys = list(keys)
        with self._tx() as db:
            rows = self._rows_unlocked(db, keys)
        return {k: _ABSENT if (row := rows.get(k)) is None else self._observed(*row) for k in keys}

    def read_all(self) -> dict[EndpointKey, Observed]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT name, rtype, records, marker_gen, marker_digest, marker_prev, marker_owner,"
                " marker_released FROM endpoints").fetchall()
        return {_new_key((n, t)): self._observed(r, g, d, p, o, x) for n, t, r, g, d, p, o, x in rows}

    # -- for the DNS server ------------------------------------------------

    def add_listener(self, fn: Callable[[list[EndpointKey]], None]) -> None:
        """Call ``fn(keys)`` after every commit of this instance that changed ``keys`` (in the writer's thread).

        Commits by other instances or processes are not announced here; poll ``data_version()`` for those.
        """
        with self._file.lock:
            self._listeners.append(fn)

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` on this instance's connection: cheap, and it changes exactly when
        another connection (another instance, another process) committed to the file. This instance's own
        commits do not change it: ``add_listener`` announces those."""
        with self._file.lock:
            try:
                return int(self._db.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    raise ProviderUnavailable(reason=f"{self.path}: {exc}", retry_after=0.1) from exc
                raise
