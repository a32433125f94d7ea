"""A seeded discrete-event world that drives many `Swim` cores (tier 1 of the design).

Everything random — every node's rng, latency, loss, duplication, reordering (jitter) —
comes from one `random.Random(seed)`, and events are ordered by (time, sequence number), so
a seed replays bit for bit; `trace_sha256()` is a digest of every processed event.

The network: per-datagram latency `base + U(0, jitter)`, loss, duplication; partitions
(groups of node indices; datagrams and streams across groups fail); streams are a request
and a reply, each after a latency (a lost segment adds a 200 ms retransmission), failing at
`timeout_s` when either side is crashed, stalled too long, or partitioned away.
Stalled nodes (`stall(i, s)`, a GC-like pause) queue deliveries and timers and handle them
at resume — timers first, like a runtime that wakes up and fires overdue timers before it
reads its sockets. Crash drops everything for that node; restart builds a new `Swim` with
the same node id at incarnation 0, rejoining through the seeds.

Safety checkers run on every step (see `_check`); a violation raises `SafetyViolation`
with the seed and the last events. `checkers` holds more, scenario-specific ones
(`fn(world, node_index)`, run after every event a node handles).

`secure=True` runs the security layer (see `_secure.py`): certified identities, signed
Alive records, admission of every record, sealed datagrams (a datagram the receiver cannot
open is dropped and counted), and streams that succeed only when each side admits the
other's certificate (the admission check of the Noise handshake, without running Noise).
Revocations (`revoke(i, revocation)`) spread as system broadcasts; each node verifies one,
records it and expels the node from its view. `rogues` are nodes certified by another
authority.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import random
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._types import Addr, NodeId
from ..security import (
    CertificateError,
    Revocation,
    decode_revocation_broadcast,
    encode_revocation_broadcast,
    is_system_broadcast,
)
from ..swim import (
    EventKind,
    MemberEvent,
    SendDatagram,
    SendStream,
    SetTimer,
    Swim,
    SwimConfig,
    UserBroadcast,
)
from ..wire import MemberState, NodeMeta, Status, alive_signing_bytes
from ._secure import EPOCH_S, NodeSecurity, SecureCluster

__all__ = ["World", "SafetyViolation", "NetConfig"]

_DG, _TM, _SREQ, _SREP, _STO, _CALL, _RESUME = range(7)
_KIND_NAMES = ("datagram", "timer", "stream-request", "stream-reply", "stream-timeout", "call", "resume")
_PACK = struct.Struct("<dBHI")


class SafetyViolation(AssertionError):
    """A safety property broke; the message holds the seed and the last events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConfig:
    latency_base_s: float = 0.001
    latency_jitter_s: float = 0.004
    loss: float = 0.0
    duplicate: float = 0.0
    stream_retransmit_s: float = 0.2


class _Node:
    __slots__ = ("index", "node_id", "addr", "meta", "swim", "epoch", "running", "stalled_until",
                 "pending", "streams", "restarts", "last_inc", "resumed_at", "sec")

    def __init__(self, index: int, node_id: NodeId, addr: Addr, meta: NodeMeta) -> None:
        self.index = index
        self.node_id = node_id
        self.addr = addr
        self.meta = meta
        self.swim: Swim | None = None
        self.epoch = 0
        self.running = False
        self.stalled_until = -1.0
        self.pending: list[tuple[Any, ...]] = []
        self.streams: dict[int, bool] = {}
        self.restarts = 0
        self.last_inc: dict[NodeId, int] = {}
        self.resumed_at = -1.0
        self.sec: NodeSecurity | None = None


EventListener = Callable[[float, int, MemberEvent], None]


class World:
    """`World(seed, nodes=20)`: a cluster in one process. See the module docstring."""

    def __init__(
        self,
        seed: int,
        nodes: int = 20,
        *,
        profile: str = "lan",
        config: SwimConfig | None = None,
        net: NetConfig | None = None,
        seeds: int = 3,
        bootstrap: str = "join",
        join_spacing_s: float = 0.05,
        check: bool = True,
        secure: bool = False,
        rogues: Sequence[int] = (),
    ) -> None:
        if bootstrap not in ("join", "warm"):
            raise ValueError("bootstrap must be 'join' (real push-pull joins) or 'warm'")
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config or SwimConfig.profile(profile)
        self.net = net or NetConfig()
        self.now = 0.0
        self.check = check
        self._heap: list[tuple[Any, ...]] = []
        self._seq = 0
        self._trace = hashlib.sha256()
        self._recent: deque[tuple[Any, ...]] = deque(maxlen=40)
        self.events_processed = 0
        self.datagrams_sent = 0
        self.datagram_bytes = 0
        self.stream_msgs = 0
        self.stream_bytes = 0
        self.listeners: list[EventListener] = []
        self.checkers: list[Callable[[World, int], None]] = []
        self.secure = secure
        self.rogues = frozenset(rogues)
        self.handshakes_refused = 0
        self.unsealable = 0
        self.cluster: SecureCluster | None = None
        if secure:
            self.cluster = SecureCluster(self.rng, nodes, self.rogues, lambda: EPOCH_S + self.now)
        elif self.rogues:
            raise ValueError("rogues only make sense with secure=True")
        self.broadcast_listeners: list[Callable[[float, int, UserBroadcast], None]] = []
        self._group: list[int] = [0] * nodes
        self._udp_blocked: set[int] = set()  # membership only
        self.nodes: list[_Node] = []
        self._by_addr: dict[Addr, int] = {}
        for i in range(nodes):
            if self.cluster is not None:
                node_id = self.cluster.nodes[i].node_id
            else:
                node_id = NodeId(self.rng.getrandbits(128).to_bytes(16, "big"))
            addr = (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 7946)
            meta = NodeMeta(name=f"n{i}", site=f"site{i % 50}", region=f"r{i % 4}")
            node = _Node(i, node_id, addr, meta)
            if self.cluster is not None:
                node.sec = self.cluster.nodes[i]
            self.nodes.append(node)
            self._by_addr[addr] = i
        self.ids = {n.node_id: n.index for n in self.nodes}
        self.seed_addrs = [n.addr for n in self.nodes[: max(1, seeds)]]
        if bootstrap == "warm":
            states = [self._warm_state(n) for n in self.nodes]
            for n in self.nodes:
                self._boot(n, 0.0, states)
        else:
            for n in self.nodes:
                self._schedule(n.index * join_spacing_s, _CALL, n.index, 0, self._boot_later, None)

    # --- scenario controls --------------------------------------------------------------

    def _boot_later(self, idx: int, _: object) -> None:
        self._boot(self.nodes[idx], self.now, None)

    def _warm_state(self, n: _Node) -> MemberState:
        st = MemberState(node=n.node_id, incarnation=0, addr=n.addr, meta=n.meta, status=Status.ALIVE,
                         cert=b"" if n.sec is None else n.sec.cert_bytes)
        if n.sec is None:
            return st
        return dataclasses.replace(st, signature=n.sec.signer(alive_signing_bytes(st)))

    def _boot(self, n: _Node, now: float, states: Sequence[MemberState] | None) -> None:
        sec = n.sec
        if sec is None:
            n.swim = Swim(config=self.config, node_id=n.node_id, addr=n.addr, meta=n.meta,
                          rng=random.Random(self.rng.getrandbits(64)))
        else:
            sec.new_sealer(now)
            n.swim = Swim(config=self.config, node_id=n.node_id, addr=n.addr, meta=n.meta,
                          rng=random.Random(self.rng.getrandbits(64)), cert=sec.cert_bytes,
                          signer=sec.signer, verifier=sec.verify, admit=sec.admit)
        n.running = True
        n.stalled_until = -1.0
        n.pending = []
        n.streams = {}
        n.last_inc = {}
        if states is not None:
            self._apply(n, now, n.swim.preload(now, states))
            self._apply(n, now, n.swim.start(now, []))
        else:
            seeds = [a for a in self.seed_addrs if a != n.addr]
            self._apply(n, now, n.swim.start(now, seeds))

    def crash(self, i: int) -> None:
        n = self.nodes[i]
        n.running = False
        n.epoch += 1
        n.pending = []
        n.streams = {}
        self._record(_CALL, i, b"crash")

    def restart(self, i: int) -> None:
        n = self.nodes[i]
        if n.running:
            raise ValueError(f"node {i} is running; crash it first")
        n.epoch += 1
        n.restarts += 1
        self._record(_CALL, i, b"restart")
        self._boot(n, self.now, None)

    def stall(self, i: int, duration_s: float) -> None:
        n = self.nodes[i]
        if not n.running or n.stalled_until > self.now:
            return
        n.stalled_until = self.now + duration_s
        self._schedule(n.stalled_until, _RESUME, i, n.epoch, None, None)
        self._record(_CALL, i, b"stall")

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Nodes in different groups cannot talk; nodes in no group form one more group."""
        g = [len(groups)] * len(self.nodes)
        for k, members in enumerate(groups):
            for i in members:
                g[i] = k
        self._group = g
        self._record(_CALL, 0, b"partition")

    def separated(self, i: int, j: int) -> bool:
        """Whether nodes i and j are in different groups of the current partition."""
        return self._group[i] != self._group[j]

    def block_udp(self, i: int, blocked: bool = True) -> None:
        """Drop every datagram to or from node i (a firewall that lets only TCP through)."""
        if blocked:
            self._udp_blocked.add(i)
        else:
            self._udp_blocked.discard(i)
        self._record(_CALL, i, b"udp-block" if blocked else b"udp-unblock")

    def revoke(self, i: int, revocation: Revocation) -> None:
        """Hand a revocation to node i now (as an operator would); it spreads by gossip."""
        n = self.nodes[i]
        if n.sec is None or not n.running or n.swim is None:
            raise ValueError(f"node {i} is not a running node of a secure world")
        self._record(_CALL, i, b"revoke")
        self._take_revocation(n, revocation, announce=True)

    def _take_revocation(self, n: _Node, rev: Revocation, *, announce: bool) -> None:
        sec, swim = n.sec, n.swim
        assert sec is not None and swim is not None
        try:
            new = sec.add_revocation(rev)
        except CertificateError:
            sec.refused["revocation_untrusted"] = sec.refused.get("revocation_untrusted", 0) + 1
            return
        if not new:
            return
        if rev.node != n.node_id:
            self._apply(n, self.now, swim.expel(self.now, rev.node, "revoked"))
        if announce:
            self._apply(n, self.now, swim.broadcast(self.now, encode_revocation_broadcast(rev)))

    def security_drops(self) -> dict[str, int]:
        """Datagrams and admissions refused, by reason, summed over nodes (secure mode)."""
        out: dict[str, int] = {}
        for n in self.nodes:
            if n.sec is None:
                continue
            for reason, count in n.sec.sealer.statistics().drops.items():
                out[reason] = out.get(reason, 0) + count
            for reason, count in n.sec.refused.items():
                out["admit:" + reason] = out.get("admit:" + reason, 0) + count
        if self.unsealable:
            out["unsealable"] = self.unsealable
        if self.handshakes_refused:
            out["handshake_refused"] = self.handshakes_refused
        return out

    def heal(self) -> None:
        self._group = [0] * len(self.nodes)
        self._record(_CALL, 0, b"heal")

    def at(self, t: float, fn: Callable[[], None]) -> None:
        """Run `fn()` at virtual time `t` (scenario scripting)."""
        self._schedule(t, _CALL, 0, 0, lambda _i, _p: fn(), None)

    def swim(self, i: int) -> Swim:
        s = self.nodes[i].swim
        if s is None:
            raise ValueError(f"node {i} has not started yet")
        return s

    def running(self) -> list[int]:
        return [n.index for n in self.nodes if n.running]

    def is_stalled(self, i: int) -> bool:
        return self.nodes[i].stalled_until > self.now

    def do(self, i: int, call: Callable[[Swim, float], list[Any]]) -> None:
        """Call an API of node i's core now (e.g. `lambda s, now: s.broadcast(now, b"x")`)."""
        n = self.nodes[i]
        if n.running and n.swim is not None:
            self._apply(n, self.now, call(n.swim, self.now))

    def converged(self) -> bool:
        """Every running node sees every running node alive and all checksums agree."""
        live = [n for n in self.nodes if n.running and n.swim is not None and n.index not in self.rogues]
        if not live:
            return True
        sums = {n.swim.checksum() for n in live}  # type: ignore[union-attr]
        if len(sums) != 1:
            return False
        s0 = live[0].swim
        assert s0 is not None
        return all(s0.status_of(n.node_id) is Status.ALIVE for n in live)

    def checksums_agree(self) -> bool:
        live = [n.swim for n in self.nodes if n.running and n.swim is not None]
        return len({s.checksum() for s in live}) <= 1

    def trace_sha256(self) -> str:
        return self._trace.hexdigest()

    # --- the loop ---------------------------------------------------------------------

    def _schedule(self, t: float, kind: int, idx: int, epoch: int, a: object, b: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, idx, epoch, a, b))

    def run_until(self, t: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t:
            ev = heapq.heappop(heap)
            self.now = ev[0]
            self._step(ev)
        self.now = max(self.now, t)

    def _record(self, kind: int, idx: int, data: bytes) -> None:
        self._trace.update(_PACK.pack(self.now, kind, idx & 0xFFFF, len(data)))
        self._trace.update(data)
        self._recent.append((self.now, _KIND_NAMES[kind], idx, data[:24].hex()))

    def _step(self, ev: tuple[Any, ...]) -> None:
        t, _, kind, idx, epoch, a, b = ev
        self.events_processed += 1
        if kind == _CALL:
            a(idx, b)
            return
        n = self.nodes[idx]
        if not n.running or epoch != n.epoch:
            return
        if kind == _RESUME:
            self._resume(n)
            return
        if n.stalled_until > t:
            n.pending.append(ev)
            return
        self._handle(n, ev)

    def _resume(self, n: _Node) -> None:
        n.stalled_until = -1.0
        n.resumed_at = self.now
        pending, n.pending = n.pending, []
        self._record(_RESUME, n.index, b"")
        # Overdue timers first, then the inbox, each in arrival order.
        for ev in [e for e in pending if e[2] == _TM] + [e for e in pending if e[2] != _TM]:
            if not n.running or ev[4] != n.epoch:
                return
            self._handle(n, ev)

    def _handle(self, n: _Node, ev: tuple[Any, ...]) -> None:
        _, _, kind, idx, _, a, b = ev
        swim = n.swim
        assert swim is not None
        now = self.now
        if kind == _DG:
            if self._group[self._by_addr[a]] != self._group[idx]:
                return  # the partition started while it was in flight
            self._record(_DG, idx, b)
            if n.sec is not None:
                plain = n.sec.sealer.open(a, b)
                if plain is None:
                    return  # counted by the sealer
                b = plain
            self._apply(n, now, swim.on_datagram(now, a, b))
        elif kind == _TM:
            self._record(_TM, idx, a.kind.encode())
            self._apply(n, now, swim.on_timer(now, a))
        elif kind == _SREQ:
            client, token, deadline = a
            cn = self.nodes[client]
            if self._group[client] != self._group[idx]:
                return  # the client times out
            self._record(_SREQ, idx, b)
            reply, effects = swim.on_stream_request(now, cn.addr, b)
            self._apply(n, now, effects)
            if reply is not None:
                self.stream_msgs += 1
                self.stream_bytes += len(reply)
                at = now + self._stream_latency()
                if at < deadline:
                    self._schedule(at, _SREP, client, cn.epoch, token, reply)
        elif kind == _SREP:
            if n.streams.pop(a, None) is None:
                return
            self._record(_SREP, idx, b)
            self._apply(n, now, swim.on_stream_reply(now, a, b))
        elif kind == _STO:
            if n.streams.pop(a, None) is None:
                return
            self._record(_STO, idx, b"")
            self._apply(n, now, swim.on_stream_failed(now, a))

    def _latency(self) -> float:
        net = self.net
        return net.latency_base_s + self.rng.random() * net.latency_jitter_s

    def _stream_latency(self) -> float:
        lat = self._latency()
        loss = self.net.loss
        while loss and self.rng.random() < loss:
            lat += self.net.stream_retransmit_s
        return lat

    def _apply(self, n: _Node, now: float, effects: list[Any]) -> None:
        idx = n.index
        for e in effects:
            t = type(e)
            if t is SendDatagram:
                dst = self._by_addr.get(e.addr)
                data = e.data
                if n.sec is not None:
                    peer = None if dst is None else self.nodes[dst].node_id
                    if peer is None or not n.sec.sealer.has_peer(peer):
                        self.unsealable += 1
                        continue
                    data = n.sec.sealer.seal_to(peer, data)
                self.datagrams_sent += 1
                self.datagram_bytes += len(data)
                if dst is None or self._group[dst] != self._group[idx]:
                    continue
                if self._udp_blocked and (dst in self._udp_blocked or idx in self._udp_blocked):
                    continue
                net = self.net
                rng = self.rng
                if net.loss and rng.random() < net.loss:
                    continue
                dn = self.nodes[dst]
                self._schedule(now + self._latency(), _DG, dst, dn.epoch, n.addr, data)
                if net.duplicate and rng.random() < net.duplicate:
                    self._schedule(now + self._latency(), _DG, dst, dn.epoch, n.addr, data)
            elif t is SetTimer:
                self._schedule(max(now, e.at), _TM, idx, n.epoch, e.timer, None)
            elif t is SendStream:
                self.stream_msgs += 1
                self.stream_bytes += len(e.data)
                n.streams[e.token] = True
                deadline = now + e.timeout_s
                self._schedule(deadline, _STO, idx, n.epoch, e.token, None)
                dst = self._by_addr.get(e.addr)
                if dst is None or self._group[dst] != self._group[idx]:
                    continue
                dn = self.nodes[dst]
                if not dn.running:
                    continue
                if n.sec is not None and not self._handshake(n, dn):
                    continue  # the client sees its stream fail at the deadline
                self._schedule(now + self._stream_latency(), _SREQ, dst, dn.epoch,
                               (idx, e.token, deadline), e.data)
            elif t is MemberEvent:
                m = e.member
                self._record(_CALL, idx, m.node + bytes((int(m.status),)) + m.incarnation.to_bytes(8, "big"))
                if self.check:
                    self._check_event(n, e)
                for fn in self.listeners:
                    fn(now, idx, e)
            elif t is UserBroadcast:
                if n.sec is not None and is_system_broadcast(e.payload):
                    try:
                        rev = decode_revocation_broadcast(e.payload)
                    except CertificateError:
                        continue
                    self._take_revocation(n, rev, announce=False)
                    continue
                for fb in self.broadcast_listeners:
                    fb(now, idx, e)
        if self.check and n.running and n.swim is not None:
            st = n.swim.status_of(n.node_id)
            if st is not Status.ALIVE and st is not Status.LEFT:
                self._fail(f"node {idx} marks itself {st}")
        for check in self.checkers:
            check(self, idx)

    def _handshake(self, client: _Node, server: _Node) -> bool:
        """The admission part of the Noise handshake: each side vets the other's certificate."""
        cs, ss = client.sec, server.sec
        assert cs is not None and ss is not None
        if ss.admit(client.node_id, cs.cert_bytes) and cs.admit(server.node_id, ss.cert_bytes):
            return True
        self.handshakes_refused += 1
        return False

    # --- safety ---------------------------------------------------------------------

    def _check_event(self, n: _Node, e: MemberEvent) -> None:
        m = e.member
        if m.node not in self.ids:
            self._fail(f"node {n.index} holds node id {m.node.hex()} that never existed")
        if m.node == n.node_id and e.kind in (EventKind.SUSPECT, EventKind.DEAD, EventKind.LEFT):
            self._fail(f"node {n.index} emitted {e.kind.value} about itself")
        last = n.last_inc.get(m.node)
        if last is not None and m.incarnation < last:
            self._fail(f"node {n.index}'s view of node {self.ids[m.node]} went from incarnation "
                       f"{last} back to {m.incarnation}")
        n.last_inc[m.node] = m.incarnation

    def _fail(self, what: str) -> None:
        lines = "\n".join(f"  t={t:.6f} {k:<14} node={i} {d}" for t, k, i, d in self._recent)
        raise SafetyViolation(
            f"safety violation at t={self.now:.6f} (seed {self.seed}): {what}\n"
            f"replay: python -m meshcore.sim --seed {self.seed}\nlast events:\n{lines}"
        )
