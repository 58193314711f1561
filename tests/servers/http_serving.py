"""The one way the loopback HTTP stand-ins (the Route 53 rules layer, the forwarding proxy, the bench's
tap) run: a ``ThreadingHTTPServer`` on a free loopback port, served from a daemon thread while a block
runs, shut down and closed after it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def loopback_server() -> tuple[ThreadingHTTPServer, str]:
    """A server bound to a free loopback port (its handler set later) and its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def serving(server: ThreadingHTTPServer, name: str) -> Iterator[None]:
    """Serve ``server`` from a daemon thread called ``name`` while the block runs."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
