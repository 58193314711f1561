"""dnsplane.dns: an embedded authoritative DNS server for dnsplane zones."""

from dnsplane.dns.server import DnsServer, ZoneSource

__all__ = ["DnsServer", "ZoneSource"]
