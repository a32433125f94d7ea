"""Pure pieces of the SWIM core: suspicion timeouts, awareness, retransmit and push-pull
scaling, the piggyback queue and the transition table."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcore.swim import SwimConfig, push_pull_scale_s, retransmit_limit
from meshcore.swim._awareness import Awareness
from meshcore.swim._broadcast import BroadcastQueue
from meshcore.swim._state import TRANSITIONS, Kind, transition
from meshcore.swim._suspicion import Suspicion, remaining_suspicion_s, suspicion_timeout_s
from meshcore.wire import Status

NODE_A = b"a" * 16
NODE_B = b"b" * 16
NODE_C = b"c" * 16


@pytest.mark.parametrize(
    ("n", "expected_s"),
    [(5, 3.0), (10, 3.0), (50, 5.097), (100, 6.0), (500, 8.097), (1000, 9.0)],
)
def test_suspicion_timeout_matches_memberlist_table(n: int, expected_s: float) -> None:
    assert suspicion_timeout_s(3, n, 1.0) == pytest.approx(expected_s, abs=1e-3)


@pytest.mark.parametrize(
    ("confirmations", "k", "elapsed_s", "expected_s"),
    [(0, 3, 0, 30.0), (1, 3, 2, 14.0), (2, 3, 3, 4.810), (3, 3, 4, -2.0), (4, 3, 5, -3.0),
     (5, 3, 10, -8.0)],
)
def test_remaining_suspicion_time_matches_memberlist_table(
    confirmations: int, k: int, elapsed_s: float, expected_s: float
) -> None:
    left = remaining_suspicion_s(confirmations, k, elapsed_s, 2.0, 30.0)
    assert left == pytest.approx(expected_s, abs=1e-3)


@given(st.integers(0, 10), st.integers(0, 8), st.floats(0.1, 100), st.floats(1, 10))
def test_remaining_suspicion_time_stays_between_min_and_max_and_shrinks(
    confirmations: int, k: int, min_s: float, mult: float
) -> None:
    max_s = min_s * mult
    t = remaining_suspicion_s(confirmations, k, 0.0, min_s, max_s)
    assert min_s - 1e-9 <= t <= max_s + 1e-9
    assert remaining_suspicion_s(confirmations + 1, k, 0.0, min_s, max_s) <= t


def test_suspicion_counts_each_confirmer_once_and_never_the_originator() -> None:
    s = Suspicion(start=0.0, by=NODE_A, k=2, min_s=2.0, max_s=12.0)
    assert s.deadline == 12.0
    assert not s.confirm(NODE_A, 1.0)
    assert s.confirm(NODE_B, 1.0)
    assert not s.confirm(NODE_B, 1.5)
    assert s.confirm(NODE_C, 1.5)
    assert s.deadline == pytest.approx(2.0)
    assert not s.confirm(b"d" * 16, 1.6)  # k reached: nothing left to shorten


@pytest.mark.parametrize(("n", "expected"), [(0, 0), (1, 3), (99, 6), (999, 9), (1000, 12)])
def test_retransmit_limit_is_mult_times_ceil_log10(n: int, expected: int) -> None:
    assert retransmit_limit(3, n) == expected


def test_push_pull_interval_scales_above_32_nodes_like_memberlist() -> None:
    assert [push_pull_scale_s(1.0, n) for n in (1, 32, 33, 64, 65, 128, 129, 1000)] == [
        1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 6.0]


def test_awareness_is_clamped_and_scales_timeouts() -> None:
    a = Awareness(8)
    assert a.apply_delta(-1) == 0
    assert a.apply_delta(3) == 3
    assert a.scale(0.5) == 2.0
    assert a.apply_delta(100) == 7
    assert a.scale(1.0) == 8.0


def test_broadcast_queue_sends_each_item_at_most_the_retransmit_limit() -> None:
    q = BroadcastQueue(items_max=100)
    q.push("x", b"x" * 30)
    sent = 0
    for _ in range(10):
        sent += len(q.take(1000, 64, transmit_limit=4))
    assert sent == 4 and len(q) == 0


def test_an_uncounted_copy_spends_no_transmit_budget() -> None:
    q = BroadcastQueue(items_max=100)
    q.push("x", b"x" * 30)
    q.take(1000, 64, transmit_limit=2)
    for _ in range(5):  # copies to unreachable-looking members: the item stays as it was
        assert q.take(1000, 64, transmit_limit=2, count=False) == [b"x" * 30]
    assert q.take(1000, 64, transmit_limit=2) == [b"x" * 30]  # its second and last counted copy
    assert len(q) == 0


def test_broadcast_queue_sends_least_transmitted_and_then_newest_first() -> None:
    q = BroadcastQueue(items_max=100)
    q.push("old", b"o" * 30)
    assert q.take(1000, 64, 10) == [b"o" * 30]
    q.push("a", b"a" * 30)
    q.push("b", b"b" * 30)
    assert q.take(1000, 64, 10) == [b"b" * 30, b"a" * 30, b"o" * 30]


def test_broadcast_queue_replaces_an_item_about_the_same_subject() -> None:
    q = BroadcastQueue(items_max=100)
    q.push("m1", b"1" * 30)
    q.push("m1", b"2" * 30)
    assert q.take(1000, 64, 10) == [b"2" * 30]


def test_broadcast_queue_puts_urgent_items_first() -> None:
    q = BroadcastQueue(items_max=100)
    q.push("dead", b"d" * 30, urgent=True)
    q.push("alive", b"a" * 30)
    assert q.take(1000, 64, 10)[0] == b"d" * 30


@given(st.lists(st.integers(20, 300), min_size=1, max_size=60), st.integers(20, 1400))
def test_broadcast_queue_packs_by_size_and_never_exceeds_the_budget(sizes: list[int], budget: int) -> None:
    q = BroadcastQueue(items_max=1000)
    for i, size in enumerate(sizes):
        q.push(i, bytes(size))
    taken = q.take(budget, 64, 10)
    assert sum(len(t) for t in taken) <= budget
    if min(sizes) <= budget:
        assert taken  # something that fits is always sent


def test_broadcast_queue_is_bounded() -> None:
    q = BroadcastQueue(items_max=10)
    for i in range(50):
        q.push(i, b"z" * 30)
    assert len(q) == 10 and q.dropped == 40


@pytest.mark.parametrize(
    ("status", "inc", "kind", "update_inc", "expected"),
    [
        (None, 0, Kind.ALIVE, 0, Status.ALIVE),
        (None, 0, Kind.SUSPECT, 5, None),
        (None, 0, Kind.DEAD, 5, None),
        (Status.ALIVE, 3, Kind.ALIVE, 3, None),
        (Status.ALIVE, 3, Kind.ALIVE, 4, Status.ALIVE),
        (Status.ALIVE, 3, Kind.SUSPECT, 3, Status.SUSPECT),
        (Status.ALIVE, 3, Kind.SUSPECT, 2, None),
        (Status.SUSPECT, 3, Kind.ALIVE, 3, None),
        (Status.SUSPECT, 3, Kind.ALIVE, 4, Status.ALIVE),
        (Status.SUSPECT, 3, Kind.DEAD, 3, Status.DEAD),
        (Status.ALIVE, 3, Kind.LEAVE, 3, Status.LEFT),
        (Status.DEAD, 3, Kind.ALIVE, 3, None),
        (Status.DEAD, 3, Kind.ALIVE, 4, Status.ALIVE),
        (Status.DEAD, 3, Kind.SUSPECT, 9, None),
        (Status.LEFT, 3, Kind.DEAD, 9, None),
        (Status.LEFT, 3, Kind.ALIVE, 4, Status.ALIVE),
    ],
)
def test_transition_table(status: Status | None, inc: int, kind: Kind, update_inc: int,
                          expected: Status | None) -> None:
    assert transition(status, inc, kind, update_inc) is expected


def test_transition_table_never_lowers_an_incarnation() -> None:
    for (status, kind), _ in TRANSITIONS.items():
        if status is not None:
            assert transition(status, 5, kind, 4) is None


def test_profiles_build_and_memberlist_uses_its_own_formulas() -> None:
    ml = SwimConfig.profile("memberlist")
    assert (ml.probe_interval_s, ml.probe_timeout_s, ml.indirect_checks) == (1.0, 0.5, 3)
    assert (ml.suspicion_mult, ml.suspicion_max_timeout_mult, ml.k) == (4, 6.0, 2)
    assert (ml.gossip_interval_s, ml.gossip_nodes, ml.push_pull_interval_s) == (0.2, 3, 30.0)
    assert not (ml.urgent_first or ml.eager_suspect_probe or ml.tell_dead_senders)
    plain = SwimConfig.profile("swim")
    assert plain.k == 0 and plain.awareness_max == 1 and not plain.buddy
    for name in ("lan", "wan", "local"):
        assert SwimConfig.profile(name).profile_name == name
    assert not math.isnan(SwimConfig.profile("lan", probe_interval_s=2.0).probe_interval_s)


def test_packed_messages_are_byte_identical_to_the_codec() -> None:
    from meshcore.swim._packing import with_updates
    from meshcore.wire import Ack, Alive, NodeMeta, Ping, Suspect, encode, encode_update

    ups = tuple(Alive(node=bytes([i]) * 16, incarnation=i, addr=("h", i), meta=NodeMeta(name="x"))
                for i in range(30)) + (Suspect(node=NODE_A, incarnation=1, by=NODE_B),)
    for n in (0, 1, 23, 24, 31):
        for msg, empty in (
            (Ping(seq=5, sender=NODE_A, target=NODE_B, updates=ups[:n]), Ping(seq=5, sender=NODE_A, target=NODE_B)),
            (Ack(seq=0, sender=NODE_A, updates=ups[:n]), Ack(seq=0, sender=NODE_A)),
        ):
            assert with_updates(encode(empty), [encode_update(u) for u in ups[:n]]) == encode(msg)


def test_the_swim_core_imports_no_io_and_reads_no_clock() -> None:
    import ast
    import pathlib

    import meshcore.swim as swim_pkg

    for path in pathlib.Path(swim_pkg.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        assert not names & {"trio", "socket", "time", "asyncio", "datetime"}, path.name


def test_an_incrementally_encoded_push_pull_is_byte_identical_to_the_codec() -> None:
    from meshcore.wire import MemberState, NodeMeta, PushPull, Status, decode, encode
    from meshcore.wire._pushpull import encode_member_state, encode_push_pull

    for n in (0, 1, 23, 24, 255, 256, 300):
        states = tuple(
            MemberState(node=bytes([i % 256, i // 256]) + bytes(14), incarnation=i * 7,
                        addr=(f"10.0.{i // 256}.{i % 256}", 7946), meta=NodeMeta(name=f"n{i}"),
                        status=Status.SUSPECT if i % 3 else Status.ALIVE, signature=bytes(i % 5))
            for i in range(n))
        pp = PushPull(sender=bytes(16), join=n % 2 == 0, reply=True, states=states)
        fast = encode_push_pull(sender=pp.sender, join=pp.join, reply=pp.reply,
                                state_items=[encode_member_state(s) for s in states])
        assert fast == encode(pp)
        assert decode(fast, bytes_max=1 << 24) == pp
