"""Assemble messages from cached encoded updates without re-encoding them.

A message whose last field is its update list encodes as ``head + array(updates)``; the
head is the encoding of the same message with no updates minus its empty-array byte. The
result is byte-for-byte what `meshcore.wire.encode` gives (a test checks it).
"""

from __future__ import annotations

__all__ = ["array_header", "with_updates"]


def array_header(n: int) -> bytes:
    """CBOR header of an array of `n` items."""
    if n < 24:
        return bytes((0x80 + n,))
    if n < 256:
        return bytes((0x98, n))
    if n < 65536:
        return b"\x99" + n.to_bytes(2, "big")
    return b"\x9a" + n.to_bytes(4, "big")


def with_updates(empty_encoding: bytes, updates: list[bytes]) -> bytes:
    """`empty_encoding` is `encode(msg)` for msg with `updates=()` (it ends in 0x80)."""
    if not updates:
        return empty_encoding
    return empty_encoding[:-1] + array_header(len(updates)) + b"".join(updates)
