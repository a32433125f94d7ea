"""The store's record cache: it never answers with a version other than the store's, under
concurrent writes, deletions of versions and failures; its bounds; and the kv service's
gets use it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
from _storage_helpers import NS, A, B, rec

from meshcore.errors import LocalProtocolError
from meshcore.kv import Stamp
from meshcore.runtime._recordcache import ENTRY_OVERHEAD_BYTES, RecordCache
from meshcore.runtime._storage import Store, open_store


def test_the_cache_keeps_won_versions_evicts_the_oldest_written_and_skips_large_values() -> None:
    c = RecordCache(bytes_max=3 * (ENTRY_OVERHEAD_BYTES + 4), value_bytes_max=10)  # 3 small entries
    c.wrote("ns", [rec(b"k1", b"v1", 1), rec(b"k2", b"v2", 1)], [True, False])
    assert c.get("ns", b"k1") == rec(b"k1", b"v1", 1) and c.get("ns", b"k2") is None
    assert (c.hits, c.misses) == (1, 1)
    c.wrote("ns", [rec(b"k2", b"v2", 2), rec(b"k3", None, 2)], [True, True])  # a tombstone is a version
    c.wrote("ns", [rec(b"k1", b"v1", 3)], [True])  # rewritten: now the most recent
    c.wrote("ns", [rec(b"k4", b"v4", 4)], [True])  # over budget: k2, the oldest written, goes
    assert c.get("ns", b"k2") is None and c.evicted == 1
    assert c.get("ns", b"k3") == rec(b"k3", None, 2) and c.get("ns", b"k1") == rec(b"k1", b"v1", 3)
    assert c.size_bytes <= c.bytes_max and len(c) == 3
    c.wrote("ns", [rec(b"k1", b"x" * 11, 5)], [True])  # too large to keep: the old entry goes too
    assert c.get("ns", b"k1") is None and len(c) == 2
    c.forget("ns", b"k3")
    assert c.get("ns", b"k3") is None
    c.wrote("ns", [rec(b"k9", b"v", 6)], [True, True])  # a length mismatch: forget everything
    assert len(c) == 0 and c.size_bytes == 0


def test_a_read_fills_the_cache_unless_a_write_or_a_forget_raced_with_it() -> None:
    c = RecordCache(bytes_max=1 << 20)
    t = c.read_begins()
    c.read_ends(t, [("ns", rec(b"a", b"disk", 1)), ("ns", None)])  # None: no row, nothing kept
    assert c.get("ns", b"a") == rec(b"a", b"disk", 1) and len(c) == 1
    slow, fast = c.read_begins(), c.read_begins()
    c.wrote("ns", [rec(b"b", b"new", 5)], [True])  # answered while both reads run
    c.forget("ns", b"c")
    c.read_ends(fast, [("ns", rec(b"b", b"old", 4)), ("ns", rec(b"c", b"gone", 3)), ("ns", rec(b"d", b"d", 1))])
    assert c.get("ns", b"b") == rec(b"b", b"new", 5)  # the racing write's version stays
    assert c.get("ns", b"c") is None  # forgotten during the read: not put back
    assert c.get("ns", b"d") == rec(b"d", b"d", 1)  # untouched: kept
    c.read_ends(slow, [("ns", rec(b"c", b"gone", 3))])
    assert c.get("ns", b"c") is None
    t = c.read_begins()  # no read ran across the forget: this one may keep c
    c.read_ends(t, [("ns", rec(b"c", b"back", 6))])
    assert c.get("ns", b"c") == rec(b"c", b"back", 6)
    t = c.read_begins()
    c.clear()  # a read running across a clear keeps nothing
    c.read_ends(t, [("ns", rec(b"e", b"e", 1))])
    assert len(c) == 0
    t = c.read_begins()
    c.read_ends(t, [("ns", rec(b"e", b"e", 1))])
    assert len(c) == 1


async def test_a_store_without_a_cache_or_with_a_bad_budget() -> None:
    with pytest.raises(LocalProtocolError, match="cache_bytes"):
        async with open_store("/nonexistent/x.db", cache_bytes=-1):
            pass


async def test_the_cache_matches_the_store_under_concurrent_writes_and_deletions(store: Store) -> None:
    rng = random.Random(7)
    keys = [b"k%d" % i for i in range(3)]

    async def one_op(i: int) -> None:
        k = rng.choice(keys)
        us = rng.randrange(1, 100)
        value = None if rng.random() < 0.2 else b"v%d" % i
        r = rec(k, value, us, rng.choice((A, B)))
        roll = rng.random()
        if roll < 0.35:
            done = trio.Event()
            store.put_many_nowait("photos", [r, rec(rng.choice(keys), b"w", us + 1)], lambda won, err: done.set())
            await done.wait()
        elif roll < 0.6:
            await store.put_many("photos", [r])
        elif roll < 0.8:
            # A read of the disk that fills the cache, racing with the writes.
            token = store.read_begins()
            found = await store.get("photos", k)
            store.read_ends(token, [("photos", found)])
        else:
            # Delete the version stored now (a hand-off drop or a purge), racing with the
            # other tasks' writes of the same keys in the same group commits.
            cur = await store.get("photos", k)
            if cur is not None:
                if cur.is_tombstone and rng.random() < 0.5:
                    await store.purge_tombstone("photos", k, cur.stamp)
                else:
                    await store.drop_copy("photos", k, cur.stamp)

    hits = held_most = 0
    for round_ in range(100):
        async with trio.open_nursery() as nursery:  # a burst of concurrent operations
            for i in range(rng.randrange(1, 20)):
                nursery.start_soon(one_op, round_ * 100 + i)
        for key in keys:  # quiescent: every cached version is the stored one
            held = store.cached("photos", key)
            if held is not None:
                hits += 1
                assert held == await store.get("photos", key), (round_, key)
        held_most = max(held_most, store.statistics().cache_records)
    # The cache was exercised. (Not "holds records at the end": the tasks share one random
    # generator, so the order depends on the writer thread, and the last round may have
    # deleted all three keys.)
    assert hits > 50 and held_most > 0


async def test_a_deletion_committed_after_a_winning_write_of_its_version_leaves_no_entry(
        store: Store) -> None:
    await store.put_many("photos", [rec(b"k", b"v0", 1)])
    # Queued in this order: version 2 wins over version 1, then the drop of version 2
    # deletes it. Forgetting the key when the drop was queued (not when it is answered)
    # would let the write's later answer put version 2 back in the cache.
    answered = trio.Event()
    store.put_many_nowait("photos", [rec(b"k", b"v2", 2)], lambda won, err: answered.set())
    assert await store.drop_copy("photos", b"k", Stamp(2, 0, A))
    await answered.wait()
    assert await store.get("photos", b"k") is None
    assert store.cached("photos", b"k") is None


async def test_a_closed_store_answers_nothing_from_memory(tmp_path: Path) -> None:
    async with open_store(tmp_path / "n.db", synchronous="normal") as s:
        await s.put_namespace(NS)
        await s.put_many("photos", [rec(b"k", b"v", 1)])
        assert s.cached("photos", b"k") is not None
    assert s.cached("photos", b"k") is None
    async with open_store(tmp_path / "n.db", synchronous="normal", cache_bytes=0) as s:
        await s.put_many("photos", [rec(b"k", b"v2", 2)])
        assert s.cached("photos", b"k") is None  # no budget: no cache
        assert await s.get("photos", b"k") == rec(b"k", b"v2", 2)
