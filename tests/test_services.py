"""The blast-radius graph (issue 12, part 7): a services file, ``dnsplane blast``, and the simulator's impact
windows. Graphs with diamonds, soft edges, cycles and unknown names; every refusal at its file:line."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from dnsplane.errors import InvalidConfig
from dnsplane.model import EndpointKey
from dnsplane.services import FORMATS, Impact, impact_windows, load_services, parse_services

DIAMOND = """\
services:
  db:
    endpoints: [db.demo.test, db2.demo.test]
    tolerance: 30
  cache:
    depends: {db: hard}
  search:
    depends: {db: soft}
  api:
    depends: {cache: hard, search: hard}
  reports:
    depends: {search: hard}
  web:
    depends: {api: soft}
"""


def test_a_diamond_fails_through_its_hard_side_and_soft_edges_only_degrade() -> None:
    s = parse_services(DIAMOND, "svc.yaml")
    impacts = s.blast("db.demo.test")
    assert impacts == [
        Impact("db", ("db.demo.test. A", "db"), True),
        Impact("cache", ("db.demo.test. A", "db", "cache"), True),
        Impact("api", ("db.demo.test. A", "db", "cache", "api"), True),  # the hard side of the diamond
        Impact("search", ("db.demo.test. A", "db", "search"), False),
        Impact("reports", ("db.demo.test. A", "db", "search", "reports"), False),  # hard on a degraded one
        Impact("web", ("db.demo.test. A", "db", "cache", "api", "web"), False),
    ]
    assert [i.depth for i in impacts] == [1, 2, 3, 2, 3, 4]
    assert s.blast("search") == [Impact("api", ("search", "api"), True), Impact("reports", ("search", "reports"), True),
                                 Impact("web", ("search", "api", "web"), False)], "a service is not its own impact"
    assert s.blast("web") == []


@pytest.mark.parametrize(("text", "line", "words"), [
    ("services:\n  a:\n    depends: {a: hard}\n", 3, "a dependency cycle: a -> a"),
    ("services:\n  a:\n    depends: {b: hard}\n  b:\n    depends: {c: soft}\n  c:\n    depends: {a: hard}\n", 7,
     "a dependency cycle: a -> b -> c -> a"),
    ("services:\n  api:\n    depends: {dbb: hard}\n  db:\n    endpoints: [db.demo.test]\n", 3,
     "unknown service 'dbb' (did you mean 'db'?)"),
    ("services:\n  a:\n    endpoints: [x.demo.test]\n    depends: {}\n  b:\n    depends: {a: strong}\n", 6,
     "services.b.depends.a: hard or soft, got 'strong'"),
    ("services:\n  a:\n    endpoint: [x.demo.test]\n", 3, "unknown key 'endpoint' (did you mean 'endpoints'?)"),
    ("services:\n  a:\n    endpoints: [x.demo.test]\n  b:\n    endpoints: [X.demo.test.]\n", 5,
     "x.demo.test. A is already served by a"),
    ("services:\n  a: {}\n", 2, "serves no endpoint and depends on nothing"),
    ("services:\n  a:\n    endpoints: [x.demo.test]\n    tolerance: -1\n", 4, "at least 0"),
    ("", 1, "the services file is empty"),
])
def test_a_bad_services_file_is_refused_at_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        parse_services(text, "svc.yaml")
    assert str(err.value).startswith(f"svc.yaml:{line}: ") and words in str(err.value), str(err.value)


def test_an_unknown_subject_is_named_with_a_suggestion() -> None:
    s = parse_services(DIAMOND, "svc.yaml")
    with pytest.raises(KeyError, match="did you mean 'cache'"):
        s.blast("cach")


def test_every_format_renders_and_escapes_names() -> None:
    s = parse_services('services:\n  "db<&>":\n    endpoints: [db.demo.test]\n  "a \\"q\\"":\n'
                       '    depends: {"db<&>": soft}\n', "svc.yaml")
    impacts = s.blast("db<&>")
    doc = json.loads(FORMATS["json"]("db<&>", impacts))
    assert doc["impacted"] == [{"service": 'a "q"', "hard": False, "depth": 1, "path": ["db<&>", 'a "q"']}]
    dot = FORMATS["dot"]("db<&>", impacts)
    assert '"db<&>" -> "a \\"q\\"" [style=dashed];' in dot
    svg = ET.fromstring(FORMATS["svg"]("db<&>", impacts))
    assert [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")] == ["db<&>", 'a "q"']
    assert "no service depends on it" in FORMATS["text"]("x", [])


def test_impact_windows_wait_out_the_tolerance_and_merge() -> None:
    s = parse_services(DIAMOND, "svc.yaml")
    db = EndpointKey("db.demo.test.", "A")
    windows = impact_windows(s, {db: [(100.0, 120.0), (200.0, 300.0)],
                                 EndpointKey("db2.demo.test.", "A"): [(250.0, 400.0)],
                                 EndpointKey("other.demo.test.", "A"): [(0.0, 1000.0)]})
    by = {w.service: w for w in windows}
    assert by["db"].windows == ((230.0, 400.0),), "20 s within the 30 s tolerance: no impact; two endpoints merged"
    assert by["api"].hard and not by["web"].hard and by["web"].total == 170.0
    assert set(by) == {"db", "cache", "search", "api", "reports", "web"}, "an endpoint no service serves: none"


def test_the_shipped_us_east_1_example_loads_and_dynamodb_takes_ec2_launches_with_it() -> None:
    s = load_services("us-east-1")
    hard = {i.service for i in s.blast("dynamodb.us-east-1.amazonaws.com") if i.hard}
    assert {"dynamodb", "ec2-droplet-workflow-manager", "ec2-instance-launch", "lambda"} <= hard


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnsplane.cli", *args], capture_output=True, text=True, timeout=120)


def test_blast_on_the_command_line(tmp_path: object) -> None:
    res = run("blast", "dynamodb", "--services", "us-east-1")
    assert res.returncode == 0 and "FAILS    ec2-instance-launch" in res.stdout, res.stdout + res.stderr
    bad = run("blast", "dynamo", "--services", "us-east-1")
    assert bad.returncode == 2 and "did you mean 'dynamodb'" in bad.stderr and "Traceback" not in bad.stderr
    cyc = tmp_path / "cyc.yaml"  # type: ignore[operator]
    cyc.write_text("services:\n  a:\n    depends: {b: hard}\n  b:\n    depends: {a: soft}\n")
    res = run("blast", "a", "--services", str(cyc))
    assert res.returncode == 2 and f"{cyc}:5: services.b.depends: a dependency cycle: a -> b -> a" in res.stderr


def test_the_simulator_lists_impact_windows_per_service() -> None:
    legacy = run("simulate", "--protocol", "legacy", "--scenario", "us-east-1", "--seeds", "50", "--no-shrink",
                 "--services", "us-east-1")
    assert legacy.returncode == 1, legacy.stderr
    lines = legacy.stdout.split("impact on services", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "e0 = dynamodb.us-east-1.amazonaws.com" in lines[0]
    assert any(line.strip().startswith("FAILED") for line in lines[1:]), legacy.stdout
    safe = run("simulate", "--protocol", "safe", "--scenario", "us-east-1", "--seeds", "3", "--services", "us-east-1")
    assert safe.returncode == 0 and "none: no endpoint was empty longer than its service's tolerance" in safe.stdout
