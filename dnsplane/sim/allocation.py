"""The garbage collector's pace while the simulator or the explorer runs.

A run makes millions of small objects (events, steps, markers, states) that die young or live for the
whole run, and hold no reference cycles worth finding early. At Python's default thresholds (a young
collection every 700 allocations) the collector runs thousands of times a seed and walks the explorer's
millions of kept states again and again, for nothing. ``collecting_rarely`` makes every generation's
collection 70 (young) and 5-10 (older) times rarer for the duration; cycles are still collected.
Measured side by side (bench/RESULTS.md, issue 13's ninth round): about 5 % more us-east-1 seeds per CPU
second, about 4 % less time for an exploration; the runs themselves are the same.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

RARELY = (50_000, 50, 100)  # gc.set_threshold's three thresholds (defaults 700, 10, 10)


def collect_rarely() -> None:
    """Set the rare pace for the rest of this process (a sweep's worker processes)."""
    gc.set_threshold(*RARELY)


@contextlib.contextmanager
def collecting_rarely() -> Iterator[None]:
    """The rare pace for the duration of the ``with`` block, the previous one after it."""
    saved = gc.get_threshold()
    collect_rarely()
    try:
        yield
    finally:
        gc.set_threshold(*saved)
