"""A seeded key-value world: `KvCore`s on top of the SWIM `World`, with faults and checkers.

Membership is real: every node runs a `Swim` core in `World`, and its `MemberEvent`s drive
its kv view (joined/alive/updated -> alive; suspect/dead/left -> down). Sites and regions
come from a directory (what certificates would say): node i sits on site ``s{i // per_site}``,
in region ``r{site % regions}``; the ring holds the whole directory, liveness comes from SWIM.

The kv network runs beside the SWIM one, on the same heap and the same `random.Random`:
kv messages travel over streams (reliable, ordered per send, latency base + jitter, each
loss adding a retransmission delay), are dropped when either side is crashed or the two
sides are partitioned, and go through the real codec (`encode_kv` / `decode_kv`).

Storage model: each node has a `MemoryKvStore` that survives crashes. A `Persist` becomes
durable after a group-commit delay; a crash before that loses it (and it was never acked).
Loads, hint loads, hint drops and purges act at once.

Anti-entropy (a stand-in for `meshcore.antientropy` sessions, which need the runtime store
seam): every `ae_interval_s` each node sends, to each peer sharing keys with it, the versions
it holds of those keys (a sim-level digest message over the kv network); the peer pushes back
newer versions as `Repair` messages and asks for the ones it lacks, which the first node
pushes the same way. Every push goes through the receiving core's admission checks.

Ring changes: `decommission(i)` crashes a node for good; `reclaim_s` later every core (and
the checkers' placement oracle) takes it off the ring, so its keys get new homes;
`recommission(i)` brings it back with an empty disk and puts it on every ring again, so
keys move back to it from the nodes that held them meanwhile. The new home replicas get
copies by anti-entropy, and every node runs hand-off passes as the kv service does (`KvCore.move_off`; the copy is dropped only once that completes without
error), again after each restart and until nothing is left. A decommissioned node's store
is gone: the checkers ignore it.

Checkers at the end (`check`): acked_lost, resurrected, misplaced; `converged()` compares the
visible version (tombstones read as absent) of every key on all its home replicas.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .._types import NodeId
from ..errors import LocalProtocolError, MeshError
from ..kv import Namespace, Record, RingMember, Stamp
from ..kv._config import KvConfig
from ..kv._core import KvCore, KvStatistics
from ..kv._effects import (
    Completed,
    DropHints,
    HeldHint,
    KvEffect,
    KvTimer,
    Load,
    LoadHints,
    Persist,
    PersistHint,
    Purge,
    Send,
    SetTimer,
)
from ..kv._messages import Repair, encode_kv
from ..kv._placement import Ring
from ..kv._record import newer
from ..swim import EventKind, MemberEvent
from ._world import NetConfig, World

__all__ = ["MemoryKvStore", "KvWorld", "KvReport", "AckedWrite", "KvScenario", "run_kv_scenario"]

_UP = (EventKind.JOINED, EventKind.ALIVE, EventKind.UPDATED)


class MemoryKvStore:
    """The durable part of a simulated node: records (LWW), hints, and a purge log."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, bytes], Record] = {}
        self.hints: dict[int, HeldHint] = {}
        self._next_hint = 1

    def put(self, namespace: str, rec: Record) -> bool:
        k = (namespace, rec.key)
        if newer(rec, self.records.get(k)):
            self.records[k] = rec
            return True
        return False

    def get(self, namespace: str, key: bytes) -> Record | None:
        return self.records.get((namespace, key))

    def add_hint(self, target: bytes, namespace: str, rec: Record) -> int:
        hid = self._next_hint
        self._next_hint += 1
        self.hints[hid] = HeldHint(hid, target, namespace, rec)
        return hid

    def hints_for(self, target: bytes, limit: int) -> list[HeldHint]:
        out = [h for h in self.hints.values() if h.target == target]  # dict order = id order
        return out[:limit]

    def drop_hints(self, ids: Iterable[int]) -> None:
        for i in ids:
            self.hints.pop(i, None)

    def purge(self, namespace: str, key: bytes, stamp: Stamp) -> bool:
        rec = self.records.get((namespace, key))
        if rec is not None and rec.is_tombstone and rec.stamp == stamp:
            del self.records[(namespace, key)]
            return True
        return False

    def max_stamp(self) -> Stamp | None:
        return max((r.stamp for r in self.records.values()), default=None)


@dataclass(frozen=True, slots=True)
class AckedWrite:
    namespace: str
    key: bytes
    stamp: Stamp
    value: bytes | None
    level: str


@dataclass
class KvReport:
    acked_lost: int = 0
    resurrected: int = 0
    misplaced: int = 0
    puts_acked: int = 0
    deletes_acked: int = 0
    writes_failed: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    hints_stored: int = 0
    hints_delivered: int = 0
    hints_expired: int = 0
    repairs_read: int = 0
    repairs_applied: int = 0
    handoffs_dropped: int = 0
    tombstones_purged: int = 0
    kv_messages: int = 0
    details: list[str] = field(default_factory=list)


def _raise_to(table: dict[tuple[str, bytes], Stamp], k: tuple[str, bytes], stamp: Stamp) -> None:
    cur = table.get(k)
    if cur is None or stamp > cur:
        table[k] = stamp


class _KvNode:
    __slots__ = ("index", "member", "core", "store", "epoch", "running", "offset_s")

    def __init__(self, index: int, member: RingMember, offset_s: float) -> None:
        self.index = index
        self.member = member
        self.core: KvCore | None = None
        self.store = MemoryKvStore()
        self.epoch = 0
        self.running = False
        self.offset_s = offset_s


class KvWorld:
    """`KvWorld(seed, nodes=12)`: kv cores on a SWIM world. See the module docstring."""

    def __init__(
        self,
        seed: int,
        nodes: int = 12,
        *,
        namespaces: Sequence[Namespace] | None = None,
        regions: int = 3,
        nodes_per_site: int = 2,
        config: KvConfig | None = None,
        net: NetConfig | None = None,
        clock_offset_s_max: float = 0.05,
        commit_delay_s: tuple[float, float] = (0.001, 0.004),
        ae_interval_s: float = 5.0,
        profile: str = "lan",
        reclaim_s: float = 30.0,
    ) -> None:
        self.world = World(seed, nodes, profile=profile, net=net or NetConfig())
        self.rng: random.Random = self.world.rng
        self.config = config or KvConfig(hint_ttl_s=120.0, tombstone_resend_s=5.0)
        self.namespaces = list(namespaces) if namespaces is not None else [
            Namespace(name="any", replicas=2),
            Namespace(name="r0", replicas=2, regions=("r0",)),
            Namespace(name="r12", replicas=2, regions=("r1", "r2")),
        ]
        self.commit_delay_s = commit_delay_s
        self.ae_interval_s = ae_interval_s
        self.reclaim_s = reclaim_s
        self.removed: set[int] = set()  # decommissioned and off the ring
        self.ring_changes = 0
        # (node, request id) -> (namespace, record, epoch) of hand-offs in flight
        self._handoffs: dict[tuple[int, int], tuple[str, Record, int]] = {}
        self._handoff_retry: set[int] = set()
        self.handoffs_dropped = 0
        self.nodes: list[_KvNode] = []
        for i, wn in enumerate(self.world.nodes):
            site = i // nodes_per_site
            member = RingMember(wn.node_id, f"s{site}", f"r{site % regions}")
            offset = (self.rng.random() * 2 - 1) * clock_offset_s_max
            self.nodes.append(_KvNode(i, member, offset))
        self.directory = [n.member for n in self.nodes]
        self.by_id: dict[bytes, int] = {n.member.node: n.index for n in self.nodes}
        self._group = [0] * nodes
        self.completed: dict[tuple[int, int], Completed] = {}
        self.on_complete: list[Callable[[int, Completed], None]] = []
        self.tomb_max: dict[tuple[str, bytes], Stamp] = {}  # newest tombstone ever stored
        self.purged_max: dict[tuple[str, bytes], Stamp] = {}
        self.kv_messages = 0
        self._retired: list[KvStatistics] = []  # counters of cores lost in crashes
        # Placement oracle for the checkers: the ring of every node that has not left for good.
        self._ring = Ring(self.directory)
        self._ns_by_name = {ns.name: ns for ns in self.namespaces}
        self.world.listeners.append(self._on_member_event)
        for n in self.nodes:
            self._boot(n)
            self._at(self.rng.random() * ae_interval_s, self._ae_round, n.index)

    # --- node lifecycle -----------------------------------------------------------------

    def _now(self, n: _KvNode) -> float:
        return max(0.0, self.world.now + n.offset_s)

    def _boot(self, n: _KvNode) -> None:
        n.epoch += 1
        n.running = True
        members = [m for m in self.directory if self.by_id[m.node] not in self.removed]
        core = KvCore(me=n.member, members=members, namespaces=self.namespaces, config=self.config,
                      rng=random.Random(self.rng.getrandbits(64)), last_stamp=n.store.max_stamp())
        core.restore(self._now(n), tombstones=[(k[0], r) for k, r in sorted(n.store.records.items())
                                               if r.is_tombstone],
                     hint_targets=sorted({h.target for h in n.store.hints.values()}))
        n.core = core
        self._perform(n, core.start(self._now(n)))
        if self.ring_changes:  # keys may have moved while it was down
            self._at(self.world.now + 2.0, self._handoff_pass, n.index)

    def crash(self, i: int) -> None:
        n = self.nodes[i]
        if not n.running:
            return
        self.world.crash(i)
        if n.core is not None:
            self._retired.append(n.core.statistics())
        n.running = False
        n.epoch += 1
        n.core = None

    def restart(self, i: int) -> None:
        n = self.nodes[i]
        if n.running:
            return
        self.world.restart(i)
        self._boot(n)

    def decommission(self, i: int) -> None:
        """Crash node `i` for good; `reclaim_s` later it is taken off every ring."""
        self.crash(i)
        self._at(self.world.now + self.reclaim_s, self._remove, i)

    def _remove(self, i: int) -> None:
        gone = self.nodes[i].member.node
        self.removed.add(i)
        self.ring_changes += 1
        self._ring.remove(gone)
        for n in self.nodes:
            if n.running and n.core is not None and gone in n.core.view.ring:
                n.core.remove_member(gone)
                self._at(self.world.now + 1.0, self._handoff_pass, n.index)

    def recommission(self, i: int) -> None:
        """Bring a decommissioned node back as a new machine (empty store) on every ring."""
        n = self.nodes[i]
        if i not in self.removed or n.running:
            return
        self.removed.discard(i)
        self.ring_changes += 1
        n.store = MemoryKvStore()
        self._ring.add(n.member)
        for m in self.nodes:
            if m.running and m.core is not None:
                m.core.add_member(n.member)
                self._at(self.world.now + 1.0, self._handoff_pass, m.index)
        self.restart(i)

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        self.world.partition(groups)
        g = [len(groups)] * len(self.nodes)
        for k, members in enumerate(groups):
            for i in members:
                g[i] = k
        self._group = g

    def heal(self) -> None:
        self.world.heal()
        self._group = [0] * len(self.nodes)

    def _on_member_event(self, now: float, idx: int, ev: MemberEvent) -> None:
        n = self.nodes[idx]
        if not n.running or n.core is None or ev.member.node == n.member.node:
            return
        if ev.kind in _UP:
            self._perform(n, n.core.member_alive(self._now(n), ev.member.node))
        else:
            self._perform(n, n.core.member_down(self._now(n), ev.member.node))

    # --- client operations --------------------------------------------------------------

    def put(self, i: int, namespace: str, key: bytes, value: bytes | None, level: str) -> int | None:
        n = self.nodes[i]
        if not n.running or n.core is None:
            return None
        now = self._now(n)
        if value is None:
            rid, eff = n.core.delete(now, namespace, key, level)
        else:
            rid, eff = n.core.put(now, namespace, key, value, level)
        self._perform(n, eff)
        return rid

    def get(self, i: int, namespace: str, key: bytes, level: str) -> int | None:
        n = self.nodes[i]
        if not n.running or n.core is None:
            return None
        rid, eff = n.core.get(self._now(n), namespace, key, level)
        self._perform(n, eff)
        return rid

    # --- effects ------------------------------------------------------------------------

    def _latency(self) -> float:
        net = self.world.net
        lat = net.latency_base_s + self.rng.random() * net.latency_jitter_s
        while net.loss and self.rng.random() < net.loss:
            lat += net.stream_retransmit_s
        return lat

    def _send(self, src: int, dst_id: bytes, data: bytes) -> None:
        dst = self.by_id.get(dst_id)
        if dst is None:
            return
        self.kv_messages += 1
        if self._group[src] != self._group[dst]:
            return
        at = self.world.now + (0.0 if dst == src else self._latency())
        dn = self.nodes[dst]
        src_id = self.nodes[src].member.node
        self.world.at(at, lambda: self._deliver(src, dst, dn.epoch, src_id, data))

    def _deliver(self, src: int, dst: int, epoch: int, src_id: bytes, data: bytes) -> None:
        n = self.nodes[dst]
        if not n.running or n.epoch != epoch or n.core is None or self._group[src] != self._group[dst]:
            return
        self._perform(n, n.core.on_message(self._now(n), src_id, data))

    def _perform(self, n: _KvNode, effects: list[KvEffect]) -> None:
        for e in effects:
            if not n.running or n.core is None:
                return
            core = n.core
            if isinstance(e, Send):
                self._send(n.index, e.to, e.data)
            elif isinstance(e, SetTimer):
                self._at(max(self.world.now, e.at - n.offset_s), self._timer, n, n.epoch, e.timer)
            elif isinstance(e, (Persist, PersistHint)):
                lo, hi = self.commit_delay_s
                self._at(self.world.now + lo + self.rng.random() * (hi - lo), self._commit, n, n.epoch, e)
            elif isinstance(e, Load):
                self._perform(n, core.on_loaded(self._now(n), e.token, n.store.get(e.namespace, e.key)))
            elif isinstance(e, LoadHints):
                self._perform(n, core.on_hints(self._now(n), e.target, n.store.hints_for(e.target, e.limit)))
            elif isinstance(e, DropHints):
                n.store.drop_hints(e.ids)
            elif isinstance(e, Purge):
                if n.store.purge(e.namespace, e.key, e.stamp):
                    _raise_to(self.purged_max, (e.namespace, e.key), e.stamp)
            elif isinstance(e, Completed):
                if (n.index, e.request_id) in self._handoffs:
                    self._handoff_done(n, e)
                    continue
                self.completed[(n.index, e.request_id)] = e
                for fn in self.on_complete:
                    fn(n.index, e)

    def _at(self, t: float, fn: Callable[..., None], *args: object) -> None:
        self.world.at(t, functools.partial(fn, *args))

    def _timer(self, n: _KvNode, epoch: int, timer: KvTimer) -> None:
        if n.running and n.epoch == epoch and n.core is not None:
            self._perform(n, n.core.on_timer(self._now(n), timer))

    def _commit(self, n: _KvNode, epoch: int, e: Persist | PersistHint) -> None:
        if not n.running or n.epoch != epoch or n.core is None:
            return  # crashed before the group commit: the write never happened
        if type(e) is Persist:
            for rec in e.records:
                n.store.put(e.namespace, rec)
                if rec.is_tombstone:
                    _raise_to(self.tomb_max, (e.namespace, rec.key), rec.stamp)
        else:
            assert type(e) is PersistHint
            n.store.add_hint(e.target, e.namespace, e.record)
        self._perform(n, n.core.on_persisted(self._now(n), e.token))

    # --- range hand-off ---------------------------------------------------------------------

    def _handoff_pass(self, i: int) -> None:
        """Start a hand-off of every key node `i` holds and is no longer home for."""
        self._handoff_retry.discard(i)
        n = self.nodes[i]
        if not n.running or n.core is None:
            return
        core, now = n.core, self._now(n)
        busy = {(ns, rec.key) for (j, _), (ns, rec, _) in self._handoffs.items() if j == i}
        for (ns_name, key), rec in sorted(n.store.records.items()):
            try:
                if (ns_name, key) in busy or core.is_home(ns_name, key):
                    continue
                rid, eff = core.move_off(now, ns_name, rec)
            except (LocalProtocolError, MeshError):  # not placeable now, or back-pressure
                self._retry_handoff(n)
                continue
            self._handoffs[(i, rid)] = (ns_name, rec, n.epoch)
            self._perform(n, eff)

    def _handoff_done(self, n: _KvNode, c: Completed) -> None:
        ns_name, rec, epoch = self._handoffs.pop((n.index, c.request_id))
        if n.epoch != epoch or n.core is None:
            return
        if c.ok and n.store.get(ns_name, rec.key) == rec:
            del n.store.records[(ns_name, rec.key)]
            n.core.forget(ns_name, rec.key)
            self.handoffs_dropped += 1
        else:
            self._retry_handoff(n)

    def _retry_handoff(self, n: _KvNode) -> None:
        if n.index not in self._handoff_retry:
            self._handoff_retry.add(n.index)
            self._at(self.world.now + 5.0, self._handoff_pass, n.index)

    # --- anti-entropy -------------------------------------------------------------------

    def _ae_round(self, i: int) -> None:
        self.world.at(self.world.now + self.ae_interval_s, lambda: self._ae_round(i))
        n = self.nodes[i]
        if n.running and n.core is not None:
            by_peer: dict[bytes, list[tuple[str, bytes, Stamp]]] = {}
            view = n.core.view
            for (ns_name, key), rec in sorted(n.store.records.items()):
                ns = view.known_namespace(ns_name)
                if ns is None:
                    continue
                for peer in view.replicas(ns, key):
                    if peer != n.member.node and view.is_alive(peer):
                        by_peer.setdefault(peer, []).append((ns_name, key, rec.stamp))
            for peer, digest in sorted(by_peer.items()):
                dst = self.by_id[peer]
                if self._group[i] != self._group[dst]:
                    continue
                self.kv_messages += 1
                self._at(self.world.now + self._latency(), self._ae_digest, i, dst, self.nodes[dst].epoch, digest)

    def _ae_digest(self, src: int, dst: int, epoch: int, digest: list[tuple[str, bytes, Stamp]]) -> None:
        d = self.nodes[dst]
        if not d.running or d.epoch != epoch or d.core is None or self._group[src] != self._group[dst]:
            return
        wanted: list[tuple[str, bytes]] = []
        for ns_name, key, stamp in digest:
            mine = d.store.get(ns_name, key)
            if mine is not None and mine.stamp > stamp:
                self._push(dst, src, ns_name, mine)
            elif mine is None or mine.stamp < stamp:
                wanted.append((ns_name, key))
        if wanted:
            self.kv_messages += 1
            s = self.nodes[src]
            self.world.at(self.world.now + self._latency(),
                          lambda: self._ae_want(dst, src, s.epoch, wanted))

    def _ae_want(self, src: int, dst: int, epoch: int, wanted: list[tuple[str, bytes]]) -> None:
        n = self.nodes[dst]
        if not n.running or n.epoch != epoch or self._group[src] != self._group[dst]:
            return
        for ns_name, key in wanted:
            rec = n.store.get(ns_name, key)
            if rec is not None:
                self._push(dst, src, ns_name, rec)

    def _push(self, frm: int, to: int, ns_name: str, rec: Record) -> None:
        f = self.nodes[frm]
        data = encode_kv(Repair(sender=f.member.node, namespace=ns_name, key=rec.key, stamp=rec.stamp,
                                value=rec.value))
        self._send(frm, self.nodes[to].member.node, data)

    # --- checkers -----------------------------------------------------------------------

    def home(self, ns_name: str, key: bytes) -> list[int]:
        return [self.by_id[x] for x in self._ring.replicas_for(self._ns_by_name[ns_name], key)]

    def keys(self) -> list[tuple[str, bytes]]:
        ks: set[tuple[str, bytes]] = set()
        for n in self.nodes:
            if n.index in self.removed:
                continue
            ks.update(n.store.records)
            ks.update((h.namespace, h.record.key) for h in n.store.hints.values())
        return sorted(ks)

    def newest(self, ns_name: str, key: bytes) -> Record | None:
        best: Record | None = None
        for i in self.home(ns_name, key):
            rec = self.nodes[i].store.get(ns_name, key)
            if rec is not None and newer(rec, best):
                best = rec
        return best

    def converged(self) -> bool:
        """Every key reads the same (tombstone = absent) on all its home replicas."""
        for ns_name, key in self.keys():
            seen = set()
            for i in self.home(ns_name, key):
                rec = self.nodes[i].store.get(ns_name, key)
                seen.add(None if rec is None or rec.is_tombstone else (rec.stamp, rec.value))
            if len(seen) > 1:
                return False
        return True

    def check(self, acked: Iterable[AckedWrite], report: KvReport) -> KvReport:
        """Fill the safety counters of `report` from the final stores."""
        for w in acked:
            if w.level not in ("quorum", "all"):
                continue
            k = (w.namespace, w.key)
            cur = self.newest(w.namespace, w.key)
            held = cur.stamp if cur is not None else None
            purged = self.purged_max.get(k)
            if (held is None or held < w.stamp) and (purged is None or purged < w.stamp):
                report.acked_lost += 1
                if len(report.details) < 20:
                    report.details.append(f"lost {w.namespace}/{w.key!r} @{w.stamp.physical_us}")
        for k, tstamp in sorted(self.tomb_max.items()):
            cur = self.newest(*k)
            if cur is not None and not cur.is_tombstone and cur.stamp < tstamp:
                report.resurrected += 1
                if len(report.details) < 20:
                    report.details.append(f"resurrected {k[0]}/{k[1]!r}")
        ns_by_name = {ns.name: ns for ns in self.namespaces}
        for ns_name, key in self.keys():
            ns = ns_by_name[ns_name]
            home = self.home(ns_name, key)
            members = [self.nodes[i].member for i in home]
            if len({m.site for m in members}) != len(members) or not all(ns.allows(m.region) for m in members):
                report.misplaced += 1
        for n in self.nodes:
            if n.index in self.removed:
                continue  # its disk is gone
            for (ns_name, key) in n.store.records:
                ns = ns_by_name[ns_name]
                if not ns.allows(n.member.region) or n.index not in self.home(ns_name, key):
                    report.misplaced += 1
            for h in n.store.hints.values():
                if not ns_by_name[h.namespace].allows(n.member.region):
                    report.misplaced += 1
        return report

    def statistics_into(self, report: KvReport) -> KvReport:
        """Add the counters of every core, including those lost in crashes."""
        stats = self._retired + [n.core.statistics() for n in self.nodes if n.core is not None]
        for s in stats:
            report.hints_stored += s.hints_stored
            report.hints_delivered += s.hints_delivered
            report.hints_expired += s.hints_expired
            report.repairs_read += s.repairs_sent
            report.repairs_applied += s.repairs_applied
            report.tombstones_purged += s.tombstones_purged
        report.kv_messages = self.kv_messages
        report.handoffs_dropped = self.handoffs_dropped
        return report

    def node_id(self, i: int) -> NodeId:
        return self.world.nodes[i].node_id


@dataclass(frozen=True, slots=True, kw_only=True)
class KvScenario:
    """A seeded kv run: writers, crashes with restarts, partitions, stream loss.

    Timeline (fractions of `duration_s`): SWIM joins during the first seconds; writers run
    from `warmup_s` to `faults_end` (0.7); crashes and partitions all start and end inside
    [0.1, faults_end]; after that no fault and no client operation, and the run measures how
    long the replicas take to agree after the last heal or restart.
    """

    seed: int
    nodes: int = 50
    duration_s: float = 600.0
    ops_per_s: float = 20.0
    keys_per_namespace: int = 200
    crashes: int = 6
    partitions: int = 2
    #: Nodes crashed for good and taken off the ring (distinct from the crash victims),
    #: each back with an empty store 30-60 s after its removal (keys move twice).
    decommissions: int = 0
    loss: float = 0.02
    levels: tuple[str, ...] = ("one", "quorum", "all")
    read_fraction: float = 0.2
    delete_fraction: float = 0.25
    warmup_s: float = 10.0
    faults_end: float = 0.7
    check_every_s: float = 0.5


def run_kv_scenario(sc: KvScenario) -> tuple[KvReport, dict[str, object]]:
    """Run the scenario; return the report and the metrics table (see benchmarks/kv_sim)."""
    import hashlib

    kw = KvWorld(sc.seed, sc.nodes, net=NetConfig(loss=sc.loss))
    rng = random.Random(kw.rng.getrandbits(64))  # the workload's own stream, seeded too
    d = sc.duration_s
    faults_end = d * sc.faults_end
    last_heal = 0.0
    # Crashes: distinct victims, back 5-40 s later; the last one comes back at faults_end,
    # so the quiet phase starts with a node that missed writes.
    victims = rng.sample(range(sc.nodes), min(sc.crashes, sc.nodes))
    if sc.decommissions:  # drawn after the crashes, so runs without them keep their seeds
        others = [i for i in range(sc.nodes) if i not in victims]
        for i in rng.sample(others, min(sc.decommissions, len(others))):
            at = rng.uniform(0.15 * d, max(0.15 * d, faults_end - kw.reclaim_s - 90.0))
            back = min(at + kw.reclaim_s + rng.uniform(30.0, 60.0), faults_end)
            kw.world.at(at, functools.partial(kw.decommission, i))
            kw.world.at(back, functools.partial(kw.recommission, i))
            last_heal = max(last_heal, back)
    for j, victim in enumerate(victims):
        if j == len(victims) - 1:
            back = faults_end
            at = back - rng.uniform(5.0, 40.0)
        else:
            at = rng.uniform(0.1 * d, max(0.1 * d, faults_end - 45.0))
            back = min(at + rng.uniform(5.0, 40.0), faults_end)
        kw.world.at(at, functools.partial(kw.crash, victim))
        kw.world.at(back, functools.partial(kw.restart, victim))
        last_heal = max(last_heal, back)
    if sc.partitions:
        slot = (faults_end - 0.15 * d) / sc.partitions
        for p in range(sc.partitions):
            start = 0.15 * d + p * slot + rng.uniform(0, slot / 4)
            end = min(start + rng.uniform(10.0, 30.0), 0.15 * d + (p + 1) * slot)
            if p == sc.partitions - 1:  # the last heal is the start of the quiet phase
                end = faults_end
                start = max(0.15 * d + p * slot, end - rng.uniform(10.0, 30.0))
            if p % 2 == 0:  # one region against the others
                groups = [[n.index for n in kw.nodes if n.member.region == "r0"]]
            else:
                order = list(range(sc.nodes))
                rng.shuffle(order)
                groups = [order[: sc.nodes // 2]]
            kw.world.at(start, functools.partial(kw.partition, groups))
            kw.world.at(end, kw.heal)
            last_heal = max(last_heal, end)
    # Client operations (Poisson arrivals on a random running coordinator).
    pending: dict[tuple[int, int], tuple[str, bytes, bytes | None, str]] = {}
    acked: list[AckedWrite] = []
    counts = {"puts_acked": 0, "deletes_acked": 0, "writes_failed": 0, "reads_ok": 0, "reads_failed": 0}
    by_level = {lv: 0 for lv in sc.levels}
    seq = 0

    def completed(i: int, c: Completed) -> None:
        op = pending.pop((i, c.request_id), None)
        if op is None:
            return
        ns_name, key, value, level = op
        if level.startswith("get:"):
            counts["reads_ok" if c.ok else "reads_failed"] += 1
            return
        if not c.ok or c.stamp is None:
            counts["writes_failed"] += 1
            return
        counts["deletes_acked" if value is None else "puts_acked"] += 1
        by_level[level] += 1
        acked.append(AckedWrite(ns_name, key, c.stamp, value, level))

    kw.on_complete.append(completed)
    ns_names = [ns.name for ns in kw.namespaces]
    t = sc.warmup_s
    while True:
        t += rng.expovariate(sc.ops_per_s)
        if t >= faults_end:
            break
        seq += 1
        ns_name = rng.choice(ns_names)
        key = b"k%d" % rng.randrange(sc.keys_per_namespace)
        level = rng.choice(sc.levels)
        r = rng.random()
        value: bytes | None = b"v%d" % seq
        if r < sc.read_fraction:
            kind = "get"
        elif r < sc.read_fraction + sc.delete_fraction * (1 - sc.read_fraction):
            kind, value = "delete", None
        else:
            kind = "put"

        def op(ns_name: str = ns_name, key: bytes = key, value: bytes | None = value, level: str = level,
               kind: str = kind) -> None:
            live = [n.index for n in kw.nodes if n.running]
            if not live:
                return
            i = rng.choice(live)
            if kind == "get":
                rid = kw.get(i, ns_name, key, level)
                tag = "get:" + level
            else:
                rid = kw.put(i, ns_name, key, value, level)
                tag = level
            if rid is not None:
                pending[(i, rid)] = (ns_name, key, value, tag)
                if (i, rid) in kw.completed:  # completed synchronously (unavailable)
                    completed(i, kw.completed[(i, rid)])

        kw.world.at(t, op)
    # Convergence after the last heal: sample until the replicas agree.
    converged_at: list[float] = []

    def sample() -> None:
        if converged_at:
            return
        if kw.converged():
            converged_at.append(kw.world.now)
        else:
            kw.world.at(kw.world.now + sc.check_every_s, sample)

    kw.world.at(max(last_heal, faults_end), sample)
    kw.world.run_until(d)
    report = kw.statistics_into(kw.check(acked, KvReport()))
    report.puts_acked = counts["puts_acked"]
    report.deletes_acked = counts["deletes_acked"]
    report.writes_failed = counts["writes_failed"]
    report.reads_ok = counts["reads_ok"]
    report.reads_failed = counts["reads_failed"]
    conv = converged_at[0] - max(last_heal, faults_end) if converged_at else float("nan")
    digest = hashlib.sha256()
    for i, n in enumerate(kw.nodes):
        for (ns_name, key), rec in sorted(n.store.records.items()):
            digest.update(b"%d|%s|%s|%s|%s;" % (i, ns_name.encode(), key, rec.stamp.to_bytes(), rec.value or b"-"))
    metrics: dict[str, object] = {
        "acked_lost": report.acked_lost,
        "resurrected": report.resurrected,
        "misplaced": report.misplaced,
        "converge_after_heal_s": conv,
        "converged_at_end": kw.converged(),
        "puts_acked": report.puts_acked,
        "deletes_acked": report.deletes_acked,
        "writes_failed": report.writes_failed,
        **{f"acked_{lv}": n for lv, n in by_level.items()},
        "reads_ok": report.reads_ok,
        "reads_failed": report.reads_failed,
        "hints_stored": report.hints_stored,
        "hints_delivered": report.hints_delivered,
        "hints_expired": report.hints_expired,
        "read_repairs_sent": report.repairs_read,
        "repairs_applied": report.repairs_applied,
        "tombstones_purged": report.tombstones_purged,
        "handoffs_dropped": report.handoffs_dropped,
        "kv_messages": report.kv_messages,
        "swim_datagrams": kw.world.datagrams_sent,
        "last_heal_s": max(last_heal, faults_end),
        "state_sha256": digest.hexdigest()[:16],
    }
    return report, metrics
