"""The ``dnsplane`` command. Exit codes: 0 ok, 1 failure, 2 bad input (nothing written)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dnsplane.errors import DamagedDataFile, DnsplaneError, InvalidConfig, Permanent, ProviderUnavailable
from dnsplane.model import NO_GENERATION, EndpointKey, Observed, RecordSet
from dnsplane.protocol.planner import HEAD_CHECK
from dnsplane.runtime.datadir import DataDirLock, installation_owner

if TYPE_CHECKING:
    from dnsplane.config import Fleet
    from dnsplane.model import Dial
    from dnsplane.providers.base import Provider
    from dnsplane.runtime.app import App, Options
    from dnsplane.runtime.preflight import Finding

# Piped output (scripts, tests) gets wide lines rather than rich's 80-column wrapping.
console = Console() if sys.stdout.isatty() else Console(width=200)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)

DEFAULT_DATA_DIR = ".dnsplane"

EPILOG_MAIN = """\
examples:
  dnsplane up                              run the built-in demo fleet; DNS on 127.0.0.1:5353
  dig @127.0.0.1 -p 5353 api.demo.test A   ask it (another terminal)
  dnsplane demo fail lb-2                  make demo load balancer lb-2 fail its health check
  dnsplane status                          endpoints, generations, targets, health, weights
  dnsplane history api.demo.test           every write to an endpoint
  dnsplane validate fleet.yaml             check a fleet file; exit 2 with file:line on errors
  dnsplane plan --fleet fleet.yaml         what a run would change, without writing
  dnsplane up --fleet fleet.yaml           run your own fleet
  dnsplane reload                          re-read the running fleet file (or: kill -HUP <pid>)
  dnsplane freeze --reason "bad health"    stop every automated write now; DNS keeps answering
  dnsplane unfreeze                        let the automation write again
  dnsplane drain lb-2 --for 30m            move lb-2's weight away; it comes back by itself
  dnsplane pin api.demo.test --targets lb-1,lb-3 --for 2h   hold an endpoint by hand
  dnsplane blast dynamodb --services us-east-1   which services fail if it does
  dnsplane simulate --protocol legacy      reproduce the October 2025 outage in the simulator
  dnsplane explore --protocol safe         every interleaving of a small configuration

The data directory (--data-dir, or $DNSPLANE_DATA_DIR, default ./.dnsplane) holds
the plan store (store.sqlite), the embedded DNS provider (dns.sqlite), the
running instance's state (instance.json) and its lock (one `dnsplane up` per
data directory; a second exits 2 naming the holder's pid).
"""


class LogFormatter(logging.Formatter):
    """``time level logger message key=value ...`` (actor, endpoint, generation, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        line = f"{stamp} {record.levelname:<7} {record.name} {record.getMessage()}"
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("DNSPLANE_DATA_DIR") or DEFAULT_DATA_DIR)


def load(path: str) -> Fleet:
    from dnsplane.config import load_fleet

    return load_fleet(path)


# ---------------------------------------------------------------------------- up


def cmd_up(args: argparse.Namespace) -> int:
    from dnsplane.config import demo_fleet, demo_target_ids
    from dnsplane.dns.ratelimit import RateLimit
    from dnsplane.runtime.app import App, Options
    from dnsplane.runtime.demo import DemoTargets
    from dnsplane.services import load_services

    setup_logging(args.log_level)
    fleet = load(args.fleet) if args.fleet else None  # validate before anything is created
    host, _, port = args.dns.rpartition(":")
    periods = {f"{actor}_period": getattr(args, f"{actor}_period")
               for actor in ("planner", "enactor", "health", "collector", "verifier")
               if getattr(args, f"{actor}_period", None) is not None}
    for option in ("health_grace", "head_check"):
        if getattr(args, option, None) is not None:
            periods[option] = getattr(args, option)
    rate_limit = RateLimit(args.rrl, args.rrl_slip) if getattr(args, "rrl", None) else None
    twice = [f"{h}:{p}" for i, (h, p) in enumerate(args.verify_server) if (h, p) in args.verify_server[:i]]
    if twice:
        err_console.print(f"[red]error:[/] --verify-server {twice[0]} given twice")
        return 2
    api_host, api_port = args.api if args.api is not None else (None, 0)
    token = os.environ.get("DNSPLANE_API_TOKEN") or None
    if args.api_token_file:
        try:
            token = Path(args.api_token_file).read_text().strip() or None
        except OSError as err:
            err_console.print(f"[red]error:[/] --api-token-file {args.api_token_file}: {err.strerror or err}")
            return 2
        if token is None:
            err_console.print(f"[red]error:[/] --api-token-file {args.api_token_file}: the file is empty")
            return 2
    options = Options(data_dir=data_dir(args), dns_host=host or "127.0.0.1", dns_port=int(port),
                      enactors=args.enactors, rate_limit=rate_limit, dns_workers=getattr(args, "dns_workers", None),
                      api_host=api_host, api_port=api_port, api_token=token, alert_webhook=args.alert_webhook,
                      services=load_services(args.services) if args.services else None,
                      verify_rate=args.verify_rate, verify_servers=tuple(args.verify_server),
                      repair_rate=args.repair_rate, **periods)

    async def main() -> None:
        demo = None
        nonlocal fleet
        if fleet is None:
            demo = DemoTargets(demo_target_ids())
            fleet = demo_fleet(await demo.start())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            app = App(fleet, options, demo)
        except DamagedDataFile as err:
            if not await serve_last_good(fleet, options, err, stop):
                raise
            if demo is not None:
                await demo.stop()
            raise
        try:
            findings = await run_preflight(app, stop)
        except DamagedDataFile as err:
            app.store.close()
            app.provider.close()
            if not await serve_last_good(fleet, options, err, stop):
                raise
            raise
        except BaseException:
            app.store.close()
            app.provider.close()
            raise
        if findings is None:  # stopped while waiting for the server
            app.store.close()
            app.provider.close()
            return
        app.preflight = [f.to_json() for f in findings]
        runner = asyncio.create_task(app.run(stop))
        started = asyncio.create_task(app.started.wait())
        await asyncio.wait([runner, started], return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            await runner  # raises what stopped it (e.g. the DNS port is taken)
        banner(app, demo is not None, findings)
        await runner

    # One `up` per data directory: a second one would run a second set of actors on the same store.
    lock = DataDirLock(options.data_dir)
    try:
        lock.acquire()
        asyncio.run(main())
    except Permanent as err:  # misconfiguration found at start: nothing was started
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2
    except OSError as err:  # the DNS address taken or not ours, the data dir not writable: fix and start again
        where = f" (the DNS address {options.dns_host}:{options.dns_port})" if err.errno in (
            errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES) else ""
        err_console.print(f"[red]error:[/] cannot start{where}: {escape(err.strerror or str(err))}", highlight=False)
        return 2
    finally:
        lock.release()
    return 0


async def serve_last_good(fleet: Fleet, options: Options, err: DamagedDataFile, stop: asyncio.Event) -> bool:
    """``store.sqlite`` is damaged but the embedded provider's ``dns.sqlite`` is not: serve its records,
    read-only, until stopped, rather than leave every name unanswered (I1: dnsplane is the authoritative
    server here). No plan, write or repair is made. False when this does not apply (another provider, or
    ``dns.sqlite`` damaged too): the caller then fails fast. The exit status stays 2 either way."""
    from dnsplane.dns.server import SERIAL_FILE, DnsServer
    from dnsplane.providers.embedded import EmbeddedProvider

    dns_file = options.data_dir / "dns.sqlite"
    damaged = Path(str(err.fields["path"])).name
    if fleet.provider.kind != "embedded" or damaged != "store.sqlite" or not dns_file.exists():
        return False
    try:
        provider = EmbeddedProvider(dns_file, fleet.zone)
    except DnsplaneError:
        return False
    from dnsplane.dns.transfer import policy_of

    server = DnsServer([provider], options.dns_host, options.dns_port, transfer=policy_of(fleet.serve),
                       serial_file=options.data_dir / SERIAL_FILE)
    try:
        await server.start()
        err_console.print(
            f"[red]error:[/] {escape(str(err))}\n[yellow]serving the last good records of {dns_file} read-only on "
            f"{options.dns_host}:{server.port}[/]: nothing is planned, written or repaired until the plan store is "
            "restored; stop with Ctrl-C (exit status 2)", highlight=False, soft_wrap=True)
        await stop.wait()
    finally:
        await server.stop()
        provider.close()
    return True


async def run_preflight(app: App, stop: asyncio.Event) -> list[Finding] | None:
    """The zone preflight (``runtime/preflight``): ``Permanent`` errors go up (exit 2); a server that
    cannot be reached is waited for, said once, retried with backoff; None when stopped meanwhile."""
    from dnsplane.runtime.preflight import preflight

    delay = 1.0
    said = False
    while True:
        try:
            return await asyncio.to_thread(preflight, app.fleet, app.provider, app.store)
        except ProviderUnavailable as exc:
            if not said:
                err_console.print(f"[yellow]waiting:[/] {escape(str(exc))}; retrying until it answers "
                                  "(Ctrl-C stops)", highlight=False, soft_wrap=True)
                said = True
            logging.getLogger("dnsplane.preflight").info("server not reachable yet: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
            return None
        delay = min(delay * 2, 10.0)


def fold_findings(findings: Sequence[dict[str, str]], shown: int = 3) -> list[str]:
    """One line per cause (the kind and the records at fault): a wildcard over 2,000 endpoints is one line
    naming a few of them and how many more, not 2,000 lines."""
    by_cause: dict[tuple[str, str], list[dict[str, str]]] = {}
    for f in findings:
        by_cause.setdefault((str(f.get("kind")), str(f.get("name"))), []).append(f)
    lines = []
    for group in by_cause.values():
        first = group[0]
        if len(group) == 1:
            lines.append(f"{first.get('endpoint')}: {first.get('detail')}; {first.get('todo')}")
            continue
        names = ", ".join(str(f.get("endpoint")) for f in group[:shown])
        more = f" and {len(group) - shown} more" if len(group) > shown else ""
        lines.append(f"{len(group)} endpoints ({names}{more}) are covered by the {first.get('kind')} at "
                     f"{first.get('name')} (for the first: {first.get('detail')}); {first.get('todo')}")
    return lines


def banner(app: App, demo: bool, findings: Sequence[Finding] = ()) -> None:
    names = sorted({ep.name for ep in app.fleet.endpoints})
    where = app.dns_address()
    kind = app.fleet.provider.kind
    if app.server is not None:
        assert where is not None  # the server runs only for the embedded provider, whose view is its own address
        host, port = where
        lines = [f"dnsplane is serving {app.fleet.zone} on {host}:{port} (UDP and TCP); data in {app.options.data_dir}"]
    elif where is not None:
        host, port = where
        lines = [f"dnsplane is managing {app.fleet.zone} on the {kind} server {host}:{port}; "
                 f"data in {app.options.data_dir}"]
    else:
        from dnsplane.providerconfig import Route53Config

        zone_id = app.fleet.provider.hosted_zone_id if isinstance(app.fleet.provider, Route53Config) else None
        lines = [f"dnsplane is managing {app.fleet.zone} in {kind} (hosted zone {zone_id}); "
                 f"data in {app.options.data_dir}"]
        host, port = "<a resolver>", 53
    first = names[0] if names else app.fleet.zone
    if demo:
        first = next((n for n in names if n.startswith("api.")), first)
    lines.append("try:")
    lines.append(f"  dig @{host} -p {port} {first} A +short")
    if demo:
        lines.append("  dnsplane demo fail lb-2      # lb-2 stops answering its health check")
        lines.append(f"  dig @{host} -p {port} {first} A +short   # lb-2's 192.0.2.12 no longer appears")
        lines.append("  dnsplane demo recover lb-2")
    lines.append("  dnsplane status              # generations, markers, health, weights")
    api = app.api_url()
    if api is not None:
        writes = "writes with the bearer token" if app.options.api_token else "read only: no DNSPLANE_API_TOKEN"
        lines.append(f"  curl {api}/api/v1/status    # the HTTP API ({writes}); {api}/metrics, {api}/docs")
    elif app.api_error is not None:
        lines.append(f"HTTP API not started: {app.api_error} (--api HOST:PORT, or --api off)")
    lines.append(f"  dnsplane history {first}")
    lines.append("Ctrl-C stops it.")
    if findings:
        lines.append(f"zone preflight: {len(findings)} problem(s) at endpoint names (also in `dnsplane status`):")
        lines += [f"  - {line}" for line in fold_findings([f.to_json() for f in findings])]
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------------------- validate / plan


def cmd_validate(args: argparse.Namespace) -> int:
    from dnsplane.dns.transfer import policy_of

    fleet = load(args.file)
    policy_of(fleet.serve)  # reads serve.transfer.key's file as `up` does: an error at the key file's line
    n_targets = len(fleet.targets())
    console.print(f"{args.file}: ok: zone {fleet.zone}, {len(fleet.endpoints)} endpoints, {n_targets} targets")
    return 0


def describe(rs: RecordSet | None) -> dict[str, tuple[tuple[str, ...], int]]:
    return {} if rs is None else {m.target_id: (m.addresses, m.weight) for m in rs.members}


def cmd_plan(args: argparse.Namespace) -> int:
    from dnsplane.config import demo_fleet, demo_target_ids
    from dnsplane.protocol.messages import DialsChanged
    from dnsplane.protocol.planner import Planner

    fleet = load(args.fleet) if args.fleet else demo_fleet(dict.fromkeys(demo_target_ids(), 1))
    current: dict[EndpointKey, RecordSet] = {}
    head = NO_GENERATION
    dials: tuple[Dial, ...] = ()  # the operators' pins and drains in force shape the plan as they shape `up`'s
    store_path = data_dir(args) / "store.sqlite"
    if store_path.exists():
        from dnsplane.store.sqlite import SqliteStore

        store = SqliteStore(store_path)
        head = store.head()
        current = {k: d.records for k, d in store.desired(None, head).items()}
        dials = tuple(store.dials())
        store.close()
    health: dict[str, bool | None] = {}
    if args.probe:
        from dnsplane.runtime.health import check

        async def probe() -> dict[str, bool | None]:
            targets = [(t.id, t.check) for t in fleet.targets().values() if t.check is not None]
            res = await asyncio.gather(*(check(hc) for _, hc in targets))
            return {tid: ok for (tid, _), (ok, _detail) in zip(targets, res, strict=True)}

        health = asyncio.run(probe())
    # a planner that has loaded the store's snapshot: its goal is what it would publish next
    planner = Planner.from_snapshot("plan-preview", fleet.zone, fleet.endpoints, head, current, health)
    planner.handle(DialsChanged(time.time(), dials))
    goal = planner.goal(planner.by_key)
    changed = 0
    console.print(f"plan against generation {head} in {store_path if store_path.exists() else '(empty store)'}"
                  f"{'' if args.probe else '; every target assumed healthy (use --probe to check)'}")
    for key in sorted(set(goal) | set(current)):
        old, new = describe(current.get(key)), describe(goal.get(key))
        if old == new and (current.get(key) is None or current[key].digest == goal[key].digest):
            continue
        changed += 1
        sign = "+" if not old else "~"
        console.print(f"[bold]{sign} {key}[/]")
        for tid in sorted(set(old) | set(new)):
            if tid not in old:
                console.print(f"    [green]+ {tid} {' '.join(new[tid][0])} weight {new[tid][1]}[/]")
            elif tid not in new:
                console.print(f"    [red]- {tid} {' '.join(old[tid][0])} weight {old[tid][1]}[/]")
            elif old[tid] != new[tid]:
                console.print(f"    [yellow]~ {tid} weight {old[tid][1]} -> {new[tid][1]}[/]")
    console.print(f"{changed} endpoint(s) would change; nothing was written.")
    return 0


# ---------------------------------------------------------------------------- status / history


def read_instance(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((path / "instance.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    try:
        os.kill(int(data["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return data


def status_provider(args: argparse.Namespace, root: Path, instance: dict[str, Any] | None, zone: str) -> Provider:
    """The provider ``status`` reads markers from: the one the fleet configures (``--fleet``, else the
    running instance's fleet file), else the embedded ``dns.sqlite`` when there is one (never a new one:
    markers of another provider would all read "no marker")."""
    from dnsplane.providers.embedded import EmbeddedProvider
    from dnsplane.runtime.providers import open_provider

    path = getattr(args, "fleet", None)
    options = (instance or {}).get("provider_options")
    if path is None and instance is not None and instance.get("provider", "embedded") != "embedded" \
            and isinstance(options, dict):
        # The provider the running instance opened: its fleet file may have been edited since (a
        # reload refused, an edit in progress), and the provider section cannot change on reload.
        from dnsplane.config import Fleet
        from dnsplane.providerconfig import config_of

        try:
            running = config_of(str(instance["provider"]), options)
        except ValueError as e:  # an instance.json another version wrote
            raise InvalidConfig(str(root / "instance.json"), 0, f"provider_options: {e}") from e
        return open_provider(Fleet(zone, (), str(instance.get("fleet", "")), running), root)
    if path is None and instance is not None and instance.get("provider", "embedded") != "embedded":
        path = str(instance.get("fleet", ""))
        if not Path(path).is_file():
            raise InvalidConfig(path or "<fleet>", 0, f"the running instance uses the {instance.get('provider')} "
                                "provider, but its fleet file cannot be read from here: pass --fleet FILE")
    if path is None:
        if not (root / "dns.sqlite").exists():  # not the embedded provider: its markers are elsewhere
            raise InvalidConfig("<fleet>", 0, f"no dnsplane is running on {root} and it has no embedded DNS "
                                "database: pass --fleet FILE so that status reads the markers from its provider")
        return EmbeddedProvider(root / "dns.sqlite", zone)
    return open_provider(load(path), root)


STALL_GRACE = 5.0  # seconds past an actor's due round before status calls it stalled


def actor_state(info: dict[str, Any], written: float) -> str:
    """One actor's liveness from ``instance.json``'s ``actors`` (see runtime/app.ActorStatus), as of
    ``written``, when the file was written."""
    due = info.get("next_round")
    failures = int(info.get("failures") or 0)
    if due is not None and written > float(due) + max(STALL_GRACE, 3 * float(info.get("period") or 0)):
        return f"[red]STALLED (round overdue by {written - float(due):.0f}s)[/]"
    if failures:
        return f"[red]FAILING ({failures} round{'s' if failures > 1 else ''} in a row; retrying)[/]"
    if info.get("held"):
        return f"[yellow]held ({escape(str(info['held']))})[/]"
    return "[green]running[/]"


def print_actors(instance: dict[str, Any], now: float) -> None:
    """The actors' liveness: last successful round, consecutive failures, last error and when (I8)."""
    actors = instance.get("actors") or {}
    if not actors:
        return
    written = float(instance.get("written_at") or now)
    interval = float(instance.get("status_interval") or 1.0)
    if now - written > max(STALL_GRACE, 3 * interval):
        console.print(f"[red]instance.json was last written {now - written:.0f}s ago: the running process "
                      "is stalled (its event loop blocked) or cannot write its data directory[/]")

    def ago(t: float | str | None) -> str:  # a time from instance.json (JSON: a number, or None)
        return "-" if t is None else f"{max(0.0, now - float(t)):.1f}s ago"

    table = Table(title="actors")
    for col in ("actor", "state", "last ok", "failures", "last error"):
        table.add_column(col)
    for name, info in sorted(actors.items()):
        error = info.get("last_error")
        text = "-" if not error else f"{escape(str(error))} ({ago(info.get('last_error_at'))})"
        table.add_row(name, actor_state(info, written), ago(info.get("last_ok")), str(info.get("failures") or 0),
                      text)
    console.print(table)


def health_mark(h: dict[str, object]) -> str:
    """A target's health in ``status``: up, DOWN, unknown (never known since start), or the known
    state marked "(check unknown)" when its newest check was unknown (a local failure: the state is held)."""
    if not h:
        return "?"
    healthy = h.get("healthy")
    if healthy is None:
        return "[yellow]unknown[/]"
    mark = "up" if healthy else "[red]DOWN[/]"
    return mark + ("[yellow] (check unknown)[/]" if h.get("check") == "unknown" else "")


def cmd_status(args: argparse.Namespace) -> int:
    from dnsplane.store.sqlite import SqliteStore

    root = data_dir(args)
    if not (root / "store.sqlite").exists():
        err_console.print(f"no dnsplane data in {root} (start one with `dnsplane up`, or pass --data-dir)")
        return 1
    instance = read_instance(root)
    store = SqliteStore(root / "store.sqlite")
    freeze = store.frozen()
    if freeze is not None:
        held = ""
        if instance is not None and not (instance.get("frozen") or {}).get("quiet"):
            held = " [yellow](the running instance has not yet reported that no write is in flight)[/]"
        console.print(f"[red]FROZEN[/] since {clock(freeze.at)} by {escape(freeze.by)}: "
                      f"{escape(freeze.reason) or 'no reason given'}. No automated write (enactors, collector, "
                      f"verifier repairs) until `dnsplane unfreeze`; no expiry.{held}", highlight=False,
                      soft_wrap=True)
    print_dials(store.dials(), instance)
    hold = (instance or {}).get("hold")
    if hold:
        release = hold.get("release_at")
        then = f"or by itself at {clock(float(release))}" if release else "nothing else releases it"
        console.print(f"[red]HELD[/] by the zone guard: the plan for generation {hold['generation']} would change "
                      f"{hold['changed']} of {hold['existing']} endpoints, more than {escape(str(hold['limit']))}; "
                      f"held since {clock(float(hold['since']))}. `dnsplane confirm {hold['generation']}` publishes it "
                      f"({then}).", highlight=False, soft_wrap=True)
    head = store.head()
    desired = store.desired(None, head)
    zone = instance["zone"] if instance else next(iter(desired)).name.split(".", 1)[1] if desired else "."
    provider = status_provider(args, root, instance, zone)
    unread = None  # why the provider could not be read: the store's side is shown all the same
    try:
        observed = provider.read(list(desired))
    except (ProviderUnavailable, Permanent) as err:  # Route 53 down, access denied, a server that is gone
        observed, unread = {}, str(err)
    health = (instance or {}).get("health", {})
    fleet_targets = (instance or {}).get("endpoints", {})
    table = Table(title=f"dnsplane: head generation {head}; enactors {dict(store.applied())}"
                  + ("" if instance else " (not running)"))
    for col in ("endpoint", "plan gen", "marker gen", "state", "targets (health, weight)"):
        table.add_column(col)
    # I7: whose markers are ours: the running instance's, else the --fleet file's owner:, else the data dir's
    fleet_path = getattr(args, "fleet", None)
    fleet_owner = load(fleet_path).owner if instance is None and fleet_path else ""
    owner = str((instance or {}).get("owner") or installation_owner(root, fleet_owner, store))
    fleet_complete = instance is not None and len(fleet_targets) < 10_000  # instance.json lists the fleet
    quarantined: dict[str, str] = (instance or {}).get("quarantined") or {}
    for key in sorted(desired):
        want = desired[key]
        seen = observed.get(key, Observed(None, None))
        marker = seen.marker
        if unread is not None:
            state = "[yellow]unknown (provider not read)[/]"
        elif fleet_complete and str(key) not in fleet_targets:
            state = ("released (not in the fleet; marker says released)" if marker is not None and marker.released
                     else "released (not in the fleet; [yellow]marker not marked released yet[/])")
        elif marker is not None and marker.owner and marker.owner != owner:
            state = f"[red]FOREIGN (owner {escape(marker.owner)})[/]"
        elif marker is None and seen.records is not None:
            state = "[red]FOREIGN (records without a marker)[/]"
        elif marker is None and seen.records is None and freeze is not None:
            state = "[yellow]held back by the freeze (not written yet)[/]"
        elif marker is None:
            state = "[red]no marker[/]"
        elif marker.released:  # in the fleet (or the fleet unknown) but marked released
            state = ("released (marker says released)" if not fleet_complete
                     else "[yellow]released marker, back in the fleet: being taken back[/]")
        elif seen.records is None or not seen.records.live_members():
            state = "[red]EMPTY[/]"
        elif marker.generation >= want.generation and seen.records.digest == want.records.digest:
            state = "[green]in sync[/]"
        elif marker.generation < want.generation:
            state = "[yellow]lagging[/]" if freeze is None else "[yellow]held back by the freeze[/]"
        else:
            state = "[red]drift[/]"
        if str(key) in quarantined:
            state = f"[red]QUARANTINED[/] ({state})"
        members = {m.target_id: m.weight for m in want.records.members}
        parts = []
        for tid in sorted(set(members) | set(fleet_targets.get(str(key), ()))):
            h = health.get(tid, {})
            mark = health_mark(h)
            parts.append(f"{tid} {mark} w={members.get(tid, 0)}")
        shown = "?" if unread is not None else str(marker.generation) if marker else "-"
        table.add_row(str(key), str(want.generation), shown, state, ", ".join(parts))
    console.print(table)
    if unread is not None:
        console.print(f"[red]the provider could not be read[/] (markers and states unknown): {escape(unread)}",
                      highlight=False, soft_wrap=True)
    down = [t for t, h in health.items() if h.get("healthy") is False]
    if down:
        console.print(f"unhealthy targets: {', '.join(down)}")
    unknown = [f"{t} ({h.get('detail') or 'not checked yet'})" for t, h in sorted(health.items())
               if h.get("healthy") is None or h.get("check") == "unknown"]
    if unknown:
        console.print(f"health unknown (a local failure or no check yet; weights unchanged): {', '.join(unknown)}")
    last_reload = (instance or {}).get("reload")
    if last_reload:  # `dnsplane reload` or SIGHUP: what became of the newest one
        when = time.strftime("%H:%M:%S", time.localtime(float(last_reload.get("finished", 0))))
        verdict = "applied" if last_reload.get("ok") else "[red]REFUSED[/] (the fleet before it runs on)"
        console.print(f"last fleet reload at {when}: {verdict}: {escape(str(last_reload.get('message', '')))}",
                      highlight=False, soft_wrap=True)
    foreign = (instance or {}).get("foreign") or {}
    if foreign:
        console.print(f"owner {escape(owner)}: {len(foreign)} endpoint(s) FOREIGN, not written (I7; "
                      "adopt: true in the fleet file takes one over):", highlight=False, soft_wrap=True)
        for name, why in sorted(foreign.items()):
            console.print(f"  - {escape(str(name))}: {escape(str(why))}", highlight=False, soft_wrap=True)
    contested = (instance or {}).get("contested") or {}
    if contested:  # two installations both adopt these: refused until a reload or a restart
        console.print(f"owner {escape(owner)}: {len(contested)} endpoint(s) [red]CONTESTED[/], not written (I7; "
                      "another installation takes them back: give each endpoint to one installation, "
                      "then reload):", highlight=False, soft_wrap=True)
        for name, why in sorted(contested.items()):
            console.print(f"  - {escape(str(name))}: {escape(str(why))}", highlight=False, soft_wrap=True)
    if quarantined:  # the provider rejected their writes (too big, a CNAME at the name...): the others go on
        console.print(f"{len(quarantined)} endpoint(s) QUARANTINED, their writes rejected by the provider "
                      "(retried with a later plan or after a backoff):", highlight=False, soft_wrap=True)
        for name, why in sorted(quarantined.items()):
            console.print(f"  - {escape(str(name))}: {escape(str(why))}", highlight=False, soft_wrap=True)
    for b in store.request_budgets():  # Route 53's per-account budget, shared by the processes on this store
        console.print(f"request budget of {escape(str(b['account']))}: {b['rate']:g} requests/s (bursts of "
                      f"{b['burst']:g}); used {b['used']}, {b['waits']} waited ({float(b['waited']):.1f} s in all)",  # type: ignore[arg-type]
                      highlight=False, soft_wrap=True)
    findings = (instance or {}).get("preflight") or []
    if findings:
        console.print(f"zone preflight at start: {len(findings)} problem(s) at endpoint names:")
        for line in fold_findings(findings):
            console.print(f"  - {escape(line)}", highlight=False, soft_wrap=True)
    for server, state in sorted(((instance or {}).get("secondaries") or {}).items()):
        problems = state.get("problems") or {}
        if state.get("reachable") is False:
            console.print(f"server {escape(server)}: [red]answers nothing[/]", highlight=False)
        elif problems:
            said = ", ".join(f"{n} {p.removeprefix('secondary-')}" for p, n in sorted(problems.items()))
            console.print(f"server {escape(server)}: [yellow]endpoints wrong there: {escape(said)}[/]", highlight=False)
        else:
            console.print(f"server {escape(server)}: in step ({state.get('checked', 0)} endpoint answers checked)",
                          highlight=False)
    print_provider_stats(instance or {})
    print_actors(instance or {}, time.time())
    store.close()
    provider.close()
    if unread is not None:
        return 1
    return 0


def print_dials(dials: Sequence[Dial], instance: dict[str, Any] | None) -> None:
    """The operators' pins and drains in force, with their expiry, and where a drain's guard keeps it in."""
    now = time.time()
    running = {(d.get("kind"), d.get("subject")): d for d in (instance or {}).get("dials") or ()}
    kept_in = {k: d.get("kept_in") or [] for k, d in running.items()}
    for d in dials:
        if not d.active(now):
            continue
        until = "no expiry" if d.until is None else f"until {clock(d.until)} ({span(d.until - now)} left)"
        void = (running.get((d.kind, d.subject)) or {}).get("void")
        state = f"[dim]{d.kind.upper()}, VOID[/]" if void else f"[yellow]{d.kind.upper()}[/]"
        console.print(f"{state} {escape(d.describe())} by {escape(d.by)}, {until}: "
                      f"{escape(d.reason) or 'no reason given'}", highlight=False, soft_wrap=True)
        if void:
            console.print(f"  not in force: {escape(void)} (dnsplane un{d.kind} to remove it)", highlight=False,
                          soft_wrap=True)
        held = kept_in.get((d.kind, d.subject))
        if held:
            console.print(f"  kept in (fewer healthy targets than the floor without it): {escape(', '.join(held))}",
                          highlight=False, soft_wrap=True)


def print_provider_stats(instance: dict[str, Any]) -> None:
    """The running process's provider API calls by kind, and its last round's (``Provider.stats``), if any."""
    stats = instance.get("provider_stats") or {}
    if not stats.get("calls"):
        return
    calls = ", ".join(f"{n} {op}" for op, n in sorted(stats["calls"].items()))
    last = stats.get("last_round") or {}
    spent = ", ".join(f"{n} {op}" for op, n in sorted((last.get("calls") or {}).items())) or "no call"
    console.print(f"provider calls: {calls}; {stats.get('rounds', 0)} round(s), the last "
                  f"({last.get('kind', '?')} of {last.get('endpoints', 0)} endpoint(s)): {spent}",
                  highlight=False, soft_wrap=True)  # fmt: skip


def cmd_history(args: argparse.Namespace) -> int:
    from dnsplane.store.sqlite import SqliteStore

    root = data_dir(args)
    if not (root / "store.sqlite").exists():
        err_console.print(f"no dnsplane data in {root}")
        return 1
    store = SqliteStore(root / "store.sqlite")
    actions = store.operator_actions()
    if args.endpoint is None:
        store.close()
        table = Table(title=f"operators' actions ({len(actions)} entries)")
        for col in ("when", "who", "action", "on", "reason"):
            table.add_column(col)
        for a in actions[-args.limit :]:
            table.add_row(clock(a.at), escape(a.by), a.action, escape(a.subject) or "the zone", escape(a.reason) or "-")
        console.print(table)
        return 0
    key = EndpointKey.parse(args.endpoint + (" " + args.type if args.type else ""))
    entries = store.history(key)
    store.close()
    # the operators' zone-wide actions among the endpoint's own: why writes paused, and who paused them
    rows: list[tuple[float, str, str, str, str]] = [
        (e.at, e.actor, e.action, f"{'-' if e.before is None else e.before} -> {'-' if e.after is None else e.after}",
         e.detail) for e in entries]
    rows += [(a.at, a.by, a.action, "", a.reason) for a in actions if a.subject in ("", str(key))]
    rows.sort(key=lambda r: r[0])  # stable: an endpoint's entries keep their order
    table = Table(title=f"history of {key} ({len(entries)} entries; the operators' freezes and pins among them)")
    for col in ("when", "actor", "action", "generation before -> after", "detail"):
        table.add_column(col)
    for at, actor, action, generations, detail in rows[-args.limit :]:
        table.add_row(clock(at), escape(actor), action, generations, escape(detail))
    console.print(table)
    return 0 if entries else 1


def watch_instance(root: Path, timeout: float,
                   done: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | bool | None:
    """Poll the running instance's ``instance.json`` until ``done(state)``: that state; None when the instance
    stopped meanwhile; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_instance(root)
        if state is None:
            return None
        if done(state):
            return state
        time.sleep(0.05)
    return False


class StillStarting(Exception):
    """A ``dnsplane up`` holds the data directory and has not reported within the command's ``--timeout``."""


def wait_for_start(root: Path, timeout: float) -> dict[str, Any] | None:
    """The running instance's state; if a ``dnsplane up`` holds the data directory but has not written it yet
    (it is starting), wait for it, up to ``timeout`` seconds (then ``StillStarting``); None when no ``up``
    runs (or it stopped)."""
    from dnsplane.runtime.datadir import holder

    deadline = time.monotonic() + timeout
    said = False
    while (state := read_instance(root)) is None:
        pid = holder(root)
        if pid is None:
            return None
        name = f"dnsplane{f' (pid {pid})' if pid else ''}"
        if time.monotonic() >= deadline:
            raise StillStarting(f"{name} is still starting on {root} after {timeout:g} s (--timeout)")
        if not said:
            console.print(f"{name} is starting on {root}: waiting for it")
            said = True
        time.sleep(0.05)
    return state


def clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


# ---------------------------------------------------------------------------- freeze


def operator() -> str:
    """Who is at the keyboard: ``user@host`` (the user behind sudo, where there is one)."""
    import getpass
    import socket

    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def cmd_freeze(args: argparse.Namespace) -> int:
    from dnsplane.runtime import operators
    from dnsplane.store.sqlite import SqliteStore

    root = data_dir(args)
    if not (root / "store.sqlite").exists():
        err_console.print(f"no dnsplane data in {root} (pass --data-dir)")
        return 1
    lift = args.command == "unfreeze"
    now, by, reason = time.time(), operators.printable(args.by or operator()), operators.printable(args.reason or "")
    store = SqliteStore(root / "store.sqlite")
    try:
        was = (operators.unfreeze if lift else operators.freeze)(store, now, by, reason)
    finally:
        store.close()
    if lift:
        if was is None:
            console.print("not frozen: nothing to lift")
            return 0
        console.print(f"unfrozen by {escape(by)} (frozen since {clock(was.at)} by {escape(was.by)})",
                      highlight=False, soft_wrap=True)
    elif was is not None:
        console.print(f"already frozen since {clock(was.at)} by {escape(was.by)}: "
                      f"{escape(was.reason) or 'no reason given'}; nothing changed", highlight=False, soft_wrap=True)
    else:
        console.print(f"frozen at {clock(now)} by {escape(by)}: {escape(reason) or 'no reason given'}. No "
                      "expiry: it holds, across restarts, until `dnsplane unfreeze`.", highlight=False, soft_wrap=True)
    try:
        instance = wait_for_start(root, args.timeout)
    except StillStarting as err:
        err_console.print(f"{err}: the store says {'unfrozen' if lift else 'frozen'}, and it reads that before "
                          "any actor runs; see `dnsplane status`")
        return 1
    if instance is None:
        console.print(f"no dnsplane is running on {root}: the next `dnsplane up` starts "
                      + ("unfrozen" if lift else "frozen"))
        return 0
    pid = int(instance["pid"])

    in_force = now if was is None else was.at  # the freeze the instance must confirm: not an earlier one

    def done(state: dict[str, Any]) -> bool:
        frozen = state.get("frozen")
        if lift:
            return frozen is None
        # this freeze, quiet: a quiet state of an earlier freeze (lifted since) says nothing of this one
        return frozen is not None and frozen.get("at") == in_force and bool(frozen.get("quiet"))

    seen = watch_instance(root, args.timeout, done)
    if seen is None:
        console.print(f"the running dnsplane (pid {pid}) has stopped")
    elif seen and lift:
        console.print(f"the running dnsplane (pid {pid}) writes again: the enactors apply the newest plan now")
    elif seen:
        console.print(f"the running dnsplane (pid {pid}) has stopped writing: no automated write is in "
                      "flight; DNS keeps answering what it holds and the planner keeps planning "
                      "(`dnsplane status` shows what is held back)", highlight=False, soft_wrap=True)
    else:
        wanted = "writes again" if lift else "has no automated write in flight"
        err_console.print(f"the store says {'unfrozen' if lift else 'frozen'}, but the running dnsplane (pid {pid}) "
                          f"did not report that it {wanted} within {args.timeout:g} s; see `dnsplane status`")
        return 1
    return 0


# ---------------------------------------------------------------------------- blast radius


def cmd_blast(args: argparse.Namespace) -> int:
    from dnsplane.services import FORMATS, load_services

    services = load_services(args.services)  # InvalidConfig: exit 2 with file:line (main)
    try:
        impacts = services.blast(args.subject)
    except KeyError as err:
        err_console.print(f"[red]error:[/] {escape(str(err.args[0]))}", highlight=False, soft_wrap=True)
        return 2
    shown = services.subject(args.subject)[0]
    out = FORMATS[args.format](shown, impacts)
    if args.output:
        Path(args.output).write_text(out + "\n")
        console.print(f"{len(impacts)} service(s) impacted; written to {escape(args.output)}")
    else:
        print(out)
    return 0


# ---------------------------------------------------------------------------- confirm


def cmd_confirm(args: argparse.Namespace) -> int:
    from dnsplane.model import Generation
    from dnsplane.runtime import operators
    from dnsplane.store.sqlite import SqliteStore

    root = data_dir(args)
    try:
        instance = wait_for_start(root, args.timeout)
    except StillStarting as err:
        err_console.print(f"{err}: it has no plan to confirm yet; try again once it runs")
        return 1
    if instance is None or not (root / "store.sqlite").exists():
        err_console.print(f"no dnsplane is running on {root}: only a running planner holds a plan (pass --data-dir)")
        return 1
    hold = instance.get("hold")
    if hold is None:
        err_console.print("no plan is held by the zone guard: nothing to confirm; nothing changed")
        return 1
    by = args.by or operator()
    store = SqliteStore(root / "store.sqlite")
    try:
        try:
            operators.confirm(store, Generation(int(hold["generation"])), Generation(args.generation), time.time(), by,
                              args.reason or "")
        except operators.Refused as refused:
            err_console.print(f"[red]error:[/] {escape(str(refused))} (it would change {hold['changed']} of "
                              f"{hold['existing']} endpoints)", highlight=False, soft_wrap=True)
            return 2
        console.print(f"confirmed generation {args.generation} (it would change {hold['changed']} of "
                      f"{hold['existing']} endpoints) by {escape(by)}", highlight=False, soft_wrap=True)
        seen = watch_instance(root, args.timeout, lambda state: (state.get("hold") or {}).get("generation")
                              != args.generation and store.head() >= Generation(args.generation))
        head = store.head()
    finally:
        store.close()
    if seen is None:
        err_console.print("the running dnsplane stopped before it published the plan")
        return 1
    if seen is False:
        err_console.print(f"the running dnsplane did not publish generation {args.generation} within "
                          f"{args.timeout:g} s; see `dnsplane status`")
        return 1
    console.print(f"published: the store's head is generation {head}; the enactors apply it now")
    return 0


# ---------------------------------------------------------------------------- pin / drain


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1h30m``: seconds, more than 0 and at most 90 days."""
    import re

    parts = re.fullmatch(r"(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?", text.strip())
    if not text.strip() or parts is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h, 1d, 1h30m)")
    d, h, m, sec = (int(g or 0) for g in parts.groups())
    seconds = float(((d * 24 + h) * 60 + m) * 60 + sec)
    if not 0 < seconds <= 90 * 86400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 90 days: {text!r}")
    return seconds


def span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def operated_fleet(args: argparse.Namespace, root: Path, instance: dict[str, Any] | None) -> Fleet | None:
    """The fleet a pin or drain is checked against: ``--fleet``, else the running instance's."""
    from dnsplane.config import demo_fleet

    if args.fleet:
        return load(args.fleet)
    if instance is None:
        err_console.print(f"no dnsplane is running on {root}: pass --fleet FILE so that the {args.command} can be "
                          "checked against the fleet")
        return None
    source = str(instance.get("fleet") or "")
    if source == "<demo>":
        return demo_fleet(instance.get("demo_ports") or {})
    return load(source)


def cmd_dial(args: argparse.Namespace) -> int:
    """``pin``, ``unpin``, ``drain``, ``undrain`` (``runtime/operators.py``)."""
    from dnsplane.runtime import operators
    from dnsplane.store.sqlite import SqliteStore

    root = data_dir(args)
    if not (root / "store.sqlite").exists():
        err_console.print(f"no dnsplane data in {root} (pass --data-dir)")
        return 1
    kind = "pin" if args.command in ("pin", "unpin") else "drain"
    key = EndpointKey.parse(args.endpoint + (" " + args.type if args.type else "")) if kind == "pin" else None
    subject = str(key) if key is not None else args.target
    now, by, reason = time.time(), operators.printable(args.by or operator()), operators.printable(args.reason or "")
    store = SqliteStore(root / "store.sqlite")
    try:
        if args.command.startswith("un"):
            was = operators.lift(store, kind, subject, now, by, reason)
            if was is None:
                console.print(f"no {kind} of {escape(subject)}: nothing to lift")
            else:
                console.print(f"lifted the {escape(was.describe())} (set by {escape(was.by)} at {clock(was.at)}); "
                              "the planner plans the endpoints again at its next round", highlight=False,
                              soft_wrap=True)
            return 0
        try:
            instance = wait_for_start(root, args.timeout)
        except StillStarting as err:
            if not args.fleet:
                err_console.print(f"{err}: nothing changed; try again once it runs, or pass --fleet FILE")
                return 1
            instance = None  # checked against --fleet; the starting instance reads the store's dials at start
        fleet = operated_fleet(args, root, instance)
        if fleet is None:
            return 1
        health = (instance or {}).get("health") or {}

        def up(tid: str) -> bool:
            return (health.get(tid) or {}).get("healthy") is not False

        until = None if args.no_expiry else now + args.duration
        try:
            done = operators.pin(store, fleet, up, key, args.targets.split(","), now, by, reason, until) \
                if key is not None else operators.drain(store, fleet, up, subject, now, by, reason, until)
        except operators.Refused as refused:
            err_console.print(f"[red]error:[/] {escape(refused.what)} refused; nothing changed:", highlight=False,
                              soft_wrap=True)
            for line in refused.reasons[:10]:
                err_console.print(f"  - {escape(line)}", highlight=False, soft_wrap=True)
            if len(refused.reasons) > 10:
                err_console.print(f"  ... and {len(refused.reasons) - 10} more")
            return 2
    finally:
        store.close()
    dial = done.dial
    until_text = "no expiry: it holds, across restarts, until `dnsplane un" + args.command + "`" \
        if dial.until is None else f"until {clock(dial.until)} ({span(dial.until - now)}), then it expires by itself"
    console.print(f"{'replaced the' if done.replaced else 'set a'} {escape(dial.describe())} by {escape(by)}: "
                  f"{escape(reason) or 'no reason given'}; {until_text}", highlight=False, soft_wrap=True)
    if done.leaves:
        hit = done.leaves
        names = ", ".join(str(k) for k in hit[:5]) + (f" and {len(hit) - 5} more" if len(hit) > 5 else "")
        console.print(f"{escape(subject)} leaves {escape(names)} at the planner's next round (paced by "
                      "max_weight_shift)", highlight=False, soft_wrap=True)
    if done.down:
        console.print(f"[yellow]warning:[/] pinned target(s) down now: {', '.join(done.down)}; they are served only "
                      "if every pinned target is down (never empty)", highlight=False, soft_wrap=True)
    if instance is not None:
        seen = watch_instance(root, args.timeout, lambda state: any(
            d.get("subject") == subject and d.get("kind") == kind and d.get("at") == dial.at
            for d in state.get("dials") or ()))
        if seen is False:
            err_console.print(f"the running dnsplane did not report the {kind} within {args.timeout:g} s; "
                              "see `dnsplane status`")
            return 1
        if seen:
            console.print(f"the running dnsplane (pid {instance.get('pid')}) has it in force")
    return 0


# ---------------------------------------------------------------------------- reload


def is_dnsplane(pid: int) -> bool:
    """Whether ``pid`` looks like a dnsplane process (True where /proc cannot tell)."""
    try:
        return b"dnsplane" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def cmd_reload(args: argparse.Namespace) -> int:
    root = data_dir(args)
    instance = read_instance(root)
    if instance is None:
        err_console.print(f"no running dnsplane found in {root} (start one with `dnsplane up --fleet FILE`, "
                          "or pass --data-dir)")
        return 1
    pid = int(instance["pid"])
    if not is_dnsplane(pid):
        err_console.print(f"{root / 'instance.json'} names pid {pid}, which is not dnsplane; not signalling it")
        return 1
    asked = time.time()  # the instance records when it read the file: an outcome from before this is not ours
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = read_instance(root)
        if state is None:
            err_console.print(f"the dnsplane instance (pid {pid}) stopped before it reported the reload")
            return 1
        outcome = state.get("reload") or {}
        if float(outcome.get("started", 0)) >= asked:
            message = str(outcome.get("message", ""))
            if outcome.get("ok"):
                console.print(f"fleet reloaded: {escape(message)}", highlight=False, soft_wrap=True)
                return 0
            err_console.print(f"[red]error:[/] reload refused: {escape(message)}\nthe running fleet is unchanged",
                              highlight=False, soft_wrap=True)
            return 2
        time.sleep(0.05)
    err_console.print(f"the dnsplane instance (pid {pid}) did not report a reload within {args.timeout:g} s")
    return 1


# ---------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    root = data_dir(args)
    instance = read_instance(root)
    if instance is None:
        err_console.print(f"no running dnsplane demo found in {root} (start one with `dnsplane up`)")
        return 1
    ports = instance.get("demo_ports") or {}
    if args.target not in ports:
        known = ", ".join(sorted(ports)) or "none (not running the demo fleet)"
        err_console.print(f"unknown demo target {args.target!r}; demo targets: {known}")
        return 2
    flag = root / "demo" / f"{args.target}.down"
    flag.parent.mkdir(parents=True, exist_ok=True)
    want_down = args.action == "fail"
    if want_down:
        flag.touch()
    else:
        with contextlib.suppress(FileNotFoundError):
            flag.unlink()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = read_instance(root) or {}
        if (args.target in state.get("down", [])) == want_down:
            verb = "stopped listening" if want_down else "is listening again"
            console.print(f"{args.target} {verb} on 127.0.0.1:{ports[args.target]}; dnsplane will notice "
                          "within a few health checks (see `dnsplane status`).")
            return 0
        time.sleep(0.1)
    err_console.print(f"the running instance did not act on {args.target} within 10 s")
    return 1


# ---------------------------------------------------------------------------- parser


def webhook_url(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def dns_server(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` of a DNS server (``[v6]:PORT`` too; port 53 by default); a host name is resolved now."""
    import ipaddress
    import socket

    host, port = text.strip(), "53"
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""  # "[::1" or "[::1]53": not an address
        elif rest:
            port = rest[1:]
    elif host.count(":") == 1:
        host, port = host.split(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT] (e.g. 205.251.192.1 or 127.0.0.1:5353), got {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = str(socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0][4][0])
        except (OSError, UnicodeError) as err:  # UnicodeError: an empty or too long label
            raise argparse.ArgumentTypeError(f"{text!r}: cannot resolve {host}: {err}") from None
    return host, int(port)


def endpoint_name(text: str) -> str:
    """An endpoint's name as given on the command line: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an endpoint name, e.g. api.demo.test; got an empty one")
    return text.strip()


def api_address(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[v6]:PORT`` too), or ``off``."""
    if text.strip().lower() == "off":
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:8053) or off, got {text!r}")
    return host, int(port)


def bounded_float(low: float, high: float, unit: str = "", above_low: bool = False) -> Callable[[str], float]:
    """An argparse type: a number in [low, high] (in (low, high] with ``above_low``), ``unit`` in its errors."""
    what = f"a number of {unit}" if unit else "a number"
    suffix = f" {unit}" if unit else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not (low < value if above_low else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"must be {'>' if above_low else '>='} {low:g} and <= {high:g}{suffix}: "
                                             f"{text!r}")
        return value
    return parse


positive_rate = bounded_float(0, 1_000_000, above_low=True)
positive_seconds = bounded_float(0, 3600, "seconds", above_low=True)
non_negative_seconds = bounded_float(0, 3600, "seconds")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}: {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (default: $DNSPLANE_DATA_DIR or ./.dnsplane)")
    p = argparse.ArgumentParser(
        prog="dnsplane",
        description="A DNS control plane: a planner turns load-balancer health into numbered plans; "
        "redundant enactors apply them with compare-and-swap; a verifier checks real DNS answers.",
        epilog=EPILOG_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    up = sub.add_parser("up", parents=[common], formatter_class=raw, help="run dnsplane (demo fleet by default)",
                        description="Run the planner, enactors, collector, verifier, health checks and the\n"
                        "embedded DNS server in one process. First a zone preflight: a permanent misconfiguration\n"
                        "(wrong TSIG key, zone not served, updates refused, a damaged or too new data file, the\n"
                        "data directory held by another `up`) exits 2 with the reason; a server that cannot be\n"
                        "reached is waited for; wildcards, CNAMEs, DNAMEs, delegations and foreign records at\n"
                        "endpoint names are reported (also in `dnsplane status`).",
                        epilog="examples:\n  dnsplane up\n  dnsplane up --fleet fleet.yaml --dns 127.0.0.1:5300\n")
    up.add_argument("--fleet", help="fleet file (YAML); without it, the built-in demo fleet. SIGHUP (or "
                    "`dnsplane reload`) re-reads it: applied whole, or refused with file:line")
    up.add_argument("--dns", default="127.0.0.1:5353", help="address:port to serve DNS on (default 127.0.0.1:5353)")
    up.add_argument("--api", type=api_address, default=("127.0.0.1", 8053), metavar="HOST:PORT",
                    help="where the HTTP API and /metrics listen (default 127.0.0.1:8053; port 0: any free one; "
                    "off: none). If it cannot listen, dnsplane runs without it and says so")
    up.add_argument("--services", metavar="FILE", help="a services file (see `dnsplane blast`; or the shipped example "
                    "us-east-1): the dashboard draws its dependency graph with current health overlaid")
    up.add_argument("--verify-rate", type=positive_rate, default=100.0, metavar="PER_SECOND",
                    help="endpoints a second each secondary (serve.notify) and --verify-server is asked about "
                    "(default 100)")
    up.add_argument("--verify-server", type=dns_server, action="append", default=[], metavar="HOST[:PORT]",
                    help="another authoritative server of the zone to watch (Route 53's name servers for the hosted "
                    "zone, a secondary fed elsewhere; repeatable): asked at --verify-rate like the serve.notify "
                    "secondaries; NXDOMAIN, empty, truncated, stale or drifted answers for over 10 s are alerted")
    up.add_argument("--repair-rate", type=bounded_float(0, 1_000_000), default=100.0, metavar="PER_SECOND",
                    help="repairs a second the verifier sends at most, as a budget per round (this times "
                    "--verifier-period, at least 1); the endpoints over it wait for the next round, so a "
                    "mistake cannot rewrite the whole zone at once (default 100; 0: no limit)")
    up.add_argument("--alert-webhook", type=webhook_url, metavar="URL",
                    help="POST every alert (verifier findings and repairs, a held plan, a freeze, a failing actor) "
                    "as JSON to this http(s) URL, retried, never blocking dnsplane (docs/operating.md)")
    up.add_argument("--api-token-file", metavar="FILE", help="the bearer token the API's writes need (default: "
                    "$DNSPLANE_API_TOKEN; with neither, the API is read only)")
    up.add_argument("--enactors", type=int, default=3, help="number of redundant enactors (default 3)")
    up.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    for actor, default in (("planner", 0.5), ("enactor", 1.0), ("health", 1.0), ("collector", 10.0),
                           ("verifier", 5.0)):
        up.add_argument(f"--{actor}-period", type=positive_seconds, default=None, metavar="SECONDS",
                        help=f"seconds between {actor} rounds (default {default:g})")
    up.add_argument("--health-grace", type=non_negative_seconds, default=None, metavar="SECONDS",
                    help="at start, publish nothing for an endpoint until each of its checked targets has "
                    "been health-checked, waiting at most this long; then the health kept from before the "
                    "restart stands, and a target with none kept counts as healthy (default 5; 0: no wait)")
    up.add_argument("--head-check", type=non_negative_seconds, default=None, metavar="SECONDS",
                    help="while it has nothing to publish, the planner asks the store this often whether the plan "
                    "at its head is still the one it knows, and reloads if not (a store put back to an older "
                    "backup under the running process); without the check DNS may settle on the backup's plans "
                    f"(default {HEAD_CHECK:g}; 0: off)")
    up.add_argument("--rrl", type=bounded_int(1, 1_000_000), default=None, metavar="PER_SECOND",
                    help="embedded server: response rate limiting over UDP, as BIND's and NSD's RRL: at most this "
                    "many identical answers a second to one client netblock (/24, /56), the excess dropped "
                    "(default: the fleet file's serve.rrl, else off)")
    up.add_argument("--rrl-slip", type=bounded_int(0, 10), default=2, metavar="N",
                    help="with --rrl, every Nth answer over the limit is sent truncated (TC) instead of dropped, so "
                    "a real client retries over TCP, which is never limited (default 2; 0: drop them all)")
    up.add_argument("--dns-workers", type=bounded_int(0, 64), default=None, metavar="N",
                    help="embedded server: answer UDP from N worker processes on the same port, so answering "
                    "uses N cores and control work (or this process's garbage collection) never delays a UDP "
                    "answer; this process keeps TCP and zone transfers (default: 1 for a fleet of 10,000 "
                    "endpoints or more, else 0; 0: this process answers everything)")
    up.set_defaults(func=cmd_up)

    v = sub.add_parser("validate", formatter_class=raw, help="check a fleet file; exit 2 with file:line on errors",
                       epilog="example:\n  dnsplane validate fleet.yaml\n")
    v.add_argument("file")
    v.set_defaults(func=cmd_validate)

    pl = sub.add_parser("plan", parents=[common], formatter_class=raw,
                        help="show what would change, as a diff, without writing",
                        epilog="examples:\n  dnsplane plan --fleet fleet.yaml\n  dnsplane plan --fleet fleet.yaml "
                        "--probe   # run the health checks once first\n")
    pl.add_argument("--fleet", help="fleet file (default: the demo fleet)")
    pl.add_argument("--probe", action="store_true", help="run every health check once instead of assuming healthy")
    pl.set_defaults(func=cmd_plan)

    st = sub.add_parser("status", parents=[common], formatter_class=raw,
                        help="endpoints, plan and marker generations, targets with health and weight, "
                        "Route 53 request budgets",
                        epilog="example:\n  dnsplane status --data-dir /var/lib/dnsplane\n")
    st.add_argument("--fleet", help="fleet file whose provider holds the markers (default: the running "
                    "instance's; without one, the embedded dns.sqlite)")
    st.set_defaults(func=cmd_status)

    h = sub.add_parser("history", parents=[common], formatter_class=raw, help="every write to one endpoint",
                       epilog="examples:\n  dnsplane history api.demo.test\n  dnsplane history api.demo.test "
                       "--type AAAA\n  dnsplane history                 # who froze and unfroze, when, why\n")
    h.add_argument("endpoint", nargs="?", type=endpoint_name,
                   help="endpoint name, e.g. api.demo.test; without it, the operators' actions (freeze, unfreeze)")
    h.add_argument("--type", default="", help="record type (default A)")
    h.add_argument("--limit", type=int, default=50, help="show the newest N entries (default 50)")
    h.set_defaults(func=cmd_history)

    r = sub.add_parser("reload", parents=[common], formatter_class=raw,
                       help="re-read the running instance's fleet file; apply it, or refuse it whole (exit 2)",
                       description="Signal the `dnsplane up` running on the data directory (SIGHUP, as\n"
                       "`kill -HUP <pid>` would) to re-read its fleet file, and print the outcome. The file\n"
                       "is validated whole, as `dnsplane validate` does: either every change is applied (new\n"
                       "and changed endpoints are planned; endpoints no longer in the file are no longer\n"
                       "planned), or nothing is and the error is printed as file:line. The zone and the\n"
                       "provider section cannot change without a restart; the data directory and --dns are\n"
                       "command-line options, not in the file. See docs/fleet-file.md, \"Reloading\".",
                       epilog="examples:\n  dnsplane reload\n  dnsplane reload --data-dir /var/lib/dnsplane\n"
                       "  kill -HUP $(jq .pid .dnsplane/instance.json)   # the same, outcome in the log\n"
                       "exit status: 0 applied, 1 no running instance or no answer, 2 refused (nothing changed)\n")
    r.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the outcome (default 30)")
    r.set_defaults(func=cmd_reload)

    for verb in ("freeze", "unfreeze"):
        lift = verb == "unfreeze"
        f = sub.add_parser(
            verb, parents=[common], formatter_class=raw,
            help="let the automation write again" if lift else
            "stop every automated write at once; DNS keeps answering",
            description=("Lift the freeze: the enactors apply the newest plan at once, the collector and the\n"
                         "verifier run again. Journalled with who and why (`dnsplane history`).") if lift else (
                "The big red button. Every automated write stops: the enactors', the collector's and the\n"
                "verifier's repairs. DNS keeps answering what it holds; the planner keeps planning and the\n"
                "health checks keep checking, so `dnsplane status` shows what is held back. The freeze is\n"
                "kept in the plan store: every process on the data directory obeys it, a restart keeps\n"
                "it, and it has no expiry (only `dnsplane unfreeze` lifts it). With a `dnsplane up`\n"
                "running, this waits until it reports that no write is in flight any more (a write\n"
                "already sent when the freeze came finishes; none starts after). Journalled with who and\n"
                "why (`dnsplane history`; who: --by, else user@host)."),
            epilog=(f"examples:\n  dnsplane {verb} --reason \"health checks fixed\"\n" if lift else
                    "examples:\n  dnsplane freeze --reason \"health checks failing everything, INC-4411\"\n"
                    "  dnsplane status                 # FROZEN, by whom, why; actors held\n")
            + "exit status: 0 done (or nothing to do), 1 no data, or the running instance did not confirm in time\n")
        f.add_argument("--reason", default="", help="why, for the journal and `dnsplane status`")
        f.add_argument("--by", default=None, help="who, for the journal (default: user@host)")
        f.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="SECONDS",
                       help="seconds to wait for the running instance to confirm (default 30)")
        f.set_defaults(func=cmd_freeze)

    b = sub.add_parser(
        "blast", formatter_class=raw, help="every service that fails if an endpoint or a service fails",
        description="The blast-radius graph, drawn before the incident. A services file (YAML) declares services,\n"
        "the endpoints each serves and what each depends on, hard (it fails with it) or soft (it is\n"
        "degraded). `blast` lists every service impacted if SUBJECT (a service, or an endpoint: name\n"
        "[type]) fails, with the dependency path, its depth and its hardness. Cycles, unknown services\n"
        "and malformed entries are refused with file:line (exit 2). The simulator takes the same file\n"
        "(`dnsplane simulate --services FILE`) and lists each service's impact windows. See\n"
        "docs/operating.md, \"Blast radius\".",
        epilog="examples:\n  dnsplane blast dynamodb.us-east-1.amazonaws.com --services us-east-1\n"
        "  dnsplane blast sts --services services.yaml --format json\n"
        "  dnsplane blast dynamodb --services us-east-1 --format svg --output blast.svg\n"
        "  dnsplane blast dynamodb --services us-east-1 --format dot | dot -Tpng > blast.png\n"
        "exit status: 0 shown, 2 a bad services file or an unknown subject\n")
    b.add_argument("subject", help="a service name, or an endpoint (api.demo.test, or 'api.demo.test AAAA')")
    b.add_argument("--services", required=True, metavar="FILE",
                   help="the services file, or the shipped example us-east-1")
    b.add_argument("--format", choices=["text", "json", "dot", "svg"], default="text", help="(default text)")
    b.add_argument("--output", metavar="FILE", help="write there instead of printing")
    b.set_defaults(func=cmd_blast)

    c = sub.add_parser(
        "confirm", parents=[common], formatter_class=raw,
        help="publish the plan the zone guard holds (a mass change)",
        description="The fleet file's `guard:` holds a plan that would change more of the zone's endpoints at\n"
        "once than it allows (`dnsplane status` shows it HELD, with its generation). Confirm it by\n"
        "that generation: the planner publishes it and the enactors apply it. A generation that is\n"
        "not the held one is refused (exit 2, nothing changed): the held plan may have changed under\n"
        "you. Journalled with who and why (`dnsplane history`). See docs/operating.md.",
        epilog="examples:\n  dnsplane confirm 42 --reason \"lb-2 really is gone\"\n"
        "exit status: 0 published, 1 nothing held / no running instance / not published in time, 2 not the held "
        "generation\n")
    c.add_argument("generation", type=bounded_int(1, 2**63 - 1), help="the held plan's generation (`dnsplane status`)")
    c.add_argument("--reason", default="", help="why, for the journal")
    c.add_argument("--by", default=None, help="who, for the journal (default: user@host)")
    c.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="SECONDS",
                   help="seconds to wait for the plan to be published (default 30)")
    c.set_defaults(func=cmd_confirm)

    for verb in ("pin", "unpin", "drain", "undrain"):
        lift = verb.startswith("un")
        kind = verb.removeprefix("un")
        helps = {
            "pin": "serve an endpoint from the targets you name only, for a while",
            "unpin": "lift a pin: health alone decides the endpoint again",
            "drain": "move a target's weight away from every endpoint it is in, for a while",
            "undrain": "lift a drain: the target takes weight again where it is healthy",
        }
        descriptions = {
            "pin": "Hold an endpoint by hand: it is served from the targets you name only (health still\n"
                   "takes a dead one out, but never below the endpoint's floor: min_targets, and never none)\n"
                   "until the pin expires (--for) or is lifted (`dnsplane unpin`). Refused, with the reason\n"
                   "and nothing changed, for a target not in the endpoint or fewer targets than min_targets.",
            "drain": "Move a target's weight away (like Route 53 ARC's zonal shift): it leaves every endpoint\n"
                     "it is in at the planner's next round, paced by max_weight_shift, until the drain expires\n"
                     "(--for) or is lifted (`dnsplane undrain`). Refused, with the reason and nothing changed,\n"
                     "if any endpoint would keep fewer healthy targets than its floor (min_targets, and never\n"
                     "none; health as the running instance knows it). Should health change later so that an\n"
                     "endpoint would go below its floor, the planner keeps the target in there (`status`).",
        }
        examples = {
            "pin": "  dnsplane pin api.demo.test --targets lb-1,lb-3 --for 2h --reason \"lb-2 flapping\"\n"
                   "  dnsplane pin api.demo.test --type AAAA --targets lb-1-v6 --no-expiry\n",
            "drain": "  dnsplane drain lb-2 --for 30m --reason \"kernel patching\"\n",
            "unpin": "  dnsplane unpin api.demo.test\n",
            "undrain": "  dnsplane undrain lb-2\n",
        }
        dp = sub.add_parser(
            verb, parents=[common], formatter_class=raw, help=helps[verb],
            description=(f"Lift the {kind}: the planner plans its endpoints again at its next round. Journalled "
                         "with who and why.") if lift else descriptions[verb] + "\nEvery pin and drain is kept in "
                         "the plan store (a restart keeps it), journalled with\nwho and why (`dnsplane history`), "
                         "and shown by `dnsplane status`. It needs an expiry\n(--for) or says it has none "
                         "(--no-expiry).",
            epilog=f"examples:\n{examples[verb]}"
                   "exit status: 0 done (or nothing to lift), 1 no data or no answer, 2 refused (nothing changed)\n")
        if kind == "pin":
            dp.add_argument("endpoint", type=endpoint_name, help="endpoint name, e.g. api.demo.test")
            dp.add_argument("--type", default="", help="record type (default A)")
        else:
            dp.add_argument("target", help="target id, e.g. lb-2")
        if not lift:
            if kind == "pin":
                dp.add_argument("--targets", required=True, help="comma-separated target ids, e.g. lb-1,lb-3")
            how_long = dp.add_mutually_exclusive_group(required=True)
            how_long.add_argument("--for", dest="duration", type=parse_duration, metavar="DURATION",
                                  help="expire after this long: 90s, 30m, 2h, 1d, 1h30m (at most 90 days)")
            how_long.add_argument("--no-expiry", action="store_true", help="hold until lifted by hand")
            dp.add_argument("--fleet", help="fleet file to check against (default: the running instance's)")
            dp.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="SECONDS",
                            help="seconds to wait for the running instance to confirm (default 30)")
        dp.add_argument("--reason", default="", help="why, for the journal and `dnsplane status`")
        dp.add_argument("--by", default=None, help="who, for the journal (default: user@host)")
        dp.set_defaults(func=cmd_dial)

    d = sub.add_parser("demo", parents=[common], formatter_class=raw,
                       help="make a demo load balancer fail or recover (against a running `dnsplane up`)",
                       epilog="examples:\n  dnsplane demo fail lb-2\n  dnsplane demo recover lb-2\n")
    d.add_argument("action", choices=["fail", "recover"])
    d.add_argument("target", help="demo target id, e.g. lb-2")
    d.set_defaults(func=cmd_demo)

    from dnsplane.sim.cli import add_commands  # simulate, explore

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InvalidConfig as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        return 2
    except DamagedDataFile as err:  # store.sqlite or dns.sqlite damaged, or of a newer schema
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2
    except DnsplaneError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
