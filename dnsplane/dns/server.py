"""An embedded authoritative DNS server (asyncio, UDP and TCP) serving dnsplane zones.

``DnsServer`` serves each ``ZoneSource``'s zone from answers prerendered by
``dnsplane.dns.render`` into the name tree of ``dnsplane.dns.zonetable``, and
answers queries with ``dnsplane.dns.responder`` (see there for the protocol
guarantees: AA, NXDOMAIN vs no-data with SOA, REFUSED, FORMERR, NOTIMP, EDNS0,
truncation, 0x20 echo, weighted or all-addresses answers).

Freshness guarantees:
- in-process writes: the source calls our listener (in the writer's thread)
  with the keys it just committed. The listener only queues the keys and
  wakes the event loop (``call_soon_threadsafe``); the loop thread re-reads
  and re-renders them. Before serving each datagram or TCP message the loop
  thread applies anything queued, so a query sent after the write returned
  sees the write;
- cross-process writes: ``source.data_version()`` is checked at most every
  50 ms while queries arrive, and by a 100 ms periodic task otherwise; when it
  changed, the whole zone is re-read (only endpoints whose content changed are
  re-rendered);
- the SOA serial of a zone is bumped on every refresh of that zone (one applied batch), and
  follows RFC 1982: it starts at ``max(now in seconds, last serial + 1)``, the last serial read
  from ``serial_file`` when one is given, which is rewritten (atomically, not fsynced) after every
  bump before any query can see the new serial; so a secondary never sees it go backwards across
  restarts of the process (a crash of the machine may lose the last write).

Hidden primary (``transfer``, see ``dnsplane.dns.transfer`` and ``dnsplane.dns.notify``): AXFR and
IXFR over TCP to the clients the policy allows, and a NOTIFY to each configured secondary after
every bump, retried until acknowledged, in tasks of the event loop. A transfer copies the zone's
current version in the loop thread (a dict of frozen values) and is rendered in one worker thread,
so queries are answered meanwhile (sharing the interpreter: slower, not stopped).

UDP answering workers (``workers`` N > 0, ``dnsplane.dns.worker``): N processes read this server's
UDP socket and answer from their own copy of the zones; this process answers UDP only until one of
them listens (and again while none does), and keeps TCP, transfers, NOTIFY and the serial. With
workers a commit is applied in the writer's thread (under the lock; TCP answers take it too),
forwarded to every worker with the new serial, and the listener returns once each answering worker
acknowledged it (a large change goes in parts, each acknowledged; a worker silent for 5 s while it
owes an acknowledgement is restarted), so the first freshness guarantee holds for every process; the
declared-but-unwritten set is forwarded the same way. Commits of other processes are found by the
100 ms periodic check only (no UDP query reaches this process).

Threading: ``read``, ``read_all`` and ``data_version`` of a source are called
in the event loop thread (or in the caller's thread for ``refresh`` while the
server is not running). ``refresh`` may be called from any thread.

Names declared but not yet written (``declare``): the runtime tells the server which
endpoints the fleet declares. Until an endpoint declared here has been written for the
first time (its records or marker are in the source), a query that would be answered
NXDOMAIN at its name, at its marker's name or at a name above them in the zone, or
NOERROR/no data for its own type (or TXT at its marker's name), is answered SERVFAIL
instead: resolvers cache NXDOMAIN for the SOA's negative TTL (60 s) and, under RFC 8020,
for every name below, while a SERVFAIL is retried. This is decided per endpoint, not per
zone, so endpoints added later by a fleet reload are covered the same way and the rest of
the zone is unaffected. Once written, an endpoint is served as the source holds it, even
if its records are later removed (the verifier must see that NXDOMAIN to repair it).
After a restart, ``start`` loads every zone from the source before it listens, so the
last applied records are served from the first query on.

Hostile clients: TCP is ``dnsplane.dns.tcp``'s (per-message read deadline, idle timeout, lifetime,
connection cap, pipelining limit, accept() backoff; each limit a constructor option ``tcp_*``);
response rate limiting (RRL) for UDP is off unless ``rate_limit`` is given
(``dnsplane.dns.ratelimit``).

Limits:
- without workers one event loop thread serves everything; re-reading a large zone blocks it
  for the duration of ``read_all`` plus the re-rendering of changed endpoints;
- UDP uses ``loop.add_reader`` on a non-blocking socket (selector event loops,
  i.e. Unix); UDP answers that cannot be sent (full socket buffer) are dropped;
- a TCP message that cannot be parsed at all closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import dns.rdatatype
import dns.serial

from dnsplane.dns.notify import Notifier
from dnsplane.dns.ratelimit import RateLimit, ResponseLimiter
from dnsplane.dns.render import name_wire
from dnsplane.dns.responder import ANSWER_SAMPLE, AnswerTotals, Responder, ServerStats
from dnsplane.dns.tcp import (
    TCP_IDLE_TIMEOUT,
    TCP_LIFETIME,
    TCP_MAX_CONNECTIONS,
    TCP_MAX_PIPELINED,
    TCP_READ_TIMEOUT,
    LimitStats,
    TcpFront,
    TcpLimits,
)
from dnsplane.dns.transfer import TransferPolicy, answer_signed, transfer_messages
from dnsplane.dns.worker import Init, WorkerPool, unless_unwritten
from dnsplane.dns.zonetable import ZoneTable, ancestors
from dnsplane.errors import DnsplaneError
from dnsplane.model import EndpointKey, Observed, marker_name, normalise_name

log = logging.getLogger("dnsplane.dns")

VERSION_CHECK_INTERVAL = 0.05  # seconds between data_version() checks while serving
POLL_INTERVAL = 0.1  # periodic task: queued refreshes and data_version()
_TXT = int(dns.rdatatype.TXT)
UDP_BATCH = 64  # datagrams served per readiness event before yielding to the loop
UDP_RECV_SIZE = 4096  # larger queries are truncated by the kernel and answered FORMERR
BIND_ATTEMPTS = 20
SERIAL_FILE = "dns-serial.json"  # in the data dir: the last serial of each zone (see the module docstring)


class ZoneSource(Protocol):
    """What the server needs from whatever holds a zone's records (the embedded provider)."""

    zone: str  # absolute lower-case zone apex, e.g. "demo.test."

    def read_all(self) -> dict[EndpointKey, Observed]: ...

    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]: ...

    def add_listener(self, fn: Callable[[list[EndpointKey]], None]) -> None:
        """``fn`` is called, in the writer's thread, with the keys just committed."""

    def data_version(self) -> int:
        """Changes when another process committed to the backing database; cheap."""


@dataclass(frozen=True, slots=True)
class _Unwritten:
    """A declared endpoint not yet written: the zone serving it, and where its SERVFAIL stands in for NXDOMAIN
    (``names``: the owner names and their parents down to the apex) or no data (``slots``: name and type)."""

    idx: int
    slots: tuple[tuple[bytes, int], ...]
    names: tuple[bytes, ...]


class DnsServer:
    """Authoritative server for the zones of ``sources`` on ``host:port`` (UDP and TCP)."""

    def __init__(
        self,
        sources: list[ZoneSource],
        host: str = "127.0.0.1",
        port: int = 5353,
        *,
        rng: random.Random | None = None,
        tcp_idle_timeout: float = TCP_IDLE_TIMEOUT,
        tcp_read_timeout: float = TCP_READ_TIMEOUT,
        tcp_lifetime: float = TCP_LIFETIME,
        tcp_max_connections: int = TCP_MAX_CONNECTIONS,
        tcp_max_pipelined: int = TCP_MAX_PIPELINED,
        rate_limit: RateLimit | None = None,
        transfer: TransferPolicy | None = None,
        serial_file: Path | None = None,
        workers: int = 0,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be 0 or more")
        self.sources = list(sources)
        self.host = host
        self.port = port
        self.limit_stats = LimitStats()
        limits = TcpLimits(tcp_idle_timeout, tcp_read_timeout, tcp_lifetime, tcp_max_connections, tcp_max_pipelined)
        self._tcp = TcpFront(limits, self.limit_stats, self.tcp_messages)
        self._limiter = ResponseLimiter(rate_limit) if rate_limit is not None else None
        self._rate_limit = rate_limit
        self.workers = workers  # UDP answering processes (dnsplane.dns.worker); 0: this process answers UDP
        self._pool: WorkerPool | None = None
        self._udp_mine = True  # this process reads the UDP socket (with workers: until one listens)
        self._responder = Responder(rng)
        self.stats: ServerStats = self._responder.stats
        self.transfer = transfer or TransferPolicy()
        self.serial_file = serial_file
        last = self._read_serials()
        self._tables: list[ZoneTable] = []
        for src in self.sources:
            zone = normalise_name(src.zone)
            table = self._responder.add_zone(zone, _first_serial(int(time.time()), last.get(zone)))
            table.set_journal_size(self.transfer.journal)
            table.set_nameservers(self.transfer.nameservers)
            self._tables.append(table)
        self._zones_by_origin = {t.origin: t for t in self._tables}
        if self.transfer.keyring is not None:
            handle = self._responder.handle
            self._responder.signed = functools.partial(answer_signed, policy=self.transfer, handle=handle)
        self._xfr_pool: ThreadPoolExecutor | None = None  # one thread builds zone transfers
        self.notifier = Notifier(self.transfer.notify, self.transfer.keyring, self.transfer.key_name)
        self._table_index = {id(t): i for i, t in enumerate(self._tables)}
        self._versions: list[int | None] = [None] * len(self.sources)
        self._lock = threading.RLock()  # serialises table updates between threads
        self._pending: deque[tuple[int | None, list[EndpointKey] | None]] = deque()
        self._dirty = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._udp_sock: socket.socket | None = None
        # endpoints declared by the fleet and not yet written (see the module docstring)
        self._declared: frozenset[EndpointKey] = frozenset()
        self._unwritten: dict[EndpointKey, _Unwritten] = {}
        # NXDOMAIN here -> SERVFAIL (each name counted once per unwritten endpoint at or below it)
        self._unwritten_names: Counter[bytes] = Counter()
        self._unwritten_slots: set[tuple[bytes, int]] = set()  # no data here -> SERVFAIL
        self._poll_task: asyncio.Task[None] | None = None
        self._next_version_check = 0.0
        for idx, src in enumerate(self.sources):
            src.add_listener(functools.partial(self._on_commit, idx))

    # --- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        """Load every zone, then bind UDP and TCP on ``host:port`` (0 = a free port, same for both)."""
        if self._loop is not None:
            raise RuntimeError("DnsServer already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._pending.clear()
        self._dirty = False
        with self._lock:
            for idx in range(len(self.sources)):
                self._reload(idx)
        try:
            udp, tcp = self._bind()
        except OSError:
            self._loop = None
            self._loop_thread = None
            raise
        self._udp_sock = udp
        self._udp_mine = True
        loop.add_reader(udp.fileno(), self._udp_readable)
        self._tcp.start(loop, tcp)
        if self._unwritten:
            self._log_unwritten()
        if self.workers:
            # this process answers UDP until a worker listens (_udp_handover), then only TCP
            def listening() -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed: stopping
                    loop.call_soon_threadsafe(self._udp_handover, True)

            def none_listening() -> None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._udp_handover, False)

            pool = WorkerPool(self.workers, udp, self._worker_init, listening, none_listening)
            self._pool = pool
            threading.Thread(target=pool.start, args=(self._lock,), name="dns-workers-start", daemon=True).start()
        self._next_version_check = time.monotonic() + VERSION_CHECK_INTERVAL
        self._poll_task = loop.create_task(self._poll())
        log.info(
            "dns server listening on %s:%d for %s",
            self.host,
            self.port,
            ", ".join(t.zone for t in self._tables),
            extra={"event": "dns_listening", "host": self.host, "port": self.port},
        )

    async def stop(self) -> None:
        """Stop serving; close the sockets and every TCP connection."""
        loop = self._loop
        if loop is None:
            return
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        await self.notifier.stop()
        if self._pool is not None:
            await loop.run_in_executor(None, self._pool.stop)
            self._pool = None
        if self._xfr_pool is not None:
            self._xfr_pool.shutdown(wait=False, cancel_futures=True)
            self._xfr_pool = None
        if self._udp_sock is not None:
            loop.remove_reader(self._udp_sock.fileno())
            self._udp_sock.close()
            self._udp_sock = None
        self._tcp.stop()
        await asyncio.sleep(0)  # let the transports run connection_lost
        self._loop = None
        self._loop_thread = None
        log.info("dns server stopped", extra={"event": "dns_stopped", "port": self.port})

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        family, addr = info[0], info[4]
        attempts = BIND_ATTEMPTS if self.port == 0 else 1
        for attempt in range(attempts):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp.bind(addr)
                port = udp.getsockname()[1]
                tcp = socket.socket(family, socket.SOCK_STREAM)
                try:
                    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    tcp.bind((addr[0], port, *addr[2:]))
                    tcp.listen(128)
                except OSError as exc:
                    tcp.close()
                    if exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                        udp.close()
                        continue
                    raise
            except OSError:
                udp.close()
                raise
            udp.setblocking(False)
            tcp.setblocking(False)
            self.port = port
            return udp, tcp
        raise OSError(errno.EADDRINUSE, f"no free port for UDP and TCP on {self.host}")

    # --- freshness ----------------------------------------------------------
    def refresh(self, keys: list[EndpointKey] | None = None) -> None:
        """Re-read and re-render ``keys`` (None = every zone). Safe from any thread.

        From the loop thread, or while the server is not running, the refresh is
        done before returning; from another thread it is queued and is applied
        before the next query is served.
        """
        if self._loop is not None and threading.get_ident() != self._loop_thread and self._pool is None:
            self._enqueue(None, None if keys is None else list(keys))
            return
        with self._lock:
            if keys is None:
                for idx in range(len(self.sources)):
                    self._reload(idx)
            else:
                self._refresh_keys(None, list(keys))

    def _on_commit(self, idx: int, keys: list[EndpointKey]) -> None:
        """Listener of source ``idx``: runs in the writer's thread."""
        if self._loop is None:
            return  # not serving: start() loads everything
        if self._pool is not None:  # applied here and forwarded: returns once every worker answers it
            with self._lock:
                self._guarded(idx, self._refresh_keys, idx, list(keys))
            return
        self._enqueue(idx, list(keys))

    def _enqueue(self, idx: int | None, keys: list[EndpointKey] | None) -> None:
        self._pending.append((idx, keys))
        self._dirty = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed under us: start() reloads anyway
                loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        """Apply queued refreshes (loop thread)."""
        if not self._dirty:
            return
        self._dirty = False
        full: set[int | None] = set()
        by_source: dict[int | None, set[EndpointKey]] = {}
        while True:
            try:
                idx, keys = self._pending.popleft()
            except IndexError:
                break
            if keys is None:
                full.add(idx)
            else:
                by_source.setdefault(idx, set()).update(keys)
        with self._lock:
            if None in full:
                for i in range(len(self.sources)):
                    self._guarded(i, self._reload, i)
                return
            for source in full:
                if source is not None:
                    self._guarded(source, self._reload, source)
                    by_source.pop(source, None)
            for source, changed in by_source.items():
                self._guarded(source, self._refresh_keys, source, list(changed))

    def _guarded(self, idx: int | None, fn: Callable[..., None], *args: object) -> None:
        """Run a refresh; when the source fails, mark it (all sources for None) for a full reload.

        The reload happens at the next data_version check (within 50 ms while serving, 100 ms idle).
        """
        try:
            fn(*args)
        except DnsplaneError as exc:
            log.warning(
                "refresh failed, will reload: %s",
                exc,
                extra={"event": "dns_refresh_failed", "source": idx, "error": str(exc)},
            )
            for i in range(len(self.sources)) if idx is None else [idx]:
                self._versions[i] = None

    def _refresh_keys(self, idx: int | None, keys: list[EndpointKey]) -> None:
        """Re-read ``keys``; ``idx`` None = route each key to the source serving its name."""
        groups: dict[int, list[EndpointKey]] = {}
        for key in keys:
            owner = self._index_for(key)
            if owner is None or (idx is not None and owner != idx):
                log.debug(
                    "key %s is not served by this source",
                    key,
                    extra={"event": "refresh_ignored", "endpoint": str(key)},
                )
                continue
            groups.setdefault(owner, []).append(key)
        for i, group in groups.items():
            observed = self.sources[i].read(group)
            table = self._tables[i]
            for key in group:
                table.set(key, observed.get(key, Observed(None, None)))
            table.bump_serial()
            self._bumped(table)
            if self._pool is not None:
                changes = {k: table.observed.get(k) for k in group}
                self._pool.forward_zone(i, changes, table.serial)
            self.stats.refreshes += 1
            if self._unwritten:
                self._settle_unwritten(group)
            log.debug(
                "refreshed %d endpoints of %s",
                len(group),
                table.zone,
                extra={"event": "dns_refresh", "zone": table.zone, "count": len(group), "serial": table.serial},
            )

    def _index_for(self, key: EndpointKey) -> int | None:
        table = self._responder.zone_of(key.name)
        return None if table is None else self._table_index[id(table)]

    def _reload(self, idx: int) -> None:
        """Re-read a whole zone; only endpoints whose content changed are re-rendered."""
        src = self.sources[idx]
        table = self._tables[idx]
        self._versions[idx] = src.data_version()
        data = src.read_all()
        changed = 0
        touched: list[EndpointKey] = []  # forwarded to the workers: only what changed
        for key in table.endpoints():
            if key not in data:
                table.remove(key)
                changed += 1
                touched.append(key)
        for key, observed in data.items():
            if self._index_for(key) != idx:
                log.warning(
                    "endpoint %s of zone %s is not served by it",
                    key,
                    table.zone,
                    extra={"event": "outside_zone", "endpoint": str(key), "zone": table.zone},
                )
                continue
            if table.set(key, observed):
                changed += 1
                touched.append(key)
        table.bump_serial()
        self._bumped(table)
        if self._pool is not None:
            changes = {k: table.observed.get(k) for k in touched}
            self._pool.forward_zone(idx, changes, table.serial)
        self.stats.reloads += 1
        if self._unwritten:
            self._settle_unwritten(list(self._unwritten))
        log.info(
            "loaded zone %s: %d endpoints, %d changed",
            table.zone,
            len(data),
            changed,
            extra={"event": "dns_reload", "zone": table.zone, "endpoints": len(data), "changed": changed},
        )

    # --- names declared, not yet written ------------------------------------
    def declare(self, keys: Iterable[EndpointKey]) -> None:
        """The endpoints the fleet declares (all of them, each time; call from the loop thread or before start).

        Keys new to this call that the server does not hold yet are answered SERVFAIL rather than
        NXDOMAIN or no data until first written; keys no longer declared stop being so.
        """
        declared = frozenset(keys)
        with self._lock:
            new = declared - self._declared
            self._declared = declared
            self._written([k for k in self._unwritten if k not in declared])
            grew = False
            for key in new:
                idx = self._index_for(key)
                if idx is None or key in self._unwritten or key in self._tables[idx].observed:
                    continue  # outside every served zone (REFUSED anyway), or already held
                apex = self._tables[idx].apex
                slots = tuple((name_wire(name), qtype) for name, qtype in (
                    (key.name, int(dns.rdatatype.from_text(key.rtype))), (marker_name(key), _TXT)))
                names = tuple({n for wire, _ in slots for n in ancestors(wire, apex)})
                self._unwritten[key] = _Unwritten(idx, slots, names)
                self._unwritten_slots.update(slots)
                self._unwritten_names.update(names)
                grew = True
            if grew:
                if self._pool is not None:
                    every = frozenset(self._unwritten_names), frozenset(self._unwritten_slots)
                    self._pool.forward(("unwritten", *every))
                if self._udp_sock is not None:  # start() logs what is left once loaded
                    self._log_unwritten()

    def unwritten(self) -> frozenset[EndpointKey]:
        """Declared endpoints not written yet (answered SERVFAIL)."""
        return frozenset(self._unwritten)

    def _settle_unwritten(self, keys: Iterable[EndpointKey]) -> None:
        """``keys`` were just read from their source: those now held are no longer unwritten. O(len(keys)):
        it runs after every refresh, and was O(unwritten) with every name rendered again (at 100,000
        endpoints from empty, most of the event loop's time, and DNS answers stalled for seconds)."""
        self._written([k for k in keys if (u := self._unwritten.get(k)) is not None
                       and k in self._tables[u.idx].observed])

    def _written(self, keys: list[EndpointKey]) -> None:
        """``keys`` stop being unwritten (written, or no longer declared)."""
        names: list[bytes] = []
        slots: list[tuple[bytes, int]] = []
        for key in keys:
            u = self._unwritten.pop(key)
            slots += u.slots
            for n in u.names:
                self._unwritten_names[n] -= 1
                if not self._unwritten_names[n]:
                    del self._unwritten_names[n]
                    names.append(n)
        if not keys:
            return
        self._unwritten_slots.difference_update(slots)
        if self._pool is not None:
            self._pool.forward(("written", frozenset(names), frozenset(slots)))
        if not self._unwritten and self._udp_sock is not None:
            log.info("every declared endpoint is written", extra={"event": "dns_unwritten", "count": 0})

    def _log_unwritten(self) -> None:
        log.info(
            "%d declared endpoints not written yet: answered SERVFAIL until written",
            len(self._unwritten),
            extra={"event": "dns_unwritten", "count": len(self._unwritten)},
        )

    def _unless_unwritten(self, resp: bytes) -> bytes:
        """SERVFAIL in place of an NXDOMAIN or no-data answer at a name declared but not yet written."""
        out = unless_unwritten(resp, self._unwritten_names, self._unwritten_slots)
        if out is None:
            return resp
        self.limit_stats.servfail_unwritten += 1
        self.stats.replaced(resp, out)
        return out

    # --- UDP answering workers (dnsplane.dns.worker) ------------------------------
    def _worker_init(self) -> Init:
        """What a new worker starts from (called under the lock: no change is applied meanwhile)."""
        return Init(
            zones=[(t.zone, t.serial, dict(t.observed)) for t in self._tables],
            unwritten=(frozenset(self._unwritten_names), frozenset(self._unwritten_slots)),
            transfer=self.transfer,
            rate_limit=self._rate_limit,
        )

    def _udp_handover(self, to_workers: bool) -> None:
        """A worker answers UDP now (``to_workers``): stop reading the shared socket; the last one
        answering died: read it again until a worker is back (loop thread)."""
        sock = self._udp_sock
        if sock is None or self._loop is None or to_workers != self._udp_mine:
            return
        self._udp_mine = not to_workers
        if to_workers:
            self._loop.remove_reader(sock.fileno())
            log.info("dns workers answer UDP on port %d; this process answers TCP", self.port,
                     extra={"event": "dns_workers_answering", "port": self.port})
        else:
            self._loop.add_reader(sock.fileno(), self._udp_readable)
            log.warning("no dns worker answers UDP: this process answers it until one is back",
                        extra={"event": "dns_workers_none", "port": self.port})

    def workers_ready(self) -> bool:
        """Every worker answers UDP and this process no longer does (always True without workers)."""
        return self._pool is None or (self._pool.all_ready() and not self._udp_mine)

    def worker_stats(self) -> list[dict[str, Any]]:
        """Each listening worker's counters (``pid``, ``udp_queries``, ``send_errors``, and its answers as
        ``ServerStats.answers`` gives them); blocks, call from a thread."""
        return [] if self._pool is None else self._pool.stats()

    def answer_stats(self) -> AnswerTotals:
        """Responses by rcode and sampled answer latencies, of this process (TCP, and UDP without workers)
        and every answering worker, those that exited included (``WorkerPool.answers``): never less than
        at the last call. Blocks, call from a thread."""
        totals = AnswerTotals()
        totals.add(self.stats.answers())  # a copy: the loop thread goes on counting
        for part in [] if self._pool is None else self._pool.answers():
            totals.add(part)
        return totals

    def worker_pids(self) -> list[int]:
        return [] if self._pool is None else self._pool.pids()

    # --- serial and secondaries ------------------------------------------------
    def _read_serials(self) -> dict[str, int]:
        if self.serial_file is None:
            return {}
        try:
            data = json.loads(self.serial_file.read_text())
            return {str(k): int(v) & 0xFFFFFFFF for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            log.warning("cannot read %s (%s): serials start from the clock", self.serial_file, exc,
                        extra={"event": "serial_file_unreadable", "path": str(self.serial_file)})
            return {}

    def _bumped(self, table: ZoneTable) -> None:
        """A new version of ``table``: persist its serial, then (while serving) notify the secondaries."""
        if self.serial_file is not None:
            tmp = self.serial_file.with_name(self.serial_file.name + ".tmp")
            try:
                tmp.write_text(json.dumps({t.zone: t.serial for t in self._tables}))
                os.replace(tmp, self.serial_file)
            except OSError as exc:
                log.error("cannot write %s: %s", self.serial_file, exc,
                          extra={"event": "serial_file_unwritable", "path": str(self.serial_file)})
        if self.transfer.notify and self._loop is not None:
            if threading.get_ident() == self._loop_thread:
                self.notifier.changed(table.zone, table.soa_rrset())
            else:  # a commit applied in the writer's thread (workers)
                self._loop.call_soon_threadsafe(self.notifier.changed, table.zone, table.soa_rrset())

    def _check_versions(self, now: float) -> None:
        self._next_version_check = now + VERSION_CHECK_INTERVAL
        for idx, src in enumerate(self.sources):
            try:
                version = src.data_version()
            except DnsplaneError as exc:
                log.warning("data_version failed: %s", exc, extra={"event": "dns_version_failed", "zone": src.zone})
                continue
            if version != self._versions[idx]:
                log.info(
                    "zone %s changed in another process",
                    self._tables[idx].zone,
                    extra={"event": "dns_data_version", "zone": self._tables[idx].zone, "version": version},
                )
                with self._lock:
                    self._guarded(idx, self._reload, idx)

    def _before_serving(self) -> None:
        if self._dirty:
            self._drain()
        now = time.monotonic()
        if now >= self._next_version_check:
            self._check_versions(now)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                self._before_serving()
            except Exception:  # robustness boundary: a failing source must not stop freshness polling
                log.exception("refresh failed", extra={"event": "dns_refresh_failed"})

    # --- serving ------------------------------------------------------------
    def _udp_readable(self) -> None:
        sock = self._udp_sock
        if sock is None:
            return
        handle = self._responder.handle
        stats = self.stats
        limiter = self._limiter
        lock: contextlib.AbstractContextManager[object] = self._lock if self._pool else contextlib.nullcontext()
        try:
            self._before_serving()
        except Exception:  # robustness boundary: serve stale answers rather than nothing
            log.exception("refresh failed", extra={"event": "dns_refresh_failed"})
        for _ in range(UDP_BATCH):
            if self._dirty:
                self._drain()
            try:
                data, addr = sock.recvfrom(UDP_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error reported for an earlier send
                log.debug("udp receive error: %s", exc, extra={"event": "udp_recv_error"})
                continue
            stats.udp_queries += 1
            timed = not stats.udp_queries & (ANSWER_SAMPLE - 1)
            if timed:
                started = time.perf_counter()
            try:
                with lock:  # with workers, changes are applied in the writer's thread
                    resp = handle(data, True)
                    if resp is not None and self._unwritten_names:
                        resp = self._unless_unwritten(resp)
                if resp is not None and limiter is not None:
                    resp = limiter.filter(resp, addr[0], time.monotonic())
            except Exception:  # robustness boundary: one bad datagram must never stop the server
                log.exception("query failed", extra={"event": "query_failed", "size": len(data)})
                continue
            if timed and resp is not None:
                stats.time_answer(resp, time.perf_counter() - started)
            if resp is not None:
                try:
                    sock.sendto(resp, addr)
                except OSError:
                    stats.send_errors += 1

    def _handle_tcp(self, data: bytes) -> bytes | None:
        self._before_serving()
        self.stats.tcp_queries += 1
        timed = not self.stats.tcp_queries & (ANSWER_SAMPLE - 1)
        started = time.perf_counter() if timed else 0.0
        resp = self._responder.handle(data, False)
        if resp is not None and self._unwritten_names:
            resp = self._unless_unwritten(resp)
        if timed and resp is not None:
            self.stats.time_answer(resp, time.perf_counter() - started)
        return resp

    def tcp_messages(self, data: bytes, peer: str, later: Callable[[list[bytes]], None]) -> list[bytes] | None:
        """The messages answering one TCP message from ``peer`` (an address): the responder's one, or a
        refused transfer's; [] = close the connection. None = an allowed zone transfer, built in a
        worker thread from a copy of the zone (answering goes on meanwhile): ``later`` is called with
        its messages in the loop thread ([] when it failed)."""
        with self._lock:  # with workers, changes are applied in the writer's thread
            return self._tcp_messages(data, peer, later)

    def _tcp_messages(self, data: bytes, peer: str, later: Callable[[list[bytes]], None]) -> list[bytes] | None:
        self._before_serving()
        out = transfer_messages(data, peer, self._zones_by_origin, self.transfer)
        if out is None:
            resp = self._handle_tcp(data)
            return [] if resp is None else [resp]
        self.stats.tcp_queries += 1
        if isinstance(out, list):
            return out
        loop = self._loop
        assert loop is not None
        if self._xfr_pool is None:
            self._xfr_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dns-xfr")
        built = loop.run_in_executor(self._xfr_pool, out.build)
        built.add_done_callback(functools.partial(_deliver, later))
        return None


def _deliver(later: Callable[[list[bytes]], None], built: asyncio.Future[list[bytes]]) -> None:
    if built.cancelled():
        return
    exc = built.exception()
    if exc is not None:
        log.error("zone transfer failed: %s", exc, exc_info=exc, extra={"event": "xfr_failed"})
        later([])
        return
    later(built.result())


def _first_serial(now: int, last: int | None) -> int:
    """The serial a zone starts with: the clock, unless the last one served is not older (RFC 1982)."""
    now &= 0xFFFFFFFF
    if last is None or dns.serial.Serial(now) > dns.serial.Serial(last):
        return now or 1
    return (last + 1) & 0xFFFFFFFF or 1
