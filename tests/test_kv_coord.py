"""The replication core: consistency levels, hinted handoff, read repair, skew refusal,
tombstone collection and refusal of bad input — driven synchronously, no I/O, no clock."""

from __future__ import annotations

from collections import deque

import pytest

from meshcore.errors import (
    ConfigError,
    ConsistencyError,
    LocalProtocolError,
    NamespaceError,
    PlacementError,
    RecordError,
)
from meshcore.kv import Namespace, Record, RingMember, Stamp
from meshcore.kv._config import Consistency, KvConfig, acks_required
from meshcore.kv._coordinator import write_satisfied
from meshcore.kv._core import KvCore
from meshcore.kv._effects import (
    Completed,
    DropHints,
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
from meshcore.kv._messages import Read, Status, Write, WriteAck, decode_kv, encode_kv
from meshcore.sim._kv import MemoryKvStore

NS = [Namespace(name="any", replicas=2), Namespace(name="south", replicas=2, regions=("r1",)),
      Namespace(name="triple", replicas=3)]


def nid(i: int) -> bytes:
    return bytes([i + 1]) * 16


MEMBERS = [RingMember(nid(i), f"s{i}", "r0" if i < 3 else "r1") for i in range(6)]


class Net:
    """Six cores on six sites, a FIFO network, stores that commit at once (or on `flush`)."""

    def __init__(self, config: KvConfig | None = None, now: float = 1000.0) -> None:
        self.config = config or KvConfig(hint_ttl_s=60.0, tombstone_resend_s=5.0)
        self.now = now
        self.cores = {m.node: KvCore(me=m, members=MEMBERS, namespaces=NS, config=self.config) for m in MEMBERS}
        for c in self.cores.values():
            for m in MEMBERS:
                c.member_alive(now, m.node)
        self.stores = {m.node: MemoryKvStore() for m in MEMBERS}
        self.queue: deque[tuple[bytes, bytes, bytes]] = deque()
        self.timers: list[tuple[float, bytes, KvTimer]] = []
        self.done: dict[tuple[bytes, int], Completed] = {}
        self.crashed: set[bytes] = set()
        self.blocked_from: set[bytes] = set()
        self.hold = False
        self.held: list[tuple[bytes, KvEffect]] = []
        self.sent: list[tuple[bytes, bytes, object]] = []
        for node, c in self.cores.items():
            self.perform(node, c.start(now))

    def perform(self, node: bytes, effects: list[KvEffect]) -> None:
        core, store = self.cores[node], self.stores[node]
        for e in effects:
            if isinstance(e, Send):
                self.sent.append((node, e.to, decode_kv(e.data)))
                self.queue.append((e.to, node, e.data))
            elif isinstance(e, SetTimer):
                self.timers.append((e.at, node, e.timer))
            elif isinstance(e, (Persist, PersistHint)):
                if self.hold:
                    self.held.append((node, e))
                else:
                    self.commit(node, e)
            elif isinstance(e, Load):
                self.perform(node, core.on_loaded(self.now, e.token, store.get(e.namespace, e.key)))
            elif isinstance(e, LoadHints):
                self.perform(node, core.on_hints(self.now, e.target, store.hints_for(e.target, e.limit)))
            elif isinstance(e, DropHints):
                store.drop_hints(e.ids)
            elif isinstance(e, Purge):
                store.purge(e.namespace, e.key, e.stamp)
            elif isinstance(e, Completed):
                self.done[(node, e.request_id)] = e

    def commit(self, node: bytes, e: Persist | PersistHint) -> None:
        if isinstance(e, Persist):
            for r in e.records:
                self.stores[node].put(e.namespace, r)
        else:
            self.stores[node].add_hint(e.target, e.namespace, e.record)
        self.perform(node, self.cores[node].on_persisted(self.now, e.token))

    def flush(self) -> None:
        held, self.held = self.held, []
        for node, e in held:
            self.commit(node, e)  # type: ignore[arg-type]
        self.pump()

    def pump(self, steps_max: int = 10_000) -> None:
        for _ in range(steps_max):
            if not self.queue:
                return
            dst, src, data = self.queue.popleft()
            if dst in self.crashed or src in self.crashed or src in self.blocked_from:
                continue
            self.perform(dst, self.cores[dst].on_message(self.now, src, data))
        raise AssertionError("network did not settle")

    def advance(self, dt: float, step: float = 1.0) -> None:
        end = self.now + dt
        while self.now < end:
            self.now = min(end, self.now + step)
            due = sorted((t for t in self.timers if t[0] <= self.now), key=lambda t: t[0])
            self.timers = [t for t in self.timers if t[0] > self.now]
            for _, node, timer in due:
                if node not in self.crashed:
                    self.perform(node, self.cores[node].on_timer(self.now, timer))
            self.pump()

    def call(self, node: bytes, started: tuple[int, list[KvEffect]]) -> int:
        rid, effects = started
        self.perform(node, effects)
        self.pump()
        return rid

    def mark_down(self, node: bytes) -> None:
        for c in self.cores.values():
            c.member_down(self.now, node)

    def mark_alive(self, node: bytes) -> None:
        for n, c in self.cores.items():
            if n != node:
                self.perform(n, c.member_alive(self.now, node))
        self.pump()

    def home(self, ns: str, key: bytes) -> list[bytes]:
        core = self.cores[nid(0)]
        return core.view.replicas(core.view.namespace(ns), key)

    def outsider(self, ns: str, key: bytes) -> bytes:
        return next(m.node for m in MEMBERS if m.node not in self.home(ns, key))


# --- pure rules --------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "rf", "need"), [
    (Consistency.ONE, 2, 1), (Consistency.QUORUM, 2, 2), (Consistency.QUORUM, 3, 2),
    (Consistency.QUORUM, 5, 3), (Consistency.ALL, 3, 3)])
def test_acks_required_follows_the_quorum_formula(level: Consistency, rf: int, need: int) -> None:
    assert acks_required(level, rf) == need


@pytest.mark.parametrize(("level", "home", "hints", "sloppy", "ok"), [
    (Consistency.ONE, 0, 1, True, True),
    (Consistency.QUORUM, 1, 1, True, True),
    (Consistency.QUORUM, 1, 1, False, False),
    (Consistency.QUORUM, 0, 2, True, False),  # at least one home replica, always
    (Consistency.ALL, 1, 1, True, False),  # hints never count for all
    (Consistency.ALL, 2, 0, True, True)])
def test_write_satisfied_counts_hints_only_where_documented(
        level: Consistency, home: int, hints: int, sloppy: bool, ok: bool) -> None:
    assert write_satisfied(level, 2, home, hints, sloppy_quorum=sloppy) is ok


# --- consistency levels ------------------------------------------------------------------


@pytest.mark.parametrize("level", ["one", "quorum", "all"])
def test_put_then_get_returns_the_value_at_every_level(level: str) -> None:
    net = Net()
    c = nid(5)
    rid = net.call(c, net.cores[c].put(net.now, "any", b"k1", b"v1", level))
    assert net.done[(c, rid)].ok
    rid = net.call(c, net.cores[c].get(net.now, "any", b"k1", level))
    got = net.done[(c, rid)]
    assert got.ok and got.record is not None and got.record.value == b"v1"
    for h in net.home("any", b"k1"):
        assert net.stores[h].get("any", b"k1").value == b"v1"  # type: ignore[union-attr]


def test_write_is_acknowledged_only_after_the_replicas_made_it_durable() -> None:
    net = Net()
    net.hold = True
    c = nid(0)
    rid = net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "quorum"))
    assert (c, rid) not in net.done
    assert not any(isinstance(m, WriteAck) for _, _, m in net.sent)
    net.flush()
    assert net.done[(c, rid)].ok


def test_all_write_fails_at_once_and_sends_nothing_when_a_replica_is_down() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.mark_down(b)
    rid = net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "all"))
    err = net.done[(c, rid)].error
    assert isinstance(err, ConsistencyError) and "hints never count" in str(err)
    assert not any(isinstance(m, Write) for _, _, m in net.sent)
    assert net.stores[a].get("any", b"k") is None


def test_write_times_out_when_a_replica_believed_alive_never_answers() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    net.crashed.add(b)
    c = net.outsider("any", b"k")
    rid = net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "quorum"))
    assert (c, rid) not in net.done
    net.advance(net.config.request_timeout_s + 0.5)
    err = net.done[(c, rid)].error
    assert isinstance(err, ConsistencyError) and "timed out" in str(err)
    rid = net.call(c, net.cores[c].put(net.now, "any", b"k", b"v2", "one"))
    assert net.done[(c, rid)].ok


def test_quorum_write_fails_fast_when_enough_replicas_refuse() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.cores[b].view._namespaces.pop("any")  # b no longer knows the namespace: it refuses
    rid = net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "quorum"))
    err = net.done[(c, rid)].error
    assert isinstance(err, ConsistencyError) and "unknown_namespace" in str(err)


# --- hinted handoff ----------------------------------------------------------------------


def test_down_replica_gets_its_write_through_a_stand_in_when_it_returns() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.mark_down(b)
    net.crashed.add(b)
    rid = net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "quorum"))
    assert net.done[(c, rid)].ok  # sloppy quorum: a + a stand-in's hint
    holders = [n for n, s in net.stores.items() if s.hints]
    assert len(holders) == 1 and holders[0] not in (a, b)
    assert net.stores[holders[0]].get("any", b"k") is None  # a hint is not a readable copy
    net.crashed.discard(b)
    net.mark_alive(b)
    assert net.stores[b].get("any", b"k").value == b"v"  # type: ignore[union-attr]
    assert not net.stores[holders[0]].hints
    assert net.cores[holders[0]].statistics().hints_delivered == 1


def test_strict_quorum_does_not_count_the_hint() -> None:
    net = Net(KvConfig(hint_ttl_s=60.0, sloppy_quorum=False))
    a, b = net.home("any", b"k")
    net.mark_down(b)
    c = net.outsider("any", b"k")
    rid = net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "quorum"))
    assert isinstance(net.done[(c, rid)].error, ConsistencyError)


def test_hint_older_than_the_ttl_is_dropped_not_delivered() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.mark_down(b)
    net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "one"))
    net.advance(net.config.hint_ttl_s + 5)
    net.mark_alive(b)
    assert net.stores[b].get("any", b"k") is None
    assert sum(core.statistics().hints_expired for core in net.cores.values()) == 1


# --- read repair and skew ----------------------------------------------------------------


def test_get_returns_the_newest_version_and_repairs_the_stale_replica() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    old = Record(b"k", b"old", Stamp(1_000, 0, nid(9)))
    new = Record(b"k", b"new", Stamp(2_000, 0, nid(9)))
    net.stores[a].put("any", new)
    net.stores[b].put("any", old)
    c = net.outsider("any", b"k")
    rid = net.call(c, net.cores[c].get(net.now, "any", b"k", "all"))
    assert net.done[(c, rid)].record == new
    assert net.stores[b].get("any", b"k") == new
    assert net.cores[c].statistics().repairs_sent == 1


def test_replica_refuses_a_stamp_beyond_the_skew_bound_and_stores_nothing() -> None:
    net = Net()
    a, _ = net.home("any", b"k")
    c = net.outsider("any", b"k")
    ahead = Stamp(round((net.now + 10.0) * 1e6), 0, c)
    w = Write(request_id=7, coordinator=c, namespace="any", key=b"k", stamp=ahead, value=b"v")
    effects = net.cores[a].on_message(net.now, c, encode_kv(w))
    (reply,) = [decode_kv(e.data) for e in effects if isinstance(e, Send)]
    assert isinstance(reply, WriteAck) and reply.status is Status.CLOCK_SKEW
    assert not any(isinstance(e, Persist) for e in effects)
    assert net.cores[a].hlc.last().physical_us < ahead.physical_us


def test_coordinator_ignores_a_read_reply_with_a_skewed_stamp() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    net.stores[a].put("any", Record(b"k", b"future", Stamp(round((net.now + 60) * 1e6), 0, nid(9))))
    c = net.outsider("any", b"k")
    rid = net.call(c, net.cores[c].get(net.now, "any", b"k", "all"))
    assert isinstance(net.done[(c, rid)].error, ConsistencyError)



# --- targeted reads ------------------------------------------------------------------------


def reads_sent(net: Net) -> list[bytes]:
    return [to for _, to, m in net.sent if type(m) is Read]


def test_a_get_asks_only_as_many_home_replicas_as_its_level_needs_in_ring_order() -> None:
    net = Net()
    home = net.home("triple", b"k")
    out = net.outsider("triple", b"k")
    for level, n in (("one", 1), ("quorum", 2), ("all", 3)):
        net.sent.clear()
        rid = net.call(out, net.cores[out].get(net.now, "triple", b"k", level))
        assert net.done[(out, rid)].ok
        assert reads_sent(net) == home[:n]


def test_a_get_at_one_on_a_home_replica_is_a_local_read() -> None:
    net = Net()
    _, b, _ = net.home("triple", b"k")
    net.stores[b].put("triple", Record(b"k", b"v", Stamp(1_000, 0, nid(9))))
    net.sent.clear()
    rid = net.call(b, net.cores[b].get(net.now, "triple", b"k", "one"))
    assert net.done[(b, rid)].record == Record(b"k", b"v", Stamp(1_000, 0, nid(9)))
    assert net.sent == []  # nothing went over the network


def test_a_replica_that_refuses_a_get_is_replaced_by_the_next_one() -> None:
    net = Net()
    a, b, _ = net.home("triple", b"k")
    net.stores[a].put("triple", Record(b"k", b"future", Stamp(round((net.now + 60) * 1e6), 0, nid(9))))
    net.stores[b].put("triple", Record(b"k", b"v", Stamp(1_000, 0, nid(9))))
    out = net.outsider("triple", b"k")
    rid = net.call(out, net.cores[out].get(net.now, "triple", b"k", "one"))
    assert net.done[(out, rid)].record == Record(b"k", b"v", Stamp(1_000, 0, nid(9)))
    assert reads_sent(net) == [a, b]


def test_a_get_asks_the_other_replicas_when_one_stays_silent() -> None:
    net = Net()
    a, b, c = net.home("triple", b"k")
    net.blocked_from.add(a)  # a is alive to the membership layer, but its answers are lost
    out = net.outsider("triple", b"k")
    rid = net.call(out, net.cores[out].get(net.now, "triple", b"k", "quorum"))
    assert (out, rid) not in net.done and reads_sent(net) == [a, b]
    net.advance(net.config.read_extra_after_s, step=net.config.read_extra_after_s)
    assert net.done[(out, rid)].ok  # long before the request timeout
    assert reads_sent(net) == [a, b, c] and net.cores[out].statistics().reads_extra == 1


def test_a_down_replica_is_not_asked_and_zero_wait_asks_every_alive_one_at_once() -> None:
    net = Net(KvConfig(hint_ttl_s=60.0, tombstone_resend_s=5.0, read_extra_after_s=0))
    a, b, c = net.home("triple", b"k")
    net.mark_down(a)
    out = net.outsider("triple", b"k")
    rid = net.call(out, net.cores[out].get(net.now, "triple", b"k", "one"))
    assert net.done[(out, rid)].ok and reads_sent(net) == [b, c]


@pytest.mark.parametrize("bad", [-0.1, 2.0, True, "0.1", float("nan")])
def test_a_bad_read_extra_after_s_is_refused_by_name(bad: object) -> None:
    with pytest.raises(ConfigError, match="read_extra_after_s"):
        KvConfig(read_extra_after_s=bad)  # type: ignore[arg-type]


# --- tombstones --------------------------------------------------------------------------


def test_tombstone_is_purged_only_after_every_replica_acknowledged_it() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "all"))
    net.blocked_from.add(b)  # b's acknowledgements never arrive
    rid = net.call(c, net.cores[c].delete(net.now, "any", b"k", "one"))
    assert net.done[(c, rid)].ok
    net.advance(net.config.purge_age_s + 30)
    assert net.stores[a].get("any", b"k").is_tombstone  # type: ignore[union-attr]
    net.blocked_from.clear()
    net.advance(net.config.tombstone_resend_s * 3)
    assert net.stores[a].get("any", b"k") is None
    assert net.stores[b].get("any", b"k") is None


def test_tombstone_is_not_purged_before_the_age_bound_even_with_every_ack() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.call(c, net.cores[c].delete(net.now, "any", b"k", "all"))
    net.advance(net.config.hint_ttl_s / 2)
    assert net.stores[a].get("any", b"k").is_tombstone  # type: ignore[union-attr]


def test_replica_holding_an_older_value_blocks_the_purge() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.mark_down(b)
    net.crashed.add(b)
    net.call(c, net.cores[c].put(net.now, "any", b"k", b"v", "one"))
    net.stores[b].put("any", Record(b"k", b"older", Stamp(1, 0, nid(9))))
    net.call(c, net.cores[c].delete(net.now, "any", b"k", "one"))
    for s in net.stores.values():  # b's hints are lost for good: only AE could fix b
        s.hints.clear()
    net.crashed.discard(b)
    for core in net.cores.values():
        core.member_alive(net.now, b)
    net.advance(net.config.purge_age_s + 30)
    assert net.stores[a].get("any", b"k").is_tombstone  # type: ignore[union-attr]


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda c, now: c.put(now, "nope", b"k", b"v"), NamespaceError, "not defined"),
    (lambda c, now: c.put(now, "any", b"k", b"x" * (1024 * 1024 + 1)), RecordError, "1 MiB"),
    (lambda c, now: c.put(now, "any", 42, b"v"), RecordError, "bytes or str"),
    (lambda c, now: c.put(now, "any", b"k", "text"), RecordError, "bytes"),
    (lambda c, now: c.put(now, "any", b"k", b"v", "most"), Exception, "one', 'quorum' or 'all"),
    (lambda c, now: c.get(now, "nope", b"k"), NamespaceError, "not defined")])
def test_bad_input_raises_a_clear_error_and_changes_nothing(call, error, words) -> None:  # type: ignore[no-untyped-def]
    net = Net()
    c = nid(0)
    stamp_before = net.cores[c].hlc.last()
    with pytest.raises(error, match=words):
        call(net.cores[c], net.now)
    assert net.cores[c].hlc.last() == stamp_before
    assert net.cores[c].coordinator.pending() == 0
    assert all(not s.records for s in net.stores.values())


def test_namespace_in_a_region_no_site_has_is_a_placement_error() -> None:
    net = Net()
    core = net.cores[nid(0)]
    core.define(Namespace(name="north", replicas=2, regions=("r9",)))
    with pytest.raises(PlacementError, match="no member is certified there"):
        core.put(net.now, "north", b"k", b"v")
    with pytest.raises(PlacementError, match="only 3 eligible"):
        core.define(Namespace(name="south4", replicas=4, regions=("r1",)))
        core.put(net.now, "south4", b"k", b"v")
    assert core.coordinator.pending() == 0


def test_replica_outside_the_territory_refuses_the_write() -> None:
    net = Net()
    north = nid(0)  # region r0; "south" lives in r1 only
    c = nid(3)
    w = Write(request_id=1, coordinator=c, namespace="south", key=b"k",
              stamp=net.cores[c].hlc.now(net.now), value=b"v")
    effects = net.cores[north].on_message(net.now, c, encode_kv(w))
    (reply,) = [decode_kv(e.data) for e in effects if isinstance(e, Send)]
    assert reply.status is Status.TERRITORY  # type: ignore[union-attr]


def test_message_whose_sender_is_not_the_source_is_dropped() -> None:
    net = Net()
    a, _ = net.home("any", b"k")
    w = Write(request_id=1, coordinator=nid(4), namespace="any", key=b"k",
              stamp=net.cores[a].hlc.now(net.now), value=b"v")
    assert net.cores[a].on_message(net.now, nid(5), encode_kv(w)) == []
    assert net.cores[a].statistics().dropped_messages == 1


# --- a coordinator that is itself a home replica --------------------------------------


def test_a_coordinator_that_is_a_home_replica_writes_locally_without_messaging_itself() -> None:
    net = Net()
    net.hold = True
    a, b = net.home("any", b"k")
    rid = net.call(a, net.cores[a].put(net.now, "any", b"k", b"v", "all"))
    assert all(to != frm for frm, to, _ in net.sent)  # nothing addressed to oneself
    assert [n for n, e in net.held if isinstance(e, Persist)] == sorted([a, b], key=[a, b].index)
    assert (a, rid) not in net.done  # not before both copies are durable
    net.flush()
    assert net.done[(a, rid)].ok
    assert net.stores[a].get("any", b"k").value == b"v"  # type: ignore[union-attr]
    assert [(frm, to) for frm, to, m in net.sent if isinstance(m, WriteAck)] == [(b, a)]


def test_a_local_refusal_completes_a_write_that_can_no_longer_succeed() -> None:
    net = Net(KvConfig(hint_ttl_s=60.0, tombstone_resend_s=5.0, pending_max=1))
    net.hold = True
    a, _ = net.home("any", b"k")
    other = next(k for k in (b"j%d" % i for i in range(100)) if net.home("any", k)[0] == a)
    first = net.call(a, net.cores[a].put(net.now, "any", other, b"v", "all"))  # holds a's one slot
    rid = net.call(a, net.cores[a].put(net.now, "any", b"k", b"v", "all"))
    done = net.done[(a, rid)]  # refused at once by its own replica side: no timeout needed
    assert not done.ok and "busy" in str(done.error)
    net.flush()
    assert net.done[(a, first)].ok


def test_a_coordinator_that_is_a_home_replica_reads_and_repairs_itself_locally() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    new = Record(b"k", b"new", Stamp(2_000, 0, nid(9)))
    net.stores[b].put("any", new)
    rid = net.call(a, net.cores[a].get(net.now, "any", b"k", "all"))
    assert net.done[(a, rid)].record == new
    assert net.stores[a].get("any", b"k") == new  # read repair of its own copy
    assert all(to != frm for frm, to, _ in net.sent)


# --- range hand-off --------------------------------------------------------------------------


def _wall_stamp(net: Net, age_s: float = 1.0) -> Stamp:
    return Stamp(int((net.now - age_s) * 1e6), 0, nid(9))


def test_hand_off_copies_a_record_to_every_home_replica_with_its_own_stamp() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    old_owner = net.outsider("any", b"k")
    rec = Record(b"k", b"v", _wall_stamp(net))
    rid = net.call(old_owner, net.cores[old_owner].hand_off(net.now, "any", rec))
    assert net.done[(old_owner, rid)].error is None
    assert net.stores[a].get("any", b"k") == rec == net.stores[b].get("any", b"k")  # same stamp
    stats = net.cores[old_owner].statistics()
    assert (stats.handoffs_ok, stats.handoffs_failed, stats.writes_ok) == (1, 0, 0)
    # A tombstone is handed off the same way.
    tomb = Record(b"k", None, _wall_stamp(net, 0.5))
    rid = net.call(old_owner, net.cores[old_owner].hand_off(net.now, "any", tomb))
    assert net.done[(old_owner, rid)].error is None and net.stores[a].get("any", b"k") == tomb


def test_hand_off_keeps_a_newer_version_on_the_home_replicas() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.call(a, net.cores[a].put(net.now, "any", b"k", b"new", "all"))
    stale = Record(b"k", b"stale", _wall_stamp(net, 30.0))
    rid = net.call(c, net.cores[c].hand_off(net.now, "any", stale))
    assert net.done[(c, rid)].error is None  # they hold something newer: safe to drop ours
    assert net.stores[a].get("any", b"k").value == b"new" == net.stores[b].get("any", b"k").value


def test_hand_off_fails_at_once_when_a_home_replica_is_down_and_sends_nothing() -> None:
    net = Net()
    a, b = net.home("any", b"k")
    c = net.outsider("any", b"k")
    net.mark_down(b)
    sent = len(net.sent)
    rid = net.call(c, net.cores[c].hand_off(net.now, "any", Record(b"k", b"v", _wall_stamp(net))))
    err = net.done[(c, rid)].error
    assert isinstance(err, ConsistencyError) and "down" in str(err)
    assert len(net.sent) == sent and net.stores[a].get("any", b"k") is None


def test_hand_off_of_a_version_older_than_the_hint_ttl_is_refused() -> None:
    net = Net()
    c = net.outsider("any", b"k")
    ancient = Record(b"k", b"v", _wall_stamp(net, net.config.hint_ttl_s + 10))
    rid = net.call(c, net.cores[c].hand_off(net.now, "any", ancient))
    err = net.done[(c, rid)].error
    assert isinstance(err, ConsistencyError) and "hand-off refused" in str(err) and "stale" in str(err)
    assert all(net.stores[h].get("any", b"k") is None for h in net.home("any", b"k"))
    assert net.cores[c].statistics().handoffs_failed == 1


def test_a_home_replica_has_nothing_to_hand_off() -> None:
    net = Net()
    a, _ = net.home("any", b"k")
    with pytest.raises(LocalProtocolError):
        net.cores[a].hand_off(net.now, "any", Record(b"k", b"v", _wall_stamp(net)))
    assert net.cores[a].is_home("any", b"k")


def test_removing_a_member_gives_its_keys_new_home_replicas() -> None:
    net = Net()
    keys = [b"k%d" % i for i in range(200)]
    core = net.cores[nid(0)]
    before = {k: net.home("any", k) for k in keys}
    gone = nid(5)
    core.remove_member(gone)
    after = {k: net.home("any", k) for k in keys}
    assert all(gone not in h for h in after.values())
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(gone in before[k] for k in moved)  # only the leaver's keys move


def test_move_off_pushes_a_young_copy_and_only_confirms_an_old_one() -> None:
    from meshcore.errors import HandoffPending

    net = Net()
    c = net.outsider("any", b"k")
    young = Record(b"k", b"young", _wall_stamp(net))
    rid = net.call(c, net.cores[c].move_off(net.now, "any", young))
    assert net.done[(c, rid)].error is None
    assert all(net.stores[h].get("any", b"k") == young for h in net.home("any", b"k"))
    old = Record(b"j", b"old", _wall_stamp(net, net.config.hint_ttl_s + 10))
    c = net.outsider("any", b"j")
    rid = net.call(c, net.cores[c].move_off(net.now, "any", old))
    assert isinstance(net.done[(c, rid)].error, HandoffPending)  # nowhere else: keep it
    assert all(net.stores[h].get("any", b"j") is None for h in net.home("any", b"j"))  # not pushed
    a, _ = net.home("any", b"j")
    net.stores[a].put("any", old)  # anti-entropy put it on one home replica
    rid = net.call(c, net.cores[c].move_off(net.now, "any", old))
    assert net.done[(c, rid)].error is None  # held on a home replica: the copy may go
    with pytest.raises(LocalProtocolError):
        net.cores[a].move_off(net.now, "any", old)
