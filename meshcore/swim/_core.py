"""The SWIM + Lifeguard protocol core: bytes and time in, effects out.

One `Swim` per node. It never reads a clock (every call takes `now`), never touches a
socket (it returns `SendDatagram` / `SendStream` / `SetTimer` values) and draws every random
choice from the injected `random.Random`. Timers are values; a timer whose token is stale is
ignored. Anything wrong coming from the network is counted in `statistics().dropped` and
otherwise ignored; only local misuse raises.

Limits: datagrams never exceed `config.packet_bytes_max`; the piggyback queue, the table of
seen user messages, the recent broadcasts a push-pull carries and the pending indirect
probes are bounded (see `SwimConfig`).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._types import Addr, NodeId
from ..errors import DecodeError, LocalProtocolError
from ..wire import (
    STREAM_MESSAGE_BYTES_MAX,
    Ack,
    Alive,
    Dead,
    MemberState,
    Nack,
    NodeMeta,
    Ping,
    PingReq,
    PushPull,
    Status,
    Suspect,
    UserMsg,
    alive_signing_bytes,
    dead_signing_bytes,
    decode,
    decode_recent_users,
    encode,
    encode_recent_users,
    encode_update,
)
from ..wire._messages import UPDATES_MAX
from ..wire._pushpull import encode_member_state, encode_push_pull
from ._awareness import Awareness
from ._broadcast import BroadcastQueue
from ._config import SwimConfig, push_pull_scale_s, retransmit_limit
from ._effects import (
    Effect,
    EventKind,
    Member,
    MemberEvent,
    SendDatagram,
    SendStream,
    SetTimer,
    Timer,
    UserBroadcast,
)
from ._packing import with_updates
from ._state import Kind, MemberRecord, MemberTable, transition
from ._suspicion import Suspicion, suspicion_timeout_s

__all__ = ["Swim", "SwimStatistics", "GOSSIP_SEQ"]

#: A timer firing this much after its time means the node itself was paused.
LATE_TIMER_S = 0.05

#: An Ack with this sequence number answers no probe: it only carries gossip.
GOSSIP_SEQ = 0

#: Revivals remembered for the heal-mode trigger (a bound; the trigger needs fewer).
REVIVALS_MAX = 256

_PROBE, _PROBE_TIMEOUT, _PROBE_END = "probe", "probe_timeout", "probe_end"
_INDIRECT_TIMEOUT, _SUSPICION, _GOSSIP = "indirect_timeout", "suspicion", "gossip"
_PUSH_PULL, _RECONNECT = "push_pull", "reconnect"

_LIVE = (Status.ALIVE, Status.SUSPECT)


@dataclass(frozen=True, slots=True, kw_only=True)
class SwimStatistics:
    """A snapshot of the counters of one `Swim`."""

    msgs_in: int
    msgs_out: int
    bytes_in: int
    bytes_out: int
    streams_out: int
    dropped: tuple[tuple[str, int], ...]
    probes: int
    probes_failed: int
    indirect_probes: int
    stream_probes_ok: int
    suspicions: int
    refutations: int
    deaths_declared: int
    push_pulls: int
    late_timers: int
    last_looks: int
    #: User broadcasts first delivered from a push-pull's recent ones (missed by gossip).
    broadcasts_repaired: int
    local_health: int
    members_alive: int
    members_suspect: int
    members_dead: int
    queue_len: int

    @property
    def dropped_total(self) -> int:
        return sum(n for _, n in self.dropped)


class _Probe:
    __slots__ = ("seq", "target", "incarnation", "timeout_at", "end_at", "acked", "nacks",
                 "expected_nacks", "done", "refused")

    def __init__(self, seq: int, target: NodeId, incarnation: int, timeout_at: float,
                 end_at: float) -> None:
        self.seq = seq
        self.end_at = end_at
        self.target = target
        self.incarnation = incarnation
        self.timeout_at = timeout_at
        self.acked = False
        self.nacks = 0
        self.expected_nacks = 0
        self.done = False
        self.refused = False  # the stream fallback found nothing listening


class _Indirect:
    __slots__ = ("origin_addr", "origin_seq", "nack")

    def __init__(self, origin_addr: Addr, origin_seq: int, nack: bool) -> None:
        self.origin_addr = origin_addr
        self.origin_seq = origin_seq
        self.nack = nack


class Swim:
    """SWIM membership with Lifeguard, for one node. See the module docstring."""

    def __init__(
        self,
        *,
        config: SwimConfig,
        node_id: NodeId,
        addr: Addr,
        meta: NodeMeta,
        rng: random.Random,
        incarnation: int = 0,
        signer: Callable[[bytes], bytes] | None = None,
        verifier: Callable[[NodeId, bytes, bytes], bool] | None = None,
        cert: bytes = b"",
        admit: Callable[[NodeId, bytes], bool] | None = None,
    ) -> None:
        self._config = config
        self._id = node_id
        self._addr = addr
        self._meta = meta
        self._rng = rng
        self._inc = incarnation
        self._signer = signer
        self._verifier = verifier
        # The security layer: our certificate rides in our own Alive; `admit(node, cert)`
        # vets every other node's certificate before its record's signature is checked.
        self._cert = cert
        self._admit = admit
        self._certs: dict[NodeId, bytes] = {}
        self._table = MemberTable()
        self._self_rec = MemberRecord(node=node_id, addr=addr, meta=meta, incarnation=incarnation,
                                      status=Status.ALIVE, since=0.0)
        self._table.add(self._self_rec)
        self._sign_self()
        self._queue = BroadcastQueue(items_max=config.broadcast_queue_max)
        self._awareness = Awareness(config.awareness_max)
        self._suspicions: dict[NodeId, tuple[Suspicion, int]] = {}
        self._suspicion_tokens: dict[int, NodeId] = {}
        self._probe_list: list[NodeId] = []
        self._in_probe_list: set[NodeId] = set()  # membership only, never iterated
        self._probe_index = 0
        self._eager: deque[NodeId] = deque(maxlen=64)
        self._probe: _Probe | None = None
        self._probe_gen = 0
        self._indirect: dict[int, _Indirect] = {}
        self._knocks: dict[int, Addr] = {}  # stream token of a reconnect knock -> address
        self._reconnect_gen = 0  # token of the live reconnect timer (older ones are stale)
        self._reconnect_hot = False  # a partition is healing: reconnect at the fast pace
        self._hot_until = 0.0  # ... until then, unless fresh evidence pushes it back
        self._revivals: deque[float] = deque(maxlen=REVIVALS_MAX)
        self._looks: dict[int, NodeId] = {}  # seq of a last-look probe -> its suspect
        self._streams: dict[int, tuple[str, int]] = {}
        self._dead: dict[NodeId, float] = {}  # dead (not left) members, by time of death
        self._by_addr: dict[Addr, NodeId] = {}
        self._expelled: set[NodeId] = set()
        self._user_seen: dict[tuple[NodeId, int], None] = {}
        # Members remember (origin, seq) of the broadcasts they delivered. A restarted node
        # must not reuse the numbers of its previous run (they would be taken for copies and
        # dropped), so each run starts at a random point of a 62-bit space.
        self._user_seq = rng.getrandbits(62)
        # (when, message) of the broadcasts sent or gossiped to us lately: push-pull carries
        # them (see SwimConfig.user_recent_max). A node that joins through seeds takes the
        # recent broadcasts of its first exchange as sent before it joined: seen, not
        # delivered (`start`).
        self._user_recent: deque[tuple[float, UserMsg]] = deque(maxlen=max(1, config.user_recent_max))
        self._user_synced = True
        self._seq = 0
        self._token = 0
        self._n_live = 1
        self._seeds: list[Addr] = []
        self._gossip_armed = False
        self._started = False
        self._left = False
        self._heard: dict[NodeId, float] = {}  # last datagram from a suspect member
        self._stale_claim = False  # the message being handled holds an outdated claim about us
        self._gossip_ack = encode(Ack(seq=GOSSIP_SEQ, sender=node_id))  # empty: updates go after it
        self._state_cache: dict[tuple[bool, bool], tuple[int, bytes, bytes]] = {}
        self._state_items: dict[NodeId, tuple[tuple[object, ...], bytes]] = {}
        self._c: dict[str, int] = dict.fromkeys(
            ("msgs_in", "msgs_out", "bytes_in", "bytes_out", "streams_out", "probes",
             "probes_failed", "indirect_probes", "stream_probes_ok", "suspicions",
             "refutations", "deaths_declared", "push_pulls", "late_timers", "last_looks",
             "broadcasts_repaired"), 0)
        self._dropped: dict[str, int] = {}

    # --- properties and queries -------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def incarnation(self) -> int:
        return self._inc

    @property
    def config(self) -> SwimConfig:
        return self._config

    @property
    def local_health(self) -> int:
        return self._awareness.score

    def members(self) -> list[Member]:
        return [self._snapshot(self._table.records[n]) for n in sorted(self._table.records)]

    def member(self, node: NodeId) -> Member | None:
        rec = self._table.get(node)
        return None if rec is None else self._snapshot(rec)

    def status_of(self, node: NodeId) -> Status | None:
        """Cheap lookup (no snapshot) for drivers and checkers."""
        rec = self._table.get(node)
        return None if rec is None else rec.status

    def incarnation_of(self, node: NodeId) -> int | None:
        rec = self._table.get(node)
        return None if rec is None else rec.incarnation

    def checksum(self) -> str:
        return self._table.checksum()

    def statistics(self) -> SwimStatistics:
        counts = {Status.ALIVE: 0, Status.SUSPECT: 0, Status.DEAD: 0, Status.LEFT: 0}
        for rec in self._table.records.values():
            counts[rec.status] += 1
        return SwimStatistics(
            **self._c,
            dropped=tuple(sorted(self._dropped.items())),
            local_health=self._awareness.score,
            members_alive=counts[Status.ALIVE],
            members_suspect=counts[Status.SUSPECT],
            members_dead=counts[Status.DEAD] + counts[Status.LEFT],
            queue_len=len(self._queue),
        )

    def _snapshot(self, rec: MemberRecord) -> Member:
        return Member(node=rec.node, addr=rec.addr, meta=rec.meta, incarnation=rec.incarnation,
                      status=rec.status, since=rec.since)

    # --- public calls -------------------------------------------------------------------

    def start(self, now: float, seeds: Sequence[Addr]) -> list[Effect]:
        """Arm the timers and join through `seeds` (a push-pull with each of them)."""
        if self._started:
            raise LocalProtocolError("Swim.start() was already called; create a new Swim to rejoin")
        self._started = True
        self._self_rec.since = now
        self._seeds = [s for s in dict.fromkeys(seeds) if s != self._addr]
        out: list[Effect] = []
        cfg = self._config
        # Staggered first ticks so that a cluster started at once does not probe in lockstep.
        out.append(SetTimer(now + self._rng.uniform(0, cfg.probe_interval_s), Timer(_PROBE, self._probe_gen)))
        if cfg.push_pull_interval_s > 0:
            first = push_pull_scale_s(cfg.push_pull_interval_s, self._n_live, cfg.push_pull_scale_nodes)
            out.append(SetTimer(now + self._rng.uniform(0, first), Timer(_PUSH_PULL)))
        if cfg.reconnect_per_s > 0:
            out.append(SetTimer(now + self._rng.uniform(0, self._reconnect_interval_s()), Timer(_RECONNECT)))
        self._user_synced = not self._seeds
        for seed in self._seeds:
            self._push_pull(now, seed, join=True, out=out)
        return out

    def preload(self, now: float, states: Sequence[MemberState]) -> list[Effect]:
        """Start from a trusted snapshot of the membership (a saved view, or a simulator's
        warm start) as if a push-pull had already happened: no events, nothing gossiped.
        Only alive members are taken; signatures are checked when a verifier is set."""
        table = self._table
        for st in states:
            if st.node == self._id or st.status is not Status.ALIVE or table.get(st.node):
                continue
            if self._admit is not None and not self._admit(st.node, st.cert):
                self._drop("not_admitted")
                continue
            if self._verifier is not None and not self._verifier(st.node, alive_signing_bytes(st), st.signature):
                self._drop("bad_signature")
                continue
            if st.cert:
                self._certs[st.node] = st.cert
            table.add(MemberRecord(node=st.node, addr=st.addr, meta=st.meta, incarnation=st.incarnation,
                                   status=Status.ALIVE, since=now, signature=st.signature))
            self._by_addr[st.addr] = st.node
            self._n_live += 1
            self._in_probe_list.add(st.node)
            self._probe_list.append(st.node)
        self._rng.shuffle(self._probe_list)
        return []

    def on_datagram(self, now: float, src: Addr, data: bytes) -> list[Effect]:
        out: list[Effect] = []
        c = self._c
        c["msgs_in"] += 1
        c["bytes_in"] += len(data)
        try:
            msg = decode(data)
        except DecodeError:
            self._drop("decode")
            return out
        t = type(msg)
        if t is PushPull:
            self._drop("push_pull_datagram")
            return out
        if msg.sender == self._id:
            self._drop("own_sender")
            return out
        self._stale_claim = False
        self._apply_updates(now, msg.updates, out)  # type: ignore[union-attr]
        sender_rec = self._table.get(msg.sender)
        if sender_rec is None:
            self._drop("unknown_sender")
            return out
        if sender_rec.status is Status.SUSPECT:
            self._heard[sender_rec.node] = now
        if self._stale_claim and self._config.tell_dead_senders and t is not Ping:
            # The sender suspects an older incarnation of us: tell it the current one.
            assert self._self_rec.alive_data is not None
            self._send(src, with_updates(self._gossip_ack, [self._self_rec.alive_data]), out)
        if t is Ping:
            self._on_ping(now, src, msg, sender_rec, out)  # type: ignore[arg-type]
        elif t is Ack:
            self._on_ack(now, msg, out)  # type: ignore[arg-type]
        elif t is PingReq:
            self._on_ping_req(now, src, msg, out)  # type: ignore[arg-type]
        elif t is Nack:
            probe = self._probe
            if probe is not None and not probe.done and probe.seq == msg.seq:  # type: ignore[union-attr]
                probe.nacks += 1
        return out

    def on_stream_request(self, now: float, src: Addr, data: bytes) -> tuple[bytes | None, list[Effect]]:
        out: list[Effect] = []
        c = self._c
        c["msgs_in"] += 1
        c["bytes_in"] += len(data)
        try:
            msg = decode(data, bytes_max=STREAM_MESSAGE_BYTES_MAX)
        except DecodeError:
            self._drop("decode")
            return None, out
        if type(msg) is Ping:
            if msg.target != self._id:
                self._drop("wrong_target")
                return None, out
            self._apply_updates(now, msg.updates, out)
            return encode(Ack(seq=msg.seq, sender=self._id)), out
        if type(msg) is PushPull and not msg.reply:
            if msg.sender == self._id:
                self._drop("own_sender")
                return None, out
            self._c["push_pulls"] += 1
            self._take_recent(now, msg.user_state, out)
            if not msg.states and msg.checksum and not msg.join:
                # A checksum-only opening: answer with our checksum when the views agree,
                # with our whole state otherwise (the opener then pushes its own if needed).
                if msg.checksum == self._checksum_bytes():
                    return encode(PushPull(sender=self._id, join=False, reply=True,
                                           checksum=msg.checksum, user_state=self._recent_users(now))), out
                return self._encode_state(now, join=False, reply=True), out
            self._merge(now, msg, out)
            return self._encode_state(now, join=False, reply=True), out
        self._drop("bad_stream_request")
        return None, out

    def on_stream_reply(self, now: float, token: int, data: bytes) -> list[Effect]:
        out: list[Effect] = []
        call = self._streams.pop(token, None)
        knock_addr = self._knocks.pop(token, None)
        if call is None:
            return out
        self._c["msgs_in"] += 1
        self._c["bytes_in"] += len(data)
        try:
            msg = decode(data, bytes_max=STREAM_MESSAGE_BYTES_MAX)
        except DecodeError:
            self._drop("decode")
            return out
        kind, seq = call
        if kind == "probe" and type(msg) is Ack:
            probe = self._probe
            if probe is not None and probe.seq == seq and not probe.done and not probe.acked:
                probe.acked = True
                self._c["stream_probes_ok"] += 1
        elif kind == "knock" and type(msg) is Ack:
            if knock_addr is not None and not self._left:
                self._push_pull(now, knock_addr, join=False, out=out)
                self._heat(now, out)
        elif kind == "push_pull" and type(msg) is PushPull and msg.reply:
            self._c["push_pulls"] += 1
            self._take_recent(now, msg.user_state, out)
            if msg.states:
                self._merge(now, msg, out)
                # The peer sent its state because ours differed; if it still differs, it
                # lacks something we know: push ours (a full exchange, as memberlist does).
                # Only once per exchange (leg 0): views that cannot agree (a member one
                # side will not admit) must not make two nodes push forever.
                if (self._config.push_pull_checksum_first and seq == 0 and msg.checksum
                        and msg.checksum != self._checksum_bytes()):
                    rec = self._table.get(msg.sender)
                    if rec is not None and rec.status in _LIVE:
                        self._push_pull(now, rec.addr, join=False, out=out, leg=1)
        else:
            self._drop("bad_stream_reply")
        return out

    def on_stream_failed(self, now: float, token: int, *, refused: bool = False) -> list[Effect]:
        """A stream request failed. `refused`: the peer's host actively refused the
        connection (nothing listens there), which the driver knows from the socket error."""
        out: list[Effect] = []
        self._knocks.pop(token, None)
        call = self._streams.pop(token, None)
        if call is None:
            return out
        self._drop("stream_refused" if refused else "stream_failed")
        if refused and call[0] == "probe":
            probe = self._probe
            if probe is not None and probe.seq == call[1] and not probe.acked:
                probe.refused = True
                self._refused(now, probe.target, out)
        return out

    def _refused(self, now: float, node: NodeId, out: list[Effect]) -> None:
        """Hard evidence that `node`'s process is gone: cap our suspicion of it."""
        cap_s = self._config.refused_suspicion_s
        entry = self._suspicions.get(node)
        if cap_s <= 0 or entry is None:
            return
        susp = entry[0]
        before = susp.deadline
        susp.cap_at(now + cap_s)
        if susp.deadline < before:
            self._arm_suspicion(node, susp, out)

    def on_timer(self, now: float, timer: Timer) -> list[Effect]:
        out: list[Effect] = []
        kind, token = timer.kind, timer.token
        if kind == _PROBE:
            if token == self._probe_gen:
                self._probe_tick(now, out)
        elif kind == _PROBE_TIMEOUT:
            self._probe_timeout(now, token, out)
        elif kind == _PROBE_END:
            probe = self._probe
            if probe is not None and probe.seq == token and not probe.done:
                if self._late(now, probe.end_at):
                    # We were paused: the ack may be waiting in our inbox. Read it first.
                    probe.end_at = now + self._config.probe_timeout_s
                    out.append(SetTimer(probe.end_at, Timer(_PROBE_END, token)))
                else:
                    self._probe_end(now, probe, out)
        elif kind == _INDIRECT_TIMEOUT:
            pending = self._indirect.pop(token, None)
            if pending is not None and pending.nack:
                self._send(pending.origin_addr, self._pack(encode(Nack(seq=pending.origin_seq, sender=self._id)), []), out)
        elif kind == _SUSPICION:
            self._suspicion_fired(now, token, out)
        elif kind == _GOSSIP:
            self._gossip(now, out)
        elif kind == _PUSH_PULL:
            self._periodic_push_pull(now, out)
        elif kind == _RECONNECT:
            if token == self._reconnect_gen:
                self._reconnect(now, out)
        return out

    def broadcast(self, now: float, payload: bytes) -> list[Effect]:
        """Disseminate an application payload to every member (at most once each)."""
        self._user_seq += 1
        try:
            msg = UserMsg(origin=self._id, seq=self._user_seq, payload=payload)
        except ValueError as exc:
            raise LocalProtocolError(f"cannot broadcast: {exc}") from None
        self._remember_user((self._id, self._user_seq))
        self._note_recent(now, msg)
        out: list[Effect] = []
        self._enqueue(now, ("u", self._id, self._user_seq), encode_update(msg), False, out)
        return out

    def update_metadata(self, now: float, meta: NodeMeta) -> list[Effect]:
        if type(meta) is not NodeMeta:
            raise LocalProtocolError("update_metadata() takes a NodeMeta")
        self._meta = meta
        self._self_rec.meta = meta
        out: list[Effect] = []
        self._bump_incarnation(now, self._inc + 1, out)
        out.append(MemberEvent(EventKind.UPDATED, self._snapshot(self._self_rec)))
        return out

    def leave(self, now: float) -> list[Effect]:
        """Leave gracefully: announce a signed Dead about ourselves; stop probing."""
        out: list[Effect] = []
        if self._left:
            return out
        self._left = True
        self._probe_gen += 1
        dead = Dead(node=self._id, incarnation=self._inc, by=self._id)
        if self._signer is not None:
            dead = dataclasses.replace(dead, signature=self._signer(dead_signing_bytes(dead)))
        self._table.set_state(self._self_rec, self._inc, Status.LEFT, now)
        self._enqueue(now, ("m", self._id), encode_update(dead), True, out)
        return out

    def expel(self, now: float, node: NodeId, reason: str) -> list[Effect]:
        """The security layer revoked `node`: mark it dead everywhere and never re-admit it."""
        if node == self._id:
            raise LocalProtocolError("a node cannot expel itself; call leave() instead")
        out: list[Effect] = []
        self._expelled.add(node)
        rec = self._table.get(node)
        if rec is not None and rec.status in _LIVE:
            self._on_dead(now, Dead(node=node, incarnation=rec.incarnation, by=self._id), out)
        self._drop(f"expelled:{reason}"[:40])
        return out

    # --- helpers ------------------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + 1

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _next_token(self) -> int:
        self._token += 1
        return self._token

    def _send(self, addr: Addr, data: bytes, out: list[Effect]) -> None:
        c = self._c
        c["msgs_out"] += 1
        c["bytes_out"] += len(data)
        out.append(SendDatagram(addr, data))

    def _transmit_limit(self) -> int:
        return retransmit_limit(self._config.retransmit_mult, self._n_live)

    def _spends(self, rec: MemberRecord) -> bool:
        """Whether updates piggybacked to `rec` spend their transmit budget: always in
        memberlist; with `budget_alive_only`, only when we hold `rec` alive (a suspect or
        recently dead member is often unreachable: a copy to it is a bonus)."""
        return not self._config.budget_alive_only or rec.status is Status.ALIVE

    def _pack(self, empty: bytes, first: list[bytes], *, count: bool = True) -> bytes:
        """`empty` (a message with no updates) plus `first`, then queued updates that fit
        (`count`: the copies spend the updates' transmit budget)."""
        budget = self._config.packet_bytes_max - len(empty) - 2
        for data in first:
            budget -= len(data)
        items = list(first)
        if len(self._queue) and budget > 0:
            items += self._queue.take(budget, UPDATES_MAX - len(items), self._transmit_limit(), count=count)
        return with_updates(empty, items)

    def _enqueue(self, now: float, key: object, data: bytes, urgent: bool, out: list[Effect]) -> None:
        self._queue.push(key, data, urgent=urgent and self._config.urgent_first)
        cfg = self._config
        if not self._gossip_armed and cfg.gossip_nodes > 0:
            self._gossip_armed = True
            out.append(SetTimer(now + cfg.gossip_interval_s, Timer(_GOSSIP)))

    def _remember_user(self, key: tuple[NodeId, int]) -> None:
        seen = self._user_seen
        seen[key] = None
        if len(seen) > self._config.user_seen_max:
            del seen[next(iter(seen))]

    def _note_recent(self, now: float, msg: UserMsg) -> None:
        if self._config.user_recent_max:
            self._user_recent.append((now, msg))

    def _recent_users(self, now: float) -> bytes:
        """The `user_state` of our next PushPull: the recent broadcasts still in the window."""
        recent, horizon = self._user_recent, now - self._config.user_recent_s
        while recent and recent[0][0] < horizon:
            recent.popleft()
        return encode_recent_users([m for _, m in recent]) if self._config.user_recent_max else b""

    def _take_recent(self, now: float, user_state: bytes, out: list[Effect]) -> None:
        """Deliver the broadcasts of a peer's PushPull that we have not seen, and gossip
        them on like any other (a member that learns one this way first must still pass it
        on, or gossip loses fan-out to the repair). They are not kept as our own recent
        ones, so push-pull carries a broadcast only from members that had it by gossip."""
        if not self._config.user_recent_max:
            return
        try:
            msgs = decode_recent_users(user_state)
        except DecodeError:
            self._drop("recent_users")
            return
        deliver, self._user_synced = self._user_synced, True
        for u in msgs:
            if deliver:
                self._on_user(now, u, out, repaired=True)
            elif u.origin != self._id:
                self._remember_user((u.origin, u.seq))  # sent before we joined: seen

    def _sign_self(self) -> None:
        alive = Alive(node=self._id, incarnation=self._inc, addr=self._addr, meta=self._meta,
                      cert=self._cert)
        if self._signer is not None:
            alive = dataclasses.replace(alive, signature=self._signer(alive_signing_bytes(alive)))
        self._self_rec.signature = alive.signature
        self._self_rec.alive_data = encode_update(alive)

    def _bump_incarnation(self, now: float, incarnation: int, out: list[Effect]) -> None:
        self._inc = incarnation
        self._table.set_state(self._self_rec, incarnation, Status.ALIVE, now)
        self._sign_self()
        assert self._self_rec.alive_data is not None
        self._enqueue(now, ("m", self._id), self._self_rec.alive_data, True, out)

    def _refute(self, now: float, claimed: int, out: list[Effect]) -> None:
        """Someone claims we are suspect/dead (or has a stale record of us): outbid it."""
        self._c["refutations"] += 1
        self._awareness.apply_delta(1)
        self._bump_incarnation(now, max(self._inc, claimed) + 1, out)

    def _set_live_count(self, old: Status | None, new: Status) -> None:
        was = old in _LIVE
        now_live = new in _LIVE
        if was != now_live:
            self._n_live += 1 if now_live else -1

    def _add_to_probe_list(self, node: NodeId) -> None:
        if node in self._in_probe_list:
            return
        self._in_probe_list.add(node)
        lst = self._probe_list
        lst.append(node)
        # memberlist: insert at a random position so new members are probed at random times.
        j = self._rng.randrange(len(lst))
        lst[-1], lst[j] = lst[j], lst[-1]

    # --- updates ------------------------------------------------------------------------

    def _apply_updates(self, now: float, updates: tuple[object, ...], out: list[Effect]) -> None:
        for u in updates:
            t = type(u)
            if t is Alive:
                self._on_alive(now, u, out)  # type: ignore[arg-type]
            elif t is Suspect:
                self._on_suspect(now, u, out)  # type: ignore[arg-type]
            elif t is Dead:
                self._on_dead(now, u, out)  # type: ignore[arg-type]
            elif t is UserMsg:
                self._on_user(now, u, out)  # type: ignore[arg-type]

    def _on_alive(self, now: float, a: Alive, out: list[Effect], data: bytes | None = None) -> None:
        node = a.node
        if node == self._id:
            if self._left:
                return
            if a.incarnation > self._inc or (
                a.incarnation == self._inc and (a.addr != self._addr or a.meta != self._meta)
            ):
                self._refute(now, a.incarnation, out)
            return
        rec = self._table.get(node)
        old = None if rec is None else rec.status
        new = transition(old, 0 if rec is None else rec.incarnation, Kind.ALIVE, a.incarnation)
        if new is None:
            return
        if node in self._expelled:
            self._drop("expelled")
            return
        if self._admit is not None and not self._admit(node, a.cert):
            self._drop("not_admitted")
            return
        if self._verifier is not None and not self._verifier(node, alive_signing_bytes(a), a.signature):
            self._drop("bad_signature")
            return
        if a.cert:
            self._certs[node] = a.cert
        if data is None:
            data = encode_update(a)
        if rec is None:
            rec = MemberRecord(node=node, addr=a.addr, meta=a.meta, incarnation=a.incarnation,
                               status=Status.ALIVE, since=now, signature=a.signature)
            self._table.add(rec)
            self._by_addr[a.addr] = node
            self._n_live += 1
            self._add_to_probe_list(node)
            out.append(MemberEvent(EventKind.JOINED, self._snapshot(rec)))
            self._enqueue(now, ("m", node), data, False, out)
            return
        changed = rec.meta != a.meta or rec.addr != a.addr
        if rec.addr != a.addr:
            self._by_addr.pop(rec.addr, None)
            self._by_addr[a.addr] = node
        rec.addr, rec.meta, rec.signature = a.addr, a.meta, a.signature
        self._table.set_state(rec, a.incarnation, Status.ALIVE, now)
        self._set_live_count(old, Status.ALIVE)
        self._clear_suspicion(node)
        self._dead.pop(node, None)
        self._add_to_probe_list(node)
        if old is Status.SUSPECT:
            kind: EventKind | None = EventKind.ALIVE
        elif old in (Status.DEAD, Status.LEFT):
            kind = EventKind.JOINED
            self._revived(now, out)
        else:
            kind = EventKind.UPDATED if changed else None
        if kind is not None:
            out.append(MemberEvent(kind, self._snapshot(rec)))
        self._enqueue(now, ("m", node), data, old is not Status.ALIVE, out)

    def _on_suspect(self, now: float, s: Suspect, out: list[Effect]) -> None:
        node = s.node
        if node == self._id:
            if not self._left and s.incarnation >= self._inc:
                self._refute(now, s.incarnation, out)
            elif s.incarnation < self._inc:
                self._stale_claim = True
            return
        rec = self._table.get(node)
        if rec is None:
            return
        if rec.status is Status.SUSPECT and s.incarnation == rec.incarnation:
            entry = self._suspicions.get(node)
            if entry is not None and entry[0].confirm(s.by, now):
                self._arm_suspicion(node, entry[0], out)
                self._enqueue(now, ("m", node), encode_update(s), True, out)
            return
        new = transition(rec.status, rec.incarnation, Kind.SUSPECT, s.incarnation)
        if new is None:
            return
        old = rec.status
        self._table.set_state(rec, s.incarnation, Status.SUSPECT, now)
        self._set_live_count(old, Status.SUSPECT)
        self._c["suspicions"] += 1
        cfg = self._config
        n = self._n_live
        k = cfg.k if n - 2 >= cfg.k else 0
        min_s = max(cfg.suspicion_floor_s, suspicion_timeout_s(cfg.suspicion_mult, n, cfg.probe_interval_s))
        susp = Suspicion(start=now, by=s.by, k=k, min_s=min_s,
                         max_s=cfg.suspicion_max_timeout_mult * min_s)
        self._clear_suspicion(node)
        self._arm_suspicion(node, susp, out)
        if cfg.eager_suspect_probe and s.by != self._id:
            self._eager.append(node)
        out.append(MemberEvent(EventKind.SUSPECT, self._snapshot(rec)))
        self._enqueue(now, ("m", node), encode_update(s), True, out)

    def _arm_suspicion(self, node: NodeId, susp: Suspicion, out: list[Effect]) -> None:
        old = self._suspicions.get(node)
        if old is not None:
            self._suspicion_tokens.pop(old[1], None)
        token = self._next_token()
        self._suspicions[node] = (susp, token)
        self._suspicion_tokens[token] = node
        out.append(SetTimer(susp.deadline, Timer(_SUSPICION, token)))

    def _clear_suspicion(self, node: NodeId) -> None:
        self._heard.pop(node, None)
        entry = self._suspicions.pop(node, None)
        if entry is not None:
            self._suspicion_tokens.pop(entry[1], None)

    def _late(self, now: float, due: float) -> bool:
        """A timer that fires well after its time means this node was paused (GC, swap,
        overload); Lifeguard's lesson is to distrust our own view then. Counts in local
        health."""
        if not self._config.defer_late_timers or now - due <= LATE_TIMER_S:
            return False
        self._awareness.apply_delta(1)
        self._c["late_timers"] += 1
        return True

    def _suspicion_fired(self, now: float, token: int, out: list[Effect]) -> None:
        node = self._suspicion_tokens.get(token)
        if node is None:
            return
        susp = self._suspicions[node][0]
        if self._late(now, susp.deadline):
            # Paused past the deadline: a refutation may be in the inbox; look before acting.
            susp.deadline = now + self._config.probe_timeout_s
            self._arm_suspicion(node, susp, out)
            return
        cfg = self._config
        if (cfg.proof_of_life or cfg.last_look) and self._heard.get(node, -1.0) >= susp.start:
            # It spoke to us since the suspicion began: alive, just not refuted yet. Wait
            # again and probe it with the suspicion first, so that it refutes.
            susp.start = now
            susp.deadline = now + susp.min_s
            susp.last_look = False
            self._arm_suspicion(node, susp, out)
            self._eager.append(node)
            return
        if cfg.last_look and not susp.last_look:
            rec = self._table.get(node)
            if rec is not None and rec.status is Status.SUSPECT:
                susp.last_look = True
                self._last_look(now, rec, out)
                susp.deadline = now + cfg.probe_timeout_s
                self._arm_suspicion(node, susp, out)
                return
        del self._suspicion_tokens[token]
        self._suspicions.pop(node, None)
        self._heard.pop(node, None)
        rec = self._table.get(node)
        if rec is None or rec.status is not Status.SUSPECT:
            return
        self._c["deaths_declared"] += 1
        self._on_dead(now, Dead(node=node, incarnation=rec.incarnation, by=self._id), out)

    def _last_look(self, now: float, rec: MemberRecord, out: list[Effect]) -> None:
        """One more probe of a suspect whose time is up, direct (carrying the suspicion, so
        that a live suspect refutes) and through helpers; any answer is proof of life."""
        looks = self._looks
        if len(looks) >= self._config.indirect_pending_max:
            del looks[next(iter(looks))]  # oldest first: its verdict is long past
        seq = self._next_seq()
        looks[seq] = rec.node
        self._c["last_looks"] += 1
        buddy = [encode_update(Suspect(node=rec.node, incarnation=rec.incarnation, by=self._id))]
        self._send(rec.addr, self._pack(encode(Ping(seq=seq, sender=self._id, target=rec.node)), buddy,
                                        count=self._spends(rec)), out)
        for h in self._random_live(self._config.indirect_checks, rec.node):
            req = PingReq(seq=seq, sender=self._id, target=rec.node, target_addr=rec.addr, nack=False)
            self._send(h.addr, self._pack(encode(req), []), out)

    def _on_dead(self, now: float, d: Dead, out: list[Effect]) -> None:
        node = d.node
        if node == self._id:
            if not self._left and d.incarnation >= self._inc:
                self._refute(now, d.incarnation, out)
            elif d.incarnation < self._inc:
                self._stale_claim = True
            return
        rec = self._table.get(node)
        if rec is None:
            return
        leave = d.by == node
        new = transition(rec.status, rec.incarnation, Kind.LEAVE if leave else Kind.DEAD, d.incarnation)
        if new is None:
            return
        if leave and self._verifier is not None and not self._verifier(node, dead_signing_bytes(d), d.signature):
            self._drop("bad_signature")
            return
        old = rec.status
        self._table.set_state(rec, d.incarnation, new, now)
        self._set_live_count(old, new)
        self._clear_suspicion(node)
        if new is Status.DEAD:
            self._dead[node] = now
        out.append(MemberEvent(EventKind.LEFT if leave else EventKind.DEAD, self._snapshot(rec)))
        self._enqueue(now, ("m", node), encode_update(d), True, out)

    def _on_user(self, now: float, u: UserMsg, out: list[Effect], *, repaired: bool = False) -> None:
        """Deliver a broadcast not seen before and gossip it on. One that came from a
        push-pull (`repaired`) is counted, and not kept among our own recent ones."""
        key = (u.origin, u.seq)
        if key in self._user_seen or u.origin == self._id:
            return
        self._remember_user(key)
        if repaired:
            self._c["broadcasts_repaired"] += 1
        else:
            self._note_recent(now, u)
        out.append(UserBroadcast(u.origin, u.payload))
        self._enqueue(now, ("u", u.origin, u.seq), encode_update(u), False, out)

    # --- messages -----------------------------------------------------------------------

    def _on_ping(self, now: float, src: Addr, p: Ping, sender: MemberRecord, out: list[Effect]) -> None:
        if p.target != self._id:
            self._drop("wrong_target")
            return
        first: list[bytes] = []
        if self._config.tell_dead_senders:
            if sender.status in (Status.DEAD, Status.LEFT):
                first.append(encode_update(Dead(node=sender.node, incarnation=sender.incarnation, by=self._id)))
            if self._stale_claim and self._self_rec.alive_data is not None:
                first.append(self._self_rec.alive_data)
        self._send(src, self._pack(encode(Ack(seq=p.seq, sender=self._id)), first), out)

    def _on_ack(self, now: float, a: Ack, out: list[Effect]) -> None:
        if a.seq == GOSSIP_SEQ:
            return
        looked = self._looks.pop(a.seq, None)
        if looked is not None:
            if looked in self._suspicions:  # an answer to a last look, maybe via a helper
                self._heard[looked] = now
            return
        pending = self._indirect.pop(a.seq, None)
        if pending is not None:
            ack = encode(Ack(seq=pending.origin_seq, sender=self._id))
            self._send(pending.origin_addr, self._pack(ack, []), out)
            return
        probe = self._probe
        if probe is not None and probe.seq == a.seq and not probe.done and not probe.acked:
            probe.acked = True
            if now <= probe.timeout_at:
                self._awareness.apply_delta(-1)

    def _on_ping_req(self, now: float, src: Addr, r: PingReq, out: list[Effect]) -> None:
        if r.target == self._id:
            self._drop("wrong_target")
            return
        if len(self._indirect) >= self._config.indirect_pending_max:
            self._drop("indirect_overload")
            return
        seq = self._next_seq()
        self._indirect[seq] = _Indirect(src, r.seq, r.nack)
        ping = encode(Ping(seq=seq, sender=self._id, target=r.target))
        self._send(r.target_addr, self._pack(ping, []), out)
        out.append(SetTimer(now + self._config.probe_timeout_s, Timer(_INDIRECT_TIMEOUT, seq)))

    # --- probing ------------------------------------------------------------------------

    def _pick_target(self, now: float) -> MemberRecord | None:
        table = self._table
        while self._eager:
            rec = table.get(self._eager.popleft())
            if rec is not None and rec.status is Status.SUSPECT:
                return rec
        lst = self._probe_list
        for _ in range(len(lst) + 1):
            if self._probe_index >= len(lst):
                self._reset_probe_list(now)
                lst = self._probe_list
                if not lst:
                    return None
            node = lst[self._probe_index]
            self._probe_index += 1
            rec = table.get(node)
            if rec is not None and rec.status in _LIVE:
                return rec
        return None

    def _reset_probe_list(self, now: float) -> None:
        """End of a round: forget long-dead members, keep live ones, reshuffle."""
        now_reclaim = self._config.member_reclaim_s
        keep: list[NodeId] = []
        for node in self._probe_list:
            rec = self._table.get(node)
            if rec is not None and rec.status in _LIVE:
                keep.append(node)
            else:
                self._in_probe_list.discard(node)
        self._rng.shuffle(keep)
        self._probe_list = keep
        self._probe_index = 0
        if now_reclaim > 0:
            self._reap(now)

    def _reap(self, now: float) -> None:
        for node in [n for n, t in self._dead.items() if now - t > self._config.member_reclaim_s]:
            del self._dead[node]
            rec = self._table.get(node)
            if rec is not None and rec.status is Status.DEAD:
                self._by_addr.pop(rec.addr, None)
                self._table.remove(node)
                self._certs.pop(node, None)

    def _probe_tick(self, now: float, out: list[Effect]) -> None:
        if self._left:
            return
        cfg = self._config
        interval = self._awareness.scale(cfg.probe_interval_s)
        self._probe_gen += 1
        out.append(SetTimer(now + interval, Timer(_PROBE, self._probe_gen)))
        probe = self._probe
        if probe is not None and not probe.done:
            if self._late(now, probe.end_at):
                probe.done = True  # paused meanwhile: no verdict on a probe we could not watch
            else:
                self._probe_end(now, probe, out)
        rec = self._pick_target(now)
        if rec is None:
            return
        self._c["probes"] += 1
        seq = self._next_seq()
        self._probe = _Probe(seq, rec.node, rec.incarnation, now + cfg.probe_timeout_s, now + interval)
        first: list[bytes] = []
        if cfg.buddy and rec.status is Status.SUSPECT:
            first.append(encode_update(Suspect(node=rec.node, incarnation=rec.incarnation, by=self._id)))
        self._send(rec.addr, self._pack(encode(Ping(seq=seq, sender=self._id, target=rec.node)), first,
                                        count=self._spends(rec)), out)
        out.append(SetTimer(now + cfg.probe_timeout_s, Timer(_PROBE_TIMEOUT, seq)))
        out.append(SetTimer(now + interval, Timer(_PROBE_END, seq)))

    def _random_live(self, count: int, exclude: NodeId | None, dead_window_s: float = -1.0,
                     now: float = 0.0) -> list[MemberRecord]:
        """Up to `count` distinct random members that are alive (or suspect, or dead for
        less than `dead_window_s`), never self or `exclude`; rejection sampling keeps it
        O(count) on large tables."""
        lst = self._probe_list
        picked: list[MemberRecord] = []
        if not lst or count <= 0:
            return picked
        seen: set[NodeId] = set()
        rng = self._rng
        table = self._table
        for _ in range(3 * count + 3):
            node = lst[rng.randrange(len(lst))]
            if node in seen or node == exclude:
                continue
            seen.add(node)
            rec = table.get(node)
            if rec is None:
                continue
            ok = rec.status is Status.ALIVE if dead_window_s < 0 else (
                rec.status in _LIVE or (rec.status is Status.DEAD and now - rec.since < dead_window_s))
            if ok:
                picked.append(rec)
                if len(picked) >= count:
                    break
        return picked

    def _probe_timeout(self, now: float, seq: int, out: list[Effect]) -> None:
        probe = self._probe
        if probe is None or probe.seq != seq or probe.acked or probe.done:
            return
        target = self._table.get(probe.target)
        if target is None:
            return
        cfg = self._config
        helpers = self._random_live(cfg.indirect_checks, probe.target)
        for h in helpers:
            req = encode(PingReq(seq=seq, sender=self._id, target=probe.target, target_addr=target.addr, nack=True))
            self._send(h.addr, self._pack(req, []), out)
        self._c["indirect_probes"] += len(helpers)
        probe.expected_nacks = len(helpers)
        if cfg.stream_fallback:
            token = self._next_token()
            self._streams[token] = ("probe", seq)
            self._c["streams_out"] += 1
            timeout = max(0.001, self._awareness.scale(cfg.probe_interval_s) - cfg.probe_timeout_s)
            out.append(SendStream(target.addr, encode(Ping(seq=seq, sender=self._id, target=probe.target)), token, timeout))

    def _probe_end(self, now: float, probe: _Probe, out: list[Effect]) -> None:
        probe.done = True
        if probe.acked:
            return
        self._c["probes_failed"] += 1
        if probe.expected_nacks > 0:
            self._awareness.apply_delta(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._awareness.apply_delta(1)
        rec = self._table.get(probe.target)
        if rec is None or rec.status not in _LIVE:
            return
        self._on_suspect(now, Suspect(node=probe.target, incarnation=probe.incarnation, by=self._id), out)
        if probe.refused:
            self._refused(now, probe.target, out)

    # --- gossip, push-pull, reconnect ------------------------------------------------------

    def _gossip(self, now: float, out: list[Effect]) -> None:
        cfg = self._config
        self._gossip_armed = False
        if not len(self._queue):
            return
        targets = self._random_live(cfg.gossip_nodes, None, cfg.gossip_to_dead_s, now)
        empty = self._gossip_ack
        for rec in targets:
            if not len(self._queue):
                break
            data = self._pack(empty, [], count=self._spends(rec))
            if len(data) > len(empty):
                self._send(rec.addr, data, out)
        if len(self._queue):
            self._gossip_armed = True
            out.append(SetTimer(now + cfg.gossip_interval_s, Timer(_GOSSIP)))

    def _encode_state(self, now: float, *, join: bool, reply: bool) -> bytes:
        """Our full state as a PushPull; cached until the table or the recent broadcasts change."""
        version = self._table.version
        recent = self._recent_users(now)
        cached = self._state_cache.get((join, reply))
        if cached is not None and cached[0] == version and cached[1] == recent:
            return cached[2]
        # One encoded item per member, re-encoded only when the member changed (with 1,000
        # members a full encode is ~20 ms; push-pulls and reconnects would dominate).
        old_items = self._state_items
        items: dict[NodeId, tuple[tuple[object, ...], bytes]] = {}
        for r in self._table.records.values():
            cert = self._cert if r.node == self._id else self._certs.get(r.node, b"")
            key = (r.incarnation, r.status, r.addr, r.meta, r.signature, cert)
            hit = old_items.get(r.node)
            if hit is None or hit[0] != key:
                hit = (key, encode_member_state(MemberState(
                    node=r.node, incarnation=r.incarnation, addr=r.addr, meta=r.meta,
                    status=r.status, signature=r.signature, cert=cert)))
            items[r.node] = hit
        self._state_items = items
        body = encode_push_pull(sender=self._id, join=join, reply=reply,
                                state_items=[item for _, item in items.values()], user_state=recent,
                                checksum=self._checksum_bytes() if self._config.push_pull_checksum_first else b"")
        self._state_cache[(join, reply)] = (version, recent, body)
        return body

    def _push_pull(self, now: float, addr: Addr, *, join: bool, out: list[Effect], leg: int = 0) -> None:
        token = self._next_token()
        self._streams[token] = ("push_pull", leg)
        self._c["streams_out"] += 1
        out.append(SendStream(addr, self._encode_state(now, join=join, reply=False), token,
                              self._config.stream_timeout_s))

    def _periodic_push_pull(self, now: float, out: list[Effect]) -> None:
        cfg = self._config
        interval = push_pull_scale_s(cfg.push_pull_interval_s, self._n_live, cfg.push_pull_scale_nodes)
        out.append(SetTimer(now + interval, Timer(_PUSH_PULL)))
        if self._left:
            return
        peers = self._random_live(1, None)
        if peers:
            if cfg.push_pull_checksum_first:
                self._push_pull_checksum(now, peers[0].addr, out)
            else:
                self._push_pull(now, peers[0].addr, join=False, out=out)

    def _checksum_bytes(self) -> bytes:
        return bytes.fromhex(self.checksum())[:32]

    def _push_pull_checksum(self, now: float, addr: Addr, out: list[Effect]) -> None:
        """Open a periodic exchange with our checksum only; see `on_stream_request`."""
        token = self._next_token()
        self._streams[token] = ("push_pull", 0)
        self._c["streams_out"] += 1
        data = encode(PushPull(sender=self._id, join=False, reply=False, checksum=self._checksum_bytes(),
                               user_state=self._recent_users(now)))
        out.append(SendStream(addr, data, token, self._config.stream_timeout_s))

    def _revived(self, now: float, out: list[Effect]) -> None:
        """A dead member came back. One is a restart; several within the heal window are
        a partition healing."""
        cfg = self._config
        revivals = self._revivals
        revivals.append(now)
        while revivals and now - revivals[0] > cfg.heal_window_s:
            revivals.popleft()
        need = max(cfg.heal_revivals_min, math.ceil(cfg.heal_revivals_frac * self._n_live))
        if len(revivals) >= min(need, REVIVALS_MAX):
            self._heat(now, out)

    def _heat(self, now: float, out: list[Effect]) -> None:
        """Evidence that a partition healed (a member we or the peer believed dead is
        alive). Exchange state every `reconnect_min_interval_s` until `heal_window_s` passes
        without new evidence; every node that sees the heal does the same, so the merge
        spreads like an epidemic of push-pulls."""
        cfg = self._config
        if cfg.reconnect_per_s <= 0:
            return
        self._hot_until = now + cfg.heal_window_s
        if self._reconnect_hot:
            return
        self._reconnect_hot = True
        # What the cut made us believe about ourselves and others is stale now: the local
        # health it raised (probes through helpers on the far side went unanswered) would
        # keep our probes slow for tens of seconds, and a probe still in flight from before
        # the heal would end in a suspicion of a member we can reach again. Drop both and
        # probe afresh.
        self._awareness.apply_delta(-self._awareness.score)
        probe = self._probe
        if probe is not None and not probe.done and not probe.acked:
            probe.done = True
            self._probe_gen += 1
            out.append(SetTimer(now + self._rng.uniform(0, cfg.probe_interval_s), Timer(_PROBE, self._probe_gen)))
        self._reconnect_gen += 1
        out.append(SetTimer(now + self._config.reconnect_min_interval_s * self._rng.random(),
                            Timer(_RECONNECT, self._reconnect_gen)))

    def _merge(self, now: float, pp: PushPull, out: list[Effect]) -> None:
        table = self._table
        cfg = self._config
        if any(st.node == self._id and st.status is Status.DEAD for st in pp.states):
            self._heat(now, out)  # the peer had us dead: it was cut off from us until now
        told: list[MemberRecord] = []
        healing = cfg.death_notices and now < self._hot_until
        for st in pp.states:
            rec = table.get(st.node)
            status = st.status
            if rec is not None and st.node != self._id:
                # Fast path: nothing new (the common case for a stable cluster).
                if st.incarnation < rec.incarnation:
                    continue
                if st.incarnation == rec.incarnation and (
                    status is Status.ALIVE or rec.status in (Status.DEAD, Status.LEFT)
                ):
                    continue
            if rec is None and st.node != self._id:
                if status in (Status.DEAD, Status.LEFT):
                    if st.node not in self._expelled:
                        self._add_tombstone(now, st)
                    continue
                if status is Status.SUSPECT:  # learn it first, then take the suspicion
                    self._on_alive(now, Alive(node=st.node, incarnation=st.incarnation, addr=st.addr,
                                              meta=st.meta, signature=st.signature, cert=st.cert), out)
            if status is Status.ALIVE:
                self._on_alive(now, Alive(node=st.node, incarnation=st.incarnation, addr=st.addr,
                                          meta=st.meta, signature=st.signature, cert=st.cert), out)
            elif status is Status.LEFT:
                self._on_dead(now, Dead(node=st.node, incarnation=st.incarnation, by=st.node), out)
            elif (healing and rec is not None and rec.status is Status.ALIVE
                  and st.incarnation == rec.incarnation):
                # While a partition heals, the peer was cut off from a member we reach:
                # suspecting it ourselves would only gossip a wrong suspicion. Tell a few
                # such members (they refute); the others hear it from their own exchanges
                # with the peer's side. Outside a heal such a claim is more likely a crash
                # we have not heard of yet, and suspicion is the faster path to the truth.
                told.append(rec)
            else:
                # memberlist: a remote "dead" only makes us suspect, so that the node may refute.
                self._on_suspect(now, Suspect(node=st.node, incarnation=st.incarnation, by=pp.sender), out)
        if len(told) > cfg.death_notices_max:
            told = self._rng.sample(told, cfg.death_notices_max)
        for rec in told:
            claim = encode_update(Suspect(node=rec.node, incarnation=rec.incarnation, by=self._id))
            self._send(rec.addr, with_updates(self._gossip_ack, [claim]), out)

    def _add_tombstone(self, now: float, st: MemberState) -> None:
        """Remember a member we never saw alive as dead/left (no event): views then agree
        with the cluster's, and a stale Alive of an older incarnation cannot revive it."""
        status = Status.LEFT if st.status is Status.LEFT else Status.DEAD
        self._table.add(MemberRecord(node=st.node, addr=st.addr, meta=st.meta, incarnation=st.incarnation,
                                     status=status, since=now, signature=st.signature))
        self._by_addr.setdefault(st.addr, st.node)
        if status is Status.DEAD:
            self._dead[st.node] = now

    def _reconnect_interval_s(self) -> float:
        # One contact about every 1/reconnect_per_s seconds for the whole cluster.
        return max(self._config.reconnect_min_interval_s, self._n_live / self._config.reconnect_per_s)

    def _reconnect(self, now: float, out: list[Effect]) -> None:
        """Push-pull with a random recently dead member (or a seed, if we lost them all):
        if the member is back — a healed partition, a restart — the exchange tells both
        sides at once and every wrongly dead node refutes."""
        cfg = self._config
        if self._reconnect_hot and now >= self._hot_until:
            self._reconnect_hot = False  # no news of a heal for a whole window: slow pace
        hot = self._reconnect_hot
        interval = cfg.reconnect_min_interval_s if hot else self._reconnect_interval_s()
        out.append(SetTimer(now + interval, Timer(_RECONNECT, self._reconnect_gen)))
        if self._left:
            return
        if self._seeds and all(self._status_by_addr(s) not in _LIVE for s in self._seeds):
            self._push_pull(now, self._seeds[self._rng.randrange(len(self._seeds))], join=False, out=out)
            return
        recent = [n for n, t in self._dead.items() if now - t <= cfg.reconnect_window_s]
        if hot and (not recent or self._rng.random() < 0.5):
            # Healing: half of the exchanges go to live members, which carry what their
            # own contacts across the healed cut brought (cheap when the views agree).
            peers = self._random_live(1, None)
            if peers:
                self._push_pull_checksum(now, peers[0].addr, out)
                return
        if recent:
            rec = self._table.get(recent[self._rng.randrange(len(recent))])
            if rec is not None:
                # Knock first (a stream ping): most dead members are really gone, and a
                # full state exchange with them would be wasted. An answer brings the
                # push-pull one round trip later.
                token = self._next_token()
                self._streams[token] = ("knock", 0)
                self._knocks[token] = rec.addr
                self._c["streams_out"] += 1
                ping = encode(Ping(seq=self._next_seq(), sender=self._id, target=rec.node))
                out.append(SendStream(rec.addr, ping, token, cfg.stream_timeout_s))

    def _status_by_addr(self, addr: Addr) -> Status | None:
        node = self._by_addr.get(addr)
        return None if node is None else self.status_of(node)
