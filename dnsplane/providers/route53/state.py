"""What Route 53 holds for one endpoint, and the exact changes that replace it (compare-and-swap).

Promises:
- ``State`` keeps the record sets as listed (for exact-match DELETEs) and decodes them: when
  the weighted sets are what the marker's record set implies, ``observed`` is that record set;
  otherwise (a hand edit, or a read torn by a concurrent write) it is rebuilt from what Route 53
  holds, never equal to the marker's, and ``consistent`` says whether a re-read may settle it;
- ``swap_changes(state, new)`` DELETEs every record set of ``state`` exactly as listed, then CREATEs
  ``new``: Route 53 refuses the whole batch if anything moved since the read.

Limits: pure functions, no I/O; a rebuilt record set has Route 53's scaled weights and TTL 0
when the members' TTLs disagree.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dnsplane.model import EndpointKey, Marker, Member, Observed, RecordSet, marker_name
from dnsplane.providers.route53.encoding import RRSet, marker_values, parse_marker, scaled_weights, unescape_name


def _addr(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


Shape = frozenset[tuple[str, int | None, int | None, frozenset[str], bool]]


def _implied_shape(rs: RecordSet) -> Shape:
    """What Route 53 holds at the endpoint's name when ``rs`` was written by this provider."""
    if not rs.live_members():
        return frozenset()
    if rs.answer == "all":
        return frozenset({("", None, rs.ttl, frozenset(map(_addr, rs.addresses())), False)})
    weights = scaled_weights(rs)
    return frozenset(
        (m.target_id, weights[m.target_id], rs.ttl, frozenset(map(_addr, m.addresses)), False)
        for m in rs.live_members()
    )


def _actual_shape(sets: Sequence[RRSet]) -> Shape:
    extra = {"AliasTarget", "Region", "GeoLocation", "Failover", "MultiValueAnswer", "HealthCheckId",
             "CidrRoutingConfig", "GeoProximityLocation"}  # fmt: skip
    return frozenset(
        (
            s.get("SetIdentifier", ""),
            s.get("Weight"),
            s.get("TTL"),
            frozenset(_addr(r["Value"]) for r in s.get("ResourceRecords", [])),
            any(k in s for k in extra),
        )
        for s in sets
    )


def rebuild(sets: Sequence[RRSet], carried: RecordSet | None) -> RecordSet | None:
    """Records as Route 53 really holds them (a hand edit); never equal to ``carried``."""
    if not sets:
        return None
    ttls = {s.get("TTL") for s in sets}
    ttl = int(ttls.pop() or 0) if len(ttls) == 1 else 0
    members = [
        Member(
            s.get("SetIdentifier", ""),
            tuple(r["Value"] for r in s.get("ResourceRecords", [])),
            int(s.get("Weight", 0 if "SetIdentifier" in s else 1)),
        )
        for s in sets
    ]
    answer = carried.answer if carried is not None else "weighted"
    rs = RecordSet.of(ttl, members, answer)
    if carried is not None and rs == carried:
        rs = RecordSet(0, rs.members, answer)  # TTL 0 is never valid: the digest cannot match a plan
    return rs


@dataclass(frozen=True)
class State:
    """What Route 53 holds for one endpoint, raw (for exact DELETEs) and parsed."""

    members: tuple[RRSet, ...]
    marker_sets: tuple[RRSet, ...]
    observed: Observed = field(init=False)
    consistent: bool = field(init=False)

    def __post_init__(self) -> None:
        marker, carried = parse_marker(self.marker_sets)
        records: RecordSet | None
        if carried is not None and _implied_shape(carried) == _actual_shape(self.members):
            records, ok = carried, True
        else:
            records = rebuild(self.members, carried)
            # nothing to tear against: no marker at all, or a marker that carries no records and none exist
            ok = not self.marker_sets or (carried is None and not self.members)
        object.__setattr__(self, "observed", Observed(records, marker))
        object.__setattr__(self, "consistent", ok)

    def raw(self) -> tuple[object, ...]:
        """Comparable form of the raw record sets (value order does not matter to Route 53)."""
        return tuple(sorted(_canon(s) for s in (*self.members, *self.marker_sets)))


EMPTY = State((), ())


def _canon(s: RRSet) -> str:
    c = dict(s)
    if "ResourceRecords" in c:
        c["ResourceRecords"] = sorted(r["Value"] for r in c["ResourceRecords"])
    return json.dumps(c, sort_keys=True, default=str)


def new_sets(key: EndpointKey, records: RecordSet | None, marker: Marker | None) -> list[RRSet]:
    out: list[RRSet] = []
    if records is not None and records.live_members():
        if records.answer == "all":
            out.append({"Name": key.name, "Type": key.rtype, "TTL": records.ttl,
                        "ResourceRecords": [{"Value": a} for a in records.addresses()]})  # fmt: skip
        else:
            weights = scaled_weights(records)
            for m in records.live_members():
                out.append({
                    "Name": key.name, "Type": key.rtype, "SetIdentifier": m.target_id,
                    "Weight": weights[m.target_id], "TTL": records.ttl,
                    "ResourceRecords": [{"Value": a} for a in dict.fromkeys(m.addresses)],
                })  # fmt: skip
    if marker is not None:
        ttl = records.ttl if records is not None else 300
        out.append({"Name": marker_name(key), "Type": "TXT", "TTL": ttl,
                    "ResourceRecords": [{"Value": v} for v in marker_values(marker, records)]})  # fmt: skip
    return out


def swap_changes(state: State, new: list[RRSet]) -> list[dict[str, Any]]:
    """The changes that take the endpoint from ``state`` to ``new``: DELETE of every set found (exactly as
    listed) and CREATE of the new ones, but for a member set the write keeps exactly as it is, which is left
    alone: the marker's exact DELETE is what refuses a stale writer (every automated write replaces the
    marker), and a set kept costs a change batch two records and ministack (O(zone) per change) time. A
    kept set edited by hand after the read survives the write, as a hand edit just after it would: read
    back, its records differ from the marker's digest and the verifier repairs them. But a write that would
    CREATE no member set DELETEs and CREATEs one it keeps, exactly: were every kept set deleted by hand
    meanwhile, the batch is refused rather than leaving the endpoint with no record at all (I1)."""
    kept = {same_set(s) for s in state.members} & {same_set(s) for s in new}
    members = [same_set(s) for s in new if s.get("Type") != "TXT"]
    if kept and all(m in kept for m in members):
        kept.discard(members[0])
    deletes = [{"Action": "DELETE", "ResourceRecordSet": s}
               for s in (*state.members, *state.marker_sets) if s in state.marker_sets or same_set(s) not in kept]
    return deletes + [{"Action": "CREATE", "ResourceRecordSet": s} for s in new if same_set(s) not in kept]


def same_set(s: RRSet) -> tuple[object, ...]:
    """A record set as an exact DELETE must match it (name and type, set identifier, weight, TTL, values in any
    order: their order does not matter to Route 53)."""
    values = tuple(sorted(r.get("Value", "") for r in s.get("ResourceRecords", [])))
    return (unescape_name(str(s.get("Name", ""))).lower(), s.get("Type"), s.get("SetIdentifier"), s.get("Weight"),
            s.get("TTL"), values, "AliasTarget" in s)
