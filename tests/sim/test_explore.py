"""The explorer: legacy's shortest counterexample is the October 2025 interleaving; safe breaks nothing."""

from __future__ import annotations

from dnsplane.sim.explore import Config, explore


def test_legacy_default_config_has_a_shortest_empty_record_counterexample() -> None:
    report = explore(Config(protocol="legacy"))
    assert report.violation is not None and report.violation.short == "I1"
    assert report.path[-1].endswith("receives the reply to CleanUp")  # the clean-up deletes the records
    assert len(report.path) <= 20


def test_safe_small_config_every_state_no_violation() -> None:
    # One generation beyond the first (the default four-generation configuration does not finish
    # within CI's budget yet; see docs/simulation.md).
    report = explore(Config(protocol="safe", generations=2), max_states=3_000)
    assert report.violation is None
