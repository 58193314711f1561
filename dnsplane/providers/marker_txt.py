"""The marker TXT: how a provider that keeps markers in DNS (RFC 2136, Route 53) lays one out, and reads it.

One layout is written, by every such provider. The TXT RRset at ``model.marker_name(key)`` holds:

- one record of one string, the marker: ``Marker.to_text()`` (``dnsplane g=<g> d=<digest> p=<prev>
  o=<owner>``, `` r=1`` when released); ``dnsplane -`` (``NO_MARKER_TEXT``) when records are carried
  without a marker (a hand edit, never a write);
- when a record set is carried: records ``"dnsplane-rs <i>" "<chunk>" "<chunk>" ...`` (i = 0, 1, ...),
  whose chunks, joined in index order, are the record set's compact JSON (``codec.encode_records``).
  No string is longer than 255 characters in Route 53's quoted form (each ``"`` or ``\\`` counts two),
  so none is longer than 255 bytes on the wire; no record is longer than ``MAX_VALUE`` characters quoted
  (Route 53 allows 4,000 per value; a DNS TXT record 65,535 bytes).

Whether a record set is carried is the provider's choice: Route 53 always carries it; RFC 2136 only
when the served addresses alone cannot say it (other target ids, weights other than 1, ``answer: all``).

Read (``read``): that layout, and every layout written before it, so that markers already on a server
keep working: the RFC 2136 provider, before this module, wrote ONE record whose first string is the
marker and whose further strings are the JSON split every 255 bytes (``"dnsplane g=..." "{..." "...}"``).
A TXT that holds one record of several strings starting with ``dnsplane `` is read that way.

Promises: ``read(layout(m, rs)) == (m, rs)`` whatever the order of the records; a marker whose ``g=`` is
out of range reads as a corrupt marker (``model.read_marker``); several marker records: the last one
read; record-set parts that are missing, out of order or unreadable JSON: no record set (the provider
then rebuilds it from the records it serves). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from dnsplane.codec import decode_records, encode_records
from dnsplane.model import Marker, RecordSet, read_marker

MAX_STRING = 255  # characters of one TXT string, quoted as Route 53 shows it
MAX_VALUE = 3_900  # characters of one TXT record, quoted (Route 53 allows 4,000)
RS_TAG = "dnsplane-rs"
NO_MARKER_TEXT = "dnsplane -"  # the first record of records carried without a marker (hand edits)
_HEAD = "dnsplane "


def _quoted_size(text: str) -> int:
    """Characters of ``text`` as one quoted TXT string (``"``, with ``\\`` before ``"`` and ``\\``)."""
    return len(text) + 2 + text.count('"') + text.count("\\")


def _chunks(text: str) -> list[str]:
    """Split ``text`` into pieces whose quoted form is at most ``MAX_STRING`` + 2 characters, each the
    longest that fits (``"`` and ``\\`` cost two)."""
    out: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + MAX_STRING, n)
        cost = _quoted_size(text[start:end]) - 2
        if cost > MAX_STRING:  # dropping k characters drops the cost by k to 2k: now it fits
            end -= cost - MAX_STRING
            cost = _quoted_size(text[start:end]) - 2
        while end < n and cost + (2 if text[end] in '"\\' else 1) <= MAX_STRING:  # then take what still fits
            cost += 2 if text[end] in '"\\' else 1
            end += 1
        out.append(text[start:end])
        start = end
    return out


def layout(marker: Marker | None, records: RecordSet | None) -> list[list[str]]:
    """The records of the marker TXT, each a list of strings: the marker, then ``records`` (if given)."""
    out = [[marker.to_text() if marker is not None else NO_MARKER_TEXT]]
    if records is None:
        return out
    groups: list[list[str]] = []
    size = 0
    for piece in _chunks(encode_records(records)):
        cost = _quoted_size(piece)
        if not groups or size + cost + 20 > MAX_VALUE:
            groups.append([])
            size = 0
        groups[-1].append(piece)
        size += cost + 1
    out.extend([f"{RS_TAG} {i}", *group] for i, group in enumerate(groups))
    return out


def read(records: Sequence[Sequence[str]]) -> tuple[Marker | None, RecordSet | None]:
    """The marker and the carried record set of a marker TXT's records (each a list of strings)."""
    if len(records) == 1 and len(records[0]) > 1 and records[0][0].startswith(_HEAD):
        return read_marker(records[0][0]), _records("".join(records[0][1:]))  # the RFC 2136 layout before
    found: Marker | None = None
    parts: dict[int, str] = {}
    broken = False
    for strings in records:  # in whatever order the server returns them: read every one
        if not strings:
            continue
        head = strings[0]
        if len(strings) == 1 and head.startswith(_HEAD):
            found = read_marker(head)  # g= out of range: a corrupt marker, see model.read_marker
        elif head.startswith(RS_TAG + " "):
            try:
                parts[int(head.split()[1])] = "".join(strings[1:])
            except (ValueError, IndexError):
                broken = True  # no record set; the marker, wherever it comes, still counts
    if broken or not parts or sorted(parts) != list(range(len(parts))):
        return found, None
    return found, _records("".join(parts[i] for i in range(len(parts))))


def _records(text: str) -> RecordSet | None:
    try:
        return decode_records(text)
    # what text written by hand can raise: not JSON, not of a record set's shape (1e400 where an int
    # goes: ``RecordSet.from_json``), nested thousands deep
    except (ValueError, RecursionError):
        return None
