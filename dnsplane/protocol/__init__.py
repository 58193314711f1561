"""dnsplane.protocol"""
