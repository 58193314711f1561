"""``dnsview.ask``, the verifier's DNS client, against a real UDP server on loopback (``tests/servers/dnsstub``):
each query gets its own answer, at most ``window`` are unanswered at a time, a lost answer is a timeout of
that query alone, a silent server is not waited on for every query, and what is not an answer to a query
(wrong question, garbage, an ICMP refusal) is told apart."""

from __future__ import annotations

import socket

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from dnsplane.runtime.dnsview import Question, ask
from tests.servers.dnsstub import StubServer, address_answer


def queries(n: int, prefix: str = "n") -> list[Question]:
    return [(dns.name.from_text(f"{prefix}{i}.demo.test."), dns.rdatatype.A) for i in range(n)]


def test_each_query_gets_its_own_answer_with_at_most_a_window_unanswered() -> None:
    with StubServer() as server:
        asked = queries(300)
        got = ask(asked, "127.0.0.1", server.port, timeout=5.0, window=32)
    assert len(got) == 300
    for q, a in zip(asked, got, strict=True):
        assert isinstance(a, dns.message.Message), a
        assert a.question[0].name == q[0]  # answered in reverse order: matched, not taken in turn
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
            assert isinstance(a, dns.message.Message) and a.question[0].name == q[0]
            assert a.rcode() == dns.rcode.NOERROR


def test_a_refused_port_is_an_error_not_a_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = ask(queries(20), "127.0.0.1", port, timeout=30.0, window=8)  # nothing listens there now
    assert all(isinstance(a, OSError) for a in got), got


def test_an_answer_is_matched_by_its_question_without_case_and_an_error_answer_without_one_is_taken() -> None:
    """The bytes are compared as ``Message.is_response`` compares the messages: the question's name in
    another case answers it, a datagram with its ID and the QR bit unset (its own query, echoed) does not,
    and a REFUSED without a question section is the query's answer."""
    def answer(q: dns.message.Message) -> list[dns.message.Message | bytes]:
        name = q.question[0].name.to_text()
        wire = address_answer(q).to_wire()
        if name.startswith("n1."):
            return [q.to_wire(), wire]  # the query itself first
        if name.startswith("n2."):
            return [wire[:12] + wire[12:].replace(b"demo", b"DeMo")]
        if name.startswith("n3."):
            refused = dns.message.Message(q.id)
            refused.flags = dns.flags.QR
            refused.set_rcode(dns.rcode.REFUSED)
            return [refused.to_wire()]
        return [wire]

    with StubServer(answer) as server:
        got = ask(queries(5), "127.0.0.1", server.port, timeout=5.0, window=8)
    assert all(isinstance(a, dns.message.Message) for a in got), got
    assert [a.rcode() for a in got if isinstance(a, dns.message.Message)] == [dns.rcode.NOERROR] * 3 + [
        dns.rcode.REFUSED, dns.rcode.NOERROR]
    n1, n2 = got[1], got[2]
    assert isinstance(n1, dns.message.Message) and n1.flags & dns.flags.QR  # not the echoed query
    assert isinstance(n2, dns.message.Message) and n2.question[0].name.to_text() == "n2.DeMo.test."


def test_the_type_is_compared_byte_for_byte_and_only_the_name_without_case() -> None:
    """Type 65 (HTTPS) is 0x0041, an ``A`` in ASCII: lowering the whole question would take an answer
    for type 97 (0x0061) as the answer of a type 65 query."""
    def answer(q: dns.message.Message) -> list[dns.message.Message | bytes]:
        wire = bytearray(dns.message.make_response(q).to_wire())
        end = 12 + len(q.question[0].name.to_wire() or b"")
        wire[end:end + 2] = (97).to_bytes(2, "big")  # the question's type, 65 made 97
        return [bytes(wire)]

    with StubServer(answer) as server:
        got = ask([(dns.name.from_text("n0.demo.test."), dns.rdatatype.RdataType(65))], "127.0.0.1", server.port,
                  timeout=0.5, window=1)
    assert isinstance(got[0], dns.exception.Timeout), got


def test_queries_carry_edns_and_a_truncated_answer_is_asked_again_over_tcp() -> None:
    """Each query asks with EDNS (1,232 bytes); an answer truncated anyway is asked again over TCP on the same
    port (here a TCP listener that answers in full); where TCP fails (nothing listens), the truncated answer
    is kept as it came, TC set, for the caller not to read it whole."""
    import threading

    import dns.query

    seen: list[int] = []

    def truncated(q: dns.message.Message) -> dns.message.Message:
        seen.append(q.edns)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.TC
        return r

    with StubServer(truncated) as server:
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", server.port))
        tcp.listen()

        def whole() -> None:
            conn, _ = tcp.accept()
            with conn:
                q, _ = dns.query.receive_tcp(conn)
                dns.query.send_tcp(conn, address_answer(q))  # type: ignore[arg-type]

        listener = threading.Thread(target=whole, daemon=True)
        listener.start()
        got = ask(queries(1), "127.0.0.1", server.port, timeout=2.0, window=4)
        listener.join(5)
        tcp.close()
        assert seen == [0], "asked with EDNS version 0"
        assert isinstance(got[0], dns.message.Message) and not got[0].flags & dns.flags.TC
        assert [rd.address for rr in got[0].answer for rd in rr] == ["192.0.2.1"]
        kept = ask(queries(1), "127.0.0.1", server.port, timeout=2.0, window=4)  # no TCP listener now
    assert isinstance(kept[0], dns.message.Message) and kept[0].flags & dns.flags.TC
