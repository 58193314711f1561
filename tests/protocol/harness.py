"""Drive pure actors step by step against the in-memory store and provider, checking invariants.

Every step is carried out by the same ``Interpreter`` the runtime uses; after
every step the ``Monitor`` checks I1, I2 and I5 on the provider, and every
published plan is recorded so content history survives the collector.
"""

from __future__ import annotations

from collections.abc import Sequence

from dnsplane.execute import Actor, Interpreter
from dnsplane.model import Endpoint, EndpointKey, Generation, HealthCheck, Policy, Target
from dnsplane.protocol.messages import Event, Published, Resolution, Step, Tick, WriteBatch
from dnsplane.providers.memory import MemoryProvider
from dnsplane.sim.invariants import Monitor
from dnsplane.store.memory import MemoryStore

ZONE = "demo.test."


def endpoint(name: str = "api", targets: int = 3, **policy: object) -> Endpoint:
    pol = Policy(**{"rise": 1, "fall": 1, "max_weight_shift": 1.0, **policy})  # type: ignore[arg-type]
    ts = tuple(
        Target(f"lb-{i}", (f"192.0.2.{10 + i}",), 100, HealthCheck("tcp", "127.0.0.1", 1))
        for i in range(1, targets + 1)
    )
    return Endpoint(f"{name}.{ZONE}", "A", 30, ts, pol)


class Harness:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.provider = MemoryProvider(ZONE)
        self.monitor = Monitor(ZONE)
        self.interpreter = Interpreter(self.store, self.provider, self.resolve)
        self.now = 1_000.0
        self.checking = True  # off while a test corrupts the provider on purpose

    def resolve(self, keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
        """What the embedded DNS server would answer ("all" view) plus the provider state."""
        out = {}
        for key, seen in self.provider.read(keys).items():
            addrs = tuple(seen.records.addresses()) if seen.records else ()
            rcode = "NOERROR" if seen.records or seen.marker else "NXDOMAIN"
            out[key] = Resolution(rcode, addrs, seen.marker.to_text() if seen.marker else None, seen)
        return out

    def step(self, actor: Actor, event: Event) -> Event | None:
        """One handle() plus the execution of what it asked; invariants checked after."""
        self.now += 0.001
        step = actor.handle(event)
        reply = self.interpreter.run(actor.name, step, self.now)
        if isinstance(reply, Published):
            gen = reply.generation
            changed = self.store.changed_between(Generation(gen - 1), gen)
            self.monitor.on_publish(gen, [(k, d.records) for k, d in changed.items()])
        names = ", ".join(type(c).__name__ for c in step.commands()) or "nothing"
        if self.checking:
                self.monitor.check(self.provider.read_all(), f"{actor.name}: {type(event).__name__} -> {names}")
        return reply

    def until_write(self, actor: Actor) -> Step:
        """Tick ``actor`` and run its steps until it asks for a ``WriteBatch``; return that step
        not carried out (a write held in flight, to be delivered later or never)."""
        reply = self.step(actor, Tick(self.now))
        while not isinstance((step := actor.handle(reply)).request, WriteBatch):
            reply = self.interpreter.run(actor.name, step, self.now)
        return step

    def run(self, actor: Actor, event: Event | None = None, limit: int = 10_000) -> None:
        """Feed ``event`` (a Tick by default) and every reply until the actor is quiet."""
        reply: Event | None = event or Tick(self.now)
        for _ in range(limit):
            if reply is None:
                return
            reply = self.step(actor, reply)
        raise AssertionError(f"{actor.name} did not go quiet in {limit} steps")
