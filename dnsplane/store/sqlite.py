"""The default plan store: one SQLite file in the data directory.

Guarantees:
- safe with several processes and threads on one machine: WAL mode, a busy
  timeout, and every read-modify-write (publish, advance_head, finish, collect)
  inside one ``BEGIN IMMEDIATE`` transaction, so the head compare-and-swap and
  the collector's watermark check are made under the write lock;
- multi-statement reads run in one transaction, so they see one snapshot;
- ``changed_between`` walks the generation index: O(changes in range);
- a busy or locked database raises ``StoreUnavailable`` (``Retryable``), never a
  bare ``sqlite3`` error;
- ``synchronous=FULL``: a committed plan survives a power loss.

Limits:
- one machine only (SQLite locking over a network file system is not to be
  trusted); use a distributed store across machines;
- a connection per instance, guarded by a lock: calls from several threads of
  one instance are serialised, not parallel;
- parsed record sets are cached by their JSON text (bounded), trading memory
  for the cost of parsing the same content twice.

Schema (version 1, kept in ``PRAGMA user_version``; a file of a newer version, or damaged, is
refused at open with ``DamagedDataFile``, see ``dnsplane.sqlitefile``)::

    meta(key PK, value)                       -- 'head', 'lkg', 'schema', 'owner' (text: the owner id)
    plans(generation PK, created_at, planner, changes)
    changes(name, rtype, generation, data, PK(name, rtype, generation)), index on generation
    inflight(actor PK, generation, since)
    applied(actor PK, generation, at)
    journal(id PK, at, actor, name, rtype, action, before, after, detail), index on (name, rtype, id)
    health(target PK, healthy, since)          -- the health the planner last acted on (added
                                               -- within version 1: created at open when missing)
    request_budget(account PK, ...)            -- a provider's request budget per account, shared by
                                               -- processes (store/budget.py; added within version 1)
    freeze(id PK = 1, at, who, reason)          -- the operator's freeze, one row while in force
    dials(kind, subject, targets, at, who, reason, until, PK(kind, subject))  -- pins and drains
    operator_journal(id PK, at, who, action, reason, subject)  -- freeze, pin, drain, ... (the three
                                               -- added within version 1)
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence

from dnsplane.codec import RecordSetCodec
from dnsplane.errors import DamagedDataFile, PlanCollected, StoreUnavailable
from dnsplane.model import (
    MAX_GENERATION,
    NO_GENERATION,
    Desired,
    Dial,
    EndpointKey,
    Generation,
    HealthRecord,
    RecordSet,
)
from dnsplane.sqlitefile import SqliteFile, is_busy
from dnsplane.store import budget
from dnsplane.store.base import INFLIGHT_TTL, WRITE_ACTIONS, Freeze, JournalEntry, OperatorAction, PlanInfo, Store
from dnsplane.store.memory import check_generation, check_unique_keys

log = logging.getLogger(__name__)

_new_key = functools.partial(tuple.__new__, EndpointKey)  # EndpointKey((name, rtype)) minus NamedTuple's slow __new__

SCHEMA_VERSION = 1
_PER_KEY_LIMIT = 32  # below this many keys, desired() looks each one up; above, one join

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS plans (
    generation INTEGER PRIMARY KEY, created_at REAL NOT NULL, planner TEXT NOT NULL, changes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    name TEXT NOT NULL, rtype TEXT NOT NULL, generation INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (name, rtype, generation)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS changes_by_generation ON changes (generation);
CREATE TABLE IF NOT EXISTS inflight (actor TEXT PRIMARY KEY, generation INTEGER NOT NULL, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS applied (actor TEXT PRIMARY KEY, generation INTEGER NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL, name TEXT NOT NULL,
    rtype TEXT NOT NULL, action TEXT NOT NULL, before INTEGER, after INTEGER, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS journal_by_key ON journal (name, rtype, id);
CREATE TABLE IF NOT EXISTS health (
    target TEXT PRIMARY KEY, healthy INTEGER NOT NULL, since REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS freeze (
    id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL, who TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dials (
    kind TEXT NOT NULL, subject TEXT NOT NULL, targets TEXT NOT NULL, at REAL NOT NULL, who TEXT NOT NULL,
    reason TEXT NOT NULL, until REAL, PRIMARY KEY (kind, subject)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS operator_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
    reason TEXT NOT NULL, subject TEXT NOT NULL);
""" + budget.SCHEMA



class SqliteStore(Store):
    """``Store`` on a SQLite file; several instances and processes may share the file."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._timeout = timeout
        self._codec = RecordSetCodec()
        self._file = SqliteFile(self.path, timeout=timeout, synchronous="FULL", unavailable=StoreUnavailable,
                                what="plan store", version=SCHEMA_VERSION)
        self._db = self._file.db
        try:
            with self._tx(immediate=True) as db:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('head', 0), ('schema', ?)", (SCHEMA_VERSION,)
                )
                columns = {row[1] for row in db.execute("PRAGMA table_info(operator_journal)")}
                if "subject" not in columns:  # a file from before dials: the journal of freezes only
                    db.execute("ALTER TABLE operator_journal ADD COLUMN subject TEXT NOT NULL DEFAULT ''")
                self._file.stamp_unlocked(db)
                self._recover_head_unlocked(db)
        except sqlite3.OperationalError as exc:
            self._db.close()
            if is_busy(exc):
                raise StoreUnavailable(reason=f"{self.path}: {exc}") from exc
            raise DamagedDataFile(self.path, f"cannot open it as a dnsplane plan store: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    # -- transactions --------------------------------------------------------

    def _tx(self, immediate: bool = False) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._file.tx(immediate)

    def close(self) -> None:
        self._file.close()

    def take_request(self, account: str, rate: float, burst: float, now: float, waited: float,
                     reserve: float = 0.0) -> float:
        """One request of ``account``'s budget (``providers/route53/throttle.BucketStore``, ``store/budget``)."""
        with self._tx(immediate=True) as db:
            return budget.take_request_unlocked(db, account, rate, burst, now, waited, reserve)

    def request_budgets(self) -> list[dict[str, object]]:
        with self._tx() as db:
            return budget.budgets_unlocked(db)

    def check_integrity(self) -> None:
        """Read every page once; ``DamagedDataFile`` when SQLite finds damage (O(file size): at start only)."""
        self._file.quick_check()

    def _recover_head_unlocked(self, db: sqlite3.Connection) -> None:
        """A file whose head went past ``MAX_GENERATION`` (before the bound existed, a hand-written
        marker ``g=9223372036854775807`` became the head, after which every publish overflowed):
        its plans past the bound are dropped and the head set back to the newest plan within it;
        applied, in-flight and last-known-good generations past it are lowered to that head. Markers
        a provider holds past the bound are corrupt ones the verifier repairs; the planner publishes
        anew whatever the dropped plans changed."""
        head = self._head_unlocked(db)
        if 0 <= head <= MAX_GENERATION:
            return
        db.execute("DELETE FROM plans WHERE generation > ? OR generation < 0", (MAX_GENERATION,))
        db.execute("DELETE FROM changes WHERE generation > ? OR generation < 0", (MAX_GENERATION,))
        (top,) = db.execute("SELECT max(generation) FROM plans").fetchone()
        (top_change,) = db.execute("SELECT max(generation) FROM changes").fetchone()
        new = max(top or NO_GENERATION, top_change or NO_GENERATION)
        db.execute("UPDATE meta SET value = ? WHERE key = 'head'", (new,))
        db.execute("UPDATE meta SET value = ? WHERE key = 'lkg' AND value > ?", (new, new))
        db.execute("UPDATE applied SET generation = ? WHERE generation > ?", (new, new))
        db.execute("DELETE FROM inflight WHERE generation > ?", (new,))
        log.warning("%s: the head %d was past the generation bound %d (a hand-written marker's); plans past it "
                    "were dropped and the head set back to %d", self.path, head, MAX_GENERATION, new)

    # -- plans -------------------------------------------------------------

    @staticmethod
    def _head_unlocked(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()[0])

    def head(self) -> Generation:
        with self._tx() as db:
            return Generation(self._head_unlocked(db))

    def publish(
        self, expect_head: Generation, changes: Sequence[tuple[EndpointKey, RecordSet]], now: float, planner: str,
        expect_at: float | None = None,
    ) -> Generation | None:
        check_unique_keys(changes)
        encode = self._codec.encode
        with self._tx(immediate=True) as db:
            head = self._head_unlocked(db)
            if head != expect_head:
                return None
            if expect_at is not None and head and self._created_at_unlocked(db, head) != expect_at:
                return None
            g = head + 1
            check_generation(g, "publish")
            rows = [(k.name, k.rtype, g, encode(rs)) for k, rs in changes]
            self._add_plan_unlocked(db, g, rows, now, planner)
            return Generation(g)

    def oldest_plan(self) -> Generation:
        with self._tx() as db:
            return Generation(db.execute("SELECT coalesce(min(generation), 0) FROM plans").fetchone()[0])

    def created_at(self, generation: Generation) -> float | None:
        with self._tx() as db:
            return self._created_at_unlocked(db, int(generation))

    @staticmethod
    def _created_at_unlocked(db: sqlite3.Connection, g: int) -> float | None:
        row = db.execute("SELECT created_at FROM plans WHERE generation = ?", (g,)).fetchone()
        return None if row is None else float(row[0])

    def advance_head(self, at_least: Generation, now: float) -> Generation:
        check_generation(at_least, "advance_head")
        with self._tx(immediate=True) as db:
            head = self._head_unlocked(db)
            if head >= at_least:
                return Generation(head)
            self._add_plan_unlocked(db, int(at_least), [], now, "advance_head")
            return Generation(int(at_least))

    @staticmethod
    def _add_plan_unlocked(
        db: sqlite3.Connection, g: int, rows: list[tuple[str, str, int, str]], now: float, planner: str
    ) -> None:
        db.execute(
            "INSERT INTO plans (generation, created_at, planner, changes) VALUES (?, ?, ?, ?)",
            (g, now, planner, len(rows)),
        )
        if rows:
            db.executemany("INSERT INTO changes (name, rtype, generation, data) VALUES (?, ?, ?, ?)", rows)
        db.execute("UPDATE meta SET value = ? WHERE key = 'head'", (g,))

    def desired(self, keys: Iterable[EndpointKey] | None, at: Generation) -> dict[EndpointKey, Desired]:
        decode = self._codec.decode
        with self._tx() as db:
            if keys is None:
                # SQLite returns the bare columns of the row holding max(generation)
                cur = db.execute(
                    "SELECT name, rtype, max(generation), data FROM changes WHERE generation <= ? GROUP BY name, rtype",
                    (at,),
                )
                return {_new_key((n, t)): Desired(Generation(g), decode(d)) for n, t, g, d in cur}
            keys = list(dict.fromkeys(keys))
            out: dict[EndpointKey, Desired] = {}
            if len(keys) <= _PER_KEY_LIMIT:
                for k in keys:
                    row = db.execute(
                        "SELECT generation, data FROM changes WHERE name = ? AND rtype = ? AND generation <= ?"
                        " ORDER BY generation DESC LIMIT 1",
                        (k.name, k.rtype, at),
                    ).fetchone()
                    if row is not None:
                        out[k] = Desired(Generation(row[0]), decode(row[1]))
                return out
            cur = db.execute(
                "SELECT c.name, c.rtype, max(c.generation), c.data FROM json_each(?) AS q"
                " JOIN changes AS c ON c.name = q.value ->> 0 AND c.rtype = q.value ->> 1"
                " WHERE c.generation <= ? GROUP BY c.name, c.rtype",
                (json.dumps([[k.name, k.rtype] for k in keys], separators=(",", ":")), at),
            )
            return {_new_key((n, t)): Desired(Generation(g), decode(d)) for n, t, g, d in cur}

    def content_at(self, pairs: Sequence[tuple[EndpointKey, Generation]]) -> dict[EndpointKey, Desired]:
        if not pairs:
            return {}
        decode = self._codec.decode
        wanted = json.dumps([[k.name, k.rtype, int(g)] for k, g in pairs], separators=(",", ":"))
        with self._tx() as db:
            cur = db.execute(
                "SELECT c.name, c.rtype, max(c.generation), c.data FROM json_each(?) AS q"
                " JOIN changes AS c ON c.name = q.value ->> 0 AND c.rtype = q.value ->> 1"
                " WHERE c.generation <= q.value ->> 2 GROUP BY c.name, c.rtype",
                (wanted,),
            )
            return {_new_key((n, t)): Desired(Generation(g), decode(d)) for n, t, g, d in cur}

    def changed_between(self, after: Generation, upto: Generation) -> dict[EndpointKey, Desired]:
        decode = self._codec.decode
        out: dict[EndpointKey, Desired] = {}
        with self._tx() as db:
            # ascending generation: a later row of the same key overwrites an earlier one
            rows = db.execute(
                "SELECT name, rtype, generation, data FROM changes INDEXED BY changes_by_generation"
                " WHERE generation > ? AND generation <= ? ORDER BY generation",
                (after, upto),
            ).fetchall()
        # built outside the lock: at 100,000 endpoints this is seconds, and the other actors' store calls
        # (the enactors' fence reads, the journal) waited for it
        for n, t, g, d in rows:
            out[_new_key((n, t))] = Desired(Generation(g), decode(d))
        return out

    def plans(self) -> list[PlanInfo]:
        with self._tx() as db:
            cur = db.execute("SELECT generation, created_at, planner, changes FROM plans ORDER BY generation")
            return [PlanInfo(Generation(g), at, p, n) for g, at, p, n in cur]

    # -- enactors, verifier, collector --------------------------------------

    def begin(self, actor: str, generation: Generation, now: float) -> None:
        with self._tx(immediate=True) as db:
            (oldest,) = db.execute("SELECT min(generation) FROM plans").fetchone()
            if oldest is not None and generation < oldest:
                raise PlanCollected(generation=generation, oldest=oldest)
            db.execute(
                "INSERT INTO inflight (actor, generation, since) VALUES (?, ?, ?)"
                " ON CONFLICT (actor) DO UPDATE SET generation = excluded.generation, since = excluded.since",
                (actor, generation, now),
            )

    def finish(self, actor: str, generation: Generation, now: float) -> None:
        with self._tx(immediate=True) as db:
            db.execute("DELETE FROM inflight WHERE actor = ?", (actor,))
            if generation > self._head_unlocked(db):  # a plan this store never published (``Store.finish``)
                return
            db.execute(
                "INSERT INTO applied (actor, generation, at) VALUES (?, ?, ?)"
                " ON CONFLICT (actor) DO UPDATE SET generation = max(generation, excluded.generation),"
                " at = excluded.at",
                (actor, generation, now),
            )

    def set_last_known_good(self, generation: Generation) -> None:
        with self._tx(immediate=True) as db:
            (oldest,) = db.execute("SELECT min(generation) FROM plans").fetchone()
            if oldest is not None and generation < oldest:
                raise PlanCollected(generation=generation, oldest=oldest)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('lkg', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (generation,),
            )

    def low_watermark(self, now: float) -> Generation:
        with self._tx() as db:
            return self._low_watermark_unlocked(db, now)

    @staticmethod
    def _low_watermark_unlocked(db: sqlite3.Connection, now: float) -> Generation:
        w = db.execute("SELECT coalesce(max(generation), ?) FROM applied", (NO_GENERATION,)).fetchone()[0]
        # the same test as MemoryStore: now - since <= INFLIGHT_TTL
        g = db.execute("SELECT min(generation) FROM inflight WHERE ? - since <= ?", (now, INFLIGHT_TTL)).fetchone()[0]
        if g is not None:
            w = min(w, g)
        row = db.execute("SELECT value FROM meta WHERE key = 'lkg'").fetchone()
        if row is not None:
            w = min(w, row[0])
        return Generation(int(w))

    def collect(self, watermark: Generation, now: float) -> int:
        with self._tx(immediate=True) as db:
            current = self._low_watermark_unlocked(db, now)
            if current < watermark:
                log.info("collect skipped: watermark %d moved back to %d", watermark, current)
                return 0
            deleted = db.execute("DELETE FROM plans WHERE generation < ?", (watermark,)).rowcount
            # a row is superseded when a newer row of its key exists at or below the watermark
            db.execute(
                "DELETE FROM changes WHERE generation < ? AND EXISTS (SELECT 1 FROM changes AS newer"
                " WHERE newer.name = changes.name AND newer.rtype = changes.rtype"
                " AND newer.generation > changes.generation AND newer.generation <= ?)",
                (watermark, watermark),
            )
            return int(deleted)

    def applied(self) -> dict[str, Generation]:
        with self._tx() as db:
            cur = db.execute("SELECT actor, generation FROM applied ORDER BY actor")
            return {a: Generation(g) for a, g in cur}

    # -- health the planner acted on ------------------------------------------

    def save_health(self, records: Mapping[str, HealthRecord]) -> None:
        if not records:
            return
        rows = [(tid, int(r.healthy), r.since) for tid, r in records.items()]
        with self._tx(immediate=True) as db:
            db.executemany(
                "INSERT INTO health (target, healthy, since) VALUES (?, ?, ?)"
                " ON CONFLICT (target) DO UPDATE SET healthy = excluded.healthy, since = excluded.since",
                rows,
            )

    def health(self) -> dict[str, HealthRecord]:
        with self._tx() as db:
            cur = db.execute("SELECT target, healthy, since FROM health")
            return {tid: HealthRecord(bool(healthy), float(since)) for tid, healthy, since in cur}

    # -- the operator's freeze -----------------------------------------------

    def set_freeze(self, freeze: Freeze | None, action: OperatorAction) -> Freeze | None:
        with self._tx(immediate=True) as db:
            was = self._frozen_unlocked(db)
            if (was is None) == (freeze is None):
                return was
            if freeze is None:
                db.execute("DELETE FROM freeze")
            else:
                db.execute("INSERT INTO freeze (id, at, who, reason) VALUES (1, ?, ?, ?)",
                           (freeze.at, freeze.by, freeze.reason))
            self._journal_action_unlocked(db, action)
            return was

    @staticmethod
    def _journal_action_unlocked(db: sqlite3.Connection, a: OperatorAction) -> None:
        db.execute("INSERT INTO operator_journal (at, who, action, reason, subject) VALUES (?, ?, ?, ?, ?)",
                   (a.at, a.by, a.action, a.reason, a.subject))

    def frozen(self) -> Freeze | None:
        with self._tx() as db:
            return self._frozen_unlocked(db)

    @staticmethod
    def _frozen_unlocked(db: sqlite3.Connection) -> Freeze | None:
        row = db.execute("SELECT at, who, reason FROM freeze").fetchone()
        return None if row is None else Freeze(float(row[0]), str(row[1]), str(row[2]))

    def operator_actions(self) -> list[OperatorAction]:
        with self._tx() as db:
            cur = db.execute("SELECT at, who, action, reason, subject FROM operator_journal ORDER BY id")
            return [OperatorAction(float(at), str(who), str(action), str(reason), str(subject))
                    for at, who, action, reason, subject in cur]

    def record_action(self, action: OperatorAction) -> None:
        with self._tx(immediate=True) as db:
            self._journal_action_unlocked(db, action)

    def confirmation(self, generation: Generation, since: float) -> OperatorAction | None:
        with self._tx() as db:
            row = db.execute("SELECT at, who, action, reason, subject FROM operator_journal WHERE action = 'confirm'"
                             " AND subject = ? AND at >= ? ORDER BY id DESC LIMIT 1",
                             (str(generation), since)).fetchone()
            return None if row is None else OperatorAction(float(row[0]), str(row[1]), str(row[2]), str(row[3]),
                                                            str(row[4]))

    def set_dial(self, dial: Dial, action: OperatorAction,
                 check: Callable[[list[Dial]], None] | None = None) -> Dial | None:
        with self._tx(immediate=True) as db:
            if check is not None:  # under the write lock: another process's dial is in, or waits for this one
                check(self._dials_unlocked(db))
            was = self._dial_unlocked(db, dial.kind, dial.subject)
            db.execute("INSERT OR REPLACE INTO dials (kind, subject, targets, at, who, reason, until)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)", (dial.kind, dial.subject, ",".join(dial.targets), dial.at,
                                                         dial.by, dial.reason, dial.until))
            self._journal_action_unlocked(db, action)
            return was

    def lift_dial(self, kind: str, subject: str, action: OperatorAction) -> Dial | None:
        with self._tx(immediate=True) as db:
            was = self._dial_unlocked(db, kind, subject)
            if was is not None:
                db.execute("DELETE FROM dials WHERE kind = ? AND subject = ?", (kind, subject))
                self._journal_action_unlocked(db, action)
            return was

    def expire_dials(self, now: float, by: str) -> list[Dial]:
        with self._tx(immediate=True) as db:
            gone = [d for d in self._dials_unlocked(db) if not d.active(now)]
            for d in gone:
                db.execute("DELETE FROM dials WHERE kind = ? AND subject = ?", (d.kind, d.subject))
                self._journal_action_unlocked(db, OperatorAction(now, by, "expired", d.describe(), d.subject))
            return gone

    def dials(self) -> list[Dial]:
        with self._tx() as db:
            return self._dials_unlocked(db)

    _DIAL_COLUMNS = "kind, subject, targets, at, who, reason, until"

    @staticmethod
    def _dial_of(row: tuple[object, ...]) -> Dial:
        kind, subject, targets, at, who, reason, until = row
        return Dial("pin" if kind == "pin" else "drain", str(subject), tuple(t for t in str(targets).split(",") if t),
                    float(at), str(who), str(reason), None if until is None else float(until))  # type: ignore[arg-type]

    def _dial_unlocked(self, db: sqlite3.Connection, kind: str, subject: str) -> Dial | None:
        row = db.execute(f"SELECT {self._DIAL_COLUMNS} FROM dials WHERE kind = ? AND subject = ?",
                         (kind, subject)).fetchone()
        return None if row is None else self._dial_of(row)

    def _dials_unlocked(self, db: sqlite3.Connection) -> list[Dial]:
        cur = db.execute(f"SELECT {self._DIAL_COLUMNS} FROM dials ORDER BY kind, subject")
        return [self._dial_of(row) for row in cur]

    # -- owner id (I7) -------------------------------------------------------

    def owner_id(self) -> str:
        """This data dir's owner id: generated once (``dp-`` and 12 random hex digits) and kept in
        ``meta``, so every process on the data dir, and every restart, writes markers as one owner."""
        fresh = "dp-" + secrets.token_hex(6)  # never numeric, so the INTEGER column keeps it as text
        with self._tx(immediate=True) as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('owner', ?)", (fresh,))
            return str(db.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone()[0])

    # -- journal -----------------------------------------------------------

    def record(self, entries: Sequence[JournalEntry]) -> None:
        if not entries:
            return
        rows = [(e.at, e.actor, e.key.name, e.key.rtype, e.action, e.before, e.after, e.detail) for e in entries]
        with self._tx(immediate=True) as db:
            db.executemany(
                "INSERT INTO journal (at, actor, name, rtype, action, before, after, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def last_writes(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, JournalEntry]:
        if not keys:
            return {}
        wanted = json.dumps([[k.name, k.rtype] for k in keys], separators=(",", ":"))
        actions = ", ".join("?" * len(WRITE_ACTIONS))
        with self._tx() as db:
            # One row for the whole page (a JSON array), from one indexed lookup per key (journal_by_key): a
            # row per key is a step per key, and each step gives up the interpreter's lock and waits to get it
            # back behind the actors' threads (the API's endpoints list at 100,000 endpoints: p50 8 ms)
            (found,) = db.execute(
                "SELECT json_group_array(json_array(j.at, j.actor, j.name, j.rtype, j.action, j.before, j.after,"
                " j.detail)) FROM json_each(?) AS q JOIN journal AS j ON j.id = (SELECT id FROM journal"
                f" WHERE name = q.value ->> 0 AND rtype = q.value ->> 1 AND action IN ({actions})"
                " ORDER BY id DESC LIMIT 1)",
                (wanted, *WRITE_ACTIONS),
            ).fetchone()
        out = {}
        for at, actor, name, rtype, action, before, after, detail in json.loads(found):
            key = _new_key((name, rtype))
            out[key] = JournalEntry(at, actor, key, action, None if before is None else Generation(before),
                                    None if after is None else Generation(after), detail)
        return out

    def recent_journal(self, limit: int) -> list[JournalEntry]:
        with self._tx() as db:
            rows = db.execute("SELECT at, actor, name, rtype, action, before, after, detail FROM journal"
                              " ORDER BY id DESC LIMIT ?", (max(0, limit),)).fetchall()
        return [JournalEntry(at, actor, _new_key((name, rtype)), action, None if before is None else Generation(before),
                             None if after is None else Generation(after), detail)
                for at, actor, name, rtype, action, before, after, detail in reversed(rows)]

    def history(self, key: EndpointKey) -> list[JournalEntry]:
        with self._tx() as db:
            cur = db.execute(
                "SELECT at, actor, action, before, after, detail FROM journal WHERE name = ? AND rtype = ? ORDER BY id",
                (key.name, key.rtype),
            )
            return [
                JournalEntry(
                    at,
                    actor,
                    key,
                    action,
                    None if before is None else Generation(before),
                    None if after is None else Generation(after),
                    detail,
                )
                for at, actor, action, before, after, detail in cur
            ]
