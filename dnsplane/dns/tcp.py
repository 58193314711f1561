"""The embedded server's TCP side: accepting connections, framing, and the limits against hostile clients.

What this module owns:
- ``TcpFront``: the listening socket's accept loop (its own, not ``loop.create_server``: so that a
  failing ``accept()`` is backed off, see below), the open connections and their cap;
- ``TcpConnection``: one client: 2-byte length framing (RFC 1035 §4.2.2), several queries per
  connection, answers in order, its deadlines;
- ``TcpLimits`` and ``LimitStats``: the limits and their counters.

The answers come from the server (``answer``: one TCP message and the peer's address in, the messages
answering it out; None: a zone transfer, whose messages the server hands to ``later`` when built).

Limits against hostile clients (RFC 7766 §6.2.3; every limit is a ``DnsServer`` option):
- ``read_timeout`` (5 s): once the first byte of a message has arrived, the whole
  message must arrive within this deadline; it does not restart on each byte, so a client
  sending one byte every 4 s is closed;
- ``idle_timeout`` (10 s): a connection with no message in progress, nothing left to
  answer and nothing unsent is closed after this long; so is one whose answers wait unsent
  while the client has taken none of them for this long (it sends and never reads);
- ``lifetime`` (120 s): every connection is closed this long after it was accepted,
  whatever it is doing (a zone transfer longer than that is cut too);
- ``max_connections`` (150, as BIND's ``tcp-clients``): a connection accepted when
  that many are open closes the one idle the longest; when none is idle the new one is
  closed at once (refused);
- ``max_pipelined`` (32): at most that many answers of one connection wait unsent in
  the process (the client does not read them); then the connection stops reading until
  they are sent, so a client that pipelines without reading holds a bounded buffer;
- ``accept()`` failing for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) stops
  accepting for a backoff (0.1 s doubling to 2 s) and is logged once per burst of
  failures (``tcp_accept_failed``, a warning without traceback); UDP and the open TCP
  connections are served meanwhile. Counts are in ``LimitStats``.

Limits: runs in the event loop thread only; a TCP message that cannot be answered at all (the
answer function returns []) closes its connection.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("dnsplane.dns")

TCP_IDLE_TIMEOUT = 10.0  # seconds a connection may wait for its next message
TCP_READ_TIMEOUT = 5.0  # seconds from a message's first byte to its last
TCP_LIFETIME = 120.0  # seconds a connection may live, whatever it does
TCP_MAX_CONNECTIONS = 150
TCP_MAX_PIPELINED = 32  # answers of one connection waiting unsent before it stops reading
ACCEPT_BATCH = 32  # connections accepted per readiness event
ACCEPT_BACKOFF = (0.1, 2.0)  # first and longest pause after accept() fails for lack of resources
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# one TCP message and the peer's address -> the messages answering it ([]: close the connection), or None:
# a zone transfer, whose messages are passed to the third argument once built ([] when it failed)
Answer = Callable[[bytes, str, Callable[[list[bytes]], None]], "list[bytes] | None"]


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """The limits of the module docstring."""

    idle_timeout: float = TCP_IDLE_TIMEOUT
    read_timeout: float = TCP_READ_TIMEOUT
    lifetime: float = TCP_LIFETIME
    max_connections: int = TCP_MAX_CONNECTIONS
    max_pipelined: int = TCP_MAX_PIPELINED

    def __post_init__(self) -> None:
        if min(self.idle_timeout, self.read_timeout, self.lifetime) <= 0:
            raise ValueError("TCP timeouts must be positive")
        if min(self.max_connections, self.max_pipelined) < 1:
            raise ValueError("TCP limits must be at least 1")


@dataclass(slots=True)
class LimitStats:
    """Counters of the hostile-client limits, the names not yet written and RRL."""

    tcp_accepted: int = 0
    tcp_refused: int = 0  # closed at once: the cap was reached and no connection was idle
    tcp_evicted: int = 0  # idle connections closed to make room for a new one
    tcp_read_timeouts: int = 0
    tcp_idle_timeouts: int = 0
    tcp_lifetime_closes: int = 0
    tcp_write_stalls: int = 0  # closed: answers left unsent and none taken for tcp_idle_timeout
    tcp_pipeline_pauses: int = 0
    accept_errors: int = 0
    accept_bursts: int = 0
    servfail_unwritten: int = 0


class TcpFront:
    """The accept loop and the open connections of one listening socket (see the module docstring)."""

    def __init__(self, limits: TcpLimits, stats: LimitStats, answer: Answer) -> None:
        self.limits = limits
        self.stats = stats
        self.answer = answer
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self.conns: dict[TcpConnection, None] = {}  # in order of acceptance
        self._adopting: set[asyncio.Task[None]] = set()
        self._accept_retry: asyncio.TimerHandle | None = None
        self._accept_failures = 0  # of the current burst; 0: accepting normally

    def start(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Accept on ``sock`` (bound, listening, non-blocking) in ``loop``."""
        self.loop = loop
        self._sock = sock
        self._accept_failures = 0
        loop.add_reader(sock.fileno(), self._acceptable)

    def stop(self) -> None:
        """Close the listening socket and every connection (their ``connection_lost`` runs in the loop)."""
        loop, sock = self.loop, self._sock
        if self._accept_retry is not None:
            self._accept_retry.cancel()
            self._accept_retry = None
        if sock is not None:
            if self._accept_failures == 0 and loop is not None:
                loop.remove_reader(sock.fileno())
            sock.close()
            self._sock = None
        for task in list(self._adopting):
            task.cancel()
        for conn in list(self.conns):
            conn.close()

    def _acceptable(self) -> None:
        """The listening socket is readable: accept what is waiting, admit it (``TcpConnection.connection_made``)."""
        sock = self._sock
        loop = self.loop
        if sock is None or loop is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                self._accept_recovered()
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE_ERRORS:
                    self._accept_failed(exc)
                    return
                continue  # the client went away before we accepted it (ECONNABORTED, EPROTO...)
            self._accept_recovered()
            conn.setblocking(False)
            task = loop.create_task(self._adopt(conn))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        loop = self.loop
        assert loop is not None
        try:
            await loop.connect_accepted_socket(lambda: TcpConnection(self), sock=conn)
        except OSError as exc:  # the client reset the connection under us
            log.debug("tcp connection lost at accept: %s", exc, extra={"event": "tcp_accept_lost"})
            conn.close()

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors or memory: stop accepting for a while; one warning per burst of failures."""
        loop, sock = self.loop, self._sock
        assert loop is not None and sock is not None
        self.stats.accept_errors += 1
        if self._accept_failures == 0:
            self.stats.accept_bursts += 1
            log.warning(
                "tcp accept failed (%s): pausing accepts, retrying with backoff; not logged again until it recovers",
                exc.strerror or exc,
                extra={"event": "tcp_accept_failed", "errno": exc.errno},
            )
            loop.remove_reader(sock.fileno())
        self._accept_failures += 1
        first, longest = ACCEPT_BACKOFF
        delay = min(longest, first * 2 ** min(self._accept_failures - 1, 16))
        self._accept_retry = loop.call_later(delay, self._accept_again)

    def _accept_again(self) -> None:
        self._accept_retry = None
        if self._sock is not None and self.loop is not None:
            self._acceptable()

    def _accept_recovered(self) -> None:
        if self._accept_failures == 0:
            return
        log.debug(
            "tcp accept works again after %d failures",
            self._accept_failures,
            extra={"event": "tcp_accept_recovered", "failures": self._accept_failures},
        )
        self._accept_failures = 0
        if self.loop is not None and self._sock is not None:
            self.loop.add_reader(self._sock.fileno(), self._acceptable)

    def admit(self, conn: TcpConnection) -> bool:
        """A new connection: room for it, made by closing the connection idle the longest, or refused."""
        conns = self.conns
        if len(conns) >= self.limits.max_connections:
            idle = [c for c in conns if c.idle_since is not None]
            if not idle:
                self.stats.tcp_refused += 1
                log.debug("tcp connection refused: %d open, none idle", len(conns), extra={"event": "tcp_refused"})
                return False
            victim = min(idle, key=lambda c: c.idle_since or 0.0)
            self.stats.tcp_evicted += 1
            log.debug("closing the longest idle tcp connection for a new one", extra={"event": "tcp_evicted"})
            victim.close()
        conns[conn] = None
        self.stats.tcp_accepted += 1
        return True


class TcpConnection(asyncio.Protocol):
    """One TCP client: 2-byte length framing, several queries per connection, the limits of the module docstring.

    Deadlines (``time.monotonic``): the connection's lifetime from acceptance; while a message is partly
    received, its read deadline from its first byte; while idle (nothing partly received, nothing
    waiting to be answered or sent), the idle timeout; while answers wait unsent, the idle timeout
    from the last time the client took any (bytes sent). One timer, re-armed only when the nearest
    deadline moves earlier; when it fires, the deadline is recomputed.
    Answers go out through ``send`` (one framed message; a handler may call it several times for one
    query); ``pending_answers`` counts those written while the transport could not flush them.
    """

    def __init__(self, front: TcpFront) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._opened = time.monotonic()
        self.idle_since: float | None = self._opened
        self._message_started: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._write_blocked = False
        self._written = 0  # bytes handed to the transport
        self._sent_progress_at = 0.0  # while writes are blocked: when the client last took some of them
        self._sent_seen = 0
        self._reading_paused = False
        self.pending_answers = 0
        self._peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self._front.admit(self):
            transport.abort()
            return
        self._transport = transport
        # pause_writing as soon as anything is left unsent, resume_writing once all is sent
        transport.set_write_buffer_limits(high=0, low=0)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._schedule()

    # --- deadlines ----------------------------------------------------------
    def _deadline(self) -> tuple[float, str]:
        lim = self._front.limits
        at, why = self._opened + lim.lifetime, "lifetime"
        if self._message_started is not None and self._message_started + lim.read_timeout < at:
            at, why = self._message_started + lim.read_timeout, "read"
        if self.idle_since is not None and self.idle_since + lim.idle_timeout < at:
            at, why = self.idle_since + lim.idle_timeout, "idle"
        if self._write_blocked and self._sent_progress_at + lim.idle_timeout < at:
            at, why = self._sent_progress_at + lim.idle_timeout, "write"
        return at, why

    def _schedule(self) -> None:
        at, _ = self._deadline()
        loop = self._front.loop
        if loop is not None and (self._timer is None or at < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = loop.call_later(max(0.0, at - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        at, why = self._deadline()
        now = time.monotonic()
        if why == "write" and now >= at:  # answers unsent: closed only if the client took none of them since
            sent = self._written - self._transport.get_write_buffer_size()
            if sent > self._sent_seen:
                self._sent_seen = sent
                self._sent_progress_at = now
                at, why = self._deadline()
        if now < at:
            self._schedule()
            return
        stats = self._front.stats
        if why == "read":
            stats.tcp_read_timeouts += 1
        elif why == "idle":
            stats.tcp_idle_timeouts += 1
        elif why == "write":
            stats.tcp_write_stalls += 1
        else:
            stats.tcp_lifetime_closes += 1
        log.debug("closing tcp connection: %s deadline", why, extra={"event": f"tcp_{why}_close"})
        self.close()

    # --- life ---------------------------------------------------------------
    def close(self) -> None:
        self._front.conns.pop(self, None)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.conns.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self._buf:
            self._message_started = now  # these bytes begin a message
        self._buf += data
        self.idle_since = None
        self._answer_buffered(now)

    def _answer_buffered(self, now: float) -> None:
        """Answer every whole message buffered, up to the pipelining limit; then settle the deadlines."""
        buf = self._buf
        limit = self._front.limits.max_pipelined
        while len(buf) >= 2 and self._transport is not None:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            if self.pending_answers >= limit:
                if not self._reading_paused:
                    self._reading_paused = True
                    self._front.stats.tcp_pipeline_pauses += 1
                    self._transport.pause_reading()
                self._message_started = None  # waiting for the client to read is not a slow message
                return
            msg = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            self._message_started = now if buf else None
            try:
                resps = self._front.answer(msg, self._peer, self._send)
            except Exception:  # robustness boundary: one bad message must never stop the server
                log.exception("query failed", extra={"event": "query_failed", "size": size})
                resps = []
            if resps is None:
                continue  # a zone transfer: sent by _send when built
            if not resps:
                self.close()
                return
            for resp in resps:
                self.send(resp)
        if self._transport is None:
            return
        if not buf:
            self._message_started = None
            if not self._write_blocked:
                self.idle_since = now
        elif self._message_started is None:
            self._message_started = now
        self._schedule()

    def _send(self, resps: list[bytes]) -> None:
        """A zone transfer's messages, built in a worker thread, written here; [] closes the connection."""
        if not resps:
            self.close()
        for resp in resps:
            self.send(resp)

    def send(self, resp: bytes) -> None:
        """Write one DNS message, framed; counted as pending while the transport cannot flush it."""
        transport = self._transport
        if transport is None:
            return
        blocked = self._write_blocked  # before: a write that blocks calls pause_writing, which counts it
        self._written += len(resp) + 2
        transport.write(len(resp).to_bytes(2, "big") + resp)
        if blocked:
            self.pending_answers += 1

    def pause_writing(self) -> None:
        if not self._write_blocked:
            self._write_blocked = True
            self.pending_answers = 1  # the answer just written is not all sent
            self.idle_since = None
            self._sent_progress_at = time.monotonic()
            self._sent_seen = self._written - (self._transport.get_write_buffer_size() if self._transport else 0)
            self._schedule()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self.pending_answers = 0
        if self._transport is None:
            return
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
        self._answer_buffered(time.monotonic())
