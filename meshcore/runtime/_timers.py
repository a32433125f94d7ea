"""One heap of timer values, so the driver needs a single sleep until the next deadline.

Timers are never cancelled (the core ignores stale tokens), so this is just a priority
queue ordered by (deadline, insertion order); insertion order keeps equal deadlines FIFO.
`timers_max` bounds it: a core that schedules without bound is a bug, reported loudly.
"""

from __future__ import annotations

import heapq
import itertools
import math

from ..errors import LocalProtocolError
from ..swim._effects import Timer

__all__ = ["TimerHeap", "TIMERS_MAX"]

TIMERS_MAX = 1_000_000


class TimerHeap:
    def __init__(self, *, timers_max: int = TIMERS_MAX) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._timers_max = timers_max

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, timer: Timer) -> None:
        if len(self._heap) >= self._timers_max:
            raise LocalProtocolError(
                f"more than {self._timers_max} pending timers: the core is scheduling "
                "without bound (a bug in the core, not in the network)"
            )
        heapq.heappush(self._heap, (at, next(self._seq), timer))

    def next_deadline(self) -> float:
        """The earliest deadline, or +inf when nothing is scheduled."""
        return self._heap[0][0] if self._heap else math.inf

    def pop_due(self, now: float) -> Timer | None:
        """Remove and return one timer whose deadline is <= now, else None."""
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None
