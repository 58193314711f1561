"""The built-in demo fleet (fleet.yaml), read by dnsplane.config.demo_fleet."""
