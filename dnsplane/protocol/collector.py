"""The collector: deletes plans that nothing references any more.

Guarantees (I3):
- it deletes only below the low watermark, the smallest generation that any
  enactor in flight, the newest fully applied generation or the verifier's
  last-known-good still holds;
- its delete is conditional on the watermark it read: the store refuses it when
  the watermark went down in between (an enactor began on an older plan);
- deleting a plan never changes a DNS record: the collector has no provider,
  and the store keeps every endpoint's newest content at or below the watermark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from dnsplane.model import NO_GENERATION, Generation
from dnsplane.protocol.identity import CONFIG, NOTE, ROUND
from dnsplane.protocol.messages import (
    NOTHING,
    Collect,
    Collected,
    Event,
    Failed,
    Log,
    ReadWatermark,
    Step,
    Tick,
    WatermarkRead,
    effects,
    request,
)


class CollectorPhase(Enum):
    """What the collector waits for: the reply to the request it made last, or nothing (``IDLE``)."""

    IDLE = "no round in progress: the next Tick starts one"
    WATERMARK = "the low watermark (ReadWatermark)"
    COLLECT = "the deletion of the plans below it (Collect)"

# Python 3.11 reads an enum member through its class slowly (``EnumType.__getattr__``): the paths the
# simulator runs at every step read these module constants.
_IDLE, _WATERMARK, _COLLECT = (CollectorPhase.IDLE, CollectorPhase.WATERMARK, CollectorPhase.COLLECT)


@dataclass
class Collector:
    name: str = field(default="collector", metadata=CONFIG)
    collected_below: Generation = NO_GENERATION
    phase: CollectorPhase = CollectorPhase.IDLE  # what it waits for (``busy``: anything)
    deleted: int = field(default=0, metadata=NOTE)
    asked: Generation = field(default=NO_GENERATION, metadata=ROUND)

    @property
    def busy(self) -> bool:
        """A round is in progress: it waits for a reply, and ignores its ticks meanwhile."""
        return self.phase is not _IDLE

    def reset(self) -> None:
        """Forget every round, as a restarted process does: the state of a fresh collector."""
        vars(self).update(vars(Collector(self.name)))

    def handle(self, event: Event) -> Step:
        match event:
            case Tick():
                if self.phase is not _IDLE:
                    return NOTHING
                self.phase = _WATERMARK
                return request(ReadWatermark())
            case WatermarkRead(watermark=w, oldest=oldest):
                # Nothing new below it since the last round, and the store keeps nothing below it: a store
                # put back to a backup holds again plans this collector deleted, at and below a watermark
                # it collected at, and the memory alone would leave them for good
                if w <= self.collected_below and oldest >= w:
                    self.phase = _IDLE
                    return NOTHING
                self.asked = w
                self.phase = _COLLECT
                return request(Collect(w))
            case Collected(plans_deleted=n):
                self.phase = _IDLE
                self.deleted += n
                self.collected_below = self.asked
                return effects(Log("info", "plans collected", {"actor": self.name, "deleted": n})) if n else NOTHING
            case Failed(error=error):
                self.phase = _IDLE
                return effects(Log("warning", "collector step failed", {"actor": self.name, "error": error}))
            case _:
                return NOTHING
