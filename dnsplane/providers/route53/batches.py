"""Packing endpoints' changes into Route 53 change batches within its quotas.

Promises: ``pack_batches`` keeps the order, never splits an endpoint's changes across batches,
and keeps each batch within ``MAX_RECORDS`` ResourceRecord elements and ``MAX_CHARS``
characters of values (DELETEs and CREATEs both counted, as Route 53 counts them); an endpoint
that alone exceeds a quota is ``Permanent``.

Limits: greedy, in order (not the fewest batches); pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dnsplane.errors import Permanent

MAX_RECORDS = 1_000  # ResourceRecord elements per change batch (Route 53 quota)
MAX_CHARS = 32_000  # characters of all Value elements per change batch (Route 53 quota)


def batch_cost(changes: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(ResourceRecord elements, characters of values) of some changes, as Route 53 counts them."""
    records = chars = 0
    for c in changes:
        for r in c["ResourceRecordSet"].get("ResourceRecords", []):
            records += 1
            chars += len(r["Value"])
    return records, chars


def pack_batches(
    costs: Sequence[tuple[int, int]], max_records: int = MAX_RECORDS, max_chars: int = MAX_CHARS
) -> list[list[int]]:
    """Group units (indexes into ``costs``, in order) into batches within both limits; a unit is never split.

    Raises ``Permanent`` when one unit alone exceeds a limit.
    """
    batches: list[list[int]] = []
    records = chars = 0
    for i, (r, c) in enumerate(costs):
        if r > max_records or c > max_chars:
            raise Permanent(f"one endpoint needs {r} records / {c} characters in a change batch; "
                            f"Route 53 allows {max_records} / {max_chars}")  # fmt: skip
        if not batches or records + r > max_records or chars + c > max_chars:
            batches.append([])
            records = chars = 0
        batches[-1].append(i)
        records += r
        chars += c
    return batches
