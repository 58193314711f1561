"""dnsplane.runtime"""
