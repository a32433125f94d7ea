"""Lifeguard local health (LHA-Probe): a score in [0, max) that grows when this node misses
acks/nacks it should have got (so the fault is probably its own: overloaded, paused) and
shrinks on successful probes. Probe intervals and timeouts are scaled by (score + 1)."""

from __future__ import annotations

__all__ = ["Awareness"]


class Awareness:
    __slots__ = ("max", "score")

    def __init__(self, awareness_max: int) -> None:
        if awareness_max < 1:
            raise ValueError(f"awareness_max must be >= 1, got {awareness_max}")
        self.max = awareness_max
        self.score = 0

    def apply_delta(self, delta: int) -> int:
        """Add `delta`, clamped to [0, max - 1]; return the new score."""
        self.score = min(self.max - 1, max(0, self.score + delta))
        return self.score

    def scale(self, timeout_s: float) -> float:
        return timeout_s * (self.score + 1)
