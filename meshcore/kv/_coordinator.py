"""The coordinator: any node runs put / delete / get for a client (I/O-free).

A write is stamped with the node's HLC, placed (home replicas from the ring; each home
replica that is down gets a stand-in holding a hint), sent, and completes when the acks
satisfy its consistency level (`write_satisfied`; the counting rules are in `_config`), or
fails with `ConsistencyError` as soon as the level becomes unreachable (refusals) or at the
request timeout. A get asks as many alive home replicas as its level needs (this node first
if it is one, so a get at `one` on a home replica is a local read), and the other alive ones
when one of those refuses or `read_extra_after_s` passes without enough answers; it completes
with the newest version once enough have answered, and pushes that version to every replica
that answered with an older one (read repair), including answers that arrive after
completion, until the timeout.

A hand-off copies a version this node holds but is no longer a home replica of (the ring
changed) to every home replica, with its own stamp, through the write path at level `all`
with no stand-ins: once it completes, each home replica holds that version or a newer one
durably, and the caller may drop its copy. Replicas refuse versions older than `hint_ttl_s`
to it as to any write (anti-entropy among the home replicas moves those); for such a copy
`confirm` reads the key at `all` and completes without error only if a home replica holds
that version or a newer one (else `HandoffPending`): then too the caller may drop it.

Local misuse (unknown namespace, bad key or value, an unplaceable namespace) raises at the
call and changes nothing. Limits: at most `requests_max` requests in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .._types import short_id
from ..errors import ClockSkewError, ConsistencyError, HandoffPending, LocalProtocolError
from ._config import Consistency, KvConfig, acks_required
from ._effects import Completed, KvEffect, KvTimer, Send, SetTimer
from ._hlc import HLC, Stamp
from ._messages import KvMessage, Read, ReadReply, Repair, Status, Write, WriteAck, encode_kv
from ._record import Record, as_key, check_value, newer
from ._view import ClusterView

__all__ = ["Coordinator", "CoordinatorStatistics", "write_satisfied"]


_LEVELS: dict[str, Consistency] = {lv.value: lv for lv in Consistency}


def write_satisfied(level: Consistency, replicas: int, home_acks: int, hint_acks: int, *,
                    sloppy_quorum: bool = True) -> bool:
    """Whether acks from `home_acks` home replicas and `hint_acks` stand-ins meet `level`."""
    if level is Consistency.ONE:
        return home_acks + hint_acks >= 1
    if level is Consistency.QUORUM:
        counted = home_acks + (hint_acks if sloppy_quorum else 0)
        return home_acks >= 1 and counted >= acks_required(level, replicas)
    return home_acks >= replicas


@dataclass
class _WriteReq:
    level: Consistency
    rf: int
    record: Record
    home: set[bytes]  # home replicas asked
    hints: set[bytes]  # stand-ins asked
    home_acks: set[bytes] = field(default_factory=set)
    hint_acks: set[bytes] = field(default_factory=set)
    refused: dict[bytes, str] = field(default_factory=dict)
    handoff: bool = False


@dataclass
class _ReadReq:
    level: Consistency
    rf: int
    namespace: str
    key: bytes
    asked: set[bytes]
    spare: list[bytes]  # alive home replicas not asked yet, in the order to ask them
    replies: dict[bytes, Record | None] = field(default_factory=dict)
    refused: dict[bytes, str] = field(default_factory=dict)
    done: bool = False
    newest: Record | None = None
    confirm: Stamp | None = None  # a hand-off's confirmation: complete ok only if held


@dataclass
class CoordinatorStatistics:
    writes_ok: int = 0
    writes_failed: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    repairs_sent: int = 0
    handoffs_ok: int = 0
    handoffs_failed: int = 0
    late_or_unknown_replies: int = 0
    skewed_replies: int = 0
    reads_extra: int = 0  # gets that asked their other home replicas after read_extra_after_s


class Coordinator:
    """Client-facing half of a node. Use through `KvCore` (which routes messages)."""

    def __init__(self, node_id: bytes, config: KvConfig, hlc: HLC, view: ClusterView) -> None:
        self._me = node_id
        self._config = config
        self._hlc = hlc
        self._view = view
        self._next_id = 1
        self._writes: dict[int, _WriteReq] = {}
        self._reads: dict[int, _ReadReq] = {}
        self.stats = CoordinatorStatistics()
        #: Set by `KvCore`: hands a message meant for this node straight to its own replica
        #: side (no encoding, no trip through the driver). None: send it like any other.
        self.local: Callable[[float, KvMessage], list[KvEffect]] | None = None

    def _new_id(self) -> int:
        if len(self._writes) + len(self._reads) >= self._config.requests_max:
            raise LocalProtocolError(f"{self._config.requests_max} kv requests already in flight: "
                                     "wait for some to complete (back-pressure) or raise requests_max")
        rid = self._next_id
        self._next_id += 1
        return rid

    @staticmethod
    def _level(level: object) -> Consistency:
        if type(level) is str:
            lv = _LEVELS.get(level)
            if lv is not None:
                return lv
        if type(level) is Consistency:
            return level
        raise LocalProtocolError(f"consistency must be 'one', 'quorum' or 'all', got {level!r:.40}")

    # --- writes -------------------------------------------------------------------------

    def write(self, now: float, namespace: object, key: object, value: object,
              level: object) -> tuple[int, list[KvEffect]]:
        """Start a put (value) or a delete (None). Raises on misuse; see the module doc.
        (Parameters typed `object`: what a caller passes is checked here, with this
        module's errors, also when it is compiled; see `meshcore._native`.)"""
        ns = self._view.namespace(namespace)
        k = as_key(key)
        value = check_value(value)
        lv = self._level(level)
        home = self._view.replicas(ns, k)  # PlacementError: nothing stamped, nothing sent
        rid = self._new_id()
        stamp = self._hlc.now(now)
        record = Record(k, value, stamp)
        alive_home = [n for n in home if self._view.is_alive(n)]
        stand_ins = self._view.stand_ins(ns, k) if len(alive_home) < len(home) else {}
        req = _WriteReq(lv, ns.replicas, record, set(alive_home), set(stand_ins.values()))
        best_home = len(alive_home)
        if not write_satisfied(lv, ns.replicas, best_home, len(stand_ins), sloppy_quorum=self._config.sloppy_quorum):
            down = [short_id(n) for n in home if n not in alive_home]
            err = ConsistencyError(
                f"{lv.value} write to {ns.name!r} cannot succeed: home replicas down: "
                f"{', '.join(down)}; stand-ins available: {len(stand_ins)}"
                + (" (hints never count for 'all')" if lv is Consistency.ALL else ""))
            self.stats.writes_failed += 1
            return rid, [Completed(rid, error=err, stamp=stamp)]
        self._writes[rid] = req
        msg = Write(request_id=rid, coordinator=self._me, namespace=ns.name, key=k, stamp=stamp, value=value)
        effects, to_me = self._fan_out(alive_home, msg)
        for target, holder in stand_ins.items():
            effects.append(Send(holder, encode_kv(Write(request_id=rid, coordinator=self._me, namespace=ns.name,
                                                        key=k, stamp=stamp, value=value, hint_for=target))))
        effects.append(SetTimer(now + self._config.request_timeout_s, KvTimer("request", rid)))
        if to_me:  # after the request is registered: a refusal may complete it at once
            assert self.local is not None
            effects += self.local(now, msg)
        return rid, effects

    def hand_off(self, now: float, namespace: str, record: Record) -> tuple[int, list[KvEffect]]:
        """Start a hand-off of `record` (see the module doc). Raises if this node is a home
        replica of its key (nothing to hand off) or on misuse; completes with an error at
        once if a home replica is down (retry once it is back)."""
        ns = self._view.namespace(namespace)
        if type(record) is not Record:
            raise LocalProtocolError(f"hand_off() takes a Record, got {type(record).__name__}")
        home = self._view.replicas(ns, record.key)
        if self._me in home:
            raise LocalProtocolError("this node is a home replica of that key: nothing to hand off")
        rid = self._new_id()
        down = [short_id(n) for n in home if not self._view.is_alive(n)]
        if down:
            self.stats.handoffs_failed += 1
            return rid, [Completed(rid, stamp=record.stamp, error=ConsistencyError(
                f"hand-off of a {ns.name!r} record waits for every home replica; down: {', '.join(down)}"))]
        self._writes[rid] = _WriteReq(Consistency.ALL, len(home), record, set(home), set(), handoff=True)
        msg = Write(request_id=rid, coordinator=self._me, namespace=ns.name, key=record.key,
                    stamp=record.stamp, value=record.value)
        effects, _ = self._fan_out(home, msg)  # never to this node: it is not a home replica
        effects.append(SetTimer(now + self._config.request_timeout_s, KvTimer("request", rid)))
        return rid, effects

    def _count(self, req: _WriteReq, ok: bool) -> None:
        if req.handoff:
            if ok:
                self.stats.handoffs_ok += 1
            else:
                self.stats.handoffs_failed += 1
        elif ok:
            self.stats.writes_ok += 1
        else:
            self.stats.writes_failed += 1

    def _fan_out(self, nodes: list[bytes], msg: KvMessage) -> tuple[list[KvEffect], bool]:
        """`Send`s of `msg` to `nodes` (encoded once: the same bytes for all), and whether
        this node is among them, to be handed the message directly by the caller once
        its request is registered."""
        to_me = self.local is not None and self._me in nodes
        others = [n for n in nodes if not (to_me and n == self._me)]
        data = encode_kv(msg) if others else b""
        return [Send(n, data) for n in others], to_me

    def on_write_ack(self, now: float, ack: WriteAck) -> list[KvEffect]:
        req = self._writes.get(ack.request_id)
        if req is None:
            self.stats.late_or_unknown_replies += 1
            return []
        s = ack.sender
        if s not in req.home and s not in req.hints:
            self.stats.late_or_unknown_replies += 1
            return []
        if ack.status is not Status.OK:
            req.refused[s] = f"{short_id(s)}: {ack.status.name.lower()} {ack.detail}".strip()
        elif s in req.home:
            req.home_acks.add(s)
        else:
            req.hint_acks.add(s)
        sloppy = self._config.sloppy_quorum
        if write_satisfied(req.level, req.rf, len(req.home_acks), len(req.hint_acks), sloppy_quorum=sloppy):
            del self._writes[ack.request_id]
            self._count(req, True)
            return [Completed(ack.request_id, stamp=req.record.stamp)]
        # Could the copies not yet answered still make it?
        home_left = len(req.home - req.home_acks - req.refused.keys())
        hint_left = len(req.hints - req.hint_acks - req.refused.keys())
        if not write_satisfied(req.level, req.rf, len(req.home_acks) + home_left,
                               len(req.hint_acks) + hint_left, sloppy_quorum=sloppy):
            return [self._fail_write(ack.request_id, "refused")]
        return []

    def _fail_write(self, rid: int, why: str) -> Completed:
        req = self._writes.pop(rid)
        self._count(req, False)
        need = acks_required(req.level, req.rf)
        got = [short_id(n) for n in sorted(req.home_acks)] + [f"{short_id(n)}(hint)" for n in sorted(req.hint_acks)]
        refusals = "; ".join(req.refused.values()) or "none"
        return Completed(rid, stamp=req.record.stamp, error=ConsistencyError(
            f"{'hand-off' if req.handoff else req.level.value + ' write'} {why}: needed {need} of {req.rf} copies, acked by "
            f"[{', '.join(got)}], refusals: {refusals}; the write may still become visible"))

    # --- reads --------------------------------------------------------------------------

    def confirm(self, now: float, namespace: str, record: Record) -> tuple[int, list[KvEffect]]:
        """Start a hand-off's confirmation of `record` (see the module doc)."""
        return self.read(now, namespace, record.key, Consistency.ALL, confirm=record.stamp)

    def read(self, now: float, namespace: object, key: object,
             level: object, *, confirm: Stamp | None = None) -> tuple[int, list[KvEffect]]:
        """Start a get. Completes with the newest record (a tombstone means deleted)."""
        ns = self._view.namespace(namespace)
        k = as_key(key)
        lv = self._level(level)
        home = self._view.replicas(ns, k)
        rid = self._new_id()
        alive = [n for n in home if self._view.is_alive(n)]
        need = acks_required(lv, ns.replicas)
        if len(alive) < need:
            self.stats.reads_failed += 1
            return rid, [Completed(rid, error=ConsistencyError(
                f"{lv.value} read of {ns.name!r} needs {need} home replicas, only {len(alive)} alive"))]
        if self._me in alive:
            alive.remove(self._me)
            alive.insert(0, self._me)
        first = need if self._config.read_extra_after_s > 0 else len(alive)
        req = _ReadReq(lv, ns.replicas, ns.name, k, set(), alive[first:], confirm=confirm)
        self._reads[rid] = req
        effects = [SetTimer(now + self._config.request_timeout_s, KvTimer("request", rid))]
        if req.spare:
            effects.append(SetTimer(now + self._config.read_extra_after_s, KvTimer("read_extra", rid)))
        return rid, effects + self._ask(now, rid, req, alive[:first])

    def _ask(self, now: float, rid: int, req: _ReadReq, nodes: list[bytes]) -> list[KvEffect]:
        req.asked.update(nodes)
        msg = Read(request_id=rid, coordinator=self._me, namespace=req.namespace, key=req.key)
        effects, to_me = self._fan_out(nodes, msg)
        if to_me:
            assert self.local is not None
            effects += self.local(now, msg)
        return effects

    def on_read_extra_timer(self, now: float, rid: int) -> list[KvEffect]:
        """`read_extra_after_s` after a get began: if it still lacks answers, ask the
        alive home replicas not asked yet."""
        req = self._reads.get(rid)
        if req is None or req.done or not req.spare:
            return []
        spare = [n for n in req.spare if self._view.is_alive(n)]
        req.spare = []
        self.stats.reads_extra += 1
        return self._ask(now, rid, req, spare)

    def on_read_reply(self, now: float, reply: ReadReply) -> list[KvEffect]:
        rid = reply.request_id
        req = self._reads.get(rid)
        s = reply.sender
        if req is None or s not in req.asked or s in req.replies or s in req.refused:
            self.stats.late_or_unknown_replies += 1
            return []
        if reply.status is not Status.OK:
            return self._read_refused(now, rid, req, s, reply.status.name.lower())
        rec = None
        if reply.stamp is not None:
            try:
                self._hlc.observe(now, reply.stamp)
            except ClockSkewError as exc:
                self.stats.skewed_replies += 1
                return self._read_refused(now, rid, req, s, str(exc))
            rec = Record(req.key, reply.value, reply.stamp)
        req.replies[s] = rec
        if rec is not None and newer(rec, req.newest):
            req.newest = rec
        return self._read_progress(now, rid, req)

    def _read_refused(self, now: float, rid: int, req: _ReadReq, node: bytes, why: str) -> list[KvEffect]:
        req.refused[node] = f"{short_id(node)}: {why}"[:200]
        effects: list[KvEffect] = []
        while req.spare and not req.done:  # ask the next alive one in its place
            nxt = req.spare.pop(0)
            if self._view.is_alive(nxt):
                effects = self._ask(now, rid, req, [nxt])
                break
        return effects + self._read_progress(now, rid, req)

    def _read_progress(self, now: float, rid: int, req: _ReadReq) -> list[KvEffect]:
        effects: list[KvEffect] = []
        need = acks_required(req.level, req.rf)
        if not req.done and len(req.replies) >= need:
            req.done = True
            self.stats.reads_ok += 1
            held = req.confirm is None or (req.newest is not None and req.newest.stamp >= req.confirm)
            effects.append(Completed(rid, record=req.newest, error=None if held else HandoffPending(
                f"no home replica of this {req.namespace!r} key holds the version to hand off or a "
                "newer one, and it is too old to push: the copy stays")))
        if req.done:
            effects += self._repairs(now, req)
        elif len(req.asked) - len(req.refused) + len(req.spare) < need:
            self._reads.pop(rid, None)
            self.stats.reads_failed += 1
            return [Completed(rid, error=ConsistencyError(
                f"{req.level.value} read refused: needed {need} replies, refusals: "
                f"{'; '.join(req.refused.values())}"))]
        if len(req.replies) + len(req.refused) == len(req.asked):
            self._reads.pop(rid, None)
        return effects

    def _repairs(self, now: float, req: _ReadReq) -> list[KvEffect]:
        newest = req.newest
        if newest is None:
            return []
        out: list[KvEffect] = []
        for node, rec in sorted(req.replies.items()):
            if rec is None or newer(newest, rec):
                req.replies[node] = newest  # repaired once
                self.stats.repairs_sent += 1
                msg = Repair(sender=self._me, namespace=req.namespace, key=req.key, stamp=newest.stamp,
                             value=newest.value)
                if node == self._me and self.local is not None:
                    out += self.local(now, msg)
                else:
                    out.append(Send(node, encode_kv(msg)))
        return out

    # --- timeouts -----------------------------------------------------------------------

    def on_request_timer(self, now: float, rid: int) -> list[KvEffect]:
        if rid in self._writes:
            return [self._fail_write(rid, f"timed out after {self._config.request_timeout_s:g} s")]
        req = self._reads.pop(rid, None)
        if req is None or req.done:
            return []
        self.stats.reads_failed += 1
        return [Completed(rid, error=ConsistencyError(
            f"{req.level.value} read timed out after {self._config.request_timeout_s:g} s: "
            f"{len(req.replies)} of {acks_required(req.level, req.rf)} replies; refusals: "
            f"{'; '.join(req.refused.values()) or 'none'}"))]

    def pending(self) -> int:
        return len(self._writes) + len(self._reads)

    def last_stamp(self) -> Stamp:
        return self._hlc.last()
