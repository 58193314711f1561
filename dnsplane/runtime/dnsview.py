"""The verifier's DNS view: many queries to one DNS server, asked from the caller's thread.

``ask`` sends its questions on one UDP socket connected to the server, one query each (class IN,
RD set, EDNS with a 1,232-byte payload, as resolvers ask), at most ``window`` of them unanswered at a
time, and takes each datagram that comes back as the answer of the query with its ID when it is a
response to it (same question, as dnspython's ``Message.is_response`` says); any other datagram is
ignored (a late answer of a query already given up, a stray). Each query gets its answer, or
``dns.exception.Timeout`` ``timeout`` seconds after it was sent, or what sending it or parsing its
answer raised (``OSError``, ``dns.exception.DNSException``); an ICMP error (the port refused),
reported by the socket on a later send or receive, is the error of every query then unanswered.
Once ``window`` queries in a row have timed out, the server is taken as silent and every query not
yet sent is ``Timeout`` without being sent. An answer that comes back truncated (TC) is asked again over
TCP, as a resolver does; when TCP fails too, the truncated answer is kept as it came (TC set: the
caller must not read it as the whole answer). Before, the queries had no EDNS and a truncated answer was
read as it came: an endpoint too big for a plain UDP answer read as empty, every verifier round.

Why not ``dns.asyncquery`` on the event loop, as before: a verifier round at 100,000 endpoints asks
200,000 queries, and a socket and a transport per query on the loop that also answers them took 42 %
of that loop's time (``bench/scale_e2e.py``); here it is one socket, in the worker thread that carries
out the verifier's request, so the loop only answers. The queries are written as bytes and an answer
matched by its bytes (ID, QR, opcode, the question compared without case), parsed once by dnspython:
a dnspython query per question, written and compared, was 40 % of the verifier's time at 100,000
endpoints (``make_query``, ``to_wire``, ``is_response``); what the bytes do not match is still judged
by ``is_response`` (an error answer without its question).

Limits: the TCP queries are asked one after another (answers that large are rare); IDs are drawn at
random among those not in flight, so at most 65,536 queries are unanswered at once (``window`` is far
below).
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Sequence

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype

Outcome = dns.message.Message | Exception
Question = tuple[dns.name.Name, dns.rdatatype.RdataType]  # class IN

_QUERY_HEAD = struct.Struct(">HHHHHH")
_RD = 0x0100
_TC = 0x0200
EDNS_PAYLOAD = 1232
# an OPT record at the root: payload EDNS_PAYLOAD, no extended rcode, version 0, no flags, no options
_OPT = b"\x00\x00\x29" + struct.pack(">H", EDNS_PAYLOAD) + b"\x00\x00\x00\x00\x00\x00"
_QR = 0x80  # in the third byte
_OPCODE = 0x78  # in the third byte


def ask(questions: Sequence[Question], host: str, port: int, *, timeout: float, window: int) -> list[Outcome]:
    """Each question's answer or error, in the order of ``questions`` (a truncated one asked again over TCP)."""
    if window < 1:
        raise ValueError("window must be 1 or more")
    wires = [_question_wire(q) for q in questions]
    out: list[Outcome | None] = [None] * len(questions)
    pending: dict[int, tuple[int, float]] = {}  # query ID -> (index, deadline); deadlines in sending order
    rng = random.Random()
    sent = silent = 0
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        while sent < len(questions) or pending:
            while sent < len(questions) and len(pending) < window:
                if silent >= window:  # the server answers nothing: do not wait on it again
                    for i in range(sent, len(questions)):
                        out[i] = dns.exception.Timeout()
                    sent = len(questions)
                    break
                while (qid := rng.randrange(65536)) in pending:
                    pass
                try:
                    sock.send(_QUERY_HEAD.pack(qid, _RD, 1, 0, 0, 1) + wires[sent] + _OPT)
                    pending[qid] = (sent, time.monotonic() + timeout)
                except OSError as err:  # mostly an earlier query's ICMP error, reported here: theirs too
                    out[sent] = err
                    _fail(pending, out, err)
                sent += 1
            if not pending:
                continue
            wait = next(iter(pending.values()))[1] - time.monotonic()  # until the first deadline
            try:
                if wait <= 0:  # (a timeout of 0 would make the socket non-blocking: BlockingIOError)
                    raise TimeoutError
                sock.settimeout(wait)
                wire = sock.recv(65535)
            except TimeoutError:
                now = time.monotonic()
                for qid, (i, deadline) in list(pending.items()):
                    if deadline > now:
                        break
                    del pending[qid]
                    out[i] = dns.exception.Timeout()
                    silent += 1
                continue
            except OSError as err:  # an ICMP error on the connected socket: it belongs to no one query
                _fail(pending, out, err)
                continue
            qid = int.from_bytes(wire[:2], "big")
            entry = pending.get(qid) if len(wire) >= 2 else None
            if entry is None:
                continue
            i = entry[0]
            try:
                answer = dns.message.from_wire(wire)
            except dns.exception.DNSException as err:
                out[i] = err
            else:
                if not _answers(wire, wires[i]) and not _query(questions[i], qid).is_response(answer):
                    continue
                out[i] = answer
            del pending[qid]
            silent = 0
    assert all(o is not None for o in out)
    answers = [o for o in out if o is not None]
    for i, o in enumerate(answers):
        if isinstance(o, dns.message.Message) and o.flags & _TC:
            answers[i] = _over_tcp(questions[i], host, port, timeout) or o
    return answers


def _over_tcp(question: Question, host: str, port: int, timeout: float) -> dns.message.Message | None:
    """The answer over TCP, or None when it cannot be had (refused, timed out, malformed)."""
    try:
        return dns.query.tcp(dns.message.make_query(question[0], question[1], use_edns=0, payload=EDNS_PAYLOAD),
                             host, port=port, timeout=timeout)
    except (OSError, dns.exception.DNSException):
        return None


def _question_wire(question: Question) -> bytes:
    name = question[0].to_wire()
    assert name is not None  # None only when written into a file
    return name + struct.pack(">HH", question[1], dns.rdataclass.IN)


def _answers(wire: bytes, question: bytes) -> bool:
    """Whether ``wire`` (its ID already matched) is a response to the query of ``question``: QR set,
    opcode QUERY, one question, the same (the name compared without case: its label lengths are below
    64, so ``lower`` changes only its letters; type and class byte for byte)."""
    end = 12 + len(question)
    name = end - 4
    return (len(wire) >= end and wire[2] & _QR != 0 and wire[2] & _OPCODE == 0 and wire[4:6] == b"\x00\x01"
            and wire[12:name].lower() == question[:-4].lower() and wire[name:end] == question[-4:])


def _query(question: Question, qid: int) -> dns.message.Message:
    query = dns.message.make_query(question[0], question[1])
    query.id = qid
    return query


def _fail(pending: dict[int, tuple[int, float]], out: list[Outcome | None], err: OSError) -> None:
    """``err`` is the outcome of every query in flight: the socket's error is not any one query's."""
    for i, _ in pending.values():
        out[i] = err
    pending.clear()
