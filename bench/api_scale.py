"""The figures issue 12 asks of the dashboard, the API and /metrics, on a real ``dnsplane up`` (embedded
provider, a fleet of N endpoints declared by one range, two targets without health checks).

For each size (``--sizes``, default 10,000 and 100,000), once every endpoint is written:

- ``/api/v1/endpoints?offset=<random>&limit=100``: ``--requests`` requests one after another, p50 and p99
  of each run's latencies (client side, loopback, keep-alive off: a new connection each, as a dashboard
  poll makes);
- ``/metrics``: ``--scrapes`` scrapes, median time and the body's size;
- the dashboard in headless Chromium (Debian's ``chromium``, through Playwright): time from navigation to
  the first endpoints row rendered, and the page weight (the HTML and the four API reads of its first
  refresh: status, a page of endpoints, the operators' journal, the timeline of the last 500 events).

Each measurement is repeated ``--repeat`` times (median and range reported). Run:
``python bench/api_scale.py`` (about 3 minutes). Figures in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fleet(n: int) -> str:
    return (f"zone: bench.test.\ndefaults: {{ttl: 30}}\ntargets:\n  a: {{addresses: [192.0.2.1]}}\n"
            f"  b: {{addresses: [192.0.2.2]}}\nendpoints:\n  - {{name: 'e{{1..{n}}}', targets: [a, b]}}\n")


def get(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as res:
        body = res.read()
    return time.perf_counter() - t0, body


def wait_written(base: str, n: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            status = json.loads(get(base + "/api/v1/status")[1])
            head = status["head"]
            if head and all(g >= head for g in status["applied"].values()):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{n} endpoints not written within {timeout:g} s")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def spread(xs: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    return (f"{statistics.median(xs) * scale:.1f} {unit} "
            f"[{min(xs) * scale:.1f}–{max(xs) * scale:.1f}]")


def dashboard(base: str, chromium: str) -> tuple[float, int]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            sizes: dict[str, int] = {}  # the first response of each address: the page, then each read
            page.on("response", lambda r: sizes.setdefault(r.url.split("?")[0], len(r.body())) if r.ok else None)
            t0 = time.perf_counter()
            page.goto(base + "/")
            page.wait_for_selector("#endpoints tbody tr")
            took = time.perf_counter() - t0
            page.wait_for_load_state("networkidle")
            first = ("/", "/api/v1/status", "/api/v1/endpoints", "/api/v1/journal", "/api/v1/timeline")
            return took, sum(sizes.get(base + path, 0) for path in first)  # the HTML and the first refresh's reads
        finally:
            browser.close()


def run(n: int, args: argparse.Namespace, work: Path) -> dict[str, str]:
    path = work / f"fleet-{n}.yaml"
    path.write_text(fleet(n))
    data = work / f"data-{n}"
    log = (work / f"up-{n}.log").open("w")
    up = subprocess.Popen([sys.executable, "-m", "dnsplane.cli", "up", "--fleet", str(path), "--data-dir", str(data),
                           "--dns", "127.0.0.1:0", "--api", "127.0.0.1:0", "--log-level", "warning"],
                          stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        base = None
        end = time.monotonic() + args.timeout
        while base is None and time.monotonic() < end:
            try:
                base = json.loads((data / "instance.json").read_text()).get("api")
            except (OSError, ValueError):
                time.sleep(0.2)
        if base is None:
            raise SystemExit(f"no API for {n} endpoints; see {work}/up-{n}.log")
        wait_written(base, n, args.timeout)
        rng = random.Random(n)
        p50s, p99s, scrapes, renders = [], [], [], []
        size = weight = 0
        for _ in range(args.repeat):
            times = [get(f"{base}/api/v1/endpoints?offset={rng.randrange(n)}&limit=100")[0]
                     for _ in range(args.requests)]
            p50s.append(pct(times, 50))
            p99s.append(pct(times, 99))
            runs = []
            for _ in range(args.scrapes):
                took, body = get(base + "/metrics")
                runs.append(took)
                size = len(body)
            scrapes.append(statistics.median(runs))
            if args.chromium:
                took, weight = dashboard(base, args.chromium)
                renders.append(took)
        out = {"endpoints": f"{n:,}", "endpoints p50": spread(p50s), "endpoints p99": spread(p99s),
               "/metrics": spread(scrapes) + f", {size:,} bytes"}
        if renders:
            out["dashboard first rows"] = spread(renders)
            out["page weight"] = f"{weight / 1024:.1f} KiB"
        return out
    finally:
        up.terminate()
        up.wait(30)
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated fleet sizes (default 10000,100000)")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of each measurement (default 5)")
    ap.add_argument("--requests", type=int, default=200, help="endpoint-list requests per repetition (default 200)")
    ap.add_argument("--scrapes", type=int, default=10, help="/metrics scrapes per repetition (default 10)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for the fleet to be written")
    ap.add_argument("--chromium", default=shutil.which("chromium"), help="chromium binary (default: from PATH)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="api-scale-") as tmp:
        rows = [run(int(n), args, Path(tmp)) for n in args.sizes.split(",")]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(r.get(k, "-") for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
