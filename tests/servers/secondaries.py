"""Start real secondaries (BIND ``named``, NSD, Knot) of a zone whose primary is dnsplane, for tests.

Guarantees:
- ``start_secondary(kind, workdir, zone, primary, key)`` writes the server's config in ``workdir``
  (zone data, journals, pid file and log stay there), starts it on a free loopback port and returns
  once it answers a query (any rcode: it may not hold the zone yet), polled with a deadline;
- the secondary transfers the zone from ``primary`` (host, port) signed with ``key`` (name,
  algorithm, base64 secret) and asks for IXFR (NSD and Knot fall back to AXFR themselves), accepts
  NOTIFY from 127.0.0.1 signed with the key, and lets 127.0.0.1 transfer the zone from it unsigned
  (``Secondary.axfr``: what it holds, for the tests to compare);
- ``refresh`` (seconds; Knot takes 2 at least) clamps the secondary's SOA refresh and retry timers (the
  secondary then polls the primary's SOA that often, whatever the SOA says); None leaves the SOA's;
- ``stop()`` ends the process it started (SIGTERM, then SIGKILL after a deadline) and nothing else.

Limits: needs ``/usr/sbin/named`` (bind9), ``/usr/sbin/nsd`` (nsd), ``/usr/sbin/knotd`` (knot); when
one is missing the test is skipped, or failed when ``DNSPLANE_REQUIRE_SERVERS=1``. IPv4 loopback only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.zone
import pytest

from tests.servers.named import free_port, terminate

BINARIES = {"bind": ("/usr/sbin/named", "bind9"), "nsd": ("/usr/sbin/nsd", "nsd"), "knot": ("/usr/sbin/knotd", "knot")}
START_DEADLINE = 30.0
HOST = "127.0.0.1"


def require(kind: str) -> str:
    """Path of the server binary of ``kind``; skip when missing (fail when DNSPLANE_REQUIRE_SERVERS=1)."""
    path, package = BINARIES[kind]
    found = shutil.which(path) or (path if os.access(path, os.X_OK) else None)
    if found is None:
        message = f"{path} not found (install the Debian package {package})"
        if os.environ.get("DNSPLANE_REQUIRE_SERVERS") == "1":
            pytest.fail(message + "; DNSPLANE_REQUIRE_SERVERS=1 requires it", pytrace=False)
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Key:
    name: str  # without the final dot
    secret: str
    algorithm: str = "hmac-sha256"


@dataclass
class Secondary:
    kind: str
    workdir: Path
    port: int
    zone: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.kind}.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = "(no log)"
        return f"--- {self.kind} log ---\n" + "\n".join(text.splitlines()[-lines:])

    def soa_serial(self) -> int | None:
        """The serial the secondary serves, or None while it holds no zone (SERVFAIL, REFUSED)."""
        q = dns.message.make_query(self.zone, "SOA")
        r = dns.query.udp(q, HOST, port=self.port, timeout=1)
        if r.rcode() != dns.rcode.NOERROR or not r.answer:
            return None
        return int(r.answer[0][0].serial)

    def axfr(self) -> dns.zone.Zone:
        """The zone as the secondary holds it (transferred from it, unsigned, over TCP)."""
        return dns.zone.from_xfr(dns.query.xfr(HOST, self.zone, port=self.port, lifetime=10, relativize=False),
                                 relativize=False)

    def stop(self, deadline: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            terminate(proc, deadline)


def _bind_conf(w: Path, port: int, zone: str, primary: tuple[str, int], key: Key, refresh: int | None) -> str:
    z = zone.rstrip(".")
    timers = "" if refresh is None else (
        f"\tmin-refresh-time {refresh}; max-refresh-time {refresh};\n"
        f"\tmin-retry-time {refresh}; max-retry-time {refresh};\n")
    return f"""options {{
	directory "{w}";
	pid-file "{w}/named.pid";
	session-keyfile "{w}/session.key";
	managed-keys-directory "{w}";
	listen-on port {port} {{ 127.0.0.1; }};
	listen-on-v6 {{ none; }};
	recursion no;
	notify no;
	dnssec-validation no;
	allow-query {{ any; }};
}};
controls {{ }};
key "{key.name}" {{ algorithm {key.algorithm}; secret "{key.secret}"; }};
zone "{z}" {{
	type secondary;
	file "{w}/{z}.bk";
	primaries {{ {primary[0]} port {primary[1]} key "{key.name}"; }};
	allow-notify {{ 127.0.0.1; }};
	allow-transfer {{ 127.0.0.1; }};
{timers}}};
"""


def _nsd_conf(w: Path, port: int, zone: str, primary: tuple[str, int], key: Key, refresh: int | None) -> str:
    z = zone.rstrip(".")
    timers = "" if refresh is None else (
        f"\tmin-refresh-time: {refresh}\n\tmax-refresh-time: {refresh}\n"
        f"\tmin-retry-time: {refresh}\n\tmax-retry-time: {refresh}\n")
    return f"""server:
	ip-address: 127.0.0.1@{port}
	port: {port}
	do-ip6: no
	username: ""
	chroot: ""
	zonesdir: "{w}"
	database: ""
	zonelistfile: "{w}/zone.list"
	pidfile: "{w}/nsd.pid"
	xfrdfile: "{w}/xfrd.state"
	xfrdir: "{w}"
	logfile: "{w}/nsd.log"
	server-count: 1
	verbosity: 2
remote-control:
	control-enable: no
key:
	name: "{key.name}"
	algorithm: {key.algorithm}
	secret: "{key.secret}"
zone:
	name: "{z}"
	zonefile: "{w}/{z}.zone"
	request-xfr: {primary[0]}@{primary[1]} {key.name}
	allow-notify: 127.0.0.1 {key.name}
	provide-xfr: 127.0.0.1 NOKEY
{timers}"""


def _knot_conf(w: Path, port: int, zone: str, primary: tuple[str, int], key: Key, refresh: int | None) -> str:
    z = zone.rstrip(".")
    timers = "" if refresh is None else (
        f"    refresh-min-interval: {refresh}\n    refresh-max-interval: {refresh}\n"
        f"    retry-min-interval: {refresh}\n    retry-max-interval: {refresh}\n")
    return f"""server:
    rundir: "{w}"
    listen: 127.0.0.1@{port}
database:
    storage: "{w}"
log:
  - target: "{w}/knot.log"
    any: info
key:
  - id: {key.name}
    algorithm: {key.algorithm}
    secret: {key.secret}
remote:
  - id: primary
    address: {primary[0]}@{primary[1]}
    key: {key.name}
acl:
  - id: from_primary
    address: 127.0.0.1
    key: {key.name}
    action: notify
  - id: to_tests
    address: 127.0.0.1
    action: transfer
zone:
  - domain: {z}
    storage: "{w}"
    file: "{z}.zone"
    master: primary
    acl: [from_primary, to_tests]
    zonefile-sync: -1
    journal-content: changes
{timers}"""


CONFS = {"bind": ("named.conf", _bind_conf), "nsd": ("nsd.conf", _nsd_conf), "knot": ("knot.conf", _knot_conf)}


def _command(kind: str, binary: str, conf: Path) -> list[str]:
    match kind:
        case "bind":
            return [binary, "-g", "-n", "1", "-c", str(conf)]
        case "nsd":
            return [binary, "-d", "-c", str(conf)]
        case _:
            return [binary, "-c", str(conf)]


def start_secondary(kind: str, workdir: Path, zone: str, primary: tuple[str, int], key: Key, *,
                    refresh: int | None = None, port: int | None = None) -> Secondary:
    """Start a ``kind`` ("bind", "nsd", "knot") secondary of ``zone``; returns once it answers queries.
    ``port``: the port to listen on (tried first; a free one is picked if it is taken)."""
    binary = require(kind)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    name, render = CONFS[kind]
    error: Exception | None = None
    for attempt in range(3):  # a port picked free may be taken before the server binds it: try another
        if attempt or port is None:
            port = free_port()
        conf = workdir / name
        conf.write_text(render(workdir, port, zone, primary, key, refresh))
        sec = Secondary(kind, workdir, port, zone)
        log = open(sec.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            sec.process = subprocess.Popen(_command(kind, binary, conf), cwd=workdir, stdout=log, stderr=log)
        finally:
            log.close()
        try:
            _wait_answering(sec)
            return sec
        except RuntimeError as exc:
            error = exc
            sec.stop()
    raise RuntimeError(f"could not start {kind}: {error}")


def _wait_answering(sec: Secondary) -> None:
    end = time.monotonic() + START_DEADLINE
    last: Exception | None = None
    while time.monotonic() < end:
        if sec.process is not None and sec.process.poll() is not None:
            raise RuntimeError(f"{sec.kind} exited with {sec.process.returncode}:\n{sec.log_tail()}")
        try:
            dns.query.udp(dns.message.make_query(sec.zone, "SOA"), HOST, port=sec.port, timeout=0.5)
            return
        except (dns.exception.DNSException, OSError) as exc:
            last = exc
            time.sleep(0.05)  # polling interval, not synchronisation: the deadline bounds the loop
    raise RuntimeError(f"{sec.kind} did not answer within {START_DEADLINE}s ({last}):\n{sec.log_tail()}")


@contextlib.contextmanager
def running_secondary(kind: str, workdir: Path, zone: str, primary: tuple[str, int], key: Key, *,
                      refresh: int | None = None, port: int | None = None) -> Iterator[Secondary]:
    sec = start_secondary(kind, workdir, zone, primary, key, refresh=refresh, port=port)
    try:
        yield sec
    finally:
        sec.stop()
