"""Alerts (issue 12, part 3): what the verifier finds and repairs on a real BIND, a freeze and a plan the zone
guard holds each reach a webhook as JSON, retried when the webhook fails, while dnsplane goes on; each is
also a log line and a count in /metrics."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.realworld.harness import World, read_marker, wait_for
from tests.realworld.test_api import metrics

LB1, LB2, LB3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
WWW = "www.demo.test."


class Webhook:
    """A webhook receiver on loopback that answers 500 to its first ``fail_first`` posts."""

    def __init__(self, fail_first: int = 1) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.attempts += 1
                if hook.attempts <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                hook.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kinds(self) -> list[str]:
        return [a["kind"] for a in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_findings_repairs_a_freeze_and_a_held_plan_reach_the_webhook(world: World) -> None:
    hook = Webhook(fail_first=1)
    try:
        targets = [world.target("lb-1", LB1), world.target("lb-2", LB2), world.target("lb-3", LB3)]
        names = [f"e{i}" for i in range(10)]
        fleet = world.fleet(targets, {**{n: ["lb-1", "lb-2", "lb-3"] for n in names}, "www": ["lb-1", "lb-3"]})
        fleet.write_text(fleet.read_text() + "guard:\n  max_change: 50%\n")
        up = world.dnsplane(fleet, extra_args=["--alert-webhook", hook.url])
        prober = world.prober(fleet)
        wait_for("www served", lambda: prober.served(WWW) == {LB1, LB3}, detail=world.logs)

        world.hand_write_marker(WWW, "written by hand")
        wait_for("the hand-written marker repaired", lambda: (read_marker(world.named, WWW) or "")  # type: ignore[arg-type]
                 .startswith("dnsplane g="), detail=world.logs)
        wait_for("a finding and a repair at www", lambda: {"finding", "repaired"} <= set(hook.kinds()),
                 detail=lambda: f"{hook.received}\n{world.logs()}")
        finding = next(a for a in hook.received if a["kind"] == "finding")
        assert finding["endpoint"] == "www.demo.test. A" and finding["zone"] == "demo.test." and finding["problem"]
        assert hook.attempts > len(hook.received), "the first post failed (500) and was retried"

        world.listeners["lb-2"].down()  # 10 of 11 endpoints change: more than 50 %
        wait_for("a held plan alerted", lambda: "held" in hook.kinds(), detail=lambda: f"{hook.received}")
        held = next(a for a in hook.received if a["kind"] == "held")
        assert held["changed"] == 10 and held["existing"] == 11, held

        assert up.cli("freeze", "--reason", "INC-9", "--by", "tester").returncode == 0
        wait_for("a freeze alerted", lambda: "frozen" in hook.kinds(), detail=lambda: f"{hook.received}")
        frozen = next(a for a in hook.received if a["kind"] == "frozen")
        assert frozen["by"] == "tester" and frozen["reason"] == "INC-9"

        base = (up.instance() or {})["api"]
        m = metrics(base)
        assert m['dnsplane_alerts_total{kind="frozen"}'] == 1 and m['dnsplane_alerts_total{kind="finding"}'] >= 1
        wait_for("every received post counted as sent", lambda: metrics(base)[
            'dnsplane_alert_posts_total{outcome="sent"}'] == len(hook.received))
        assert "alert finding: www.demo.test. A" in up.log()
        prober.stop()
        prober.assert_invariants(world.logs)
    finally:
        hook.close()


def test_a_secondary_that_stops_answering_is_alerted_and_its_return_too(embedded_world: World) -> None:
    """The secondaries watch on a real BIND secondary fed by dnsplane as a hidden primary: SIGSTOPped, it answers
    nothing (``secondary-unreachable``); SIGCONTinued, it answers again and serves the primary's generations."""
    import os
    import signal

    from tests.realworld.test_hidden_primary import Primary, converged
    from tests.servers.named import free_port
    from tests.servers.secondaries import require, start_secondary

    require("bind")
    world = embedded_world
    hook = Webhook(fail_first=0)
    port = free_port()
    primary = Primary(world, notify=[port], extra_args=("--alert-webhook", hook.url, "--verify-rate", "50"))
    sec = start_secondary("bind", world.workdir / "bind", "demo.test.", primary.up.dns, primary.key, port=port)
    try:
        wait_for("the secondary to hold dnsplane's zone", lambda: converged(primary, sec), 30,
                 lambda: world.logs() + "\n" + sec.log_tail())
        assert sec.process is not None
        wait_for("the watch to have checked the secondary", lambda: ((primary.up.instance() or {}).get("secondaries")
                 or {}).get(f"127.0.0.1:{port}", {}).get("checked", 0) > 0, detail=world.logs)
        os.kill(sec.process.pid, signal.SIGSTOP)
        try:
            wait_for("an unreachable secondary alerted", lambda: any(
                a["kind"] == "finding" and a.get("problem") == "secondary-unreachable" for a in hook.received),
                detail=lambda: f"{hook.received}\n{world.logs()}")
            wait_for("status to say so", lambda: f"server 127.0.0.1:{port}: answers nothing"
                     in primary.up.cli("status").stdout, detail=world.logs)
        finally:
            os.kill(sec.process.pid, signal.SIGCONT)
        wait_for("its return alerted", lambda: any(
            a["kind"] == "repaired" and a.get("problem") == "secondary-unreachable" for a in hook.received),
            detail=lambda: f"{hook.received}\n{world.logs()}")
        assert not any(a.get("problem") == "secondary-stale" for a in hook.received), hook.received
        assert hook.received[0]["server"] == f"127.0.0.1:{port}"
    finally:
        sec.stop()
        hook.close()


def test_a_verify_server_that_never_got_the_records_is_alerted_until_it_serves_them(world: World,
                                                                                    tmp_path: Path) -> None:
    """``up --verify-server``: another authoritative server of the zone (as Route 53's name servers are to
    a hosted zone), here a second real ``named`` that never got dnsplane's records: every endpoint asked
    there is NXDOMAIN, alerted ``secondary-nxdomain`` after the 10 s grace and shown by ``status``; once a
    person copies the primary's records and markers there, each is alerted ``repaired``."""
    import dns.message
    import dns.query
    import dns.rdatatype

    from tests.realworld.harness import marker_name
    from tests.servers.named import start_named

    public = start_named(tmp_path / "public")
    hook = Webhook(fail_first=0)
    try:
        targets = [world.target("lb-1", "192.0.2.11")]
        fleet = world.fleet(targets, {"api": ["lb-1"], "www": ["lb-1"]})
        up = world.dnsplane(fleet, extra_args=["--verify-server", f"127.0.0.1:{public.port}",
                                               "--alert-webhook", hook.url])
        assert world.named is not None
        primary = (world.named.host, world.named.port)
        world.wait_served(primary, fleet)
        names = {"api.demo.test. A", "www.demo.test. A"}

        def alerted(kind: str, problem: str) -> set[str]:
            return {a["endpoint"] for a in hook.received if a["kind"] == kind and a.get("problem") == problem}

        wait_for("both endpoints alerted NXDOMAIN there", lambda: alerted("finding", "secondary-nxdomain") == names,
                 deadline=40, detail=lambda: f"{hook.received}\n{world.logs()}")
        assert f"server 127.0.0.1:{public.port}: " in (status := up.cli("status").stdout), status
        assert "2 nxdomain" in status, status
        copy = public.update()
        for name in ("api.demo.test.", "www.demo.test."):
            for owner, rdtype in ((name, dns.rdatatype.A), (marker_name(name, "A"), dns.rdatatype.TXT)):
                reply = dns.query.udp(dns.message.make_query(owner, rdtype), primary[0], port=primary[1], timeout=2)
                copy.replace(owner, *[rr for rr in reply.answer if rr.rdtype == rdtype])
        public.send(copy)
        wait_for("both alerted right again", lambda: alerted("repaired", "secondary-nxdomain") == names,
                 deadline=20, detail=lambda: f"{hook.received}\n{world.logs()}")
        assert not alerted("finding", "secondary-stale") and not alerted("finding", "secondary-drift"), hook.received
        wait_for("status in step", lambda: "in step" in up.cli("status").stdout)
    finally:
        public.stop()
        hook.close()


def test_each_verifier_finding_made_on_purpose_on_a_real_named_is_alerted_and_its_repair_too(world: World) -> None:
    """One hand edit per class the verifier reports, each on an endpoint of its own, made on a real ``named``
    while ``up`` runs: every finding reaches the webhook under its class, and each endpoint's repair after."""
    import re

    from tests.realworld.harness import addresses, marker_name, write_marker

    assert world.named is not None
    named = world.named
    hook = Webhook(fail_first=0)
    try:
        targets = [world.target("lb-1", LB1), world.target("lb-2", LB2)]
        edits = ["nxdomain", "empty-answer", "marker-missing", "marker-mismatch", "foreign-addresses", "marker-edited"]
        names = {problem: f"{problem}.demo.test." for problem in edits}
        fleet = world.fleet(targets, {name.split(".")[0]: ["lb-1", "lb-2"] for name in names.values()})
        world.dnsplane(fleet, extra_args=["--alert-webhook", hook.url])
        server = (named.host, named.port)
        world.wait_served(server, fleet)
        wait_for("every marker written", lambda: all(read_marker(named, n) for n in names.values()))

        u = named.update()
        u.delete(names["nxdomain"])
        u.delete(marker_name(names["nxdomain"], "A"))
        u.delete(names["empty-answer"], "A")
        u.delete(marker_name(names["marker-missing"], "A"), "TXT")
        u.replace(names["marker-mismatch"], 300, "A", *sorted(addresses(server, names["marker-mismatch"])))  # TTL
        u.add(names["foreign-addresses"], 30, "A", "203.0.113.77")
        named.send(u)
        sealed = read_marker(named, names["marker-edited"]) or ""
        write_marker(named, names["marker-edited"], re.sub(r"g=(\d+)", lambda m: f"g={int(m[1]) + 5}", sealed))

        def alerted(kind: str) -> dict[str, str]:
            return {a["endpoint"]: a["problem"] for a in hook.received if a["kind"] == kind}

        want = {f"{name} A": problem for problem, name in names.items()}
        wait_for("each finding alerted under its class", lambda: {k: v for k, v in alerted("finding").items()
                                                                  if k in want} == want,
                 detail=lambda: f"{hook.received}\n{world.logs()}")
        wait_for("each repair alerted", lambda: set(alerted("repaired")) >= set(want),
                 detail=lambda: f"{hook.received}\n{world.logs()}")
        assert all(addresses(server, n) == {LB1, LB2} for n in names.values())
    finally:
        hook.close()
