"""Reconciliation frames: blocks as frozen values and their strict, versioned CBOR codec.

A frame is ``cbor([AE_WIRE_VERSION, flags, [block, ...]]) || blake3(body)[:8]``. Each block
is a CBOR array whose first item is its kind. Fingerprints, key ids and leaf entries travel
packed in byte strings (no per-item CBOR overhead). Decoding checks the size, the checksum
(a flipped bit anywhere ends the session before anything is applied), the CBOR (no tags,
no trailing bytes), and the type, arity and range of every field; any failure raises
`ReconcileError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import blake3
import cbor2

from ..errors import DecodeError
from ..wire import loads_strict
from ._config import ReconcileConfig, ReconcileError
from ._index import KEY_BYTES_MAX, VERSION_BYTES_MAX

__all__ = [
    "AE_WIRE_VERSION",
    "CHECKSUM_BYTES",
    "Hello",
    "Root",
    "Fps",
    "Leaf",
    "Want",
    "Offer",
    "WantKey",
    "Put",
    "Verify",
    "Block",
    "Frame",
    "encode_block",
    "encode_frame",
    "frame_overhead_bytes",
    "decode_frame",
]

AE_WIRE_VERSION = 2  # 2: a want carries the check of the entries the leaf matched
CHECKSUM_BYTES = 8
SALT_BYTES = 16
_MORE, _FINAL, _DENSE = 1, 2, 4
_HELLO, _ROOT, _FPS, _LEAF, _WANT, _OFFER, _WANTKEY, _PUT, _VERIFY = range(9)


@dataclass(frozen=True, slots=True)
class Hello:
    """First block of a session: the salt and the widths the initiator chose."""

    salt: bytes
    fingerprint_bytes: int
    kid_bytes: int
    window_bytes: int
    vh_bytes: int


@dataclass(frozen=True, slots=True)
class Root:
    """A root range to reconcile and the sender's fingerprint of it."""

    lo: bytes
    hi: bytes | None
    fp: bytes


@dataclass(frozen=True, slots=True)
class Fps:
    """The sender's fingerprints of the 2**bits children of node (root, nbits, path)."""

    root: int
    nbits: int
    path: int
    bits: int
    fps: bytes


@dataclass(frozen=True, slots=True)
class Leaf:
    """The sender's entries in node (root, nbits, path): key id, version window, version
    hash, packed; `vbase` is the common prefix of their versions (the window follows it)."""

    root: int
    nbits: int
    path: int
    vbase: bytes
    entries: bytes


@dataclass(frozen=True, slots=True)
class Want:
    """The answer to a leaf of node (root, nbits, path): send me your records of `kids`
    (possibly none). `check` is the salted fingerprint of the sender's other entries of the
    node except `skipped` (ids it offered): those it found equal to the leaf's and those it
    sent as newer. A mismatch proves that a short leaf hash hid a difference."""

    root: int
    nbits: int
    path: int
    kids: bytes
    skipped: bytes
    check: bytes


@dataclass(frozen=True, slots=True)
class Offer:
    """I hold `key` at this version; the leaf could not order ours. Send yours if newer,
    or ask for mine."""

    key: bytes
    version: bytes
    tombstone: bool


@dataclass(frozen=True, slots=True)
class WantKey:
    """Send me your record of `key`."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Put:
    """A record for the receiver to apply if newer (value None: a tombstone)."""

    key: bytes
    version: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Verify:
    """The sender's final root fingerprints, after the session (one per root)."""

    fps: bytes


Block = Hello | Root | Fps | Leaf | Want | Offer | WantKey | Put | Verify
#: Blocks that never need an answer.
PASSIVE = (Put, Verify)


@dataclass(frozen=True, slots=True)
class Frame:
    more: bool
    final: bool
    dense: bool
    blocks: tuple[Block, ...]


# --- encoding -------------------------------------------------------------------------


def encode_block(b: Block) -> bytes:
    t = type(b)
    if t is Put:
        return cbor2.dumps([_PUT, b.key, b.version, b.value])  # type: ignore[union-attr]
    if t is Fps:
        return cbor2.dumps([_FPS, b.root, b.nbits, b.path, b.bits, b.fps])  # type: ignore[union-attr]
    if t is Leaf:
        return cbor2.dumps([_LEAF, b.root, b.nbits, b.path, b.vbase, b.entries])  # type: ignore[union-attr]
    if t is Want:
        w: Want = b  # type: ignore[assignment]
        return cbor2.dumps([_WANT, w.root, w.nbits, w.path, w.kids, w.skipped, w.check])
    if t is Offer:
        return cbor2.dumps([_OFFER, b.key, b.version, b.tombstone])  # type: ignore[union-attr]
    if t is WantKey:
        return cbor2.dumps([_WANTKEY, b.key])  # type: ignore[union-attr]
    if t is Root:
        return cbor2.dumps([_ROOT, b.lo, b.hi, b.fp])  # type: ignore[union-attr]
    if t is Hello:
        h: Hello = b  # type: ignore[assignment]
        return cbor2.dumps([_HELLO, h.salt, h.fingerprint_bytes, h.kid_bytes, h.window_bytes, h.vh_bytes])
    if t is Verify:
        return cbor2.dumps([_VERIFY, b.fps])  # type: ignore[union-attr]
    raise TypeError(f"not a reconciliation block: {t.__name__}")


def _array_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x80 | n])
    if n < 256:
        return bytes([0x98, n])
    if n < 65536:
        return bytes([0x99]) + n.to_bytes(2, "big")
    return bytes([0x9A]) + n.to_bytes(4, "big")


def frame_overhead_bytes(nblocks: int) -> int:
    """Bytes a frame adds around its encoded blocks."""
    return 1 + 1 + 1 + len(_array_head(nblocks)) + CHECKSUM_BYTES


def encode_frame(*, more: bool, final: bool, dense: bool, blocks: list[bytes]) -> bytes:
    """Assemble a frame from already encoded blocks (see `encode_block`)."""
    flags = (_MORE if more else 0) | (_FINAL if final else 0) | (_DENSE if dense else 0)
    body = b"".join([b"\x83", cbor2.dumps(AE_WIRE_VERSION), cbor2.dumps(flags), _array_head(len(blocks)), *blocks])
    return body + blake3.blake3(body).digest(CHECKSUM_BYTES)


# --- decoding -------------------------------------------------------------------------


def _int(value: Any, lo: int, hi: int, what: str) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ReconcileError(f"{what} must be an int in [{lo}, {hi}], got {value!r:.30}")
    return value


def _bytes(value: Any, lo: int, hi: int, what: str) -> bytes:
    if type(value) is not bytes or not lo <= len(value) <= hi:
        raise ReconcileError(f"{what} must be {lo}..{hi} bytes, got {type(value).__name__} {value!r:.30}")
    return value


def _node(f: list[Any], depth_bits_max: int) -> tuple[int, int, int]:
    root = _int(f[1], 0, 1 << 20, "root index")
    nbits = _int(f[2], 0, depth_bits_max, "node depth")
    path = _int(f[3], 0, (1 << nbits) - 1, "node path")
    return root, nbits, path


def _block(f: Any, cfg: ReconcileConfig) -> Block:
    if type(f) is not list or not f or type(f[0]) is not int:
        raise ReconcileError("a block is an array starting with its kind")
    kind, n = f[0], len(f)
    cap = cfg.message_bytes_max
    if kind == _PUT and n == 4:
        value = None if f[3] is None else _bytes(f[3], 0, cfg.value_bytes_max, "value")
        return Put(_bytes(f[1], 1, KEY_BYTES_MAX, "key"), _bytes(f[2], 1, VERSION_BYTES_MAX, "version"), value)
    if kind == _FPS and n == 6:
        root, nbits, path = _node(f, cfg.depth_bits_max)
        bits = _int(f[4], 1, 16, "split bits")
        if nbits + bits > cfg.depth_bits_max:
            raise ReconcileError(f"split below the depth limit ({nbits}+{bits})")
        fps = _bytes(f[5], 1, cap, "fingerprints")
        return Fps(root, nbits, path, bits, fps)
    if kind == _LEAF and n == 6:
        root, nbits, path = _node(f, cfg.depth_bits_max)
        vbase = _bytes(f[4], 0, VERSION_BYTES_MAX, "version base")
        return Leaf(root, nbits, path, vbase, _bytes(f[5], 0, cap, "leaf entries"))
    if kind == _WANT and n == 7:
        root, nbits, path = _node(f, cfg.depth_bits_max)
        kids, skipped = _bytes(f[4], 0, cap, "wanted ids"), _bytes(f[5], 0, cap, "skipped ids")
        return Want(root, nbits, path, kids, skipped, _bytes(f[6], 2, 16, "want check"))
    if kind == _OFFER and n == 4:
        if type(f[3]) is not bool:
            raise ReconcileError("offer tombstone flag must be a bool")
        return Offer(_bytes(f[1], 1, KEY_BYTES_MAX, "key"), _bytes(f[2], 1, VERSION_BYTES_MAX, "version"), f[3])
    if kind == _WANTKEY and n == 2:
        return WantKey(_bytes(f[1], 1, KEY_BYTES_MAX, "key"))
    if kind == _ROOT and n == 4:
        lo = _bytes(f[1], 0, KEY_BYTES_MAX, "range lo")
        hi = None if f[2] is None else _bytes(f[2], 0, KEY_BYTES_MAX, "range hi")
        if hi is not None and not lo < hi:
            raise ReconcileError("empty root range")
        return Root(lo, hi, _bytes(f[3], 8, 32, "root fingerprint"))
    if kind == _HELLO and n == 6:
        return Hello(
            _bytes(f[1], SALT_BYTES, SALT_BYTES, "salt"),
            _int(f[2], 2, 16, "fingerprint bytes"),
            _int(f[3], 3, 16, "key id bytes"),
            _int(f[4], 1, 16, "window bytes"),
            _int(f[5], 1, 8, "version hash bytes"),
        )
    if kind == _VERIFY and n == 2:
        return Verify(_bytes(f[1], 8, cap, "verify fingerprints"))
    raise ReconcileError(f"unknown block kind {kind!r:.20} or wrong arity {n}")


def decode_frame(data: bytes, cfg: ReconcileConfig) -> Frame:
    """Decode one frame; raise `ReconcileError` (only) for any bad input."""
    if type(data) is not bytes:
        raise ReconcileError(f"expected bytes, got {type(data).__name__}")
    if len(data) > cfg.record_frame_bytes_max:
        raise ReconcileError(f"frame of {len(data)} bytes exceeds the limit of {cfg.record_frame_bytes_max}")
    if len(data) <= CHECKSUM_BYTES:
        raise ReconcileError(f"truncated frame of {len(data)} bytes")
    body, tag = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if blake3.blake3(body).digest(CHECKSUM_BYTES) != tag:
        raise ReconcileError("frame checksum mismatch (corrupted or truncated)")
    try:
        top = loads_strict(body, bytes_max=len(body), what="reconciliation frame")
    except DecodeError as exc:
        raise ReconcileError(str(exc)) from None
    if type(top) is not list or len(top) != 3:
        raise ReconcileError("not a reconciliation frame (expected [version, flags, blocks])")
    if type(top[0]) is not int or top[0] != AE_WIRE_VERSION:
        raise ReconcileError(f"unsupported reconciliation version {top[0]!r:.20} (this node speaks {AE_WIRE_VERSION})")
    flags = _int(top[1], 0, 7, "flags")
    if type(top[2]) is not list:
        raise ReconcileError("frame blocks must be an array")
    blocks = tuple(_block(b, cfg) for b in top[2])
    if len(data) > cfg.message_bytes_max and not (len(blocks) == 1 and type(blocks[0]) is Put):
        raise ReconcileError(f"frame of {len(data)} bytes exceeds the limit of {cfg.message_bytes_max}")
    return Frame(bool(flags & _MORE), bool(flags & _FINAL), bool(flags & _DENSE), blocks)
