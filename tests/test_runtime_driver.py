"""The driver alone, with a scripted core: timers, datagrams, streams, core bugs."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from meshcore._types import Addr
from meshcore.runtime import Driver, MemoryNetwork, PlainSealer, plain_stream_wrapper
from meshcore.swim._effects import Effect, SendDatagram, SendStream, SetTimer, Timer


class ScriptedCore:
    def __init__(self) -> None:
        self.timers: list[tuple[float, Timer]] = []
        self.datagrams: list[bytes] = []
        self.replies: list[tuple[int, bytes | None]] = []
        self.refused: list[int] = []
        self.pending: list[Effect] = []

    def start(self, now: float, seeds: Sequence[Addr]) -> list[Effect]:
        return [SetTimer(now + 1.5, Timer("a")), SetTimer(now + 0.5, Timer("b"))]

    def on_datagram(self, now: float, src: Addr, data: bytes) -> list[Effect]:
        if data == b"boom":
            raise RuntimeError("a core bug")
        self.datagrams.append(data)
        out, self.pending = self.pending, []
        return out

    def on_stream_request(self, now: float, src: Addr, data: bytes) -> tuple[bytes | None, list[Effect]]:
        return data.upper(), []

    def on_stream_reply(self, now: float, token: int, data: bytes) -> list[Effect]:
        self.replies.append((token, data))
        return []

    def on_stream_failed(self, now: float, token: int, *, refused: bool = False) -> list[Effect]:
        self.replies.append((token, None))
        if refused:
            self.refused.append(token)
        return []

    def on_timer(self, now: float, timer: Timer) -> list[Effect]:
        self.timers.append((now, timer))
        return []


async def _start(net: MemoryNetwork, nursery: trio.Nursery) -> tuple[ScriptedCore, Driver, Addr]:
    core = ScriptedCore()
    transport = net.transport()
    driver = Driver(
        core=core,
        transport=transport,
        sealer=PlainSealer(),
        stream_wrapper=plain_stream_wrapper,
        on_event=lambda e: None,
    )
    await nursery.start(driver.run, [])
    return core, driver, transport.local_addr


async def test_timers_fire_in_deadline_order_at_their_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        core, _, _ = await _start(MemoryNetwork(), nursery)
        await trio.sleep(2)
        assert [(round(at - t0, 6), t.kind) for at, t in core.timers] == [(0.5, "b"), (1.5, "a")]
        nursery.cancel_scope.cancel()


async def test_a_core_exception_is_counted_and_the_next_datagram_is_still_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        core, driver, addr = await _start(net, nursery)
        peer = net.transport()
        for data in (b"\x00boom", b"\x00fine", b"\x01foreign"):
            await peer.send_datagram(addr, data)
        await trio.sleep(1)
        stats = driver.statistics()
        assert core.datagrams == [b"fine"]
        assert (stats.core_errors, stats.datagrams_dropped_sealer) == (1, 1)
        nursery.cancel_scope.cancel()


async def test_a_stream_request_gets_the_reply_or_a_failure_for_an_absent_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a, _, a_addr = await _start(net, nursery)
        _, _, b_addr = await _start(net, nursery)
        a.pending = [
            SendStream(b_addr, b"hello", 1, 1.0),
            SendStream(("10.9.9.9", 1), b"nobody", 2, 1.0),
            SendDatagram(b_addr, b"after"),
        ]
        await net.transport().send_datagram(a_addr, b"\x00go")
        await trio.sleep(2)
        assert sorted(a.replies, key=lambda r: r[0]) == [(1, b"HELLO"), (2, None)]
        assert a.refused == [2]  # nothing listens at the absent peer: refused, not timed out
        nursery.cancel_scope.cancel()
