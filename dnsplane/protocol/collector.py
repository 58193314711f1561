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

from dataclasses import dataclass

from dnsplane.model import NO_GENERATION, Generation
from dnsplane.protocol.messages import (
    Collect,
    Collected,
    Command,
    Event,
    Failed,
    Log,
    ReadWatermark,
    Tick,
    WatermarkRead,
)


@dataclass
class Collector:
    name: str = "collector"
    collected_below: Generation = NO_GENERATION
    busy: bool = False
    deleted: int = 0
    asked: Generation = NO_GENERATION

    def handle(self, event: Event) -> list[Command]:
        match event:
            case Tick():
                if self.busy:
                    return []
                self.busy = True
                return [ReadWatermark()]
            case WatermarkRead(watermark=w):
                if w <= self.collected_below:
                    self.busy = False
                    return []
                self.asked = w
                return [Collect(w)]
            case Collected(plans_deleted=n):
                self.busy = False
                self.deleted += n
                self.collected_below = self.asked
                return [Log("info", "plans collected", {"actor": self.name, "deleted": n})] if n else []
            case Failed(error=error):
                self.busy = False
                return [Log("warning", "collector step failed", {"actor": self.name, "error": error})]
            case _:
                return []
