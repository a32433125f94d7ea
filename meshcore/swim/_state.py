"""The member table and the (status, update) -> status transition table.

Precedence follows SWIM: at a higher incarnation anything wins; at the same incarnation
Suspect beats Alive and Dead/Left beat both; a dead or left member comes back only with a
higher incarnation (which only the node itself can issue, signed). Updates about unknown
nodes are accepted only when they are Alive records. What is not in the table is ignored.
"""

from __future__ import annotations

import enum
import hashlib

from .._types import Addr, NodeId
from ..wire import NodeMeta, Status

__all__ = ["Kind", "Accept", "TRANSITIONS", "transition", "MemberRecord", "MemberTable"]


class Kind(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEAVE = "leave"


class Accept(enum.Enum):
    NEWER = "incarnation > current"
    SAME_OR_NEWER = "incarnation >= current"
    ANY = "any incarnation"


A, S, D, L = Status.ALIVE, Status.SUSPECT, Status.DEAD, Status.LEFT

# (current status or None for unknown, update kind) -> (when accepted, new status)
TRANSITIONS: dict[tuple[Status | None, Kind], tuple[Accept, Status]] = {
    (None, Kind.ALIVE): (Accept.ANY, A),
    (A, Kind.ALIVE): (Accept.NEWER, A),
    (A, Kind.SUSPECT): (Accept.SAME_OR_NEWER, S),
    (A, Kind.DEAD): (Accept.SAME_OR_NEWER, D),
    (A, Kind.LEAVE): (Accept.SAME_OR_NEWER, L),
    (S, Kind.ALIVE): (Accept.NEWER, A),
    (S, Kind.SUSPECT): (Accept.NEWER, S),  # same incarnation: a confirmation, see the core
    (S, Kind.DEAD): (Accept.SAME_OR_NEWER, D),
    (S, Kind.LEAVE): (Accept.SAME_OR_NEWER, L),
    (D, Kind.ALIVE): (Accept.NEWER, A),
    (L, Kind.ALIVE): (Accept.NEWER, A),
}


def transition(status: Status | None, incarnation: int, kind: Kind, update_incarnation: int) -> Status | None:
    """The new status, or None when the update changes nothing."""
    rule = TRANSITIONS.get((status, kind))
    if rule is None:
        return None
    accept, new = rule
    if accept is Accept.NEWER and update_incarnation <= incarnation:
        return None
    if accept is Accept.SAME_OR_NEWER and update_incarnation < incarnation:
        return None
    return new


def _digest(node: NodeId, incarnation: int, status: Status) -> int:
    h = hashlib.blake2b(node + incarnation.to_bytes(8, "big") + bytes((status,)), digest_size=16)
    return int.from_bytes(h.digest(), "big")


class MemberRecord:
    """Mutable record of one member inside the table (snapshots are `Member` values)."""

    __slots__ = ("node", "addr", "meta", "incarnation", "status", "since", "signature", "alive_data")

    def __init__(self, *, node: NodeId, addr: Addr, meta: NodeMeta, incarnation: int,
                 status: Status, since: float, signature: bytes = b"") -> None:
        self.node = node
        self.addr = addr
        self.meta = meta
        self.incarnation = incarnation
        self.status = status
        self.since = since
        self.signature = signature
        self.alive_data: bytes | None = None  # cached encoded Alive record (own record only)


class MemberTable:
    """Members by node id, with counts and an order-free checksum kept up to date."""

    def __init__(self) -> None:
        self.records: dict[NodeId, MemberRecord] = {}
        self._xor = 0
        self.version = 0  # bumps on every change (caches key on it)

    def __len__(self) -> int:
        return len(self.records)

    def get(self, node: NodeId) -> MemberRecord | None:
        return self.records.get(node)

    def add(self, rec: MemberRecord) -> None:
        self.records[rec.node] = rec
        self._xor ^= _digest(rec.node, rec.incarnation, rec.status)
        self.version += 1

    def remove(self, node: NodeId) -> None:
        rec = self.records.pop(node)
        self._xor ^= _digest(rec.node, rec.incarnation, rec.status)
        self.version += 1

    def set_state(self, rec: MemberRecord, incarnation: int, status: Status, now: float) -> None:
        self._xor ^= _digest(rec.node, rec.incarnation, rec.status)
        if status != rec.status:
            rec.since = now
        rec.incarnation = incarnation
        rec.status = status
        self._xor ^= _digest(rec.node, rec.incarnation, rec.status)
        self.version += 1

    def checksum(self) -> str:
        return self._xor.to_bytes(16, "big").hex()
