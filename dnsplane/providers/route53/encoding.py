"""How an endpoint's records and marker are written as Route 53 record sets (the TXT and weight encoding).

- one weighted record set per member with weight > 0: ``SetIdentifier`` = target id,
  ``Weight`` = the member's weight scaled to 1..255 (``scaled_weights``);
- the marker TXT: one value ``"dnsplane g=<gen> d=<digest> p=<prev> o=<owner>"`` (``Marker.to_text()``,
  `` r=1`` at its end when released) and values
  ``"dnsplane-rs <i>" "<chunk>" ...`` carrying the exact ``RecordSet`` as compact JSON in
  strings of at most 255 characters (``marker_values``); ``parse_marker`` reads them back.

Promises: ``parse_marker(marker_values(m, rs))`` gives back ``(m, rs)`` whatever the order of
the values; TXT values are quoted and escaped as Route 53 shows them (a backslash before a quote
or a backslash, three-digit decimal escapes);
no value exceeds 3,900 characters nor a string 255.

Limits: pure functions, no I/O; a marker TXT with several record sets or unreadable JSON reads
as no record set (the caller then rebuilds it from what Route 53 holds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from dnsplane.model import Marker, RecordSet, normalise_name, read_marker

MAX_STRING = 255  # characters of one TXT string
MAX_VALUE = 3_900  # characters of one TXT value (Route 53 allows 4,000)
MAX_WEIGHT = 255

_RS_TAG = "dnsplane-rs"
_ESCAPE = re.compile(r"\\(\d{3}|.)")

RRSet = dict[str, Any]  # one ResourceRecordSet, as boto3 lists it and takes it


def scaled_weights(rs: RecordSet) -> dict[str, int]:
    """Route 53 weight (1..255) of each live member, by target id."""
    live = rs.live_members()
    top = max((m.weight for m in live), default=0)
    if top <= MAX_WEIGHT:
        return {m.target_id: m.weight for m in live}
    return {m.target_id: max(1, round(m.weight * MAX_WEIGHT / top)) for m in live}


def txt_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def txt_strings(value: str) -> list[str]:
    """The character strings of one TXT value as Route 53 shows it (quoted, ``\\"``, ``\\ddd``)."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] == " ":
            i += 1
            continue
        buf: list[str] = []
        quoted = value[i] == '"'
        i += quoted
        while i < n and (value[i] != '"' if quoted else value[i] != " "):
            if value[i] == "\\" and i + 1 < n:
                m = _ESCAPE.match(value, i)
                assert m is not None
                esc = m.group(1)
                buf.append(chr(int(esc)) if len(esc) == 3 else esc)
                i = m.end()
            else:
                buf.append(value[i])
                i += 1
        i += quoted
        out.append("".join(buf))
    return out


def unescape_name(name: str) -> str:
    """A record name as Route 53 lists it (``\\052``, ``\\.``) in plain, normalised form."""
    return normalise_name(_ESCAPE.sub(lambda m: chr(int(m.group(1))) if len(m.group(1)) == 3 else m.group(1), name))


def encode_records(rs: RecordSet) -> str:
    """Compact JSON of ``rs.to_json()`` (ASCII only)."""
    members = ",".join(
        f"[{_quote(m.target_id)},[{','.join(map(_quote, m.addresses))}],{int(m.weight)}]" for m in rs.members
    )
    return f'{{"ttl":{int(rs.ttl)},"answer":{_quote(rs.answer)},"members":[{members}]}}'


def _chunks(text: str) -> list[str]:
    """Split ``text`` into pieces whose quoted form is at most ``MAX_STRING`` + 2 characters."""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for ch in text:
        cost = 2 if ch in '"\\' else 1
        if size + cost > MAX_STRING:
            out.append("".join(cur))
            cur, size = [], 0
        cur.append(ch)
        size += cost
    if cur:
        out.append("".join(cur))
    return out


def marker_values(marker: Marker, records: RecordSet | None) -> list[str]:
    """The TXT values of a marker record set: the marker, then the record set in indexed values."""
    values = [txt_quote(marker.to_text())]
    if records is None:
        return values
    pieces = [txt_quote(c) for c in _chunks(encode_records(records))]
    groups: list[list[str]] = []
    for p in pieces:
        if not groups or sum(len(x) + 1 for x in groups[-1]) + len(p) + 20 > MAX_VALUE:
            groups.append([])
        groups[-1].append(p)
    for i, group in enumerate(groups):
        values.append(" ".join([txt_quote(f"{_RS_TAG} {i}"), *group]))
    return values


def parse_marker(sets: Sequence[RRSet]) -> tuple[Marker | None, RecordSet | None]:
    """Marker and carried record set of the TXT record sets at a marker name (either may be None)."""
    plain = [s for s in sets if "SetIdentifier" not in s]
    if len(plain) != 1:
        return None, None
    found: Marker | None = None
    parts: dict[int, str] = {}
    for rr in plain[0].get("ResourceRecords", []):
        strings = txt_strings(rr.get("Value", ""))
        if not strings:
            continue
        head = strings[0]
        if len(strings) == 1 and head.startswith("dnsplane "):
            found = read_marker(head)  # g= out of range: a corrupt marker, see model.read_marker
        elif head.startswith(_RS_TAG + " "):
            try:
                parts[int(head.split()[1])] = "".join(strings[1:])
            except (ValueError, IndexError):
                return found, None
    if not parts or sorted(parts) != list(range(len(parts))):
        return found, None
    try:
        return found, RecordSet.from_json(json.loads("".join(parts[i] for i in range(len(parts)))))
    except (ValueError, TypeError, KeyError):
        return found, None
