"""Route 53 configuration checked before anything runs (issue 14, part 4): by ``dnsplane validate`` (syntax,
``file:line``) and at ``dnsplane up`` start (the zone's name, reachability, the right to list and change),
exit 2 with the reason, no traceback, nothing started. The real ``dnsplane`` command, on ministack."""

from __future__ import annotations

import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from dnsplane.providers.route53.preflight import probe_changes
from tests.fakes import ZONE, key
from tests.servers.forwarding_proxy import forwarding_proxy
from tests.servers.http_serving import loopback_server, serving
from tests.servers.ministack import FAKE_AWS_ENV, Ministack, _free_port, ministack, ministack_direct  # noqa: F401 - fixtures

DNSPLANE = str(Path(sys.executable).with_name("dnsplane"))


def fleet(tmp_path: Path, provider: str, zone: str = ZONE) -> Path:
    f = tmp_path / "fleet.yaml"
    f.write_text(f"zone: {zone}\n"
                 "targets:\n  lb-1: {addresses: [192.0.2.11], capacity: 100}\n"
                 "endpoints:\n  - {name: api, ttl: 30, targets: [lb-1]}\n"
                 f"provider:\n{provider}")
    return f


def dnsplane(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **FAKE_AWS_ENV}
    return subprocess.run([DNSPLANE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def up(tmp_path: Path, f: Path) -> subprocess.CompletedProcess[str]:
    """``dnsplane up`` that must exit by itself (a process left running fails the test by its timeout)."""
    return dnsplane("up", "--fleet", str(f), "--data-dir", str(tmp_path / "data"), "--dns", "127.0.0.1:0")


@pytest.mark.parametrize("line, why", [
    ("  endpoint_url: 127.0.0.1:4566\n", "must be a URL starting with http:// or https://"),
    ('  region: "us east 1"\n', "must be an AWS region name such as us-east-1"),
    ("  endpoint_url: http://127.0.0.1:notaport\n", "must have a port of 1..65535"),
], ids=["no scheme", "region", "port"])
def test_validate_refuses_what_botocore_would_fail_on_later(tmp_path: Path, line: str, why: str) -> None:
    f = fleet(tmp_path, "  kind: route53\n  hosted_zone_id: Z1\n" + line)
    done = dnsplane("validate", str(f))
    assert done.returncode == 2, done
    assert f"{f}:9:" in done.stderr and why in done.stderr  # the line of the option
    assert "Traceback" not in done.stderr + done.stdout


def route53(zone_id: str, url: str) -> str:
    return f"  kind: route53\n  hosted_zone_id: {zone_id}\n  endpoint_url: {url}\n"


def test_up_refuses_a_hosted_zone_of_another_name_and_writes_nothing(
        tmp_path: Path, ministack: Ministack) -> None:  # noqa: F811
    other = ministack.create_zone("other.test.")
    done = up(tmp_path, fleet(tmp_path, route53(other, ministack.url)))
    assert done.returncode == 2, done
    assert f"hosted zone {other} is other.test., not the fleet's zone {ZONE}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and "managing" not in done.stdout
    listed = ministack.client().list_resource_record_sets(HostedZoneId=other)["ResourceRecordSets"]
    assert {s["Type"] for s in listed} <= {"SOA", "NS"}, "nothing of the fleet written there"


def test_up_refuses_an_endpoint_that_cannot_be_reached(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    done = up(tmp_path, fleet(tmp_path, route53("Z1", f"http://127.0.0.1:{port}")))
    assert done.returncode == 2, done
    assert f"cannot reach http://127.0.0.1:{port}" in done.stderr and "endpoint_url" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


class _NotRoute53(BaseHTTPRequestHandler):
    """Any web server that is not the Route 53 API: the same page for every request."""

    body = b""

    def _page(self) -> None:
        body = self.body
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("page", [b"it works", b"<html><body>it works</body></html>"], ids=["text", "html"])
def test_up_refuses_an_endpoint_that_is_not_route53(tmp_path: Path, page: bytes) -> None:
    """An endpoint_url at some other web server: botocore's parser error on a page that is not XML (not a
    BotoCoreError) was a traceback, and a page that parses was taken for a zone named "."; either is the
    reason for exit 2."""
    server, url = loopback_server()
    server.RequestHandlerClass = type("Page", (_NotRoute53,), {"body": page})
    with serving(server, "not-route53"):
        done = up(tmp_path, fleet(tmp_path, route53("Z1", url)))
    assert done.returncode == 2, done
    assert f"{url} does not answer as the Route 53 API does" in done.stderr and "endpoint_url" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_up_refuses_an_aws_profile_that_does_not_exist(tmp_path: Path) -> None:
    """``AWS_PROFILE`` naming no profile: boto3 raises ProfileNotFound as soon as the account is looked up
    (before the preflight); it was a traceback."""
    env = {**os.environ, **FAKE_AWS_ENV, "AWS_PROFILE": "nosuchprofile",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    done = subprocess.run([DNSPLANE, "up", "--fleet", str(fleet(tmp_path, route53("Z1", "http://127.0.0.1:9"))),
                           "--data-dir", str(tmp_path / "data"), "--dns", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done
    assert "nosuchprofile" in done.stderr and "AWS_PROFILE" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_up_refuses_a_hosted_zone_that_does_not_exist(tmp_path: Path, ministack: Ministack) -> None:  # noqa: F811
    done = up(tmp_path, fleet(tmp_path, route53("ZNOSUCHZONE", ministack.url)))
    assert done.returncode == 2, done
    assert "no hosted zone ZNOSUCHZONE" in done.stderr and "Traceback" not in done.stderr


def test_up_refuses_credentials_that_may_not_change_the_zone(tmp_path: Path, ministack: Ministack) -> None:  # noqa: F811
    zone_id = ministack.create_zone(ZONE)
    with forwarding_proxy(ministack.url, deny=("POST", "/rrset")) as proxy:  # ChangeResourceRecordSets
        done = up(tmp_path, fleet(tmp_path, route53(zone_id, proxy.url)))
    assert done.returncode == 2, done
    assert f"access denied for route53:ChangeResourceRecordSets on hosted zone {zone_id}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_the_change_probe_deletes_only_what_cannot_exist(ministack: Ministack) -> None:  # noqa: F811
    """Route 53 (ministack) refuses the probe whole, as not found: it changes nothing, even where the fleet's
    endpoints, markers and token are written."""
    client = ministack.client()
    zone_id = ministack.create_zone(ZONE)
    keys = [key("api.demo.test"), key("v6.demo.test", "AAAA")]
    before = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    with pytest.raises(client.exceptions.InvalidChangeBatch):
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
            "Changes": probe_changes(ZONE, keys, "0123456789abcdef")})
    assert client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"] == before
