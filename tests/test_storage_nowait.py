"""`Store.put_many_nowait`: the callback form of `put_many` the kv service uses (no task
waits on a write; the outcome comes back as one callback per write, on the trio thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from meshcore.errors import NamespaceError, RecordError, StorageError
from meshcore.kv import Namespace, Record, Stamp
from meshcore.runtime._storage import Store, open_store

A = bytes([1]) * 16
NS = Namespace(name="photos", replicas=2)


def rec(key: bytes, value: bytes | None, us: int) -> Record:
    return Record(key, value, Stamp(us, 0, A))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "node.db", synchronous="normal") as s:
        await s.put_namespace(NS)
        yield s


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
