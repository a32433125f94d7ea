"""What the SWIM core asks its driver to do, and what it tells the application.

The core never performs I/O: every call returns a list of these values. A driver (the trio
runtime, or the simulator) turns `SendDatagram` into a UDP write, `SendStream` into a
request/response over a stream connection, `SetTimer` into a wake-up that calls
`Swim.on_timer(now, timer)` at `at` (timers are never cancelled: the core ignores stale
tokens), and hands `MemberEvent` / `UserBroadcast` to the application.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._types import Addr, NodeId
from ..wire import NodeMeta, Status

__all__ = [
    "Timer",
    "SendDatagram",
    "SendStream",
    "SetTimer",
    "EventKind",
    "Member",
    "MemberEvent",
    "UserBroadcast",
    "Effect",
]


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer is a value: `kind` says what it is for, `token` which instance it is."""

    kind: str
    token: int = 0


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send `data` (plaintext; the driver seals it) as one datagram to `addr`."""

    addr: Addr
    data: bytes


@dataclass(frozen=True, slots=True)
class SendStream:
    """Open a stream to `addr`, send `data` as one framed message and read one framed
    reply. The driver then calls `on_stream_reply(now, token, reply)` or, on any failure
    (refused, timeout after `timeout_s`, bad reply), `on_stream_failed(now, token)`."""

    addr: Addr
    data: bytes
    token: int
    timeout_s: float


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call `on_timer(now, timer)` once `now >= at`."""

    at: float
    timer: Timer


class EventKind(enum.Enum):
    JOINED = "joined"
    UPDATED = "updated"
    SUSPECT = "suspect"
    ALIVE = "alive"  # a suspected member refuted the suspicion
    DEAD = "dead"
    LEFT = "left"


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A snapshot of one member as this node sees it."""

    node: NodeId
    addr: Addr
    meta: NodeMeta
    incarnation: int
    status: Status
    since: float  # `now` of the last status change


@dataclass(frozen=True, slots=True)
class MemberEvent:
    kind: EventKind
    member: Member


@dataclass(frozen=True, slots=True)
class UserBroadcast:
    """An application payload broadcast by `origin` reached this node (once per payload)."""

    origin: NodeId
    payload: bytes


Effect = SendDatagram | SendStream | SetTimer | MemberEvent | UserBroadcast
