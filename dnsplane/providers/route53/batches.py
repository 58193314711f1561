"""Packing endpoints' changes into Route 53 change batches within its quotas, and the rules one endpoint
must meet to be written at all.

Route 53's documented quotas (https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DNSLimitations.html,
"Maximums on API requests" and "Quotas on records"; the API reference of ChangeResourceRecordSets):
a change batch holds at most 1,000 ResourceRecord elements and 32,000 characters (spaces included) of all
its Value elements, DELETEs and CREATEs both counted and an UPSERT's counted twice; a TXT value is counted
as sent, its quotes and backslashes included; at most 100 weighted record sets of one name and type; a
name at most 255 octets, a label at most 63 (RFC 1035, section 2.3.4).

Promises: ``pack_batches`` keeps the order, never splits an endpoint's changes across batches,
and keeps each batch within ``MAX_RECORDS`` ResourceRecord elements and ``MAX_CHARS``
characters of values (``batch_cost`` counts as Route 53 counts); an endpoint that alone exceeds a
quota is ``Permanent``. ``endpoint_problem`` says why a record set can never be written at an
endpoint (too many weighted sets, a name or its marker's name too long), before any call.

Limits: greedy, in order (not the fewest batches); pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dnsplane.errors import Permanent
from dnsplane.model import EndpointKey, RecordSet, marker_name

MAX_RECORDS = 1_000  # ResourceRecord elements per change batch (Route 53 quota)
MAX_CHARS = 32_000  # characters of all Value elements per change batch (Route 53 quota)
MAX_WEIGHTED = 100  # weighted record sets of one name and type (Route 53 quota)
MAX_NAME_OCTETS = 255  # a domain name in wire form (RFC 1035 2.3.4; Route 53 refuses longer)
MAX_LABEL = 63  # octets of one label


def batch_cost(changes: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(ResourceRecord elements, characters of values) of some changes, as Route 53 counts them."""
    records = chars = 0
    for c in changes:
        times = 2 if c["Action"] == "UPSERT" else 1
        for r in c["ResourceRecordSet"].get("ResourceRecords", []):
            records += times
            chars += times * len(r["Value"])
    return records, chars


def name_octets(name: str) -> int:
    """Octets of an absolute name (``a.b.``) in wire form: a length octet per label, the root's zero."""
    return len(name.rstrip(".")) + 2 if name != "." else 1


def endpoint_problem(key: EndpointKey, records: RecordSet | None) -> str | None:
    """Why Route 53 can never hold ``records`` at ``key`` as this provider writes it, or None."""
    for what, name in (("name", key.name), ("marker name", marker_name(key))):
        if name_octets(name) > MAX_NAME_OCTETS:
            return (f"its {what} {name} is {name_octets(name)} octets, over the {MAX_NAME_OCTETS} a DNS name "
                    "may have: shorten the name")
        long = next((label for label in name.rstrip(".").split(".") if len(label) > MAX_LABEL), None)
        if long is not None:
            return f"its {what} {name} has a label of {len(long)} octets, over {MAX_LABEL}: shorten it"
    if records is not None and records.answer != "all" and len(records.live_members()) > MAX_WEIGHTED:
        return (f"{len(records.live_members())} live targets, but Route 53 keeps at most {MAX_WEIGHTED} weighted "
                "record sets of one name and type: give the endpoint fewer targets")
    return None


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
