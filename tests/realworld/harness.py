"""The integration harness: ``dnsplane up`` as a real process, a real ``named``, health targets on
loopback, and a prober that queries every endpoint over real DNS and checks the invariants a client
can see.

What it gives (see tests/realworld/README.md for how to write a test):

- ``Target`` / ``Listener``: a load balancer's health check, a TCP listener on 127.0.0.1 that a test
  takes down (the listening socket is closed: "connection refused", for real) and brings back up
  on the same port;
- ``fleet_text`` / ``rfc2136_provider``: fleet files (zone, targets, endpoints, provider);
- ``Dnsplane``: runs ``dnsplane up --fleet F --data-dir D --dns 127.0.0.1:<free port>`` with short
  periods, stdout/stderr in files, ``start`` (waits for ``instance.json`` of its own pid, with a
  deadline), ``stop`` (SIGTERM, then SIGKILL after a deadline, by pid), ``restart``, ``log()``,
  ``instance()``, ``status()``;
- ``Prober``: a thread asking one DNS server (``named``, or dnsplane's embedded server) for every
  endpoint and its marker TXT, continuously, over UDP with a short timeout; it records every answer
  with its time and checks, in ``violations()`` / ``assert_invariants()`` (which quote a timeline):
  I1 — no empty answer or NXDOMAIN for a name once it has been served, except inside a window the
  test declares with ``allow_gap`` (which must close, by a non-empty answer, before its bound);
  I2 — no marker generation lower than one already served for the endpoint, no two contents (``d=``)
  for one generation, no marker served again after another replaced it, and no address set that
  belongs to an older generation served while the marker of a newer one stands before and after
  it (where the content of each generation is known: from the marker TXT's JSON, which the RFC 2136
  provider writes when target ids are not the addresses, or ``declare_content``).
  Timeouts and other rcodes (SERVFAIL while named restarts) are counted, not violations;
- ``actor_problems`` / ``Dnsplane.assert_every_actor_running``: every actor's last successful
  round is recent (``instance.json``'s ``actors`` when the running code writes it; otherwise no
  "actor round failed" or traceback in the log);
- hand edits on ``named`` (a person at the keyboard): ``delete_records``, ``put_cname``,
  ``write_marker``, ``delete_name``; ``NamedServer.restart()`` restarts named on the same port.

Everything waits by polling a condition with a deadline (``wait_for``); only the prober paces its
rounds and ``NamedServer.restart(down=...)`` keeps a declared outage.
Limits: loopback only; one zone per fleet; the prober asks one server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import yaml

from dnsplane.model import MAX_GENERATION
from tests.servers.named import NamedServer, free_port, terminate

DEADLINE = 30.0
# Short periods for tests: a verifier period of 1 s makes "two verifier periods" 2 s.
PERIODS: dict[str, float] = {"planner": 0.2, "enactor": 0.3, "health": 0.2, "collector": 2.0, "verifier": 1.0}


def wait_for(what: str, cond: Callable[[], object], deadline: float = DEADLINE,
             detail: Callable[[], str] | None = None) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); AssertionError after ``deadline`` s.
    A DNS timeout or a refused connection inside ``cond`` counts as "not yet"."""
    end = time.monotonic() + deadline
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            value = cond()
            if value:
                return value
        except (dns.exception.DNSException, OSError) as exc:
            last = exc
        time.sleep(0.05)  # polling interval; the deadline bounds the wait
    extra = f" (last error: {last})" if last else ""
    raise AssertionError(f"timed out after {deadline:g}s waiting for {what}{extra}"
                         + (f"\n{detail()}" if detail else ""))


# ----------------------------------------------------------------------------- health targets


class Listener:
    """A TCP listener on 127.0.0.1 that answers every connection with ``HTTP/1.0 200 OK`` (so TCP and
    HTTP health checks pass); ``down()`` closes the listening socket, ``up()`` listens on the same
    port again. A thread accepts and closes connections."""

    RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="listener")
        self.up()
        self._thread.start()

    @property
    def is_up(self) -> bool:
        return self._sock is not None

    def up(self) -> None:
        with self._lock:
            if self._sock is not None:
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            end = time.monotonic() + 5
            while True:
                try:
                    s.bind(("127.0.0.1", self.port))
                    break
                except OSError:
                    if time.monotonic() > end:
                        s.close()
                        raise
                    time.sleep(0.02)  # the port is released when the old socket's last user lets go
            s.listen(64)
            s.setblocking(False)
            self.port = s.getsockname()[1]
            self._sock = s

    def down(self) -> None:
        with self._lock:
            s, self._sock = self._sock, None
        if s is not None:
            # shutdown first: a close() alone leaves the socket listening while the accept thread's
            # select() still holds it
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._stop.set()
        self.down()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            s = self._sock
            if s is None:
                self._stop.wait(0.02)
                continue
            try:
                ready, _, _ = select.select([s], [], [], 0.05)
                if not ready:
                    continue
                conn, _ = s.accept()
            except (OSError, ValueError):  # closed by down() meanwhile
                continue
            with contextlib.suppress(OSError):
                conn.sendall(self.RESPONSE)
            conn.close()


@dataclass(frozen=True)
class Target:
    """A fleet target: its id, the addresses it puts in DNS (TEST-NET data), and the loopback port of
    its TCP health check (None: no check, never observed)."""

    id: str
    addresses: tuple[str, ...]
    check_port: int | None = None


# ----------------------------------------------------------------------------- fleet files


def rfc2136_provider(named: NamedServer, **extra: object) -> dict[str, object]:
    """The ``provider:`` mapping of a fleet managing ``named``'s zone with its TSIG key file."""
    return {"kind": "rfc2136", "server": named.host, "port": named.port, "key_file": named.key_file,
            "timeout": 2, **extra}


def fleet_text(zone: str, targets: Iterable[Target],
               endpoints: Mapping[str, Sequence[str]] | Sequence[Mapping[str, object]],
               provider: Mapping[str, object] | None = None, *, ttl: int = 30,
               policy: Mapping[str, object] | None = None, check_timeout: float = 0.5) -> str:
    """A fleet file's YAML. ``endpoints``: ``{name: [target ids]}`` (A records), or a list of raw endpoint
    mappings (``{"name": ..., "type": "AAAA", "targets": [...], "policy": {...}}``)."""
    doc: dict[str, object] = {"zone": zone}
    if provider is not None:
        doc["provider"] = dict(provider)
    doc["defaults"] = {"ttl": ttl, **({"policy": dict(policy)} if policy else {})}
    tdoc: dict[str, object] = {}
    for t in targets:
        entry: dict[str, object] = {"addresses": list(t.addresses)}
        if t.check_port is not None:
            entry["check"] = {"tcp": f"127.0.0.1:{t.check_port}", "timeout": check_timeout}
        tdoc[t.id] = entry
    doc["targets"] = tdoc
    if isinstance(endpoints, Mapping):
        doc["endpoints"] = [{"name": n, "targets": list(ts)} for n, ts in endpoints.items()]
    else:
        doc["endpoints"] = [dict(e) for e in endpoints]
    return yaml.safe_dump(doc, sort_keys=False)


def endpoint_keys(fleet_path: Path) -> list[tuple[str, str]]:
    """``(absolute name, rtype)`` of every endpoint of a fleet file, as dnsplane reads it."""
    from dnsplane.config import load_fleet

    return [(str(ep.key.name), str(ep.key.rtype)) for ep in load_fleet(str(fleet_path)).endpoints]


def marker_name(name: str, rtype: str) -> str:
    return f"_dnsplane-{rtype.lower()}.{name}"


# ----------------------------------------------------------------------------- dnsplane up


class Dnsplane:
    """One ``dnsplane up`` process: ``start()``, ``stop()``, ``restart()``, ``log()``, ``instance()``."""

    def __init__(self, workdir: Path, fleet: Path | None, *, dns_port: int | None = None,
                 periods: Mapping[str, float] | None = None, enactors: int = 2,
                 extra_args: Sequence[str] = (), log_level: str = "info") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fleet = fleet
        self.data_dir = self.workdir / "data"
        self.dns_port = dns_port or free_port()
        self._port_picked = dns_port is None  # picked here: another may be taken if it is gone at start
        self._served_once = False
        self.periods = {**PERIODS, **(periods or {})}
        self.enactors = enactors
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0  # how many times started; each run logs to up-<n>.out / up-<n>.err

    # -- paths and text
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def dns(self) -> tuple[str, int]:
        """Where dnsplane's embedded server answers (the embedded provider only)."""
        return ("127.0.0.1", self.dns_port)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "dnsplane.cli", "up", "--data-dir", str(self.data_dir),
               "--dns", f"127.0.0.1:{self.dns_port}", "--enactors", str(self.enactors),
               "--log-level", self.log_level]
        if self.fleet is not None:
            cmd += ["--fleet", str(self.fleet)]
        if "--api" not in self.extra_args:  # a free port: several `up`s of one test, or of tests in a row
            cmd += ["--api", "127.0.0.1:0"]
        for actor, seconds in self.periods.items():
            cmd += [f"--{actor}-period", f"{seconds:g}"]
        return cmd + self.extra_args

    def log(self) -> str:
        """stdout and stderr of every run so far, oldest first."""
        parts = []
        for n in range(1, self.runs + 1):
            for kind in ("out", "err"):
                path = self.workdir / f"up-{n}.{kind}"
                with contextlib.suppress(OSError):
                    text = path.read_text(errors="replace")
                    if text:
                        parts.append(f"--- run {n} std{kind} ---\n{text}")
        return "\n".join(parts)

    def log_mark(self) -> int:
        """A position in ``log()``: pass it to ``log_since`` / ``wait_log`` to look only at what came after."""
        return len(self.log())

    def log_since(self, mark: int) -> str:
        return self.log()[mark:]

    def wait_log(self, pattern: str, *, since: int = 0, deadline: float = DEADLINE) -> re.Match[str]:
        """Wait until a line matching the regex ``pattern`` is logged (after ``since``); returns the match."""
        rx = re.compile(pattern)
        return wait_for(f"dnsplane to log /{pattern}/", lambda: rx.search(self.log_since(since)),  # type: ignore[no-any-return]
                        deadline, self.log_tail)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # -- lifecycle
    def start(self, *, wait: bool = True, deadline: float = DEADLINE) -> None:
        """Start ``dnsplane up``; with ``wait``, return once it is ready. A DNS port this object picked
        that another process took before the first start is replaced by another free port (at most
        twice); a restart keeps the port, so probers of ``dns`` keep asking the right server."""
        for attempt in range(3):
            mark = self.log_mark()
            self._spawn()
            if not wait:
                return
            try:
                self.wait_ready(deadline)
                self._served_once = True
                return
            except AssertionError:
                taken = "address already in use" in self.log_since(mark).lower()
                if attempt == 2 or not taken or not self._port_picked or self._served_once or self.running:
                    raise
                self.dns_port = free_port()

    def _spawn(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        out = open(self.workdir / f"up-{self.runs}.out", "wb")  # noqa: SIM115 - handed to the child
        err = open(self.workdir / f"up-{self.runs}.err", "wb")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=err, cwd=self.workdir,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            out.close()
            err.close()

    def wait_ready(self, deadline: float = DEADLINE) -> dict[str, Any]:
        """Wait until ``instance.json`` is this process's (the DNS server listens, actors started)."""
        def ready() -> dict[str, Any] | None:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"dnsplane up exited with {self.process.returncode}:\n{self.log_tail()}")
            inst = self.instance()
            return inst if inst is not None and inst.get("pid") == self.pid else None
        return wait_for("dnsplane up to write instance.json", ready, deadline, self.log_tail)  # type: ignore[no-any-return]

    def wait_exit(self, deadline: float = DEADLINE) -> int:
        """Wait for the process to exit by itself (e.g. ``start(wait=False)`` of a refused start: exit 2);
        returns its exit code; AssertionError (the log quoted) if it still runs after ``deadline`` s."""
        assert self.process is not None, "not started"
        try:
            return self.process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"dnsplane up still runs after {deadline:g}s:\n{self.log_tail()}") from None

    def stop(self, deadline: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``deadline`` s; returns the exit code (None if not running)."""
        proc, self.process = self.process, None
        if proc is None:
            return None
        terminate(proc, deadline)
        self.process = proc  # keep it for returncode/pid until the next start
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is cleaned up)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def restart(self, **kwargs: Any) -> None:
        self.stop()
        self.start(**kwargs)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- state
    def instance(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.data_dir / "instance.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def store_head(self) -> int:
        """The store's head generation, read as ``dnsplane status`` reads it (safe beside a running
        process: WAL)."""
        from dnsplane.store.sqlite import SqliteStore

        store = SqliteStore(self.data_dir / "store.sqlite")
        try:
            return int(store.head())
        finally:
            store.close()

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``dnsplane <args> --data-dir <this data dir>``."""
        return subprocess.run([sys.executable, "-m", "dnsplane.cli", *args, "--data-dir", str(self.data_dir)],
                              capture_output=True, text=True, timeout=timeout, cwd=self.workdir)

    def status(self) -> dict[str, Any]:
        """``dnsplane status --json`` when the CLI has it, else ``instance.json`` (empty when absent)."""
        if status_has_json():
            res = self.cli("status", "--json")
            assert res.returncode == 0, f"dnsplane status --json failed ({res.returncode}):\n{res.stderr}"
            return json.loads(res.stdout)  # type: ignore[no-any-return]
        return self.instance() or {}

    def actor_problems(self, within: float | None = None, since: float | None = None) -> list[str]:
        """``actor_problems`` of this process's status (``within`` defaults to three of its slowest
        periods, at least 3 s); the process not running is a problem too."""
        if not self.running:
            return ["dnsplane up is not running"]
        within = within if within is not None else max(3.0, 3 * max(self.periods.values()))
        return actor_problems(self.status() or self.instance() or {}, within=within, since=since, log=self.log())

    def assert_every_actor_running(self, within: float | None = None, since: float | None = None) -> None:
        """Every actor's last successful round is at most ``within`` s old (and, with ``since``, at or
        after that ``time.time()``), and the process is alive."""
        problems = self.actor_problems(within, since)
        assert not problems, "actors not running:\n  " + "\n  ".join(problems) + f"\n{self.log_tail()}"

    def wait_every_actor_running(self, since: float | None = None, deadline: float = DEADLINE) -> None:
        """Wait until every actor has had a successful round at or after ``since`` (``time.time()``;
        default: now), e.g. after a fault ends: each actor recovered by itself."""
        since = time.time() if since is None else since
        last: list[str] = []

        def ok() -> bool:
            nonlocal last
            last = self.actor_problems(since=since)
            return not last

        wait_for("every actor to succeed a round", ok, deadline,
                 lambda: "\n  ".join(last) + f"\n{self.log_tail()}")


_STATUS_JSON: bool | None = None


def status_has_json() -> bool:
    """Whether ``dnsplane status`` accepts ``--json`` (asked of the parser, once)."""
    global _STATUS_JSON
    if _STATUS_JSON is None:
        from dnsplane.cli import build_parser

        parser = build_parser()
        sub = next(a for a in parser._actions if a.dest == "command")
        status = sub.choices["status"]  # type: ignore[index]
        _STATUS_JSON = any("--json" in a.option_strings for a in status._actions)
    return _STATUS_JSON


def every_actor_running(instance: Mapping[str, Any], *, within: float, log: str = "") -> bool:
    """Whether every actor's last successful round is at most ``within`` s old (see ``actor_problems``)."""
    return not actor_problems(instance, within=within, log=log)


def _is_actor(name: str) -> bool:
    return name in ("planner", "collector", "verifier") or name.startswith("enactor")


_LAST_OK_KEYS = ("last_success", "last_ok", "last_success_at", "last_round_ok")


def actor_problems(instance: Mapping[str, Any], *, within: float, log: str = "",
                   now: float | None = None, since: float | None = None) -> list[str]:
    """Why not every actor is running, from ``instance.json`` / ``status --json``: each actor under
    ``actors`` must have a last successful round (epoch seconds) at most ``within`` s old, and not
    before ``since`` when given (a round that succeeded after a fault ended). When the
    running code does not report actors yet, an "actor round failed" or a traceback in ``log`` is a
    problem (that code never runs a failed actor again)."""
    now = time.time() if now is None else now
    actors = instance.get("actors")
    problems: list[str] = []
    if isinstance(actors, Mapping) and actors:
        for name, info in sorted(actors.items()):
            last = next((info[k] for k in _LAST_OK_KEYS if isinstance(info, Mapping) and info.get(k) is not None),
                        None)
            if (last is None and not _is_actor(name) and isinstance(info, Mapping) and not info.get("rounds")
                    and not info.get("failures") and not info.get("last_error")):
                continue  # a background task (health loop, demo) that counts no rounds and never failed
            if last is None:
                problems.append(f"{name}: no successful round ({info})")
            elif now - float(last) > within:
                problems.append(f"{name}: last successful round {now - float(last):.1f}s ago (> {within:g}s): {info}")
            elif since is not None and float(last) < since:
                problems.append(f"{name}: no successful round since {since - now:+.1f}s (last "
                                f"{float(last) - now:+.1f}s): {info}")
        return problems
    for line in log.splitlines():
        if "actor round failed" in line or line.startswith("Traceback"):
            problems.append(f"log: {line.strip()}")
    return problems


# ----------------------------------------------------------------------------- prober

_GEN = re.compile(r"(?:^|\s)g=(\S+)")
_DIGEST = re.compile(r"(?:^|\s)d=(\S+)")


@dataclass(frozen=True)
class Observation:
    """One answer: when the query was sent and answered (``time.monotonic()``), what it asked, what came back."""

    sent: float
    got: float
    qname: str
    qtype: str  # "A"/"AAAA" (records) or "TXT" (the marker)
    endpoint: tuple[str, str]  # (name, rtype) of the endpoint the name belongs to
    rcode: str  # NOERROR, NXDOMAIN, SERVFAIL, ..., or TIMEOUT / ERROR
    addresses: frozenset[str] = frozenset()
    marker: str | None = None  # first string of the marker TXT; None when absent
    rdatas: int = 0  # how many TXT records besides the record-set parts "dnsplane-rs <i>" (several: a hand edit)
    content: frozenset[str] | None = None  # live addresses the marker's JSON declares
    via: str | None = None  # the CNAME chain an address answer followed (a hand edit)

    @property
    def is_marker(self) -> bool:
        return self.qtype == "TXT"

    @property
    def empty(self) -> bool:
        """An answer that serves nothing: NXDOMAIN, or NOERROR without an address."""
        return self.rcode == "NXDOMAIN" or (self.rcode == "NOERROR" and not self.addresses)

    @property
    def generation(self) -> int | None:
        if self.marker is None:
            return None
        m = _GEN.search(self.marker)
        if m is None or not m.group(1).isascii() or not m.group(1).isdigit():
            return None
        g = int(m.group(1))
        return g if g <= MAX_GENERATION else None  # out of range: a corrupt marker, never a generation

    @property
    def digest(self) -> str | None:
        m = _DIGEST.search(self.marker or "")
        return m.group(1) if m else None

    def describe(self, t0: float) -> str:
        head = f"+{self.sent - t0:8.3f}s {self.qtype:<4} {self.qname:<40} {self.rcode:<8}"
        if self.is_marker:
            extra = "" if self.marker is None else repr(self.marker)
            if self.rdatas > 1:
                extra += f" ({self.rdatas} TXT records)"
            if self.content is not None:
                extra += f" content={{{','.join(sorted(self.content))}}}"
            return head + " " + extra
        return head + (f" CNAME {self.via}" if self.via else "") + " {" + ",".join(sorted(self.addresses)) + "}"

    def same_answer(self, other: Observation) -> bool:
        return (self.qname, self.qtype, self.rcode, self.addresses, self.marker, self.rdatas, self.via) == (
            other.qname, other.qtype, other.rcode, other.addresses, other.marker, other.rdatas, other.via)


@dataclass(frozen=True)
class Violation:
    invariant: str  # "I1" or "I2"
    endpoint: tuple[str, str]
    at: float  # monotonic time of the offending answer's query
    message: str


@dataclass
class _Gap:
    start: float
    until: float
    reason: str


def _txt_content(text: bytes) -> frozenset[str] | None:
    if not text:
        return None
    try:
        data = json.loads(text.decode())
        return frozenset(a for _tid, addrs, w in data["members"] if int(w) > 0 for a in addrs)
    except (ValueError, TypeError, KeyError):
        return None


class Prober:
    """Queries every endpoint and its marker over UDP (TCP on truncation), continuously, in a thread.

    ``answers``: "all" when the server answers every live address (BIND), "weighted" when it answers
    a subset (dnsplane's embedded server picks one per answer): content checks then test inclusion.
    """

    def __init__(self, server: tuple[str, int], endpoints: Iterable[tuple[str, str]], *,
                 timeout: float = 0.5, pace: float = 0.01, answers: str = "all") -> None:
        self.server = server
        self.endpoints = [(n if n.endswith(".") else n + ".", t.upper()) for n, t in endpoints]
        self.timeout = timeout
        self.pace = pace
        self.answers = answers
        self.observations: list[Observation] = []
        self.t0 = time.monotonic()
        self.t0_wall = time.time()  # to find the prober's +seconds in dnsplane's log (wall clock)
        self._gaps: dict[tuple[str, str], list[_Gap]] = defaultdict(list)
        self._ignored: set[str] = set()
        self._declared: dict[tuple[tuple[str, str], int], frozenset[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running
    def start(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True, name="prober")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Prober:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rounds(self) -> int:
        """How many complete rounds over every endpoint so far (each endpoint's records answered)."""
        with self._lock:
            counts = Counter(o.endpoint for o in self.observations if not o.is_marker)
            endpoints = list(self.endpoints)
        return min((counts[e] for e in endpoints), default=0)

    def wait_rounds(self, n: int, deadline: float = DEADLINE) -> None:
        """Wait until ``n`` more rounds have been recorded (a "the prober has looked" barrier)."""
        target = self.rounds() + n
        wait_for(f"{n} prober rounds", lambda: self.rounds() >= target, deadline)

    def watch(self, seconds: float) -> None:
        """Keep probing for ``seconds`` (an observation window the test wants covered, e.g. a few
        verifier periods; not synchronisation: wait for conditions with ``wait_for``)."""
        assert self._thread is not None and self._thread.is_alive(), "the prober is not running"
        end = time.monotonic() + seconds
        start_rounds = self.rounds()
        while time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        assert self.rounds() > start_rounds, "the prober made no round while watching"

    def add_endpoint(self, name: str, rtype: str = "A") -> None:
        """Probe one more endpoint from now (e.g. one a reloaded fleet added)."""
        key = (_abs(name), rtype.upper())
        with self._lock:
            if key not in self.endpoints:
                self.endpoints = [*self.endpoints, key]

    def retire_endpoint(self, name: str, rtype: str = "A") -> None:
        """Stop probing an endpoint from now (e.g. one removed from the fleet); its answers so far stay
        in the record and are still checked."""
        key = (_abs(name), rtype.upper())
        with self._lock:
            self.endpoints = [k for k in self.endpoints if k != key]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                endpoints = list(self.endpoints)
            for key in endpoints:
                if self._stop.is_set():
                    return
                self.record(self.query(key, key[0], key[1]))
                self.record(self.query(key, marker_name(*key), "TXT"))
            self._stop.wait(self.pace)  # pacing, so that the prober does not starve the processes under test

    def query(self, endpoint: tuple[str, str], qname: str, qtype: str) -> Observation:
        q = dns.message.make_query(qname, qtype, use_edns=0, payload=4096)
        sent = time.monotonic()
        host, port = self.server
        try:
            r = dns.query.udp(q, host, port=port, timeout=self.timeout)
            if r.flags & dns.flags.TC:
                r = dns.query.tcp(q, host, port=port, timeout=self.timeout)
        except dns.exception.Timeout:
            return Observation(sent, time.monotonic(), qname, qtype, endpoint, "TIMEOUT")
        except (OSError, dns.exception.DNSException) as exc:
            return Observation(sent, time.monotonic(), qname, qtype, endpoint, f"ERROR:{type(exc).__name__}")
        got = time.monotonic()
        rcode = dns.rcode.to_text(r.rcode())
        want = dns.rdatatype.from_text(qtype)
        rrsets = [rr for rr in r.answer if rr.rdtype == want and rr.name == dns.name.from_text(qname)]
        if qtype == "TXT":
            # the marker layout (dnsplane/providers/marker_txt.py): the marker record, and record-set parts
            # "dnsplane-rs <i>" "<chunk>"...; or, written before it, ONE record: the marker, then the JSON
            heads: list[list[bytes]] = []
            parts: dict[int, bytes] = {}
            for rd in (rd for rr in rrsets for rd in rr):
                strings = [bytes(s) for s in rd.strings]
                index = strings[0].split()[1] if strings and strings[0].startswith(b"dnsplane-rs ") else b""
                if index.isdigit():
                    parts[int(index)] = b"".join(strings[1:])
                else:
                    heads.append(strings)
            strings = heads[0] if heads else []
            marker = strings[0].decode(errors="replace") if strings else None
            carried = b"".join(strings[1:]) or b"".join(parts[i] for i in sorted(parts))
            content = _txt_content(carried) if len(heads) == 1 else None
            return Observation(sent, got, qname, qtype, endpoint, rcode, marker=marker, rdatas=len(heads),
                               content=content)
        # what a client gets: the addresses at the name, or at the end of a CNAME chain in the answer
        owner, chain = dns.name.from_text(qname), []
        for _ in range(8):
            cname = next((rr for rr in r.answer if rr.rdtype == dns.rdatatype.CNAME and rr.name == owner), None)
            if cname is None:
                break
            owner = cname[0].target
            chain.append(owner.to_text())
        addresses = frozenset(rd.address for rr in r.answer if rr.rdtype == want and rr.name == owner for rd in rr)
        return Observation(sent, got, qname, qtype, endpoint, rcode, addresses=addresses,
                           via=" -> ".join(chain) or None)

    def record(self, obs: Observation) -> None:
        """Add one observation (the thread does; tests of the prober feed synthetic ones)."""
        with self._lock:
            self.observations.append(obs)

    # -- what the test declares
    def now(self) -> float:
        return time.monotonic()

    def allow_gap(self, name: str, within: float, *, rtype: str = "A", reason: str = "") -> None:
        """From now, ``name`` may answer empty or NXDOMAIN (a person's own deletion, a declared
        outage) until it answers an address again, which must happen within ``within`` seconds."""
        key = (name if name.endswith(".") else name + ".", rtype.upper())
        start = time.monotonic()
        with self._lock:
            self._gaps[key].append(_Gap(start, start + within, reason or "declared gap"))

    def gap_closed(self, name: str, rtype: str = "A") -> bool:
        """Whether the newest declared gap of ``name`` has been seen open (an empty answer) and closed
        (an address served after it): wait for this after a hand deletion."""
        key = (_abs(name), rtype.upper())
        with self._lock:
            if not self._gaps.get(key):
                raise AssertionError(f"no gap declared for {key[0]} {key[1]}")
            start = self._gaps[key][-1].start
            emptied = False
            for o in self.observations:
                if o.endpoint != key or o.is_marker or o.sent < start or o.rcode not in ("NOERROR", "NXDOMAIN"):
                    continue
                if o.empty:
                    emptied = True
                elif emptied:
                    return True
        return False

    def ignore_marker(self, text: str) -> None:
        """A marker TXT a test wrote by hand: it is recorded but is no generation served by dnsplane."""
        with self._lock:
            self._ignored.add(text)

    def declare_content(self, name: str, generation: int, addresses: Iterable[str], *, rtype: str = "A") -> None:
        """The live addresses of ``generation`` at ``name`` (when the marker TXT does not carry them)."""
        key = (name if name.endswith(".") else name + ".", rtype.upper())
        with self._lock:
            self._declared[(key, generation)] = frozenset(addresses)

    # -- checks
    def snapshot(self) -> list[Observation]:
        with self._lock:
            return list(self.observations)

    def counts(self) -> dict[str, Counter[str]]:
        """Per query name, how many answers of each rcode (TIMEOUT counted here, never a violation)."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for o in self.snapshot():
            out[o.qname][o.rcode] += 1
        return dict(out)

    def timeouts(self) -> int:
        return sum(1 for o in self.snapshot() if o.rcode == "TIMEOUT")

    def served(self, name: str, rtype: str = "A") -> frozenset[str]:
        """The addresses of the newest answer for ``name`` (empty when none yet)."""
        key = (name if name.endswith(".") else name + ".", rtype.upper())
        for o in reversed(self.snapshot()):
            if o.endpoint == key and not o.is_marker and o.rcode == "NOERROR":
                return o.addresses
        return frozenset()

    def violations(self) -> list[Violation]:
        obs = self.snapshot()
        with self._lock:
            gaps = {k: list(v) for k, v in self._gaps.items()}
            ignored = set(self._ignored)
            declared = dict(self._declared)
        out: list[Violation] = []
        by_endpoint: dict[tuple[str, str], list[Observation]] = defaultdict(list)
        for o in obs:
            by_endpoint[o.endpoint].append(o)
        for key, seq in by_endpoint.items():
            out += self._check_i1(key, [o for o in seq if not o.is_marker], gaps.get(key, []))
            out += self._check_i2(key, seq, ignored, declared)
        return sorted(out, key=lambda v: v.at)

    def _check_i1(self, key: tuple[str, str], seq: list[Observation], gaps: list[_Gap]) -> list[Violation]:
        out: list[Violation] = []
        served = False
        closed: set[int] = set()  # gaps closed by an answer after an empty one
        emptied: set[int] = set()
        for o in seq:
            if o.rcode not in ("NOERROR", "NXDOMAIN"):
                continue  # TIMEOUT, SERVFAIL, REFUSED: counted, not an answer about the name
            open_gaps = [i for i, g in enumerate(gaps) if i not in closed and g.start <= o.sent]
            if not o.empty:
                served = True
                for i in open_gaps:
                    if i in emptied:
                        closed.add(i)
                continue
            if not served:
                continue
            covering = [i for i in open_gaps if o.sent <= gaps[i].until]
            if covering:
                emptied.update(covering)
                continue
            late = [gaps[i] for i in open_gaps if i in emptied]
            why = (f"; the declared gap ({late[0].reason}) did not close within "
                   f"{late[0].until - late[0].start:g}s") if late else ""
            out.append(Violation("I1", key, o.sent, f"{key[0]} {key[1]}: {o.rcode} with no address after the "
                                 f"name had been served{why}"))
            served = False  # one report per outage: the next one counts after an address is served again
        # a gap that never closed: the last answer is still empty
        answered = [o for o in seq if o.rcode in ("NOERROR", "NXDOMAIN")]
        if answered and answered[-1].empty:
            for i, g in enumerate(gaps):
                if i in emptied and i not in closed and answered[-1].sent <= g.until:
                    out.append(Violation("I1", key, answered[-1].sent,
                                         f"{key[0]} {key[1]}: the declared gap ({g.reason}) was still open when "
                                         f"probing stopped; it must close within {g.until - g.start:g}s"))
        return out

    def _check_i2(self, key: tuple[str, str], seq: list[Observation], ignored: set[str],
                  declared: Mapping[tuple[tuple[str, str], int], frozenset[str]]) -> list[Violation]:
        out: list[Violation] = []
        content: dict[int, frozenset[str]] = {g: c for (k, g), c in declared.items() if k == key}
        digests: dict[int, str] = {}
        markers = [o for o in seq if o.is_marker and o.rcode == "NOERROR" and o.marker is not None
                   and o.rdatas == 1 and o.marker not in ignored and o.generation is not None]
        for o in markers:
            g = o.generation
            assert g is not None
            if o.content is not None:
                content.setdefault(g, o.content)
        best: Observation | None = None
        replaced: dict[str, Observation] = {}  # marker text -> the observation that showed its successor
        reported: set[tuple[object, object]] = set()  # one report per distinct fault
        current: Observation | None = None
        for o in markers:
            g = o.generation
            assert g is not None
            if best is not None and best.generation is not None and g < best.generation \
                    and (o.marker, best.marker) not in reported:
                reported.add((o.marker, best.marker))  # once per regressing marker
                out.append(Violation("I2", key, o.sent, f"{key[0]} {key[1]}: marker generation {g} served "
                                     f"after generation {best.generation} ({o.marker!r} after {best.marker!r})"))
            if best is None or (best.generation or 0) <= g:
                best = o
            d = o.digest
            if d is not None:
                if g in digests and digests[g] != d and (g, d) not in reported:
                    reported.add((g, d))
                    out.append(Violation("I2", key, o.sent, f"{key[0]} {key[1]}: generation {g} served with "
                                         f"two contents (d={digests[g]} then d={d}): {o.marker!r}"))
                digests.setdefault(g, d)
            if current is not None and current.marker != o.marker:
                replaced[current.marker or ""] = o
                if o.marker in replaced and (o.marker, "again") not in reported:
                    reported.add((o.marker, "again"))
                    out.append(Violation("I2", key, o.sent, f"{key[0]} {key[1]}: marker {o.marker!r} served "
                                         "again after another replaced it (the zone went back)"))
            current = o
        # content: an address set bracketed by the same marker must not be an older generation's
        counted = {id(o) for o in markers}
        prev_marker: Observation | None = None
        pending: list[Observation] = []
        for o in seq:
            if o.is_marker:
                if id(o) in counted:
                    if prev_marker is not None and prev_marker.marker == o.marker:
                        out += self._stale_content(key, pending, o, content)
                    prev_marker = o
                pending = []
            elif o.rcode == "NOERROR" and o.addresses:
                pending.append(o)
        return out

    def _matches(self, addresses: frozenset[str], content: frozenset[str]) -> bool:
        return addresses == content if self.answers == "all" else addresses <= content

    def _stale_content(self, key: tuple[str, str], answers: list[Observation], marker: Observation,
                       content: Mapping[int, frozenset[str]]) -> list[Violation]:
        g = marker.generation
        assert g is not None
        if g not in content:
            return []
        out = []
        for a in answers:
            if self._matches(a.addresses, content[g]):
                continue
            older = sorted(old for old, c in content.items() if old < g and self._matches(a.addresses, c))
            if older:
                out.append(Violation("I2", key, a.sent, f"{key[0]} {key[1]}: served {{{','.join(sorted(a.addresses))}}}"
                                     f", the content of generation {older[-1]}, while the marker of generation {g} "
                                     "stood before and after"))
        return out

    def timeline(self, key: tuple[str, str] | None = None, around: float | None = None, span: float = 5.0,
                 limit: int = 200, mark: float | None = None) -> str:
        """The observations (of ``key``, near ``around``), repeated identical answers folded into one line."""
        lines: list[str] = []
        last: dict[str, Observation] = {}  # per query name, the last answer shown
        repeat = 0
        picked = [o for o in self.snapshot() if (key is None or o.endpoint == key)
                  and (around is None or abs(o.sent - around) <= span)]
        for o in picked:
            marked = mark is not None and o.sent == mark
            if o.qname in last and o.same_answer(last[o.qname]) and not marked:
                repeat += 1
                continue
            if repeat:
                lines.append(f"{'':12}({repeat} answers as above)")
            lines.append(o.describe(self.t0) + ("   <== here" if marked else ""))
            last[o.qname], repeat = o, 0
        if repeat:
            lines.append(f"{'':12}({repeat} answers as above, until +{picked[-1].sent - self.t0:.3f}s)")
        if len(lines) > limit:
            lines = [*lines[: limit // 2], f"... {len(lines) - limit} lines ...", *lines[-limit // 2 :]]
        return "\n".join(lines)

    def report(self, violations: Sequence[Violation]) -> str:
        started = time.strftime("%H:%M:%S", time.localtime(self.t0_wall)) + f".{int(self.t0_wall * 1000) % 1000:03d}"
        parts = [f"{len(violations)} invariant violation(s) seen by the prober (times since it started, at "
                 f"{started} on the log's clock):"]
        for v in violations[:10]:
            parts.append(f"\n{v.invariant} at +{v.at - self.t0:.3f}s: {v.message}\ntimeline of {v.endpoint[0]} "
                         f"{v.endpoint[1]} around it:\n{self.timeline(v.endpoint, v.at, mark=v.at)}")
        with self._lock:
            gaps = {k: list(g) for k, g in self._gaps.items() if g}
        for k, gs in gaps.items():
            for g in gs:
                parts.append(f"declared gap {k[0]} {k[1]}: +{g.start - self.t0:.3f}s .. "
                             f"+{g.until - self.t0:.3f}s ({g.reason})")
        parts.append(f"timeouts: {self.timeouts()}")
        return "\n".join(parts)

    def never_served(self) -> list[tuple[str, str]]:
        """Endpoints probed now that never answered an address (a test that sees nothing proves nothing)."""
        obs = self.snapshot()
        with self._lock:
            endpoints = list(self.endpoints)
        served = {o.endpoint for o in obs if not o.is_marker and o.rcode == "NOERROR" and o.addresses}
        return [k for k in endpoints if k not in served]

    def assert_invariants(self, extra: Callable[[], str] | None = None, *, require_served: bool = True) -> None:
        """Raise AssertionError, with the timeline around each violation, if I1 or I2 was broken, or
        (``require_served``) if an endpoint still probed never answered an address at all."""
        found = self.violations()
        if found:
            raise AssertionError(self.report(found) + (f"\n{extra()}" if extra else ""))
        missing = self.never_served() if require_served else []
        if missing:
            names = ", ".join(f"{n} {t}" for n, t in missing)
            raise AssertionError(f"never served while probed: {names} (retire_endpoint() it, or pass "
                                 f"require_served=False)\n{self.timeline(missing[0])}"
                                 + (f"\n{extra()}" if extra else ""))


# ----------------------------------------------------------------------------- hand edits on named


def delete_records(named: NamedServer, name: str, rtype: str = "A") -> None:
    """A person deletes the endpoint's address records (the marker TXT stays)."""
    u = named.update()
    u.delete(_abs(name), rtype)
    named.send(u)


def delete_name(named: NamedServer, name: str) -> None:
    """A person deletes every record at ``name``."""
    u = named.update()
    u.delete(_abs(name))
    named.send(u)


def put_cname(named: NamedServer, name: str, target: str, ttl: int = 30) -> None:
    """A person replaces everything at ``name`` by a CNAME to ``target``."""
    u = named.update()
    u.delete(_abs(name))
    u.add(_abs(name), ttl, "CNAME", _abs(target))
    named.send(u)


def write_marker(named: NamedServer, name: str, text: str, rtype: str = "A", ttl: int = 60) -> None:
    """A person writes the marker TXT of endpoint ``name`` by hand (replacing whatever is there)."""
    mname = marker_name(_abs(name), rtype)
    u = named.update()
    u.delete(mname, "TXT")
    u.add(mname, ttl, "TXT", '"' + text.replace('"', '\\"') + '"')
    named.send(u)


def read_marker(named: NamedServer, name: str, rtype: str = "A") -> str | None:
    """The first string of the marker TXT (not of its record-set parts ``dnsplane-rs <i>``), asked of ``named``
    directly."""
    q = dns.message.make_query(marker_name(_abs(name), rtype), "TXT")
    r = dns.query.tcp(q, named.host, port=named.port, timeout=2)
    for rr in r.answer:
        if rr.rdtype == dns.rdatatype.TXT:
            for rd in rr:
                if not bytes(rd.strings[0]).startswith(b"dnsplane-rs "):
                    return bytes(rd.strings[0]).decode(errors="replace")
    return None


def addresses(server: tuple[str, int], name: str, rtype: str = "A", timeout: float = 1.0) -> frozenset[str]:
    """The addresses ``server`` answers for ``name`` now (UDP)."""
    q = dns.message.make_query(_abs(name), rtype)
    r = dns.query.udp(q, server[0], port=server[1], timeout=timeout)
    want = dns.rdatatype.from_text(rtype)
    return frozenset(rd.address for rr in r.answer if rr.rdtype == want for rd in rr)


def _abs(name: str) -> str:
    return name if name.endswith(".") else name + "."


# ----------------------------------------------------------------------------- a world per test


@dataclass
class World:
    """What one test runs: health targets, a fleet file, ``dnsplane up`` processes, probers; ``close()``
    stops all of it (the ``world`` fixture does). ``named`` is the test's ``named`` (None: embedded)."""

    workdir: Path
    named: NamedServer | None = None
    zone: str = "demo.test."
    listeners: dict[str, Listener] = field(default_factory=dict)
    processes: list[Dnsplane] = field(default_factory=list)
    probers: list[Prober] = field(default_factory=list)

    def target(self, tid: str, *addresses: str, check: bool = True) -> Target:
        """A target with a live TCP health check on a loopback listener (``self.listeners[tid]``)."""
        port = None
        if check:
            self.listeners[tid] = Listener()
            port = self.listeners[tid].port
        return Target(tid, tuple(addresses), port)

    def fleet(self, targets: Iterable[Target],
              endpoints: Mapping[str, Sequence[str]] | Sequence[Mapping[str, object]], *,
              provider: str | Mapping[str, object] = "rfc2136", name: str = "fleet.yaml", **kw: Any) -> Path:
        """Write a fleet file; ``provider``: "rfc2136" (this world's named), "embedded", or a mapping."""
        if provider == "rfc2136":
            assert self.named is not None, "the rfc2136 provider needs the named fixture"
            prov: Mapping[str, object] | None = rfc2136_provider(self.named)
        elif provider == "embedded":
            prov = None
        else:
            assert isinstance(provider, Mapping)
            prov = provider
        path = self.workdir / name
        path.write_text(fleet_text(self.zone, targets, endpoints, prov, **kw))
        return path

    def dnsplane(self, fleet: Path, *, start: bool = True, name: str | None = None, **kw: Any) -> Dnsplane:
        d = Dnsplane(self.workdir / (name or f"dnsplane-{len(self.processes) + 1}"), fleet, **kw)
        self.processes.append(d)
        if start:
            d.start()
        return d

    def prober(self, fleet: Path, *, server: tuple[str, int] | None = None, start: bool = True,
               **kw: Any) -> Prober:
        """A prober over every endpoint of ``fleet``, asking ``server`` (default: named). Another server
        than named (dnsplane's embedded one) is probed with ``answers="weighted"`` unless told otherwise."""
        named = (self.named.host, self.named.port) if self.named is not None else None
        if server is None:
            assert named is not None, "no named in this world: pass server=up.dns"
            server = named
        kw.setdefault("answers", "all" if server == named else "weighted")
        p = Prober(server, endpoint_keys(fleet), **kw)
        self.probers.append(p)
        if start:
            p.start()
        return p

    def wait_served(self, server: tuple[str, int], fleet: Path, deadline: float = DEADLINE) -> None:
        """Wait until every endpoint of ``fleet`` answers at least one address at ``server``."""
        for name, rtype in endpoint_keys(fleet):
            def served(n: str = name, t: str = rtype) -> frozenset[str]:
                return addresses(server, n, t)
            wait_for(f"{name} {rtype} to be served", served, deadline, self.logs)

    # -- a person's hand edits on named, declared to every prober of this world
    def hand_delete_records(self, name: str, *, within: float | None = None, rtype: str = "A") -> None:
        """A person deletes ``name``'s address records; every prober allows the name to be empty until
        it is served again, within ``within`` s (default: two verifier periods)."""
        assert self.named is not None
        for p in self.probers:
            p.allow_gap(name, within if within is not None else 2 * PERIODS["verifier"], rtype=rtype,
                        reason=f"a person deleted {name} {rtype}")
        delete_records(self.named, name, rtype)

    def hand_write_marker(self, name: str, text: str, *, rtype: str = "A") -> None:
        """A person writes the marker TXT of ``name`` by hand; probers do not count it as served by dnsplane."""
        assert self.named is not None
        for p in self.probers:
            p.ignore_marker(text)
        write_marker(self.named, name, text, rtype)

    def logs(self) -> str:
        parts = [f"=== {d.workdir.name} ===\n{d.log_tail(80)}" for d in self.processes]
        if self.named is not None:
            parts.append(f"=== named ===\n{self.named.log_tail(20)}")
        return "\n".join(parts)

    def close(self) -> None:
        for p in self.probers:
            p.stop()
        for d in self.processes:
            with contextlib.suppress(Exception):
                d.stop()
        for listener in self.listeners.values():
            listener.close()
