"""Route 53's documented limits on a change batch as pure checks, no I/O (enforced by route53_rules.py).

``check_batch`` refuses what a change batch breaks on its own (records and characters per batch, name
and label lengths, TXT string length); ``check_zone`` what the zone would break once the batch is
applied (CNAME exclusivity, weighted sets per name and type), given the record sets at the names the
batch touches. A refusal is ``Refusal(code, message, status)``, Route 53's error code and HTTP status.

Limits: alias, latency, failover and geolocation sets are not checked, nor a simple set beside weighted
ones of the same name and type (Route 53 refuses it); the messages of the character, name-length and
weighted refusals are ours (the codes are Route 53's; the others are Route 53's messages as seen in the wild).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from xml.etree import ElementTree

NS = "https://route53.amazonaws.com/doc/2013-04-01/"
PAGE = 300  # record sets per ListResourceRecordSets page at most

# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DNSLimitations.html
# ("Quotas on API requests": ChangeResourceRecordSets; UPSERT elements and characters count twice)
MAX_RECORDS = 1_000  # ResourceRecord elements per ChangeResourceRecordSets request
MAX_CHARS = 32_000  # characters of all Value elements per request
# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DNSLimitations.html ("Quotas on records")
# and https://docs.aws.amazon.com/Route53/latest/APIReference/API_ResourceRecordSet.html (Weight)
MAX_WEIGHTED = 100  # weighted record sets with the same name and type
# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DomainNameFormat.html
MAX_NAME = 255  # bytes of a domain name, dots included
MAX_LABEL = 63  # bytes of one label
# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/ResourceRecordTypes.html#TXTFormat
MAX_TXT_STRING = 255  # characters of one string of a TXT value
# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DNSLimitations.html ("Quotas on API requests")
# and https://repost.aws/knowledge-center/route-53-avoid-throttling-errors: HTTP 400, Throttling, Rate exceeded
RATE = 5.0  # requests per second per account
# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/ResourceRecordTypes.html#CNAMEFormat:
# "if you create a CNAME record for a subdomain, you cannot create any other records" with that name


@dataclass(frozen=True, slots=True)
class Limits:
    max_records: int = MAX_RECORDS
    max_chars: int = MAX_CHARS
    max_weighted: int = MAX_WEIGHTED
    max_name: int = MAX_NAME
    max_label: int = MAX_LABEL
    max_txt_string: int = MAX_TXT_STRING


class Refusal(Exception):
    """What Route 53 would answer instead of doing the request."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True, slots=True)
class RecordSet:
    """The parts of a record set the rules look at (names lower-case, with the final dot)."""

    name: str
    rtype: str
    set_id: str | None = None
    weighted: bool = False
    values: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.name, self.rtype, self.set_id)


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def child(el: ElementTree.Element, tag: str) -> ElementTree.Element | None:
    return next((c for c in el if local_name(c.tag) == tag), None)


def child_text(el: ElementTree.Element, tag: str) -> str | None:
    c = child(el, tag)
    return None if c is None else (c.text or "")


def record_set(el: ElementTree.Element) -> RecordSet:
    rrs = child(el, "ResourceRecords")
    values = (
        () if rrs is None else tuple(child_text(r, "Value") or "" for r in rrs if local_name(r.tag) == "ResourceRecord")
    )
    return RecordSet(
        canonical(child_text(el, "Name") or ""),
        child_text(el, "Type") or "",
        child_text(el, "SetIdentifier"),
        child(el, "Weight") is not None,
        values,
    )


def canonical(name: str) -> str:
    return name.lower() if name.endswith(".") else name.lower() + "."


def name_octets(name: str) -> list[bytes]:
    """The labels of a name as Route 53 counts them: ``\\ddd`` (octal) and ``\\c`` are one byte each."""
    text = name[:-1] if name.endswith(".") else name
    labels, cur, i = [], bytearray(), 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and re.fullmatch(r"[0-7]{3}", text[i + 1 : i + 4]):
            cur.append(int(text[i + 1 : i + 4], 8) & 0xFF)
            i += 4
            continue
        if ch == "\\" and i + 1 < len(text):
            cur.extend(text[i + 1].encode())
            i += 2
            continue
        if ch == ".":
            labels.append(bytes(cur))
            cur = bytearray()
        else:
            cur.extend(ch.encode())
        i += 1
    labels.append(bytes(cur))
    return labels


def txt_string_lengths(value: str) -> list[int]:
    """Length of each character-string of a TXT value (``"a" "b"``; escapes ``\\"``, ``\\\\``, ``\\ddd``)."""
    if not value.startswith('"'):
        return [len(value.encode())]
    out: list[int] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] != '"':
            i += 1
            continue
        i, length = i + 1, 0
        while i < n and value[i] != '"':
            if value[i] == "\\" and re.fullmatch(r"[0-7]{3}", value[i + 1 : i + 4]):
                i += 4
            elif value[i] == "\\":
                i += 2
            else:
                i += 1
            length += 1
        out.append(length)
        i += 1
    return out


def check_batch(changes: list[tuple[str, RecordSet]], limits: Limits) -> None:
    """The rules a change batch breaks on its own, whatever the zone holds (raises ``Refusal``)."""
    twice = {"UPSERT": 2}
    records = sum(twice.get(a, 1) * len(s.values) for a, s in changes)
    if records > limits.max_records:
        raise Refusal("InvalidChangeBatch", f"Number of records limit of {limits.max_records} exceeded.")
    chars = sum(twice.get(a, 1) * len(v) for a, s in changes for v in s.values)
    if chars > limits.max_chars:
        raise Refusal("InvalidChangeBatch", f"Number of characters limit of {limits.max_chars} exceeded.")
    for _, s in changes:
        labels = name_octets(s.name)
        long = next((label for label in labels if len(label) > limits.max_label), None)
        if long is not None:
            raise Refusal(
                "InvalidChangeBatch",
                "FATAL problem: DomainLabelTooLong (Domain label is too long) "
                f"encountered with '{long.decode(errors='replace')}'",
            )
        if sum(len(label) for label in labels) + len(labels) - 1 > limits.max_name:
            raise Refusal(
                "InvalidChangeBatch",
                f"FATAL problem: DomainNameTooLong (Domain name is too long) encountered with '{s.name}'",
            )
        if s.rtype == "TXT":
            for v in s.values:
                if any(n > limits.max_txt_string for n in txt_string_lengths(v)):
                    raise Refusal(
                        "InvalidChangeBatch",
                        "Invalid Resource Record: FATAL problem: CharacterStringTooLong "
                        f"(Value is too long) encountered with '{v[:80]}'",
                    )


def check_zone(after: list[RecordSet], zone_name: str, limits: Limits) -> None:
    """The rules the zone breaks once a batch is applied, at the names the batch touched."""
    by_name: dict[str, list[RecordSet]] = {}
    for s in after:
        by_name.setdefault(s.name, []).append(s)
    for name, sets in by_name.items():
        types = {s.rtype for s in sets}
        if "CNAME" in types and len(types) > 1:
            raise Refusal(
                "InvalidChangeBatch",
                f"RRSet of type CNAME with DNS name {name} is not permitted as it "
                f"conflicts with other records with the same DNS name in zone {zone_name}",
            )
        weighted = Counter(s.rtype for s in sets if s.weighted)
        for rtype, count in weighted.items():
            if count > limits.max_weighted:
                raise Refusal(
                    "InvalidChangeBatch",
                    f"{count} weighted RRSets of type {rtype} with DNS name {name}: "
                    f"at most {limits.max_weighted} are allowed",
                )


def applied(current: list[RecordSet], changes: list[tuple[str, RecordSet]]) -> list[RecordSet]:
    """``current`` after ``changes`` (leniently: what ministack refuses on its own is left to it)."""
    sets = {s.key: s for s in current}
    for action, s in changes:
        if action == "DELETE":
            sets.pop(s.key, None)
        else:
            sets[s.key] = s
    return list(sets.values())
