"""Plan and enact a synthetic fleet into the embedded provider, from empty and then a 1 % change.

    python bench/enact_scale.py                 # N = 10,000 and 100,000, each in its own process
    python bench/enact_scale.py --n 100000 --one

N endpoints, 3 targets each (3N targets, so a change can touch exactly 1 % of
endpoints). The real SQLite store and the embedded provider (SQLite) in a
temporary directory; one planner and one enactor driven through the same
Interpreter as the runtime. Reports seconds per phase and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dnsplane.execute import Interpreter, drain
from dnsplane.model import Endpoint, Policy, Target
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import HealthObserved, Tick
from dnsplane.protocol.planner import Planner
from dnsplane.providers.embedded import EmbeddedProvider
from dnsplane.store.sqlite import SqliteStore

ZONE = "bench.test."
NETS = ("192.0.2", "198.51.100", "203.0.113")  # TEST-NET: record data only


def fleet(n: int) -> tuple[Endpoint, ...]:
    policy = Policy(rise=1, fall=1, max_weight_shift=1.0)
    eps = []
    for i in range(n):
        ts = tuple(
            Target(f"t{i}-{j}", (f"{net}.{i % 250 + 1}",), 100, None) for j, net in enumerate(NETS)
        )
        eps.append(Endpoint(f"e{i}.{ZONE}", "A", 60, ts, policy))
    return tuple(eps)


def one(n: int) -> dict[str, float]:
    out: dict[str, float] = {"n": n}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        endpoints = fleet(n)
        out["build_fleet_s"] = time.perf_counter() - t
        store = SqliteStore(Path(tmp) / "store.sqlite")
        provider = EmbeddedProvider(Path(tmp) / "dns.sqlite", ZONE)
        ex = Interpreter(store, provider)
        planner = Planner("planner", ZONE, endpoints)
        enactor = Enactor("enactor", ZONE, batch_size=10_000)

        t = time.perf_counter()
        drain(planner, Tick(0.0), ex, 0.0)
        out["plan_full_s"] = time.perf_counter() - t
        t = time.perf_counter()
        drain(enactor, Tick(0.0), ex, 0.0)
        out["enact_full_s"] = time.perf_counter() - t
        out["full_total_s"] = out["plan_full_s"] + out["enact_full_s"]
        assert provider.writes == n, provider.writes

        k = max(1, n // 100)
        t = time.perf_counter()
        for i in range(k):
            planner.handle(HealthObserved(1.0, f"t{i}-0", False))
        drain(planner, Tick(1.0), ex, 1.0)
        out["plan_1pct_s"] = time.perf_counter() - t
        t = time.perf_counter()
        drain(enactor, Tick(1.0), ex, 1.0)
        out["enact_1pct_s"] = time.perf_counter() - t
        out["change_total_s"] = out["plan_1pct_s"] + out["enact_1pct_s"]
        assert provider.writes == n + k, provider.writes
        assert store.head() == 2
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        store.close()
        provider.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="fleet size (repeatable; default 10000 and 100000)")
    ap.add_argument("--one", action="store_true", help="run in this process and print JSON (used internally)")
    args = ap.parse_args()
    sizes = args.n or [10_000, 100_000]
    if args.one:
        print(json.dumps(one(sizes[0])))
        return
    rows = []
    for n in sizes:
        res = subprocess.run([sys.executable, __file__, "--one", "--n", str(n)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(res.stdout))
    cols = ["n", "plan_full_s", "enact_full_s", "full_total_s", "plan_1pct_s", "enact_1pct_s", "change_total_s",
            "peak_rss_mb"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:,.0f}" if c == "n" else f"{r[c]:.3f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
