"""The trace of one simulated run: the notable moments, for the timeline and the SVG swimlanes.

Owns ``TraceEvent`` and the list of them a run keeps (``Tracer.events``), and what each notable moment
is called in it: a plan published, a generation begun, a write, a conflict, a repair, a cleanup, a
fault, a failure, a violation. Every note also goes to the monitor's timeline (what a violation's
report shows before it). The driver asks for notes only when the run is traced (``trace=True``),
except the few a run's result must show either way (a timeout after apply).

What it does not own: when anything happens (the driver) or whether it was right (the monitor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dnsplane.model import EndpointKey
from dnsplane.protocol.legacy import CleanedUp, CleanUp, ForceWrite
from dnsplane.protocol.messages import Begin, Collect, Command, DesiredLoaded, Failed, WriteBatch, WriteDone
from dnsplane.sim.invariants import Violation

if TYPE_CHECKING:
    from dnsplane.sim.driver import Simulation


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One notable moment, for the timeline and the SVG swimlanes."""

    time: float
    step: int
    actor: str
    kind: str  # publish begin write conflict refused repair empty cleanup collect fault crash restart failed violation
    detail: str
    generation: int = 0


class Tracer:
    """The notes of one run of ``sim``, at its current time and step."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.events: list[TraceEvent] = []

    def note(self, actor: str, kind: str, detail: str, generation: int = 0) -> None:
        sim = self.sim
        self.events.append(TraceEvent(sim.now, sim.steps, actor, kind, detail, generation))
        sim.monitor.note(f"{actor}: {kind} {detail}")

    def violation(self, v: Violation) -> None:
        sim = self.sim
        self.events.append(TraceEvent(sim.now, sim.steps, "monitor", "violation", f"{v.short} {v.endpoint}"))

    def commands(self, name: str, event: Any, commands: tuple[Command, ...]) -> None:
        """An actor answered ``event`` with ``commands``."""
        names = ", ".join(type(c).__name__ for c in commands)
        self.sim.monitor.note(f"{name}: {type(event).__name__} -> {names}")
        for c in commands:
            if isinstance(c, Begin):
                self.note(name, "begin", f"begins generation {c.generation}", int(c.generation))
        if isinstance(event, DesiredLoaded) and name.startswith("enactor") and self.sim.legacy:
            self.note(name, "begin", f"checks once: plan {event.head} is newer", int(event.head))

    def request(self, name: str, request: object, reply: Any) -> None:
        """``name``'s request was carried out, with ``reply``."""
        if isinstance(request, Collect) or (isinstance(request, CleanUp) and isinstance(reply, CleanedUp)):
            n = getattr(reply, "plans_deleted", 0)
            if n:
                below = request.watermark if isinstance(request, Collect) else request.keep_from
                self.note(name, "collect", f"deleted {n} plans below {below}")
        if isinstance(reply, WriteDone) and isinstance(request, WriteBatch):
            for result, write in zip(reply.results, request.writes, strict=True):
                g = int(write.marker.generation)
                if type(result).__name__ == "Conflict":
                    self.note(name, "conflict", f"{write.key.name} g{g} refused: marker moved", g)
                elif getattr(result, "written", False):
                    kind = "repair" if name == "verifier" else "write"
                    self.note(name, kind, f"{write.key.name} -> g{g}", g)
        elif isinstance(request, ForceWrite):
            g = int(request.marker.generation)
            self.note(name, "write", f"{request.key.name} -> g{g} (unconditional)", g)
        elif isinstance(reply, Failed):
            self.note(name, "failed", f"{type(request).__name__}: {reply.error}")

    def emptied(self, keys: tuple[EndpointKey, ...]) -> None:
        """The legacy cleanup deleted these endpoints' records with their plan."""
        for k in keys:
            self.note("cleanup", "empty", f"{k.name} records deleted with their plan")
