"""The runtime in one process against the real SQLite store, the embedded provider and the real
DNS server: the verifier sees corruption through real DNS queries and repairs it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import pytest

from dnsplane.config import demo_fleet, demo_target_ids
from dnsplane.model import EndpointKey, Generation, Marker, Member, RecordSet, marker_name
from dnsplane.protocol.messages import HealthObserved, Tick
from dnsplane.protocol.ownership import Ownership
from dnsplane.protocol.planner import TargetSnapshot
from dnsplane.runtime.app import App, Options
from dnsplane.runtime.demo import DemoTargets

API = EndpointKey("api.demo.test.", "A")
ROGUE = RecordSet.of(5, [Member("rogue", ("203.0.113.99",), 1)])


async def until(what: str, cond: Callable[[], Awaitable[bool]], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if await cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def answer(app: App, name: str, rtype: str) -> list[str]:
    """The answer's records; none when the query timed out (the caller polls with a deadline)."""
    assert app.server is not None
    try:
        msg = await dns.asyncquery.udp(dns.message.make_query(name, rtype), "127.0.0.1", 2, app.server.port)
    except dns.exception.Timeout:
        return []
    return [rd.to_text() for rrset in msg.answer for rd in rrset]


def corrupt(app: App, state: str) -> None:
    seen = app.provider.read([API])[API]
    match state:
        case "emptied":
            app.provider.hand_edit(API, None, seen.marker)
        case "marker-deleted":
            app.provider.hand_edit(API, seen.records, None)
        case "marker-names-deleted-plan":
            app.provider.hand_edit(API, seen.records, Marker(Generation(0), "deadbeefdeadbeef"))
        case "edited-by-hand":
            app.provider.hand_edit(API, ROGUE, seen.marker)


@pytest.mark.parametrize("state", ["emptied", "marker-deleted", "marker-names-deleted-plan", "edited-by-hand"])
def test_verifier_repairs_over_real_dns(tmp_path: Path, state: str) -> None:
    async def scenario() -> None:
        demo = DemoTargets(demo_target_ids())
        fleet = demo_fleet(await demo.start())
        options = Options(data_dir=tmp_path, dns_port=0, verifier_period=0.2, health_period=0.2)
        app = App(fleet, options, demo)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await app.started.wait()

            async def served() -> bool:
                return bool(await answer(app, API.name, "A"))

            await until("api to be served", served)
            before = app.verifier.stats["repairs"]
            corrupt(app, state)

            async def repaired() -> bool:
                want = app.store.desired([API], app.store.head())[API]
                txt = await answer(app, marker_name(API), "TXT")
                addrs = set(await answer(app, API.name, "A"))
                # The journal entry is a command of its own, run after the verifier counted the
                # repair, so it is part of what is polled for, not checked once afterwards.
                return (app.verifier.stats["repairs"] > before and addrs <= set(want.records.addresses())
                        and bool(addrs) and any(want.records.digest in t for t in txt)
                        and "repair" in [e.action for e in app.store.history(API)])

            await until(f"the verifier to repair {state} and journal it", repaired)
        finally:
            stop.set()
            await task

    asyncio.run(scenario())


def test_reset_and_instance_health_go_through_the_actors_methods(tmp_path: Path) -> None:
    """``App.reset`` gives an actor a fresh state through its own ``reset`` (the enactors' and the
    verifier's ownership: the fleet the app runs now, even if the actor missed a ``FleetChanged``;
    the planner keeps its health); ``instance.json``'s health is the planner's ``health_snapshot``."""

    async def scenario() -> None:
        app = App(demo_fleet(dict.fromkeys(demo_target_ids(), 1)), Options(data_dir=tmp_path, dns_port=0))
        try:
            now = time.time()
            enactor, verifier, planner = app.enactors[0], app.verifier, app.planner
            enactor.handle(Tick(now))
            verifier.handle(Tick(now))
            for actor in (enactor, verifier):
                actor.ownership = Ownership(app.owner)  # as if it had failed on the fleet's FleetChanged
                app.reset(actor)
                assert not actor.busy and actor.ownership == app.ownership()
            tid = next(iter(demo_target_ids()))
            planner.handle(HealthObserved(now, tid, False, "connection refused"))
            app.write_instance()
            health = json.loads((tmp_path / "instance.json").read_text())["health"]
            assert health[tid] == {"healthy": False, "detail": "connection refused", "check": "down"}
            planner.handle(Tick(now))
            app.reset(planner)
            assert not planner.busy and not planner.synced
            assert planner.health_snapshot()[tid] == TargetSnapshot(False, "down", "connection refused")
        finally:
            app.store.close()
            app.provider.close()

    asyncio.run(scenario())


def test_the_head_check_option_reaches_the_planner_and_survives_its_reset(tmp_path: Path) -> None:
    """``Options.head_check`` is the planner's ``head_check`` (``dnsplane up --head-check``), also after
    ``App.reset`` gave the planner a fresh state (a planner that raised on ``Failed`` too)."""
    app = App(demo_fleet(dict.fromkeys(demo_target_ids(), 1)), Options(data_dir=tmp_path, dns_port=0, head_check=1.5))
    try:
        assert app.planner.head_check == 1.5
        app.reset(app.planner)
        assert app.planner.head_check == 1.5
    finally:
        app.store.close()
        app.provider.close()


def test_the_embedded_server_is_told_the_declared_endpoints_at_start_and_on_reload(tmp_path: Path) -> None:
    """Every endpoint of the fleet is declared to the embedded server (SERVFAIL, never NXDOMAIN, until first
    written: tests/dns/test_server_unwritten.py); a reload declares the endpoints it adds and releases the
    ones it removes. ``Options.rate_limit`` (``dnsplane up --rrl``) reaches the server."""
    from dnsplane.config import load_fleet
    from dnsplane.dns.ratelimit import RateLimit

    fleet_file = tmp_path / "fleet.yaml"
    text = ("zone: demo.test\ntargets:\n  lb-1: {addresses: [192.0.2.11]}\n"
            "endpoints:\n  - {name: api, ttl: 30, targets: [lb-1]}\n")
    fleet_file.write_text(text)
    limit = RateLimit(20, 3)
    app = App(load_fleet(str(fleet_file)), Options(data_dir=tmp_path / "data", dns_port=0, rate_limit=limit))
    try:
        assert app.server is not None
        assert app.server._limiter is not None and app.server._limiter.limit == limit
        api, new = EndpointKey("api.demo.test.", "A"), EndpointKey("new.demo.test.", "A")
        assert app.server.unwritten() == {api}
        fleet_file.write_text(text.replace("endpoints:\n", "endpoints:\n  - {name: new, ttl: 30, targets: [lb-1]}\n"))
        assert asyncio.run(app.reload()).ok
        assert app.server.unwritten() == {api, new}
        fleet_file.write_text(text)
        assert asyncio.run(app.reload()).ok
        assert app.server.unwritten() == {api}
    finally:
        app.store.close()
        app.provider.close()


def test_up_answers_udp_from_a_worker_by_default_from_ten_thousand_endpoints(tmp_path: Path) -> None:
    """In one process, DNS answers share the interpreter with the actors (at 100,000 endpoints the
    collector's full passes stopped answering for seconds): a large fleet gets one UDP worker unless
    ``--dns-workers`` says otherwise; a small one none."""
    from dataclasses import replace

    from dnsplane.runtime.app import WORKERS_FROM, workers_for

    assert (workers_for(WORKERS_FROM - 1), workers_for(WORKERS_FROM), workers_for(10 * WORKERS_FROM)) == (0, 1, 1)
    fleet = demo_fleet(dict.fromkeys(demo_target_ids(), 1))
    small = App(fleet, Options(data_dir=tmp_path / "small", dns_port=0))
    template = fleet.endpoints[0]
    many = tuple(replace(template, name=f"n{i}.{fleet.zone}") for i in range(WORKERS_FROM))
    large = App(replace(fleet, endpoints=many), Options(data_dir=tmp_path / "large", dns_port=0))
    told = App(replace(fleet, endpoints=many), Options(data_dir=tmp_path / "told", dns_port=0, dns_workers=0))
    try:
        assert small.server is not None and small.server.workers == 0
        assert large.server is not None and large.server.workers == 1
        assert told.server is not None and told.server.workers == 0
    finally:
        for app in (small, large, told):
            app.store.close()
            app.provider.close()


def test_a_status_part_that_raises_is_logged_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """``write_instance`` runs at the end of every actor's round: a part of the status that raises (a bug: a
    property called as a method stopped every enactor's loop for good) is logged once with its traceback,
    and the next write that works writes the file again."""
    app = App(demo_fleet(dict.fromkeys(demo_target_ids(), 1)), Options(data_dir=tmp_path, dns_port=0))
    try:
        def broken() -> list[dict[str, object]]:
            raise TypeError("'dict' object is not callable")

        monkeypatch.setattr(app, "dials_json", broken)
        with caplog.at_level(logging.WARNING, "dnsplane"):
            app.write_instance()
            app.write_instance()
        said = [r for r in caplog.records if r.getMessage() == "cannot write instance.json"]
        assert len(said) == 1 and said[0].exc_info is not None
        monkeypatch.undo()
        app.write_instance()
        assert json.loads((tmp_path / "instance.json").read_text())["dials"] == []
    finally:
        app.store.close()
        app.provider.close()


def test_unrepaired_is_alerted_after_three_rounds_that_could_repair_not_rounds_over_the_budget(tmp_path: Path) -> None:
    from dnsplane.protocol.verifier import Problem

    app = App(demo_fleet(dict.fromkeys(demo_target_ids(), 1)), Options(data_dir=tmp_path, dns_port=0))
    try:
        key = app.fleet.endpoints[0].key
        app.verifier.last_problems = {key: Problem.EMPTY_ANSWER}
        app.verifier.deferred_keys = {key}  # each round over the budget: left for the next round
        for _ in range(5):
            app.verifier_alerts()
        assert app.alerts.counts == {"finding": 1}
        app.verifier.deferred_keys = set()
        for _ in range(3):
            app.verifier_alerts()
        assert app.alerts.counts == {"finding": 1, "unrepaired": 1}
        app.verifier.last_problems = {}
        app.verifier_alerts()
        assert app.alerts.counts == {"finding": 1, "unrepaired": 1, "repaired": 1}
    finally:
        app.store.close()
        app.provider.close()


def test_a_truncated_answer_is_no_answer_for_the_verifier() -> None:
    """An answer still truncated after the TCP retry (``dnsview.ask``) says nothing whole of what the server
    holds: ``TRUNCATED``, which the verifier reports as unreachable and never repairs on."""
    from dnsplane.model import Desired, Observed
    from dnsplane.protocol.messages import Resolution
    from dnsplane.protocol.verifier import diagnose
    from dnsplane.runtime.app import _resolution

    key = EndpointKey("big.demo.test.", "A")
    name, marker_at = dns.name.from_text(key.name), dns.name.from_text(marker_name(key))
    cut = dns.message.make_response(dns.message.make_query(name, "A"))
    cut.flags |= dns.flags.TC
    txt = dns.message.make_response(dns.message.make_query(marker_at, "TXT"))
    seen = _resolution(key, Observed(None, None), name, marker_at, cut, txt)
    assert seen == Resolution("TRUNCATED", (), None, Observed(None, None))
    records = RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 1)], "all")  # type: ignore[arg-type]
    assert diagnose(Desired(Generation(1), records), seen, Generation(1)) == "unreachable"


def test_dials_the_running_fleet_leaves_nothing_to_act_on_are_void(tmp_path: Path) -> None:
    from dnsplane.model import Dial

    app = App(demo_fleet(dict.fromkeys(demo_target_ids(), 1)), Options(data_dir=tmp_path, dns_port=0))
    try:
        endpoint = app.fleet.endpoints[0]
        target = endpoint.targets[0].id
        assert app.void(Dial("drain", target, (), 1.0, "t", "", None)) is None
        nowhere = Dial("drain", "lb-nowhere", (), 1.0, "t", "", None)
        assert app.void(nowhere) == "the target is in no endpoint of the fleet"
        assert app.void(Dial("pin", str(endpoint.key), (target,), 1.0, "t", "", None)) is None
        assert app.void(Dial("pin", str(endpoint.key), ("lb-gone",), 1.0, "t", "", None)) == \
            "none of the pinned targets is in the endpoint any more"
        gone = Dial("pin", "gone.demo.test. A", (target,), 1.0, "t", "", None)
        assert app.void(gone) == "the endpoint is not in the fleet"
    finally:
        app.store.close()
        app.provider.close()
