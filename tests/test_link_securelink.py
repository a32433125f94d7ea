"""The trio secure link: memory streams, a loopback TCP listener, and WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket

from meshcore.errors import SecurityError
from meshcore.runtime._securelink import (
    SecureStreamWrapper,
    connect_websocket_stream,
    secure_handshake,
    websocket_request_handler,
)
from meshcore.security import (
    CertificateError,
    FrameError,
    HandshakeError,
    LinkSecurity,
    RateLimiter,
    TrustStore,
    make_throwaway_cluster,
)

NOW = 1_700_000_000.0


def wall() -> float:
    return NOW


@pytest.fixture
def cluster():
    return make_throwaway_cluster(["a", "b"], now=NOW)


async def test_two_nodes_handshake_over_memory_streams_and_exchange_messages(cluster) -> None:
    a, b = (n.link_security() for n in cluster.nodes)
    left, right = trio.testing.memory_stream_pair()
    links = {}

    async def side(name, sec, stream, initiator):
        links[name] = await secure_handshake(stream, sec, initiator=initiator, wall_clock=wall)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, "a", a, left, True)
        nursery.start_soon(side, "b", b, right, False)
    assert links["a"].peer.name == "b" and links["b"].peer.name == "a"
    big = bytes(range(256)) * 1024
    await links["a"].send_message(b"hello")
    await links["a"].send_message(big)
    assert await links["b"].receive_message() == b"hello"
    assert await links["b"].receive_message() == big
    await links["b"].send_message(b"reply")
    assert await links["a"].receive_message() == b"reply"
    await links["a"].aclose()
    with pytest.raises(trio.EndOfChannel):
        await links["b"].receive_message()


async def test_the_wrapper_uses_ik_when_it_knows_the_peer_certificate(cluster) -> None:
    a, b = (n.link_security() for n in cluster.nodes)
    seen = []
    initiator = SecureStreamWrapper(a, wall_clock=wall, certificate_for=lambda addr: b.certificate)
    responder = SecureStreamWrapper(b, wall_clock=wall, on_peer=lambda cert, addr: seen.append((cert.name, addr)))
    left, right = trio.testing.memory_stream_pair()
    links = []

    async def run(wrapper, stream, initiator_flag):
        links.append(await wrapper(stream, initiator=initiator_flag, peer=("127.0.0.1", 1)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, initiator, left, True)
        nursery.start_soon(run, responder, right, False)
    assert seen == [("a", ("127.0.0.1", 1))]
    assert links[0].handshake_hash == links[1].handshake_hash
    await links[0].send_message(b"one round trip")
    assert await links[1].receive_message() == b"one round trip"


async def test_a_failed_handshake_is_counted_and_closes_the_stream(cluster) -> None:
    a = cluster.nodes[0].link_security()
    mallory = make_throwaway_cluster(["m"], now=NOW).nodes[0].link_security()
    left, right = trio.testing.memory_stream_pair()
    errors = []

    async def side(sec, stream, initiator):
        try:
            await secure_handshake(stream, sec, initiator=initiator, wall_clock=wall)
        except SecurityError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, a, left, True)
        nursery.start_soon(side, mallory, right, False)
    assert any(isinstance(e, CertificateError) for e in errors)
    assert a.drops.counters["cert_untrusted"] == 1
    assert mallory.drops.counters["handshake_eof"] == 1  # a hung up on it


async def test_a_silent_peer_times_out_the_handshake(cluster, autojump_clock) -> None:
    a = cluster.nodes[0].link_security()
    left, _right = trio.testing.memory_stream_pair()
    with pytest.raises(HandshakeError) as info:
        await secure_handshake(left, a, initiator=False, wall_clock=wall, timeout_s=5.0)
    assert info.value.reason == "handshake_timeout"
    assert a.drops.counters["handshake_timeout"] == 1


async def test_handshakes_from_one_host_are_rate_limited(cluster, autojump_clock) -> None:
    b = cluster.nodes[1].link_security()
    wrapper = SecureStreamWrapper(b, wall_clock=wall, limiter=RateLimiter(1.0, 2.0), timeout_s=0.1)
    outcomes = []
    for _ in range(3):
        left, _ = trio.testing.memory_stream_pair()
        try:
            await wrapper(left, initiator=False, peer=("10.9.9.9", 5))
        except HandshakeError as exc:
            outcomes.append(exc.reason)
    assert outcomes == ["handshake_timeout", "handshake_timeout", "rate_limited"]
    assert b.drops.counters["rate_limited"] == 1


async def test_a_tcp_listener_keeps_serving_after_a_bad_handshake(cluster) -> None:
    a, b = (n.link_security() for n in cluster.nodes)
    m = make_throwaway_cluster(["m"], now=NOW).nodes[0]
    # mallory trusts our authority (so it gets far enough) but holds a foreign certificate
    mallory = LinkSecurity(m.key, m.certificate, TrustStore([cluster.authority.public]))
    wrapper = SecureStreamWrapper(b, wall_clock=wall)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            link = await wrapper(stream, initiator=False, peer=stream.socket.getpeername()[:2])
        except SecurityError:
            return
        async with link._stream:
            await link.send_message(b"welcome " + link.peer.name.encode())

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        bad = await trio.open_tcp_stream("127.0.0.1", port)
        # XX: the initiator's last message is unanswered, so mallory only learns of the
        # refusal when the listener hangs up.
        bad_link = await secure_handshake(bad, mallory, initiator=True, wall_clock=wall)
        with pytest.raises((trio.EndOfChannel, trio.BrokenResourceError)):
            await bad_link.receive_message()
        good = await trio.open_tcp_stream("127.0.0.1", port)
        link = await secure_handshake(good, a, initiator=True, wall_clock=wall)
        assert await link.receive_message() == b"welcome a"
        await link.aclose()
        nursery.cancel_scope.cancel()
    assert b.drops.counters["cert_untrusted"] == 1


async def test_two_endpoints_handshake_and_exchange_frames_over_websocket(cluster) -> None:
    a, b = (n.link_security() for n in cluster.nodes)
    got = []
    big = bytes(300_000)

    async def serve(stream, addr):
        link = await secure_handshake(stream, b, initiator=False, wall_clock=wall)
        got.append(await link.receive_message())
        got.append(await link.receive_message())
        await link.send_message(b"ack from " + link.peer.name.encode()[:0] + b"b")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, websocket_request_handler(serve), "127.0.0.1", 0, None
        )
        stream = await connect_websocket_stream(nursery, f"ws://127.0.0.1:{server.port}/mesh")
        link = await secure_handshake(stream, a, initiator=True, wall_clock=wall)
        await link.send_message(b"over websocket")
        await link.send_message(big)
        assert await link.receive_message() == b"ack from b"
        await link.aclose()
        nursery.cancel_scope.cancel()
    assert got == [b"over websocket", big]


async def test_a_tampered_frame_on_a_live_link_is_refused_and_counted(cluster) -> None:
    a, b = (n.link_security() for n in cluster.nodes)
    left, right = trio.testing.memory_stream_pair()
    links = {}

    async def side(name, sec, stream, initiator):
        links[name] = await secure_handshake(stream, sec, initiator=initiator, wall_clock=wall)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, "a", a, left, True)
        nursery.start_soon(side, "b", b, right, False)
    frame = bytearray(links["a"]._encoder.seal(b"transfer 10", trio.current_time()))
    frame[-1] ^= 0x80
    await left.send_all(bytes(frame))
    with pytest.raises(FrameError):
        await links["b"].receive_message()
    assert b.drops.counters["bad_mac"] == 1


def test_the_security_package_imports_no_trio_socket_time_or_random() -> None:
    import ast
    import pathlib

    import meshcore.security

    forbidden = {"trio", "socket", "time", "random", "trio_websocket"}
    for path in pathlib.Path(meshcore.security.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & forbidden, f"{path.name} imports {names & forbidden}"


@asynccontextmanager
async def _tcp_link(a: LinkSecurity, b: LinkSecurity) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """A secure link from `a` to `b` over loopback TCP; b's end appears in links["b"]."""
    links: dict[str, Any] = {}

    async def handler(stream: trio.SocketStream) -> None:
        links["b"] = await secure_handshake(stream, b, initiator=False, wall_clock=wall)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        link = await secure_handshake(await trio.open_tcp_stream("127.0.0.1", port), a,
                                      initiator=True, wall_clock=wall)
        yield link, links
        nursery.cancel_scope.cancel()


async def test_concurrent_senders_on_a_tcp_link_keep_every_message_whole_and_in_order(cluster) -> None:
    # Over real sockets the link writes on the descriptor directly; messages larger than the
    # socket buffers force partial writes and waits while other tasks queue on the lock.
    a, b = (n.link_security() for n in cluster.nodes)
    sizes = [10, 3_000_000, 1, 70_000, 500]
    async with _tcp_link(a, b) as (link, links):

        async def sender(tag: int) -> None:
            for i, size in enumerate(sizes):
                head = b"%d:%d:" % (tag, i)
                await link.send_message(head + bytes([tag]) * (size - len(head) if size > len(head) else 0))

        got: dict[int, list[int]] = {t: [] for t in range(4)}

        async def receiver() -> None:
            while "b" not in links:
                await trio.sleep(0.01)
            for _ in range(4 * len(sizes)):
                msg = await links["b"].receive_message()
                tag, i, body = msg.split(b":", 2)
                assert body == bytes([int(tag)]) * len(body)  # no bytes of another message
                got[int(tag)].append(int(i))

        with trio.fail_after(30):
            async with trio.open_nursery() as inner:
                inner.start_soon(receiver)
                for t in range(4):
                    inner.start_soon(sender, t)
        assert all(order == list(range(len(sizes))) for order in got.values())  # each sender's order
        await link.aclose()


async def test_a_nowait_send_that_the_socket_cannot_take_whole_is_finished_by_flush_in_order(cluster) -> None:
    # The kv service's fast path: frames written without waiting while the socket has room;
    # once it has not, the rest of the frame is held and goes out first, before any later
    # frame, when `flush` (or the next `send_message`) is awaited.
    a, b = (n.link_security() for n in cluster.nodes)
    async with _tcp_link(a, b) as (link, links):
        assert link.send_message_nowait(b"first")  # an idle socket takes a small frame whole
        sent = [b"first"]
        whole = True
        while whole:  # nobody reads: the socket buffers fill up
            msg = b"%d:" % len(sent) + bytes(100_000)
            whole = link.send_message_nowait(msg)
            sent.append(msg)
        held = b"held after the short write"
        assert not link.send_message_nowait(held)  # queued behind the held rest, in order
        sent.append(held)
        got = []

        async def receiver() -> None:
            while "b" not in links:
                await trio.sleep(0.01)
            for _ in range(len(sent) + 1):
                got.append(await links["b"].receive_message())

        with trio.fail_after(30):
            async with trio.open_nursery() as inner:
                inner.start_soon(receiver)
                await link.flush()
                await link.send_message(b"last")
        assert got == sent + [b"last"]
        await link.aclose()
