"""Records: validation, last-writer-wins merge, and the tombstone purge rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.errors import LocalProtocolError, RecordError
from meshcore.kv import (
    KEY_BYTES_MAX,
    VALUE_BYTES_MAX,
    Record,
    Stamp,
    TombstoneAck,
    as_key,
    check_value,
    may_purge,
    merge,
    missing_acks,
    newer,
)

A, B, C, D = (bytes([i]) * 16 for i in (1, 2, 3, 4))


def st_(us: int, c: int = 0, node: bytes = A) -> Stamp:
    return Stamp(us, c, node)


def test_str_keys_are_their_utf8_bytes() -> None:
    assert as_key("clé") == "clé".encode() and as_key(b"k") == b"k"


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (b"", b"v", "1 to 1024 bytes"),
        (b"k" * (KEY_BYTES_MAX + 1), b"v", "1 to 1024 bytes"),
        (b"k", b"x" * (VALUE_BYTES_MAX + 1), "at most 1048576 bytes"),
    ],
)
def test_keys_and_values_out_of_bounds_raise_record_error(key: bytes, value: bytes, match: str) -> None:
    with pytest.raises(RecordError, match=match) as info:
        Record(key, value, st_(1))
    assert isinstance(info.value, LocalProtocolError)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (1, b"v", "got int"),
        ("k", b"v", "got str"),
        (b"k", "text", "got str"),
        (b"k", bytearray(b"v"), "got bytearray"),
        (b"k", b"v", "got tuple"),  # the stamp below is a tuple
    ],
)
def test_fields_of_the_wrong_type_are_refused_compiled_or_not(key: object, value: object, match: str) -> None:
    stamp: object = (1, 0, A) if match == "got tuple" else st_(1)
    # RecordError in pure Python, TypeError compiled (mypyc checks the field types first).
    with pytest.raises((RecordError, TypeError), match=match):
        Record(key, value, stamp)  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "value"), [(1, b"v"), (b"k", "text"), (b"k", 3), (b"", b"v")])
def test_the_api_checks_give_record_error_for_any_bad_key_or_value(key: object, value: object) -> None:
    with pytest.raises(RecordError):
        as_key(key)
        check_value(value)


def test_a_one_mebibyte_value_is_accepted() -> None:
    assert Record(b"k", b"x" * VALUE_BYTES_MAX, st_(1)).size_bytes() > VALUE_BYTES_MAX


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        (Record(b"k", b"old", st_(1)), Record(b"k", b"new", st_(2)), "b"),
        (Record(b"k", b"x", st_(5, 1)), Record(b"k", b"y", st_(5, 0)), "a"),
        (Record(b"k", b"x", st_(5, 0, A)), Record(b"k", b"y", st_(5, 0, B)), "b"),  # node id tie-break
        (Record(b"k", b"x", st_(5)), Record(b"k", None, st_(4)), "a"),  # old delete loses
        (Record(b"k", b"x", st_(5)), Record(b"k", None, st_(6)), "b"),  # newer delete wins
        (Record(b"k", b"x", st_(5)), Record(b"k", None, st_(5)), "b"),  # equal stamps: tombstone
        (Record(b"k", b"x", st_(5)), Record(b"k", b"y", st_(5)), "b"),  # equal stamps: larger value
    ],
)
def test_last_writer_wins_table(a: Record, b: Record, winner: str) -> None:
    expected = a if winner == "a" else b
    assert merge(a, b) == expected and merge(b, a) == expected


def test_versions_of_different_keys_cannot_be_compared() -> None:
    with pytest.raises(RecordError, match="different keys"):
        newer(Record(b"a", b"", st_(1)), Record(b"b", b"", st_(1)))


def test_anything_is_newer_than_nothing() -> None:
    assert newer(Record(b"a", None, st_(0)), None)


records = st.builds(
    Record,
    st.just(b"k"),
    st.none() | st.binary(max_size=3),
    st.builds(Stamp, st.integers(0, 3), st.integers(0, 2), st.sampled_from([A, B])),
)


@settings(max_examples=200)
@given(records, records, records)
def test_merge_is_commutative_associative_and_idempotent(a: Record, b: Record, c: Record) -> None:
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a


@settings(max_examples=100)
@given(st.lists(records, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_replicas_applying_the_same_writes_in_any_order_converge(rs: list[Record], rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(rs)
    rnd.shuffle(shuffled)
    one = rs[0]
    for r in rs[1:]:
        one = merge(one, r)
    two = shuffled[0]
    for r in shuffled[1:]:
        two = merge(two, r)
    assert one == two


# --- tombstones -------------------------------------------------------------------------

TOMB = Record(b"k", None, st_(10))


def ack(node: bytes, us: int = 10, key: bytes = b"k") -> TombstoneAck:
    return TombstoneAck(key, st_(us), node)


def test_tombstone_is_purged_only_once_every_replica_acknowledged() -> None:
    assert not may_purge(TOMB, [ack(A)], [A, B])
    assert missing_acks(TOMB, [ack(A)], [A, B]) == {B}
    assert may_purge(TOMB, [ack(A), ack(B)], [A, B])


def test_acknowledging_an_older_delete_or_another_key_does_not_count() -> None:
    assert missing_acks(TOMB, [ack(A), ack(B, us=9), ack(C, key=b"other")], [A, B, C]) == {B, C}


def test_acknowledging_a_newer_version_counts() -> None:
    assert may_purge(TOMB, [ack(A), ack(B, us=11)], [A, B])


def test_stand_ins_holding_hints_must_acknowledge_too() -> None:
    assert missing_acks(TOMB, [ack(A), ack(B)], [A, B], also=[D]) == {D}
    assert may_purge(TOMB, [ack(A), ack(B), ack(D)], [A, B], also=[D])


def test_a_down_replica_keeps_the_tombstone_however_long_it_waits() -> None:
    # No clock argument exists: only acks (or a placement change) can release it.
    acks = [ack(A)] * 1000
    assert not may_purge(TOMB, acks, [A, B])
    assert may_purge(TOMB, acks, [A, C][:1])  # B left the replica set


def test_purging_a_value_or_with_no_replica_set_is_local_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="only a tombstone"):
        may_purge(Record(b"k", b"v", st_(1)), [], [A])
    with pytest.raises(LocalProtocolError, match="replica set is empty"):
        may_purge(TOMB, [ack(A)], [])
