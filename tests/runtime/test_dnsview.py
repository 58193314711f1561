"""``dnsview.ask``, the verifier's DNS client, against a real UDP server on loopback (``tests/servers/dnsstub``):
each query gets its own answer, at most ``window`` are unanswered at a time, a lost answer is a timeout of
that query alone, a silent server is not waited on for every query, and what is not an answer to a query
(wrong question, garbage, an ICMP refusal) is told apart."""

from __future__ import annotations

import socket

import dns.exception
import dns.message
import dns.rcode

from dnsplane.runtime.dnsview import ask
from tests.servers.dnsstub import StubServer, address_answer


def queries(n: int, prefix: str = "n") -> list[dns.message.Message]:
    return [dns.message.make_query(f"{prefix}{i}.demo.test.", "A") for i in range(n)]


def test_each_query_gets_its_own_answer_with_at_most_a_window_unanswered() -> None:
    with StubServer() as server:
        asked = queries(300)
        got = ask(asked, "127.0.0.1", server.port, timeout=5.0, window=32)
    assert len(got) == 300
    for q, a in zip(asked, got, strict=True):
        assert isinstance(a, dns.message.Message), a
        assert a.question[0].name == q.question[0].name  # answered in reverse order: matched, not taken in turn
    assert max(server.bursts) <= 32
    assert max(server.bursts) > 1  # pipelined, not one at a time


def test_a_lost_answer_is_a_timeout_of_that_query_alone() -> None:
    def answer(q: dns.message.Message) -> dns.message.Message | None:
        return None if q.question[0].name.to_text().startswith("n7.") else address_answer(q)

    with StubServer(answer) as server:
        got = ask(queries(100), "127.0.0.1", server.port, timeout=0.5, window=16)
    assert isinstance(got[7], dns.exception.Timeout)
    assert all(isinstance(a, dns.message.Message) for i, a in enumerate(got) if i != 7)


def test_a_silent_server_is_not_waited_on_for_every_query() -> None:
    with StubServer(lambda q: None) as server:
        got = ask(queries(500), "127.0.0.1", server.port, timeout=0.2, window=16)
        received = server.received
    assert all(isinstance(a, dns.exception.Timeout) for a in got), {type(a).__name__ for a in got}
    assert received <= 2 * 16, received


def test_what_answers_no_query_is_ignored_and_a_malformed_answer_is_that_querys_error() -> None:
    def answer(q: dns.message.Message) -> list[dns.message.Message | bytes]:
        name = q.question[0].name.to_text()
        if name.startswith("n3."):
            return [q.id.to_bytes(2, "big") + b"\x81"]  # its ID, then nothing a parser accepts
        other = dns.message.make_query("elsewhere.test.", "A")
        other.id = q.id
        stray = address_answer(other)  # same ID, another question: not its answer
        return [stray, b"\x00", address_answer(q)]

    with StubServer(answer) as server:
        asked = queries(10)
        got = ask(asked, "127.0.0.1", server.port, timeout=5.0, window=4)
    assert isinstance(got[3], dns.exception.DNSException) and not isinstance(got[3], dns.exception.Timeout)
    for i, (q, a) in enumerate(zip(asked, got, strict=True)):
        if i != 3:
            assert isinstance(a, dns.message.Message) and a.question[0].name == q.question[0].name
            assert a.rcode() == dns.rcode.NOERROR


def test_a_refused_port_is_an_error_not_a_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = ask(queries(20), "127.0.0.1", port, timeout=30.0, window=8)  # nothing listens there now
    assert all(isinstance(a, OSError) for a in got), got
