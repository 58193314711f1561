"""Benchmark: rendering an AXFR of the embedded server's zone (``Transfer.build``), by zone size.

A zone table is filled with ``--names`` endpoints of 3 targets each (weighted, each with its marker),
as the server renders them for queries; then one TSIG-signed AXFR request is answered as the server
does it: ``transfer_messages`` (the copy, in the loop thread) and ``Transfer.build`` (the rendering,
in the server's worker thread). Prints the time of each step, the messages and their size.
Usage: ``python bench/axfr_build.py [--names 10000]``.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message
import dns.name
import dns.tsigkeyring

from dnsplane.dns.responder import Responder
from dnsplane.dns.transfer import Transfer, TransferPolicy, transfer_messages
from dnsplane.model import EndpointKey, Member
from tests.dns.test_server import obs

ZONE = "demo.test."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=10_000)
    args = parser.parse_args()
    table = Responder().add_zone(ZONE, 1)
    t = time.perf_counter()
    for i in range(args.names):
        addresses = [(f"10.{j}.{i // 250 % 250}.{i % 250}",) for j in range(3)]
        table.set(EndpointKey(f"e{i}.{ZONE}", "A"), obs(60, [Member(f"t{j}", addresses[j], 1) for j in range(3)]))
    render = time.perf_counter() - t
    keyring = dns.tsigkeyring.from_text({"k.": ("hmac-sha256", base64.b64encode(b"x" * 32).decode())})
    policy = TransferPolicy((ipaddress.ip_network("127.0.0.0/8"),), keyring, dns.name.from_text("k."))
    q = dns.message.make_query(ZONE, "AXFR")
    q.use_tsig(keyring, "k.")
    wire = q.to_wire()
    t = time.perf_counter()
    transfer = transfer_messages(wire, "127.0.0.1", {table.origin: table}, policy)
    copy = time.perf_counter() - t
    assert isinstance(transfer, Transfer)
    t = time.perf_counter()
    messages = transfer.build()
    build = time.perf_counter() - t
    size = sum(map(len, messages)) / 1e6
    print("| names | render for queries s | copy ms | build s | messages | MB |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.names:,} | {render:.2f} | {copy * 1000:.1f} | {build:.2f} | {len(messages)} | {size:.2f} |")


if __name__ == "__main__":
    main()
