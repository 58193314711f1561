"""The zone preflight's report (pure: a zone's records in, findings out) and the data-dir lock.

The checks against a real ``named`` (wrong key, zone not served, updates refused) and the report at
start are in tests/realworld/test_preflight.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dnsplane.errors import DataDirBusy
from dnsplane.model import EndpointKey
from dnsplane.runtime.datadir import DataDirLock
from dnsplane.runtime.preflight import analyse, zone_of

APEX = "demo.test."
BASE = [(APEX, "SOA", "ns1.demo.test. hostmaster.demo.test. 1 3600 600 86400 1"), (APEX, "NS", "ns1.demo.test."),
        ("ns1.demo.test.", "A", "127.0.0.1")]


def kinds(rrs: list[tuple[str, str, str]], *names: str) -> set[tuple[str, str, str]]:
    keys = [EndpointKey(n, "A") for n in names]
    return {(f.kind, f.endpoint.split()[0], f.name) for f in analyse(APEX, keys, zone_of(BASE + rrs))}


def test_a_clean_zone_reports_nothing() -> None:
    marker = ("_dnsplane-a.api.demo.test.", "TXT", '"dnsplane g=3 d=abc p="')
    assert kinds([("api.demo.test.", "A", "192.0.2.1"), marker], "api.demo.test.", "new.demo.test.") == set()


def test_wildcard_at_any_ancestor_covers_the_name() -> None:
    rrs = [("*.demo.test.", "TXT", '"x"'), ("*.b.demo.test.", "A", "198.51.100.1")]
    assert kinds(rrs, "a.b.demo.test.") == {("wildcard", "a.b.demo.test.", "*.demo.test."),
                                            ("wildcard", "a.b.demo.test.", "*.b.demo.test.")}
    assert kinds([("*.other.demo.test.", "A", "198.51.100.1")], "a.b.demo.test.") == set()


def test_cname_at_the_name_or_its_marker_name() -> None:
    assert kinds([("api.demo.test.", "CNAME", "x.example.")], "api.demo.test.") == {
        ("cname", "api.demo.test.", "api.demo.test.")}
    assert kinds([("_dnsplane-a.api.demo.test.", "CNAME", "x.example.")], "api.demo.test.") == {
        ("cname", "api.demo.test.", "_dnsplane-a.api.demo.test.")}


def test_dname_at_or_above_and_delegation_below_the_apex() -> None:
    rrs = [("b.demo.test.", "DNAME", "elsewhere.example."), ("c.demo.test.", "NS", "ns.child.example.")]
    assert kinds(rrs, "a.b.demo.test.", "c.demo.test.", "x.c.demo.test.") == {
        ("dname", "a.b.demo.test.", "b.demo.test."),
        ("delegation", "c.demo.test.", "c.demo.test."), ("delegation", "x.c.demo.test.", "c.demo.test.")}
    assert kinds([], "demo.test.") == set()  # the apex's own NS is no delegation


def test_foreign_records_and_glue() -> None:
    found = analyse(APEX, [EndpointKey("ns1.demo.test.", "A"), EndpointKey("old.demo.test.", "A")],
                    zone_of([*BASE, ("old.demo.test.", "A", "192.0.2.9")]))
    by_name = {f.name: f for f in found}
    assert set(by_name) == {"ns1.demo.test.", "old.demo.test."} and {f.kind for f in found} == {"foreign"}
    assert "NS glue" in by_name["ns1.demo.test."].detail and "remove the endpoint" in by_name["ns1.demo.test."].todo
    assert "adopt: true" in by_name["old.demo.test."].todo
    assert by_name["old.demo.test."].to_json()["endpoint"] == "old.demo.test. A"


def test_data_dir_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    held = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                             "from dnsplane.runtime.datadir import DataDirLock; l = DataDirLock(Path(sys.argv[1])); "
                             "l.acquire(); print('held', flush=True); sys.stdin.read()", str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "held"
        with pytest.raises(DataDirBusy) as err:
            DataDirLock(tmp_path).acquire()
        assert f"held by pid {held.pid}" in str(err.value)
        (tmp_path / "lock").unlink()  # a person removes the lock file: the directory stays locked
        with pytest.raises(DataDirBusy):
            DataDirLock(tmp_path).acquire()
    finally:
        assert held.stdin is not None
        held.stdin.close()
        held.wait(timeout=10)
    with DataDirLock(tmp_path):  # the holder exited: the kernel dropped its lock
        assert (tmp_path / "lock").read_text().strip() == str(os.getpid())
