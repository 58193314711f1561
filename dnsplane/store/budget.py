"""The request budgets several processes share through the SQLite store: one token bucket per account.

A row of ``request_budget`` is one account's bucket (tokens left as of ``stamp``, refilled at ``rate`` per
second up to ``burst``) and its counts for ``dnsplane status``: requests taken, how many had to wait,
seconds waited. ``take_request_unlocked`` refills and draws inside the caller's ``BEGIN IMMEDIATE``
transaction, so two processes cannot both take the last token. The providers' side is
``providers/route53/throttle.SharedBudget``.

Limits: the wall clock of the processes is the bucket's clock (a clock set back refills nothing until it
passes the stamp again); rate and burst are the last caller's.
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS request_budget (
    account TEXT PRIMARY KEY, rate REAL NOT NULL, burst REAL NOT NULL, tokens REAL NOT NULL, stamp REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0, waits INTEGER NOT NULL DEFAULT 0, waited REAL NOT NULL DEFAULT 0) WITHOUT ROWID
"""


def take_request_unlocked(db: sqlite3.Connection, account: str, rate: float, burst: float, now: float,
                          waited: float, reserve: float = 0.0) -> float:
    """0.0 and one token taken (counted), or the seconds until one is free beside ``reserve`` more (nothing
    taken)."""
    row = db.execute("SELECT tokens, stamp FROM request_budget WHERE account = ?", (account,)).fetchone()
    tokens, stamp = (burst, now) if row is None else (float(row[0]), float(row[1]))
    tokens = min(burst, tokens + max(0.0, now - stamp) * rate)
    taken = tokens >= 1.0 + reserve - 1e-9  # tolerate float rounding of the refill
    if taken:
        tokens = max(0.0, tokens - 1.0)
    db.execute(
        "INSERT INTO request_budget (account, rate, burst, tokens, stamp, used, waits, waited)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET rate = excluded.rate,"
        " burst = excluded.burst, tokens = excluded.tokens, stamp = excluded.stamp, used = used + excluded.used,"
        " waits = waits + excluded.waits, waited = waited + excluded.waited",
        (account, rate, burst, tokens, max(now, stamp), int(taken), int(taken and waited > 0),
         waited if taken else 0.0))
    return 0.0 if taken else (1.0 + reserve - tokens) / rate


def budgets_unlocked(db: sqlite3.Connection) -> list[dict[str, object]]:
    """Every account's budget and counts, for ``dnsplane status``."""
    rows = db.execute("SELECT account, rate, burst, used, waits, waited FROM request_budget ORDER BY account")
    return [{"account": a, "rate": r, "burst": b, "used": u, "waits": w, "waited": s} for a, r, b, u, w, s in rows]
