"""How an endpoint's records and marker are written as Route 53 record sets (the TXT and weight encoding).

- one weighted record set per member with weight > 0: ``SetIdentifier`` = target id,
  ``Weight`` = the member's weight scaled to 1..255 (``scaled_weights``);
- the marker TXT, laid out as every provider lays it out (``providers/marker_txt.py``), each of its
  records one Route 53 value: ``"dnsplane g=<gen> d=<digest> p=<prev> o=<owner>"`` (``Marker.to_text()``,
  `` r=1`` at its end when released), then values ``"dnsplane-rs <i>" "<chunk>" ...`` carrying the
  exact ``RecordSet`` as compact JSON in strings of at most 255 characters (``marker_values``; Route 53
  always carries it); ``parse_marker`` reads them back.

Promises: ``parse_marker(marker_values(m, rs))`` gives back ``(m, rs)`` whatever the order of
the values; TXT values are quoted and escaped as Route 53 shows them (a backslash before a quote
or a backslash, three-digit decimal escapes);
no value exceeds 3,900 characters nor a string 255.

Limits: pure functions, no I/O; a marker TXT with several record sets or unreadable JSON reads
as no record set (the caller then rebuilds it from what Route 53 holds). Whatever text a zone holds
(written by hand), ``txt_strings`` and ``parse_marker`` never raise: the worst a value reads as is a
corrupt marker (``model.read_marker``) or no marker, and no record set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dnsplane.model import Marker, RecordSet, normalise_name
from dnsplane.providers import marker_txt

MAX_WEIGHT = 255

_ESCAPE = re.compile(r"\\(\d{3}|.)", re.DOTALL)  # DOTALL: a backslash before a newline escapes it

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
            m = _ESCAPE.match(value, i) if value[i] == "\\" else None
            if m is not None:  # a backslash before any character (a newline too) escapes it
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


def marker_values(marker: Marker, records: RecordSet | None) -> list[str]:
    """The TXT values of a marker record set (``marker_txt.layout``): the marker, then the record set in
    indexed values."""
    return [" ".join(map(txt_quote, strings)) for strings in marker_txt.layout(marker, records)]


def parse_marker(sets: Sequence[RRSet]) -> tuple[Marker | None, RecordSet | None]:
    """Marker and carried record set of the TXT record sets at a marker name (either may be None)."""
    plain = [s for s in sets if "SetIdentifier" not in s]
    if len(plain) != 1:
        return None, None
    return marker_txt.read([txt_strings(rr.get("Value", "")) for rr in plain[0].get("ResourceRecords", [])])
