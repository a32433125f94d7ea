"""The two seams the security layer fills in: datagram sealing and stream wrapping.

Every datagram the runtime sends goes through ONE `DatagramSealer.seal`, and every datagram
it receives through ONE `DatagramSealer.open`; every stream connection, in either direction,
is turned into a `MessageStream` by ONE `StreamWrapper` call. Until the secure versions are
plugged in, `PlainSealer` and `plain_stream_wrapper` provide passthrough framing:

- a plain datagram is one marker byte (`PLAIN_DATAGRAM_MARKER`) then the plaintext, so a node
  that receives a sealed datagram while running plain (or the reverse) counts a drop instead
  of feeding ciphertext to the decoder;
- a plain stream message is a 4-byte big-endian length then that many bytes, bounded by
  `meshcore.wire.STREAM_MESSAGE_BYTES_MAX`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import trio

from .._types import Addr
from ..errors import RemoteProtocolError
from ..wire import DATAGRAM_BYTES_MAX, STREAM_MESSAGE_BYTES_MAX
from ._fastio import StreamIO

__all__ = [
    "PLAIN_DATAGRAM_MARKER",
    "FRAME_HEADER_BYTES",
    "SealerStatistics",
    "DatagramSealer",
    "PlainSealer",
    "MessageStream",
    "StreamWrapper",
    "FramedStream",
    "plain_stream_wrapper",
]

PLAIN_DATAGRAM_MARKER = 0x00
FRAME_HEADER_BYTES = 4
_RECEIVE_CHUNK_BYTES = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class SealerStatistics:
    sealed: int
    opened: int
    dropped: int


class DatagramSealer(Protocol):
    """Seal outgoing plaintext for `peer`; open incoming data from `src`.

    `open` returns the plaintext, or None when the datagram must be dropped (it counts the
    drop itself). `seal` returns None when no key for `peer` is known yet (the driver drops
    the datagram and asks for a stream handshake to `peer`). Neither method may raise on
    remote input.
    """

    def seal(self, peer: Addr, plaintext: bytes) -> bytes | None: ...

    def open(self, src: Addr, data: bytes) -> bytes | None: ...

    def statistics(self) -> SealerStatistics: ...


class PlainSealer:
    """Passthrough sealing: a marker byte, no secrecy, no authentication."""

    def __init__(self) -> None:
        self._sealed = 0
        self._opened = 0
        self._dropped = 0

    def seal(self, peer: Addr, plaintext: bytes) -> bytes:
        self._sealed += 1
        return bytes((PLAIN_DATAGRAM_MARKER,)) + plaintext

    def open(self, src: Addr, data: bytes) -> bytes | None:
        if not data or data[0] != PLAIN_DATAGRAM_MARKER or len(data) > DATAGRAM_BYTES_MAX:
            self._dropped += 1
            return None
        self._opened += 1
        return data[1:]

    def statistics(self) -> SealerStatistics:
        return SealerStatistics(sealed=self._sealed, opened=self._opened, dropped=self._dropped)


class MessageStream(Protocol):
    """A stream of whole messages (what `SendStream` needs): one request, one reply."""

    async def send_message(self, data: bytes) -> None: ...

    async def receive_message(self) -> bytes:
        """Return the next message; raise `RemoteProtocolError` on a bad or oversized frame
        and `trio.EndOfChannel` when the peer closed cleanly between messages."""
        ...

    async def aclose(self) -> None: ...


class StreamWrapper(Protocol):
    """Turn a raw byte stream into a `MessageStream` (the secure link does its handshake
    here). `initiator` is True on the connecting side; `peer` is the remote address."""

    async def __call__(
        self, stream: trio.abc.Stream, *, initiator: bool, peer: Addr
    ) -> MessageStream: ...


class FramedStream:
    """Length-prefixed messages over a byte stream, bounded by `message_bytes_max`."""

    def __init__(
        self, stream: trio.abc.Stream, *, message_bytes_max: int = STREAM_MESSAGE_BYTES_MAX
    ) -> None:
        self._stream = stream
        self._io = StreamIO(stream)
        self._buffer = bytearray()
        self._message_bytes_max = message_bytes_max
        self.bytes_sent = 0

    async def send_message(self, data: bytes) -> None:
        if len(data) > self._message_bytes_max:
            raise ValueError(
                f"stream message of {len(data)} bytes exceeds {self._message_bytes_max}; "
                "split it before sending"
            )
        frame = len(data).to_bytes(FRAME_HEADER_BYTES, "big") + data
        await self._io.send_all(frame)
        self.bytes_sent += len(frame)

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            chunk = await self._io.receive_some(_RECEIVE_CHUNK_BYTES)
            if not chunk:
                if self._buffer:
                    raise RemoteProtocolError("stream closed in the middle of a frame")
                raise trio.EndOfChannel
            self._buffer += chunk

    async def receive_message(self) -> bytes:
        await self._fill(FRAME_HEADER_BYTES)
        size = int.from_bytes(self._buffer[:FRAME_HEADER_BYTES], "big")
        if size > self._message_bytes_max:
            raise RemoteProtocolError(
                f"stream frame of {size} bytes exceeds the limit of {self._message_bytes_max}"
            )
        await self._fill(FRAME_HEADER_BYTES + size)
        data = bytes(self._buffer[FRAME_HEADER_BYTES : FRAME_HEADER_BYTES + size])
        del self._buffer[: FRAME_HEADER_BYTES + size]
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


async def plain_stream_wrapper(
    stream: trio.abc.Stream, *, initiator: bool, peer: Addr
) -> MessageStream:
    """The default `StreamWrapper`: plain length-prefixed framing, no handshake."""
    return FramedStream(stream)
