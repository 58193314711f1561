"""The zone's write token (providers/base.py) as one Route 53 record set, and the changes that move it.

Layout: one TXT record set, not weighted, at ``_dnsplane-token.<zone>`` (``token_name``), TTL 300, one
value of one string: a uuid4 hex, never used before. No endpoint reads it as its own: a marker's name is
``_dnsplane-a.<name>`` or ``_dnsplane-aaaa.<name>`` (``model.marker_name``) and an endpoint's records are
A or AAAA, never TXT, so the listing (``Route53Provider._group_listing``) leaves it out.

Promises (pure, no I/O): ``TokenChain`` is one ``apply``'s knowledge of the token and the changes each of
its change batches adds (``changes``):

    batch                                        token changes                      Route 53 refuses the batch
    chained (the apply carries token writes      DELETE the set exactly as last     if the token is not that set:
    and no other writer's move was seen)         known + CREATE a fresh one         a write of another reached it
                                                 (CREATE only, when none was)       (or one exists, for CREATE)
    unchained (no token writes, or the chain     UPSERT a fresh one                 never because of the token
    broke)

"Last known" is the set read once at the start (``start``), then the one this apply's own previous batch
wrote (``landed``): the chain. Route 53 applies a change batch all or nothing, so a batch's writes land
together with the token's move, or none of them does.

Limits: a token set edited by hand into several (weighted) sets makes every batch of the zone refused
(Route 53 mixes no simple and weighted sets at one name); deleted or set by hand to another value, it
refuses the writes that expected the old value (``Conflict``), once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from dnsplane.providers.base import TOKEN_ABSENT
from dnsplane.providers.route53.encoding import RRSet, txt_quote, txt_strings
from dnsplane.providers.route53.state import same_set

TOKEN_TTL = 300
FRESH_CHARS = 34  # characters of a fresh token's value: a quoted uuid4 hex


def token_name(zone: str) -> str:
    """The name of the token's TXT record set: at the zone apex, never an endpoint's marker name."""
    return f"_dnsplane-token.{zone}"


def token_value(s: RRSet | None) -> str:
    """The write token a listed record set holds (``TOKEN_ABSENT`` for none); never empty when one exists."""
    if s is None:
        return TOKEN_ABSENT
    values = sorted(r.get("Value", "") for r in s.get("ResourceRecords", []))
    if len(values) == 1 and "SetIdentifier" not in s:
        strings = txt_strings(values[0])
        if len(strings) == 1 and strings[0]:
            return strings[0]
    return json.dumps(values)  # edited by hand: still one value, compared as it is, never ""


def _chars(s: RRSet | None) -> int:
    return 0 if s is None else sum(len(r.get("Value", "")) for r in s.get("ResourceRecords", []))


@dataclass
class TokenChain:
    """One ``apply``'s knowledge of the zone's token.

    Before ``start`` (the token not read: no write of the apply carries one yet) every token is allowed,
    so that the writes can be decided to see whether any carries one. After ``start``, a write's token is
    allowed while it is the token read and only this apply's batches moved it since (``landed``);
    ``broken`` once another writer's move was seen: no token is allowed any more.
    """

    zone: str
    read: bool = False
    expected: str | None = None  # the token value writes may carry (None: the chain broke)
    held: RRSet | None = None  # the token set as last known: read, or written by this apply
    reserve: tuple[int, int] = (2, 2 * FRESH_CHARS)  # records and characters a batch's token changes take
    _fresh: RRSet | None = field(default=None, repr=False)

    def start(self, current: RRSet | None) -> None:
        self.read, self.held, self.expected = True, current, token_value(current)
        self.reserve = (2, FRESH_CHARS + max(FRESH_CHARS, _chars(current)))

    def allows(self, token: str) -> bool:
        return not self.read or token == self.expected

    @property
    def intact(self) -> bool:
        """The token was read and only this apply moved it since: batches are chained."""
        return self.read and self.expected is not None

    def moved(self, current: RRSet | None) -> bool:
        """Whether ``current`` (re-read after a refused chained batch) is not the set last known."""
        if current is None or self.held is None:
            return current is not self.held
        return same_set(current) != same_set(self.held)  # what an exact DELETE of it must match

    def break_chain(self) -> None:
        self.expected = None

    def changes(self, chained: bool) -> list[dict[str, Any]]:
        """The token changes of the next batch; ``landed`` after Route 53 accepts it."""
        fresh: RRSet = {"Name": token_name(self.zone), "Type": "TXT", "TTL": TOKEN_TTL,
                        "ResourceRecords": [{"Value": txt_quote(uuid.uuid4().hex)}]}  # fmt: skip
        self._fresh = fresh
        if not chained:
            return [{"Action": "UPSERT", "ResourceRecordSet": fresh}]
        delete = [] if self.held is None else [{"Action": "DELETE", "ResourceRecordSet": self.held}]
        return [*delete, {"Action": "CREATE", "ResourceRecordSet": fresh}]

    def landed(self) -> None:
        """The last batch was accepted: the token is now the value it wrote."""
        self.held = self._fresh
