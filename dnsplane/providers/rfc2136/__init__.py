"""The RFC 2136 provider (BIND9 and any dynamic-UPDATE server, TSIG-signed), in modules of one idea each.

- ``provider``: ``Rfc2136Provider`` — what to send, compare-and-swap, resend rounds (guarantees there);
- ``keys``: BIND key files → ``TsigKey``;
- ``marker``: how an endpoint is stored (records + marker TXT) and decoded back;
- ``wire``: UPDATE and query messages built, responses parsed, straight on bytes;
- ``tsig``: TSIG signing and verification on bytes;
- ``transport``: pipelined TCP exchanges with a server;
- ``reads``: consistent snapshots (SOA-bracketed queries, AXFR);
- ``token``: the zone's write token (a TXT at ``_dnsplane-token.<zone>``) and one apply's chain through it;
- ``failures``: rcodes and TSIG errors → ``Permanent`` / ``ProviderUnavailable``.

``wire`` and ``tsig`` are hand-written for speed; ``tests/providers/test_rfc2136_wire.py`` checks
them against dnspython, the reference.
"""

from dnsplane.providers.rfc2136.keys import TsigKey, parse_key_file
from dnsplane.providers.rfc2136.provider import Rfc2136Provider
from dnsplane.providers.rfc2136.reads import AXFR_THRESHOLD

__all__ = ["AXFR_THRESHOLD", "Rfc2136Provider", "TsigKey", "parse_key_file"]
