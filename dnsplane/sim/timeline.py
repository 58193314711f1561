"""Timelines of a run: readable text (time, actor, event) and SVG swimlanes, written by hand.

One lane per actor (planner, each enactor, collector, verifier; legacy clean-up
has its own lane), time running left to right. Marks: plan generations
published (planner), plan begun, writes (with their generation), conflicts
(a stale write refused by the compare-and-swap), repairs, faults, and a red
band at the moment an endpoint went empty or another invariant broke.
No dependency: the SVG is a few hundred lines of text.
"""

from __future__ import annotations

from html import escape

from dnsplane.sim.driver import RunResult, TraceEvent

COLOURS = {
    "publish": "#1f77b4", "begin": "#7f7f7f", "write": "#2ca02c", "conflict": "#ff7f0e", "repair": "#9467bd",
    "refused": "#8c564b", "collect": "#17becf", "fault": "#bcbd22", "crash": "#d62728", "restart": "#7f7f7f",
    "failed": "#e377c2", "empty": "#d62728", "violation": "#d62728",
}


def text(result: RunResult, limit: int = 60) -> str:
    """The readable timeline around the first violation (or the run's last lines)."""
    v = result.first()
    lines = list(v.context) if v is not None else result.timeline[-limit:]
    return "\n".join(line for line in lines[-limit:] if not line.endswith("-> nothing"))


def lanes(result: RunResult) -> list[str]:
    enactors = sorted({e.actor for e in result.trace if e.actor.startswith("enactor")}, key=lambda n: (len(n), n))
    names = ["planner", *enactors]
    for extra in ("cleanup", "collector", "verifier", "faults", "monitor"):
        always = extra in ("collector", "verifier") and result.protocol == "safe"
        if always or any(e.actor == extra for e in result.trace):
            names.append(extra)
    return names


def svg(result: RunResult, width: int = 1400, lane_height: int = 44) -> str:
    """SVG swimlanes of the run; zoomed to the ten minutes before the first violation when there is one."""
    trace: list[TraceEvent] = result.trace
    first = result.first()
    t1 = first.time + 30 if first else (trace[-1].time if trace else 1.0)
    t0 = max(0.0, first.time - 900) if first else 0.0
    events = [e for e in trace if t0 <= e.time <= t1]
    names = lanes(result)
    left, top = 110, 40
    height = top + lane_height * len(names) + 60
    span = max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return left + (t - t0) / span * (width - left - 20)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="20" font-size="14">{escape(result.protocol)} protocol, scenario '
           f'{escape(result.scenario)}, seed {result.seed}'
           + (f" — {escape(first.invariant)} at {escape(first.endpoint)}, t={first.time:.1f}s" if first else "")
           + "</text>"]
    lane_y = {n: top + i * lane_height for i, n in enumerate(names)}
    for n, lane_top in lane_y.items():
        mid = lane_top + lane_height / 2
        out.append(f'<line x1="{left}" y1="{mid}" x2="{width - 20}" y2="{mid}" stroke="#ddd"/>')
        out.append(f'<text x="8" y="{mid + 4}">{escape(n)}</text>')
    for e in events:
        lane = e.actor if e.actor in lane_y else ("faults" if "faults" in lane_y else names[0])
        y = lane_y[lane] + lane_height / 2
        colour = COLOURS.get(e.kind, "#333")
        title = f"<title>{e.time:.2f}s {escape(e.actor)} {escape(e.kind)}: {escape(e.detail)}</title>"
        cx = x(e.time)
        if e.kind in ("empty", "violation"):
            out.append(f'<rect x="{cx - 1.5}" y="{top}" width="3" height="{lane_height * len(names)}" '
                       f'fill="{colour}" opacity="0.6">{title}</rect>')
            out.append(f'<text x="{cx + 3}" y="{height - 40}" fill="{colour}">{escape(e.detail)}</text>')
        elif e.kind == "publish":
            out.append(f'<circle cx="{cx}" cy="{y}" r="5" fill="{colour}">{title}</circle>')
            out.append(f'<text x="{cx - 4}" y="{y - 8}" font-size="9">g{e.generation}</text>')
        elif e.kind in ("write", "repair", "conflict"):
            out.append(f'<rect x="{cx - 3}" y="{y - 6}" width="6" height="12" fill="{colour}">{title}</rect>')
            if e.generation:
                out.append(f'<text x="{cx - 4}" y="{y + 18}" font-size="9" fill="{colour}">g{e.generation}</text>')
        else:
            out.append(f'<circle cx="{cx}" cy="{y}" r="3" fill="{colour}">{title}</circle>')
    legend_y = height - 18
    lx = left
    for kind, colour in COLOURS.items():
        out.append(f'<rect x="{lx}" y="{legend_y - 9}" width="9" height="9" fill="{colour}"/>')
        out.append(f'<text x="{lx + 12}" y="{legend_y}">{kind}</text>')
        lx += 12 + 8 * len(kind) + 14
    out.append(f'<text x="{left}" y="{top - 6}" fill="#666">t={t0:.0f}s</text>')
    out.append(f'<text x="{width - 90}" y="{top - 6}" fill="#666">t={t1:.0f}s</text>')
    out.append("</svg>")
    return "\n".join(out)
