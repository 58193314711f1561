"""``dnsplane status`` shows each actor's liveness from ``instance.json`` (issue 8: an actor that
failed once was dead until restart, and nothing said so)."""

from __future__ import annotations

import pytest

from dnsplane import cli


def actor(**kw: object) -> dict[str, object]:
    return {"period": 1.0, "rounds": 10, "last_round": 99.0, "last_ok": 99.0, "last_error": None,
            "last_error_at": None, "failures": 0, "next_round": 100.0, **kw}


def test_actor_states() -> None:
    assert "running" in cli.actor_state(actor(), 100.0)
    failing = cli.actor_state(actor(failures=3, last_error="OperationalError: database or disk is full"), 100.0)
    assert "FAILING (3 rounds in a row" in failing
    assert "STALLED" in cli.actor_state(actor(next_round=50.0), 100.0)


def test_status_prints_every_actor_with_its_last_error(capsys: pytest.CaptureFixture[str]) -> None:
    instance = {"written_at": 100.0, "status_interval": 1.0, "actors": {
        "planner": actor(), "verifier": actor(failures=1, last_error="provider unavailable: refused",
                                               last_error_at=98.0)}}
    cli.print_actors(instance, 100.5)
    out = capsys.readouterr().out
    assert "planner" in out and "running" in out
    assert "verifier" in out and "FAILING" in out and "provider unavailable: refused" in out and "2.5s ago" in out
    assert "last written" not in out


def test_status_says_when_the_process_stopped_writing(capsys: pytest.CaptureFixture[str]) -> None:
    cli.print_actors({"written_at": 100.0, "status_interval": 1.0, "actors": {"planner": actor()}}, 200.0)
    assert "last written 100s ago" in capsys.readouterr().out


def test_status_prints_the_providers_calls_by_kind_and_its_last_round(capsys: pytest.CaptureFixture[str]) -> None:
    cli.print_provider_stats({"provider_stats": {
        "calls": {"list_resource_record_sets": 41, "change_resource_record_sets": 2}, "rounds": 4,
        "last_round": {"kind": "apply", "endpoints": 10, "calls": {"change_resource_record_sets": 1}}}})
    out = capsys.readouterr().out
    assert "provider calls: 2 change_resource_record_sets, 41 list_resource_record_sets; 4 round(s)" in out
    assert "the last (apply of 10 endpoint(s)): 1 change_resource_record_sets" in out
    cli.print_provider_stats({"provider_stats": {}})  # a provider that counts nothing: no line
    assert capsys.readouterr().out == ""
