"""StreamIO: direct descriptor I/O on trio socket streams, with trio's stream semantics."""

from __future__ import annotations

import os
import socket

import pytest
import trio
import trio.testing

from meshcore.runtime import StreamIO
from meshcore.runtime._fastio import _READS_PER_YIELD


def _pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_round_trip_larger_than_the_socket_buffers() -> None:
    a, b = _pair()
    data = bytes(range(256)) * 20_000  # 5 MB: many partial writes and waits for writability
    got = bytearray()

    async def read() -> None:
        io = StreamIO(b)
        while len(got) < len(data):
            chunk = await io.receive_some(65536)
            assert chunk
            got.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await StreamIO(a).send_all(data)
    assert bytes(got) == data
    await a.aclose()
    await b.aclose()


async def test_end_of_stream_is_empty_bytes() -> None:
    a, b = _pair()
    await StreamIO(a).send_all(b"last")
    await a.aclose()
    io = StreamIO(b)
    assert await io.receive_some(100) == b"last"
    assert await io.receive_some(100) == b""
    await b.aclose()


async def test_closed_socket_raises_closed_resource() -> None:
    a, b = _pair()
    io = StreamIO(a)
    await a.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await io.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await io.receive_some(10)
    await b.aclose()


async def test_close_while_waiting_wakes_the_reader() -> None:
    a, b = _pair()
    io = StreamIO(b)

    async def close_soon() -> None:
        await trio.testing.wait_all_tasks_blocked()
        await b.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_soon)
        with pytest.raises(trio.ClosedResourceError):
            await io.receive_some(10)
    await a.aclose()


async def test_reset_by_peer_is_broken_resource() -> None:
    a, b = _pair()
    raw = b.socket
    # SO_LINGER 0 makes close() send a reset instead of an orderly end of stream.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await StreamIO(a).send_all(b"unread")  # unread data also turns close() into a reset
    await b.aclose()
    io = StreamIO(a)
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(100):  # the first write after a reset may still succeed
            await io.send_all(b"x" * 65536)
    await a.aclose()


class _Steps(trio.abc.Instrument):
    """Counts the scheduler steps of one task: each is a return to the run loop."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_a_busy_reader_still_yields_to_the_scheduler() -> None:
    a, b = _pair()
    rounds = 5
    await StreamIO(a).send_all(b"y" * (rounds * _READS_PER_YIELD))
    io = StreamIO(b)
    steps = _Steps(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    try:
        for _ in range(rounds * _READS_PER_YIELD):
            assert await io.receive_some(1) == b"y"  # data every time: never a wait
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert steps.steps == rounds  # one trip through the scheduler per _READS_PER_YIELD reads
    await a.aclose()
    await b.aclose()


async def test_cancellation_is_seen_even_when_data_is_there() -> None:
    a, b = _pair()
    await StreamIO(a).send_all(b"z")
    io = StreamIO(b)
    with trio.CancelScope() as scope:
        scope.cancel()
        await io.receive_some(1)
        pytest.fail("not cancelled")
    assert scope.cancelled_caught
    assert await io.receive_some(1) == b"z"  # nothing was consumed by the cancelled call
    await a.aclose()
    await b.aclose()


async def test_a_send_is_a_cancellation_point_even_when_the_socket_has_room() -> None:
    a, b = _pair()
    io = StreamIO(a)
    with trio.CancelScope() as scope:
        scope.cancel()
        await io.send_all(b"never")
        pytest.fail("not cancelled")
    assert scope.cancelled_caught
    await io.send_all(b"sent")
    assert await StreamIO(b).receive_some(100) == b"sent"  # nothing of the cancelled call
    await a.aclose()
    await b.aclose()


async def test_other_streams_are_used_as_given() -> None:
    left, right = trio.testing.memory_stream_pair()
    await StreamIO(left).send_all(b"memory")
    assert await StreamIO(right).receive_some(100) == b"memory"


async def test_a_second_sender_or_receiver_is_refused_rather_than_interleaved() -> None:
    a, b = _pair()  # nobody reads b: a sender of more than the socket buffers waits
    c, d = _pair()  # nobody writes c: a receiver on d waits
    sender, receiver = StreamIO(a), StreamIO(d)

    async def second() -> None:
        await trio.testing.wait_all_tasks_blocked()
        # Make room in the buffers, so that a write would go through before the waiting
        # sender wakes up: only StreamIO's own guard stands between the two streams of bytes.
        os.read(b.socket.fileno(), 1 << 20)
        with pytest.raises(trio.BusyResourceError):
            await sender.send_all(b"y")
        with pytest.raises(trio.BusyResourceError):
            await receiver.receive_some(1)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.send_all, b"x" * 10_000_000)
        nursery.start_soon(receiver.receive_some, 1)
        nursery.start_soon(second)
    for s in (a, b, c, d):
        await s.aclose()


async def test_after_a_short_read_the_next_one_waits_for_data_instead_of_trying(monkeypatch) -> None:
    import meshcore.runtime._fastio as fastio

    calls: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        calls.append(fd)
        return real_read(fd, n)

    monkeypatch.setattr(fastio.os, "read", counting_read)
    a, b = _pair()
    io = StreamIO(b)
    await StreamIO(a).send_all(b"ab")
    assert await io.receive_some(100) == b"ab"  # short: the buffer is empty now
    reads = len(calls)
    got: list[bytes] = []

    async def receive() -> None:
        got.append(await io.receive_some(100))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        assert len(calls) == reads  # it waits for readability, no read that would fail
        await StreamIO(a).send_all(b"c")
    assert got == [b"c"] and len(calls) == reads + 1
    await a.aclose()
    await b.aclose()


async def test_write_nowait_writes_what_the_kernel_takes_and_never_waits() -> None:
    a, b = _pair()
    io = StreamIO(a)
    assert io.write_nowait(b"abc") == 3
    total = 0
    while (n := io.write_nowait(bytes(65536))) > 0:  # nobody reads: it fills, then takes 0
        total += n
    assert total > 0
    assert await StreamIO(b).receive_some(3) == b"abc"
    assert StreamIO(trio.testing.memory_stream_pair()[0]).write_nowait(b"x") == 0  # not a socket
    await b.aclose()
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(1000):  # the peer is gone: the buffered bytes go, then the write fails
            io.write_nowait(bytes(65536))
    await a.aclose()
    with pytest.raises(trio.ClosedResourceError):
        io.write_nowait(b"x")
