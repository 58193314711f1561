"""The demo's load balancers: small TCP listeners on 127.0.0.1 that dnsplane starts itself.

A listener answers every connection with ``HTTP/1.0 200 OK`` and closes it, so
both TCP and HTTP health checks pass. ``fail`` closes the listening socket (a
health check then gets "connection refused", for real); ``recover`` listens on
the same port again.

The running instance is controlled through its data directory: ``dnsplane demo
fail lb-2`` creates ``<data-dir>/demo/lb-2.down``, the instance notices within
``poll`` seconds, and reports what it did in ``<data-dir>/instance.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("dnsplane.demo")

RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(RESPONSE)
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


class DemoTargets:
    def __init__(self, ids: list[str], host: str = "127.0.0.1") -> None:
        self.ids = ids
        self.host = host
        self.ports: dict[str, int] = {}
        self.servers: dict[str, asyncio.Server | None] = {}

    async def start(self) -> dict[str, int]:
        for tid in self.ids:
            server = await asyncio.start_server(_serve, self.host, 0, reuse_address=True)
            self.servers[tid] = server
            self.ports[tid] = server.sockets[0].getsockname()[1]
        return self.ports

    def down(self) -> list[str]:
        return sorted(t for t, s in self.servers.items() if s is None)

    async def fail(self, tid: str) -> None:
        server = self.servers.get(tid)
        if server is None:
            return
        server.close()
        await server.wait_closed()
        self.servers[tid] = None
        log.info("demo target %s failed (listener closed)", tid, extra={"fields": {"target": tid}})

    async def recover(self, tid: str) -> None:
        if self.servers.get(tid) is not None:
            return
        self.servers[tid] = await asyncio.start_server(_serve, self.host, self.ports[tid], reuse_address=True)
        log.info("demo target %s recovered (listening again)", tid, extra={"fields": {"target": tid}})

    async def stop(self) -> None:
        for tid in list(self.servers):
            await self.fail(tid)

    async def follow(self, control: Path, on_change: Callable[[], None], poll: float = 0.2) -> None:
        """Reconcile listeners with the ``*.down`` files in ``control`` until cancelled."""
        control.mkdir(parents=True, exist_ok=True)
        while True:
            wanted_down = {p.stem for p in control.glob("*.down")} & set(self.ids)
            changed = False
            for tid in self.ids:
                if tid in wanted_down and self.servers.get(tid) is not None:
                    await self.fail(tid)
                    changed = True
                elif tid not in wanted_down and self.servers.get(tid) is None:
                    await self.recover(tid)
                    changed = True
            if changed:
                on_change()
            await asyncio.sleep(poll)


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
