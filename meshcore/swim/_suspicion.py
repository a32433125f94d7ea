"""Suspicion timeouts: pure functions (table-tested) and the per-suspect timer state.

Lifeguard's dynamic suspicion (LHA-Suspicion): a suspicion starts at `max_s` and shrinks
towards `min_s` on a log scale as independent confirmations (other members suspecting the
same incarnation) arrive; after `k` confirmations it is `min_s`. With `k == 0` it is `min_s`
from the start, which is also what plain SWIM uses (a fixed timeout).
"""

from __future__ import annotations

import math

from .._types import NodeId

__all__ = ["suspicion_timeout_s", "remaining_suspicion_s", "Suspicion"]

#: A suspect keeps at most this many distinct confirmers (memory bound; beyond k they
#: no longer shorten anything).
CONFIRMERS_MAX = 64


def suspicion_timeout_s(mult: float, n: int, probe_interval_s: float) -> float:
    """memberlist's `suspicionTimeout`: mult * max(1, log10(max(1, n))) * probe interval."""
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return mult * node_scale * probe_interval_s


def remaining_suspicion_s(
    confirmations: int, k: int, elapsed_s: float, min_s: float, max_s: float
) -> float:
    """Time left before a suspect is declared dead (may be negative: already expired).

    memberlist's `remainingSuspicionTime`, including its rounding to whole milliseconds.
    """
    if k < 1:
        timeout = min_s
    else:
        frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
        raw = max_s - frac * (max_s - min_s)
        timeout = math.floor(1000.0 * raw) / 1000.0
        if timeout < min_s:
            timeout = min_s
    return timeout - elapsed_s


class Suspicion:
    """One live suspicion of one member at one incarnation."""

    __slots__ = ("start", "k", "min_s", "max_s", "confirmers", "deadline", "last_look", "cap")

    def __init__(self, *, start: float, by: NodeId, k: int, min_s: float, max_s: float) -> None:
        self.start = start
        self.k = k
        self.min_s = min_s
        self.max_s = max_s
        # The originator never counts as a confirmation of itself.
        self.confirmers: dict[NodeId, None] = {by: None}
        self.deadline = start + remaining_suspicion_s(0, k, 0.0, min_s, max_s)
        #: Whether the owner already took its last look (a final probe) at the suspect.
        self.last_look = False
        #: A deadline confirmations may not push back (set by hard evidence of death).
        self.cap = float("inf")

    def cap_at(self, t: float) -> None:
        """Never let this suspicion run past `t` (it may still end earlier)."""
        self.cap = min(self.cap, t)
        self.deadline = min(self.deadline, self.cap)

    @property
    def confirmations(self) -> int:
        return len(self.confirmers) - 1

    def confirm(self, by: NodeId, now: float) -> bool:
        """Record an independent suspicion; True if it was new (and re-set the deadline)."""
        if by in self.confirmers or len(self.confirmers) >= CONFIRMERS_MAX:
            return False
        if self.confirmations >= self.k:
            return False
        self.confirmers[by] = None
        left = remaining_suspicion_s(self.confirmations, self.k, now - self.start, self.min_s, self.max_s)
        self.deadline = min(now + left, self.cap)
        return True
