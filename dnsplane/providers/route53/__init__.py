"""The Route 53 provider, in modules of one idea each.

- ``provider``: ``Route53Provider`` — API calls, retries, compare-and-swap writes (guarantees there);
- ``reads``: reads in proportion to the keys asked (sweeps), the zone view writes are decided on, rounds;
- ``encoding``: weights and the marker TXT as Route 53 record sets;
- ``state``: what Route 53 holds for an endpoint, and the exact DELETE + CREATE that replace it;
- ``batches``: packing changes into change batches within Route 53's quotas;
- ``throttle``: the request budget (per process, or per account through the store) and the one-batch-per-zone lock;
- ``token``: the zone's write token as a record set, and the changes each change batch adds to move it;
- ``preflight``: what ``dnsplane up`` checks of the hosted zone before any actor starts.
"""

from dnsplane.providers.route53.batches import MAX_CHARS, MAX_RECORDS, batch_cost, pack_batches
from dnsplane.providers.route53.encoding import marker_values, parse_marker, scaled_weights, txt_strings
from dnsplane.providers.route53.provider import Route53Provider
from dnsplane.providers.route53.throttle import DEFAULT_BUDGET, ThrottleBudget, zone_lock

__all__ = [
    "DEFAULT_BUDGET", "MAX_CHARS", "MAX_RECORDS", "Route53Provider", "ThrottleBudget", "batch_cost",
    "marker_values", "pack_batches", "parse_marker", "scaled_weights", "txt_strings", "zone_lock",
]
