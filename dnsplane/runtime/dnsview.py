"""The verifier's DNS view: many queries to one DNS server, asked from the caller's thread.

``ask`` sends its queries on one UDP socket connected to the server, at most ``window`` of them
unanswered at a time, and takes each datagram that comes back as the answer of the query with its ID
when dnspython's ``Message.is_response`` agrees (same question); any other datagram is ignored (a late
answer of a query already given up, a stray). Each query gets its answer, or
``dns.exception.Timeout`` ``timeout`` seconds after it was sent, or what sending it or parsing its
answer raised (``OSError``, ``dns.exception.DNSException``); an ICMP error (the port refused),
reported by the socket on a later send or receive, is the error of every query then unanswered.
Once ``window`` queries in a row have timed out, the server is taken as silent and every query not
yet sent is ``Timeout`` without being sent.

Why not ``dns.asyncquery`` on the event loop, as before: a verifier round at 100,000 endpoints asks
200,000 queries, and a socket and a transport per query on the loop that also answers them took 42 %
of that loop's time (``bench/scale_e2e.py``); here it is one socket, in the worker thread that carries
out the verifier's request, so the loop only answers.

Limits: UDP only (a truncated answer is returned as it came); IDs are drawn at random among those not
in flight, so at most 65,536 queries are unanswered at once (``window`` is far below).
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Sequence

import dns.exception
import dns.message

Outcome = dns.message.Message | Exception


def ask(queries: Sequence[dns.message.Message], host: str, port: int, *, timeout: float, window: int
        ) -> list[Outcome]:
    """Each query's answer or error, in the order of ``queries`` (their IDs are reassigned)."""
    if window < 1:
        raise ValueError("window must be 1 or more")
    out: list[Outcome | None] = [None] * len(queries)
    pending: dict[int, tuple[int, float]] = {}  # query ID -> (index, deadline); deadlines in sending order
    rng = random.Random()
    sent = silent = 0
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        while sent < len(queries) or pending:
            while sent < len(queries) and len(pending) < window:
                if silent >= window:  # the server answers nothing: do not wait on it again
                    for i in range(sent, len(queries)):
                        out[i] = dns.exception.Timeout()
                    sent = len(queries)
                    break
                query = queries[sent]
                while (qid := rng.randrange(65536)) in pending:
                    pass
                query.id = qid
                try:
                    sock.send(query.to_wire())
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
            entry = pending.get(int.from_bytes(wire[:2], "big")) if len(wire) >= 2 else None
            if entry is None:
                continue
            i = entry[0]
            try:
                answer = dns.message.from_wire(wire)
            except dns.exception.DNSException as err:
                out[i] = err
            else:
                if not queries[i].is_response(answer):
                    continue
                out[i] = answer
            del pending[queries[i].id]
            silent = 0
    assert all(o is not None for o in out)
    return [o for o in out if o is not None]


def _fail(pending: dict[int, tuple[int, float]], out: list[Outcome | None], err: OSError) -> None:
    """``err`` is the outcome of every query in flight: the socket's error is not any one query's."""
    for i, _ in pending.values():
        out[i] = err
    pending.clear()
