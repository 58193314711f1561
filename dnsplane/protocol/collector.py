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


@dataclass
class Collector:
    name: str = field(default="collector", metadata=CONFIG)
    collected_below: Generation = NO_GENERATION
    busy: bool = False
    deleted: int = field(default=0, metadata=NOTE)
    asked: Generation = field(default=NO_GENERATION, metadata=ROUND)

    def handle(self, event: Event) -> Step:
        match event:
            case Tick():
                if self.busy:
                    return NOTHING
                self.busy = True
                return request(ReadWatermark())
            case WatermarkRead(watermark=w):
                if w <= self.collected_below:
                    self.busy = False
                    return NOTHING
                self.asked = w
                return request(Collect(w))
            case Collected(plans_deleted=n):
                self.busy = False
                self.deleted += n
                self.collected_below = self.asked
                return effects(Log("info", "plans collected", {"actor": self.name, "deleted": n})) if n else NOTHING
            case Failed(error=error):
                self.busy = False
                return effects(Log("warning", "collector step failed", {"actor": self.name, "error": error}))
            case _:
                return NOTHING
