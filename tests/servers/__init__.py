"""Real servers started by test fixtures on loopback ports (BIND9's ``named``, ...)."""
