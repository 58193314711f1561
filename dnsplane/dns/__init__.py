"""dnsplane.dns"""
