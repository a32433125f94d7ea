"""The datagram sealing seam, stream framing, the timer heap and the transports."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from meshcore.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from meshcore.runtime import (
    FramedStream,
    MemoryNetwork,
    PlainSealer,
    TimerHeap,
    open_udp_tcp_transport,
)
from meshcore.swim._effects import Timer
from meshcore.wire import DATAGRAM_BYTES_MAX


def test_plain_sealer_round_trips_and_counts_foreign_datagrams() -> None:
    sealer = PlainSealer()
    sealed = sealer.seal(("127.0.0.1", 1), b"hello")
    assert sealer.open(("127.0.0.1", 1), sealed) == b"hello"
    assert sealer.open(("127.0.0.1", 1), b"") is None
    assert sealer.open(("127.0.0.1", 1), b"\x01sealed") is None
    assert sealer.open(("127.0.0.1", 1), b"\x00" + b"x" * DATAGRAM_BYTES_MAX) is None
    stats = sealer.statistics()
    assert (stats.sealed, stats.opened, stats.dropped) == (1, 1, 3)


async def test_framed_stream_carries_whole_messages_across_chunk_boundaries() -> None:
    a, b = trio.testing.lockstep_stream_pair()
    left, right = FramedStream(a), FramedStream(b)

    async def send_both() -> None:
        await left.send_message(b"first")
        await left.send_message(b"")
        await left.send_message(b"x" * 100_000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_both)
        assert await right.receive_message() == b"first"
        assert await right.receive_message() == b""
        assert await right.receive_message() == b"x" * 100_000


async def test_framed_stream_refuses_an_oversized_frame_header() -> None:
    a, b = trio.testing.memory_stream_pair()
    right = FramedStream(b, message_bytes_max=10)
    await a.send_all((11).to_bytes(4, "big") + b"x" * 11)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        await right.receive_message()


async def test_framed_stream_reports_a_clean_close_and_a_torn_frame_differently() -> None:
    a, b = trio.testing.memory_stream_pair()
    await a.aclose()
    with pytest.raises(trio.EndOfChannel):
        await FramedStream(b).receive_message()
    c, d = trio.testing.memory_stream_pair()
    await c.send_all(b"\x00\x00\x00\x05ab")
    await c.aclose()
    with pytest.raises(RemoteProtocolError, match="middle"):
        await FramedStream(d).receive_message()


async def test_framed_stream_refuses_to_send_more_than_its_limit() -> None:
    a, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="exceeds"):
        await FramedStream(a, message_bytes_max=3).send_message(b"abcd")


def test_timer_heap_pops_due_timers_in_deadline_then_insertion_order() -> None:
    heap = TimerHeap()
    assert heap.next_deadline() == math.inf
    heap.push(2.0, Timer("b"))
    heap.push(1.0, Timer("a1"))
    heap.push(1.0, Timer("a2"))
    assert heap.next_deadline() == 1.0
    assert heap.pop_due(0.5) is None
    assert [heap.pop_due(1.5), heap.pop_due(1.5), heap.pop_due(1.5)] == [Timer("a1"), Timer("a2"), None]
    assert heap.pop_due(2.0) == Timer("b")


def test_timer_heap_refuses_to_grow_without_bound() -> None:
    heap = TimerHeap(timers_max=2)
    heap.push(1.0, Timer("a"))
    heap.push(1.0, Timer("b"))
    with pytest.raises(LocalProtocolError, match="without bound"):
        heap.push(1.0, Timer("c"))


async def test_memory_network_delivers_datagrams_and_honours_a_cut(autojump_clock: object) -> None:
    net = MemoryNetwork()
    a, b = net.transport(), net.transport()
    await a.send_datagram(b.local_addr, b"ping")
    assert await b.receive_datagram() == (a.local_addr, b"ping")
    net.block(a.local_addr, b.local_addr)
    await a.send_datagram(b.local_addr, b"lost")
    assert net.datagrams_dropped == 1
    # Across a cut link nothing answers: a connection attempt hangs until the caller's
    # timeout, as over a real network (only a live host with no listener refuses).
    with trio.move_on_after(30) as scope:
        await a.connect_stream(b.local_addr)
    assert scope.cancelled_caught


async def test_memory_network_refuses_a_stream_where_nothing_listens() -> None:
    net = MemoryNetwork()
    a, b = net.transport(), net.transport()
    with pytest.raises(ConnectionRefusedError):
        await a.connect_stream(b.local_addr)  # b never called serve_streams
    await b.aclose()
    with pytest.raises(ConnectionRefusedError):
        await a.connect_stream(b.local_addr)  # b's process is gone


async def test_memory_network_streams_reach_the_listener_with_the_peer_address() -> None:
    net = MemoryNetwork()
    a, b = net.transport(), net.transport()
    seen: list[tuple[str, int]] = []

    async def handler(stream: trio.abc.Stream, peer: tuple[str, int]) -> None:
        seen.append(peer)
        await stream.send_all(await stream.receive_some(100))

    async with trio.open_nursery() as nursery:
        await nursery.start(b.serve_streams, handler)
        s = await a.connect_stream(b.local_addr)
        await s.send_all(b"echo")
        assert await s.receive_some(100) == b"echo"
        nursery.cancel_scope.cancel()
    assert seen == [a.local_addr]
    assert a.statistics().stream_bytes_sent == 4


async def test_udp_tcp_transport_binds_both_protocols_on_one_ephemeral_port() -> None:
    a = await open_udp_tcp_transport("127.0.0.1", 0)
    b = await open_udp_tcp_transport("127.0.0.1", 0)
    try:
        assert a.local_addr[1] != 0
        await a.send_datagram(b.local_addr, b"over udp")
        with trio.fail_after(5):
            src, data = await b.receive_datagram()
        assert (src, data) == (a.local_addr, b"over udp")

        async def handler(stream: trio.abc.Stream, peer: tuple[str, int]) -> None:
            await stream.send_all(b"over tcp")

        async with trio.open_nursery() as nursery:
            await nursery.start(b.serve_streams, handler)
            with trio.fail_after(5):
                s = await a.connect_stream(b.local_addr)
                assert await s.receive_some(100) == b"over tcp"
            await s.aclose()
            nursery.cancel_scope.cancel()
        assert a.statistics().datagram_bytes_sent == len(b"over udp")
    finally:
        await a.aclose()
        await b.aclose()


async def test_binding_a_taken_port_is_a_config_error_that_names_the_address() -> None:
    a = await open_udp_tcp_transport("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=f"127.0.0.1:{a.local_addr[1]}"):
            await open_udp_tcp_transport("127.0.0.1", a.local_addr[1])
    finally:
        await a.aclose()
