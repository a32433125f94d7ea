"""The replica side of a node (I/O-free): store, refuse, hold hints, collect tombstones.

A write is admitted only if this node may hold it (namespace known, region inside the
territory, this node a home replica — or, for a hint, a stand-in on a site holding no other
copy — stamp within the skew bound and younger than `hint_ttl_s`); then a `Persist`
effect goes out and the ack is sent only from `on_persisted`, i.e. once the store says the
write is durable. Refusals are answered with a status, never raised.

Hinted handoff: a stand-in persists the hint, acks, and remembers the target; when the
membership layer says the target is alive (and every `tick` after), it loads the held
hints, sends them, and drops each one the target acknowledged. Hints older than
`hint_ttl_s` are dropped unsent (anti-entropy from the other replicas covers them).

Tombstones: every stored tombstone is tracked in memory with the set of replicas known to
hold it; replicas exchange `TombstoneAckMsg`s (re-sent every `tombstone_resend_s` until
purged). A tombstone is purged when `may_purge` holds for the current home replicas and it
is older than `purge_age_s` (see `_config`). Acks live in memory only: after a restart the
glue re-feeds the stored tombstones (`restore`) and the acks are collected again.

Limits: `pending_max` storage operations in flight (beyond that: BUSY refusals),
`tombstones_tracked_max` tracked tombstones (beyond that they stay stored, unpurged, safe).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ClockSkewError, PlacementError
from ._config import KvConfig
from ._effects import (
    DropHints,
    HeldHint,
    KvEffect,
    Load,
    LoadHints,
    Persist,
    PersistHint,
    Purge,
    Send,
)
from ._hlc import HLC, Stamp, wall_us
from ._messages import (
    HintAck,
    HintDelivery,
    KvMessage,
    Read,
    ReadReply,
    Repair,
    Status,
    TombstoneAckMsg,
    Write,
    WriteAck,
    encode_kv,
)
from ._namespace import Namespace
from ._record import Record
from ._tombstones import TombstoneAck, may_purge
from ._view import ClusterView

__all__ = ["Replica", "ReplicaStatistics"]


@dataclass
class _Tomb:
    stamp: Stamp
    acks: set[bytes]
    sent_at: float = -1e18


@dataclass
class _HintTarget:
    loading: bool = False
    inflight: dict[int, float] = field(default_factory=dict)


@dataclass
class ReplicaStatistics:
    writes_stored: int = 0
    hints_stored: int = 0
    hints_delivered: int = 0
    hints_expired: int = 0
    hints_refused: int = 0
    repairs_applied: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    tombstones_purged: int = 0
    tombstones_untracked: int = 0
    storage_failures: int = 0


class Replica:
    def __init__(self, node_id: bytes, config: KvConfig, hlc: HLC, view: ClusterView) -> None:
        self._me = node_id
        self._config = config
        self._hlc = hlc
        self._view = view
        self._next_token = 1
        self._pending: dict[int, tuple[Any, ...]] = {}
        self._tombs: dict[tuple[str, bytes], _Tomb] = {}
        self._hints: dict[bytes, _HintTarget] = {}
        self._last_tomb_scan = -1e18
        self.stats = ReplicaStatistics()
        #: Set by `KvCore`: hands an answer meant for this node straight to its own
        #: coordinator side (no encoding). None: send it like any other.
        self.local: Callable[[float, KvMessage], list[KvEffect]] | None = None

    def _answer(self, now: float, to: bytes, msg: WriteAck | ReadReply) -> list[KvEffect]:
        """An answer to the coordinator `to`: local when that is this node."""
        if to == self._me and self.local is not None:
            return self.local(now, msg)
        return [Send(to, encode_kv(msg))]

    # --- admission ----------------------------------------------------------------------

    def _refuse(self, status: Status) -> Status:
        name = status.name.lower()
        self.stats.refused[name] = self.stats.refused.get(name, 0) + 1
        return status

    def _admit(self, now: float, ns_name: str, key: bytes, stamp: Stamp, *, hint_for: bytes | None = None,
               check_age: bool = True) -> tuple[Status, str, Namespace | None]:
        view = self._view
        ns = view.known_namespace(ns_name)
        if ns is None:
            return self._refuse(Status.UNKNOWN_NAMESPACE), f"namespace {ns_name!r:.70} not defined here", None
        if not ns.allows(view.me.region):
            return self._refuse(Status.TERRITORY), f"region {view.me.region} outside {ns.territory()}", ns
        try:
            home = view.replicas(ns, key)
        except PlacementError as exc:
            return self._refuse(Status.NOT_REPLICA), str(exc)[:150], ns
        if hint_for is None:
            if self._me not in home:
                return self._refuse(Status.NOT_REPLICA), "not a home replica of this key here", ns
        else:
            ring = view.ring
            other_sites = {m.site for m in ring.members() if m.node in home and m.node != hint_for}
            if hint_for not in home or self._me in home or view.me.site in other_sites:
                return self._refuse(Status.NOT_REPLICA), "not a valid stand-in for that replica", ns
        try:
            self._hlc.observe(now, stamp)
        except ClockSkewError as exc:
            return self._refuse(Status.CLOCK_SKEW), str(exc)[:200], ns
        if check_age and self._config.past_hint_ttl(now, stamp):
            return self._refuse(Status.STALE), f"version older than {self._config.hint_ttl_s:g} s", ns
        if len(self._pending) >= self._config.pending_max:
            return self._refuse(Status.BUSY), "too many storage operations pending", ns
        return Status.OK, "", ns

    def _token(self, cont: tuple[Any, ...]) -> int:
        t = self._next_token
        self._next_token += 1
        self._pending[t] = cont
        return t

    # --- messages -----------------------------------------------------------------------

    def on_write(self, now: float, msg: Write) -> list[KvEffect]:
        status, detail, _ = self._admit(now, msg.namespace, msg.key, msg.stamp, hint_for=msg.hint_for)
        if status is not Status.OK:
            return self._answer(now, msg.coordinator, WriteAck(request_id=msg.request_id, sender=self._me,
                                                               status=status, detail=detail))
        rec = msg.record()
        if msg.hint_for is None:
            tok = self._token(("write", msg.coordinator, msg.request_id, msg.namespace, rec))
            return [Persist(tok, msg.namespace, (rec,))]
        tok = self._token(("hint", msg.coordinator, msg.request_id, msg.hint_for))
        return [PersistHint(tok, msg.hint_for, msg.namespace, rec)]

    def on_hint_delivery(self, now: float, msg: HintDelivery) -> list[KvEffect]:
        status, detail, _ = self._admit(now, msg.namespace, msg.key, msg.stamp)
        if status is not Status.OK:
            return [Send(msg.sender, encode_kv(HintAck(hint_id=msg.hint_id, sender=self._me, status=status,
                                                       detail=detail)))]
        tok = self._token(("delivered", msg.sender, msg.hint_id, msg.namespace, msg.record()))
        return [Persist(tok, msg.namespace, (msg.record(),))]

    def on_repair(self, now: float, msg: Repair) -> list[KvEffect]:
        # No age check: anti-entropy legitimately moves old versions between replicas.
        status, _, _ = self._admit(now, msg.namespace, msg.key, msg.stamp, check_age=False)
        if status is not Status.OK:
            return []
        tok = self._token(("repair", msg.namespace, msg.record()))
        return [Persist(tok, msg.namespace, (msg.record(),))]

    def on_read(self, now: float, msg: Read) -> list[KvEffect]:
        view = self._view
        ns = view.known_namespace(msg.namespace)
        status = Status.OK
        if ns is None:
            status = self._refuse(Status.UNKNOWN_NAMESPACE)
        else:
            try:
                if self._me not in view.replicas(ns, msg.key):
                    status = self._refuse(Status.NOT_REPLICA)
            except PlacementError:
                status = self._refuse(Status.NOT_REPLICA)
        if status is Status.OK and len(self._pending) >= self._config.pending_max:
            status = self._refuse(Status.BUSY)
        if status is not Status.OK:
            return self._answer(now, msg.coordinator, ReadReply(request_id=msg.request_id, sender=self._me,
                                                                status=status))
        tok = self._token(("read", msg.coordinator, msg.request_id))
        return [Load(tok, msg.namespace, msg.key)]

    def on_hint_ack(self, now: float, msg: HintAck) -> list[KvEffect]:
        target = self._hints.get(msg.sender)
        if target is None or target.inflight.pop(msg.hint_id, None) is None:
            return []
        if msg.status is Status.OK:
            self.stats.hints_delivered += 1
            return [DropHints((msg.hint_id,))]
        if msg.status in (Status.CLOCK_SKEW, Status.STORAGE, Status.BUSY):
            return []  # transient: retried after hint_retry_s
        self.stats.hints_refused += 1
        return [DropHints((msg.hint_id,))]

    def on_tombstone_ack(self, now: float, msg: TombstoneAckMsg) -> list[KvEffect]:
        ns = self._view.known_namespace(msg.namespace)
        if ns is None:
            return []
        tomb = self._tombs.get((msg.namespace, msg.key))
        if tomb is not None:
            if msg.stamp >= tomb.stamp:
                tomb.acks.add(msg.sender)
            return []
        if msg.echo or len(self._pending) >= self._config.pending_max:
            return []
        # Not tracked: purged already, overwritten, or never received. Answer only if what
        # we hold covers the stamp (an older value here must block the purge).
        tok = self._token(("tombcheck", msg.sender, msg.namespace, msg.key, msg.stamp))
        return [Load(tok, msg.namespace, msg.key)]

    # --- storage completions ------------------------------------------------------------

    def on_persisted(self, now: float, token: int) -> list[KvEffect]:
        cont = self._pending.pop(token, None)
        if cont is None:
            return []
        kind = cont[0]
        if kind == "write":
            _, coord, rid, ns_name, rec = cont
            self.stats.writes_stored += 1
            out: list[KvEffect] = self._stored(now, ns_name, rec)
            return self._answer(now, coord, WriteAck(request_id=rid, sender=self._me)) + out
        if kind == "hint":
            _, coord, rid, target = cont
            self.stats.hints_stored += 1
            self._hints.setdefault(target, _HintTarget())
            return self._answer(now, coord, WriteAck(request_id=rid, sender=self._me))
        if kind == "delivered":
            _, sender, hint_id, ns_name, rec = cont
            out = [Send(sender, encode_kv(HintAck(hint_id=hint_id, sender=self._me)))]
            return out + self._stored(now, ns_name, rec)
        if kind == "repair":
            _, ns_name, rec = cont
            self.stats.repairs_applied += 1
            return self._stored(now, ns_name, rec)
        return []

    def on_persist_failed(self, now: float, token: int, reason: str) -> list[KvEffect]:
        cont = self._pending.pop(token, None)
        if cont is None:
            return []
        self.stats.storage_failures += 1
        detail = f"store failed: {reason}"[:200]
        if cont[0] in ("write", "hint"):
            return self._answer(now, cont[1], WriteAck(request_id=cont[2], sender=self._me,
                                                       status=Status.STORAGE, detail=detail))
        if cont[0] == "delivered":
            return [Send(cont[1], encode_kv(HintAck(hint_id=cont[2], sender=self._me, status=Status.STORAGE,
                                                    detail=detail)))]
        return []

    def on_loaded(self, now: float, token: int, record: Record | None) -> list[KvEffect]:
        cont = self._pending.pop(token, None)
        if cont is None:
            return []
        if cont[0] == "read":
            _, coord, rid = cont
            reply = ReadReply(request_id=rid, sender=self._me, stamp=record.stamp if record else None,
                              value=record.value if record else None)
            return self._answer(now, coord, reply)
        if cont[0] == "tombcheck":
            _, sender, ns_name, key, stamp = cont
            if record is None or record.stamp >= stamp:
                return [Send(sender, encode_kv(TombstoneAckMsg(sender=self._me, namespace=ns_name, key=key,
                                                               stamp=stamp, echo=True)))]
        return []

    def _stored(self, now: float, ns_name: str, rec: Record) -> list[KvEffect]:
        """After a version is durable here: start or stop tracking its key's tombstone."""
        k = (ns_name, rec.key)
        tomb = self._tombs.get(k)
        if tomb is not None and rec.stamp <= tomb.stamp:
            return []
        if not rec.is_tombstone:
            if tomb is not None:
                del self._tombs[k]
            return []
        if tomb is None and len(self._tombs) >= self._config.tombstones_tracked_max:
            self.stats.tombstones_untracked += 1
            return []
        tomb = self._tombs[k] = _Tomb(rec.stamp, {self._me}, sent_at=now)
        return self._send_tomb_acks(ns_name, rec.key, tomb)

    def _send_tomb_acks(self, ns_name: str, key: bytes, tomb: _Tomb) -> list[KvEffect]:
        ns = self._view.known_namespace(ns_name)
        if ns is None:
            return []
        try:
            home = self._view.replicas(ns, key)
        except PlacementError:
            return []
        data = encode_kv(TombstoneAckMsg(sender=self._me, namespace=ns_name, key=key, stamp=tomb.stamp))
        return [Send(n, data) for n in home if n != self._me and self._view.is_alive(n)]

    # --- hints and housekeeping ---------------------------------------------------------

    def member_alive(self, now: float, node: bytes) -> list[KvEffect]:
        target = self._hints.get(node)
        if target is None or target.loading:
            return []
        target.loading = True
        return [LoadHints(node, self._config.hint_batch_max)]

    def on_hints(self, now: float, target_id: bytes, hints: Sequence[HeldHint]) -> list[KvEffect]:
        target = self._hints.get(target_id)
        if target is None:
            return []
        target.loading = False
        if not hints:
            if not target.inflight:
                del self._hints[target_id]
            return []
        out: list[KvEffect] = []
        expired: list[int] = []
        for h in hints:
            if self._config.past_hint_ttl(now, h.record.stamp):
                expired.append(h.id)
                target.inflight.pop(h.id, None)
                continue
            sent = target.inflight.get(h.id)
            if sent is not None and now - sent < self._config.hint_retry_s:
                continue
            if not self._view.is_alive(target_id):
                continue
            target.inflight[h.id] = now
            out.append(Send(target_id, encode_kv(HintDelivery(
                hint_id=h.id, sender=self._me, namespace=h.namespace, key=h.record.key,
                stamp=h.record.stamp, value=h.record.value))))
        if expired:
            self.stats.hints_expired += len(expired)
            out.append(DropHints(tuple(expired)))
        return out

    def tick(self, now: float) -> list[KvEffect]:
        out: list[KvEffect] = []
        for node in sorted(self._hints):
            t = self._hints[node]
            if t.loading or not self._view.is_alive(node):
                continue
            if t.inflight and min(t.inflight.values()) > now - self._config.hint_retry_s:
                continue
            t.loading = True
            out.append(LoadHints(node, self._config.hint_batch_max))
        if now - self._last_tomb_scan >= self._config.tombstone_resend_s:
            self._last_tomb_scan = now
            out += self._scan_tombstones(now)
        return out

    def _scan_tombstones(self, now: float) -> list[KvEffect]:
        out: list[KvEffect] = []
        age_us = self._config.purge_age_s * 1e6
        for (ns_name, key), tomb in list(self._tombs.items()):
            ns = self._view.known_namespace(ns_name)
            if ns is None:
                continue
            try:
                home = self._view.replicas(ns, key)
            except PlacementError:
                continue
            acks = [TombstoneAck(key, tomb.stamp, n) for n in tomb.acks]
            rec = Record(key, None, tomb.stamp)
            if wall_us(now) - tomb.stamp.physical_us > age_us and may_purge(rec, acks, home):
                del self._tombs[(ns_name, key)]
                self.stats.tombstones_purged += 1
                out.append(Purge(ns_name, key, tomb.stamp))
            elif now - tomb.sent_at >= self._config.tombstone_resend_s:
                tomb.sent_at = now
                out += self._send_tomb_acks(ns_name, key, tomb)
        return out

    def restore(self, now: float, *, tombstones: Iterable[tuple[str, Record]] = (),
                hint_targets: Iterable[bytes] = ()) -> None:
        """After a restart: re-track stored tombstones and targets with stored hints."""
        for ns_name, rec in tombstones:
            if rec.is_tombstone and len(self._tombs) < self._config.tombstones_tracked_max:
                self._tombs[(ns_name, rec.key)] = _Tomb(rec.stamp, {self._me})
        for t in hint_targets:
            self._hints.setdefault(t, _HintTarget())

    def forget(self, ns_name: str, key: bytes) -> None:
        """The copy of `key` here was handed off and dropped: no tombstone to track."""
        self._tombs.pop((ns_name, key), None)

    def tracked_tombstones(self) -> int:
        return len(self._tombs)

    def hint_targets(self) -> list[bytes]:
        return sorted(self._hints)
