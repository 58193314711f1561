"""A UDP DNS server for tests of DNS clients, on a free loopback port, in its own thread.

It answers in bursts: it takes every query that arrives until none has for ``quiet`` seconds, then
answers that burst (in reverse order, so a client must match answers to queries), and counts each
burst's size (``bursts``): a client that keeps at most W queries unanswered never makes a burst
larger than W. ``answer(query)`` decides each answer: a ``dns.message.Message``, raw ``bytes`` (sent as
they are), a list of either (sent in order), or None (the query is dropped)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import dns.message
import dns.rdatatype
import dns.rrset

Reply = dns.message.Message | bytes | None | list[dns.message.Message | bytes]


def address_answer(query: dns.message.Message, address: str = "192.0.2.1") -> dns.message.Message:
    """An authoritative answer of one A record (TXT "v=1" for a TXT query) at the question's name."""
    response = dns.message.make_response(query)
    q = query.question[0]
    text = '"v=1"' if q.rdtype == dns.rdatatype.TXT else address
    response.answer.append(dns.rrset.from_text(q.name, 30, "IN", q.rdtype, text))
    return response


class StubServer:
    def __init__(self, answer: Callable[[dns.message.Message], Reply] = address_answer, quiet: float = 0.05
                 ) -> None:
        self.answer = answer
        self.quiet = quiet
        self.bursts: list[int] = []
        self.received = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="dns-stub")
        self._thread.start()

    def _run(self) -> None:
        burst: list[tuple[bytes, tuple[str, int]]] = []
        while not self._stop.is_set():
            self._sock.settimeout(self.quiet if burst else 0.2)
            try:
                burst.append(self._sock.recvfrom(65535))
                self.received += 1
                continue
            except TimeoutError:
                pass
            except OSError:
                return  # closed
            if burst:
                self.bursts.append(len(burst))
                for wire, peer in reversed(burst):
                    self._reply(wire, peer)
                burst = []

    def _reply(self, wire: bytes, peer: tuple[str, int]) -> None:
        reply = self.answer(dns.message.from_wire(wire))
        for one in reply if isinstance(reply, list) else [reply]:
            if one is not None:
                self._sock.sendto(one if isinstance(one, bytes) else one.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> StubServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
