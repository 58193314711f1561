"""The HTTP API and /metrics of a running ``dnsplane up`` (issue 12, parts 4 and 5), over real HTTP on
loopback: reads without a token; writes refused without one (401), with a wrong one (401), or when none
is configured (403); a refused control is 409 and changes nothing; the OpenAPI document lists the
operations; the Prometheus exposition parses, follows the conventions, and its values follow known actions
(a plan applied, a freeze, a drain); an API that cannot listen leaves DNS and the actors running."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
from prometheus_client.parser import text_string_to_metric_families

from tests.realworld.harness import World, addresses, wait_for

LB1, LB2, LB3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
TOKEN = "t0ken-for-tests"


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None,
         token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            raw = res.read()
            status = res.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    text = raw.decode()
    return status, (json.loads(text) if text.startswith(("{", "[")) else text)


def metrics(base: str) -> dict[str, float]:
    """Every sample of /metrics, by name and labels (``name{a="b"}``)."""
    status, text = call(base, "GET", "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        # Prometheus conventions: one prefix, snake case, counters as ``_total``, times in seconds
        assert re.fullmatch(r"dnsplane_[a-z][a-z_]*[a-z]", family.name), family.name
        assert family.documentation, f"{family.name} has no HELP text"
        assert family.type in ("counter", "gauge", "histogram"), family.type
        assert family.type != "histogram" or family.name.endswith("_seconds"), family.name
        assert "timestamp" not in family.name or family.name.endswith("_timestamp_seconds"), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name in (family.name + "_total", family.name + "_created"), sample.name
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_the_api_reads_writes_with_the_token_and_its_metrics_follow(world: World, tmp_path: Path) -> None:
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2), world.target("lb-3", LB3)]
    fleet = world.fleet(targets, [{"name": f"e{i}", "targets": ["lb-1", "lb-2", "lb-3"]} for i in range(30)],
                        provider="embedded")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    up = world.dnsplane(fleet, extra_args=["--api-token-file", str(token_file)])
    world.wait_served(up.dns, fleet)
    base = wait_for("the API's address", lambda: (up.instance() or {}).get("api"))
    assert "curl " + base in up.log(), "the banner says where the API is"

    status, body = call(base, "GET", "/api/v1/status")
    assert status == 200 and body["zone"] == "demo.test." and body["endpoints"] == 30 and body["head"] >= 1
    status, page = call(base, "GET", "/api/v1/endpoints?offset=10&limit=5")
    assert status == 200 and page["total"] == 30 and len(page["items"]) == 5
    assert page["items"][0]["endpoint"] == "e18.demo.test. A", "zone order: e0, e1, e10, e11, ..."
    assert {t["id"] for t in page["items"][0]["targets"]} == {"lb-1", "lb-2", "lb-3"}
    assert call(base, "GET", "/api/v1/endpoints?limit=5000")[0] == 422
    status, spec = call(base, "GET", "/openapi.json")
    assert status == 200 and {"/api/v1/freeze", "/api/v1/drain/{target}", "/metrics"} <= set(spec["paths"])

    head = up.store_head()
    wait_for("every enactor at the head", lambda: all(
        metrics(base).get(f'dnsplane_applied_generation{{enactor="enactor-{i}"}}') == head for i in (1, 2)))
    m = metrics(base)
    assert m["dnsplane_plan_generation"] == head and m["dnsplane_endpoints"] == 30 and m["dnsplane_frozen"] == 0
    assert m['dnsplane_enactor_lag_generations{enactor="enactor-1"}'] == 0
    assert m['dnsplane_targets{state="up"}'] == 3
    assert m['dnsplane_health_checks_total{result="up"}'] >= 3 and m['dnsplane_health_checks_total{result="down"}'] == 0
    checked = m["dnsplane_health_check_duration_seconds_count"]
    assert checked >= 3 and m['dnsplane_health_check_duration_seconds_bucket{le="+Inf"}'] == checked
    written = sum(v for k, v in m.items() if k.startswith("dnsplane_enactor_results_total") and 'result="writes"' in k)
    assert written == 30, "each endpoint written once, by one of the enactors"
    assert m["dnsplane_verifier_deferred_repairs_total"] == 0
    wait_for("a verifier round", lambda: call(base, "GET", "/api/v1/endpoints?limit=1")[1]["items"][0]["verifier"]
             == "right")
    first = call(base, "GET", "/api/v1/endpoints?limit=1")[1]["items"][0]
    assert first["written"]["generation"] >= 1 and first["written"]["by"].startswith("enactor-"), first
    assert first["written"]["action"] == "write"
    status, found = call(base, "GET", "/api/v1/findings")
    assert status == 200 and found["verifier"]["by_problem"] == {} and found["servers"] == {}, found

    # DNS responses by rcode and their sampled latency, from this process and every answering worker
    before = m.get('dnsplane_dns_responses_total{rcode="NXDOMAIN"}', 0)
    timed_before = m.get('dnsplane_dns_answer_duration_seconds_count{rcode="NXDOMAIN"}', 0)
    for _ in range(160):
        reply = dns.query.udp(dns.message.make_query("nothere.demo.test.", "A"), up.dns[0], port=up.dns[1], timeout=2)
        assert reply.rcode() == dns.rcode.NXDOMAIN
    m = metrics(base)
    assert m['dnsplane_dns_responses_total{rcode="NXDOMAIN"}'] - before == 160
    assert m['dnsplane_dns_responses_total{rcode="NOERROR"}'] >= 30, "the prober's and the verifier's queries"
    timed = m['dnsplane_dns_answer_duration_seconds_count{rcode="NXDOMAIN"}']
    assert 1 <= timed - timed_before <= 160 / 2, "about one query in 16 timed (each answering process its own)"
    assert m['dnsplane_dns_answer_duration_seconds_bucket{le="+Inf",rcode="NXDOMAIN"}'] == timed
    assert 0 < m['dnsplane_dns_answer_duration_seconds_sum{rcode="NXDOMAIN"}'] < timed * 0.05

    for token in (None, "wrong"):
        status, body = call(base, "POST", "/api/v1/freeze", {"reason": "x"}, token=token)
        assert status == 401, body
    assert call(base, "GET", "/api/v1/status")[1]["frozen"] is None

    status, body = call(base, "POST", "/api/v1/drain/lb-9", {"for_seconds": 60}, token=TOKEN)
    assert status == 409 and body["detail"]["changed"] is False, body
    status, body = call(base, "POST", "/api/v1/drain/lb-2", {"reason": "no expiry given"}, token=TOKEN)
    assert status == 422, body
    status, body = call(base, "POST", "/api/v1/drain/lb-2", {"for_seconds": 3600, "reason": "patching"}, token=TOKEN)
    assert status == 200 and len(body["leaves"]) == 30, body
    wait_for("lb-2 drained from e0", lambda: addresses(up.dns, "e0.demo.test.") and LB2 not in {
        a for _ in range(20) for a in addresses(up.dns, "e0.demo.test.")})
    assert metrics(base)['dnsplane_dials{kind="drain"}'] == 1

    status, body = call(base, "POST", "/api/v1/freeze", {"reason": "INC-7", "by": "tester"}, token=TOKEN)
    assert status == 200 and body["frozen"]["quiet"] and body["frozen"]["by"] == "tester", body
    assert metrics(base)["dnsplane_frozen"] == 1
    wait_for("the writers held", lambda: metrics(base).get('dnsplane_actor_held{actor="enactor-1"}') == 1)
    status, journal = call(base, "GET", "/api/v1/journal")
    assert [(a["action"], a["by"]) for a in journal] == [("drain", "api@127.0.0.1"), ("freeze", "tester")], journal
    assert call(base, "POST", "/api/v1/unfreeze", {}, token=TOKEN)[0] == 200
    status, history = call(base, "GET", "/api/v1/journal?endpoint=e0.demo.test")
    assert status == 200 and history and history[0]["action"] == "write", history
    up.wait_every_actor_running()


def test_without_a_token_the_api_is_read_only_and_a_taken_port_leaves_dns_running(embedded_world: World) -> None:
    world = embedded_world
    fleet = world.fleet([world.target("lb-1", LB1)], {"api": ["lb-1"]}, provider="embedded")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        blocked = world.dnsplane(fleet, name="blocked", extra_args=["--api", f"127.0.0.1:{taken.getsockname()[1]}"])
        world.wait_served(blocked.dns, fleet)
        instance = blocked.instance() or {}
        assert instance.get("api") is None and "Address already in use" in str(instance.get("api_error")), instance
        assert "HTTP API not started" in blocked.log()
        blocked.wait_every_actor_running()
    finally:
        taken.close()
    blocked.stop()
    open_ = world.dnsplane(fleet, name="open")
    base = wait_for("the API's address", lambda: (open_.instance() or {}).get("api"))
    status, body = call(base, "POST", "/api/v1/freeze", {"reason": "x"}, token="anything")
    assert status == 403 and "no API token" in body["detail"], body
    assert call(base, "GET", "/api/v1/status")[0] == 200
