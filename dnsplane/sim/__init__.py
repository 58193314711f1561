"""dnsplane.sim"""
