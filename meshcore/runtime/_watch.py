"""What `node.kv.watch` hands out: `Change`s of records applied on this node, through a
bounded `Watch` (a slow consumer loses its oldest ones, counted)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from ..kv import Stamp

__all__ = ["Change", "Watch"]


@dataclass(frozen=True, slots=True)
class Change:
    """One record applied on this node: `value is None` means the key was deleted."""

    namespace: str
    key: bytes
    value: bytes | None
    stamp: Stamp


class Watch:
    """An async iterator of `Change`s (bounded; a slow consumer loses its oldest ones)."""

    def __init__(self, watchers: set[Watch], namespace: str, prefix: bytes, buffer_max: int) -> None:
        """`watchers`: the set of open watches this one leaves when it is closed."""
        self._watchers = watchers
        self.namespace = namespace
        self.prefix = prefix
        self._buffer: deque[Change] = deque()
        self._buffer_max = buffer_max
        self._wakeup = trio.Event()
        self.dropped = 0
        self.closed = False

    def _offer(self, change: Change) -> None:
        if len(self._buffer) >= self._buffer_max:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(change)
        self._wakeup.set()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Change:
        while not self._buffer:
            if self.closed:
                raise StopAsyncIteration
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        return self._buffer.popleft()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()
        self._watchers.discard(self)

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
