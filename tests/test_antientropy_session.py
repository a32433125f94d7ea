"""Reconciliation sessions between two in-memory replicas."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.antientropy import (
    KeyRange,
    MemoryReplica,
    ReconcileConfig,
    ReconcileError,
    ReconcileSession,
    VersionedRecord,
    reconcile_pair,
)
from meshcore.antientropy._messages import Put, encode_block, encode_frame
from meshcore.errors import LocalProtocolError, RemoteProtocolError


def _v(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _replica(records: dict[bytes, tuple[int, bool]]) -> MemoryReplica:
    return MemoryReplica.from_records(
        [VersionedRecord(k, _v(v), None if tomb else k + b"=" + _v(v)) for k, (v, tomb) in records.items()]
    )


@st.composite
def replica_pairs(draw: st.DrawFn) -> tuple[dict[bytes, tuple[int, bool]], dict[bytes, tuple[int, bool]]]:
    """Two replicas of a shared base: random sets, newer versions both ways, tombstones,
    empty sides and subsets all come out of the same few choices."""
    base = draw(st.dictionaries(st.binary(min_size=1, max_size=6), st.tuples(st.integers(1, 1000), st.booleans()), max_size=300))
    a, b = dict(base), dict(base)
    for key in list(base):
        fate = draw(st.sampled_from(["same"] * 6 + ["newer_a", "newer_b", "only_a", "only_b", "tomb_a", "tomb_b"]))
        v = base[key][0]
        if fate == "newer_a":
            a[key] = (v + draw(st.integers(1, 10**6)), False)
        elif fate == "newer_b":
            b[key] = (v + draw(st.integers(1, 10**6)), False)
        elif fate == "only_a":
            del b[key]
        elif fate == "only_b":
            del a[key]
        elif fate == "tomb_a":
            a[key] = (v + 1, True)
        elif fate == "tomb_b":
            b[key] = (v + 1, True)
    if draw(st.booleans()):
        a.clear() if draw(st.booleans()) else b.clear()
    return a, b


def _differ(a: dict[bytes, tuple[int, bool]], b: dict[bytes, tuple[int, bool]]) -> int:
    return sum(1 for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@settings(max_examples=60)
@given(replica_pairs(), st.integers(0, 2**32))
def test_after_a_session_replicas_are_equal_and_each_differing_record_crossed_once(pair, seed):
    a_rec, b_rec = pair
    a, b = _replica(a_rec), _replica(b_rec)
    differed = _differ(a_rec, b_rec)
    result = reconcile_pair(a, b, rng=random.Random(seed), config=ReconcileConfig(message_bytes_max=4096))
    assert a.snapshot() == b.snapshot()
    assert result.records_sent <= 1.05 * differed
    assert result.verified is (True if differed else None)
    # only the stale side was repaired: every applied record was newer than what it replaced
    assert a.applied + b.applied == differed


@settings(max_examples=25)
@given(replica_pairs(), st.integers(0, 2**32))
def test_versions_the_leaf_window_cannot_order_are_settled_by_an_offer(pair, seed):
    a_rec, b_rec = pair
    # a one-byte window over 8-byte versions that share 6 bytes: most conflicts tie on it
    config = ReconcileConfig(window_bytes=1, message_bytes_max=4096)
    a, b = _replica(a_rec), _replica(b_rec)
    result = reconcile_pair(a, b, rng=random.Random(seed), config=config)
    assert a.snapshot() == b.snapshot()
    assert result.records_sent <= 1.05 * _differ(a_rec, b_rec)


def _window_one_pair(a_rec, b_rec, seed):
    a, b = _replica(a_rec), _replica(b_rec)
    result = reconcile_pair(a, b, rng=random.Random(seed), config=ReconcileConfig(window_bytes=1, message_bytes_max=4096))
    return a, b, result


def test_a_newer_tombstone_whose_short_version_hash_collides_with_the_stale_value_still_crosses():
    # With this salt the 1-byte hashes of (0x94, tombstone) and (0x93, live) are equal and the
    # 1-byte windows tie, so the leaf shows no difference although the node's fingerprints do.
    same = {k: (1, False) for k in (b"\x01", b"\x02", b"\x03", b"\x04", b"\0" * 2, b"\0" * 3, b"\0" * 4, b"\0" * 6)}
    same[b"\0" * 5] = (256, False)
    a, b, result = _window_one_pair({**same, b"\x00": (148, True)}, {**same, b"\x00": (147, False)}, seed=0)
    assert a.snapshot() == b.snapshot()
    assert b.read(b"\x00") == VersionedRecord(b"\x00", _v(148), None)
    assert result.verified is True
    assert result.records_sent == 1


def test_a_version_hash_collision_hidden_beside_a_real_difference_is_caught_by_the_leaf_check():
    # Key 0x000000 ties (0x03e2 vs 0x03e1, hashes equal with this salt) in a leaf where the
    # key 0x0000 really differs, so only the check of the matched entries reveals it.
    same = {b"\0" * 4: (1, False), b"\0" * 5: (1, False), b"\0": (1, False)}
    a_rec = {**same, b"\0" * 3: (994, True), b"\0" * 2: (1, False)}
    b_rec = {**same, b"\0" * 3: (993, True)}
    a, b, result = _window_one_pair(a_rec, b_rec, seed=0)
    assert a.snapshot() == b.snapshot()
    assert b.read(b"\0" * 3) == VersionedRecord(b"\0" * 3, _v(994), None)
    assert result.initiator.checks_failed + result.responder.checks_failed == 1
    assert result.verified is True
    assert result.records_sent == 2


def test_identical_replicas_settle_in_one_round_trip_of_a_few_bytes():
    rng = random.Random(1)
    recs = {rng.randbytes(16): (rng.randrange(1, 10**9), False) for _ in range(5000)}
    result = reconcile_pair(_replica(recs), _replica(recs), rng=rng)
    assert result.round_trips == 1
    assert result.bytes_total <= 128


def test_a_hundred_differences_among_many_keys_take_three_round_trips():
    rng = random.Random(2)
    recs = {rng.randbytes(16): (rng.randrange(1, 10**9), False) for _ in range(50_000)}
    other = dict(recs)
    for key in rng.sample(sorted(recs), 100):
        other[key] = (recs[key][0] + 1_000_000, rng.random() < 0.3)
    a, b = _replica(recs), _replica(other)
    result = reconcile_pair(a, b, rng=rng)
    assert a.snapshot() == b.snapshot()
    assert result.round_trips <= 3
    assert result.records_sent == 100


def test_a_large_divergence_streams_in_frames_no_larger_than_the_limit():
    rng = random.Random(3)
    a_rec = {rng.randbytes(8): (5, False) for _ in range(3000)}
    config = ReconcileConfig(message_bytes_max=4096)
    a, b = _replica(a_rec), _replica({})
    sa = ReconcileSession(a, initiator=True, rng=rng, config=config)
    sb = ReconcileSession(b, initiator=False, config=config)
    frame, sides, turn, sizes = sa.start(), (sb, sa), 0, []
    while frame is not None:
        sizes.append(len(frame))
        frame = sides[turn].receive(frame)
        turn ^= 1
    assert max(sizes) <= 4096
    assert len(sizes) > 10
    assert a.snapshot() == b.snapshot()


def test_only_the_shared_ranges_are_reconciled():
    a = _replica({b"a1": (1, False), b"m1": (1, False), b"z1": (1, False)})
    b = _replica({b"a2": (1, False), b"m2": (1, False), b"z2": (1, False)})
    shared = [KeyRange(b"a", b"b"), KeyRange(b"z", None)]
    reconcile_pair(a, b, rng=random.Random(4), ranges=shared)
    assert sorted(a.snapshot()) == [b"a1", b"a2", b"m1", b"z1", b"z2"]
    assert sorted(b.snapshot()) == [b"a1", b"a2", b"m2", b"z1", b"z2"]


def test_a_record_pushed_outside_the_shared_ranges_is_counted_and_dropped():
    a = _replica({b"a1": (1, False)})
    b = _replica({b"a2": (1, False)})
    sa = ReconcileSession(a, initiator=True, rng=random.Random(5), ranges=[KeyRange(b"a", b"b")])
    sb = ReconcileSession(b, initiator=False)
    assert sb.receive(sa.start()) is not None
    intruder = encode_block(Put(b"zz", _v(1), b"not yours"))
    sb.receive(encode_frame(more=False, final=False, dense=False, blocks=[intruder]))
    assert b.read(b"zz") is None
    assert sb.statistics().records_out_of_range == 1


def test_a_value_larger_than_a_frame_travels_alone():
    big = VersionedRecord(b"big", _v(9), b"x" * 100_000)
    a = MemoryReplica.from_records([big])
    b = _replica({})
    result = reconcile_pair(a, b, rng=random.Random(6))
    assert b.read(b"big") == big
    assert result.records_sent == 1


# --- bad frames ------------------------------------------------------------------------


def _mid_session(seed: int) -> tuple[MemoryReplica, MemoryReplica, ReconcileSession, bytes]:
    """A responder replica, its session, and the initiator's second frame (records inside)."""
    rng = random.Random(seed)
    a_rec = {rng.randbytes(4): (rng.randrange(1, 100), False) for _ in range(200)}
    b_rec = {k: v for k, v in a_rec.items() if rng.random() < 0.5}
    a, b = _replica(a_rec), _replica(b_rec)
    sa = ReconcileSession(a, initiator=True, rng=rng)
    sb = ReconcileSession(b, initiator=False)
    frame = sb.receive(sa.start())
    assert frame is not None
    reply = sa.receive(frame)
    assert reply is not None
    return a, b, sb, reply


@settings(max_examples=60)
@given(st.integers(0, 10**6), st.data())
def test_a_corrupted_frame_ends_the_session_with_a_clear_error_and_changes_no_data(seed, data):
    _, b, sb, frame = _mid_session(seed % 7)
    before = b.snapshot()
    pos = data.draw(st.integers(0, len(frame) - 1))
    flip = data.draw(st.integers(1, 255))
    bad = frame[:pos] + bytes([frame[pos] ^ flip]) + frame[pos + 1 :]
    with pytest.raises(ReconcileError):
        sb.receive(bad)
    assert b.snapshot() == before
    assert sb.done and sb.failed


@settings(max_examples=30)
@given(st.integers(0, 6), st.data())
def test_a_truncated_frame_ends_the_session_and_changes_no_data(seed, data):
    _, b, sb, frame = _mid_session(seed)
    before = b.snapshot()
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ReconcileError):
        sb.receive(frame[:cut])
    assert b.snapshot() == before


def test_an_oversized_frame_is_refused_before_it_is_parsed():
    _, b, sb, _ = _mid_session(1)
    before = b.snapshot()
    with pytest.raises(ReconcileError, match="exceeds the limit"):
        sb.receive(b"\x00" * (ReconcileConfig().record_frame_bytes_max + 1))
    assert b.snapshot() == before


def test_reconcile_errors_are_remote_protocol_errors():
    assert issubclass(ReconcileError, RemoteProtocolError)


def test_misusing_a_session_raises_a_local_error():
    replica = _replica({})
    with pytest.raises(LocalProtocolError, match="rng"):
        ReconcileSession(replica, initiator=True)
    session = ReconcileSession(replica, initiator=False)
    with pytest.raises(LocalProtocolError):
        session.start()


def test_a_broken_session_is_resumed_by_the_next_one_which_only_redoes_what_was_left():
    rng = random.Random(8)
    a_rec = {rng.randbytes(16): (rng.randrange(1, 10**6), False) for _ in range(20_000)}
    b_rec = dict(a_rec)
    for key in rng.sample(sorted(a_rec), 2000):
        del b_rec[key]
    a, b = _replica(a_rec), _replica(b_rec)
    config = ReconcileConfig(message_bytes_max=8192)
    sa = ReconcileSession(a, initiator=True, rng=rng, config=config)
    sb = ReconcileSession(b, initiator=False, config=config)
    frame, sides, turn = sa.start(), (sb, sa), 0
    for _ in range(12):  # the link breaks part way
        frame = sides[turn].receive(frame)
        turn ^= 1
    applied_before = b.applied
    assert frame is not None and 0 < applied_before < 2000
    resumed = reconcile_pair(a, b, rng=rng, config=config)
    assert a.snapshot() == b.snapshot()
    assert resumed.records_sent == 2000 - applied_before
