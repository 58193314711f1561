"""The dnsplane command: help that teaches, validate, plan without writing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dnsplane.cli import build_parser, main

FLEET = """zone: demo.test
targets:
  lb-1: {addresses: [192.0.2.11], capacity: 100}
  lb-2: {addresses: [192.0.2.12], capacity: 300}
endpoints:
  - {name: api, ttl: 30, targets: [lb-1, lb-2]}
"""


@pytest.mark.parametrize(
    "command", ["up", "validate", "plan", "status", "history", "demo", "simulate", "explore", "reload"])
def test_every_subcommand_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "dnsplane " in out


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("up", "validate", "plan", "status", "history", "demo"):
        assert command in out
    assert build_parser().prog == "dnsplane"


def test_validate_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET)
    assert main(["validate", str(f)]) == 0
    assert "1 endpoints, 2 targets" in capsys.readouterr().out


def test_plan_shows_a_diff_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET)
    data = tmp_path / "data"
    assert main(["plan", "--fleet", str(f), "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "+ api.demo.test. A" in out
    assert "+ lb-1 192.0.2.11 weight 250" in out and "+ lb-2 192.0.2.12 weight 750" in out
    assert "nothing was written" in out
    assert not data.exists()


def test_plan_with_probe_previews_against_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``plan --probe``: a planner built from the store's snapshot (``Planner.from_snapshot``) with the
    targets' health as probed now. lb-2's check is refused: its weight goes to lb-1, half of the whole
    at most in one generation (the default ``max_weight_shift``, counted from the store's content)."""
    from dnsplane.model import EndpointKey, Generation, Member, RecordSet
    from dnsplane.store.sqlite import SqliteStore

    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(data / "store.sqlite")
    both = RecordSet.of(30, [Member("lb-1", ("192.0.2.11",), 250), Member("lb-2", ("192.0.2.12",), 750)])
    assert store.publish(Generation(0), [(EndpointKey("api.demo.test.", "A"), both)], 1.0, "test") == 1
    store.close()
    with socket.socket() as up, socket.socket() as gone:
        up.bind(("127.0.0.1", 0))
        up.listen()
        gone.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        checks = {"lb-1": up.getsockname()[1], "lb-2": gone.getsockname()[1]}
        f = tmp_path / "fleet.yaml"
        f.write_text(FLEET.replace("capacity: 100}", f'capacity: 100, check: {{tcp: "127.0.0.1:{checks["lb-1"]}"}}}}')
                     .replace("capacity: 300}", f'capacity: 300, check: {{tcp: "127.0.0.1:{checks["lb-2"]}"}}}}'))
        assert main(["plan", "--fleet", str(f), "--data-dir", str(data), "--probe"]) == 0
    out = capsys.readouterr().out
    assert "plan against generation 1" in out and "~ api.demo.test. A" in out
    assert "~ lb-1 weight 250 -> 750" in out and "~ lb-2 weight 750 -> 250" in out
    assert "1 endpoint(s) would change; nothing was written." in out


def test_status_without_data_says_how_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--data-dir", str(tmp_path / "none")]) == 1
    assert "dnsplane up" in capsys.readouterr().err


def test_demo_without_a_running_instance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "fail", "lb-2", "--data-dir", str(tmp_path)]) == 1
    assert "no running dnsplane demo" in capsys.readouterr().err


def test_status_shows_unknown_health_as_unknown() -> None:
    from dnsplane.cli import health_mark

    assert "unknown" in health_mark({"healthy": None, "detail": "", "check": ""})
    assert "unknown" in health_mark({"healthy": True, "detail": "local: Too many open files", "check": "unknown"})
    assert health_mark({"healthy": True, "detail": "connected", "check": "ok"}) == "up"
    assert "DOWN" in health_mark({"healthy": False, "detail": "Connection refused", "check": "down"})


def test_up_health_grace_is_seconds_not_negative(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["up", "--health-grace", "0"]).health_grace == 0.0
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["up", "--health-grace", "-1"])
    assert done.value.code == 2
    assert "--health-grace" in capsys.readouterr().err


def test_up_head_check_reaches_the_planner_and_refuses_a_bad_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--head-check`` (seconds between an idle planner's checks of the plan at the store's head) becomes
    ``Options.head_check``, which the runtime gives its planner (tests/runtime/test_app.py); the default is
    the protocol's ``HEAD_CHECK``; a negative or non-numeric value exits 2 naming the option."""
    import dnsplane.runtime.app as app_module
    from dnsplane.errors import Permanent
    from dnsplane.protocol.planner import HEAD_CHECK

    seen: list[float] = []

    class Captured(Permanent):
        fmt = "captured"

    def fake_app(fleet: object, options: app_module.Options, demo: object) -> None:
        seen.append(options.head_check)
        raise Captured

    monkeypatch.setattr(app_module, "App", fake_app)
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET)
    for extra, want in (([], HEAD_CHECK), (["--head-check", "1.5"], 1.5), (["--head-check", "0"], 0.0)):
        assert main(["up", "--fleet", str(f), "--data-dir", str(tmp_path / "d"), *extra]) == 2
        assert seen.pop() == want
    for bad in ("-1", "soon"):
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args(["up", "--head-check", bad])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert "--head-check" in err and repr(bad) in err
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    assert "--head-check" in capsys.readouterr().out


def test_up_on_a_dns_address_in_use_exits_2_and_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        code = main(["up", "--fleet", str(f), "--data-dir", str(tmp_path / "d"), "--dns", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"127.0.0.1:{port}" in err and "in use" in err and "Traceback" not in err


def test_preflight_findings_fold_one_line_per_cause() -> None:
    from dnsplane.cli import fold_findings

    wild = [{"kind": "wildcard", "endpoint": f"e{i}.demo.test. A", "name": "*.demo.test.", "detail": f"d{i}",
             "todo": "remove the wildcard"} for i in range(2000)]
    glue = {"kind": "foreign", "endpoint": "ns1.demo.test. A", "name": "ns1.demo.test.", "detail": "NS glue",
            "todo": "remove the endpoint"}
    lines = fold_findings([*wild, glue])
    assert len(lines) == 2
    assert lines[0].startswith("2000 endpoints (e0.demo.test. A, e1.demo.test. A, e2.demo.test. A and 1997 more)")
    assert "*.demo.test." in lines[0] and "remove the wildcard" in lines[0]
    assert lines[1] == "ns1.demo.test. A: NS glue; remove the endpoint"


def test_up_rrl_reaches_the_options_and_refuses_a_bad_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--rrl N [--rrl-slip K]`` becomes ``Options.rate_limit`` (off without it); 0, negative or non-numeric
    values exit 2 naming the option."""
    import dnsplane.runtime.app as app_module
    from dnsplane.dns.ratelimit import RateLimit
    from dnsplane.errors import Permanent

    seen: list[RateLimit | None] = []

    class Captured(Permanent):
        fmt = "captured"

    def fake_app(fleet: object, options: app_module.Options, demo: object) -> None:
        seen.append(options.rate_limit)
        raise Captured

    monkeypatch.setattr(app_module, "App", fake_app)
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET)
    for extra, want in (([], None), (["--rrl", "20"], RateLimit(20, 2)), (["--rrl", "5", "--rrl-slip", "0"],
                                                                          RateLimit(5, 0))):
        assert main(["up", "--fleet", str(f), "--data-dir", str(tmp_path / "d"), *extra]) == 2
        assert seen.pop() == want
    for bad in (["--rrl", "0"], ["--rrl", "many"], ["--rrl", "5", "--rrl-slip", "11"]):
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args(["up", *bad])
        assert done.value.code == 2
        assert bad[-2] in capsys.readouterr().err


@pytest.mark.parametrize("good, want", [("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
                                        ("::1", ("::1", 53)), ("[::1]:5353", ("::1", 5353))])
def test_up_verify_server_takes_host_and_port(good: str, want: tuple[str, int]) -> None:
    assert build_parser().parse_args(["up", "--verify-server", good]).verify_server == [want]


@pytest.mark.parametrize("bad", ["127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:\u00b2", "[::1", "[::1]53", ":53",
                                 "bad..name", "127.0.0.1:x"])
def test_up_verify_server_refuses_bad_input_naming_it(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["up", "--verify-server", bad])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "--verify-server" in err and repr(bad) in err and "Traceback" not in err


def test_up_verify_server_given_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--data-dir", str(tmp_path), "--verify-server", "127.0.0.1:53",
                 "--verify-server", "127.0.0.1"]) == 2
    assert "--verify-server 127.0.0.1:53 given twice" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "1e300", "lots"])
def test_up_repair_rate_refuses_bad_input(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["up", "--repair-rate", bad])
    assert done.value.code == 2 and "--repair-rate" in capsys.readouterr().err
