"""Start a real BIND9 ``named`` for tests: generated config, zone and TSIG key in a temp dir, a loopback port.

Guarantees:
- ``start_named(workdir)`` returns only once the server answers the SOA of every
  zone over TCP (polled with a deadline, no fixed sleeps); ``stop()`` ends the
  process it started (SIGTERM, then SIGKILL after a deadline) and nothing else;
- the server listens on 127.0.0.1 only (no IPv6), on a free port picked here,
  with ``recursion no``; every file it writes (pid, session key, journals)
  stays in ``workdir``; its log is kept in ``workdir/named.log`` and quoted in
  failure messages (``NamedServer.log_tail()``);
- zones are dynamic: ``allow-update`` (default) or ``update-policy`` (the
  variant the docs show) for the test key, and ``allow-transfer`` for the key;
  ``policy="none"`` grants no updates (a zone dnsplane may read but not change);
  ``policy="txt-only"`` grants TXT only (the markers, not the records); ``policy="no-token"`` all
  but the zone's write token (``_dnsplane-token.<zone>`` TXT);
- ``NamedServer.restart()`` stops and starts the same server on the same port;
  dynamic updates survive in the zone's journal.

Limits: needs ``/usr/sbin/named`` (Debian package ``bind9``); when it is missing,
``require_named()`` skips the test, or fails it when ``DNSPLANE_REQUIRE_SERVERS=1``.
Runs ``named`` as the current user (root in CI containers: ``-u`` is omitted).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import dns.zone
import pytest

NAMED = os.environ.get("DNSPLANE_NAMED", "/usr/sbin/named")
KEY_NAME = "dnsplane-test."
START_DEADLINE = 30.0


def named_path() -> str | None:
    found = shutil.which(NAMED) or (NAMED if os.access(NAMED, os.X_OK) else None)
    return found


def require_named() -> str:
    """Path of ``named``; skip the test when it is missing (fail when DNSPLANE_REQUIRE_SERVERS=1)."""
    path = named_path()
    if path is None:
        message = f"BIND9 named not found at {NAMED} (install the Debian packages bind9 and bind9-utils)"
        if os.environ.get("DNSPLANE_REQUIRE_SERVERS") == "1":
            pytest.fail(message + "; DNSPLANE_REQUIRE_SERVERS=1 requires it", pytrace=False)
        pytest.skip(message)
    return path


def terminate(proc: subprocess.Popen[bytes], deadline: float = 10.0) -> None:
    """SIGTERM a process this test started, then SIGKILL after ``deadline`` s; waits for it (no-op if it ended)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=deadline)


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port for both UDP and TCP")


def key_file_text(name: str, secret: str, algorithm: str = "hmac-sha256") -> str:
    return f'key "{name.rstrip(".")}" {{\n\talgorithm {algorithm};\n\tsecret "{secret}";\n}};\n'


def zone_file_text(zone: str) -> str:
    return (
        f"$ORIGIN {zone}\n$TTL 300\n"
        f"@ IN SOA ns1.{zone} hostmaster.{zone} 1 3600 600 86400 1\n"
        f"@ IN NS ns1.{zone}\n"
        "ns1 IN A 127.0.0.1\n"
    )


@dataclass
class NamedServer:
    """A running ``named``: where it listens, its zones and its TSIG key."""

    workdir: Path
    port: int
    zones: tuple[str, ...]
    key_name: str
    key_secret: str
    algorithm: str = "hmac-sha256"
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def zone(self) -> str:
        return self.zones[0]

    @property
    def key_file(self) -> str:
        return str(self.workdir / "dnsplane-test.key")

    @property
    def log_path(self) -> Path:
        return self.workdir / "named.log"

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        return dns.tsigkeyring.from_text({self.key_name: (self.algorithm, self.key_secret)})

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def soa_serial(self, zone: str | None = None, timeout: float = 2.0) -> int:
        """The zone's SOA serial, asked with the test key: only this named can sign the answer, so another
        server that took the port (a collision with a concurrent test) is not taken for it."""
        q = dns.message.make_query(zone or self.zone, "SOA")
        q.use_tsig(self.keyring(), keyname=self.key_name)
        r = dns.query.tcp(q, self.host, port=self.port, timeout=timeout)
        if r.rcode() != dns.rcode.NOERROR or not r.answer or not r.had_tsig:
            raise RuntimeError(f"SOA of {zone or self.zone}: {dns.rcode.to_text(r.rcode())}, signed: {r.had_tsig}")
        return int(r.answer[0][0].serial)

    def update(self, zone: str | None = None) -> dns.update.UpdateMessage:
        """A TSIG-signed UPDATE for ``zone`` (send it with ``send``): for raw, unconditional edits."""
        return dns.update.UpdateMessage(zone or self.zone, keyring=self.keyring(), keyname=self.key_name)

    def send(self, update: dns.message.Message, timeout: float = 10.0) -> dns.message.Message:
        response = dns.query.tcp(update, self.host, port=self.port, timeout=timeout)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update refused: {dns.rcode.to_text(response.rcode())}\n{self.log_tail()}")
        return response

    def reset(self, zone: str | None = None) -> None:
        """Delete every name of ``zone`` except the apex and ns1 (one unconditional UPDATE per 1,000 names)."""
        zone = zone or self.zone
        origin = dns.name.from_text(zone)
        xfr = dns.zone.from_xfr(
            dns.query.xfr(self.host, zone, port=self.port, keyring=self.keyring(), keyname=self.key_name, lifetime=30)
        )
        keep = {origin, dns.name.from_text("ns1", origin)}
        names = [n.derelativize(origin) for n in xfr.nodes]
        names = [n for n in names if n not in keep]
        for i in range(0, len(names), 1000):
            u = self.update(zone)
            for n in names[i : i + 1000]:
                u.delete(n)
            self.send(u)

    def restart(self, *, down: float = 0.0) -> None:
        """Stop ``named`` (SIGTERM) and start it again on the same port with the same config and files.

        Dynamic updates survive: BIND keeps them in the zone's journal (``<zone>.zone.jnl`` in
        ``workdir``) and replays it at start. ``down`` keeps the server stopped that many seconds
        (a test's outage, not synchronisation). Returns once every zone answers its SOA again."""
        self.stop()
        if down > 0:
            time.sleep(down)
        binary = require_named()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = subprocess.Popen([binary, "-g", "-n", "2", "-c", str(self.workdir / "named.conf")],
                                            cwd=self.workdir, stdout=log, stderr=log)
        finally:
            log.close()
        try:
            _wait_until_serving(self, time.monotonic() + START_DEADLINE)
        except RuntimeError:
            self.stop()
            raise

    def stop(self, deadline: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            terminate(proc, deadline)


def _config(workdir: Path, port: int, zones: tuple[str, ...], key_name: str, secret: str, policy: str,
            options: str = "") -> str:
    if policy == "allow-update":
        update = f'allow-update {{ key "{key_name}"; }};'
    elif policy == "none":  # no update grant at all: BIND refuses every UPDATE (queries and AXFR still work)
        update = ""
    elif policy == "txt-only":  # a narrow grant: the markers may change, the records may not
        update = f'update-policy {{\n\t\tgrant "{key_name}" subdomain {{zone}} TXT;\n\t}};'
    elif policy == "no-token":  # records and markers, not the zone's write token (the first rule that matches)
        update = (f'update-policy {{\n\t\tdeny "{key_name}" name _dnsplane-token.{{zone}} TXT;\n'
                  f'\t\tgrant "{key_name}" subdomain {{zone}} A AAAA TXT;\n\t}};')
    else:  # the update-policy variant shown in docs/providers/rfc2136.md
        update = (
            "update-policy {\n"
            f'\t\tgrant "{key_name}" subdomain {{zone}} A AAAA TXT;\n'
            "\t};"
        )
    zone_blocks = "".join(
        f'zone "{z.rstrip(".")}" {{\n\ttype primary;\n\tfile "{workdir}/{z.rstrip(".")}.zone";\n'
        f"\t{update.replace('{zone}', z)}\n"
        f'\tallow-transfer {{ key "{key_name}"; }};\n}};\n'
        for z in zones
    )
    return f"""options {{
	directory "{workdir}";
	pid-file "{workdir}/named.pid";
	session-keyfile "{workdir}/session.key";
	managed-keys-directory "{workdir}";
	listen-on port {port} {{ 127.0.0.1; }};
	listen-on-v6 {{ none; }};
	recursion no;
	allow-query {{ any; }};
	notify no;
	dnssec-validation no;
{options}}};
controls {{ }};
{key_file_text(key_name, secret)}
{zone_blocks}"""


def _wait_until_serving(server: NamedServer, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"named exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            for z in server.zones:
                server.soa_serial(z, timeout=0.5)
            return
        except Exception as exc:  # not up yet: connection refused, timeout, SERVFAIL while loading
            last = exc
            time.sleep(0.05)  # polling interval, not synchronisation: the deadline bounds the loop
    raise RuntimeError(f"named did not answer the SOA within {START_DEADLINE}s ({last}):\n{server.log_tail()}")


def start_named(
    workdir: Path, zones: tuple[str, ...] = ("demo.test.",), *, policy: str = "allow-update",
    zone_texts: dict[str, str] | None = None, options: str = "",
) -> NamedServer:
    """Start ``named`` serving ``zones`` from ``workdir``; returns once every zone answers its SOA.

    ``zone_texts`` gives a zone's file text (default: SOA, NS and ``ns1``'s A); ``options`` are
    extra lines for the ``options`` block (each ending in ``;``)."""
    binary = require_named()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    key_name = KEY_NAME.rstrip(".")
    for z in zones:
        (workdir / f"{z.rstrip('.')}.zone").write_text((zone_texts or {}).get(z) or zone_file_text(z))
    (workdir / "dnsplane-test.key").write_text(key_file_text(key_name, secret))
    error: Exception | None = None
    for _ in range(3):  # a port picked free may be taken before named binds it: try another
        port = free_port()
        conf = workdir / "named.conf"
        conf.write_text(_config(workdir, port, zones, key_name, secret, policy, options))
        log = open(workdir / "named.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen([binary, "-g", "-n", "2", "-c", str(conf)], cwd=workdir, stdout=log, stderr=log)
        finally:
            log.close()
        server = NamedServer(workdir, port, zones, KEY_NAME, secret, process=proc)
        try:
            _wait_until_serving(server, time.monotonic() + START_DEADLINE)
            return server
        except RuntimeError as exc:
            error = exc
            server.stop()
    raise RuntimeError(f"could not start named: {error}")


@contextlib.contextmanager
def running_named(
    workdir: Path, zones: tuple[str, ...] = ("demo.test.",), *, policy: str = "allow-update"
) -> Iterator[NamedServer]:
    """``start_named`` as a context manager; the server is stopped on exit, whatever happens."""
    server = start_named(workdir, zones, policy=policy)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedServer]:
    """One ``named`` per test module serving ``demo.test.`` (call ``reset()`` for a fresh zone per test)."""
    server = start_named(tmp_path_factory.mktemp("named"))
    try:
        yield server
    finally:
        server.stop()
