"""RangeIndex and Splitter: range sums match a brute-force model under any write sequence."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.antientropy import (
    FULL_RANGE,
    HASH_MASK,
    KeyRange,
    RangeIndex,
    Splitter,
    item_hash,
    newer,
)
from meshcore.errors import LocalProtocolError

keys = st.binary(min_size=1, max_size=4)
versions = st.binary(min_size=1, max_size=3)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, versions, st.booleans()),
        st.tuples(st.just("discard"), keys, st.just(b"x"), st.just(False)),
    ),
    max_size=120,
)
bounds = st.one_of(st.none(), st.binary(max_size=4))


def _model_summary(model: dict[bytes, tuple[bytes, bool]], lo: bytes, hi: bytes | None) -> tuple[int, int]:
    inside = [k for k in model if lo <= k and (hi is None or k < hi)]
    return len(inside), sum(item_hash(k, *model[k]) for k in inside) & HASH_MASK


@settings(max_examples=60)
@given(ops, st.lists(st.tuples(st.binary(max_size=4), bounds), max_size=8))
def test_range_summaries_match_a_brute_force_model_after_any_writes(ops, queries):
    index = RangeIndex(block_items=16)  # tiny blocks: splits and merges happen constantly
    model: dict[bytes, tuple[bytes, bool]] = {}
    for op, key, version, tomb in ops:
        if op == "put":
            index.put(key, version, tomb)
            model[key] = (version, tomb)
        else:
            index.discard(key)
            model.pop(key, None)
    assert len(index) == len(model)
    assert list(index.keys(b"", None)) == sorted(model)
    for lo, hi in [(b"", None), *queries]:
        if hi is not None and hi < lo:
            lo, hi = hi, lo
        assert index.summary(lo, hi) == _model_summary(model, lo, hi)


@settings(max_examples=30)
@given(st.dictionaries(keys, st.tuples(versions, st.booleans()), max_size=200))
def test_cold_build_equals_incremental_writes(entries):
    built = RangeIndex.build(((k, v, t) for k, (v, t) in entries.items()), block_items=16)
    grown = RangeIndex(block_items=16)
    for k, (v, t) in reversed(list(entries.items())):
        grown.put(k, v, t)
    assert built.summary(b"", None) == grown.summary(b"", None)
    assert built.entries(b"", None) == grown.entries(b"", None)


def test_rewriting_an_entry_changes_the_range_sum_and_restoring_it_restores_the_sum():
    index = RangeIndex.build([(bytes([i]), b"\x01", False) for i in range(1, 200)], block_items=16)
    before = index.summary(b"", None)
    index.put(b"\x05", b"\x02", False)
    assert index.summary(b"", None) != before
    index.put(b"\x05", b"\x01", False)
    assert index.summary(b"", None) == before


def test_a_tombstone_hashes_differently_from_a_live_entry_at_the_same_version():
    assert item_hash(b"k", b"\x01", True) != item_hash(b"k", b"\x01", False)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((b"\x02", False), (b"\x01", True), True),
        ((b"\x01", True), (b"\x01", False), True),  # equal version: the tombstone wins
        ((b"\x01", False), (b"\x01", False), False),
        ((b"\x01", False), (b"\x01\x00", False), False),  # a prefix sorts first
    ],
)
def test_newer_orders_by_version_then_tombstone(a, b, expected):
    assert newer(a[0], a[1], b[0], b[1]) is expected


def test_writes_with_bad_keys_or_versions_raise_a_local_error_that_says_what_to_do():
    index = RangeIndex()
    with pytest.raises(LocalProtocolError, match="key"):
        index.put(b"", b"\x01")
    with pytest.raises(LocalProtocolError, match="to_bytes"):
        index.put(b"k", 1)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="duplicate"):
        RangeIndex.build([(b"k", b"\x01", False), (b"k", b"\x02", False)])


@pytest.mark.parametrize(
    ("root", "nbits", "path", "expected"),
    [
        (FULL_RANGE, 1, 0, (b"", b"\x80")),
        (FULL_RANGE, 1, 1, (b"\x80", None)),
        (FULL_RANGE, 4, 3, (b"\x30", b"\x40")),
        (FULL_RANGE, 12, 0x123, (b"\x12\x30", b"\x12\x40")),
        (KeyRange(b"a", b"c"), 1, 0, (b"a", b"b")),
        (KeyRange(b"a", b"c"), 1, 1, (b"b", b"c")),
    ],
)
def test_node_bounds_table(root, nbits, path, expected):
    assert Splitter(root, 64).bounds(nbits, path) == expected


@settings(max_examples=40)
@given(st.binary(max_size=3), st.one_of(st.none(), st.binary(min_size=1, max_size=3)), st.integers(1, 20), st.data())
def test_a_parents_bounds_are_exactly_its_first_and_last_childs(lo, hi, nbits, data):
    if hi is not None and hi <= lo:
        hi = lo + b"\x01"
    splitter = Splitter(KeyRange(lo, hi), 64)
    path = data.draw(st.integers(0, (1 << nbits) - 1))
    bits = data.draw(st.integers(1, 6))
    parent = splitter.bounds(nbits, path)
    children = splitter.child_points(nbits, path, bits)
    assert (children[0], children[-1]) == parent
    inner = [c for c in children if c is not None]
    assert inner == sorted(inner)


def test_random_keys_split_into_near_equal_children():
    rng = random.Random(3)
    index = RangeIndex.build([(rng.randbytes(16), b"\x01", False) for _ in range(20_000)])
    splitter = Splitter(FULL_RANGE, 64)
    points = splitter.child_points(0, 0, 5)
    counts = [index.count(points[i], points[i + 1]) for i in range(32)]
    assert sum(counts) == 20_000
    assert max(counts) < 2 * 20_000 / 32
