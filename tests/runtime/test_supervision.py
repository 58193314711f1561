"""Supervision that cannot wedge (I8): whatever a request, the verifier's DNS view or an actor's own
``handle`` raises, the actor's round ends with a ``Failed`` it handles (its ``busy`` flag clears),
and the actor runs again next period, with backoff; ``instance.json`` says so.

Before the fix, ``Interpreter.run`` let any exception other than a ``DnsplaneError`` out, ``App.loop``
logged "actor round failed" and the actor stayed busy for good (issue 8, cause 1): after a full disk
was freed the planner published nothing more; a ``ProviderUnavailable`` in ``App.resolve`` killed
the verifier."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dnsplane.config import demo_fleet, demo_target_ids
from dnsplane.errors import Permanent, ProviderUnavailable
from dnsplane.execute import Interpreter
from dnsplane.model import MAX_GENERATION, EndpointKey, Generation, Marker
from dnsplane.protocol.messages import Failed, Log, ReadHead, ReadWatermark, Request, Resolved, Step, Tick
from dnsplane.runtime.app import App, Options, backoff
from dnsplane.runtime.demo import DemoTargets
from dnsplane.store.memory import MemoryStore
from tests.fakes import ZONE, MemoryProvider, member, rs
from tests.servers.dnsstub import StubServer, address_answer

API = EndpointKey("api.demo.test.", "A")
FAST = {"planner_period": 0.1, "enactor_period": 0.1, "health_period": 0.1, "collector_period": 0.2,
        "verifier_period": 0.2}
# Exceptions a request has raised in the wild (issue 8), and two that nothing classifies.
ERRORS: list[Callable[[], BaseException]] = [
    lambda: sqlite3.OperationalError("database or disk is full"),
    lambda: OverflowError("Python int too large to convert to SQLite INTEGER"),
    lambda: AttributeError("'CNAME' object has no attribute 'address'"),
    lambda: ProviderUnavailable(reason="connection refused"),
    lambda: Permanent("a permanent failure"),
    lambda: RuntimeError("anything at all"),
]
ERROR_IDS = ["disk-full", "overflow", "attribute", "provider-unavailable", "permanent", "runtime"]


async def until(what: str, cond: Callable[[], bool | Awaitable[bool]], deadline: float = 20.0,
                detail: Callable[[], object] | None = None) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = cond()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (f": {detail()}" if detail else ""))


# ----------------------------------------------------------------------------- the interpreter


class Raising(MemoryStore):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def head(self) -> Generation:
        raise self.error


@pytest.mark.parametrize("make", ERRORS, ids=ERROR_IDS)
def test_executor_turns_any_exception_into_failed(make: Callable[[], BaseException]) -> None:
    error = make()
    ex = Interpreter(Raising(error), MemoryProvider(ZONE))
    reply = ex.run("enactor-1", Step((Log("info", "before"),), ReadHead()), 5.0)
    assert isinstance(reply, Failed)
    assert reply.now == 5.0 and str(error) in reply.error
    if not isinstance(error, Permanent):
        assert reply.retryable  # unclassified errors may pass (a disk freed): retried with backoff
    if not isinstance(error, Permanent | ProviderUnavailable):
        assert type(error).__name__ in reply.error  # the log names what it was


def test_backoff_doubles_and_is_capped() -> None:
    assert backoff(1.0, 0) == 1.0
    assert [backoff(1.0, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(1.0, 50) == 30.0 and backoff(60.0, 3) == 60.0  # capped; never below the period


# ----------------------------------------------------------------------------- the runtime


def make_app(tmp_path: Path, ports: dict[str, int], **periods: float) -> App:
    options = Options(data_dir=tmp_path, dns_port=0, enactors=2, **{**FAST, **periods})  # type: ignore[arg-type]
    return App(demo_fleet(ports), options)


def instance_actors(app: App) -> dict[str, Any]:
    data = json.loads((app.options.data_dir / "instance.json").read_text())
    return data.get("actors") or {}


async def running_app(tmp_path: Path, body: Callable[[App], Awaitable[None]],
                      prepare: Callable[[App], None] | None = None) -> None:
    demo = DemoTargets(demo_target_ids())
    app = make_app(tmp_path, await demo.start())
    app.demo = demo
    if prepare is not None:
        prepare(app)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        started = asyncio.create_task(app.started.wait())
        await asyncio.wait([task, started], timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            await task  # raises what stopped it
        assert app.started.is_set(), "the app did not start within 20 s"
        await body(app)
    finally:
        stop.set()
        done, _ = await asyncio.wait([task], timeout=20)
        if not done:
            import io
            out = io.StringIO()
            for t in asyncio.all_tasks():
                coro: Any = t.get_coro()
                out.write(f"task {t.get_name()}:\n")
                while coro is not None:
                    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                    if frame is not None:
                        out.write(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
                    coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            raise AssertionError("app.run did not stop:\n" + out.getvalue())
        await task


ACTORS = ["planner", "enactor-1", "enactor-2", "collector", "verifier"]


@pytest.mark.parametrize("make", ERRORS, ids=ERROR_IDS)
def test_every_actor_runs_again_after_its_request_raised(tmp_path: Path, make: Callable[[], BaseException]) -> None:
    """Each actor's first request raises; each gets ``Failed``, runs again, and ends up working."""
    failed: dict[str, str] = {}

    def prepare(app: App) -> None:
        real = app.interpreter.one

        def one(actor: str, cmd: Any, now: float) -> Any:
            if isinstance(cmd, Request) and actor not in failed:
                failed[actor] = type(cmd).__name__
                raise make()
            return real(actor, cmd, now)

        app.interpreter.one = one  # type: ignore[method-assign]

    async def body(app: App) -> None:
        def recovered() -> bool:
            actors = instance_actors(app)
            return all(
                name in actors and actors[name]["last_error"] is not None
                and actors[name]["last_ok"] is not None and actors[name]["last_ok"] > actors[name]["last_error_at"]
                and actors[name]["failures"] == 0
                for name in ACTORS)

        await until("every actor to fail once and run again", recovered, detail=lambda: instance_actors(app))
        assert set(failed) == set(ACTORS)
        await until("the planner to publish and an enactor to write api", lambda: app.store.head() > 0 and (
            app.provider.read([API])[API].records is not None))
        for name in ACTORS:
            assert str(make()) in instance_actors(app)[name]["last_error"]

    asyncio.run(running_app(tmp_path, body, prepare))


def test_the_verifier_hears_back_when_the_provider_read_of_its_dns_view_raises(tmp_path: Path) -> None:
    """``App.resolve`` ran ``provider.read`` outside the executor: a ``ProviderUnavailable`` there
    left the verifier busy for good."""

    async def scenario() -> None:
        app = make_app(tmp_path, dict.fromkeys(demo_target_ids(), 1))
        ep = next(iter(app.fleet.endpoints))
        app.store.publish(Generation(0), [(ep.key, rs(member("lb-1", "192.0.2.11")))], time.time(), "t")
        real = app.provider.read
        calls = {"n": 0}

        def read(keys: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ProviderUnavailable(reason="connection refused")
            return real(keys)

        app.provider.read = read  # type: ignore[method-assign]
        failure = await app.feed(app.verifier, Tick(time.time()))
        assert isinstance(failure, Failed) and "connection refused" in failure.error
        assert not app.verifier.busy
        again = await app.feed(app.verifier, Tick(time.time()))  # runs again: no server, so unanswered
        assert again is None and not app.verifier.busy and calls["n"] >= 2
        assert app.verifier.last_problems.get(ep.key) == "unreachable"
        app.store.close()
        app.provider.close()

    asyncio.run(scenario())


def test_an_actor_whose_handle_raises_is_told_it_failed_and_reset_if_that_raises_too(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app(tmp_path, dict.fromkeys(demo_target_ids(), 1))
        collector = app.collector
        real_collector = collector.handle

        def broken_on_watermark(event: Any) -> Any:
            if isinstance(event, Tick):
                step = real_collector(event)  # the round starts: it asks for the watermark
                assert step.request == ReadWatermark() and collector.busy
                return step
            raise ZeroDivisionError("a bug in the collector")  # and on the Failed that follows

        collector.handle = broken_on_watermark  # type: ignore[method-assign]
        collector.asked = Generation(7)
        failure = await app.feed(collector, Tick(time.time()))
        assert isinstance(failure, Failed) and "ZeroDivisionError" in failure.error
        assert not collector.busy and collector.asked == 0, "not reset to a fresh collector"

        # handle raises once, then takes the Failed: no reset, busy cleared by the actor itself
        planner = app.planner
        real = planner.handle
        seen: list[Any] = []

        def raises_once(event: Any) -> Any:
            seen.append(event)
            if len(seen) == 1:
                real(event)  # the round starts (it asks for the store's plans), then a bug raises
                assert planner.busy
                raise KeyError("a bug in the planner")
            return real(event)

        planner.handle = raises_once  # type: ignore[method-assign]
        failure = await app.feed(planner, Tick(time.time()))
        assert isinstance(failure, Failed) and "KeyError" in failure.error
        assert isinstance(seen[1], Failed) and not planner.busy
        app.store.close()
        app.provider.close()

    asyncio.run(scenario())


def test_the_planner_publishes_again_once_a_full_disk_is_freed(tmp_path: Path) -> None:
    """Issue 8: "after a full disk was freed the planner published nothing more". The store's
    publish raises what SQLite raises on a full disk (SQLITE_FULL) until the disk is freed: the
    planner's round ends in ``Failed`` (it used to escape the executor and leave the planner busy)."""
    full = {"disk": True}

    def fill(app: App) -> None:
        real = app.store.publish

        def publish(*args: Any, **kwargs: Any) -> Any:
            if full["disk"]:
                raise sqlite3.OperationalError("database or disk is full")
            return real(*args, **kwargs)

        app.store.publish = publish  # type: ignore[method-assign]

    async def body(app: App) -> None:
        def planner_failed() -> bool:
            info = instance_actors(app).get("planner") or {}
            return "full" in str(info.get("last_error")) and info.get("failures", 0) >= 2

        await until("the planner's publish to fail on the full disk, twice", planner_failed,
                    detail=lambda: (instance_actors(app), app.store.head()))
        assert app.store.head() == 0
        full["disk"] = False  # the disk is freed
        await until("the planner to publish", lambda: app.store.head() > 0)
        await until("api to be written", lambda: app.provider.read([API])[API].records is not None)
        await until("the planner's status to show it recovered",
                    lambda: (instance_actors(app).get("planner") or {}).get("failures") == 0)

    asyncio.run(running_app(tmp_path, body, fill))


def test_a_hand_written_marker_out_of_range_is_repaired_and_the_head_stays_in_range(tmp_path: Path) -> None:
    """Embedded provider, real DNS: ``g=9223372036854775807`` was taken as the head before the fix."""

    async def body(app: App) -> None:
        await until("api to be written", lambda: (seen := app.provider.read([API])[API]).marker is not None
                    and seen.records is not None)
        head = app.store.head()
        seen = app.provider.read([API])[API]
        assert seen.marker is not None
        app.provider.hand_edit(API, seen.records, Marker(Generation(2**63 - 1), seen.marker.digest))  # type: ignore[attr-defined]

        def repaired() -> bool:
            now = app.provider.read([API])[API]
            return (now.marker is not None and 0 < now.marker.generation <= MAX_GENERATION
                    and "repair" in [e.action for e in app.store.history(API)])

        await until("the verifier to repair the marker", repaired)
        assert head <= app.store.head() <= MAX_GENERATION
        # publishes still work: a target goes down, a new generation is published and written
        before = app.store.head()
        control = app.options.data_dir / "demo"  # what `dnsplane demo fail lb-2` does
        control.mkdir(exist_ok=True)
        (control / "lb-2.down").touch()
        await until("a new plan without lb-2 to be written", lambda: app.store.head() > before and (
            (now := app.provider.read([API])[API]).records is not None
            and "lb-2" not in {m.target_id for m in now.records.live_members()}), deadline=30,
            detail=lambda: (app.store.head(), app.provider.read([API])[API], app.store.desired([API], app.store.head()),
                            {t: (h.healthy, h.last_detail) for t, h in app.planner.health.items()},
                            instance_actors(app), app.verifier.last_problems, [e.held for e in app.enactors]))
        assert app.store.head() <= MAX_GENERATION
        assert instance_actors(app)["verifier"]["failures"] == 0

    asyncio.run(running_app(tmp_path, body))


def test_published_wakes_enactors_and_status_is_in_instance_json(tmp_path: Path) -> None:
    async def body(app: App) -> None:
        await until("every actor to report a successful round", lambda: all(
            (instance_actors(app).get(n) or {}).get("last_ok") for n in ACTORS))
        info = instance_actors(app)["verifier"]
        assert info["failures"] == 0 and info["last_error"] is None and info["period"] == FAST["verifier_period"]
        assert info["next_round"] >= info["last_ok"]

    asyncio.run(running_app(tmp_path, body))



def test_the_verifier_bounds_its_queries_and_survives_lost_answers(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 endpoints sent 20,000 queries at once to the embedded server and timed out; a lost
    UDP answer raised ``dns.exception.Timeout`` (not the built-in ``TimeoutError``) out of the
    verifier. Now at most ``MAX_QUERIES_IN_FLIGHT`` endpoints (two queries each) are asked at once, and
    an endpoint whose answer is lost is "unreachable" this round: reported, not repaired. A real UDP
    server that answers in bursts (``tests/servers/dnsstub``) counts the queries it holds unanswered."""
    import dns.message

    from dnsplane.runtime import app as app_module

    def answer(q: dns.message.Message) -> dns.message.Message | None:
        return None if q.question[0].name.to_text().startswith("n7.") else address_answer(q)

    async def scenario() -> None:
        app = make_app(tmp_path, dict.fromkeys(demo_target_ids(), 1))
        keys = [EndpointKey(f"n{i}.demo.test.", "A") for i in range(300)]
        with StubServer(answer) as server:
            monkeypatch.setattr(app_module, "QUERY_TIMEOUT", 0.5)
            monkeypatch.setattr(app, "dns_address", lambda: ("127.0.0.1", server.port))
            reply = await app.resolve(keys)
        assert not isinstance(reply, Failed), reply
        assert 1 < max(server.bursts) <= 2 * app_module.MAX_QUERIES_IN_FLIGHT, server.bursts
        results = reply.results  # type: ignore[union-attr]
        assert results[EndpointKey("n7.demo.test.", "A")].rcode == "TIMEOUT"
        assert results[EndpointKey("n8.demo.test.", "A")].rcode == "NOERROR"
        assert results[EndpointKey("n8.demo.test.", "A")].addresses == ("192.0.2.1",)
        app.store.close()
        app.provider.close()

    asyncio.run(scenario())


def test_a_silent_dns_server_does_not_hold_the_verifier_for_every_endpoint(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a whole window of queries in flight timed out, the rest of the batch is TIMEOUT without
    being asked: a dead server with 10,000 endpoints held a round 2 s per 64 endpoints."""
    from dnsplane.runtime import app as app_module

    async def scenario() -> None:
        app = make_app(tmp_path, dict.fromkeys(demo_target_ids(), 1))
        keys = [EndpointKey(f"n{i}.demo.test.", "A") for i in range(500)]
        with StubServer(lambda q: None) as server:
            monkeypatch.setattr(app_module, "QUERY_TIMEOUT", 0.2)
            monkeypatch.setattr(app, "dns_address", lambda: ("127.0.0.1", server.port))
            reply = await app.resolve(keys)
            received = server.received
        assert isinstance(reply, Resolved)
        assert all(r.rcode == "TIMEOUT" for r in reply.results.values())
        assert received <= 4 * app_module.MAX_QUERIES_IN_FLIGHT, received  # two windows of two queries each
        app.store.close()
        app.provider.close()

    asyncio.run(scenario())


def test_actors_handle_events_off_the_event_loop_one_at_a_time(tmp_path: Path) -> None:
    """At 100,000 endpoints handling one event (a plan, a plan's changes) takes seconds, and on the event
    loop DNS answers waited for it. Now ``handle`` runs in a worker thread, one event at a time per actor
    (the planner is fed by its own loop and by the health loop): while the planner is held inside one,
    the embedded server still answers, and no second event of the planner is handled meanwhile."""
    import threading

    import dns.message
    import dns.query
    import dns.rcode

    held = threading.Event()
    release = threading.Event()
    seen: dict[str, Any] = {"threads": set(), "inside": 0, "most": 0}
    lock = threading.Lock()

    def prepare(app: App) -> None:
        original = app.planner.handle

        def handle(event: Any) -> Step:
            with lock:
                seen["threads"].add(threading.get_ident())
                seen["inside"] += 1
                seen["most"] = max(seen["most"], seen["inside"])
            try:
                if isinstance(event, Tick) and not held.is_set():
                    held.set()
                    release.wait(30)  # bounded: never hold the test past it
                return original(event)
            finally:
                with lock:
                    seen["inside"] -= 1

        app.planner.handle = handle  # type: ignore[method-assign]

    async def body(app: App) -> None:
        loop_thread = threading.get_ident()
        await until("the planner held inside a handle", held.is_set)
        assert app.server is not None
        query = dns.message.make_query(app.fleet.zone, "SOA")
        answer = await asyncio.to_thread(dns.query.udp, query, "127.0.0.1", 5.0, app.server.port)
        assert answer.rcode() == dns.rcode.NOERROR and answer.answer  # answered while the planner is held
        release.set()
        await until("the planner handling again", lambda: len(seen["threads"]) >= 1 and seen["inside"] == 0)
        assert loop_thread not in seen["threads"]
        assert seen["most"] == 1, "two events of the planner handled at once"

    try:
        asyncio.run(running_app(tmp_path, body, prepare))
    finally:
        release.set()
