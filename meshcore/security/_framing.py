"""AEAD stream framing after the handshake: sans-I/O encoder and decoder.

A frame is a 4-byte header — kind (1 byte) and ciphertext length (3 bytes, big-endian) —
then ChaCha20-Poly1305 ciphertext under the direction's key with an implicit 64-bit
counter nonce; the header is the associated data. Kind ``REKEY`` marks the last frame
under the current key: both sides then apply Noise REKEY. The sender rekeys after
`rekey_messages_max` frames or `rekey_interval_s` seconds (time passed in); the receiver
refuses a frame past those limits (plus `rekey_grace_s`), an oversized or malformed
header, or a forged frame. After the first error a decoder stays failed: a byte stream
cannot resynchronise.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire import STREAM_MESSAGE_BYTES_MAX
from ._aead import InvalidTag, KeyedAead
from ._errors import FrameError
from ._noise import TAG_BYTES, CipherState

__all__ = [
    "FRAME_HEADER_BYTES",
    "FRAME_LENGTH_MAX",
    "KIND_DATA",
    "KIND_REKEY",
    "FrameLimits",
    "DEFAULT_FRAME_LIMITS",
    "FrameEncoder",
    "FrameDecoder",
]

FRAME_HEADER_BYTES = 4
FRAME_LENGTH_MAX = 2**24 - 1
KIND_DATA = 0
KIND_REKEY = 1

_ZERO4 = bytes(4)



@dataclass(frozen=True, slots=True, kw_only=True)
class FrameLimits:
    message_bytes_max: int = STREAM_MESSAGE_BYTES_MAX
    rekey_messages_max: int = 100_000
    rekey_interval_s: float = 120.0
    rekey_grace_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.message_bytes_max <= FRAME_LENGTH_MAX - TAG_BYTES:
            raise ValueError(f"message_bytes_max must be in (0, {FRAME_LENGTH_MAX - TAG_BYTES}]")
        if self.rekey_messages_max < 1 or self.rekey_interval_s <= 0:
            raise ValueError("rekey limits must be positive")


DEFAULT_FRAME_LIMITS = FrameLimits()


class FrameEncoder:
    """Seals messages into frames for one direction of a link."""

    __slots__ = ("_cipher", "_limits", "_count", "_key_since", "_keyed", "messages")

    def __init__(self, cipher: CipherState, now: float, limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> None:
        assert cipher.k is not None
        self._cipher = cipher
        self._limits = limits
        self._count = 0
        self._key_since = now
        self._keyed = KeyedAead()
        self.messages = 0

    def seal(self, message: bytes, now: float) -> bytes:
        limits = self._limits
        if len(message) > limits.message_bytes_max:
            raise ValueError(
                f"message of {len(message)} bytes exceeds {limits.message_bytes_max}; split it"
            )
        self._count += 1
        rekey = (
            self._count >= limits.rekey_messages_max
            or now - self._key_since >= limits.rekey_interval_s
        )
        header = bytes((KIND_REKEY if rekey else KIND_DATA,)) + (
            len(message) + TAG_BYTES
        ).to_bytes(3, "big")
        c = self._cipher
        key = c.k
        assert key is not None
        ct = self._keyed.get(key).encrypt(_ZERO4 + c.n.to_bytes(8, "little"), message, header)
        c.n += 1
        if rekey:
            c.rekey()
            c.n = 0
            self._count = 0
            self._key_since = now
        self.messages += 1
        return header + ct


class FrameDecoder:
    """Buffers received bytes and opens whole frames. `receive_data(chunk)`, then call
    `next_message(now)` until it returns None (needs more bytes)."""

    __slots__ = (
        "_cipher", "_limits", "_count", "_key_since", "_keyed", "_buf", "_pos", "_failed", "messages",
    )

    def __init__(
        self, cipher: CipherState, now: float, limits: FrameLimits = DEFAULT_FRAME_LIMITS
    ) -> None:
        assert cipher.k is not None
        self._cipher = cipher
        self._limits = limits
        self._count = 0
        self._key_since = now
        self._keyed = KeyedAead()
        # Consumed bytes are skipped by offset and compacted lazily: no memmove per frame.
        self._buf = bytearray()
        self._pos = 0
        self._failed = False
        self.messages = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def _fail(self, message: str, reason: str) -> FrameError:
        self._failed = True
        return FrameError(message, reason=reason)

    def next_message(self, now: float) -> bytes | None:
        if self._failed:
            raise FrameError("the link already failed", reason="frame_after_error")
        buf, pos = self._buf, self._pos
        if len(buf) - pos < FRAME_HEADER_BYTES:
            return None
        kind = buf[pos]
        length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
        limits = self._limits
        if kind > KIND_REKEY:
            raise self._fail(f"unknown frame kind {kind}", "frame_malformed")
        if not TAG_BYTES <= length <= limits.message_bytes_max + TAG_BYTES:
            raise self._fail(
                f"frame of {length} bytes is outside [{TAG_BYTES}, "
                f"{limits.message_bytes_max + TAG_BYTES}]",
                "frame_too_large",
            )
        start = pos + FRAME_HEADER_BYTES
        end = start + length
        if len(buf) < end:
            return None
        self._count += 1
        if kind == KIND_DATA and (
            self._count >= limits.rekey_messages_max
            or now - self._key_since >= limits.rekey_interval_s + limits.rekey_grace_s
        ):
            raise self._fail("peer did not rekey in time", "frame_past_rekey_limit")
        c = self._cipher
        key = c.k
        assert key is not None
        with memoryview(buf) as view:
            header = bytes(view[pos:start])
            body = bytes(view[start:end])
        try:
            message = self._keyed.get(key).decrypt(_ZERO4 + c.n.to_bytes(8, "little"), body, header)
        except InvalidTag:
            raise self._fail("frame failed authentication", "bad_mac") from None
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        c.n += 1
        if kind == KIND_REKEY:
            c.rekey()
            c.n = 0
            self._count = 0
            self._key_since = now
        self.messages += 1
        return message
