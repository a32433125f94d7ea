"""Messages of the replication protocol and their strict, versioned CBOR codec.

Frame: ``[KV_WIRE_VERSION, type_code, field, ...]``. Every message is a frozen, slotted,
keyword-only dataclass that validates itself, and the decoder builds messages through the
same constructors, so a decoded message is a valid message. `decode_kv` raises only
`DecodeError` (wrong version, unknown type, wrong arity or types, oversized input, CBOR
tags, trailing bytes).

Limits: a value is at most `VALUE_BYTES_MAX` (1 MiB), a key `KEY_BYTES_MAX`; a frame at
most `KV_MESSAGE_BYTES_MAX` (one value plus generous room for the other fields). Refusal
details are at most `DETAIL_CHARS_MAX` chars (they end up in logs and errors).

Stamps travel as their 28-byte `Stamp.to_bytes()` form; a record travels as
``(stamp, value)`` with ``value = null`` for a tombstone.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from .._types import NODE_ID_BYTES
from ..errors import DecodeError
from ..wire import decode_envelope
from ._hlc import Stamp
from ._namespace import NAME_CHARS_MAX
from ._record import KEY_BYTES_MAX, VALUE_BYTES_MAX, Record

__all__ = [
    "KV_WIRE_VERSION",
    "KV_MESSAGE_BYTES_MAX",
    "DETAIL_CHARS_MAX",
    "REQUEST_ID_MAX",
    "Status",
    "Write",
    "WriteAck",
    "Read",
    "ReadReply",
    "HintDelivery",
    "HintAck",
    "Repair",
    "TombstoneAckMsg",
    "KvMessage",
    "encode_kv",
    "decode_kv",
]

KV_WIRE_VERSION = 1
#: One value of 1 MiB plus room for key, stamps, ids and CBOR headers.
KV_MESSAGE_BYTES_MAX = VALUE_BYTES_MAX + 8 * 1024
DETAIL_CHARS_MAX = 200
REQUEST_ID_MAX = 2**63 - 1


class Status(enum.IntEnum):
    """Answer of a replica: OK, or why it refused (the coordinator reports the reason)."""

    OK = 0
    CLOCK_SKEW = 1  # the stamp is further ahead of our wall time than the skew bound
    STALE = 2  # the stamp is older than the hint/write age bound (tombstones may be gone)
    UNKNOWN_NAMESPACE = 3
    NOT_REPLICA = 4  # placement on this node disagrees with the coordinator's
    TERRITORY = 5  # this node's region is outside the namespace's territory
    STORAGE = 6  # the local store failed
    BUSY = 7  # a limit was reached (too many pending operations)


def _int(name: str, value: object, hi: int) -> None:
    if type(value) is not int or not 0 <= value <= hi:
        raise ValueError(f"{name} must be an int in [0, {hi}], got {value!r:.40}")


def _node(name: str, value: object) -> None:
    if type(value) is not bytes or len(value) != NODE_ID_BYTES:
        raise ValueError(f"{name} must be a {NODE_ID_BYTES}-byte node id, got {value!r:.40}")


def _ns(value: object) -> None:
    # Full name rules are checked against the local namespace table; here only the bound.
    if type(value) is not str or not 1 <= len(value) <= NAME_CHARS_MAX:
        raise ValueError(f"namespace must be a str of 1-{NAME_CHARS_MAX} chars, got {value!r:.40}")


def _key(value: object) -> None:
    if type(value) is not bytes or not 1 <= len(value) <= KEY_BYTES_MAX:
        raise ValueError(f"key must be 1-{KEY_BYTES_MAX} bytes, got {value!r:.40}")


def _value(value: object) -> None:
    if value is not None and (type(value) is not bytes or len(value) > VALUE_BYTES_MAX):
        raise ValueError(f"value must be None or bytes of at most {VALUE_BYTES_MAX}, got {type(value).__name__}")


def _stamp(name: str, value: object) -> None:
    if type(value) is not Stamp:
        raise ValueError(f"{name} must be a Stamp, got {type(value).__name__}")


def _status(value: object) -> None:
    if type(value) is not Status:
        raise ValueError(f"status must be a Status, got {value!r:.40}")


def _detail(value: object) -> None:
    if type(value) is not str or len(value) > DETAIL_CHARS_MAX:
        raise ValueError(f"detail must be a str of at most {DETAIL_CHARS_MAX} chars")


@dataclass(frozen=True, slots=True, kw_only=True)
class Write:
    """Coordinator -> replica: store this version. `hint_for` set: the receiver is a
    stand-in and holds the version as a hint for that (down) home replica."""

    request_id: int
    coordinator: bytes
    namespace: str
    key: bytes
    stamp: Stamp
    value: bytes | None
    hint_for: bytes | None = None

    def __post_init__(self) -> None:
        _int("request_id", self.request_id, REQUEST_ID_MAX)
        _node("coordinator", self.coordinator)
        _ns(self.namespace)
        _key(self.key)
        _stamp("stamp", self.stamp)
        _value(self.value)
        if self.hint_for is not None:
            _node("hint_for", self.hint_for)

    def record(self) -> Record:
        return Record(self.key, self.value, self.stamp)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteAck:
    """Replica -> coordinator: the write is durable (OK) or refused (status, detail)."""

    request_id: int
    sender: bytes
    status: Status = Status.OK
    detail: str = ""

    def __post_init__(self) -> None:
        _int("request_id", self.request_id, REQUEST_ID_MAX)
        _node("sender", self.sender)
        _status(self.status)
        _detail(self.detail)


@dataclass(frozen=True, slots=True, kw_only=True)
class Read:
    """Coordinator -> replica: send me your version of this key."""

    request_id: int
    coordinator: bytes
    namespace: str
    key: bytes

    def __post_init__(self) -> None:
        _int("request_id", self.request_id, REQUEST_ID_MAX)
        _node("coordinator", self.coordinator)
        _ns(self.namespace)
        _key(self.key)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadReply:
    """Replica -> coordinator: my version (`stamp` None: I hold nothing), or a refusal."""

    request_id: int
    sender: bytes
    status: Status = Status.OK
    stamp: Stamp | None = None
    value: bytes | None = None

    def __post_init__(self) -> None:
        _int("request_id", self.request_id, REQUEST_ID_MAX)
        _node("sender", self.sender)
        _status(self.status)
        if self.stamp is not None:
            _stamp("stamp", self.stamp)
        _value(self.value)
        if self.stamp is None and self.value is not None:
            raise ValueError("a reply without a stamp carries no value")


@dataclass(frozen=True, slots=True, kw_only=True)
class HintDelivery:
    """Stand-in -> home replica that is back: a version held for you while you were down."""

    hint_id: int
    sender: bytes
    namespace: str
    key: bytes
    stamp: Stamp
    value: bytes | None

    def __post_init__(self) -> None:
        _int("hint_id", self.hint_id, REQUEST_ID_MAX)
        _node("sender", self.sender)
        _ns(self.namespace)
        _key(self.key)
        _stamp("stamp", self.stamp)
        _value(self.value)

    def record(self) -> Record:
        return Record(self.key, self.value, self.stamp)


@dataclass(frozen=True, slots=True, kw_only=True)
class HintAck:
    """Home replica -> stand-in: the hint is durable here (OK: drop it) or refused."""

    hint_id: int
    sender: bytes
    status: Status = Status.OK
    detail: str = ""

    def __post_init__(self) -> None:
        _int("hint_id", self.hint_id, REQUEST_ID_MAX)
        _node("sender", self.sender)
        _status(self.status)
        _detail(self.detail)


@dataclass(frozen=True, slots=True, kw_only=True)
class Repair:
    """Read repair or anti-entropy push: a version newer than the receiver's (no reply)."""

    sender: bytes
    namespace: str
    key: bytes
    stamp: Stamp
    value: bytes | None

    def __post_init__(self) -> None:
        _node("sender", self.sender)
        _ns(self.namespace)
        _key(self.key)
        _stamp("stamp", self.stamp)
        _value(self.value)

    def record(self) -> Record:
        return Record(self.key, self.value, self.stamp)


@dataclass(frozen=True, slots=True, kw_only=True)
class TombstoneAckMsg:
    """Replica -> other replicas: I hold `key` at `stamp` or newer. `echo` marks an answer
    to someone else's acknowledgement; echoes are never answered (no ping-pong)."""

    sender: bytes
    namespace: str
    key: bytes
    stamp: Stamp
    echo: bool = False

    def __post_init__(self) -> None:
        _node("sender", self.sender)
        _ns(self.namespace)
        _key(self.key)
        _stamp("stamp", self.stamp)
        if type(self.echo) is not bool:
            raise ValueError("echo must be a bool")


KvMessage = Write | WriteAck | Read | ReadReply | HintDelivery | HintAck | Repair | TombstoneAckMsg

_WRITE, _WRITE_ACK, _READ, _READ_REPLY, _HINT, _HINT_ACK, _REPAIR, _TOMB_ACK = range(1, 9)


def _sb(s: Stamp | None) -> bytes | None:
    return None if s is None else s.to_bytes()


def _fields(m: KvMessage) -> list[Any]:
    t = type(m)
    if t is Write:
        w: Write = m  # type: ignore[assignment]
        return [_WRITE, w.request_id, w.coordinator, w.namespace, w.key, _sb(w.stamp), w.value, w.hint_for]
    if t is WriteAck:
        a: WriteAck = m  # type: ignore[assignment]
        return [_WRITE_ACK, a.request_id, a.sender, int(a.status), a.detail]
    if t is Read:
        r: Read = m  # type: ignore[assignment]
        return [_READ, r.request_id, r.coordinator, r.namespace, r.key]
    if t is ReadReply:
        rr: ReadReply = m  # type: ignore[assignment]
        return [_READ_REPLY, rr.request_id, rr.sender, int(rr.status), _sb(rr.stamp), rr.value]
    if t is HintDelivery:
        h: HintDelivery = m  # type: ignore[assignment]
        return [_HINT, h.hint_id, h.sender, h.namespace, h.key, _sb(h.stamp), h.value]
    if t is HintAck:
        ha: HintAck = m  # type: ignore[assignment]
        return [_HINT_ACK, ha.hint_id, ha.sender, int(ha.status), ha.detail]
    if t is Repair:
        p: Repair = m  # type: ignore[assignment]
        return [_REPAIR, p.sender, p.namespace, p.key, _sb(p.stamp), p.value]
    if t is TombstoneAckMsg:
        ta: TombstoneAckMsg = m  # type: ignore[assignment]
        return [_TOMB_ACK, ta.sender, ta.namespace, ta.key, _sb(ta.stamp), ta.echo]
    raise TypeError(f"not a kv message: {t.__name__}")


def encode_kv(msg: KvMessage) -> bytes:
    """Encode a kv message (its fields were validated when it was built)."""
    return cbor2.dumps([KV_WIRE_VERSION, *_fields(msg)])


def _st(v: Any) -> Stamp:
    return Stamp.from_bytes(v)  # raises DecodeError on anything but 28 bytes


def _opt_st(v: Any) -> Stamp | None:
    return None if v is None else _st(v)


_STATUS_OF: dict[int, Status] = {int(st): st for st in Status}


def _status_of(v: Any) -> Status:
    st = _STATUS_OF.get(v) if type(v) is int else None
    if st is None:
        raise DecodeError(f"unknown status {v!r:.20}")
    return st


def _id(v: Any) -> int:
    # Checked before the constructor: compiled, an `int` field takes `true` as 1 unchecked.
    if type(v) is not int:
        raise DecodeError(f"an id is an int, got {v!r:.20}")
    return v


_DECODERS: dict[int, tuple[int, Callable[[list[Any]], KvMessage]]] = {
    _WRITE: (7, lambda f: Write(request_id=_id(f[0]), coordinator=f[1], namespace=f[2], key=f[3],
                                stamp=_st(f[4]), value=f[5], hint_for=f[6])),
    _WRITE_ACK: (4, lambda f: WriteAck(request_id=_id(f[0]), sender=f[1], status=_status_of(f[2]), detail=f[3])),
    _READ: (4, lambda f: Read(request_id=_id(f[0]), coordinator=f[1], namespace=f[2], key=f[3])),
    _READ_REPLY: (5, lambda f: ReadReply(request_id=_id(f[0]), sender=f[1], status=_status_of(f[2]),
                                         stamp=_opt_st(f[3]), value=f[4])),
    _HINT: (6, lambda f: HintDelivery(hint_id=_id(f[0]), sender=f[1], namespace=f[2], key=f[3],
                                      stamp=_st(f[4]), value=f[5])),
    _HINT_ACK: (4, lambda f: HintAck(hint_id=_id(f[0]), sender=f[1], status=_status_of(f[2]), detail=f[3])),
    _REPAIR: (5, lambda f: Repair(sender=f[0], namespace=f[1], key=f[2], stamp=_st(f[3]), value=f[4])),
    _TOMB_ACK: (5, lambda f: TombstoneAckMsg(sender=f[0], namespace=f[1], key=f[2], stamp=_st(f[3]), echo=f[4])),
}


def decode_kv(data: bytes) -> KvMessage:
    """Decode one kv message; raise `DecodeError` (and nothing else) for any bad input."""
    return decode_envelope(data, version=KV_WIRE_VERSION, decoders=_DECODERS,
                           bytes_max=KV_MESSAGE_BYTES_MAX, what="kv message")
