"""`KvCore`: one node's replication core — coordinator + replica + view, I/O-free.

    core = KvCore(me=RingMember(node, site, region), members=directory, namespaces=specs,
                  config=KvConfig(), rng=random.Random(seed), last_stamp=store_max_stamp)
    effects = core.start(now)
    rid, effects = core.put(now, "photos", b"k", b"v", "quorum")
    effects = core.on_message(now, src_node, data)    # bytes from an authenticated link
    effects = core.on_timer(now, timer)
    effects = core.member_alive(now, node) / core.member_down(now, node)
    effects = core.on_persisted(now, token) / on_loaded(...) / on_hints(...)

The driver performs the effects (`_effects`). Inbound bytes are untrusted: a message that
does not decode, or whose sender field differs from the authenticated source, is counted
and dropped; nothing from the network raises out of `on_message`. A message from this
node to itself (its coordinator and its replica side) is never encoded: `_route` hands it
over inside the same call, after the request it belongs to is registered.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import DecodeError, LocalProtocolError, RecordError
from ._config import Consistency, KvConfig
from ._coordinator import Coordinator
from ._effects import HeldHint, KvEffect, KvTimer, SetTimer
from ._hlc import HLC, Stamp
from ._messages import (
    HintAck,
    HintDelivery,
    KvMessage,
    Read,
    ReadReply,
    Repair,
    TombstoneAckMsg,
    Write,
    WriteAck,
    decode_kv,
)
from ._namespace import Namespace
from ._placement import RingMember
from ._record import Record
from ._replica import Replica
from ._view import ClusterView

__all__ = ["KvCore", "KvStatistics"]


@dataclass(frozen=True, slots=True)
class KvStatistics:
    writes_ok: int
    writes_failed: int
    reads_ok: int
    reads_failed: int
    reads_extra: int
    repairs_sent: int
    repairs_applied: int
    handoffs_ok: int
    handoffs_failed: int
    hints_stored: int
    hints_delivered: int
    hints_expired: int
    tombstones_purged: int
    tombstones_tracked: int
    dropped_messages: int
    refusals: int


class KvCore:
    def __init__(self, *, me: RingMember, members: Iterable[RingMember] = (),
                 namespaces: Iterable[Namespace] = (), config: KvConfig | None = None,
                 rng: random.Random | None = None, last_stamp: Stamp | None = None,
                 vnodes_per_node: int = 64) -> None:
        self.config = config or KvConfig()
        self.me = me
        # rng is reserved for jittered housekeeping; the core draws nothing from it yet.
        self.rng = rng or random.Random(0)
        self.hlc = HLC(me.node, self.config.max_skew_s, last=last_stamp)
        self.view = ClusterView(me, members, namespaces=namespaces, vnodes_per_node=vnodes_per_node)
        self.coordinator = Coordinator(me.node, self.config, self.hlc, self.view)
        self.replica = Replica(me.node, self.config, self.hlc, self.view)
        # What this node sends itself (a coordinator that is also a home replica) is
        # handed over directly: no encoding, no decoding, no trip through the driver.
        self.coordinator.local = self._route
        self.replica.local = self._route
        self.dropped_messages = 0
        self._tick_token = 0

    # --- lifecycle and membership -------------------------------------------------------

    def start(self, now: float) -> list[KvEffect]:
        self._tick_token += 1
        return [SetTimer(now + self.config.tick_s, KvTimer("tick", self._tick_token))]

    def restore(self, now: float, *, tombstones: Iterable[tuple[str, Record]] = (),
                hint_targets: Iterable[bytes] = ()) -> None:
        self.replica.restore(now, tombstones=tombstones, hint_targets=hint_targets)

    def member_alive(self, now: float, node: bytes) -> list[KvEffect]:
        if self.view.set_alive(node, True):
            return self.replica.member_alive(now, node)
        return []

    def member_down(self, now: float, node: bytes) -> list[KvEffect]:
        self.view.set_alive(node, False)
        return []

    def add_member(self, member: RingMember) -> None:
        self.view.add(member)

    def remove_member(self, node: bytes) -> None:
        """`node` left the cluster for good: off the ring, so its ranges get new homes."""
        self.view.remove(node)

    def define(self, ns: Namespace) -> None:
        self.view.define(ns)

    # --- client API ---------------------------------------------------------------------

    def put(self, now: float, namespace: object, key: object, value: object,
            consistency: object = Consistency.QUORUM) -> tuple[int, list[KvEffect]]:
        if type(value) is not bytes:
            raise RecordError(f"put() takes a bytes value (use delete() to remove), got {type(value).__name__}")
        return self.coordinator.write(now, namespace, key, value, consistency)

    def delete(self, now: float, namespace: object, key: object,
               consistency: object = Consistency.QUORUM) -> tuple[int, list[KvEffect]]:
        return self.coordinator.write(now, namespace, key, None, consistency)

    def get(self, now: float, namespace: object, key: object,
            consistency: object = Consistency.QUORUM) -> tuple[int, list[KvEffect]]:
        return self.coordinator.read(now, namespace, key, consistency)

    # --- range hand-off ---------------------------------------------------------------------

    def is_home(self, namespace: str, key: bytes) -> bool:
        """Whether this node is a home replica of `key` in the current ring."""
        return self.me.node in self.view.replicas(self.view.namespace(namespace), key)

    def hand_off(self, now: float, namespace: str, record: Record) -> tuple[int, list[KvEffect]]:
        """Copy a record this node is no longer a home replica of to its home replicas
        (see `Coordinator.hand_off`); on success the driver drops its copy (`forget`)."""
        return self.coordinator.hand_off(now, namespace, record)

    def move_off(self, now: float, namespace: str, record: Record) -> tuple[int, list[KvEffect]]:
        """What a driver calls for each copy it is no longer a home replica of: a hand-off,
        or for a version older than the hint TTL a confirmation read (`Coordinator.confirm`).
        Completed without error: drop the copy (if unchanged) and `forget` it;
        `HandoffPending`: keep it; another error: retry later."""
        if self.config.past_hint_ttl(now, record.stamp):
            if self.is_home(namespace, record.key):
                raise LocalProtocolError("this node is a home replica of that key: nothing to hand off")
            return self.coordinator.confirm(now, namespace, record)
        return self.coordinator.hand_off(now, namespace, record)

    def forget(self, namespace: str, key: bytes) -> None:
        """The driver dropped its copy of `key` after a hand-off: stop tracking it."""
        self.replica.forget(namespace, key)

    # --- inputs -------------------------------------------------------------------------

    def on_message(self, now: float, src: bytes, data: bytes) -> list[KvEffect]:
        try:
            msg = decode_kv(data)
        except DecodeError:
            self.dropped_messages += 1
            return []
        t = type(msg)
        sender = msg.coordinator if t is Write or t is Read else msg.sender  # type: ignore[union-attr]
        if sender != src:
            self.dropped_messages += 1  # a peer speaking for another node
            return []
        return self._route(now, msg)

    def _route(self, now: float, msg: KvMessage) -> list[KvEffect]:
        """Hand a (decoded, authenticated or local) message to the side it is meant for."""
        t = type(msg)
        if t is Write:
            return self.replica.on_write(now, msg)  # type: ignore[arg-type]
        if t is WriteAck:
            return self.coordinator.on_write_ack(now, msg)  # type: ignore[arg-type]
        if t is Read:
            return self.replica.on_read(now, msg)  # type: ignore[arg-type]
        if t is ReadReply:
            return self.coordinator.on_read_reply(now, msg)  # type: ignore[arg-type]
        if t is HintDelivery:
            return self.replica.on_hint_delivery(now, msg)  # type: ignore[arg-type]
        if t is HintAck:
            return self.replica.on_hint_ack(now, msg)  # type: ignore[arg-type]
        if t is Repair:
            return self.replica.on_repair(now, msg)  # type: ignore[arg-type]
        if t is TombstoneAckMsg:
            return self.replica.on_tombstone_ack(now, msg)  # type: ignore[arg-type]
        raise AssertionError(f"unrouted kv message {t.__name__}")  # decode_kv is exhaustive

    def on_timer(self, now: float, timer: KvTimer) -> list[KvEffect]:
        if timer.kind == "request":
            return self.coordinator.on_request_timer(now, timer.token)
        if timer.kind == "read_extra":
            return self.coordinator.on_read_extra_timer(now, timer.token)
        if timer.kind == "tick":
            if timer.token != self._tick_token:
                return []
            out = self.replica.tick(now)
            out.append(SetTimer(now + self.config.tick_s, KvTimer("tick", self._tick_token)))
            return out
        raise LocalProtocolError(f"unknown kv timer kind {timer.kind!r}")

    def on_persisted(self, now: float, token: int) -> list[KvEffect]:
        return self.replica.on_persisted(now, token)

    def on_persist_failed(self, now: float, token: int, reason: str) -> list[KvEffect]:
        return self.replica.on_persist_failed(now, token, reason)

    def on_loaded(self, now: float, token: int, record: Record | None) -> list[KvEffect]:
        return self.replica.on_loaded(now, token, record)

    def on_hints(self, now: float, target: bytes, hints: Sequence[HeldHint]) -> list[KvEffect]:
        return self.replica.on_hints(now, target, hints)

    def statistics(self) -> KvStatistics:
        c, r = self.coordinator.stats, self.replica.stats
        return KvStatistics(
            writes_ok=c.writes_ok, writes_failed=c.writes_failed, reads_ok=c.reads_ok,
            reads_failed=c.reads_failed, reads_extra=c.reads_extra, repairs_sent=c.repairs_sent,
            repairs_applied=r.repairs_applied,
            handoffs_ok=c.handoffs_ok, handoffs_failed=c.handoffs_failed,
            hints_stored=r.hints_stored, hints_delivered=r.hints_delivered, hints_expired=r.hints_expired,
            tombstones_purged=r.tombstones_purged, tombstones_tracked=self.replica.tracked_tombstones(),
            dropped_messages=self.dropped_messages, refusals=sum(r.refused.values()))
