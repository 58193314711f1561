"""The alert webhook's POST against a receiver that answers 200 and then streams a body without end: the post
returns at once and closes the connection (it read the whole body before, and a helper's run grew ``up`` to
9.7 GB in 20 s, helper-60)."""

from __future__ import annotations

import socket
import threading

from dnsplane.runtime.alerts import Alerts


def test_a_post_whose_answer_never_ends_returns_and_closes_the_connection() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    sent = {"bytes": 0, "closed": False}

    def stream() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the request (small: one alert)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            chunk = b"x" * 65536
            try:
                while sent["bytes"] < 1 << 30:  # a gigabyte: far more than any buffer between the two
                    conn.sendall(chunk)
                    sent["bytes"] += len(chunk)
            except OSError:  # the client closed its end
                sent["closed"] = True

    server = threading.Thread(target=stream, daemon=True)
    server.start()
    alerts = Alerts("demo.test.", f"http://127.0.0.1:{listener.getsockname()[1]}/hook")
    outcome: list[str | None] = []
    post = threading.Thread(target=lambda: outcome.append(alerts._post({"kind": "frozen", "message": "x"})),
                            daemon=True)
    post.start()
    post.join(10)
    assert not post.is_alive() and outcome == [None], "the post returned, a 2xx"
    server.join(10)
    listener.close()
    assert sent["closed"] and sent["bytes"] < 1 << 30, sent
