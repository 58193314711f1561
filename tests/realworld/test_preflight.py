"""Cause 7 of issue 8: permanent misconfiguration fails fast at start (exit 2, one clear message, no
traceback, no "managing" banner), damaged or unknown-version data files are refused by ``up``,
``status`` and ``history``, one ``up`` per data directory, ``status`` reads the configured provider,
and the zone preflight reports what at an endpoint's name would defeat dnsplane.

Each runs real ``dnsplane`` processes; the RFC 2136 ones a real ``named``."""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.realworld.harness import World, addresses, wait_for
from tests.servers.named import NamedServer, key_file_text, require_named, running_named

LB1, LB2 = "192.0.2.11", "192.0.2.12"
FAST = 15.0  # seconds: a misconfiguration is refused in about one round trip; generous for a loaded CI box


def up_once(world: World, fleet: Path, data: Path, timeout: float = 60,
            ) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``dnsplane up`` to its end (it must exit by itself); the result and how long it took."""
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "dnsplane.cli", "up", "--fleet", str(fleet), "--data-dir", str(data),
                          "--dns", "127.0.0.1:0"], capture_output=True, text=True, timeout=timeout, cwd=world.workdir)
    return res, time.monotonic() - started


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnsplane.cli", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60)


def assert_refused(res: subprocess.CompletedProcess[str], elapsed: float, *needles: str) -> None:
    out = f"exit {res.returncode} after {elapsed:.1f}s\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert res.returncode == 2, out
    assert "Traceback" not in res.stderr + res.stdout, out
    assert "managing" not in res.stdout and "serving" not in res.stdout, out
    for needle in needles:
        assert needle in res.stderr, out
    assert elapsed < FAST, out


def one_endpoint_fleet(world: World, **kw: object) -> Path:
    return world.fleet([world.target("lb-1", LB1), world.target("lb-2", LB2)], {"api": ["lb-1", "lb-2"]}, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- RFC 2136 misconfiguration


def test_wrong_tsig_secret_exits_2_with_the_reason(world: World, named: NamedServer) -> None:
    wrong = world.workdir / "wrong.key"
    wrong.write_text(key_file_text(named.key_name.rstrip("."), base64.b64encode(b"not the secret" * 3).decode()))
    fleet = one_endpoint_fleet(world, provider={"kind": "rfc2136", "server": named.host, "port": named.port,
                                                "key_file": str(wrong), "timeout": 2})
    res, elapsed = up_once(world, fleet, world.workdir / "data")
    assert_refused(res, elapsed, "BADSIG", "dnsplane-test")


def test_unknown_tsig_key_name_exits_2(world: World, named: NamedServer) -> None:
    other = world.workdir / "other.key"
    other.write_text(key_file_text("nobody", named.key_secret))
    fleet = one_endpoint_fleet(world, provider={"kind": "rfc2136", "server": named.host, "port": named.port,
                                                "key_file": str(other), "timeout": 2})
    res, elapsed = up_once(world, fleet, world.workdir / "data")
    assert_refused(res, elapsed, "BADKEY")


def test_zone_not_on_the_server_exits_2(world: World) -> None:
    world.zone = "other.test."  # named serves demo.test. only
    fleet = one_endpoint_fleet(world)
    res, elapsed = up_once(world, fleet, world.workdir / "data")
    assert_refused(res, elapsed, "REFUSED", "does not serve the zone other.test.")


@pytest.mark.parametrize("policy", ["none", "txt-only"])
def test_updates_refused_exits_2(tmp_path: Path, policy: str) -> None:
    """No grant at all, or a narrow one (TXT only: it used to pass the start and quarantine every endpoint
    for good; the probe also deletes an A record that cannot exist): refused at start, nothing changed."""
    require_named()
    with running_named(tmp_path / "named", policy=policy) as named:
        world = World(tmp_path, named)
        try:
            fleet = one_endpoint_fleet(world)
            before = named.soa_serial()
            res, elapsed = up_once(world, fleet, tmp_path / "data")
            assert_refused(res, elapsed, "REFUSED", "refuses dynamic updates")
            assert named.soa_serial() == before  # the probe changed nothing
        finally:
            world.close()


def test_the_update_probe_changes_nothing_on_a_working_server(world: World, named: NamedServer) -> None:
    """The no-op UPDATE of a good start leaves the zone as it was (the serial says so) until dnsplane writes."""
    from dnsplane.config import load_fleet
    from dnsplane.runtime.preflight import check_update, server_of

    fleet = one_endpoint_fleet(world)
    before = named.soa_serial()
    check_update(server_of(load_fleet(fleet)), "_dnsplane-a.api.demo.test.")
    assert named.soa_serial() == before


def test_unreachable_server_is_waited_for_with_a_message(world: World, named: NamedServer) -> None:
    """Decision: an unreachable server is not permanent; `up` says so once and keeps trying (documented)."""
    from tests.servers.named import free_port

    fleet = one_endpoint_fleet(world, provider={"kind": "rfc2136", "server": named.host, "port": free_port(),
                                                "key_file": named.key_file, "timeout": 1})
    up = world.dnsplane(fleet, start=False)
    up.start(wait=False)
    wait_for("the waiting message", lambda: "waiting:" in up.log() and "cannot reach the server" in up.log(),
             detail=up.log_tail)
    assert up.running and "managing" not in up.log()
    assert up.stop() == 0, up.log_tail()


# ----------------------------------------------------------------------------- damaged data files


def test_damaged_store_is_refused_by_up_status_and_history(embedded_world: World) -> None:
    world = embedded_world
    fleet = one_endpoint_fleet(world, provider="embedded")
    data = world.workdir / "data"
    data.mkdir()
    (data / "store.sqlite").write_bytes(os.urandom(8192))
    res, elapsed = up_once(world, fleet, data)
    assert_refused(res, elapsed, "store.sqlite", "damaged")
    for args in (("status",), ("history", "api.demo.test")):
        res = cli(data, *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "damaged" in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)


def test_damaged_store_at_start_still_serves_the_last_good_records(embedded_world: World) -> None:
    """dnsplane is the authoritative server with the embedded provider: a damaged ``store.sqlite`` stops the
    automation, not DNS. ``up`` says so, serves ``dns.sqlite`` read-only, and exits 2 when stopped."""
    world = embedded_world
    fleet = one_endpoint_fleet(world, provider="embedded")
    up = world.dnsplane(fleet)
    wait_for("api served", lambda: addresses(up.dns, "api.demo.test.", "A"), detail=up.log_tail)
    served = addresses(up.dns, "api.demo.test.", "A")
    host, port = up.dns
    assert up.stop() == 0
    (up.data_dir / "store.sqlite").write_bytes(os.urandom(8192))
    proc = subprocess.Popen([sys.executable, "-m", "dnsplane.cli", "up", "--fleet", str(fleet), "--data-dir",
                             str(up.data_dir), "--dns", f"{host}:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=world.workdir)
    try:
        wait_for("the last good records served", lambda: addresses((host, port), "api.demo.test.", "A") == served,
                 detail=lambda: f"running: {proc.poll() is None}")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert "damaged" in err and "read-only" in err and "Traceback" not in err, err


def test_malformed_dns_database_is_refused(embedded_world: World) -> None:
    world = embedded_world
    fleet = one_endpoint_fleet(world, provider="embedded")
    up = world.dnsplane(fleet)
    wait_for("api served", lambda: addresses(up.dns, "api.demo.test.", "A"), detail=up.log_tail)
    assert up.stop() == 0
    path = up.data_dir / "dns.sqlite"
    raw = bytearray(path.read_bytes())
    raw[100:] = os.urandom(len(raw) - 100)  # the header stays: SQLite finds the pages malformed
    path.write_bytes(bytes(raw))
    res, elapsed = up_once(world, fleet, up.data_dir)
    assert_refused(res, elapsed, "dns.sqlite")


def test_store_of_a_newer_schema_version_is_refused(embedded_world: World) -> None:
    from dnsplane.store.sqlite import SqliteStore

    world = embedded_world
    fleet = one_endpoint_fleet(world, provider="embedded")
    data = world.workdir / "data"
    data.mkdir()
    SqliteStore(data / "store.sqlite").close()
    db = sqlite3.connect(data / "store.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1  # a current file carries the current version
    db.execute("PRAGMA user_version = 99")
    db.close()
    res, elapsed = up_once(world, fleet, data)
    assert_refused(res, elapsed, "schema version 99")
    res = cli(data, "status")
    assert res.returncode == 2 and "schema version 99" in res.stderr, res.stderr


def test_a_store_damaged_while_running_leaves_dns_served(embedded_world: World) -> None:
    """Only store.sqlite is damaged: the embedded server keeps answering from dns.sqlite, the control plane
    says what is wrong, `status` refuses with exit 2."""
    world = embedded_world
    fleet = one_endpoint_fleet(world, provider="embedded")
    up = world.dnsplane(fleet)
    wait_for("api served", lambda: addresses(up.dns, "api.demo.test.", "A"), detail=up.log_tail)

    def damage() -> bool:
        """Garbage over the files the process has open (the same inodes; it maps -shm). Again at each poll
        until the process reports it: a checkpoint racing the first overwrite can write good pages back."""
        for suffix in ("", "-wal", "-shm"):
            path = up.data_dir / f"store.sqlite{suffix}"
            with contextlib.suppress(FileNotFoundError), open(path, "r+b") as f:
                f.write(os.urandom(max(path.stat().st_size, 4096)))
        return "plan store is damaged" in up.log()

    world.listeners["lb-2"].down()  # the planner has something to publish
    wait_for("the control plane to report the damaged store", damage, detail=up.log_tail)
    for _ in range(20):  # weighted answers: one target per response
        assert addresses(up.dns, "api.demo.test.", "A") in ({LB1}, {LB2}), up.log_tail()
    assert up.running, up.log_tail()
    res = cli(up.data_dir, "status")
    assert res.returncode == 2 and "damaged" in res.stderr and "Traceback" not in res.stderr, res.stderr


# ----------------------------------------------------------------------------- one up per data directory


def test_second_up_on_the_same_data_dir_exits_2_naming_the_holder(embedded_world: World) -> None:
    world = embedded_world
    fleet = one_endpoint_fleet(world, provider="embedded")
    first = world.dnsplane(fleet)
    res, elapsed = up_once(world, fleet, first.data_dir)
    assert_refused(res, elapsed, f"held by pid {first.pid}")
    assert first.running
    assert "marker ahead" not in first.log()
    # status and history read without the lock
    assert cli(first.data_dir, "status").returncode == 0


# ----------------------------------------------------------------------------- status and preflight


def test_status_with_rfc2136_reads_the_servers_markers(world: World, named: NamedServer) -> None:
    fleet = one_endpoint_fleet(world)
    world.dnsplane(fleet)
    world.wait_served((named.host, named.port), fleet)

    def in_sync() -> bool:
        res = cli(world.processes[0].data_dir, "status")
        assert res.returncode == 0, res.stderr
        return "in sync" in res.stdout and "no marker" not in res.stdout
    wait_for("status to show api in sync from named's marker", in_sync, detail=world.logs)
    up = world.processes[0]
    assert up.stop() == 0
    assert not (up.data_dir / "dns.sqlite").exists()
    res = cli(up.data_dir, "status")  # not running: the provider is unknown, not "no marker" everywhere
    assert res.returncode == 2 and "pass --fleet" in res.stderr, (res.stdout, res.stderr)
    res = cli(up.data_dir, "status", "--fleet", str(fleet))
    assert res.returncode == 0 and "in sync" in res.stdout and "no marker" not in res.stdout, res.stdout


def test_preflight_reports_wildcard_cname_and_glue(world: World, named: NamedServer) -> None:
    u = named.update()
    u.add("*.w.demo.test.", 300, "A", "198.51.100.7")
    u.add("alias.demo.test.", 300, "CNAME", "elsewhere.example.")
    named.send(u)
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2)]
    fleet = world.fleet(targets, {"api": ["lb-1"], "x.w": ["lb-1", "lb-2"], "alias": ["lb-2"], "ns1": ["lb-1"]})
    up = world.dnsplane(fleet)
    findings = {(f["kind"], f["endpoint"]) for f in (up.instance() or {}).get("preflight", [])}
    assert findings == {("wildcard", "x.w.demo.test. A"), ("cname", "alias.demo.test. A"),
                        ("foreign", "ns1.demo.test. A")}, up.log_tail()
    up.wait_log(r"zone preflight: 3 problem\(s\)")  # instance.json can be written before the banner is flushed
    banner = up.log()
    assert "zone preflight: 3 problem(s)" in banner and "NS glue" in banner and "*.w.demo.test." in banner, banner
    res = cli(up.data_dir, "status")
    assert "zone preflight at start: 3 problem(s)" in res.stdout, res.stdout
