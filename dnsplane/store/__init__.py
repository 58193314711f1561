"""dnsplane.store"""
