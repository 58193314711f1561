"""Response rate limiting (RRL) for the embedded server's UDP answers, as BIND and NSD do it.

What this module owns:
- ``RateLimit``: the settings (off unless a ``RateLimit`` is given to ``DnsServer``);
- ``ResponseLimiter``: decides, per UDP response, send / slip (send a truncated answer) / drop.

Why: a UDP answer can be sent to a forged source address, so an authoritative server is a
reflector. RRL bounds how many identical answers one netblock receives per second; a real
client behind that netblock that is limited still gets every ``slip``-th answer as a truncated
one (TC, no records) and retries over TCP, which cannot be forged and is never limited.

How responses are counted (one token bucket per account, ``responses_per_second`` tokens a
second, at most one second's worth banked):
- the account is the client's netblock (IPv4 /``ipv4_prefix``, IPv6 /``ipv6_prefix``) and the
  kind of answer: for NOERROR (an answer or no data) the question's name and type, for
  NXDOMAIN the netblock alone (every nonexistent name of one client shares one account, so a
  random-subdomain flood is limited as one stream: dnsplane serves one zone per process), for
  any other rcode (REFUSED, FORMERR, SERVFAIL, NOTIMP...) the netblock alone;
- a response over its account's budget is dropped, except every ``slip``-th one of that
  account (``slip`` 0: drop them all; 1: every one slips), which is sent truncated;
- at most ``max_accounts`` accounts are kept; past that the oldest is forgotten (its client
  starts again with a full bucket).

Limits: UDP only (TCP answers are never limited); no per-zone or per-qtype exemptions, no
log-only mode; the clock is ``time.monotonic`` read by the caller.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

NOERROR = 0
NXDOMAIN = 3


@dataclass(frozen=True, slots=True)
class RateLimit:
    """RRL settings: ``responses_per_second`` per account, every ``slip``-th excess one truncated."""

    responses_per_second: int
    slip: int = 2
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    max_accounts: int = 100_000

    def __post_init__(self) -> None:
        if self.responses_per_second < 1:
            raise ValueError("responses_per_second must be at least 1")
        if not 0 <= self.slip <= 10:
            raise ValueError("slip must be between 0 and 10")
        if not 0 <= self.ipv4_prefix <= 32 or not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("prefixes must be 0-32 (IPv4) and 0-128 (IPv6)")


@dataclass(slots=True)
class RateLimitStats:
    sent: int = 0
    dropped: int = 0
    slipped: int = 0


class _Account:
    __slots__ = ("excess", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.excess = 0  # responses over the budget since the account last had tokens


class ResponseLimiter:
    """Applies a ``RateLimit`` to UDP responses. Not thread-safe: one per server, used in its loop thread."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.stats = RateLimitStats()
        self._accounts: dict[tuple[object, ...], _Account] = {}
        self._blocks: dict[str, bytes] = {}  # client address -> netblock, a cache
        self._rate = float(limit.responses_per_second)
        self._v4_bytes, v4_bits = divmod(limit.ipv4_prefix, 8)
        self._v4_mask = (0xFF << (8 - v4_bits)) & 0xFF if v4_bits else 0
        self._v6_bytes, v6_bits = divmod(limit.ipv6_prefix, 8)
        self._v6_mask = (0xFF << (8 - v6_bits)) & 0xFF if v6_bits else 0

    def netblock(self, host: str) -> bytes:
        """The client's address cut to its netblock (packed bytes)."""
        if ":" in host:
            packed = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
            n, mask = self._v6_bytes, self._v6_mask
        else:
            packed = socket.inet_aton(host)
            n, mask = self._v4_bytes, self._v4_mask
        return packed[:n] + bytes((packed[n] & mask,)) if mask else packed[:n]

    def filter(self, resp: bytes, host: str, now: float) -> bytes | None:
        """``resp`` when within budget, a truncated copy when it slips, None when dropped."""
        block = self._blocks.get(host)
        if block is None:
            if len(self._blocks) >= self.limit.max_accounts:
                self._blocks.clear()
            block = self._blocks[host] = self.netblock(host)
        rcode = resp[3] & 0x0F
        if rcode == NOERROR:
            # the question's name (lower-cased: 0x20 must not make accounts) and type; a name with a zero
            # byte inside a label is cut there, which only merges its account with another's
            end = resp.find(0, 12) + 3
            acct_key: tuple[object, ...] = (block, rcode, resp[12:end].lower())
        else:
            acct_key = (block, rcode)
        accounts = self._accounts
        acct = accounts.get(acct_key)
        rate = self._rate
        if acct is None:
            if len(accounts) >= self.limit.max_accounts:
                del accounts[next(iter(accounts))]  # the oldest account
            acct = accounts[acct_key] = _Account(rate, now)
        else:
            tokens = acct.tokens + (now - acct.updated) * rate
            acct.tokens = rate if tokens > rate else tokens
            acct.updated = now
        if acct.tokens >= 1.0:
            acct.tokens -= 1.0
            acct.excess = 0
            self.stats.sent += 1
            return resp
        acct.excess += 1
        slip = self.limit.slip
        if slip and acct.excess % slip == 0:
            self.stats.slipped += 1
            return truncated(resp)
        self.stats.dropped += 1
        return None


def question_end(resp: bytes) -> int | None:
    """Offset past the (uncompressed) question of a response with QDCOUNT 1, or None."""
    i = 12
    n = len(resp)
    while i < n:
        ln = resp[i]
        if ln == 0:
            return i + 5 if i + 5 <= n else None
        if ln > 63:
            return None
        i += ln + 1
    return None


def truncated(resp: bytes) -> bytes:
    """The slipped form of ``resp``: same ID, flags and rcode with TC set, the question, no records."""
    end = question_end(resp) if resp[4:6] == b"\x00\x01" else None
    question = resp[12:end] if end is not None else b""
    qdcount = b"\x00\x01" if end is not None else b"\x00\x00"
    return resp[:2] + bytes((resp[2] | 0x02, resp[3])) + qdcount + b"\x00" * 6 + question
