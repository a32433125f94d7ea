"""When may a tombstone be purged? Only once every holder acknowledged it.

A delete leaves a tombstone so that an older value still held somewhere cannot come back
through anti-entropy or a late hint. Purging it early resurrects that value; a fixed grace
period only makes the race unlikely. The rule here is exact instead: a tombstone written at
stamp S may be purged once EVERY node that could hold an older version of the key has
acknowledged holding S or something newer:

- every current replica of the key (from placement, at the time of the decision), and
- every other node known to hold a copy: stand-ins holding a hint for the key, former
  owners whose range hand-off is not yet confirmed (`also`).

An acknowledgement for an older stamp does not count (it acknowledged a previous delete).
There is no time argument at all: a replica that is down keeps the tombstone alive until it
acknowledges, or until placement removes it from the replica set (it left or was declared
dead, and range streaming re-homed its data).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ..errors import LocalProtocolError
from ._hlc import Stamp
from ._record import Record

__all__ = ["TombstoneAck", "acked_by", "missing_acks", "may_purge"]


@dataclass(frozen=True, slots=True)
class TombstoneAck:
    """Node `node` holds key `key` at version `stamp` (a tombstone or something newer)."""

    key: bytes
    stamp: Stamp
    node: bytes


def acked_by(tombstone: Record, acks: Iterable[TombstoneAck]) -> frozenset[bytes]:
    """Nodes whose acknowledgement covers this tombstone (same key, stamp >= its stamp)."""
    return frozenset(a.node for a in acks if a.key == tombstone.key and a.stamp >= tombstone.stamp)


def missing_acks(
    tombstone: Record,
    acks: Iterable[TombstoneAck],
    replicas: Collection[bytes],
    *,
    also: Collection[bytes] = (),
) -> frozenset[bytes]:
    """Holders that have not yet acknowledged the tombstone (empty: it may be purged)."""
    if not tombstone.is_tombstone:
        raise LocalProtocolError("only a tombstone can be purged; this record holds a value")
    if not replicas:
        raise LocalProtocolError(
            "the replica set is empty: compute it from placement before deciding a purge"
        )
    return (frozenset(replicas) | frozenset(also)) - acked_by(tombstone, acks)


def may_purge(
    tombstone: Record,
    acks: Iterable[TombstoneAck],
    replicas: Collection[bytes],
    *,
    also: Collection[bytes] = (),
) -> bool:
    """True only when every replica and every other known holder acknowledged it."""
    return not missing_acks(tombstone, acks, replicas, also=also)
