"""The transport interface: datagrams plus stream connections, nothing else.

The driver only talks to a `Transport`, so the real one (UDP + TCP on the same port,
`_net.py`), the in-memory one (`_memory.py`, for tests on virtual time) and a later
WebSocket one are interchangeable. Transports move opaque bytes: sealing and framing
happen above them (`_seams.py`). Every transport counts the bytes it sends, which is what
the benchmarks report as the node's traffic.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .._types import Addr

__all__ = ["TransportStatistics", "Transport", "StreamHandler", "CountingStream"]

StreamHandler = Callable[[trio.abc.Stream, Addr], Awaitable[None]]
"""Called once per accepted stream with the peer's address; it owns (and closes) the stream."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportStatistics:
    datagrams_sent: int
    datagram_bytes_sent: int
    datagrams_received: int
    datagram_bytes_received: int
    datagram_send_errors: int
    streams_opened: int
    streams_accepted: int
    stream_bytes_sent: int


class _Counters:
    """Mutable counters behind `TransportStatistics` (one attribute per field)."""

    def __init__(self) -> None:
        self.datagrams_sent = 0
        self.datagram_bytes_sent = 0
        self.datagrams_received = 0
        self.datagram_bytes_received = 0
        self.datagram_send_errors = 0
        self.streams_opened = 0
        self.streams_accepted = 0
        self.stream_bytes_sent = 0

    def snapshot(self) -> TransportStatistics:
        return TransportStatistics(**vars(self))


class CountingStream(trio.abc.Stream):
    """Wraps a byte stream and adds what it sends to the transport's counters."""

    def __init__(self, inner: trio.abc.Stream, counters: _Counters) -> None:
        self._inner = inner
        self._counters = counters

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)
        self._counters.stream_bytes_sent += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._inner.aclose()


class Transport(abc.ABC):
    """Datagrams and streams for one node, bound to one address."""

    def __init__(self) -> None:
        self._counters = _Counters()

    @property
    @abc.abstractmethod
    def local_addr(self) -> Addr:
        """The bound address (the real port when port 0 was asked for)."""

    @abc.abstractmethod
    async def send_datagram(self, addr: Addr, data: bytes) -> None:
        """Best effort: a failure is counted in `datagram_send_errors`, never raised."""

    @abc.abstractmethod
    async def receive_datagram(self) -> tuple[Addr, bytes]:
        """Wait for the next datagram; returns (source address, data)."""

    @abc.abstractmethod
    async def connect_stream(self, addr: Addr) -> trio.abc.Stream:
        """Open a stream to `addr`; raises OSError (or trio.BrokenResourceError) on failure."""

    @abc.abstractmethod
    async def serve_streams(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept streams forever, running `handler` for each in its own task."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the sockets."""

    def statistics(self) -> TransportStatistics:
        return self._counters.snapshot()
