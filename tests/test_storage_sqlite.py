"""The SQLite store: durable group commits off the trio thread, LWW, scans, bad input."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from _storage_helpers import NS, A, B, C, rec

from meshcore.errors import LocalProtocolError, NamespaceError, RecordError, StorageError
from meshcore.kv import VALUE_BYTES_MAX, Namespace, Record, Stamp, TombstoneAck, merge, newer
from meshcore.runtime import _wal_syncer
from meshcore.runtime._storage import Store, open_store


class WriteLock:
    """Holds SQLite's write lock from another connection, so the writer thread blocks in
    BEGIN and every write submitted meanwhile lands in the next group commit."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


async def test_records_round_trip_including_a_one_mebibyte_value_and_a_tombstone(store: Store) -> None:
    big = bytes(range(256)) * (VALUE_BYTES_MAX // 256)
    assert len(big) == VALUE_BYTES_MAX
    won = await store.put_many("photos", [rec("big", big, 1), rec(b"gone", None, 2), rec(b"small", b"v", 3)])
    assert won == [True, True, True]
    assert await store.get("photos", "big") == rec(b"big", big, 1)
    gone = await store.get("photos", b"gone")
    assert gone is not None and gone.is_tombstone
    assert await store.get("photos", b"missing") is None


@pytest.mark.parametrize(("column", "bad"), [("value", "text"), ("value", 7), ("stamp", b"\x00" * 5), ("stamp", "s")])
async def test_a_row_that_is_not_a_record_is_a_storage_error_naming_its_key(
        store: Store, tmp_path: Path, column: str, bad: object) -> None:
    await store.put_many("photos", [rec(b"bad", b"v", 1), rec(b"good", b"w", 2)])
    with sqlite3.connect(tmp_path / "node.db") as conn:  # a file damaged by something else
        conn.execute(f"UPDATE records SET {column} = ? WHERE key = ?", (bad, b"bad"))
    with pytest.raises(StorageError, match="corrupt record b'bad'"):
        await store.get("photos", b"bad")
    good = await store.get("photos", b"good")
    assert good is not None and good.value == b"w"


async def test_the_store_keeps_the_last_writer_and_says_which_writes_won(store: Store) -> None:
    assert await store.put_many("photos", [rec(b"k", b"new", 5)]) == [True]
    assert await store.put_many("photos", [rec(b"k", b"old", 4)]) == [False]
    assert await store.put_many("photos", [rec(b"k", b"other", 5, node=B)]) == [True]  # node tie-break
    assert await store.put_many("photos", [rec(b"k", b"aaaaa", 5, node=B)]) == [False]  # equal: larger value
    assert await store.put_many("photos", [rec(b"k", None, 5, node=B)]) == [True]  # equal: tombstone
    got = await store.get("photos", b"k")
    assert got == rec(b"k", None, 5, node=B)


async def test_the_sql_merge_agrees_with_the_pure_merge_rule(store: Store) -> None:
    rnd = random.Random(5)
    expected: dict[bytes, Record] = {}
    for _ in range(30):
        batch = [
            Record(rnd.choice([b"a", b"b", b"c"]), rnd.choice([None, b"", b"x", b"y"]),
                   Stamp(rnd.randrange(4), rnd.randrange(2), rnd.choice([A, B])))
            for _ in range(rnd.randrange(1, 6))
        ]
        won = await store.put_many("photos", batch)
        for r, w in zip(batch, won, strict=True):
            assert w == newer(r, expected.get(r.key))
            expected[r.key] = merge(expected[r.key], r) if r.key in expected else r
    for key, r in expected.items():
        assert await store.get("photos", key) == r


async def test_concurrent_writes_share_group_commits(store: Store, tmp_path: Path) -> None:
    lock = WriteLock(tmp_path / "node.db")
    results: dict[int, list[bool]] = {}

    async def write(i: int) -> None:
        results[i] = await store.put_many("photos", [rec(f"k{i}", b"v", 10 + i)])

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(write, i)
        await trio.testing.wait_all_tasks_blocked()
        # Everything is queued behind the lock; nothing is acknowledged yet.
        assert results == {}
        lock.release()  # an empty COMMIT: instant
    assert all(results[i] == [True] for i in range(50))
    stats = store.statistics()
    assert stats.writes == 51 and stats.batch_writes_max >= 25 and stats.commits <= 3
    assert stats.pending == 0


async def test_a_failing_write_fails_alone_and_leaves_no_trace(store: Store, tmp_path: Path) -> None:
    side = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    side.execute("CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.key = x'626164' "
                 "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    side.close()
    lock = WriteLock(tmp_path / "node.db")
    outcome: dict[str, object] = {}

    async def write(key: str) -> None:
        try:
            outcome[key] = await store.put_many("photos", [rec(key, b"v", 1)])
        except StorageError as exc:
            outcome[key] = exc

    async with trio.open_nursery() as nursery:
        for key in ("good1", "bad", "good2"):
            nursery.start_soon(write, key)
        await trio.testing.wait_all_tasks_blocked()
        lock.release()  # an empty COMMIT: instant
    assert outcome["good1"] == [True] and outcome["good2"] == [True]
    assert isinstance(outcome["bad"], StorageError) and "disk says no" in str(outcome["bad"])
    assert await store.get("photos", b"bad") is None
    assert store.statistics().failed_commits == 2  # the group, then the bad write alone


async def test_versions_come_in_key_order_page_by_page(store: Store) -> None:
    keys = [f"k{i:03d}".encode() for i in range(25)]
    await store.put_many("photos", [rec(k, b"x" * 10, 100 + i) for i, k in enumerate(reversed(keys))])
    page = await store.versions("photos", limit=10)
    assert [k for k, _ in page] == keys[:10]
    page2 = await store.versions("photos", after=page[-1][0], limit=10)
    assert [k for k, _ in page2] == keys[10:20]
    scanned = [row async for row in store.scan_versions("photos", page=7)]
    assert [k for k, _ in scanned] == keys
    assert scanned[0][1] == Stamp(124, 0, A)
    assert await store.max_stamp() == Stamp(124, 0, A)


async def test_data_namespaces_and_versions_survive_a_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with open_store(path) as s:
        await s.put_namespace(NS)
        await s.put_namespace(Namespace(name="logs", replicas=1))
        await s.put_many("photos", [rec(b"a", b"1", 7), rec(b"b", None, 8)])
    async with open_store(path) as s:
        assert s.namespaces() == [Namespace(name="logs", replicas=1), NS]
        assert await s.get("photos", b"a") == rec(b"a", b"1", 7)
        assert [row async for row in s.scan_versions("photos")] == [(b"a", Stamp(7, 0, A)), (b"b", Stamp(8, 0, A))]
        assert await s.max_stamp() == Stamp(8, 0, A)


async def test_hints_are_kept_per_target_in_order_until_delivered(store: Store) -> None:
    await store.add_hints(B, "photos", [rec(b"x", b"1", 1), rec(b"y", None, 2)])
    await store.add_hints(C, "photos", [rec(b"z", b"3", 3)])
    hints = await store.hints(B)
    assert [(h.target, h.namespace, h.record) for h in hints] == [
        (B, "photos", rec(b"x", b"1", 1)), (B, "photos", rec(b"y", None, 2))]
    await store.delete_hints([hints[0].id])
    assert [h.record.key for h in await store.hints(B)] == [b"y"]
    assert [h.record.key for h in await store.hints(C)] == [b"z"]


async def test_tombstone_acks_keep_the_newest_per_node_and_purge_removes_only_that_tombstone(store: Store) -> None:
    await store.put_many("photos", [rec(b"k", None, 10)])
    await store.add_tombstone_acks("photos", [TombstoneAck(b"k", Stamp(10, 0, A), B),
                                              TombstoneAck(b"k", Stamp(9, 0, A), C)])
    await store.add_tombstone_acks("photos", [TombstoneAck(b"k", Stamp(8, 0, A), B)])  # older: ignored
    acks = await store.tombstone_acks("photos", b"k")
    assert [(a.node, a.stamp.physical_us) for a in acks] == [(B, 10), (C, 9)]
    assert not await store.purge_tombstone("photos", b"k", Stamp(9, 0, A))  # not that version
    await store.put_many("photos", [rec(b"v", b"value", 10)])
    assert not await store.purge_tombstone("photos", b"v", Stamp(10, 0, A))  # a value, not a tombstone
    assert await store.purge_tombstone("photos", b"k", Stamp(10, 0, A))
    assert await store.get("photos", b"k") is None
    assert await store.tombstone_acks("photos", b"k") == []
    assert await store.get("photos", b"v") is not None


async def test_drop_copy_removes_only_the_version_handed_off(store: Store) -> None:
    await store.put_many("photos", [rec(b"v", b"value", 10), rec(b"t", None, 10)])
    await store.add_tombstone_acks("photos", [TombstoneAck(b"t", Stamp(10, 0, A), B)])
    assert not await store.drop_copy("photos", b"v", Stamp(9, 0, A))  # a newer one is here
    assert (await store.get("photos", b"v")) is not None
    assert await store.drop_copy("photos", b"v", Stamp(10, 0, A))
    assert await store.drop_copy("photos", b"t", Stamp(10, 0, A))  # tombstones too, with their acks
    assert await store.get("photos", b"v") is None and await store.get("photos", b"t") is None
    assert await store.tombstone_acks("photos", b"t") == []
    with pytest.raises(NamespaceError):
        await store.drop_copy("nope", b"v", Stamp(10, 0, A))


async def test_an_unknown_namespace_is_refused_and_nothing_is_written(store: Store) -> None:
    before = store.statistics().writes
    with pytest.raises(NamespaceError, match="'nope' is not defined.*defined: photos.*put_namespace"):
        await store.put_many("nope", [rec(b"k", b"v", 1)])
    for call in (store.get("nope", b"k"), store.versions("nope"), store.add_hints(B, "nope", []),
                 store.add_tombstone_acks("nope", []), store.purge_tombstone("nope", b"k", Stamp(1, 0, A))):
        with pytest.raises(NamespaceError):
            await call
    assert store.statistics().writes == before
    assert store.namespaces() == [NS]


@pytest.mark.parametrize(
    ("records", "error", "match"),
    [
        ([b"raw bytes"], RecordError, "expected Record values, got bytes"),
        (rec(b"k", b"v", 1), RecordError, "sequence of Record"),
        ([rec(b"k", b"v", 1), ("k", b"v")], RecordError, "got tuple"),
        ([rec(b"k", b"v", 1)] * 10_001, RecordError, "at most 10000 records"),
    ],
)
async def test_wrong_types_or_too_many_records_are_refused_before_any_write(
    store: Store, records: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        await store.put_many("photos", records)  # type: ignore[arg-type]
    assert store.statistics().writes == 1  # the namespace only
    assert await store.get("photos", b"k") is None


async def test_an_oversized_value_cannot_even_become_a_record(store: Store) -> None:
    with pytest.raises(RecordError, match="at most 1048576 bytes"):
        rec(b"k", b"x" * (VALUE_BYTES_MAX + 1), 1)
    assert await store.versions("photos") == []


async def test_a_bad_namespace_object_or_hint_target_is_local_misuse(store: Store) -> None:
    with pytest.raises(NamespaceError, match="takes a Namespace"):
        await store.put_namespace("photos")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="16 bytes"):
        await store.hints(b"short")
    with pytest.raises(LocalProtocolError, match="limit"):
        await store.versions("photos", limit=0)


async def test_a_closed_store_refuses_work_with_storage_error(tmp_path: Path) -> None:
    async with open_store(tmp_path / "node.db") as s:
        await s.put_namespace(NS)
    with pytest.raises(StorageError, match="is closed"):
        await s.put_many("photos", [rec(b"k", b"v", 1)])
    with pytest.raises(StorageError, match="is closed"):
        await s.get("photos", b"k")


async def test_opening_an_impossible_path_or_bad_options_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open the store"):
        async with open_store(tmp_path / "no" / "such" / "dir.db"):
            pass
    with pytest.raises(LocalProtocolError, match="synchronous"):
        async with open_store(tmp_path / "x.db", synchronous="off"):  # type: ignore[arg-type]
            pass
    with pytest.raises(LocalProtocolError, match="batch_ops_max"):
        async with open_store(tmp_path / "x.db", batch_ops_max=0):
            pass


async def test_a_store_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with open_store(path):
        pass
    side = sqlite3.connect(path, isolation_level=None)
    side.execute("UPDATE meta SET v = 99 WHERE k = 'schema'")
    side.close()
    with pytest.raises(StorageError, match="schema version 99"):
        async with open_store(path):
            pass


class WriterBug(BaseException):
    """Stands for a bug that escapes the writer's error handling."""


async def test_a_crashed_writer_thread_fails_waiting_and_later_writes_instead_of_hanging(store: Store) -> None:
    def buggy(conn: sqlite3.Connection) -> None:
        raise WriterBug("bug")

    with pytest.raises(StorageError, match="writer thread crashed.*WriterBug"):
        await store._write(buggy)
    with pytest.raises(StorageError, match="writer thread crashed"):
        await store.put_many("photos", [rec(b"k", b"v", 1)])


# --- put_many_nowait: the callback form the kv service uses (no task waits on a write) ---


class Outcomes:
    """Collects `on_done` calls; `wait(n)` returns once n of them arrived."""

    def __init__(self) -> None:
        self.got: list[tuple[str, list[bool] | None, BaseException | None]] = []
        self._more = trio.Event()

    def for_(self, name: str):  # type: ignore[no-untyped-def]
        def done(won: list[bool] | None, error: BaseException | None) -> None:
            self.got.append((name, won, error))
            self._more.set()
        return done

    async def wait(self, n: int) -> None:
        while len(self.got) < n:
            self._more = trio.Event()
            await self._more.wait()


async def test_a_write_without_waiting_reports_which_records_won_once_committed(store: Store) -> None:
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"k", b"new", 5), rec(b"j", b"v", 1)], out.for_("first"))
    assert out.got == []  # nothing is answered inside the call
    await out.wait(1)
    store.put_many_nowait("photos", [rec(b"k", b"old", 4)], out.for_("older"))
    await out.wait(2)
    assert out.got == [("first", [True, True], None), ("older", [False], None)]
    assert await store.get("photos", b"k") == rec(b"k", b"new", 5)
    assert store.statistics().pending == 0


async def test_writes_queued_together_share_one_group_commit(store: Store, tmp_path: Path) -> None:
    side = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    side.execute("BEGIN IMMEDIATE")  # the writer blocks in BEGIN: the rest queue behind it
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"first", b"v", 1)], out.for_("first"))
    for i in range(20):
        store.put_many_nowait("photos", [rec(b"k%d" % i, b"v", 1)], out.for_(f"k{i}"))
    assert store.statistics().pending == 21
    side.execute("COMMIT")
    side.close()
    await out.wait(21)
    assert all(won == [True] and error is None for _, won, error in out.got)
    stats = store.statistics()
    assert stats.batch_writes_max >= 20 and stats.pending == 0


async def test_misuse_raises_at_the_call_and_queues_nothing(store: Store) -> None:
    out = Outcomes()
    with pytest.raises(NamespaceError):
        store.put_many_nowait("nope", [rec(b"k", b"v", 1)], out.for_("x"))
    with pytest.raises(RecordError):
        store.put_many_nowait("photos", [b"not a record"], out.for_("x"))  # type: ignore[list-item]
    assert store.statistics().pending == 0
    await trio.testing.wait_all_tasks_blocked()
    assert out.got == []


async def test_a_failing_commit_reports_the_error_and_applies_nothing(store: Store, tmp_path: Path) -> None:
    side = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    side.execute("CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.key = x'626164' "
                 "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    side.close()
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"bad", b"v", 1)], out.for_("bad"))
    await out.wait(1)
    [(name, won, error)] = out.got
    assert name == "bad" and won is None
    assert isinstance(error, StorageError) and "disk says no" in str(error)
    assert await store.get("photos", b"bad") is None


async def test_a_closed_store_refuses_a_write_without_waiting(tmp_path: Path) -> None:
    async with open_store(tmp_path / "node.db") as s:
        await s.put_namespace(NS)
    with pytest.raises(StorageError, match="is closed"):
        s.put_many_nowait("photos", [rec(b"k", b"v", 1)], lambda won, error: None)



async def test_writes_queued_together_commit_as_one_statement_under_lww_and_say_who_won(
        store: Store, tmp_path: Path) -> None:
    await store.put_many("photos", [rec(b"k", b"kept", 9)])
    side = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    side.execute("BEGIN IMMEDIATE")  # the writer blocks: the rest queue behind it
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"first", b"v", 1)], out.for_("first"))
    # Versions of one key in the same batch, in and out of order; one older than stored.
    store.put_many_nowait("photos", [rec(b"a", b"1", 1), rec(b"a", b"3", 3)], out.for_("a"))
    store.put_many_nowait("photos", [rec(b"a", b"2", 2), rec(b"k", b"older", 4)], out.for_("b"))
    store.put_many_nowait("photos", [rec(b"t", None, 5)], out.for_("c"))
    statements: list[str] = []
    store._writer._conn.set_trace_callback(statements.append)  # runs on the writer thread
    side.execute("COMMIT")
    side.close()
    await out.wait(4)
    store._writer._conn.set_trace_callback(None)
    got = {name: (won, error) for name, won, error in out.got}
    # Some lost ("2", the older k), so the stored versions say who won: "1" was superseded
    # by "3" in the same group and counts as lost too (a watcher sees only "3").
    assert got == {"first": ([True], None), "a": ([False, True], None), "b": ([False, False], None),
                   "c": ([True], None)}
    assert await store.get("photos", b"a") == rec(b"a", b"3", 3)
    assert await store.get("photos", b"k") == rec(b"k", b"kept", 9)
    t = await store.get("photos", b"t")
    assert t is not None and t.is_tombstone
    # The writer was blocked on "first" or on all four: either way the three queued behind it
    # went in as one statement, its own transaction (no BEGIN/COMMIT), then one read back.
    writes = [sql for sql in statements if not sql.lstrip().startswith("SELECT")]
    assert all(sql.lstrip().startswith("INSERT INTO records") for sql in writes), statements
    assert 1 <= len(writes) <= 2 and writes[-1].count("'photos'") >= 5
    assert store.statistics().failed_commits == 0


async def test_a_merged_commit_where_every_record_wins_reads_nothing_back(store: Store) -> None:
    statements: list[str] = []
    store._writer._conn.set_trace_callback(statements.append)
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"x", b"1", 1), rec(b"x", b"2", 2), rec(b"y", None, 1)], out.for_("x"))
    await out.wait(1)
    store._writer._conn.set_trace_callback(None)
    assert out.got == [("x", [True, True, True], None)]
    assert not any(sql.lstrip().startswith("SELECT") for sql in statements), statements


async def test_a_bad_record_in_a_merged_commit_fails_only_its_own_write(store: Store, tmp_path: Path) -> None:
    side = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    side.execute("CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.key = x'626164' "
                 "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    side.execute("BEGIN IMMEDIATE")
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"first", b"v", 1)], out.for_("first"))
    store.put_many_nowait("photos", [rec(b"g1", b"v", 1)], out.for_("g1"))
    store.put_many_nowait("photos", [rec(b"ok", b"v", 1), rec(b"bad", b"v", 1)], out.for_("bad"))
    store.put_many_nowait("photos", [rec(b"g2", b"v", 1)], out.for_("g2"))
    side.execute("COMMIT")
    side.close()
    await out.wait(4)
    got = {name: (won, error) for name, won, error in out.got}
    assert got["first"] == got["g1"] == got["g2"] == ([True], None)
    won, error = got["bad"]
    assert won is None and isinstance(error, StorageError) and "disk says no" in str(error)
    assert await store.get("photos", b"ok") is None and await store.get("photos", b"bad") is None
    assert await store.get("photos", b"g1") is not None and await store.get("photos", b"g2") is not None
    assert store.statistics().failed_commits == 2  # the merged group, then the bad write alone


async def test_a_write_larger_than_one_statement_is_still_one_transaction(store: Store) -> None:
    out = Outcomes()
    records = [rec(b"k%04d" % i, b"v", 1) for i in range(300)] + [rec(b"k0000", b"w", 2)]
    store.put_many_nowait("photos", records, out.for_("big"))
    await out.wait(1)
    assert out.got == [("big", [True] * 301, None)]
    assert await store.get("photos", b"k0000") == rec(b"k0000", b"w", 2)
    assert await store.get("photos", b"k0299") == rec(b"k0299", b"v", 1)


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux-only")
async def test_the_writer_thread_does_not_preempt_its_waker(store: Store) -> None:
    await store.put_many("photos", [rec(b"k", b"v", 1)])  # the thread is up and serving
    native_id = store._writer.thread.native_id
    assert native_id is not None
    assert os.sched_getscheduler(native_id) == os.SCHED_BATCH


# --- synchronous="full": a helper process syncs the WAL, answers wait for it -------------

_FAKE_HELPER = r"""
import os, sys
started, release = int(sys.argv[1]), int(sys.argv[2])
buffered = b""
while True:
    data = os.read(0, 65536)
    if not data:
        break
    buffered += data
    whole = len(buffered) - len(buffered) % 8
    if not whole:
        continue
    last, buffered = buffered[whole - 8:whole], buffered[whole:]
    os.write(started, last)          # tell the test a sync began, and up to which request
    code = os.read(release, 1)       # and wait for its verdict: an errno, 0 for success
    if not code:
        break
    os.write(1, last + code[0].to_bytes(4, "big"))
"""


class FakeDisk:
    """Stands in for the sync helper: each sync waits until the test releases it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._started_r, self._started_w = os.pipe()
        self._release_r, self._release_w = os.pipe()
        os.set_blocking(self._started_r, False)
        monkeypatch.setattr("meshcore.runtime._storage._sync_helper_command", self.command)

    def command(self, wal_fd: int) -> tuple[list[str], tuple[int, ...]]:
        return ([sys.executable, "-I", "-S", "-c", _FAKE_HELPER, str(self._started_w), str(self._release_r)],
                (self._started_w, self._release_r))

    async def next_sync(self) -> int:
        """Wait for the next sync to begin; the last request number it covers."""
        with trio.fail_after(10):
            await trio.lowlevel.wait_readable(self._started_r)
        return int.from_bytes(os.read(self._started_r, 8), "big")

    def no_sync_began(self) -> bool:
        try:
            os.read(self._started_r, 8)
        except BlockingIOError:
            return True
        return False

    def release(self, errno: int = 0) -> None:
        os.write(self._release_w, bytes([errno]))

    def close(self) -> None:
        for fd in (self._started_r, self._started_w, self._release_r, self._release_w):
            os.close(fd)


async def wait_for(out: Outcomes, n: int) -> None:
    with trio.fail_after(10):
        await out.wait(n)


async def until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(10):  # a safety net: the writer thread commits on its own
        while not cond():
            await trio.sleep(0.001)


@pytest.fixture
async def synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Store, FakeDisk]]:
    disk = FakeDisk(monkeypatch)
    try:
        async with open_store(tmp_path / "node.db", synchronous="full") as s:
            async with trio.open_nursery() as n:  # the namespace's write is synced too
                n.start_soon(s.put_namespace, NS)
                assert await disk.next_sync() == 1
                disk.release()
            yield s, disk
            for _ in range(8):
                disk.release()  # let the close finish whatever a failed test left held
    finally:
        disk.close()


async def test_a_write_is_answered_only_after_a_sync_that_began_after_its_commit(
        synced: tuple[Store, FakeDisk]) -> None:
    store, disk = synced
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"a", b"1", 1)], out.for_("a"))
    assert await disk.next_sync() == 2  # a's commit is request 2
    # a is committed (visible to this node's reads) but not answered: its sync is held.
    assert await store.get("photos", b"a") == rec(b"a", b"1", 1)
    store.put_many_nowait("photos", [rec(b"b", b"2", 1)], out.for_("b"))
    await until(lambda: store.statistics().commits == 3, "b's commit during a's sync")
    assert out.got == []
    disk.release()  # a's sync began before b's commit: it answers a only
    await wait_for(out, 1)
    assert out.got == [("a", [True], None)]
    assert await disk.next_sync() == 3  # the next sync, for b
    disk.release()
    await wait_for(out, 2)
    assert out.got[1] == ("b", [True], None)
    assert store.statistics().syncs == 3  # the namespace's, a's, b's


async def test_commits_that_finish_during_a_sync_share_the_next_one(synced: tuple[Store, FakeDisk]) -> None:
    store, disk = synced
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"first", b"v", 1)], out.for_("first"))
    assert await disk.next_sync() == 2
    for i in range(5):  # each its own commit: the writer is idle between them
        store.put_many_nowait("photos", [rec(b"k%d" % i, b"v", 1)], out.for_(f"k{i}"))
        await until(lambda i=i: store.statistics().commits == 3 + i, "a commit")
    disk.release()
    assert await disk.next_sync() == 7  # one sync for the five commits
    disk.release()
    await wait_for(out, 6)
    assert sorted(name for name, _, _ in out.got) == ["first"] + [f"k{i}" for i in range(5)]
    assert store.statistics().syncs == 3


async def test_a_failed_sync_fails_its_writes_and_the_store_takes_no_more(synced: tuple[Store, FakeDisk]) -> None:
    store, disk = synced
    out = Outcomes()
    store.put_many_nowait("photos", [rec(b"a", b"1", 1)], out.for_("a"))
    assert await disk.next_sync() == 2
    disk.release(5)  # EIO
    await wait_for(out, 1)
    name, won, error = out.got[0]
    assert won is None and isinstance(error, StorageError) and "could not be synced" in str(error)
    with pytest.raises(StorageError, match="could not be synced"):
        await store.put_many("photos", [rec(b"b", b"2", 1)])
    with pytest.raises(StorageError, match="could not be synced"):
        await store.get("photos", b"a")  # reads too: what it holds may not be on disk
    conn = sqlite3.connect(store.path)
    try:  # b was refused, not applied
        assert conn.execute("SELECT count(*) FROM records WHERE key = ?", (b"b",)).fetchone() == (0,)
    finally:
        conn.close()
    assert disk.no_sync_began()  # and no more syncs were asked for
    assert store.statistics().syncs == 1


async def test_a_close_stops_waiting_for_a_sync_that_never_ends_and_fails_the_unconfirmed_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_clock: trio.testing.MockClock) -> None:
    disk = FakeDisk(monkeypatch)
    out = Outcomes()
    try:
        async with open_store(tmp_path / "node.db", close_timeout_s=5) as s:
            async with trio.open_nursery() as n:
                n.start_soon(s.put_namespace, NS)
                assert await disk.next_sync() == 1
                disk.release()
            s.put_many_nowait("photos", [rec(b"a", b"1", 1)], out.for_("a"))
            assert await disk.next_sync() == 2  # a is committed; its sync never ends
            helper = s._writer.sync
            assert helper is not None
            async with trio.open_nursery() as n:
                n.start_soon(s.aclose)
                while s._writer.thread.is_alive():  # the writer thread stops at once
                    await trio.sleep(0)
                await trio.testing.wait_all_tasks_blocked()
                assert out.got == []  # the close waits for the disk...
                mock_clock.jump(4.9)
                await trio.testing.wait_all_tasks_blocked()
                assert out.got == []
                mock_clock.jump(0.2)  # ...for close_timeout_s, then gives up
            [(name, won, error)] = out.got
            assert won is None and isinstance(error, StorageError)
            assert "closed after waiting 5 s for its disk" in str(error)
            assert helper.proc.wait(timeout=10) == -9  # the helper was killed
            with pytest.raises(StorageError, match="closed"):
                await s.put_many("photos", [rec(b"b", b"1", 1)])
    finally:
        disk.close()


async def test_a_close_stops_waiting_for_a_write_that_never_returns(
        tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    entered, release = threading.Event(), threading.Event()

    def hang(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(30)

    out = Outcomes()
    errors: list[BaseException] = []
    async with open_store(tmp_path / "node.db", synchronous="normal", close_timeout_s=5) as s:
        await s.put_namespace(NS)

        async def hung_write() -> None:
            try:
                await s._write(hang)
            except StorageError as exc:
                errors.append(exc)

        async with trio.open_nursery() as n:
            n.start_soon(hung_write)
            while not entered.is_set():  # the writer thread is inside the write
                await trio.sleep(0)
            s.put_many_nowait("photos", [rec(b"b", b"1", 1)], out.for_("b"))  # queued behind it
            n.start_soon(s.aclose)
            await trio.testing.wait_all_tasks_blocked()
            assert errors == [] and out.got == []
            mock_clock.jump(5.1)
        assert len(errors) == 1 and "closed after waiting 5 s" in str(errors[0])
        [(name, won, error)] = out.got
        assert name == "b" and won is None and isinstance(error, StorageError)
        release.set()  # the disk comes back: the thread finishes its write and stops
        s._writer.thread.join(timeout=10)
        assert not s._writer.thread.is_alive()
        await trio.testing.wait_all_tasks_blocked()
        assert len(out.got) == 1  # its late answer for b was not delivered twice
        s._writer.close()
    conn = sqlite3.connect(tmp_path / "node.db")
    try:  # b never reached the writer: nothing of it was applied
        assert conn.execute("SELECT count(*) FROM records WHERE key = ?", (b"b",)).fetchone() == (0,)
    finally:
        conn.close()


def test_open_store_refuses_a_close_timeout_that_is_not_a_positive_number() -> None:
    async def main(t: object) -> None:
        async with open_store("unused.db", close_timeout_s=t):  # type: ignore[arg-type]
            pass

    for bad in (0, -1, float("inf"), float("nan"), "5", None):
        with pytest.raises(LocalProtocolError, match="close_timeout_s"):
            trio.run(main, bad)


async def test_synchronous_normal_starts_no_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_helper(wal_fd: int) -> tuple[list[str], tuple[int, ...]]:
        raise AssertionError("synchronous=normal must not start a sync helper")

    monkeypatch.setattr("meshcore.runtime._storage._sync_helper_command", no_helper)
    async with open_store(tmp_path / "node.db", synchronous="normal") as s:
        await s.put_namespace(NS)
        await s.put_many("photos", [rec(b"a", b"1", 1)])
        assert s.statistics().syncs == 0


async def test_the_real_helper_syncs_and_stops_with_the_store(tmp_path: Path) -> None:
    async with open_store(tmp_path / "node.db") as s:
        await s.put_namespace(NS)
        await s.put_many("photos", [rec(b"a", b"1", 1)])
        assert s.statistics().syncs >= 2
        helper = s._writer.sync
        assert helper is not None and helper.proc.poll() is None
    assert helper.proc.poll() == 0  # it exited when the store closed


async def test_a_helper_that_dies_fails_writes_instead_of_hanging(tmp_path: Path) -> None:
    async with open_store(tmp_path / "node.db") as s:
        await s.put_namespace(NS)
        helper = s._writer.sync
        assert helper is not None
        helper.proc.kill()
        with trio.fail_after(10):
            with pytest.raises(StorageError, match="sync helper"):
                await s.put_many("photos", [rec(b"a", b"1", 1)])
            with pytest.raises(StorageError, match="sync helper"):
                await s.put_many("photos", [rec(b"b", b"1", 1)])


def test_the_helper_answers_once_per_sync_and_its_first_error_sticks(tmp_path: Path) -> None:
    script = Path(_wal_syncer.__file__)
    good = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", str(script), str(good)],
                              input=(1).to_bytes(8, "big") + (2).to_bytes(8, "big"), capture_output=True,
                              pass_fds=(good,), timeout=30, check=True)
    finally:
        os.close(good)
    answers = proc.stdout
    assert len(answers) % 12 == 0 and answers[-12:] == (2).to_bytes(8, "big") + (0).to_bytes(4, "big")
    # A descriptor that cannot be synced: EBADF, then the same error without syncing again.
    r, w = os.pipe()
    helper = subprocess.Popen([sys.executable, "-I", "-S", str(script), "999"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert helper.stdin is not None and helper.stdout is not None
        for seq in (1, 2):
            helper.stdin.write(seq.to_bytes(8, "big"))
            helper.stdin.flush()
            assert helper.stdout.read(12) == seq.to_bytes(8, "big") + (9).to_bytes(4, "big")  # EBADF
        helper.stdin.close()
        assert helper.wait(timeout=30) == 0  # it exits when its stdin closes
    finally:
        helper.kill()
        os.close(r)
        os.close(w)


async def test_a_helper_that_cannot_start_fails_the_open_clearly_and_keeps_the_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "node.db"
    async with open_store(path, synchronous="normal") as s:
        await s.put_namespace(NS)
        await s.put_many("photos", [rec(b"a", b"1", 1)])
    monkeypatch.setattr("meshcore.runtime._storage._sync_helper_command",
                        lambda wal_fd: ([str(tmp_path / "no-such-python")], (wal_fd,)))
    with pytest.raises(StorageError, match="cannot open the store"):
        async with open_store(path):
            pass
    monkeypatch.undo()
    async with open_store(path) as s:
        assert await s.get("photos", b"a") == rec(b"a", b"1", 1)
