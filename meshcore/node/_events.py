"""Fan-out of membership events to subscribers that never slow the core down.

Each subscriber has its own bounded buffer. Publishing is synchronous and never blocks:
when a buffer is full the OLDEST event is dropped and the subscriber's `dropped` counter
grows, so a slow consumer sees the recent past and knows how much it missed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

import trio

from ..swim._effects import MemberEvent, UserBroadcast

__all__ = ["Event", "EventHub", "Subscription"]

Event = MemberEvent | UserBroadcast


class Subscription:
    """An async iterator of events; leave the `async with`/loop to unsubscribe."""

    def __init__(self, hub: EventHub, buffer_max: int) -> None:
        self._hub = hub
        self._buffer: deque[Event] = deque()
        self._buffer_max = buffer_max
        self._ready = trio.Event()
        self._closed = False
        self.dropped = 0

    def _push(self, event: Event) -> None:
        if len(self._buffer) >= self._buffer_max:
            self._buffer.popleft()
            self.dropped += 1
            self._hub.dropped_total += 1
        self._buffer.append(event)
        self._ready.set()

    def _close(self) -> None:
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._ready = trio.Event()
            await self._ready.wait()
        await trio.lowlevel.checkpoint()
        return self._buffer.popleft()

    def receive_nowait(self) -> Event | None:
        """The next buffered event, or None."""
        return self._buffer.popleft() if self._buffer else None

    def close(self) -> None:
        self._hub._remove(self)
        self._close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    def __init__(self, *, buffer_max: int) -> None:
        self._buffer_max = buffer_max
        self._subs: list[Subscription] = []
        self.published = 0
        self.dropped_total = 0

    def subscribe(self, buffer_max: int | None = None) -> Subscription:
        sub = Subscription(self, buffer_max or self._buffer_max)
        self._subs.append(sub)
        return sub

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in self._subs:
            sub._push(event)

    def close(self) -> None:
        for sub in self._subs:
            sub._close()
        self._subs.clear()

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
