"""The RFC 2136 provider's zone write token (``Provider.write_token``, providers/base.py): where it lives,
how its value is encoded, and how one ``apply`` chains through its own changes of it.

Layout: one TXT RRset at ``_dnsplane-token.<zone>`` (TTL 0), holding one record of one string,
``uuid4().hex``. No endpoint's records or marker can be there: endpoints are A/AAAA (at their own name,
another type) and markers are ``_dnsplane-a.<name>``/``_dnsplane-aaaa.<name>`` TXT, one label more; the
readers never take it for an endpoint (``read_all`` lists ``_dnsplane-<rtype>`` names whose rtype is A or
AAAA only).

Promises:
- ``token_text`` and ``token_rdatas`` are inverse: the token's text is the record's string when the
  RRset is one record of one non-empty string not starting with ``=`` (every value dnsplane writes);
  anything else (a hand edit) is ``=`` and the hex of each wire rdata, sorted, joined with ``,``, so a
  prerequisite built from the text names exactly the RRset read. No RRset is ``TOKEN_ABSENT``;
- ``Chain`` holds, for each token value the writes of one ``apply`` carry, the value the zone's token must
  have for them now: the value itself until one of the apply's own conditional messages moves it (then
  the value that message set), or ``None`` once anything else may have moved it (a conditional message
  that expected another value succeeded, or a read of the token found a value the chain does not expect).
  ``None`` is for good: token values never repeat, so a write whose chain broke comes back ``Conflict``.

Limits: a CNAME put at ``_dnsplane-token.<zone>`` by hand makes the server ignore the token's update
(RFC 2136 §3.4.2.2): the token then stays absent and checks nothing; do not put one there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from dnsplane.providers.base import TOKEN_ABSENT

LABEL = "_dnsplane-token"
LABEL_WIRE = b"\x0f" + LABEL.encode("ascii")


def token_name(zone: str) -> str:
    return f"{LABEL}.{zone}"


def fresh() -> tuple[str, bytes]:
    """A token value never used before, and its TXT rdata."""
    value = uuid.uuid4().hex
    return value, bytes([len(value)]) + value.encode("ascii")


def _strings(rdata: bytes) -> list[bytes] | None:
    out, at = [], 0
    while at < len(rdata):
        n = rdata[at]
        if at + 1 + n > len(rdata):
            return None
        out.append(rdata[at + 1 : at + 1 + n])
        at += 1 + n
    return out


def token_text(rdatas: Iterable[bytes]) -> str:
    """The token's text, from the wire rdatas of the token TXT RRset (none: ``TOKEN_ABSENT``)."""
    found = sorted(set(rdatas))
    if not found:
        return TOKEN_ABSENT
    if len(found) == 1:
        strings = _strings(found[0])
        if strings is not None and len(strings) == 1 and strings[0] and not strings[0].startswith(b"="):
            try:
                return strings[0].decode("ascii")
            except UnicodeDecodeError:
                pass
    return "=" + ",".join(r.hex() for r in found)


def token_rdatas(text: str) -> tuple[bytes, ...]:
    """The wire rdatas of the token TXT RRset whose text is ``text`` (``TOKEN_ABSENT``: none)."""
    if text == TOKEN_ABSENT:
        return ()
    if text.startswith("="):
        return tuple(bytes.fromhex(h) for h in text[1:].split(","))
    raw = text.encode("ascii")
    return (bytes([len(raw)]) + raw,)


class Chain:
    """What the token must be now for the writes of one ``apply`` that carry one (see the module's promises)."""

    def __init__(self, tokens: Iterable[str | None]) -> None:
        self._now: dict[str, str | None] = {t: t for t in tokens if t is not None}

    def expects(self, token: str) -> str | None:
        """The value the zone's token must have for a write that carries ``token`` (None: its chain broke)."""
        return self._now.get(token, token)

    def moved(self, expected: str, new: str) -> None:
        """One of this apply's conditional messages, expecting ``expected``, was applied and set ``new``."""
        for t, v in self._now.items():
            self._now[t] = new if v == expected else None

    def observed(self, current: str) -> list[str]:
        """A read found the zone's token at ``current``: break the chains that do not expect it; return the
        token values whose chain broke now."""
        broken = [t for t, v in self._now.items() if v is not None and v != current]
        for t in broken:
            self._now[t] = None
        return broken
