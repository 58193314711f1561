"""Open the provider a fleet file selects, and say where its answers can be seen over DNS.

| kind      | provider                         | where the verifier asks DNS            |
|-----------|----------------------------------|----------------------------------------|
| embedded  | records in <data-dir>/dns.sqlite | dnsplane's own server (``up --dns``)   |
| rfc2136   | the RFC 2136 server (e.g. BIND)  | that server, at the same address       |
| route53   | the hosted zone, through boto3   | nowhere from here: the provider's read |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnsplane.config import Fleet
from dnsplane.errors import InvalidConfig
from dnsplane.providers.base import Provider


def open_provider(fleet: Fleet, data_dir: Path) -> Provider:
    cfg = fleet.provider
    match cfg.kind:
        case "embedded":
            from dnsplane.providers.embedded import EmbeddedProvider

            return EmbeddedProvider(data_dir / "dns.sqlite", fleet.zone)
        case "rfc2136":
            from dnsplane.providers.rfc2136 import Rfc2136Provider

            kwargs: dict[str, Any] = {
                k: v for k, v in cfg.options if k in ("key_file", "key_name", "timeout", "max_batch")}
            return Rfc2136Provider(fleet.zone, str(cfg.get("server")), int(cfg.get("port", 53)),  # type: ignore[call-overload]
                                   **kwargs)
        case "route53":
            from dnsplane.providers.route53 import Route53Provider

            r53: dict[str, Any] = {k: v for k, v in cfg.options if k in ("endpoint_url", "region", "wait_insync")}
            return Route53Provider(fleet.zone, str(cfg.get("hosted_zone_id")), **r53)
    raise InvalidConfig(fleet.source, 0, f"unknown provider kind {cfg.kind!r}")


def dns_view(fleet: Fleet, embedded: tuple[str, int]) -> tuple[str, int] | None:
    """The address whose DNS answers the verifier checks, or None when it can only read the provider."""
    cfg = fleet.provider
    if cfg.kind == "embedded":
        return embedded
    if cfg.kind == "rfc2136":
        return str(cfg.get("server")), int(cfg.get("port", 53))  # type: ignore[call-overload]
    return None
