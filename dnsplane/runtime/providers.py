"""Open the provider a fleet file selects, and say where its answers can be seen over DNS.

| kind      | provider                         | where the verifier asks DNS            |
|-----------|----------------------------------|----------------------------------------|
| embedded  | records in <data-dir>/dns.sqlite | dnsplane's own server (``up --dns``)   |
| rfc2136   | the RFC 2136 server (e.g. BIND)  | that server, at the same address       |
| route53   | the hosted zone, through boto3   | nowhere from here: the provider's read |

Each kind's settings arrive as its typed config (``dnsplane.providerconfig``), validated by ``config``
and handed whole to the provider's constructor: no option is named here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, assert_never

from dnsplane.config import Fleet
from dnsplane.providerconfig import EmbeddedConfig, Rfc2136Config, Route53Config
from dnsplane.providers.base import Provider

if TYPE_CHECKING:
    from dnsplane.providers.route53.throttle import BucketStore


def open_provider(fleet: Fleet, data_dir: Path, store: BucketStore | None = None) -> Provider:
    """The provider ``fleet.provider`` configures (the embedded one in ``data_dir``), not yet read from.
    Route 53 draws on its account's request budget in ``store`` (shared by every process using that
    store), else on the process's own."""
    match fleet.provider:
        case EmbeddedConfig():
            from dnsplane.providers.embedded import EmbeddedProvider

            return EmbeddedProvider(data_dir / "dns.sqlite", fleet.zone)
        case Rfc2136Config() as cfg:
            from dnsplane.providers.rfc2136 import Rfc2136Provider

            return Rfc2136Provider(fleet.zone, cfg)
        case Route53Config() as r53:
            from dnsplane.providers.route53 import Route53Provider
            from dnsplane.providers.route53.throttle import SharedBudget, account_of

            budget = SharedBudget(store, account_of(r53.account)) if store is not None else None
            return Route53Provider(fleet.zone, r53, budget=budget)
    assert_never(fleet.provider)


def dns_view(fleet: Fleet, embedded: tuple[str, int]) -> tuple[str, int] | None:
    """The address whose DNS answers the verifier checks, or None when it can only read the provider."""
    match fleet.provider:
        case EmbeddedConfig():
            return embedded
        case Rfc2136Config(server=server, port=port):
            return server, port
    return None
