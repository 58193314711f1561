"""What ``dnsplane up`` checks of a Route 53 hosted zone before it starts any actor (``runtime/preflight``).

Three calls, in this order; each failure is ``Permanent`` (``dnsplane up`` prints it and exits 2, no
traceback, nothing started), with what to do:

| call                                              | failure                                          |
|---------------------------------------------------|--------------------------------------------------|
| ``GetHostedZone``                                 | no credentials, endpoint not reachable, access   |
|                                                   | denied, no such zone, a zone of another name     |
| ``ListResourceRecordSets`` (``MaxItems=1``)       | access denied (the provider reads this way)      |
| ``ChangeResourceRecordSets`` that cannot apply    | access denied (the provider writes this way)     |

The change probe DELETEs record sets that cannot exist (a TXT ``"dnsplane-preflight <nonce>"`` at the
marker name of the fleet's first endpoint and at the zone's write token, and a weighted set of set
identifier ``dnsplane-preflight-<nonce>`` at the first endpoint of each type): Route 53 checks the
caller's permission before the batch (an IAM policy may name record names and types: these are the ones
dnsplane writes), then refuses the whole batch as ``InvalidChangeBatch`` (not found), so nothing changes.

Route 53 busy (throttling, 5xx) is not permanent: it stays ``ProviderUnavailable`` and ``dnsplane up``
retries. An endpoint that cannot be reached is: Route 53 itself always answers, so an unreachable
``endpoint_url`` or region is a mistake in the fleet file or the network, not a server starting with us.

Limits: the probe proves the right to change the names it names, not every name of the fleet (an IAM
condition on record names that leaves some out shows at their first write: quarantined and shown).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from dnsplane.errors import Permanent, ProviderUnavailable
from dnsplane.model import EndpointKey, marker_name, normalise_name
from dnsplane.providers.route53.provider import Route53Provider, _Refused
from dnsplane.providers.route53.token import token_name

_UNSPECIFIED = {"A": "0.0.0.0", "AAAA": "::"}  # never written (I5): no set of the probe's id can hold it


def _unreachable(provider: Route53Provider, exc: ProviderUnavailable) -> Permanent | None:
    """``Permanent`` for a call that never reached Route 53 (no credentials, connection refused, no such
    host, an endpoint that answers but not as Route 53); None for one Route 53 answered busy."""
    from botocore.exceptions import BotoCoreError, NoCredentialsError
    from botocore.parsers import ResponseParserError

    cause = exc.__cause__
    where = provider.config.endpoint_url or f"the {provider.config.region} endpoint"
    if isinstance(cause, NoCredentialsError):
        return Permanent("route53: no AWS credentials found (boto3 looks in AWS_ACCESS_KEY_ID / "
                         "AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials, then an instance role)")
    if isinstance(cause, ResponseParserError):
        said = str(cause).splitlines()[0][:200]
        return Permanent(f"route53: {where} does not answer as the Route 53 API does ({said}). Check the "
                         "provider's endpoint_url in the fleet file")
    if isinstance(cause, BotoCoreError):
        return Permanent(f"route53: cannot reach {where}: {cause}. Check the provider's endpoint_url and region "
                         "in the fleet file, and the network")
    return None


def _call(provider: Route53Provider, op: str, **kwargs: Any) -> Any:
    try:
        return provider._call(op, **kwargs)
    except ProviderUnavailable as exc:
        raise _unreachable(provider, exc) or exc from exc


def check_zone_name(provider: Route53Provider) -> None:
    """The hosted zone exists, can be read, and is the fleet's zone."""
    zone = _call(provider, "get_hosted_zone", Id=provider.hosted_zone_id).get("HostedZone", {})
    if not zone.get("Name"):  # an answer that parses (a web page is XML enough) but holds no hosted zone
        where = provider.config.endpoint_url or f"the {provider.config.region} endpoint"
        raise Permanent(f"route53: {where} does not answer as the Route 53 API does (GetHostedZone "
                        f"{provider.hosted_zone_id} answered without a hosted zone). Check the provider's "
                        "endpoint_url in the fleet file")
    name = normalise_name(str(zone.get("Name", "")))
    if name != provider.zone:
        raise Permanent(
            f"route53: hosted zone {provider.hosted_zone_id} is {name}, not the fleet's zone {provider.zone}: "
            f"its records would be written under the wrong name. Set hosted_zone_id to the id of the hosted zone "
            f"named {provider.zone} (aws route53 list-hosted-zones-by-name --dns-name {provider.zone})")


def probe_changes(zone: str, keys: Sequence[EndpointKey], nonce: str) -> list[dict[str, Any]]:
    """The change probe's DELETEs (see the module docstring): none of them can match a record set."""
    txt = {"Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": f'"dnsplane-preflight {nonce}"'}]}
    names = [token_name(zone), *([marker_name(keys[0])] if keys else [])]
    sets: list[dict[str, Any]] = [{"Name": n, **txt} for n in names]
    firsts = {k.rtype: k for k in reversed(keys)}
    sets += [{"Name": k.name, "Type": t, "SetIdentifier": f"dnsplane-preflight-{nonce}", "Weight": 0, "TTL": 60,
              "ResourceRecords": [{"Value": _UNSPECIFIED[t]}]} for t, k in sorted(firsts.items())]
    return [{"Action": "DELETE", "ResourceRecordSet": s} for s in sets]


def check_route53(provider: Route53Provider, keys: Sequence[EndpointKey]) -> None:
    """Every check of the module docstring; raises ``Permanent`` (exit 2) or ``ProviderUnavailable`` (retry)."""
    check_zone_name(provider)
    _call(provider, "list_resource_record_sets", HostedZoneId=provider.hosted_zone_id, MaxItems="1")
    changes = probe_changes(provider.zone, keys, secrets.token_hex(8))
    try:
        _call(provider, "change_resource_record_sets", HostedZoneId=provider.hosted_zone_id,
              ChangeBatch={"Comment": "dnsplane preflight: deletes nothing", "Changes": changes})
    except _Refused:
        return  # allowed, and refused as it must be: nothing to delete
