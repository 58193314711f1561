"""Real health checks: a TCP connect, or an HTTP GET with an expected status.

Each check has its own timeout and never raises: it returns (ok, detail).
Only the addresses written in the fleet file are contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from dnsplane.model import HealthCheck


async def check(hc: HealthCheck) -> tuple[bool, str]:
    try:
        if hc.kind == "tcp":
            return await asyncio.wait_for(_tcp(hc.host, hc.port), hc.timeout)
        return await asyncio.wait_for(_http(hc.url, hc.expect_status), hc.timeout)
    except TimeoutError:
        return False, f"timeout after {hc.timeout:g}s"
    except OSError as err:
        return False, err.strerror or str(err)


async def _tcp(host: str, port: int) -> tuple[bool, str]:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "connected"


async def _http(url: str, expect: int) -> tuple[bool, str]:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls or None)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: dnsplane-health\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    fields = status_line.decode("latin-1").split()
    if len(fields) < 2 or not fields[1].isdigit():
        return False, f"bad HTTP response {status_line[:40]!r}"
    status = int(fields[1])
    return status == expect, f"HTTP {status}"
