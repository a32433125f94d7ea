"""Secure stream links on trio: the identity-bound Noise handshake, then AEAD frames.

`secure_handshake(stream, security, initiator=...)` runs `IdentityHandshake` over any
`trio.abc.Stream` (TCP, memory streams, or `WebSocketStream`) and returns a `SecureLink`
with `send_message` / `receive_message` / `aclose` — the runtime's `MessageStream` seam.
`SecureStreamWrapper` is the runtime's `StreamWrapper`: IK when the peer's certificate is
known for the address, XX otherwise; the accepting side rate-limits handshakes per source
host. Every failed handshake is counted and logged (rate-limited) in `security.drops`,
the stream is closed and a `SecurityError` raised; a listener keeps serving.

Handshake wire format: the initiator's first byte names the pattern (`PATTERN_IDS`), then
each Noise message is a 2-byte big-endian length and the message. Certificate validity is
judged by `wall_clock` (Unix seconds); rekey timing by trio's clock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio
import trio_websocket

from .._types import Addr, NodeId
from ..errors import RemoteProtocolError, SecurityError
from ..security import (
    DEFAULT_FRAME_LIMITS,
    PATTERN_IDS,
    Certificate,
    FrameDecoder,
    FrameEncoder,
    FrameError,
    FrameLimits,
    HandshakeError,
    IdentityHandshake,
    LinkSecurity,
    RateLimiter,
)
from ._fastio import StreamIO, acquire

__all__ = [
    "SecureLink",
    "secure_handshake",
    "SecureStreamWrapper",
    "WebSocketStream",
    "connect_websocket_stream",
    "websocket_request_handler",
]

_RECEIVE_CHUNK_BYTES = 65536
# Large reads once a link is up: fewer syscalls and trio checkpoints per 64 KiB frame.
_FRAME_CHUNK_BYTES = 1 << 20
_HANDSHAKE_MESSAGE_BYTES_MAX = 65535
_PATTERN_BY_ID = {v: k for k, v in PATTERN_IDS.items()}


class _Reader:
    """Exact-length reads over a byte stream, keeping what was read ahead."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = await self.stream.receive_some(_RECEIVE_CHUNK_BYTES)
            if not chunk:
                raise HandshakeError("peer closed during the handshake", reason="handshake_eof")
            self.buffer += chunk
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def read_message(self) -> bytes:
        n = int.from_bytes(await self.read_exactly(2), "big")
        return await self.read_exactly(n)


class SecureLink:
    """An authenticated, encrypted message stream to one certified peer."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        peer: Certificate,
        encoder: FrameEncoder,
        decoder: FrameDecoder,
        handshake_hash: bytes,
        security: LinkSecurity | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream
        self._io = StreamIO(stream)
        self._security = security
        self._wall_clock = wall_clock
        self.peer = peer
        self.handshake_hash = handshake_hash
        self._encoder = encoder
        self._decoder = decoder
        self._send_lock = trio.StrictFIFOLock()
        self._receive_guard = trio.Lock()
        self.bytes_sent = 0
        self._tail = b""  # sealed frame bytes that send_message_nowait could not write

    @property
    def peer_node(self) -> NodeId:
        return self.peer.node_id

    async def send_message(self, data: bytes) -> None:
        lock = self._send_lock
        await acquire(lock)
        try:
            await self._send_tail()
            frame = self._encoder.seal(data, trio.current_time())
            await self._io.send_all(frame)
            self.bytes_sent += len(frame)
        finally:
            lock.release()

    def send_message_nowait(self, data: bytes) -> bool:
        """Seal `data` and write its frame without waiting: True if it went out whole.
        False if the kernel took only part of it (or none, or another task is sending):
        the rest is held, in order, and goes out first with the next `flush` or
        `send_message`, which the caller must then await. Raises `trio.BrokenResourceError`
        or `trio.ClosedResourceError` like `send_message`. (The kv service's fast path:
        one task flushes every idle link of a round without a task switch per link.)"""
        frame = self._encoder.seal(data, trio.current_time())
        self.bytes_sent += len(frame)
        if self._tail or self._send_lock.locked():
            self._tail += frame
            return False
        sent = self._io.write_nowait(frame)
        if sent < len(frame):
            self._tail = frame[sent:]
            return False
        return True

    async def flush(self) -> None:
        """Send what `send_message_nowait` held."""
        lock = self._send_lock
        await acquire(lock)
        try:
            await self._send_tail()
        finally:
            lock.release()

    async def _send_tail(self) -> None:
        while self._tail:
            tail, self._tail = self._tail, b""
            await self._io.send_all(tail)

    async def receive_message(self) -> bytes:
        """The next message. Raises `trio.EndOfChannel` when the peer closed cleanly
        between messages, `FrameError` (a RemoteProtocolError) on a bad frame."""
        guard = self._receive_guard
        await acquire(guard)
        try:
            decoder = self._decoder
            while True:
                try:
                    message = decoder.next_message(trio.current_time())
                except FrameError as exc:
                    if self._security is not None:
                        self._security.drops.drop(
                            exc.reason, self._wall_clock(), f"frame from {self.peer.name!r}: {exc}"
                        )
                    raise
                if message is not None:
                    return message
                chunk = await self._io.receive_some(_FRAME_CHUNK_BYTES)
                if not chunk:
                    if decoder.buffered_bytes:
                        raise RemoteProtocolError("stream closed in the middle of a frame")
                    raise trio.EndOfChannel
                decoder.receive_data(chunk)
        finally:
            guard.release()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _run_handshake(
    stream: trio.abc.Stream,
    security: LinkSecurity,
    *,
    initiator: bool,
    wall_clock: Callable[[], float],
    pattern: str,
    peer_certificate: Certificate | None,
    expected_node: NodeId | None,
    limits: FrameLimits,
) -> SecureLink:
    reader = _Reader(stream)
    if initiator:
        hs = IdentityHandshake(
            security, initiator=True, now=wall_clock(), pattern=pattern,
            peer_certificate=peer_certificate, expected_node=expected_node,
        )
        prefix = bytes((PATTERN_IDS[pattern],))
    else:
        pattern_id = (await reader.read_exactly(1))[0]
        if pattern_id not in _PATTERN_BY_ID:
            raise HandshakeError(f"unknown handshake pattern {pattern_id}", reason="handshake_malformed")
        hs = IdentityHandshake(
            security, initiator=False, now=wall_clock(), pattern=_PATTERN_BY_ID[pattern_id],
            expected_node=expected_node,
        )
        prefix = b""
    while not hs.complete:
        if hs.is_my_turn:
            message = hs.write_message(wall_clock())
            await stream.send_all(prefix + len(message).to_bytes(2, "big") + message)
            prefix = b""
        else:
            hs.read_message(await reader.read_message(), wall_clock())
    result = hs.result()
    now = trio.current_time()
    decoder = FrameDecoder(result.receive, now, limits)
    if reader.buffer:
        decoder.receive_data(bytes(reader.buffer))
    return SecureLink(
        stream, result.peer, FrameEncoder(result.send, now, limits), decoder,
        result.handshake_hash, security, wall_clock,
    )


async def secure_handshake(
    stream: trio.abc.Stream,
    security: LinkSecurity,
    *,
    initiator: bool,
    wall_clock: Callable[[], float] = time.time,
    pattern: str = "XX",
    peer_certificate: Certificate | None = None,
    expected_node: NodeId | None = None,
    limits: FrameLimits = DEFAULT_FRAME_LIMITS,
    timeout_s: float = 10.0,
    peer_label: str = "peer",
) -> SecureLink:
    """Authenticate `stream` and return a SecureLink. On any failure the drop is counted
    (by `reason`) and logged, the stream closed, and a SecurityError raised."""
    if peer_certificate is not None and initiator:
        pattern = "IK"
    try:
        with trio.fail_after(timeout_s):
            return await _run_handshake(
                stream, security, initiator=initiator, wall_clock=wall_clock, pattern=pattern,
                peer_certificate=peer_certificate, expected_node=expected_node, limits=limits,
            )
    except trio.TooSlowError:
        error: SecurityError = HandshakeError(
            f"handshake with {peer_label} timed out after {timeout_s} s",
            reason="handshake_timeout",
        )
    except SecurityError as exc:
        error = exc
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        error = HandshakeError(f"stream broke during the handshake: {exc}", reason="handshake_eof")
    reason = getattr(error, "reason", "handshake_failed")
    security.drops.drop(reason, wall_clock(), f"handshake with {peer_label}: {error}")
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(stream)
    raise error


class SecureStreamWrapper:
    """The runtime's `StreamWrapper` for secure links.

    `certificate_for(addr)` may return the known certificate of the peer at `addr` (the
    initiator then uses IK); `on_peer(cert, addr)` is called after every successful
    handshake (e.g. to admit the peer to the datagram sealer); `on_handshake(cert, addr,
    initiator)` too, for callers that must tell a listening address (initiator) from an
    ephemeral source port (responder).
    """

    def __init__(
        self,
        security: LinkSecurity,
        *,
        wall_clock: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
        certificate_for: Callable[[Addr], Certificate | None] | None = None,
        on_peer: Callable[[Certificate, Addr], None] | None = None,
        on_handshake: Callable[[Certificate, Addr, bool], None] | None = None,
        limits: FrameLimits = DEFAULT_FRAME_LIMITS,
        timeout_s: float = 10.0,
    ) -> None:
        self.security = security
        self._wall_clock = wall_clock
        self._limiter = limiter if limiter is not None else RateLimiter(20.0, 40.0)
        self._certificate_for = certificate_for
        self._on_peer = on_peer
        self._on_handshake = on_handshake
        self._limits = limits
        self._timeout_s = timeout_s

    async def __call__(self, stream: trio.abc.Stream, *, initiator: bool, peer: Addr) -> SecureLink:
        label = f"{peer[0]}:{peer[1]}"
        cert = None
        if initiator and self._certificate_for is not None:
            cert = self._certificate_for(peer)
        elif not initiator and not self._limiter.allow(peer[0], trio.current_time()):
            error = HandshakeError(f"too many handshakes from {peer[0]}", reason="rate_limited")
            self.security.drops.drop("rate_limited", self._wall_clock(), label)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            raise error
        link = await secure_handshake(
            stream, self.security, initiator=initiator, wall_clock=self._wall_clock,
            peer_certificate=cert, limits=self._limits, timeout_s=self._timeout_s,
            peer_label=label,
        )
        if self._on_peer is not None:
            self._on_peer(link.peer, peer)
        if self._on_handshake is not None:
            self._on_handshake(link.peer, peer, initiator)
        return link


# --- WebSocket transport -------------------------------------------------------------------


class WebSocketStream(trio.abc.Stream):
    """A byte stream over a WebSocket connection (binary messages), so secure links can
    cross HTTP proxies and port-80/443-only networks. Writes are split into messages of
    at most `message_bytes_max` (trio-websocket's default limit is 1 MiB)."""

    def __init__(
        self, ws: trio_websocket.WebSocketConnection, *, message_bytes_max: int = 65536
    ) -> None:
        self.ws = ws
        self._pending = b""
        self._message_bytes_max = message_bytes_max
        self._eof = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        step = self._message_bytes_max
        try:
            for i in range(0, len(view), step):
                await self.ws.send_message(bytes(view[i : i + step]))
        except trio_websocket.ConnectionClosed as exc:
            raise trio.BrokenResourceError("websocket closed") from exc

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._pending:
            if self._eof:
                return b""
            try:
                message = await self.ws.get_message()
            except trio_websocket.ConnectionClosed:
                self._eof = True
                return b""
            if isinstance(message, str):
                raise trio.BrokenResourceError("peer sent a text websocket message")
            self._pending = message
        n = len(self._pending) if max_bytes is None else max_bytes
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    async def aclose(self) -> None:
        await self.ws.aclose()


async def connect_websocket_stream(
    nursery: trio.Nursery, url: str, **kwargs: object
) -> WebSocketStream:
    """Open a WebSocket to `url` (ws:// or wss://) as a byte stream."""
    ws = await trio_websocket.connect_websocket_url(nursery, url, **kwargs)  # type: ignore[arg-type]
    return WebSocketStream(ws)


def websocket_request_handler(
    handler: Callable[[WebSocketStream, Addr], Awaitable[None]],
) -> Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]:
    """Adapt `handler(stream, peer_addr)` to `trio_websocket.serve_websocket`."""

    async def on_request(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        remote = ws.remote
        addr: Addr = (str(getattr(remote, "address", "?")), int(getattr(remote, "port", 0)))
        await handler(WebSocketStream(ws), addr)

    return on_request
