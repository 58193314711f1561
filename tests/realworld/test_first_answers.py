"""The embedded server's first answers on a real ``dnsplane up``: a name the fleet declares is never
NXDOMAIN, not even before the first plan is applied (resolvers would cache that for the SOA's
negative TTL, 60 s), and after a restart the last applied records are served from the first answer.

The first plan is made slow on purpose: the only target's health check is an HTTP GET to a listener
that accepts and never answers, so the planner waits out ``--health-grace`` (3 s) before it
publishes. A thread probes from before the process starts, so it sees the port's very first answers.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.query
import dns.rcode

from tests.realworld.harness import World, wait_for

A1 = "192.0.2.10"
GRACE = "3"
# (name, type) probed: an endpoint, its marker, a deeper endpoint and the empty non-terminal above it
QUESTIONS = [
    ("api.demo.test.", "A"),
    ("_dnsplane-a.api.demo.test.", "TXT"),
    ("svc.edge.demo.test.", "A"),
    ("edge.demo.test.", "A"),
]


@dataclass
class FirstAnswers:
    """Asks every question in turn over UDP, from before the server listens; keeps each rcode seen."""

    port: int
    seen: list[tuple[str, str, str, frozenset[str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True, name="first-answers")
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for name, rtype in QUESTIONS:
                try:
                    r = dns.query.udp(dns.message.make_query(name, rtype), "127.0.0.1", port=self.port, timeout=0.2)
                except (dns.exception.Timeout, OSError):  # not listening yet (refused) or no answer
                    continue
                addrs = frozenset(rd.to_text() for rrset in r.answer for rd in rrset)
                self.seen.append((name, rtype, dns.rcode.to_text(r.rcode()), addrs))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def rcodes(self, name: str) -> list[str]:
        return [rcode for n, _, rcode, _ in self.seen if n == name]

    def answered(self, name: str) -> bool:
        return any(n == name and addrs for n, _, _, addrs in self.seen)


def silent_http() -> socket.socket:
    """A listener whose connections are accepted by the kernel and never answered: the check hangs."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def test_declared_names_are_never_nxdomain_before_the_first_plan_nor_after_a_restart(embedded_world: World) -> None:
    world = embedded_world
    hang = silent_http()
    try:
        check = {"http": f"http://127.0.0.1:{hang.getsockname()[1]}/health", "timeout": 10}
        fleet = world.workdir / "fleet.yaml"
        fleet.write_text(
            "zone: demo.test.\n"
            "defaults: {ttl: 30}\n"
            f"targets:\n  lb-1:\n    addresses: [{A1}]\n    check: {check}\n"
            "endpoints:\n"
            "  - {name: api, targets: [lb-1]}\n"
            "  - {name: svc.edge, targets: [lb-1]}\n"
        )
        up = world.dnsplane(fleet, start=False, extra_args=["--health-grace", GRACE])
        probe = FirstAnswers(up.dns_port)
        try:
            up.start()
            wait_for(
                "both endpoints to be served",
                lambda: probe.answered("api.demo.test.") and probe.answered("svc.edge.demo.test."),
                detail=up.log_tail,
            )
        finally:
            probe.close()
        nxdomain = [s for s in probe.seen if s[2] == "NXDOMAIN"]
        assert not nxdomain, f"NXDOMAIN for a declared name before its first plan: {nxdomain[:5]}"
        before = probe.rcodes("api.demo.test.")
        assert "SERVFAIL" in before[:1], f"the first answer was not SERVFAIL (the window was not probed): {before[:5]}"
        assert all(rcode in ("SERVFAIL", "NOERROR") for _, _, rcode, _ in probe.seen)

        up.stop()
        again = FirstAnswers(up.dns_port)
        try:
            up.start()
            wait_for("40 answers after the restart", lambda: len(again.seen) >= 40, detail=up.log_tail)
        finally:
            again.close()
        for name, rtype, rcode, addrs in again.seen:  # the last applied records, from the very first answer
            if rtype == "A" and name != "edge.demo.test.":
                assert (rcode, addrs) == ("NOERROR", {A1}), again.seen[:8]
            else:
                assert rcode == "NOERROR", again.seen[:8]
    finally:
        hang.close()
