"""TSIG-signed DNS over TCP for the RFC 2136 provider: several messages pipelined on one connection.

Promises:
- ``exchange`` sends every message in one write, then reads as many responses, and returns
  them in the order of the messages sent (matched by message id, whatever order they came in);
- ``exchange`` acknowledges each response as soon as it is read (``TCP_QUICKACK``, where the
  platform has it): a server that leaves Nagle's algorithm on (BIND 9.18 does: no ``TCP_NODELAY``
  on its TCP sockets) holds every response written behind one not yet acknowledged, and Linux,
  once a connection has gone query/response/query (a read's opening SOA query, then the keys'),
  delays its ACK by 40 ms, so every read stalled 40 ms between the first response and the rest;
- message ids run 1, 2, ... 65535, 1, ... (never 0): the ids of one ``ids(n)`` call, so of one
  pipelined exchange, are distinct for any counter value (``n`` at most 65,535), and unique among
  the last 65,535 messages of one ``Channel`` (thread-safe). (They once mapped 65535 and 65536
  both to 1: a pipelined read across the wrap matched two responses to one id, and the wrong MAC
  read as a spurious "TSIG key rejected".)
- ``exchange`` refuses a response whose id it did not send or already has (``ConnectionError``,
  which callers map to ``ProviderUnavailable``), so no response is checked against another's MAC;
- ``verify`` parses a response with dnspython and checks its TSIG against the request's MAC;
  TSIG failures come out as the ``Permanent`` errors of ``failures.Failures``.

Limits: a connection per call, no reuse across calls; no UDP; no retries (the caller maps
``OSError`` and timeouts to ``ProviderUnavailable``); a server that drops a message makes the
exchange wait until ``timeout``. Without ``TCP_QUICKACK`` (not Linux) a pipelined exchange with a
server that leaves Nagle on may still wait out the platform's delayed-ACK timer once per exchange
(bench/rfc2136_read_latency.py measures it on Linux, with the quick ACK and without).
"""

from __future__ import annotations

import socket
import struct
import threading

import dns.message
import dns.tsig

from dnsplane.providers.rfc2136.failures import TSIG_ERRORS, Failures
from dnsplane.providers.rfc2136.tsig import Signer

MAX_IDS = 0xFFFF  # message ids 1..65535 (0 is never used)
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class Channel:
    """The way to one server: address, key, message ids."""

    def __init__(self, server: str, port: int, timeout: float, key: dns.tsig.Key, failures: Failures) -> None:
        self.server = server
        self.port = port
        self.timeout = timeout
        self.key = key
        self.signer = Signer(key)
        self.failures = failures
        self._lock = threading.Lock()
        self._next_id = 1

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.server, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def exchange(self, sock: socket.socket, wires: list[bytes]) -> list[bytes]:
        """Send every message (pipelined), then read as many responses; returned in the order sent."""
        sock.sendall(b"".join(struct.pack("!H", len(w)) + w for w in wires))
        if QUICKACK is not None:
            # after the send: sending right after a response is what turns the delayed ACK on (Linux's
            # "pingpong" mode); this turns it off until the next send, so every response read is acked
            # at once and the server's Nagle releases the next (see the module's promises)
            sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        sent = [struct.unpack("!H", w[:2])[0] for w in wires]
        waiting = set(sent)
        if len(waiting) != len(sent):
            raise ValueError("message ids of one pipelined exchange must be distinct")
        by_id: dict[int, bytes] = {}
        for _ in wires:
            (n,) = struct.unpack("!H", _recv(sock, 2))
            resp = _recv(sock, n)
            msg_id = struct.unpack("!H", resp[:2])[0] if len(resp) >= 2 else -1
            if msg_id not in waiting:
                raise ConnectionError(f"a response with id {msg_id}, which was not asked or already answered")
            waiting.discard(msg_id)
            by_id[msg_id] = resp
        return [by_id[i] for i in sent]

    def ids(self, n: int) -> list[int]:
        """``n`` fresh message ids: distinct, never 0 (1..65535 in turn, whatever the counter holds)."""
        if not 0 <= n <= MAX_IDS:
            raise ValueError(f"{n} messages in one exchange: at most {MAX_IDS} distinct ids")
        with self._lock:
            first = (self._next_id - 1) % MAX_IDS  # 0-based position in the cycle 1..65535
            self._next_id = (first + n) % MAX_IDS + 1
        return [(first + i) % MAX_IDS + 1 for i in range(n)]

    def verify(self, wire: bytes, mac: bytes, doing: str) -> dns.message.Message:
        """The response parsed by dnspython, its TSIG checked against the request's ``mac``."""
        try:
            return dns.message.from_wire(wire, keyring=self.key, request_mac=mac)
        except TSIG_ERRORS as exc:
            raise self.failures.tsig(exc, doing) from exc


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        buf += chunk
    return bytes(buf)
