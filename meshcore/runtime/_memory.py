"""An in-memory network for tests: many nodes in one trio run, on virtual time.

`MemoryNetwork` hands out `MemoryTransport`s bound to made-up addresses ("10.0.0.1", 7946…).
Datagrams go straight into the receiver's bounded queue (dropped when it is full, when the
receiver is gone, or when a fault says so); streams are `trio.testing.memory_stream_pair`s.
Faults are plain switches a test flips: `block(a, b)` cuts both directions between two
addresses (a partition is a set of such cuts), `drop_datagrams_to(addr)` blackholes UDP only.
There is no latency: under `MockClock(autojump_threshold=0)` ordering comes from trio alone.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import trio
import trio.testing

from .._types import Addr
from ._transport import CountingStream, StreamHandler, Transport

__all__ = ["MemoryNetwork", "MemoryTransport"]

INBOX_DATAGRAMS_MAX = 1024
ACCEPT_QUEUE_MAX = 64


class MemoryNetwork:
    def __init__(self, *, host_prefix: str = "10.0.0.") -> None:
        self._host_prefix = host_prefix
        self._next_host = 1
        self._nodes: dict[Addr, MemoryTransport] = {}
        self._blocked: set[tuple[Addr, Addr]] = set()
        self._udp_blackholed: set[Addr] = set()
        self.datagrams_dropped = 0
        #: Called with (src, dst, data) for every datagram sent, delivered or not (tests
        #: capture real traffic with it).
        self.tap: Callable[[Addr, Addr, bytes], None] | None = None

    def transport(self, addr: Addr | None = None) -> MemoryTransport:
        """A new transport; `addr` defaults to the next free made-up address."""
        if addr is None:
            addr = (f"{self._host_prefix}{self._next_host}", 7946)
            self._next_host += 1
        if addr in self._nodes:
            raise ValueError(f"{addr[0]}:{addr[1]} is already bound on this network")
        t = MemoryTransport(self, addr)
        self._nodes[addr] = t
        return t

    def block(self, a: Addr, b: Addr) -> None:
        """Cut datagrams and streams between `a` and `b`, both ways."""
        self._blocked.add((a, b))
        self._blocked.add((b, a))

    def unblock_all(self) -> None:
        self._blocked.clear()
        self._udp_blackholed.clear()

    def drop_datagrams_to(self, addr: Addr) -> None:
        """Every datagram to `addr` is lost (its streams still work)."""
        self._udp_blackholed.add(addr)

    def _reachable(self, src: Addr, dst: Addr) -> MemoryTransport | None:
        if (src, dst) in self._blocked:
            return None
        return self._nodes.get(dst)

    def _deliver(self, src: Addr, dst: Addr, data: bytes) -> bool:
        if self.tap is not None:
            self.tap(src, dst, data)
        node = self._reachable(src, dst)
        if node is None or dst in self._udp_blackholed:
            self.datagrams_dropped += 1
            return False
        try:
            node._inbox_send.send_nowait((src, data))
        except trio.WouldBlock:
            self.datagrams_dropped += 1
            return False
        return True

    def _unbind(self, addr: Addr) -> None:
        self._nodes.pop(addr, None)


class MemoryTransport(Transport):
    def __init__(self, network: MemoryNetwork, addr: Addr) -> None:
        super().__init__()
        self._network = network
        self._addr = addr
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[Addr, bytes]](
            INBOX_DATAGRAMS_MAX
        )
        self._accept_send, self._accept = trio.open_memory_channel[
            tuple[trio.abc.Stream, Addr]
        ](ACCEPT_QUEUE_MAX)
        self._listening = False

    @property
    def local_addr(self) -> Addr:
        return self._addr

    async def send_datagram(self, addr: Addr, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._counters.datagrams_sent += 1
        self._counters.datagram_bytes_sent += len(data)
        self._network._deliver(self._addr, addr, data)

    async def receive_datagram(self) -> tuple[Addr, bytes]:
        src, data = await self._inbox.receive()
        self._counters.datagrams_received += 1
        self._counters.datagram_bytes_received += len(data)
        return src, data

    async def connect_stream(self, addr: Addr) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if (self._addr, addr) in self._network._blocked:
            # A cut link: nothing answers, the caller times out.
            await trio.sleep_forever()
        server = self._network._nodes.get(addr)
        if server is None or not server._listening:
            # Nothing listens there (the process is gone): the host refuses at once.
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"{addr[0]}:{addr[1]} refused")
        ours, theirs = trio.testing.memory_stream_pair()
        try:
            server._accept_send.send_nowait((theirs, self._addr))
        except trio.WouldBlock:
            # Like a full listen backlog on Linux: the SYN is dropped, not refused.
            raise TimeoutError(errno.ETIMEDOUT, "accept queue full") from None
        self._counters.streams_opened += 1
        return CountingStream(ours, self._counters)

    async def serve_streams(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._listening = True
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                async for stream, peer in self._accept:
                    self._counters.streams_accepted += 1
                    nursery.start_soon(self._serve_one, handler, stream, peer)
        finally:
            self._listening = False

    async def _serve_one(self, handler: StreamHandler, stream: trio.abc.Stream, peer: Addr) -> None:
        try:
            await handler(CountingStream(stream, self._counters), peer)
        finally:
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        self._listening = False
        self._network._unbind(self._addr)
        await trio.lowlevel.checkpoint()
