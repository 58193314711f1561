"""A counting tap for benchmarks: a loopback HTTP proxy in front of a Route 53 API (ministack, or the
rules layer in front of it) that records every request's API action, and for each change batch its
changes and ``ResourceRecord`` elements.

``route53_tap(upstream_url)`` is a context manager yielding a ``Tap``: ``.url`` (give it to boto3 as
``endpoint_url``), ``.events`` (one ``Call`` per request, in order) and ``mark()`` / ``since(mark)``
to look at one phase. It forwards bytes unchanged and decides nothing: whatever the upstream
answers (a refusal, a ``Throttling``) reaches the client as it was.

A listing that starts without ``name=`` (``StartRecordName``) reads the zone from its first record
set: ``Call.zone_listing`` (its later pages carry ``name=``, as do reads of one run of names).

Limits: HTTP/1.0 towards the client (one request per connection), one thread per request; for
loopback benchmarks only.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.servers.http_serving import loopback_server, serving
from tests.servers.route53_rules import action_of


@dataclass(frozen=True, slots=True)
class Call:
    """One request through the tap: when it was answered, what it was, what came back."""

    at: float  # time.monotonic() when the answer came back, just before it is passed on
    action: str
    status: int
    changes: int = 0  # ChangeResourceRecordSets: <Change> elements
    records: int = 0  # ChangeResourceRecordSets: <ResourceRecord> elements (Route 53's per-batch quota)
    zone_listing: bool = False  # ListResourceRecordSets from the zone's first record set
    throttled: bool = False  # answered Throttling / PriorRequestNotComplete / 429


@dataclass(frozen=True, slots=True)
class Summary:
    """What a phase cost: calls by action, throttled answers, change batches and their sizes."""

    calls: Counter[str]
    throttled: int
    zone_listings: int
    batch_records: tuple[int, ...]  # ResourceRecord elements of each accepted change batch
    refused: int  # change batches answered with an error other than throttling (InvalidChangeBatch, ...)

    def calls_text(self) -> str:
        short = {"ChangeResourceRecordSets": "change", "ListResourceRecordSets": "list"}
        parts = [f"{short.get(a, a)} {n}" for a, n in sorted(self.calls.items(), key=lambda x: -x[1])]
        return ", ".join(parts) + (f" ({self.throttled} throttled)" if self.throttled else "")

    def batches_text(self) -> str:
        b = self.batch_records
        text = f"{len(b)} × {sum(b) / len(b):.0f} (max {max(b)})" if b else "0"
        return text + (f", {self.refused} refused" if self.refused else "")


class Tap:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.events: list[Call] = []
        self._lock = threading.Lock()
        self.url = ""

    def record(self, call: Call) -> None:
        with self._lock:
            self.events.append(call)

    def mark(self) -> int:
        with self._lock:
            return len(self.events)

    def since(self, mark: int, end: int | None = None) -> Sequence[Call]:
        with self._lock:
            return self.events[mark:end]

    def summary(self, mark: int, end: int | None = None) -> Summary:
        calls = self.since(mark, end)
        return Summary(Counter(c.action for c in calls), sum(c.throttled for c in calls),
                       sum(c.zone_listing for c in calls),
                       tuple(c.records for c in calls if c.action == "ChangeResourceRecordSets" and c.status == 200),
                       sum(c.action == "ChangeResourceRecordSets" and c.status != 200 and not c.throttled
                           for c in calls))


def _handler(tap: Tap) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conn = http.client.HTTPConnection(*tap.upstream, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                out_headers = [(k, v) for k, v in resp.getheaders()
                               if k.lower() not in ("connection", "transfer-encoding", "content-length")]
                status = resp.status
            finally:
                conn.close()
            action = action_of(self.command, self.path)[0]
            throttled = status == 429 or (status >= 400 and re.search(
                rb"<Code>(Throttling|PriorRequestNotComplete)", answer) is not None)
            # recorded before the client has the answer: a mark() it takes next comes after this call
            tap.record(Call(time.monotonic(), action, status, body.count(b"<Change>"),
                            body.count(b"<ResourceRecord>"),
                            action == "ListResourceRecordSets" and "name" not in parse_qs(urlsplit(self.path).query),
                            throttled))
            self.send_response(status)
            for k, v in out_headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Forward


@contextlib.contextmanager
def route53_tap(upstream_url: str) -> Iterator[Tap]:
    tap = Tap(upstream_url)
    server, tap.url = loopback_server()
    server.RequestHandlerClass = _handler(tap)
    with serving(server, "route53-tap"):
        yield tap
