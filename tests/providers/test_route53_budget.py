"""One request budget per AWS account, shared by every process using the store (issue 14, part 7).

``SharedBudget`` keeps the bucket in the SQLite store (``store/budget.py``): processes that share the file
and the account draw on one bucket. Counted at a loopback proxy in front of ministack, with timestamps:
two processes on one account stay within one budget together; the same two on two accounts (two buckets)
go past it, which shows the count would see a broken budget.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dnsplane.providers.route53.throttle import SharedBudget
from dnsplane.store.sqlite import SqliteStore
from tests.fakes import ZONE
from tests.servers.forwarding_proxy import forwarding_proxy
from tests.servers.ministack import FAKE_AWS_ENV, Ministack, _free_port, ministack, ministack_direct  # noqa: F401 - fixtures

RATE, BURST, READS = 10.0, 1.0, 15  # each read of one endpoint is two ListResourceRecordSets

CLIENT = textwrap.dedent("""
    import sys
    from dnsplane.model import EndpointKey
    from dnsplane.providerconfig import Route53Config
    from dnsplane.providers.route53 import Route53Provider
    from dnsplane.providers.route53.throttle import SharedBudget
    from dnsplane.store.sqlite import SqliteStore

    store_file, account, zone_id, url, rate, burst, reads = sys.argv[1:]
    store = SqliteStore(store_file)
    budget = SharedBudget(store, account, float(rate), float(burst))
    provider = Route53Provider("demo.test.", Route53Config(zone_id, endpoint_url=url), budget=budget)
    print("ready", flush=True)
    sys.stdin.readline()  # both start together
    for _ in range(int(reads)):
        provider.read([EndpointKey("api.demo.test.", "A")])
""")


WINDOW = 2.0  # seconds
# one bucket lets at most the burst plus a window's refill through; the requests reach the proxy a little
# after their tokens were taken, scheduling delays differing by up to SLACK / RATE seconds (0.3 s)
SLACK = 3
LIMIT = BURST + RATE * WINDOW + SLACK


def most_in_a_window(times: list[float]) -> int:
    """The most requests seen in any window of ``WINDOW`` seconds."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + WINDOW) for i, t in enumerate(times))


def run_two(tmp_path: Path, ministack: Ministack, accounts: tuple[str, str]) -> list[float]:  # noqa: F811
    zone_id = ministack.create_zone(ZONE)
    store_file = str(tmp_path / "store.sqlite")
    SqliteStore(store_file).close()
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    with forwarding_proxy(ministack.url) as proxy:
        procs = [subprocess.Popen([sys.executable, str(script), store_file, account, zone_id, proxy.url, str(RATE),
                                   str(BURST), str(READS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  env={**os.environ, **FAKE_AWS_ENV, "PYTHONPATH": os.getcwd()}, text=True)
                 for account in accounts]
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            for p in procs:
                assert p.wait(timeout=60) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    times = [t for t, method, path in proxy.seen if "/rrset" in path]
    assert len(times) == 2 * 2 * READS
    return times


def test_two_processes_on_one_account_stay_within_one_budget(tmp_path: Path, ministack: Ministack) -> None:  # noqa: F811
    times = run_two(tmp_path, ministack, ("acct-1", "acct-1"))
    assert most_in_a_window(times) <= LIMIT
    store = SqliteStore(tmp_path / "store.sqlite")
    (row,) = store.request_budgets()
    assert row["account"] == "acct-1" and row["used"] == 2 * 2 * READS and int(row["waits"]) > 0  # type: ignore[call-overload]
    store.close()


def test_two_accounts_have_two_budgets(tmp_path: Path, ministack: Ministack) -> None:  # noqa: F811
    """The control: each process alone on its bucket, together twice the rate, which the count sees."""
    times = run_two(tmp_path, ministack, ("acct-1", "acct-2"))
    assert most_in_a_window(times) > LIMIT + 5  # two buckets: about twice the rate


def test_budgets_on_one_file_share_one_bucket_per_account(tmp_path: Path) -> None:
    now = [1000.0]
    slept: list[float] = []
    one, two = SqliteStore(tmp_path / "s.sqlite"), SqliteStore(tmp_path / "s.sqlite")
    a, b = (SharedBudget(s, "acct", rate=5, burst=2, clock=lambda: now[0], sleep=slept.append) for s in (one, two))
    other = SharedBudget(two, "other", rate=5, burst=2, clock=lambda: now[0], sleep=slept.append)
    assert a.acquire() == 0.0 and b.acquire() == 0.0  # the burst of 2, taken by two stores
    assert other.acquire() == 0.0  # another account: its own bucket
    assert one.take_request("acct", 5, 2, now[0], 0.0) == 0.2  # none left: one request in 1/5 s
    now[0] += 0.2
    assert a.acquire() == 0.0
    behind = SharedBudget(one, "acct", rate=5, burst=2, clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert behind.acquire(reserve=1) == pytest.approx(0.4)  # waits until 2 are back: 1 left to others
    rows = {r["account"]: r for r in two.request_budgets()}
    assert rows["acct"]["used"] == 4 and rows["other"]["used"] == 1
    one.close()
    two.close()


def test_up_draws_on_the_accounts_budget_and_status_shows_it(tmp_path: Path, ministack: Ministack) -> None:  # noqa: F811
    zone_id = ministack.create_zone(ZONE)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"zone: {ZONE}\ntargets:\n  lb-1: {{addresses: [192.0.2.11], capacity: 100}}\n"
                     "endpoints:\n  - {name: api, ttl: 30, targets: [lb-1]}\n"
                     f"provider:\n  kind: route53\n  hosted_zone_id: {zone_id}\n  endpoint_url: {ministack.url}\n")
    data = tmp_path / "data"
    dnsplane = str(Path(sys.executable).with_name("dnsplane"))
    env = {**os.environ, **FAKE_AWS_ENV}
    up = subprocess.Popen([dnsplane, "up", "--fleet", str(fleet), "--data-dir", str(data), "--dns", "127.0.0.1:0"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the endpoint is written: the budget has been drawn on
            listed = ministack.client().list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
            if any(s["Type"] == "A" for s in listed) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        status = subprocess.run([dnsplane, "status", "--data-dir", str(data)], capture_output=True, text=True,
                                env=env, timeout=60)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
    assert "request budget of access key test: 5 requests/s" in status.stdout, status
    used = int(status.stdout.split("request budget of access key test")[1].split("used ")[1].split(",")[0])
    assert used > 0

    # Route 53 out of reach (nothing listens at the endpoint): status still shows the store's side, says
    # why the markers are unknown, and exits 1 (it failed outright before)
    down = tmp_path / "down.yaml"
    down.write_text(fleet.read_text().replace(ministack.url, f"http://127.0.0.1:{_free_port()}"))
    status = subprocess.run([dnsplane, "status", "--data-dir", str(data), "--fleet", str(down)],
                            capture_output=True, text=True, env={**env, "COLUMNS": "200"}, timeout=120)
    assert status.returncode == 1, status
    assert "api.demo.test. A" in status.stdout and "unknown (provider not read)" in status.stdout, status
    assert "the provider could not be read" in status.stdout and "Traceback" not in status.stdout + status.stderr
    assert "request budget of access key test" in status.stdout  # the rest of status is there
