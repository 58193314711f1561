"""dnsplane.providers"""
