"""Alerts: what an operator must hear of without watching (issue 12, part 3).

Each alert is one log line (warning), a count (``dnsplane_alerts_total{kind}`` in /metrics) and, with
``up --alert-webhook URL``, a JSON POST to that URL: ``{"kind": ..., "at": <unix time>, "zone": ..., ...}``.
Posts leave from a queue of their own, one at a time, each retried with backoff (``RETRIES`` attempts, 5 s
timeout each); nothing that raises an alert ever waits for one: a full queue drops its oldest alert (counted
in ``dropped``), and a webhook that keeps failing only costs its retries.

Kinds: ``finding`` (the verifier found a problem at an endpoint), ``repaired`` (an endpoint it had found a
problem at is right again), ``unrepaired`` (a problem still there ``UNREPAIRED_ROUNDS`` verifier rounds
later), ``held`` (the zone guard holds a plan), ``frozen`` / ``unfrozen``, ``failing`` (an actor's rounds have
failed ``FAILING_ROUNDS`` times in a row).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from typing import Any

log = logging.getLogger("dnsplane.alerts")

RETRIES = 5
BACKOFF = 0.5  # seconds before the second attempt; doubled for each one after
QUEUE = 1000
UNREPAIRED_ROUNDS = 3
FAILING_ROUNDS = 3


class Alerts:
    """Raise alerts (``emit``, from the event loop or any thread) and post them (``run``, a task)."""

    def __init__(self, zone: str, url: str | None = None, backoff: float = BACKOFF) -> None:
        self.zone, self.url, self.backoff = zone, url, backoff
        self.counts: Counter[str] = Counter()
        self.sent = self.failed = self.dropped = 0
        self._queue: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, kind: str, message: str, **fields: Any) -> None:
        self.counts[kind] += 1
        log.warning("alert %s: %s", kind, message, extra={"fields": fields})
        if self.url is None:
            return
        if len(self._queue) >= QUEUE:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append({"kind": kind, "at": time.time(), "zone": self.zone, "message": message, **fields})
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._ready.set)

    async def run(self) -> None:
        """Post queued alerts until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            alert = self._queue.popleft()
            delay = self.backoff
            for attempt in range(1, RETRIES + 1):
                error = await asyncio.to_thread(self._post, alert)
                if error is None:
                    self.sent += 1
                    break
                if attempt == RETRIES:
                    self.failed += 1
                    log.warning("alert not delivered to the webhook", extra={"fields": {
                        "kind": alert["kind"], "attempts": attempt, "error": error}})
                    break
                await asyncio.sleep(delay)
                delay *= 2

    def _post(self, alert: dict[str, Any]) -> str | None:
        """One POST; None on a 2xx answer, else what went wrong."""
        assert self.url is not None
        req = urllib.request.Request(self.url, data=json.dumps(alert).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "dnsplane"})
        try:
            # The status says it all: the body is never read (a receiver streaming one without end grew the
            # process by 10 GB in 20 s when it was), and closing the response closes the connection.
            with urllib.request.urlopen(req, timeout=5):
                pass
            return None
        except urllib.error.HTTPError as err:
            return f"HTTP {err.code}"
        except (OSError, ValueError) as err:
            return f"{type(err).__name__}: {err}"
