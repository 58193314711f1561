"""Benchmark: Route 53 API calls and wall time per enactor round, at Route 53's 5 requests/s, on ministack.

N endpoints (two weighted targets each) are written from empty as enactors write them (rounds of 50: the
enactor's read, then the token read before the store and one ``apply`` of writes carrying it), after one
``read_all`` as ``dnsplane up``'s preflight makes; then a share of them is changed the same way (a health
event's 1 %). Each phase prints its wall time and its API calls by kind (counted as they leave botocore),
and the most ``ListResourceRecordSets`` any round of it made.

``--src DIR`` imports dnsplane from another checkout (e.g. the main branch, for the figures before a
change; an old provider without ``read_for_write`` is read with ``read``).
Usage: ``python bench/route53_rounds.py [--endpoints 2000] [--change-share 0.01] [--src DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=2_000)
    parser.add_argument("--change-share", type=float, default=0.01)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    sys.path.insert(0, str(args.src.resolve()))
    import boto3

    from dnsplane.model import Write
    from dnsplane.providerconfig import Route53Config
    from dnsplane.providers.route53 import Route53Provider, ThrottleBudget
    from tests.fakes import ZONE, key, marker, member, rs
    from tests.servers.ministack import ministack

    one = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2", weight=3))
    two = rs(member("lb1", "192.0.2.1"), member("lb3", "192.0.2.3"))
    with contextlib.contextmanager(ministack.__wrapped__)() as stack:
        sent: Counter[str] = Counter()
        client = boto3.client("route53", endpoint_url=stack.url, region_name="us-east-1")
        client.meta.events.register("before-call.route53.*", lambda model, **_: sent.update([model.name]))
        config = Route53Config(stack.create_zone(ZONE), endpoint_url=stack.url)
        p = Route53Provider(ZONE, config, client=client, budget=ThrottleBudget(5.0))
        read = getattr(p, "read_for_write", p.read)
        keys = [key(f"svc-{i:05d}.demo.test") for i in range(args.endpoints)]
        p.read_all()

        def phase(name: str, chosen: list[Any], records: Any, g: int) -> None:
            start, before, most = time.monotonic(), Counter(sent), 0
            for i in range(0, len(chosen), 50):
                batch = chosen[i:i + 50]
                mark = sent["ListResourceRecordSets"]
                seen = read(batch)
                most = max(most, sent["ListResourceRecordSets"] - mark)
                mark = sent["ListResourceRecordSets"]
                token = p.write_token()
                p.apply([Write(k, seen[k].marker, records, marker(g, records), seen[k].records, token) for k in batch])
                most = max(most, sent["ListResourceRecordSets"] - mark)
            spent = sent - before
            print(f"| {name} | {len(chosen)} | {time.monotonic() - start:.1f} | "
                  f"{spent['ListResourceRecordSets']} | {spent['ChangeResourceRecordSets']} | "
                  f"{sum(spent.values())} | {most} |", flush=True)

        import dnsplane

        print(f"dnsplane from {Path(dnsplane.__file__).parent}\n\n| phase | endpoints | wall s | "
              "ListResourceRecordSets | ChangeResourceRecordSets | calls | most LRRS in a round |\n"
              "|---|---|---|---|---|---|---|")
        phase("first write", keys, one, 1)
        changed = random.Random(14).sample(keys, max(1, round(len(keys) * args.change_share)))
        phase(f"{args.change_share:.0%} change", changed, two, 2)


if __name__ == "__main__":
    main()
