"""The RFC 2136 transport against a real BIND9: every response of a pipelined exchange is acknowledged at once.

BIND 9.18 leaves Nagle's algorithm on for its TCP connections, so it holds each response it writes while one
before it is not acknowledged. Linux delays the client's ACK by 40 ms once a connection has gone
query/response/query (its "pingpong" mode): a read (SOA query, then the keys' queries pipelined, then SOA)
waited 40 ms between the first response of the keys' and the rest. The test does not time anything: it asks
the kernel, before each read of a response, whether the socket is in the mode that acknowledges what it reads
at once (``getsockopt(TCP_QUICKACK)`` is 1 exactly when the socket is out of pingpong mode).
"""

from __future__ import annotations

import socket
from types import TracebackType

import pytest

from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.rfc2136 import Rfc2136Provider
from dnsplane.providers.rfc2136.transport import Channel
from tests.fakes import ZONE, key
from tests.servers.named import NamedServer, named  # noqa: F401

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")


class Watched:
    """A client socket that notes, before each ``recv``, whether the kernel would acknowledge at once."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.acks_at_once: list[int] = []

    def __enter__(self) -> Watched:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.sock.close()

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.sock.setsockopt(level, option, value)

    def recv(self, n: int) -> bytes:
        self.acks_at_once.append(self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))
        return self.sock.recv(n)


def test_every_response_of_a_read_is_acknowledged_at_once(named: NamedServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    named.reset()
    p = Rfc2136Provider(ZONE, Rfc2136Config(named.host, named.port, key_file=named.key_file))
    sockets: list[Watched] = []
    connect = Channel.connect

    def watched(self: Channel) -> socket.socket:
        sockets.append(Watched(connect(self)))
        return sockets[-1]  # type: ignore[return-value]  # what ``exchange`` and ``_recv`` use of a socket

    monkeypatch.setattr(Channel, "connect", watched)
    try:
        p.read([key("e0.bench.demo.test")])  # SOA; the record, marker and wildcard queries pipelined; SOA
    finally:
        p.close()
    (sock,) = sockets
    assert len(sock.acks_at_once) >= 2 * (1 + 6 + 1)  # a length prefix and a message per response
    assert all(sock.acks_at_once), sock.acks_at_once  # 0: an ACK delayed while BIND's Nagle holds the rest
