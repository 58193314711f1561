"""UDP answering workers of the embedded server: separate processes reading the server's one UDP socket.

Why processes: answering is CPU-bound Python, so one interpreter answers on one core; with
``DnsServer(..., workers=N)`` (``dnsplane up --dns-workers N``) N processes answer UDP side by side.
The main process keeps everything else: the authoritative tables, the SOA serial (one per zone
version, as secondaries need), TCP (zone transfers, TSIG, NOTIFY, the TCP limits), the
declared-but-unwritten set and the control plane; it stops reading UDP once a worker answers, so
control work never delays a UDP answer.

One shared socket, not SO_REUSEPORT: the main process binds the UDP socket and every worker inherits
it (``pass_fds``) and reads it (epoll with EPOLLEXCLUSIVE: a datagram wakes one waiting worker). With
SO_REUSEPORT the kernel hashes each client's address and port to one socket of the group, so one busy
client (a resolver, ``dnsperf -c 1``) is answered by one worker only; a worker that dies loses what
is queued in its own socket, the group is rehashed when one joins or leaves, and the main process
must close its own socket (losing what arrives meanwhile) to leave the group. With one shared queue,
every datagram goes to whichever worker is free, nothing queued is lost when a worker dies, and the
main process can read the socket again when no worker is left (measured: bench/RESULTS.md, issue 11
part 2).

What this module owns:
- ``WorkerPool`` (main process): spawns the workers (``python -c`` running ``main`` with the two
  descriptors, a fresh interpreter, never a fork of a process with threads and a running loop),
  forwards every change, waits for every answering worker's acknowledgement, restarts a worker that
  dies or misses the bound;
- ``main`` (worker process): loads the zones it is sent, then answers UDP and applies commands.

Protocol, over a unix socketpair (each message a 4-byte big-endian length and a pickle; main and
worker are the same program, the same user):
- the worker says ``("hello", pid)`` once its interpreter runs; to the worker: ``("init", Init)``
  first; then ``("zone", idx, changes, serial)`` (``changes``: endpoint -> ``Observed`` or None for
  removed, the new serial; a zone re-read after another process wrote the file sends what changed;
  a change of more than ``FORWARD_CHUNK`` endpoints goes in several messages, serial None but the last),
  ``("unwritten", names, slots)`` (the whole set), ``("written", names, slots)`` (what stopped being
  unwritten), ``("listen",)``, ``("ping",)``, ``("stats",)``, ``("stop",)``; each is answered
  ``("ack", seq)`` once applied (seq counts the messages from 1), ``init`` also by ``("loaded",)``,
  ``listen`` also by ``("listening", pid)``, ``stats`` by ``("stats", seq, dict)``;
- the worker takes the content (the ``Observed`` of each endpoint, exactly what the main process's
  tables hold) and the serial from the main process instead of reading the SQLite file itself: it
  serves exactly the version the main process serves, and the serial is never bumped twice or read
  half-committed. It renders the answers itself (in parallel with the others), and answers the queries
  that arrive meanwhile every ``APPLY_CHUNK`` endpoints: each endpoint is served whole (records and
  marker together), the old or the new, and the change is acknowledged once all of it is served.
  What it serves is frozen for the garbage collector (``gc.freeze``) once loaded and after every
  change, so that no full collection walks the zone while queries wait.

Guarantees:
- freshness: ``DnsServer`` forwards each change from the thread that applied it (the writer's thread
  for a commit) and returns only once every answering worker acknowledged it, or a worker is late:
  it said nothing for ``ACK_TIMEOUT`` while it owed an acknowledgement for a message it was given
  whole. Then it is killed (it must not answer stale) and restarted (a ping every ``HEARTBEAT`` finds
  a hung worker when nothing changes). Its silence is bounded, not the work: a large change goes in
  parts of ``FORWARD_CHUNK`` endpoints, each acknowledged, so a worker that is merely behind (a first
  plan of 1,000,000 endpoints on cores the control plane shares) keeps speaking and is not replaced
  by one that must load the whole zone again; a pause of the main process does not count against a
  worker whose word is waiting to be read. So a query sent
  after a write returned sees the write, on every worker; the same holds for the serial and the
  declared-but-unwritten set (SERVFAIL until written);
- a worker reads the socket only once it loaded its zones and applied every change sent before its
  ``listen``; until then it may take ``LOADING_SEND_TIMEOUT`` to take a command (it answers nothing,
  so it cannot answer stale; a worker starved of CPU while it loads is not restarted into the same
  load), an answering one ``SEND_TIMEOUT``; one that dies (EOF on its socketpair) is restarted,
  with a backoff (0.1 s doubling to 5 s) while it keeps dying within a second; while none answers,
  the main process reads the socket again; a worker whose main process is gone (EOF) exits;
- a worker answers exactly as the main process would (same ``Responder``, the SERVFAIL rewrite of
  ``unless_unwritten``, the transfer key for TSIG-signed queries); RRL (``rate_limit``) keeps one set
  of buckets per worker, so a client whose queries are spread over N workers may get up to N times
  the rate.

Limits: Unix only (``pass_fds``, epoll: Linux); the datagram a worker was answering when it died is
lost (clients retry); a write waits for the slowest worker (its acknowledgement takes one batch of
at most 64 datagrams), and so do TCP answers meanwhile (the server's lock); a hung worker delays
them up to ``ACK_TIMEOUT`` once before it is replaced, a slow one as long as it keeps acknowledging;
the zone is rendered and held once per process (memory times N + 1), and a restarted worker renders
the whole zone before it answers.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any

from dnsplane.dns.ratelimit import RateLimit, ResponseLimiter, question_end
from dnsplane.dns.responder import ANSWER_SAMPLE, AnswerTotals, Responder
from dnsplane.dns.transfer import TransferPolicy, answer_signed
from dnsplane.model import EndpointKey, Observed

log = logging.getLogger("dnsplane.dns")

# seconds a change waits for every worker before the late ones are restarted: generous, since a
# false alarm costs a reload of the whole zone, and a pause of the main process itself (a full
# garbage collection of a 100,000-name heap on a loaded machine) counts against it
ACK_TIMEOUT = 5.0
RESTART_BACKOFF = (0.1, 5.0)
HEARTBEAT = 1.0  # seconds between pings: a worker hung without any change to apply is found too
SEND_TIMEOUT = 5  # seconds a command may wait for an answering worker to take it (then it is restarted)
# ...and for a worker still loading: it answers nothing, so it cannot answer stale; starved of CPU on a
# loaded host (a nice'd worker behind busy processes) it may not read for seconds, and killing it then
# restarts a load of minutes on a large zone, again and again
LOADING_SEND_TIMEOUT = 120
HELLO_TIMEOUT = 30.0  # seconds a new worker may take to start its interpreter
UDP_BATCH = 64
UDP_RECV_SIZE = 4096
APPLY_CHUNK = 256  # endpoints applied between two looks at the UDP socket (each about 35 µs to render)
FORWARD_CHUNK = 2048  # endpoints of a change per message: each acknowledged (tens of ms), proof the worker moves
_HEADER = struct.Struct(">I")
# not ``-m dnsplane.dns.worker``: the package imports this module first, which runpy warns about
_ENTRY = "import sys; from dnsplane.dns.worker import main; sys.exit(main(sys.argv[1:]))"


@dataclass
class Init:
    """What a worker needs to answer: the zones (apex, serial, content), the server's options."""

    zones: list[tuple[str, int, dict[EndpointKey, Observed]]]
    unwritten: tuple[frozenset[bytes], frozenset[tuple[bytes, int]]]
    transfer: TransferPolicy = field(default_factory=TransferPolicy)
    rate_limit: RateLimit | None = None


def unless_unwritten(resp: bytes, names: Container[bytes], slots: Container[tuple[bytes, int]]) -> bytes | None:
    """SERVFAIL in place of an NXDOMAIN or no-data answer at a name declared but not yet written
    (``names``: NXDOMAIN there is rewritten; ``slots``: (name, qtype) whose no data is rewritten);
    None = ``resp`` stands."""
    if len(resp) < 12 or resp[4:6] != b"\x00\x01" or resp[2] & 0x02:
        return None
    rcode = resp[3] & 0x0F
    if rcode != 3 and (rcode != 0 or resp[6:8] != b"\x00\x00"):
        return None
    end = question_end(resp)
    if end is None:
        return None
    qname = resp[12 : end - 4].lower()
    if rcode == 3:
        if qname not in names:
            return None
    elif (qname, (resp[end - 4] << 8) | resp[end - 3]) not in slots:
        return None
    tail = resp[-11:]
    opt = tail if resp[10:12] != b"\x00\x00" and len(resp) >= end + 11 and tail[:3] == b"\x00\x00\x29" else b""
    return (
        resp[:2]
        + bytes((resp[2] & 0xF9, (resp[3] & 0x10) | 2))  # AA and TC cleared; SERVFAIL, CD kept
        + (b"\x00\x01\x00\x00\x00\x00\x00\x01" if opt else b"\x00\x01\x00\x00\x00\x00\x00\x00")
        + resp[12:end]
        + opt
    )


def _frame(msg: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _read_frames(buf: bytearray) -> list[Any]:
    out = []
    while len(buf) >= 4:
        (size,) = _HEADER.unpack_from(buf)
        if len(buf) < 4 + size:
            break
        out.append(pickle.loads(bytes(buf[4 : 4 + size])))
        del buf[: 4 + size]
    return out


# --- main process side ------------------------------------------------------------


def _send_timeout(chan: socket.socket, seconds: int) -> None:
    """How long one send to the worker may block before the worker is taken for hung (the next send on)."""
    chan.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))


class _Worker:
    """One worker process as the main process sees it."""

    def __init__(self, slot: int, proc: subprocess.Popen[bytes], chan: socket.socket) -> None:
        self.slot = slot
        self.proc = proc
        self.chan = chan
        self.sent = 0  # messages sent
        self.acked = 0  # highest acknowledged
        self.written = 0  # messages written whole to its socket
        self.heard = time.monotonic()  # last time it acknowledged anything or was given a message whole
        self.listening = False  # ``listen`` was sent: its acknowledgements are waited for
        self.ready = threading.Event()  # it answered ``listening``: its socket is bound
        self.dead = False
        self.stats: dict[int, dict[str, Any]] = {}
        self.cond = threading.Condition()  # acknowledgements
        self.outbox: deque[tuple[Any, ...]] = deque()
        self.out = threading.Condition()  # outbox and dead
        threading.Thread(target=self._send_queued, name=f"dns-worker-{slot}-send", daemon=True).start()

    def send(self, msg: tuple[Any, ...]) -> int:
        """Queue ``msg`` (the sending thread pickles and writes it, in order); its sequence number, 0 when
        the worker is gone. Never blocks: a large init does not hold the caller's locks while it is written."""
        with self.out:
            if self.dead:
                return 0
            self.sent += 1
            self.outbox.append(msg)
            self.out.notify()
            return self.sent

    def gone(self) -> None:
        with self.out:
            self.dead = True
            self.out.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _send_queued(self) -> None:
        while True:
            with self.out:
                while not self.outbox and not self.dead:
                    self.out.wait()
                if self.dead:
                    return
                msg = self.outbox.popleft()
            try:
                self.chan.sendall(_frame(msg))
                with self.cond:  # it holds the whole message now: its silence is counted from here
                    self.written += 1
                    self.heard = time.monotonic()
            except OSError as exc:  # it takes nothing for SEND_TIMEOUT: hung; it must not answer stale
                if not self.dead:
                    log.warning(
                        "dns worker %d takes no command (%s): restarting it",
                        self.proc.pid,
                        exc,
                        extra={"event": "dns_worker_late", "pid": self.proc.pid},
                    )
                    self.proc.kill()
                return
            if msg[0] == "stop":
                return

    def wait(self, seq: int, deadline: float | None = None) -> bool:
        """Wait for message ``seq`` to be applied; False when the worker is late: it owes an
        acknowledgement for a message it holds whole and said nothing for ``ACK_TIMEOUT`` (and nothing it
        said is waiting to be read: a pause of this process is not the worker's), or ``deadline`` passed.

        Its silence, not the size of the work, is what is bounded: a worker behind on a large change
        (a first plan of 100,000 endpoints, a machine whose cores the control plane takes) acknowledges
        every ``FORWARD_CHUNK`` endpoints and is given the time; one stopped or hung is found within
        ``ACK_TIMEOUT`` of its last word."""
        with self.cond:
            while self.acked < seq and not self.dead:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                owes = self.written > self.acked  # else our own sending thread is behind, not the worker
                left = self.heard + ACK_TIMEOUT - now if owes else ACK_TIMEOUT
                if left <= 0:
                    if not self._unread():
                        return False
                    left = 0.05  # it spoke while this process was paused: its reader takes it now
                if deadline is not None:
                    left = min(left, deadline - now)
                self.cond.wait(left)
            return True

    def _unread(self) -> bool:
        """Whether the worker wrote something its reader thread has not taken yet."""
        try:
            return bool(self.chan.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True  # reset or closed: its reader sees the end and marks it gone


class WorkerPool:
    """``count`` UDP answering processes for one ``DnsServer``; see the module docstring."""

    def __init__(
        self,
        count: int,
        udp: socket.socket,
        snapshot: Callable[[], Init],
        on_listening: Callable[[], None],
        on_none_listening: Callable[[], None],
    ) -> None:
        self.count = count
        self._udp = udp  # the server's UDP socket, shared with every worker
        self._snapshot = snapshot  # called under the server's lock: the state a new worker starts from
        self._on_listening = on_listening  # called (from a pool thread) each time a worker starts answering
        self._on_none_listening = on_none_listening  # ...and when the last one answering died
        self._lock = threading.Lock()  # orders sends: a new worker's init before any later change
        self._workers: list[_Worker | None] = [None] * count
        self._stopping = False
        self._stopped = threading.Event()
        self.restarts = 0
        self._threads: list[threading.Thread] = []
        # Each slot's newest answer counts (``ServerStats.answers``) as its worker last reported them, and the
        # sum of those of workers that exited: a restarted worker counts from 0, and /metrics' counters must
        # not go back (nor dip while a worker is too slow to report)
        self._answers: dict[int, dict[str, Any]] = {}
        self._retired = AnswerTotals()

    # lifecycle ------------------------------------------------------------------
    def start(self, lock: threading.RLock) -> None:
        """Spawn every worker (``lock``: the server's, held while each takes its snapshot)."""
        self._server_lock = lock
        for slot in range(self.count):
            self._spawn(slot)
        t = threading.Thread(target=self._heartbeat, name="dns-workers-heartbeat", daemon=True)
        self._threads.append(t)
        t.start()

    def _heartbeat(self) -> None:
        """Ping every worker each ``HEARTBEAT``: one that does not answer within ``ACK_TIMEOUT`` is restarted
        (a stopped worker can hold datagrams the kernel woke it for)."""
        while not self._stopped.wait(HEARTBEAT):
            with self._server_lock:  # never behind a change being applied (its bound is its own)
                self.forward(("ping",))

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._stopped.set()
        workers = [w for w in self._workers if w is not None]
        for w in workers:
            w.send(("stop",))
        deadline = time.monotonic() + timeout
        for w in workers:
            try:
                w.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.chan.close()
        for t in self._threads:
            t.join(timeout)

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w is not None and not w.dead]

    def all_ready(self) -> bool:
        return all(w is not None and w.ready.is_set() and not w.dead for w in self._workers)

    def _spawn(self, slot: int, delay: float = 0.0) -> None:
        if delay:
            time.sleep(delay)
        if self._stopping:
            return
        main_end, child_end = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(child_end.fileno()), str(self._udp.fileno())],
                pass_fds=(child_end.fileno(), self._udp.fileno()),
                stdin=subprocess.DEVNULL,
            )
        finally:
            child_end.close()
        w = _Worker(slot, proc, main_end)
        # it says hello once imported: the snapshot, taken under the locks, then goes out at once
        main_end.settimeout(HELLO_TIMEOUT)
        hello = bytearray()
        try:
            while not _read_frames(hello):
                data = main_end.recv(4096)
                if not data:
                    break
                hello += data
        except OSError:
            pass
        main_end.settimeout(None)
        _send_timeout(main_end, LOADING_SEND_TIMEOUT)
        with self._server_lock, self._lock:  # no change is forwarded between the snapshot and the init
            w.send(("init", self._snapshot()))
            self._workers[slot] = w
            if self._stopping:  # stop() came while it started: it has not seen this one
                w.send(("stop",))
        t = threading.Thread(target=self._read, args=(w,), name=f"dns-worker-{slot}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    # forwarding -----------------------------------------------------------------
    def forward(self, msg: tuple[Any, ...]) -> None:
        """Send ``msg`` to every worker; return once each listening one applied it, or kill the late ones
        (``_Worker.wait``: silent for ``ACK_TIMEOUT`` while it owes an acknowledgement)."""
        with self._lock:
            waits = [(w, w.send(msg)) for w in self._workers if w is not None and w.listening]
            for w in self._workers:
                if w is not None and not w.listening:
                    w.send(msg)  # still loading: it applies this before it listens
        for w, seq in waits:
            if seq and not w.wait(seq):
                log.warning(
                    "dns worker %d said nothing for %.1f s while it owed the acknowledgement of a change:"
                    " restarting it",
                    w.proc.pid,
                    ACK_TIMEOUT,
                    extra={"event": "dns_worker_late", "pid": w.proc.pid},
                )
                w.proc.kill()
                w.proc.wait()  # its socket is closed: it answers nothing stale
                w.gone()  # at once, not when its reader thread sees the EOF: pids() no longer lists it

    def forward_zone(self, idx: int, changes: dict[EndpointKey, Observed | None], serial: int) -> None:
        """Forward a change of zone ``idx`` in messages of ``FORWARD_CHUNK`` endpoints, the serial with
        the last: each is acknowledged once applied, so a worker working through a large change keeps
        saying so (``_Worker.wait`` bounds its silence, not the change's size)."""
        items = list(changes.items())
        last = max(0, len(items) - 1) // FORWARD_CHUNK * FORWARD_CHUNK
        for start in range(0, last, FORWARD_CHUNK):
            self.forward(("zone", idx, dict(items[start:start + FORWARD_CHUNK]), None))
        self.forward(("zone", idx, dict(items[last:]), serial))

    def stats(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        """Each listening worker's counters (pid, udp_queries, ..., and ``ServerStats.answers``)."""
        return [report for _, report in self._ask_stats(timeout)]

    def _ask_stats(self, timeout: float) -> list[tuple[_Worker, dict[str, Any]]]:
        with self._lock:
            asked = [(w, w.send(("stats",))) for w in self._workers if w is not None and w.listening]
        deadline = time.monotonic() + timeout
        out = []
        for w, seq in asked:
            if seq and w.wait(seq, deadline) and seq in w.stats:
                out.append((w, w.stats.pop(seq)))
        return out

    def answers(self, timeout: float = 0.5) -> list[dict[str, Any]]:
        """Answer counts to add up, in ``ServerStats.answers``' form: each slot's newest report (asked now;
        a worker that does not answer within ``timeout`` counts as it last reported) and those of workers
        that exited (``_retired``)."""
        for w, report in self._ask_stats(timeout):
            with self._lock:
                if self._workers[w.slot] is w and not w.dead:
                    self._answers[w.slot] = report
        with self._lock:
            return [self._retired.plain(), *self._answers.values()]

    # each worker's reader thread ------------------------------------------------------
    def _read(self, w: _Worker) -> None:
        buf = bytearray()
        started = time.monotonic()
        while True:
            try:
                data = w.chan.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            for msg in _read_frames(buf):
                if msg[0] == "ack" or msg[0] == "stats":
                    with w.cond:
                        if msg[0] == "stats":
                            w.stats[msg[1]] = msg[2]
                        w.acked = max(w.acked, msg[1])
                        w.heard = time.monotonic()
                        w.cond.notify_all()
                elif msg[0] == "loaded":
                    with self._lock:
                        w.send(("listen",))  # after every change sent since its init
                        w.listening = True
                elif msg[0] == "listening":
                    _send_timeout(w.chan, SEND_TIMEOUT)  # it answers now: one that takes nothing is hung
                    w.ready.set()
                    log.info(
                        "dns worker %d answering UDP",
                        w.proc.pid,
                        extra={"event": "dns_worker_ready", "pid": w.proc.pid},
                    )
                    self._on_listening()
        w.gone()
        with self._lock:  # its counts so far stay in the totals; its successor counts from 0
            report = self._answers.pop(w.slot, None)
            if report is not None:
                self._retired.add(report)
        code = w.proc.wait()
        w.chan.close()
        if self._stopping:
            return
        if not any(x is not None and x.ready.is_set() and not x.dead for x in self._workers):
            self._on_none_listening()
        self.restarts += 1
        log.warning(
            "dns worker %d exited (%s): restarting it",
            w.proc.pid,
            code,
            extra={"event": "dns_worker_exited", "pid": w.proc.pid, "code": code},
        )
        first, longest = RESTART_BACKOFF
        quick = time.monotonic() - started < 1.0
        self._spawn(w.slot, min(longest, first * (2 ** min(self.restarts, 6))) if quick else 0.0)


# --- worker process side -------------------------------------------------------------


class _Answerer:
    def __init__(self, init: Init) -> None:
        self.responder = Responder()
        self.tables = []
        for zone, serial, observed in init.zones:
            table = self.responder.add_zone(zone, serial)
            table.set_journal_size(0)
            table.set_nameservers(init.transfer.nameservers)
            self.tables.append(table)
            self._reload(len(self.tables) - 1, observed, serial)
        if init.transfer.keyring is not None:
            self.responder.signed = functools.partial(answer_signed, policy=init.transfer, handle=self.responder.handle)
        self.names, self.slots = set(init.unwritten[0]), set(init.unwritten[1])
        self.limiter = ResponseLimiter(init.rate_limit) if init.rate_limit is not None else None
        self.udp_queries = 0
        self.send_errors = 0

    def _set_serial(self, idx: int, serial: int) -> None:
        table = self.tables[idx]
        table.serial = (serial - 1) & 0xFFFFFFFF  # bump_serial renders the SOA of ``serial``
        table.bump_serial()

    def apply(self, idx: int, changes: dict[EndpointKey, Observed | None], serial: int | None,
              between: Callable[[], None] = lambda: None) -> None:
        """Serve ``changes``, calling ``between`` after every ``APPLY_CHUNK`` endpoints (the queries that
        arrived meanwhile are answered there: a batch of thousands is tens of milliseconds of rendering).
        Each endpoint changes whole, records and marker together; the serial moves once, at the end
        (not at all for None: a part of a change forwarded in several messages, the serial comes with the last)."""
        table = self.tables[idx]
        for i, (key, observed) in enumerate(changes.items(), 1):
            if observed is None:
                table.remove(key)
            else:
                table.set(key, observed)
            if i % APPLY_CHUNK == 0:
                between()
        if serial is not None:
            self._set_serial(idx, serial)

    def _reload(self, idx: int, observed: dict[EndpointKey, Observed], serial: int) -> None:
        table = self.tables[idx]
        changes: dict[EndpointKey, Observed | None] = {k: None for k in table.endpoints() if k not in observed}
        changes.update(observed)
        self.apply(idx, changes, serial)

    def serve(self, sock: socket.socket) -> None:
        handle = self.responder.handle
        limiter = self.limiter
        recvfrom, sendto = sock.recvfrom, sock.sendto
        clock, time_answer, sample = time.perf_counter, self.responder.stats.time_answer, ANSWER_SAMPLE - 1
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(UDP_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self.udp_queries += 1
            timed = not self.udp_queries & sample
            if timed:
                started = clock()
            try:
                resp = handle(data, True)
                if resp is not None and self.names and (out := unless_unwritten(resp, self.names, self.slots)):
                    self.responder.stats.replaced(resp, out)
                    resp = out
                if resp is not None and limiter is not None:
                    resp = limiter.filter(resp, addr[0], time.monotonic())
            except Exception:  # robustness boundary: one bad datagram must never stop the worker
                log.exception("query failed", extra={"event": "query_failed", "size": len(data)})
                continue
            if timed and resp is not None:
                time_answer(resp, clock() - started)
            if resp is not None:
                try:
                    sendto(resp, addr)
                except OSError:
                    self.send_errors += 1


def _recv_exact(chan: socket.socket, buf: bytearray) -> Any:
    while True:
        frames = _read_frames(buf)
        if frames:
            return frames
        try:
            data = chan.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            raise SystemExit(0)  # the main process is gone
        buf += data


def main(argv: Iterable[str] | None = None) -> int:
    """The worker process: ``argv`` is the socketpair's descriptor and the UDP socket's."""
    try:
        return _serve(list(sys.argv[1:] if argv is None else argv))
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the main process is gone


def _serve(args: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the main process stops us
    logging.basicConfig(level=logging.WARNING, format=f"dnsplane dns worker {os.getpid()}: %(message)s")
    chan = socket.socket(fileno=int(args[0]))
    udp = socket.socket(fileno=int(args[1]))  # the server's, shared: read only once loaded
    udp.setblocking(False)
    chan.setblocking(True)
    chan.sendall(_frame(("hello", os.getpid())))
    buf = bytearray()
    pending = _recv_exact(chan, buf)
    seq = 1
    kind, init = pending.pop(0)
    assert kind == "init"
    answerer = _Answerer(init)
    del init  # its copies of the zone's content: the tables hold what they serve
    gc.collect()
    gc.freeze()  # the loaded zone is never collected: no full collection walks it while answering
    chan.sendall(_frame(("ack", seq)))
    chan.sendall(_frame(("loaded",)))
    chan.setblocking(False)
    ep = select.epoll()
    ep.register(chan.fileno(), select.EPOLLIN)
    listening = False
    while True:
        for msg in pending:
            seq += 1
            kind = msg[0]
            if kind == "zone":
                answerer.apply(msg[1], msg[2], msg[3], functools.partial(answerer.serve, udp) if listening
                               else lambda: None)
                # what it serves now is long-lived too: frozen, so that no full collection walks a zone that
                # grew since (at 100,000 endpoints from empty, collections of the growing zone stopped
                # answering for up to 0.7 s). What a change replaces is freed by reference counting: the
                # tables hold no cycles that a frozen object would keep alive.
                gc.freeze()
            elif kind == "unwritten":
                answerer.names, answerer.slots = set(msg[1]), set(msg[2])
            elif kind == "written":  # these stopped being unwritten (the server counts names shared by several)
                answerer.names.difference_update(msg[1])
                answerer.slots.difference_update(msg[2])
            elif kind == "listen" and not listening:
                listening = True
                # EPOLLEXCLUSIVE: a datagram wakes one waiting worker, not all of them
                ep.register(udp.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
                chan.setblocking(True)
                chan.sendall(_frame(("listening", os.getpid())))
                chan.setblocking(False)
            elif kind == "stats":
                chan.setblocking(True)
                chan.sendall(
                    _frame(
                        (
                            "stats",
                            seq,
                            {
                                "pid": os.getpid(),
                                "udp_queries": answerer.udp_queries,
                                "send_errors": answerer.send_errors,
                                **answerer.responder.stats.answers(),
                            },
                        )
                    )
                )
                chan.setblocking(False)
                continue
            elif kind == "stop":
                return 0
            chan.setblocking(True)
            chan.sendall(_frame(("ack", seq)))
            chan.setblocking(False)
        pending = []
        for fd, _ in ep.poll():
            if fd == udp.fileno():
                answerer.serve(udp)
            else:
                try:
                    data = chan.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:  # reset: the main process is gone
                    return 0
                if not data:
                    return 0  # the main process is gone
                buf += data
                pending.extend(_read_frames(buf))


if __name__ == "__main__":
    sys.exit(main())
