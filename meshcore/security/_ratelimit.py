"""Token buckets keyed by source address (handshake admission). Time is passed in.

The table is bounded (`keys_max`, least recently used evicted), so a flood of spoofed
sources costs memory proportional to the bound, not to the flood.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    __slots__ = ("_rate", "_burst", "_keys_max", "_buckets")

    def __init__(self, rate_per_s: float, burst: float, *, keys_max: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1 or keys_max < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and keys_max >= 1 are required")
        self._rate = rate_per_s
        self._burst = burst
        self._keys_max = keys_max
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> bool:
        """Take one token for `key` at `now`; False when its bucket is empty."""
        tokens, last = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._keys_max:
            self._buckets.popitem(last=False)
        return allowed
