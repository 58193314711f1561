"""dnsplane: a DNS control plane whose writers cannot race (see docs/DESIGN.md)."""

__version__ = "0.1.0"
