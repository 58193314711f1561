"""Invariant checks I1–I3 and I5–I6 of DESIGN.md, run after every step of a test or simulation.

A ``Monitor`` is told every plan as it is published (so it keeps the content
history even after the collector deleted the plans) and looks at the provider
after each step. A violation raises ``InvariantViolation`` carrying the
invariant's name, the endpoint, the step and a readable timeline.

- I1 never empty: a published endpoint has a non-empty record set at the provider.
- I2 monotonic: the marker generation never decreases; content that matches only
  generations older than the newest one served is never served again.
- I3 no live plan deleted: every plan at or above the low watermark and every
  plan an enactor in flight holds is still in the store.
- I5 validity: everything at the provider passes ``validate_record_set``.
(I4, convergence, and I6, idempotence, are checked by the tests that drive to quiet.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dnsplane.errors import DnsplaneError, InvalidPlan
from dnsplane.model import EndpointKey, Generation, Observed, RecordSet, validate_record_set


class InvariantViolation(DnsplaneError):
    fmt = "{invariant} violated for {endpoint} at step {step}: {detail}\n{timeline}"


@dataclass
class Monitor:
    zone: str
    seed: int | None = None
    steps: int = 0
    timeline: list[str] = field(default_factory=list)
    content: dict[EndpointKey, list[tuple[int, str]]] = field(default_factory=dict)  # (gen, digest) ascending
    highest_marker: dict[EndpointKey, int] = field(default_factory=dict)
    highest_served: dict[EndpointKey, int] = field(default_factory=dict)
    published: set[EndpointKey] = field(default_factory=set)

    def note(self, text: str) -> None:
        self.timeline.append(f"[{self.steps:>5}] {text}")

    def on_publish(self, generation: Generation, changes: Iterable[tuple[EndpointKey, RecordSet]]) -> None:
        n = 0
        for key, rs in changes:
            self.content.setdefault(key, []).append((int(generation), rs.digest))
            n += 1
        self.note(f"planner published generation {generation} ({n} changes)")

    def content_at(self, key: EndpointKey, generation: int) -> str | None:
        found = None
        for g, digest in self.content.get(key, []):
            if g > generation:
                break
            found = digest
        return found

    def check(self, observed: dict[EndpointKey, Observed], step_note: str = "") -> None:
        """Check I1, I2 and I5 on the provider's current state."""
        self.steps += 1
        if step_note:
            self.note(step_note)
        for key, seen in observed.items():
            records, marker = seen.records, seen.marker
            if records is not None or marker is not None:
                self.published.add(key)
            if key in self.published and (records is None or not records.live_members()):
                self.fail("I1 never empty", key, "the endpoint resolves to an empty record set")
            if records is not None:
                try:
                    validate_record_set(key, records, self.zone)
                except InvalidPlan as err:
                    self.fail("I5 validity", key, str(err))
            if marker is not None:
                high = self.highest_marker.get(key, 0)
                if marker.generation < high:
                    self.fail("I2 monotonic", key, f"marker went down from {high} to {marker.generation}")
                self.highest_marker[key] = max(high, marker.generation)
            if records is not None:
                self._check_content(key, records.digest, marker.generation if marker else None)

    def _check_content(self, key: EndpointKey, digest: str, marker_gen: int | None) -> None:
        served = self.highest_served.get(key, 0)
        if served and digest != self.content_at(key, served):
            newer = [g for g, d in self.content.get(key, []) if d == digest and g > served]
            older = [g for g, d in self.content.get(key, []) if d == digest and g < served]
            if older and not newer:
                self.fail("I2 monotonic", key, f"serves the content of generation {max(older)} after {served}")
        if marker_gen is not None and digest == self.content_at(key, marker_gen):
            self.highest_served[key] = max(served, marker_gen)

    def check_plans_kept(self, kept: set[int], referenced: dict[str, int]) -> None:
        """I3: every generation that someone references is still stored."""
        self.steps += 1
        for who, generation in referenced.items():
            if generation and generation not in kept:
                self.fail("I3 no live plan deleted", EndpointKey("-", "-"),
                          f"plan {generation}, referenced by {who}, was deleted")

    def fail(self, invariant: str, key: EndpointKey, detail: str) -> None:
        timeline = "\n".join(self.timeline[-40:])
        seed = f" (seed {self.seed})" if self.seed is not None else ""
        raise InvariantViolation(invariant=invariant, endpoint=str(key), step=f"{self.steps}{seed}",
                                 detail=detail, timeline="timeline:\n" + timeline)
