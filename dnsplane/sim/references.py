"""What still references a generation in a simulated run (I3's bookkeeping), computed from the world.

Owns the facts I3 needs that no actor's state says: when each enactor's ``Begin`` ran (its lease
start, in true time), the verifier's last-known-good as it last set it, and the markers a person (or
another installation) wrote, which reference nothing until dnsplane rewrites them. From those, the
actors and the provider, ``referenced`` lists every generation someone still references, and
``check`` hands them to the monitor after a step that deleted plans: each must still have its content.

What it does not own: the check itself (``Monitor.check_references``), nor when it runs (the driver).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dnsplane.model import EndpointKey, Generation
from dnsplane.store.base import INFLIGHT_TTL

if TYPE_CHECKING:
    from dnsplane.sim.driver import Simulation


class References:
    """I3's bookkeeping for one run of ``sim``."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.began: dict[str, float] = {}  # enactor -> true time of its Begin (lease start)
        self.lkg = 0  # the verifier's last-known-good, as it last set it
        self.hand_marked: set[EndpointKey] = set()  # markers a human set: not references until rewritten
        self.written_at: dict[EndpointKey, float] = {}  # when dnsplane last wrote each endpoint (true time)
        self.labels: dict[str | EndpointKey, str] = {}  # who references a generation, as I3 names them

    def referenced(self) -> list[tuple[str, int, EndpointKey | None]]:
        """Generations someone still references, computed from actor state (I3).

        An enactor is in flight from its Begin until it finishes or fails, while its lease
        (``INFLIGHT_TTL``, less twice the largest clock skew) lasts; a marker a human set is
        no reference until dnsplane rewrites it.
        """
        sim = self.sim
        refs: list[tuple[str, int, EndpointKey | None]] = []
        lease = INFLIGHT_TTL - 2 * sim.scenario.max_skew
        labels = self.labels
        for name in sim.enactor_names:
            working = sim.actors[name].working
            if working is not None and sim.alive[name]:
                began = self.began.get(name)
                if began is None or sim.now - began <= lease:
                    label = labels.get(name)
                    if label is None:
                        label = labels[name] = f"{name} in flight"
                    refs.append((label, int(working), None))
        for key, seen in sim.provider.read_all().items():
            if seen.marker is not None and key not in self.hand_marked:
                label = labels.get(key)
                if label is None:
                    label = labels[key] = f"the marker of {key}"
                refs.append((label, int(seen.marker.generation), key))
        if self.lkg:
            refs.append(("the verifier's last-known-good", self.lkg, None))
        return refs

    def check(self) -> None:
        """I3, after a step that deleted plans: every generation still referenced keeps its content."""
        store = self.sim.store
        # the store does not change during one check, and references share generations (every marker
        # at the head, an enactor applying it, ...): ask it once per (endpoint, generation)
        digests: dict[tuple[EndpointKey, int], str | None] = {}

        def store_digest(key: EndpointKey, g: int) -> str | None:
            pair = (key, g)
            if pair in digests:
                return digests[pair]
            d = store.desired([key], Generation(g)).get(key)
            digest = digests[pair] = d.records.digest if d else None
            return digest

        self.sim.monitor.check_references(self.referenced(), store_digest)
