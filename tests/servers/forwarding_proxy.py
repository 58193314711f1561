"""A loopback HTTP proxy in front of ministack that timestamps every request and can answer Route 53's
AccessDenied to one kind of request: what the Route 53 tests count and refuse at the wire.

``forwarding_proxy(upstream, deny=(method, path_suffix))`` yields a ``Proxy`` whose ``url`` goes to boto3 as
``endpoint_url`` and whose ``seen`` lists ``(time.monotonic(), method, path)`` of every request, in order.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.servers.http_serving import loopback_server, serving

ACCESS_DENIED = (b'<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
                 b"<Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized</Message></Error>"
                 b"</ErrorResponse>")
_HOP = {"content-length", "transfer-encoding", "connection", "date", "server"}


@dataclass
class Proxy:
    url: str
    seen: list[tuple[float, str, str]] = field(default_factory=list)


@contextmanager
def forwarding_proxy(upstream: str, deny: tuple[str, str] | None = None) -> Iterator[Proxy]:
    proxy = Proxy("")
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def forward(self) -> None:
            with lock:
                proxy.seen.append((time.monotonic(), self.command, self.path))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0].rstrip("/")
            if deny is not None and self.command == deny[0] and path.endswith(deny[1]):
                self.answer(403, ACCESS_DENIED, {})
                return
            req = urllib.request.Request(upstream + self.path, data=body or None, method=self.command,
                                         headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    self.answer(r.status, r.read(), dict(r.headers.items()))
            except urllib.error.HTTPError as e:
                self.answer(e.code, e.read(), dict(e.headers.items()))

        def answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in _HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = forward

        def log_message(self, *args: object) -> None:
            pass

    server, proxy.url = loopback_server()
    server.RequestHandlerClass = Handler
    with serving(server, "forwarding-proxy"):
        yield proxy
