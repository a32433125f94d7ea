"""Messages as frozen, slotted, keyword-only dataclasses that validate themselves.

Construction checks every field (type, range, size), so a message that exists is a valid
message: the decoder builds messages through these same constructors, and a local caller
that passes a bad field gets a `ValueError` naming it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .._types import NODE_ID_BYTES, Addr, NodeId

__all__ = [
    "NAME_CHARS_MAX",
    "ROLES_MAX",
    "TAGS_MAX",
    "TAG_KEY_CHARS_MAX",
    "TAG_VALUE_CHARS_MAX",
    "META_BYTES_MAX",
    "USER_PAYLOAD_BYTES_MAX",
    "SIGNATURE_BYTES_MAX",
    "ALIVE_CERT_BYTES_MAX",
    "NodeMeta",
    "Alive",
    "Suspect",
    "Dead",
    "UserMsg",
    "Update",
    "Status",
    "MemberState",
    "Ping",
    "PingReq",
    "Ack",
    "Nack",
    "PushPull",
    "Message",
]

#: Limits on what a peer may announce about itself (metadata travels in every Alive).
NAME_CHARS_MAX = 64
ROLES_MAX = 8
ROLE_CHARS_MAX = 32
TAGS_MAX = 16
TAG_KEY_CHARS_MAX = 32
TAG_VALUE_CHARS_MAX = 128
#: All metadata strings together, UTF-8 encoded (memberlist's MetaMaxSize is 512 too), so
#: that an Alive record with a full signature always fits one datagram.
META_BYTES_MAX = 512
HOST_CHARS_MAX = 253
USER_PAYLOAD_BYTES_MAX = 1024
SIGNATURE_BYTES_MAX = 128
#: A node's certificate travels in its own Alive record (and in push-pull states), so that
#: every receiver can admit the node before checking the record's signature. Bounded so
#: that an Alive with full metadata, the longest host name, a signature and a certificate
#: still fits one datagram (a realistic certificate is ~250 bytes).
ALIVE_CERT_BYTES_MAX = 416
SEQ_MAX = 2**63 - 1
INCARNATION_MAX = 2**63 - 1
UPDATES_MAX = 64
STATES_MAX = 100_000
CHECKSUM_BYTES_MAX = 64


def _int(name: str, value: object, hi: int) -> None:
    # bool is an int subclass; a peer sending `true` for a number is sending garbage.
    if type(value) is not int or not 0 <= value <= hi:
        raise ValueError(f"{name} must be an int in [0, {hi}], got {value!r:.40}")


def _str(name: str, value: object, chars_max: int) -> None:
    if type(value) is not str or len(value) > chars_max:
        raise ValueError(f"{name} must be a str of at most {chars_max} chars, got {value!r:.40}")


def _bytes(name: str, value: object, bytes_max: int) -> None:
    if type(value) is not bytes or len(value) > bytes_max:
        raise ValueError(f"{name} must be bytes of at most {bytes_max}, got {value!r:.40}")


def _node(name: str, value: object) -> None:
    if type(value) is not bytes or len(value) != NODE_ID_BYTES:
        raise ValueError(f"{name} must be a {NODE_ID_BYTES}-byte node id, got {value!r:.40}")


def _addr(name: str, value: object) -> None:
    if (
        type(value) is not tuple
        or len(value) != 2
        or type(value[0]) is not str
        or not 0 < len(value[0]) <= HOST_CHARS_MAX
        or type(value[1]) is not int
        or not 0 <= value[1] <= 65535
    ):
        raise ValueError(f"{name} must be (host: str, port: 0..65535), got {value!r:.60}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeMeta:
    """What a node says about itself: name, site, region (territory), roles, tags.

    Tags are a sorted tuple of (key, value) pairs so that metadata is hashable and encodes
    the same way everywhere.
    """

    name: str = ""
    site: str = ""
    region: str = ""
    roles: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _str("name", self.name, NAME_CHARS_MAX)
        _str("site", self.site, NAME_CHARS_MAX)
        _str("region", self.region, NAME_CHARS_MAX)
        if type(self.roles) is not tuple or len(self.roles) > ROLES_MAX:
            raise ValueError(f"roles must be a tuple of at most {ROLES_MAX} strings")
        for role in self.roles:
            _str("role", role, ROLE_CHARS_MAX)
        if type(self.tags) is not tuple or len(self.tags) > TAGS_MAX:
            raise ValueError(f"tags must be at most {TAGS_MAX} (key, value) pairs")
        previous = None
        for pair in self.tags:
            if type(pair) is not tuple or len(pair) != 2:
                raise ValueError("each tag must be a (key, value) pair of strings")
            _str("tag key", pair[0], TAG_KEY_CHARS_MAX)
            _str("tag value", pair[1], TAG_VALUE_CHARS_MAX)
            if previous is not None and pair[0] <= previous:
                raise ValueError("tag keys must be unique and sorted")
            previous = pair[0]
        total = sum(len(s.encode()) for s in (self.name, self.site, self.region, *self.roles))
        total += sum(len(k.encode()) + len(v.encode()) for k, v in self.tags)
        if total > META_BYTES_MAX:
            raise ValueError(f"metadata is {total} bytes of text, more than {META_BYTES_MAX}")

    @classmethod
    def build(
        cls,
        *,
        name: str = "",
        site: str = "",
        region: str = "",
        roles: tuple[str, ...] | list[str] = (),
        tags: dict[str, str] | None = None,
    ) -> NodeMeta:
        """Friendlier constructor: roles as any sequence, tags as a dict."""
        return cls(
            name=name,
            site=site,
            region=region,
            roles=tuple(roles),
            tags=tuple(sorted((tags or {}).items())),
        )

    @property
    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)


# --- membership updates (gossip records) ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Alive:
    """`node` is alive at `incarnation`, reachable at `addr`, with `meta`.

    Only the node itself issues Alive records about itself; `signature` (filled by the
    security layer) lets every receiver check that.
    """

    node: NodeId
    incarnation: int
    addr: Addr
    meta: NodeMeta
    signature: bytes = b""
    #: The node's certificate (empty when the mesh runs without the security layer).
    cert: bytes = b""

    def __post_init__(self) -> None:
        _node("node", self.node)
        _int("incarnation", self.incarnation, INCARNATION_MAX)
        _addr("addr", self.addr)
        if type(self.meta) is not NodeMeta:
            raise ValueError("meta must be a NodeMeta")
        _bytes("signature", self.signature, SIGNATURE_BYTES_MAX)
        _bytes("cert", self.cert, ALIVE_CERT_BYTES_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspect:
    """`by` suspects `node` at `incarnation` (a probe of it failed)."""

    node: NodeId
    incarnation: int
    by: NodeId

    def __post_init__(self) -> None:
        _node("node", self.node)
        _int("incarnation", self.incarnation, INCARNATION_MAX)
        _node("by", self.by)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dead:
    """`by` declares `node` dead at `incarnation`; `by == node` means a graceful leave
    (signed by the node itself once the security layer is on)."""

    node: NodeId
    incarnation: int
    by: NodeId
    signature: bytes = b""

    def __post_init__(self) -> None:
        _node("node", self.node)
        _int("incarnation", self.incarnation, INCARNATION_MAX)
        _node("by", self.by)
        _bytes("signature", self.signature, SIGNATURE_BYTES_MAX)

    @property
    def is_leave(self) -> bool:
        return self.node == self.by


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMsg:
    """An application broadcast, disseminated through the same piggyback queue."""

    origin: NodeId
    seq: int
    payload: bytes

    def __post_init__(self) -> None:
        _node("origin", self.origin)
        _int("seq", self.seq, SEQ_MAX)
        _bytes("payload", self.payload, USER_PAYLOAD_BYTES_MAX)


Update = Alive | Suspect | Dead | UserMsg


class Status(enum.IntEnum):
    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberState:
    """One member as a node sees it, exchanged whole in push-pull."""

    node: NodeId
    incarnation: int
    addr: Addr
    meta: NodeMeta
    status: Status
    signature: bytes = b""
    cert: bytes = b""

    def __post_init__(self) -> None:
        _node("node", self.node)
        _int("incarnation", self.incarnation, INCARNATION_MAX)
        _addr("addr", self.addr)
        if type(self.meta) is not NodeMeta:
            raise ValueError("meta must be a NodeMeta")
        if not isinstance(self.status, Status):
            raise ValueError(f"status must be a Status, got {self.status!r:.20}")
        _bytes("signature", self.signature, SIGNATURE_BYTES_MAX)
        _bytes("cert", self.cert, ALIVE_CERT_BYTES_MAX)


# --- protocol messages ----------------------------------------------------------------


def _updates(value: object) -> None:
    if type(value) is not tuple or len(value) > UPDATES_MAX:
        raise ValueError(f"updates must be a tuple of at most {UPDATES_MAX} updates")
    for u in value:
        if type(u) not in _UPDATE_TYPES:
            raise ValueError(f"not an update: {type(u).__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Direct probe of `target` (the recipient checks it is the target: an old address
    may now belong to someone else)."""

    seq: int
    sender: NodeId
    target: NodeId
    updates: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _int("seq", self.seq, SEQ_MAX)
        _node("sender", self.sender)
        _node("target", self.target)
        _updates(self.updates)


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReq:
    """Ask the recipient to probe `target` at `target_addr` on the sender's behalf."""

    seq: int
    sender: NodeId
    target: NodeId
    target_addr: Addr
    nack: bool = True
    updates: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _int("seq", self.seq, SEQ_MAX)
        _node("sender", self.sender)
        _node("target", self.target)
        _addr("target_addr", self.target_addr)
        if type(self.nack) is not bool:
            raise ValueError("nack must be a bool")
        _updates(self.updates)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    seq: int
    sender: NodeId
    updates: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _int("seq", self.seq, SEQ_MAX)
        _node("sender", self.sender)
        _updates(self.updates)


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """An intermediate of an indirect probe got no answer from the target in time: the
    link to the intermediate works, which Lifeguard uses to judge its own health."""

    seq: int
    sender: NodeId
    updates: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _int("seq", self.seq, SEQ_MAX)
        _node("sender", self.sender)
        _updates(self.updates)


@dataclass(frozen=True, slots=True, kw_only=True)
class PushPull:
    """Full-state exchange over a stream; `join` marks the first one of a joining node,
    `reply` the answer.

    `checksum` is the sender's membership checksum. A periodic exchange may open with the
    checksum alone (no states): when the two views already agree, nothing else crosses the
    link, which keeps steady-state push-pull to a few dozen bytes plus the handshake.
    """

    sender: NodeId
    join: bool
    reply: bool
    states: tuple[MemberState, ...] = field(default=())
    user_state: bytes = b""
    checksum: bytes = b""

    def __post_init__(self) -> None:
        _node("sender", self.sender)
        if type(self.join) is not bool or type(self.reply) is not bool:
            raise ValueError("join and reply must be bools")
        if type(self.states) is not tuple or len(self.states) > STATES_MAX:
            raise ValueError(f"states must be a tuple of at most {STATES_MAX} MemberState")
        for s in self.states:
            if type(s) is not MemberState:
                raise ValueError("states must hold MemberState values")
        _bytes("user_state", self.user_state, 1 << 20)
        _bytes("checksum", self.checksum, CHECKSUM_BYTES_MAX)


_UPDATE_TYPES = (Alive, Suspect, Dead, UserMsg)

Message = Ping | PingReq | Ack | Nack | PushPull
