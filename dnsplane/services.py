"""The blast-radius graph: which services fail when an endpoint (or a service) does (issue 12, part 7).

A services file (YAML) declares services, the endpoints each serves, and what each depends on::

    services:
      dynamodb:
        endpoints: [dynamodb.us-east-1.amazonaws.com]
        tolerance: 30            # seconds an endpoint of it may be empty before it is impacted (simulator)
      ec2-launch:
        depends: {dynamodb: hard}
      support-console:
        depends: {ec2-launch: soft}

Semantics. An endpoint that fails fails every service that serves it. A service fails when a **hard**
dependency fails; it is **degraded** when only soft dependencies (or degraded hard ones) are impaired.
``Services.blast(subject)`` lists every service impacted by ``subject`` failing, each with the shortest
dependency path that makes it as bad as it gets (a hard path first), its depth and its hardness.

Refused at load, with ``file:line``: unknown keys, a dependency on an unknown service, a hardness other than
``hard``/``soft``, a dependency cycle (the line of the edge that closes it), a service with neither
endpoints nor dependencies, an endpoint served by two services.
"""

from __future__ import annotations

import difflib
import html
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from dnsplane.config import _line, _Parser  # the fleet file's node walker: same errors, same file:line
from dnsplane.errors import InvalidConfig
from dnsplane.model import EndpointKey

_TOP = ("services",)
_SERVICE = ("endpoints", "depends", "tolerance")
DEFAULT_TOLERANCE = 0.0


@dataclass(frozen=True, slots=True)
class Dependency:
    on: str
    hard: bool
    line: int


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    endpoints: tuple[EndpointKey, ...]
    depends: tuple[Dependency, ...]
    tolerance: float  # seconds an endpoint of it may be empty before the service counts as impacted
    line: int


@dataclass(frozen=True, slots=True)
class Impact:
    """One service impacted by a failure: ``path`` from what failed to it, ``hard`` False: degraded only."""

    service: str
    path: tuple[str, ...]
    hard: bool

    @property
    def depth(self) -> int:
        return len(self.path) - 1


@dataclass(frozen=True)
class Services:
    services: dict[str, Service]
    source: str

    def server_of(self) -> dict[EndpointKey, str]:
        return {key: s.name for s in self.services.values() for key in s.endpoints}

    def endpoints(self) -> list[EndpointKey]:
        """Every endpoint served, in the order the file declares them."""
        return [key for s in self.services.values() for key in s.endpoints]

    def subject(self, text: str) -> tuple[str, list[str]]:
        """``text`` as a service name or an endpoint (``name [type]``): (how to show it, the services it fails
        outright). ``KeyError`` with a suggestion when it is neither."""
        if text in self.services:
            return text, [text]
        if not text.strip():
            raise KeyError(f"an empty subject: name a service or an endpoint of {self.source}")
        key = EndpointKey.parse(text)
        servers = self.server_of()
        if key in servers:
            return str(key), [servers[key]]
        names = list(self.services) + [k.name.rstrip(".") for k in servers]
        close = difflib.get_close_matches(text, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"{text!r} is neither a service nor an endpoint of {self.source}{hint}")

    def blast(self, text: str) -> list[Impact]:
        """Every service impacted if ``text`` (a service or an endpoint) fails, hard failures first, then by
        depth and name. An endpoint's paths start at the endpoint; a service's at the service, which is not
        listed itself."""
        shown, failed = self.subject(text)
        dependents: dict[str, list[Dependency]] = {}
        for s in self.services.values():
            for d in s.depends:
                dependents.setdefault(d.on, []).append(Dependency(s.name, d.hard, d.line))
        prefix = () if shown in self.services else (shown,)
        hard = _walk(failed, dependents, prefix, hard_only=True)
        every = _walk(failed, dependents, prefix, hard_only=False)
        out = [Impact(name, path, True) for name, path in hard.items() if name != shown]
        out += [Impact(name, path, False) for name, path in every.items() if name not in hard]
        return sorted(out, key=lambda i: (not i.hard, i.depth, i.service))


def _walk(failed: list[str], dependents: dict[str, list[Dependency]], prefix: tuple[str, ...],
          hard_only: bool) -> dict[str, tuple[str, ...]]:
    """Shortest paths (breadth first) from the failed services along their dependents' edges (hard ones only,
    with ``hard_only``), each path starting with ``prefix``."""
    paths: dict[str, tuple[str, ...]] = {name: (*prefix, name) for name in failed}
    queue: deque[str] = deque(failed)
    while queue:
        name = queue.popleft()
        for d in dependents.get(name, ()):
            if (hard_only and not d.hard) or d.on in paths:
                continue
            paths[d.on] = (*paths[name], d.on)
            queue.append(d.on)
    return paths


SHIPPED = {"us-east-1": "us-east-1-services.yaml"}  # examples shipped in dnsplane/demo/


def load_services(path: str | Path) -> Services:
    """Read and check a services file (a path, or the name of a shipped example: ``us-east-1``). Raises
    ``InvalidConfig`` (``file:line: message``)."""
    if str(path) in SHIPPED and not Path(path).exists():
        from importlib import resources

        path = str(resources.files("dnsplane.demo").joinpath(SHIPPED[str(path)]))
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidConfig(where, 0, f"cannot read the services file: {getattr(e, 'strerror', None) or e}") from e
    return parse_services(text, where)


def parse_services(text: str, source: str = "<string>") -> Services:
    p = _Parser(source)
    root = p.compose(text)
    if root is None:
        raise InvalidConfig(source, 1, "the services file is empty; expected a top-level key services")
    top = p.entries(root, "top level", _TOP, required=("services",))
    entries = p.entries(top["services"][1], "services", None)
    services: dict[str, Service] = {}
    servers: dict[EndpointKey, str] = {}
    for name, (knode, node) in entries.items():
        where = f"services.{name}"
        fields = p.entries(node, where, _SERVICE)
        endpoints: list[EndpointKey] = []
        if "endpoints" in fields:
            for item in p.items(fields["endpoints"][1], f"{where}.endpoints", "endpoints"):
                written = p.text(item, f"{where}.endpoints")
                if not written.strip():
                    p.fail(item, f"{where}.endpoints: an empty endpoint name")
                key = EndpointKey.parse(written)
                if key in servers:
                    p.fail(item, f"{where}.endpoints: {key} is already served by {servers[key]}")
                servers[key] = name
                endpoints.append(key)
        depends: list[Dependency] = []
        if "depends" in fields:
            for on, (onode, hnode) in p.entries(fields["depends"][1], f"{where}.depends", None).items():
                hardness = p.text(hnode, f"{where}.depends.{on}")
                if hardness not in ("hard", "soft"):
                    p.fail(hnode, f"{where}.depends.{on}: hard or soft, got {hardness!r}")
                depends.append(Dependency(on, hardness == "hard", _line(onode)))
        tolerance = DEFAULT_TOLERANCE
        if "tolerance" in fields:
            tolerance = p.number(fields["tolerance"][1], f"{where}.tolerance")
            if tolerance < 0:
                p.fail(fields["tolerance"][1], f"{where}.tolerance: seconds, at least 0, got {tolerance:g}")
        if not endpoints and not depends:
            p.fail(knode, f"{where}: serves no endpoint and depends on nothing (give endpoints or depends)")
        services[name] = Service(name, tuple(endpoints), tuple(depends), tolerance, _line(knode))
    for s in services.values():
        for d in s.depends:
            if d.on not in services:
                close = difflib.get_close_matches(d.on, list(services), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise InvalidConfig(source, d.line, f"services.{s.name}.depends: unknown service {d.on!r}{hint}")
    _refuse_cycles(services, source)
    return Services(services, source)


def _refuse_cycles(services: dict[str, Service], source: str) -> None:
    """A dependency cycle is refused at the line of the edge that closes it, naming the whole cycle."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for d in services[name].depends:
            if state.get(d.on) == 1:
                cycle = [*path[path.index(d.on):], d.on]
                raise InvalidConfig(source, d.line, f"services.{name}.depends: a dependency cycle: "
                                    + " -> ".join(cycle))
            if d.on not in state:
                visit(d.on)
        path.pop()
        state[name] = 2

    for name in services:
        if name not in state:
            visit(name)


# ---------------------------------------------------------------------------- impact over time (simulator)


@dataclass(frozen=True, slots=True)
class ImpactWindows:
    service: str
    hard: bool  # failed (True) or only degraded, at its worst
    windows: tuple[tuple[float, float], ...]  # merged, in time order

    @property
    def total(self) -> float:
        return sum(b - a for a, b in self.windows)


def impact_windows(services: Services, empty: dict[EndpointKey, list[tuple[float, float]]]) -> list[ImpactWindows]:
    """Each service's impact windows from its endpoints' empty windows (keys as the services file names them):
    an endpoint empty longer than its service's ``tolerance`` impacts, from the moment the tolerance ran out
    until it was served again, that service and every service its failure reaches (``Services.blast``)."""
    servers = services.server_of()
    spans: dict[str, list[tuple[float, float]]] = {}
    hard: dict[str, bool] = {}
    for key, windows in empty.items():
        server = servers.get(key)
        if server is None:
            continue
        tolerance = services.services[server].tolerance
        late = [(a + tolerance, b) for a, b in windows if b - a > tolerance]
        if not late:
            continue
        for impact in services.blast(str(key)):
            spans.setdefault(impact.service, []).extend(late)
            hard[impact.service] = hard.get(impact.service, False) or impact.hard
    out = []
    for name, found in spans.items():
        merged: list[tuple[float, float]] = []
        for a, b in sorted(found):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        out.append(ImpactWindows(name, hard[name], tuple(merged)))
    return sorted(out, key=lambda w: (not w.hard, -w.total, w.service))


# ---------------------------------------------------------------------------- rendering


def as_text(shown: str, impacts: list[Impact]) -> str:
    if not impacts:
        return f"{shown}: no service depends on it"
    lines = [f"if {shown} fails:"]
    for i in impacts:
        verdict = "FAILS   " if i.hard else "degraded"
        lines.append(f"  {verdict} {i.service}  (depth {i.depth}: {' -> '.join(i.path)})")
    return "\n".join(lines)


def as_json(shown: str, impacts: list[Impact]) -> str:
    return json.dumps({"failed": shown, "impacted": [
        {"service": i.service, "hard": i.hard, "depth": i.depth, "path": list(i.path)} for i in impacts]}, indent=2)


def _edges(impacts: list[Impact]) -> list[tuple[str, str, bool]]:
    hard = {i.service: i.hard for i in impacts}
    edges = []
    for i in impacts:
        if len(i.path) > 1:
            edges.append((i.path[-2], i.service, hard[i.service]))
    return edges


def as_dot(shown: str, impacts: list[Impact]) -> str:
    q = json.dumps  # a DOT ID in double quotes, escaped as JSON strings are
    lines = ["digraph blast {", "  rankdir=LR;", f"  {q(shown)} [shape=box, style=filled, fillcolor=\"#f88\"];"]
    for i in impacts:
        colour = "#fbb" if i.hard else "#fe9"
        lines.append(f"  {q(i.service)} [style=filled, fillcolor=\"{colour}\"];")
    for a, b, hard in _edges(impacts):
        lines.append(f"  {q(a)} -> {q(b)}" + ("" if hard else " [style=dashed]") + ";")
    lines.append("}")
    return "\n".join(lines)


def as_svg(shown: str, impacts: list[Impact]) -> str:
    """A layered drawing (one column per depth), without Graphviz: failed red, degraded yellow, soft edges dashed."""
    columns: dict[int, list[str]] = {0: [shown]}
    depth = {shown: 0}
    for i in impacts:
        d = max(1, i.depth)
        if i.service not in depth:
            columns.setdefault(d, []).append(i.service)
            depth[i.service] = d
    w, h, gap_x, gap_y = 190, 34, 70, 18
    pos = {name: (20 + d * (w + gap_x), 20 + row * (h + gap_y))
           for d, names in columns.items() for row, name in enumerate(names)}
    width = 40 + (max(columns) + 1) * (w + gap_x)
    height = 40 + max(len(v) for v in columns.values()) * (h + gap_y)
    fill = {shown: "#f88", **{i.service: "#fbb" if i.hard else "#fe9" for i in impacts if i.service != shown}}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="13">']
    for a, b, hard in _edges(impacts):
        if a in pos and b in pos:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            dash = "" if hard else ' stroke-dasharray="5,4"'
            out.append(f'<line x1="{x1 + w}" y1="{y1 + h / 2}" x2="{x2}" y2="{y2 + h / 2}" stroke="#555"{dash}/>')
    for name, (x, y) in pos.items():
        out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{fill.get(name, "#eee")}" '
                   'stroke="#333"/>')
        out.append(f'<text x="{x + 8}" y="{y + 22}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def failing_services(services: Services, endpoint_down: dict[EndpointKey, bool]) -> set[str]:
    """Services that serve an endpoint with no healthy target now (``endpoint_down``; endpoints not in it count
    as up)."""
    return {s.name for s in services.services.values() if any(endpoint_down.get(k, False) for k in s.endpoints)}


def overview_svg(services: Services, failing: set[str]) -> str:
    """The whole dependency graph, one column per depth (a service with no dependency at the left), with health
    overlaid: failing now red, failed through a hard path light red, degraded yellow, the rest green."""
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            deps = services.services[name].depends
            depth[name] = 1 + max((level(d.on) for d in deps), default=-1)
        return depth[name]

    for name in services.services:
        level(name)
    state: dict[str, str] = {}
    for name in sorted(failing):
        state[name] = "failing"
        for i in services.blast(name):
            if state.get(i.service) not in ("failing", "failed"):
                state[i.service] = "failed" if i.hard else state.get(i.service, "degraded")
    colours = {"failing": "#f66", "failed": "#fbb", "degraded": "#fe9"}
    columns: dict[int, list[str]] = {}
    for name in services.services:
        columns.setdefault(depth[name], []).append(name)
    w, h, gap_x, gap_y = 200, 30, 60, 14
    pos = {name: (20 + d * (w + gap_x), 20 + row * (h + gap_y))
           for d, names in columns.items() for row, name in enumerate(names)}
    width = 40 + (max(columns, default=0) + 1) * (w + gap_x)
    height = 40 + max((len(v) for v in columns.values()), default=1) * (h + gap_y)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12">']
    for s in services.services.values():
        for d in s.depends:
            (x1, y1), (x2, y2) = pos[d.on], pos[s.name]
            dash = "" if d.hard else ' stroke-dasharray="5,4"'
            out.append(f'<line x1="{x1 + w}" y1="{y1 + h / 2}" x2="{x2}" y2="{y2 + h / 2}" stroke="#777"{dash}/>')
    for name, (x, y) in pos.items():
        fill = colours.get(state.get(name, ""), "#cfc")
        out.append(f'<g data-service="{html.escape(name)}" data-state="{state.get(name, "ok")}">'
                   f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{fill}" stroke="#333"/>'
                   f'<text x="{x + 8}" y="{y + 20}">{html.escape(name)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


FORMATS = {"text": as_text, "json": as_json, "dot": as_dot, "svg": as_svg}
