"""What the RFC 2136 provider raises when the server, the key or the network says no.

Promises: every error names the operation, ``server:port`` and the zone, and says what to do:
- SERVFAIL, connection failures and timeouts are ``ProviderUnavailable`` (retry after 1 s);
- REFUSED, NOTAUTH, NOTZONE and any other rcode are ``Permanent`` with the likely cause
  (zone not served there, key not granted in ``update-policy``/``allow-*``, name outside the zone);
- TSIG failures are ``Permanent``: BADTIME points at clock skew, a bad key or signature at the
  key file versus the server's key.

Limits: prerequisite failures (YXDOMAIN, YXRRSET, NXDOMAIN, NXRRSET) are not errors here:
``PREREQ_FAILED`` lists them and the provider re-reads and resends.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.message
import dns.rcode
import dns.tsig

from dnsplane.errors import Permanent, ProviderUnavailable

PREREQ_FAILED = frozenset({dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET})
TSIG_ERRORS = (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadKey,
               dns.message.UnknownTSIGKey)


@dataclass(frozen=True, slots=True)
class Failures:
    """Builds the errors of one provider instance (``where`` = ``server:port zone …``)."""

    where: str
    zone: str
    key_name: str

    def rcode(self, rcode: int, doing: str) -> Exception:
        text = dns.rcode.Rcode.to_text(rcode)  # takes a plain int (dns.rcode.to_text wants an Rcode)
        at = f"{doing} at {self.where}"
        if rcode == dns.rcode.SERVFAIL:
            return ProviderUnavailable(reason=f"{at}: SERVFAIL (server failure; retrying)", retry_after=1.0)
        if rcode == dns.rcode.REFUSED:
            return Permanent(
                f"{at}: REFUSED — the server does not serve {self.zone} there or does not allow key "
                f"{self.key_name} to do this; check the zone name and grant the key in the zone's update-policy "
                "(or allow-update), allow-transfer and allow-query"
            )
        if rcode == dns.rcode.NOTAUTH:
            return Permanent(
                f"{at}: NOTAUTH — the server is not authoritative for {self.zone} or does not accept key "
                f"{self.key_name}; check the zone name, that it is a primary zone there, and the key"
            )
        if rcode == dns.rcode.NOTZONE:
            return Permanent(f"{at}: NOTZONE — a name of the update is outside {self.zone}; check the zone setting")
        return Permanent(f"{at}: {text}")

    def tsig(self, exc: Exception, doing: str) -> Exception:
        at = f"{doing} at {self.where}"
        if isinstance(exc, dns.tsig.PeerBadTime):
            return Permanent(f"{at}: TSIG BADTIME — clock skew between this host and the server; fix NTP on both")
        if isinstance(exc, dns.tsig.PeerBadKey | dns.tsig.PeerBadSignature | dns.tsig.BadSignature):
            return Permanent(
                f"{at}: TSIG key rejected ({type(exc).__name__}) — key {self.key_name} is unknown to the "
                "server or its secret/algorithm differ; compare the key file with the server's key"
            )
        return Permanent(f"{at}: TSIG verification failed: {exc}")

    def unavailable(self, exc: BaseException, doing: str) -> ProviderUnavailable:
        return ProviderUnavailable(reason=f"{doing} at {self.where}: {exc or type(exc).__name__}", retry_after=1.0)
