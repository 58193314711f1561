"""The HTTP API and the metrics of a running ``dnsplane up`` (FastAPI on uvicorn, in ``up``'s event loop).

The dashboard (``/``, ``runtime/dashboard.html``): one page of HTML and a little JavaScript that reads the
API every second (the endpoints a page of 50 at a time) and drives its writes with a token typed in.

Reads (no token): ``/api/v1/status``, ``/api/v1/endpoints`` (paginated), ``/api/v1/findings``, ``/api/v1/plans``,
``/api/v1/journal`` (an endpoint's history, or the operators'), ``/metrics`` (Prometheus text format),
``/openapi.json`` and ``/docs``. Writes (freeze, unfreeze, drain, undrain, pin, unpin, confirm, demo
fail/recover) need ``Authorization: Bearer <token>``, the token given to ``up`` (``$DNSPLANE_API_TOKEN``
or ``--api-token-file``), compared in constant time; without a configured token every write is refused
(403), with a wrong or missing one 401. Writes go through ``runtime/operators.py``, as the command line's
do, and are journalled with who (``by``, else ``api@<client address>``) and why.

Every read of the store runs on a thread and a connection of the API's own (``App.reads``): the event loop
also answers DNS (with no answering workers) and runs the actors' loops, and the actors' shared connection
is held for seconds by one read at 100,000 endpoints; the operators' writes go through ``runtime/operators.py``
in a worker thread. Metrics are read from the actors' and the runtime's state at scrape time
(``Metrics.collect``): no per-endpoint label (their cardinality is the fleet's), so a scrape costs the
same at 100 endpoints and at 100,000.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations, and those
# defined inside ``make_api`` (``Writer``) exist only there.
import asyncio
import contextlib
import hmac
import importlib.resources
import logging
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from dnsplane.dns.responder import ANSWER_SAMPLE
from dnsplane.model import EndpointKey, Generation
from dnsplane.runtime import operators
from dnsplane.services import failing_services, overview_svg

if TYPE_CHECKING:
    from dnsplane.runtime.app import App
    from dnsplane.store.sqlite import SqliteStore

log = logging.getLogger("dnsplane.api")

PAGE_MAX = 1000
DASHBOARD = (importlib.resources.files("dnsplane.runtime") / "dashboard.html").read_text(encoding="utf-8")
QUIET_WAIT = 30.0  # seconds a freeze through the API waits for the running instance to have no write in flight


class Control(BaseModel):
    reason: str = Field("", max_length=1000, description="why, for the journal")
    by: str | None = Field(None, max_length=200, description="who, for the journal (default: api@<client address>)")


class DialRequest(Control):
    for_seconds: float | None = Field(None, gt=0, le=90 * 86400, description="expire after this many seconds")
    no_expiry: bool = Field(False, description="hold until lifted (exactly one of this and for_seconds)")


class PinRequest(DialRequest):
    targets: list[str] = Field(..., min_length=1, description="the target ids to serve the endpoint from")


# ---------------------------------------------------------------------------- metrics


class Metrics(Collector):
    """The running instance's state as Prometheus metrics, read at each scrape."""

    def __init__(self, app: "App") -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        planner = app.planner
        head = planner.head
        yield GaugeMetricFamily("dnsplane_plan_generation", "Newest plan generation the planner knows", head)
        yield GaugeMetricFamily("dnsplane_endpoints", "Endpoints in the running fleet", len(app.fleet.endpoints))
        applied = GaugeMetricFamily("dnsplane_applied_generation", "Newest generation each enactor finished",
                                    labels=["enactor"])
        lag = GaugeMetricFamily("dnsplane_enactor_lag_generations", "Plan generation minus the enactor's finished one",
                                labels=["enactor"])
        writes = CounterMetricFamily("dnsplane_enactor_results", "Endpoints by what an enactor did with them",
                                     labels=["enactor", "result"])
        for e in app.enactors:
            applied.add_metric([e.name], e.applied_upto)
            lag.add_metric([e.name], max(0, head - e.applied_upto))
            for result, n in sorted(e.stats.items()):
                writes.add_metric([e.name, result], n)
        yield from (applied, lag, writes)
        success = GaugeMetricFamily("dnsplane_last_success_timestamp_seconds",
                                    "When the actor's (or task's) last round without a failure ended", labels=["actor"])
        attempt = GaugeMetricFamily("dnsplane_last_attempt_timestamp_seconds", "When the actor's last round ended",
                                    labels=["actor"])
        failing = GaugeMetricFamily("dnsplane_actor_consecutive_failures", "Failed rounds in a row", labels=["actor"])
        rounds = CounterMetricFamily("dnsplane_actor_rounds", "Rounds run (held ones included)", labels=["actor"])
        held = GaugeMetricFamily("dnsplane_actor_held", "1 while the actor's rounds are held (a freeze)",
                                 labels=["actor"])
        for name, status in sorted(app.actors.items()):
            if status.last_ok is not None:
                success.add_metric([name], status.last_ok)
            if status.last_round is not None:
                attempt.add_metric([name], status.last_round)
            failing.add_metric([name], status.failures)
            rounds.add_metric([name], status.rounds)
            held.add_metric([name], 1 if status.held else 0)
        yield from (success, attempt, failing, rounds, held)
        verifier = app.verifier
        yield CounterMetricFamily("dnsplane_verifier_checks", "Endpoints the verifier checked",
                                  verifier.stats.get("checked", 0))
        repairs = CounterMetricFamily("dnsplane_verifier_repairs", "Repairs written, by the problem found",
                                      labels=["problem"])
        for problem, n in sorted(verifier.repairs_by.items()):
            repairs.add_metric([problem], n)
        yield repairs
        yield CounterMetricFamily("dnsplane_verifier_deferred_repairs",
                                  "Repairs left for a later round: over the round's budget (up --repair-rate)",
                                  verifier.stats.get("deferred", 0))
        yield CounterMetricFamily("dnsplane_collector_deleted_plans", "Plans the collector deleted",
                                  app.collector.deleted)
        targets = GaugeMetricFamily("dnsplane_targets", "Targets by the health the planner acts on",
                                    labels=["state"])
        counts = {"up": 0, "down": 0, "unknown": 0}
        for snap in planner.health_snapshot().values():
            counts["unknown" if snap.healthy is None else "up" if snap.healthy else "down"] += 1
        for state, n in counts.items():
            targets.add_metric([state], n)
        yield targets
        yield GaugeMetricFamily("dnsplane_frozen", "1 while an operator's freeze holds every automated write",
                                0 if app.gate.freeze is None else 1)
        dials = GaugeMetricFamily("dnsplane_dials", "Operators' pins and drains in force", labels=["kind"])
        now = time.time()
        for kind in ("pin", "drain"):
            dials.add_metric([kind], sum(1 for d in app.dials if d.kind == kind and d.active(now)))
        yield dials
        checks = CounterMetricFamily("dnsplane_health_checks", "Health check results, by outcome", labels=["result"])
        for result, n in app.health_stats.results.items():
            checks.add_metric([result], n)
        yield checks
        took = app.health_stats.durations
        yield HistogramMetricFamily("dnsplane_health_check_duration_seconds", "How long each health check took",
                                    buckets=took.buckets(), sum_value=took.total)
        alerts = CounterMetricFamily("dnsplane_alerts", "Alerts raised, by kind", labels=["kind"])
        for kind, n in sorted(app.alerts.counts.items()):
            alerts.add_metric([kind], n)
        yield alerts
        webhook = CounterMetricFamily("dnsplane_alert_posts", "Alerts posted to the webhook, by outcome",
                                      labels=["outcome"])
        for outcome, n in (("sent", app.alerts.sent), ("failed", app.alerts.failed), ("dropped", app.alerts.dropped)):
            webhook.add_metric([outcome], n)
        yield webhook
        if app.server is not None:  # the embedded server: this process and its answering workers
            totals = app.server.answer_stats()
            answered = CounterMetricFamily("dnsplane_dns_responses", "DNS responses sent, by rcode", labels=["rcode"])
            for rcode, n in sorted(totals.responses.items()):
                answered.add_metric([rcode], n)
            yield answered
            latency = HistogramMetricFamily(
                "dnsplane_dns_answer_duration_seconds",
                f"Time from a query read to its response ready, by rcode (one query in {ANSWER_SAMPLE} timed)",
                labels=["rcode"])
            for rcode, took in sorted(totals.times.items()):
                latency.add_metric([rcode], took.buckets(), took.total)
            yield latency
        hold = planner.hold
        yield GaugeMetricFamily("dnsplane_zone_guard_held_changes",
                                "Endpoints the plan the zone guard holds would change (0: none held)",
                                0 if hold is None else hold.changed)


def exposition(app: "App") -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Metrics(app))
    return generate_latest(registry)


# ---------------------------------------------------------------------------- the API


def make_api(app: "App", token: str | None) -> FastAPI:
    api = FastAPI(title="dnsplane", summary="A running dnsplane: endpoints, plans, journal, operators' controls",
                  version="1")
    bearer = HTTPBearer(auto_error=False)

    def authorised(request: Request,
                   given: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        """Who is writing: ``by`` or ``api@<client>``; 403 with no token configured, 401 on a wrong one."""
        if token is None:
            raise HTTPException(403, "writes are off: no API token was configured (set DNSPLANE_API_TOKEN or "
                                     "--api-token-file before `dnsplane up`)")
        if given is None or not hmac.compare_digest(given.credentials.encode(), token.encode()):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return f"api@{request.client.host if request.client else '?'}"

    Writer = Annotated[str, Depends(authorised)]

    def refused(err: operators.Refused) -> HTTPException:
        return HTTPException(409, {"refused": err.what, "reasons": err.reasons, "changed": False})

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        """The dashboard: one page that reads the API every second (``runtime/dashboard.html``)."""
        return HTMLResponse(DASHBOARD, headers={"Cache-Control": "no-store"})

    @api.get("/api/v1/status")
    async def status() -> dict[str, Any]:
        """Head, enactors, the freeze, the dials, the held plan, every actor's liveness."""
        return {
            "zone": app.fleet.zone, "endpoints": len(app.fleet.endpoints), "head": app.planner.head,
            "applied": {e.name: e.applied_upto for e in app.enactors}, "frozen": app.frozen_json(),
            "dials": app.dials_json(), "hold": app.hold_json(),
            "actors": {name: s.to_json() for name, s in sorted(app.actors.items())},
        }

    @api.get("/api/v1/endpoints")
    async def endpoints(offset: Annotated[int, Query(ge=0)] = 0,
                        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100) -> dict[str, Any]:
        """The fleet's endpoints in zone order, a page at a time: content at the planner's head, health, the
        newest write of its records (generation, when, by whom: the journal) and the verifier's finding at
        its last check ("right", or "not checked yet")."""
        keys = app.endpoint_order()
        page = keys[offset:offset + limit]
        published = app.planner.published
        health = app.planner.health_snapshot()
        writes = await app.reads.call(lambda store: store.last_writes(page))
        findings = app.verifier.last_problems
        checked = app.verifier.stats.get("rounds", 0) > 0
        items = []
        for key in page:
            rs = published.get(key)
            written = writes.get(key)
            found = findings.get(key)
            items.append({
                "endpoint": str(key),
                "targets": [{"id": t.id, "weight": next((m.weight for m in rs.members if m.target_id == t.id), 0)
                             if rs else 0, "healthy": h.healthy if (h := health.get(t.id)) else None}
                            for t in app.fleet_by_key[key].targets],
                "ttl": rs.ttl if rs else None,
                "written": None if written is None else {"generation": written.after, "at": written.at,
                                                         "by": written.actor, "action": written.action},
                "verifier": str(found) if found is not None else "right" if checked else "not checked yet",
            })
        return {"total": len(keys), "offset": offset, "limit": limit, "items": items}

    @api.get("/api/v1/findings")
    async def findings() -> dict[str, Any]:
        """What is wrong now: the verifier's findings at its last check of each endpoint (by problem, and each
        endpoint's), the endpoints it holds back (quarantined: the provider rejects their repair; contested:
        two installations adopt them; foreign: not this installation's), and the servers watch's per server."""
        found = {str(k): str(p) for k, p in list(app.verifier.last_problems.items())}
        by_problem: dict[str, int] = {}
        for problem in found.values():
            by_problem[problem] = by_problem.get(problem, 0) + 1
        verifier = app.verifier
        return {
            "verifier": {"by_problem": by_problem, "endpoints": found,
                         "quarantined": {str(k): q.reason for k, q in list(verifier.quarantined.items())},
                         "contested": {str(k): why for k, why in list(verifier.contested.items())},
                         "foreign": {str(k): why for k, why in list(verifier.foreign.items())},
                         "deferred_last_round": verifier.deferred},
            "servers": app.secondaries.to_json() if app.secondaries else {},
        }

    @api.get("/api/v1/plans")
    async def plans() -> list[dict[str, Any]]:
        """Plans still stored, oldest first."""
        return [{"generation": p.generation, "created_at": p.created_at, "planner": p.planner, "changes": p.changes}
                for p in await app.reads.call(lambda store: store.plans())]

    @api.get("/api/v1/journal")
    async def journal(endpoint: str | None = None, rtype: Annotated[str, Query(alias="type")] = "A",
                      limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100) -> list[dict[str, Any]]:
        """An endpoint's writes, conflicts and repairs (``?endpoint=api.demo.test&type=A``), or without one
        the operators' actions; the newest ``limit``."""
        if endpoint is None:
            actions = await app.reads.call(lambda store: store.operator_actions())
            return [{"at": a.at, "by": a.by, "action": a.action, "subject": a.subject, "reason": a.reason}
                    for a in actions[-limit:]]
        key = parse_key(endpoint, rtype)
        entries = await app.reads.call(lambda store: store.history(key))
        return [{"at": e.at, "actor": e.actor, "action": e.action, "before": e.before, "after": e.after,
                 "detail": e.detail} for e in entries[-limit:]]

    @api.get("/api/v1/timeline")
    async def timeline(limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[dict[str, Any]]:
        """The newest events, oldest first: plans published, the journal's writes, conflicts and repairs (by
        actor), and the operators' actions; the dashboard draws them as swimlanes."""
        def read(store: "SqliteStore") -> list[dict[str, Any]]:
            events: list[dict[str, Any]] = [{"at": p.created_at, "actor": p.planner, "kind": "plan",
                       "detail": f"generation {p.generation}: {p.changes} change(s)", "generation": p.generation}
                      for p in store.plans()[-limit:]]
            events += [{"at": e.at, "actor": e.actor, "kind": e.action, "detail": f"{e.key} {e.before}->{e.after}",
                        "generation": e.after} for e in store.recent_journal(limit)]
            events += [{"at": a.at, "actor": a.by, "kind": a.action, "detail": f"{a.subject} {a.reason}".strip(),
                        "generation": None} for a in store.operator_actions()[-limit:]]
            return sorted(events, key=lambda e: float(e["at"]))[-limit:]

        return await app.reads.call(read)

    @api.get("/api/v1/plans/{generation}")
    async def plan(generation: Annotated[int, Path(ge=1)]) -> dict[str, Any]:
        """What plan ``generation`` changed: each endpoint's targets and weights before and after it."""
        def read(store: "SqliteStore") -> dict[str, Any]:
            after = store.changed_between(Generation(generation - 1), Generation(generation))
            before = store.content_at([(key, Generation(generation - 1)) for key in after])

            def weights(rs: Any) -> dict[str, int]:
                return {} if rs is None else {m.target_id: m.weight for m in rs.members}

            return {"generation": generation, "changes": [
                {"endpoint": str(key), "before": weights(before[key].records) if key in before else {},
                 "after": weights(desired.records)} for key, desired in sorted(after.items())]}

        return await app.reads.call(read)

    @api.get("/api/v1/blast.svg", response_class=Response)
    async def blast_svg() -> Response:
        """The services file's dependency graph (``up --services``) with current health overlaid: a service
        one of whose endpoints has no healthy target now is failing; what that reaches is failed or degraded."""
        services = app.services
        if services is None:
            raise HTTPException(404, "no services file: start `dnsplane up --services FILE`")
        health = app.planner.health_snapshot()
        down: dict[EndpointKey, bool] = {}
        for key, rs in list(app.planner.published.items()):
            live = [m.target_id for m in rs.members if m.weight > 0]
            down[key] = bool(live) and all((h := health.get(t)) is not None and h.healthy is False for t in live)
        svg = overview_svg(services, failing_services(services, down))
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus text exposition (``dnsplane_…``)."""
        body = await asyncio.to_thread(exposition, app)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.post("/api/v1/freeze")
    async def freeze(control: Control, writer: Writer) -> dict[str, Any]:
        """Stop every automated write now; returns once no write is in flight (``quiet``) or after 30 s."""
        by, now = control.by or writer, time.time()
        was = await asyncio.to_thread(operators.freeze, app.store, now, by, control.reason)
        in_force = now if was is None else was.at  # this freeze, not an earlier one lifted since
        deadline = time.monotonic() + QUIET_WAIT
        while time.monotonic() < deadline:
            freeze = app.gate.freeze
            if freeze is not None and freeze.at == in_force and app.gate.quiet():
                break
            await asyncio.sleep(0.05)
        return {"already": was is not None, "frozen": app.frozen_json()}

    @api.post("/api/v1/unfreeze")
    async def unfreeze(control: Control, writer: Writer) -> dict[str, Any]:
        """Lift the freeze; the enactors apply the newest plan at once."""
        was = await asyncio.to_thread(operators.unfreeze, app.store, time.time(), control.by or writer, control.reason)
        return {"lifted": was is not None}

    def until(req: DialRequest) -> float | None:
        if req.no_expiry == (req.for_seconds is not None):
            raise HTTPException(422, "give exactly one of for_seconds and no_expiry: every dial expires or says it "
                                     "does not")
        return None if req.no_expiry else time.time() + float(req.for_seconds or 0)

    def up(tid: str) -> bool:
        h = app.planner.health_snapshot().get(tid)
        return h is None or h.healthy is not False

    @api.post("/api/v1/drain/{target}")
    async def drain(target: str, req: DialRequest, writer: Writer) -> dict[str, Any]:
        """Move ``target``'s weight away from every endpoint (refused, 409, below an endpoint's floor)."""
        expiry = until(req)
        try:
            done = await asyncio.to_thread(operators.drain, app.store, app.fleet, up, target, time.time(),
                                           req.by or writer, req.reason, expiry)
        except operators.Refused as err:
            raise refused(err) from None
        return {"dial": done.dial.describe(), "until": done.dial.until, "leaves": [str(k) for k in done.leaves]}

    @api.delete("/api/v1/drain/{target}")
    async def undrain(target: str, control: Control, writer: Writer) -> dict[str, Any]:
        was = await asyncio.to_thread(operators.lift, app.store, "drain", target, time.time(), control.by or writer,
                                      control.reason)
        return {"lifted": was is not None}

    @api.post("/api/v1/pin/{endpoint}")
    async def pin(endpoint: str, req: PinRequest, writer: Writer,
                  rtype: Annotated[str, Query(alias="type")] = "A") -> dict[str, Any]:
        """Serve ``endpoint`` from ``targets`` only (refused, 409, for unknown targets or below min_targets)."""
        expiry = until(req)
        key = parse_key(endpoint, rtype)
        try:
            done = await asyncio.to_thread(operators.pin, app.store, app.fleet, up, key, req.targets, time.time(),
                                           req.by or writer, req.reason, expiry)
        except operators.Refused as err:
            raise refused(err) from None
        return {"dial": done.dial.describe(), "until": done.dial.until, "down": list(done.down)}

    @api.delete("/api/v1/pin/{endpoint}")
    async def unpin(endpoint: str, control: Control, writer: Writer,
                    rtype: Annotated[str, Query(alias="type")] = "A") -> dict[str, Any]:
        key = parse_key(endpoint, rtype)
        was = await asyncio.to_thread(operators.lift, app.store, "pin", str(key), time.time(), control.by or writer,
                                      control.reason)
        return {"lifted": was is not None}

    @api.post("/api/v1/confirm/{generation}")
    async def confirm(generation: Annotated[int, Path(ge=1)], control: Control, writer: Writer) -> dict[str, Any]:
        """Publish the plan the zone guard holds, by its generation (409 if it is not the held one)."""
        hold = app.planner.hold
        try:
            await asyncio.to_thread(operators.confirm, app.store, None if hold is None else hold.generation,
                                    Generation(generation), time.time(), control.by or writer, control.reason)
        except operators.Refused as err:
            raise refused(err) from None
        return {"confirmed": generation}

    @api.post("/api/v1/demo/{target}/{action}")
    async def demo(target: str, action: str, writer: Writer) -> dict[str, Any]:
        """Make a demo load balancer ``fail`` or ``recover`` (the built-in demo fleet only)."""
        if app.demo is None or target not in app.demo.ports:
            raise HTTPException(404, f"no demo target {target!r}")
        if action not in ("fail", "recover"):
            raise HTTPException(404, "action is fail or recover")
        await (app.demo.fail(target) if action == "fail" else app.demo.recover(target))
        flag = app.options.data_dir / "demo" / f"{target}.down"  # so the demo's follow loop agrees
        flag.parent.mkdir(parents=True, exist_ok=True)
        if action == "fail":
            flag.touch()
        else:
            flag.unlink(missing_ok=True)
        app.write_instance()
        return {"target": target, "down": action == "fail", "by": writer}

    return api


def parse_key(name: str, rtype: str) -> EndpointKey:
    """An endpoint key from the API's parameters; 422 for an empty name."""
    try:
        return EndpointKey.parse(f"{name} {rtype}")
    except ValueError as err:
        raise HTTPException(422, str(err)) from None


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: ``dnsplane up`` owns SIGINT, SIGTERM and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start(app: "App", host: str, port: int, token: str | None) -> tuple[tuple[str, int], asyncio.Task[None]]:
    """Listen on ``host:port`` (0: a free port) and serve the API in a task until it is cancelled; the bound
    address and the task. ``OSError`` when it cannot listen (the caller says so and runs on without it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # now: a client that reads instance.json's address before uvicorn has started queues
    except OSError:
        sock.close()
        raise
    config = uvicorn.Config(make_api(app, token), log_level="warning", access_log=False, lifespan="off")
    server = _Server(config)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()

    bound = sock.getsockname()
    return (bound[0], bound[1]), asyncio.create_task(run(), name="api")
