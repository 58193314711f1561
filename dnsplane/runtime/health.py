"""Real health checks: a TCP connect, or an HTTP GET with an expected status.

Each check has its own timeout and never raises: it returns ``(ok, detail)`` where ``ok`` is
True (up), False (down: the target refused, reset, timed out, answered the wrong status) or
None (unknown: the check failed for a reason on dnsplane's side, and says nothing of the
target). Unknown is:

- a local resource error: out of file descriptors (``EMFILE``, ``ENFILE``), buffers or
  memory (``ENOBUFS``, ``ENOMEM``, ``MemoryError``), ephemeral ports (``EADDRNOTAVAIL``,
  ``EAGAIN``), a resolver that cannot answer now (``EAI_AGAIN``, ``EAI_MEMORY``);
- a starved checker: the check timed out, but its timer fired more than ``STARVED_SLACK``
  of the timeout (at least ``STARVED_MIN`` seconds) late, so the process, not the target,
  was slow (the check's own wall time is the measure of the checker's loop lag);
- a checker cut off (the check was cancelled), or a bug in the checker (logged).

``HealthChecker`` runs the checks on a thread of its own with its own event loop, so a busy
main loop (the DNS server, the verifier's queries, the actors) cannot eat their timeouts: a
check's timeout measures the target. The thread is started once, at start, while file
descriptors are still free (its loop needs three). What can still starve the checker (the
whole machine out of CPU, the GIL held for long) shows up as a late timer and yields unknown.

Only the addresses written in the fleet file are contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

from dnsplane.model import HealthCheck

log = logging.getLogger("dnsplane.health")

Result = tuple[bool | None, str]

# errno values that say the machine running the check is short of something, not the target
LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL,
                          errno.EAGAIN})
LOCAL_EAI = frozenset(getattr(socket, n) for n in ("EAI_AGAIN", "EAI_MEMORY") if hasattr(socket, n))
STARVED_SLACK = 0.5  # a timeout firing this share of the timeout late means the checker was starved
STARVED_MIN = 0.25  # ... and at least this many seconds late
ROUND_SLACK = 5.0  # seconds past the longest check timeout before a whole round is given up as unknown


def local_reason(err: BaseException) -> str | None:
    """The reason ``err`` is dnsplane's own trouble, not the target's; None when it is the target's."""
    if isinstance(err, MemoryError):
        return "out of memory"
    if isinstance(err, socket.gaierror):
        return err.strerror or str(err) if err.errno in LOCAL_EAI else None
    if isinstance(err, OSError) and err.errno in LOCAL_ERRNOS:
        return err.strerror or str(err)
    return None


async def check(hc: HealthCheck) -> Result:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        if hc.kind == "tcp":
            return await asyncio.wait_for(_tcp(hc.host, hc.port), hc.timeout)
        return await asyncio.wait_for(_http(hc.url, hc.expect_status), hc.timeout)
    except TimeoutError:
        late = loop.time() - started - hc.timeout
        if late > max(STARVED_MIN, STARVED_SLACK * hc.timeout):
            return None, f"checker starved: its {hc.timeout:g}s timeout fired {late:.2f}s late"
        return False, f"timeout after {hc.timeout:g}s"
    except (OSError, MemoryError) as err:
        reason = local_reason(err)
        if reason is not None:
            return None, f"local: {reason}"
        return False, (err.strerror if isinstance(err, OSError) else None) or str(err) or type(err).__name__


async def guarded(hc: HealthCheck, took: list[float] | None = None) -> Result:
    """``check``, with anything else it raises (a bug) or a cancellation read as unknown; with ``took``, its
    duration in seconds is appended there (the checker's own clock: what a metric of check latency shows)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        result = await check(hc)
        if took is not None:
            took.append(loop.time() - started)
        return result
    except asyncio.CancelledError:
        if (task := asyncio.current_task()) is not None and task.cancelling():
            raise  # the round itself is being cancelled: let it go
        return None, "check cancelled"
    except Exception as err:
        log.warning("health check raised", exc_info=True,
                    extra={"fields": {"check": hc.describe(), "error": f"{type(err).__name__}: {err}"}})
        return None, f"checker error: {type(err).__name__}: {err}"


async def check_all(checks: Sequence[HealthCheck], took: list[float] | None = None) -> list[Result]:
    """Every check at once; one check's failure or crash never stops the others. ``took``: see ``guarded``."""
    results = await asyncio.gather(*(guarded(hc, took) for hc in checks), return_exceptions=True)
    out: list[Result] = []
    for r in results:
        if isinstance(r, BaseException):
            out.append((None, f"check cut off: {type(r).__name__}"))
        else:
            out.append(r)
    return out


class HealthChecker:
    """Runs rounds of checks on its own thread and event loop (see the module docstring).

    ``round`` is awaited from the main loop; it never raises for a check's sake. If the checker's
    thread is gone or a round does not end within the longest timeout plus ``ROUND_SLACK``, every
    check of that round is unknown and the thread is started again for the next round.
    """

    def __init__(self) -> None:
        self.took: list[float] = []  # the durations of the last round's checks that ended (seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start()

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run, args=(loop,), name="dnsplane-health", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._loop is not None

    async def round(self, checks: Sequence[HealthCheck]) -> list[Result]:
        if not checks:
            return []
        if not self.alive():
            self.close()
            try:
                self._start()
            except (OSError, RuntimeError, MemoryError) as err:  # no fds or threads left for a new loop
                return [(None, f"local: health checker cannot start: {err}")] * len(checks)
        assert self._loop is not None
        self.took = []  # this round's check durations (a fresh list: a stuck round's late ones go to the old)
        future = asyncio.run_coroutine_threadsafe(check_all(checks, self.took), self._loop)
        limit = max(hc.timeout for hc in checks) + ROUND_SLACK
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limit)
        except TimeoutError:
            future.cancel()
            log.warning("health round did not end in time; its checks are unknown; restarting the checker",
                        extra={"fields": {"limit": limit}})
            self.close()
            return [(None, f"checker stuck: no result within {limit:g}s")] * len(checks)

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)


async def _tcp(host: str, port: int) -> tuple[bool, str]:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "connected"


async def _http(url: str, expect: int) -> tuple[bool, str]:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls or None)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: dnsplane-health\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    fields = status_line.decode("latin-1").split()
    if len(fields) < 2 or not fields[1].isdigit():
        return False, f"bad HTTP response {status_line[:40]!r}"
    status = int(fields[1])
    return status == expect, f"HTTP {status}"
