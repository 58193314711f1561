"""Benchmark: ``Rfc2136Provider.read`` of 1 and of 50 endpoints on one BIND9, with and without the quick ACK.

BIND 9.18 leaves Nagle's algorithm on for its TCP connections; a read is an SOA query, the keys' queries
pipelined, and an SOA query on one connection, and Linux delays the ACK of the first pipelined response by
40 ms once the connection has gone query/response/query, while BIND holds the other responses for that ACK.
``transport.Channel.exchange`` turns the delayed ACK off after each send (``TCP_QUICKACK``); "without" runs
the same code with that step skipped (``transport.QUICKACK = None``), which is the code before it.

The two variants alternate within each round on one ``named`` (started here on a loopback port), over
endpoints that exist (written first) and endpoints that do not (a first write's read). The first round is a
warm-up. Usage: ``python bench/rfc2136_read_latency.py [--rounds 7]``; prints median and min-max in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dnsplane.model import EndpointKey, Write
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.rfc2136 import Rfc2136Provider, transport
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.named import running_named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    quickack = transport.QUICKACK
    if quickack is None:
        sys.exit("TCP_QUICKACK is Linux's: nothing to compare here")
    records = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2"))
    present = [key(f"e{i}.bench.demo.test") for i in range(50)]
    absent = [key(f"new{i}.bench.demo.test") for i in range(50)]
    workloads: list[tuple[str, list[EndpointKey]]] = [
        ("read 1 existing", present[:1]), ("read 50 existing", present),
        ("read 1 absent", absent[:1]), ("read 50 absent", absent)]
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as workdir, running_named(Path(workdir)) as named:
        provider = Rfc2136Provider(ZONE, Rfc2136Config(named.host, named.port, key_file=named.key_file))
        provider.apply([Write(k, None, records, marker(1, records)) for k in present])
        for round_ in range(args.rounds + 1):
            for variant, option in (("without", None), ("with", quickack)):
                transport.QUICKACK = option
                for name, keys in workloads:
                    start = time.perf_counter()
                    provider.read(keys)
                    if round_:
                        times.setdefault((name, variant), []).append((time.perf_counter() - start) * 1000)
        transport.QUICKACK = quickack
        provider.close()
    print(f"{args.rounds} rounds, median (min-max) ms")
    print("| workload | without quick ACK | with quick ACK |\n|---|---|---|")
    for name, _ in workloads:
        cells = [times[(name, v)] for v in ("without", "with")]
        print(f"| {name} | " + " | ".join(
            f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})" for xs in cells) + " |")


if __name__ == "__main__":
    main()
