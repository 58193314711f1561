"""Durations in cumulative buckets, as a Prometheus histogram wants them: counted where they are measured
(the health checks in the runtime, answers in the DNS server and its worker processes), merged across
processes, and read at scrape time. Plain numbers only, so a worker can send its counts over its channel."""

from __future__ import annotations

import bisect
from collections.abc import Sequence


class Histogram:
    """Counts of durations (seconds) per bucket; the last count is of those above every bucket."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.total += seconds
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1

    def merge(self, counts: Sequence[int], total: float) -> None:
        """Add another histogram's counts (same bounds), as ``state()`` gave them."""
        for i, n in enumerate(counts):
            self.counts[i] += n
        self.total += total

    def state(self) -> tuple[list[int], float]:
        return list(self.counts), self.total

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last (``HistogramMetricFamily``'s ``buckets``)."""
        out, running = [], 0
        for le, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((le, float(running)))
        return out
