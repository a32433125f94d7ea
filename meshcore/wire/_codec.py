"""Versioned, size-bounded CBOR codec for the messages of `_messages`.

Frame layout: a CBOR array ``[WIRE_VERSION, type_code, field, ...]``; updates and member
states are nested arrays with a kind code first. Decoding is strict: wrong version, unknown
type code, wrong arity, wrong field types, out-of-range values, oversized input, CBOR tags
or trailing bytes all raise `DecodeError` — the only exception `decode` raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cbor2

from ..errors import DecodeError
from ._envelope import decode_envelope, loads_strict
from ._messages import (
    Ack,
    Alive,
    Dead,
    MemberState,
    Message,
    Nack,
    NodeMeta,
    Ping,
    PingReq,
    PushPull,
    Status,
    Suspect,
    Update,
    UserMsg,
)

__all__ = [
    "WIRE_VERSION",
    "DATAGRAM_BYTES_MAX",
    "SEAL_OVERHEAD_BYTES_MAX",
    "DATAGRAM_PAYLOAD_BYTES_MAX",
    "STREAM_MESSAGE_BYTES_MAX",
    "encode",
    "decode",
    "encode_update",
    "update_size",
    "RECENT_USER_MAX",
    "encode_recent_users",
    "decode_recent_users",
    "alive_signing_bytes",
    "dead_signing_bytes",
]

WIRE_VERSION = 1
#: A datagram on the wire, sealed, never exceeds this (fits a 1,500-byte MTU with room).
DATAGRAM_BYTES_MAX = 1400
#: What the security layer may add to a datagram (header, counter, MAC).
SEAL_OVERHEAD_BYTES_MAX = 32
#: Largest plaintext datagram the codec produces or accepts.
DATAGRAM_PAYLOAD_BYTES_MAX = DATAGRAM_BYTES_MAX - SEAL_OVERHEAD_BYTES_MAX
#: Largest single stream message (push-pull of ~20,000 members).
STREAM_MESSAGE_BYTES_MAX = 8 * 1024 * 1024

#: At most this many recent user broadcasts ride in one PushPull (its `user_state`).
RECENT_USER_MAX = 256

_PING, _PING_REQ, _ACK, _NACK, _PUSH_PULL = 1, 2, 3, 4, 5
_ALIVE, _SUSPECT, _DEAD, _USER = 1, 2, 3, 4


# --- encoding -------------------------------------------------------------------------


def _meta(m: NodeMeta) -> list[Any]:
    return [m.name, m.site, m.region, list(m.roles), [list(t) for t in m.tags]]


def _addr(a: tuple[str, int]) -> list[Any]:
    return [a[0], a[1]]


def _update_list(u: Update) -> list[Any]:
    t = type(u)
    if t is Alive:
        a: Alive = u  # type: ignore[assignment]
        return [_ALIVE, a.node, a.incarnation, _addr(a.addr), _meta(a.meta), a.signature, a.cert]
    if t is Suspect:
        return [_SUSPECT, u.node, u.incarnation, u.by]  # type: ignore[union-attr]
    if t is Dead:
        return [_DEAD, u.node, u.incarnation, u.by, u.signature]  # type: ignore[union-attr]
    if t is UserMsg:
        return [_USER, u.origin, u.seq, u.payload]  # type: ignore[union-attr]
    raise TypeError(f"not an update: {t.__name__}")


def _state_list(s: MemberState) -> list[Any]:
    return [s.node, s.incarnation, _addr(s.addr), _meta(s.meta), int(s.status), s.signature, s.cert]


def _message_list(msg: Message) -> list[Any]:
    t = type(msg)
    if t is Ping:
        p: Ping = msg  # type: ignore[assignment]
        return [WIRE_VERSION, _PING, p.seq, p.sender, p.target, [_update_list(u) for u in p.updates]]
    if t is PingReq:
        r: PingReq = msg  # type: ignore[assignment]
        ups = [_update_list(u) for u in r.updates]
        return [WIRE_VERSION, _PING_REQ, r.seq, r.sender, r.target, _addr(r.target_addr), r.nack, ups]
    if t is Ack:
        a: Ack = msg  # type: ignore[assignment]
        return [WIRE_VERSION, _ACK, a.seq, a.sender, [_update_list(u) for u in a.updates]]
    if t is Nack:
        n: Nack = msg  # type: ignore[assignment]
        return [WIRE_VERSION, _NACK, n.seq, n.sender, [_update_list(u) for u in n.updates]]
    if t is PushPull:
        pp: PushPull = msg  # type: ignore[assignment]
        states = [_state_list(s) for s in pp.states]
        return [WIRE_VERSION, _PUSH_PULL, pp.sender, pp.join, pp.reply, states, pp.user_state,
                pp.checksum]
    raise TypeError(f"not a message: {t.__name__}")


def encode(msg: Message) -> bytes:
    """Encode a message. Callers that build datagrams keep them under
    `DATAGRAM_PAYLOAD_BYTES_MAX` by packing updates with `update_size`."""
    return cbor2.dumps(_message_list(msg))


def encode_update(u: Update) -> bytes:
    return cbor2.dumps(_update_list(u))


def encode_recent_users(msgs: Sequence[UserMsg]) -> bytes:
    """A PushPull's `user_state`: recent user broadcasts, each as its piggyback update
    (b"" for none). A member that missed one on the gossip path gets it this way."""
    if not msgs:
        return b""
    if len(msgs) > RECENT_USER_MAX:
        raise ValueError(f"at most {RECENT_USER_MAX} recent broadcasts per PushPull")
    return cbor2.dumps([_update_list(m) for m in msgs])


def update_size(u: Update) -> int:
    """Bytes the update adds to a message (its CBOR item; array headers aside)."""
    return len(cbor2.dumps(_update_list(u)))


def alive_signing_bytes(u: Alive | MemberState) -> bytes:
    """The bytes a node signs to vouch for its own Alive record (signature excluded; the
    certificate included, so nobody can staple another certificate to the record)."""
    return cbor2.dumps(
        [b"meshcore alive v1", u.node, u.incarnation, _addr(u.addr), _meta(u.meta), u.cert]
    )


def dead_signing_bytes(u: Dead) -> bytes:
    """The bytes a node signs when it leaves (signature excluded)."""
    return cbor2.dumps([b"meshcore leave v1", u.node, u.incarnation])


# --- decoding -------------------------------------------------------------------------


def _list(value: Any, n: int | None, what: str) -> list[Any]:
    if type(value) is not list or (n is not None and len(value) != n):
        raise DecodeError(f"{what}: expected an array of {n}, got {type(value).__name__}")
    return value


def _dec_meta(v: Any) -> NodeMeta:
    name, site, region, roles, tags = _list(v, 5, "meta")
    roles_t = tuple(_list(roles, None, "roles"))
    tags_t = tuple(tuple(_list(t, 2, "tag")) for t in _list(tags, None, "tags"))
    return NodeMeta(name=name, site=site, region=region, roles=roles_t, tags=tags_t)


def _dec_addr(v: Any) -> tuple[str, int]:
    host, port = _list(v, 2, "addr")
    return (host, port)


def _dec_update(v: Any) -> Update:
    items = _list(v, None, "update")
    if not items:
        raise DecodeError("empty update")
    kind = items[0]
    if kind == _ALIVE and len(items) == 7:
        return Alive(
            node=items[1], incarnation=items[2], addr=_dec_addr(items[3]),
            meta=_dec_meta(items[4]), signature=items[5], cert=items[6],
        )
    if kind == _SUSPECT and len(items) == 4:
        return Suspect(node=items[1], incarnation=items[2], by=items[3])
    if kind == _DEAD and len(items) == 5:
        return Dead(node=items[1], incarnation=items[2], by=items[3], signature=items[4])
    if kind == _USER and len(items) == 4:
        return UserMsg(origin=items[1], seq=items[2], payload=items[3])
    raise DecodeError(f"unknown update kind {kind!r:.20} or wrong arity {len(items)}")


def decode_recent_users(data: bytes) -> tuple[UserMsg, ...]:
    """The broadcasts of a PushPull's `user_state`; `DecodeError` for anything else.
    (A PushPull bounds `user_state` to 1 MiB before this runs.)"""
    if data == b"":
        return ()
    items = _list(loads_strict(data, bytes_max=len(data), what="recent broadcasts"), None,
                  "recent broadcasts")
    if len(items) > RECENT_USER_MAX:
        raise DecodeError(f"{len(items)} recent broadcasts (limit {RECENT_USER_MAX})")
    out: list[UserMsg] = []
    for v in items:
        try:
            u = _dec_update(v)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"recent broadcast: {exc}"[:200]) from None
        if type(u) is not UserMsg:
            raise DecodeError("recent broadcasts hold user messages only")
        out.append(u)
    return tuple(out)


def _dec_updates(v: Any) -> tuple[Update, ...]:
    return tuple(_dec_update(u) for u in _list(v, None, "updates"))


def _dec_state(v: Any) -> MemberState:
    node, inc, addr, meta, status, sig, cert = _list(v, 7, "member state")
    if type(status) is not int or not 0 <= status <= 3:
        raise DecodeError(f"bad member status {status!r:.20}")
    return MemberState(
        node=node, incarnation=inc, addr=_dec_addr(addr), meta=_dec_meta(meta),
        status=Status(status), signature=sig, cert=cert,
    )


def _dec_ping(f: list[Any]) -> Message:
    seq, sender, target, ups = f
    return Ping(seq=seq, sender=sender, target=target, updates=_dec_updates(ups))


def _dec_ping_req(f: list[Any]) -> Message:
    seq, sender, target, addr, nack, ups = f
    return PingReq(
        seq=seq, sender=sender, target=target, target_addr=_dec_addr(addr), nack=nack,
        updates=_dec_updates(ups),
    )


def _dec_ack(f: list[Any]) -> Message:
    seq, sender, ups = f
    return Ack(seq=seq, sender=sender, updates=_dec_updates(ups))


def _dec_nack(f: list[Any]) -> Message:
    seq, sender, ups = f
    return Nack(seq=seq, sender=sender, updates=_dec_updates(ups))


def _dec_push_pull(f: list[Any]) -> Message:
    sender, join, reply, states, user_state, checksum = f
    st = tuple(_dec_state(s) for s in _list(states, None, "states"))
    return PushPull(sender=sender, join=join, reply=reply, states=st, user_state=user_state,
                    checksum=checksum)


_DECODERS: dict[int, tuple[int, Callable[[list[Any]], Message]]] = {
    _PING: (4, _dec_ping),
    _PING_REQ: (6, _dec_ping_req),
    _ACK: (3, _dec_ack),
    _NACK: (3, _dec_nack),
    _PUSH_PULL: (6, _dec_push_pull),
}


def decode(data: bytes, *, bytes_max: int = DATAGRAM_PAYLOAD_BYTES_MAX) -> Message:
    """Decode one message; raise `DecodeError` (and nothing else) for any bad input.

    `bytes_max` bounds the input: the datagram default, or `STREAM_MESSAGE_BYTES_MAX` for
    stream messages.
    """
    return decode_envelope(data, version=WIRE_VERSION, decoders=_DECODERS, bytes_max=bytes_max,
                           what="wire message")
