"""Anti-replay sliding window over 64-bit counters, in the style of RFC 6479.

The window is a ring of 64-bit blocks (Python ints used as bitmaps). Advancing clears at
most `blocks` blocks, so each packet costs O(1). With the default 128 blocks the window
is (128 - 1) * 64 = 8,128 packets: every counter above ``top - 8128`` is remembered.
`check` does not mutate (call it before the MAC check, the cheap filter); `update` records
a counter whose packet authenticated.
"""

from __future__ import annotations

__all__ = ["ReplayWindow"]

_BLOCK_BITS = 64
_BLOCK_SHIFT = 6
_BIT_MASK = _BLOCK_BITS - 1


class ReplayWindow:
    __slots__ = ("_blocks", "_n", "_top", "window")

    def __init__(self, blocks: int = 128) -> None:
        if blocks < 2:
            raise ValueError("a replay window needs at least 2 blocks")
        self._blocks = [0] * blocks
        self._n = blocks
        self._top = -1
        #: Counters strictly greater than ``top - window`` are tracked exactly.
        self.window = (blocks - 1) * _BLOCK_BITS

    @property
    def top(self) -> int:
        """The highest accepted counter, -1 before the first."""
        return self._top

    def check(self, counter: int) -> bool:
        """True if `counter` is new (not seen, not too old). Does not record it."""
        if counter > self._top:
            return True
        if counter + self.window <= self._top:
            return False
        block = self._blocks[(counter >> _BLOCK_SHIFT) % self._n]
        return not (block >> (counter & _BIT_MASK)) & 1

    def update(self, counter: int) -> None:
        """Record an authenticated `counter` (which `check` accepted)."""
        blocks, n = self._blocks, self._n
        index = counter >> _BLOCK_SHIFT
        if counter > self._top:
            current = self._top >> _BLOCK_SHIFT
            for i in range(1, min(index - current, n) + 1):
                blocks[(current + i) % n] = 0
            self._top = counter
        blocks[index % n] |= 1 << (counter & _BIT_MASK)

    def check_and_update(self, counter: int) -> bool:
        if not self.check(counter):
            return False
        self.update(counter)
        return True
