"""Reads the kv service needs beyond `Store`: prefix scans, startup state, anti-entropy.

`KvReader` opens its own read-only SQLite connection on the store's file (WAL lets it read
while the store's writer commits). Async methods run in a worker thread; `read_sync` is the
one synchronous point lookup, for `ReplicaStore.read` (reconciliation sessions are
synchronous by design; a primary-key lookup on a local disk costs tens of microseconds).

`PeerReplica` is the `meshcore.antientropy.ReplicaStore` of one session with one peer for
one namespace: its index holds only the keys this node stores AND the peer is a home
replica of (so a session never offers a peer data it must not hold), built at the start of
the session from a `VersionSnapshot`: one read of the namespace's versions, grouped by the
keys' home replicas, which the sessions starting soon after share (a node has a session
with each of its ~100 co-replicas per round; reading and placing every key once per
session made a round cost O(peers x keys)). Repairs go through `apply`, which hands them to
the kv core (admission checks, durable write, watchers) and updates the index at once.

Limits: `scan` returns at most `limit` records (the caller bounds it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ..antientropy import RangeIndex, VersionedRecord
from ..errors import DecodeError, StorageError
from ..kv import Record, Stamp

__all__ = ["KvReader", "PeerReplica", "VersionSnapshot", "row_record"]

#: Keys placed per slice while grouping a snapshot (the trio thread yields between slices).
_PLACE_SLICE = 2000
Row = tuple[bytes, bytes, bool]


class KvReader:
    """A second read-only connection on the store file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._conn.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the store {path} for reading: {exc}") from None
        self._limiter = trio.CapacityLimiter(1)

    def close(self) -> None:
        self._conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def run() -> Any:
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise StorageError(f"store read failed: {exc}") from None

        return await trio.to_thread.run_sync(run, limiter=self._limiter)

    def read_sync(self, namespace: str, key: bytes) -> Record | None:
        row = self._conn.execute("SELECT stamp, value FROM records WHERE ns = ? AND key = ?",
                                 (namespace, key)).fetchone()
        return None if row is None else row_record(key, row[0], row[1])

    async def get_many(self, items: list[tuple[str, bytes]]) -> list[Record | None]:
        """The stored version of each (namespace, key), in one trip to the thread."""
        def fn(conn: sqlite3.Connection) -> list[Record | None]:
            out: list[Record | None] = []
            for ns, key in items:
                row = conn.execute("SELECT stamp, value FROM records WHERE ns = ? AND key = ?", (ns, key)).fetchone()
                out.append(None if row is None else row_record(key, row[0], row[1]))
            return out

        result: list[Record | None] = await self._run(fn)
        return result

    async def scan(self, namespace: str, prefix: bytes, limit: int) -> list[Record]:
        """Records (tombstones included) whose key starts with `prefix`, in key order."""
        def fn(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(
                "SELECT key, stamp, value FROM records WHERE ns = ? AND key >= ? AND substr(key, 1, ?) = ? "
                "ORDER BY key LIMIT ?", (namespace, prefix, len(prefix), prefix, limit)).fetchall()
            return [row_record(k, s, v) for k, s, v in rows]

        result: list[Record] = await self._run(fn)
        return result

    async def versions(self, namespace: str) -> list[tuple[bytes, bytes, bool]]:
        """Every (key, stamp bytes, tombstone) of a namespace (index rebuild)."""
        def fn(conn: sqlite3.Connection) -> list[tuple[bytes, bytes, bool]]:
            return [(k, s, t == 1) for k, s, t in conn.execute(
                "SELECT key, stamp, value IS NULL FROM records WHERE ns = ? ORDER BY key", (namespace,))]

        result: list[tuple[bytes, bytes, bool]] = await self._run(fn)
        return result

    async def tombstones(self) -> list[tuple[str, Record]]:
        """Every tombstone held (to resume tracking them for purge after a restart)."""
        def fn(conn: sqlite3.Connection) -> list[tuple[str, Record]]:
            return [(ns, row_record(k, s, None)) for ns, k, s in conn.execute(
                "SELECT ns, key, stamp FROM records WHERE value IS NULL ORDER BY ns, key")]

        result: list[tuple[str, Record]] = await self._run(fn)
        return result

    async def hint_targets(self) -> list[bytes]:
        def fn(conn: sqlite3.Connection) -> list[bytes]:
            return [t for (t,) in conn.execute("SELECT DISTINCT target FROM hints ORDER BY target")]

        result: list[bytes] = await self._run(fn)
        return result

    async def count(self) -> int:
        result: int = await self._run(lambda c: c.execute("SELECT count(*) FROM records").fetchone()[0])
        return result


def row_record(key: bytes, stamp: bytes, value: bytes | None) -> Record:
    """A row of the records table (or of hints) as a `Record`; a row that is not one (a file
    damaged or written by something else) is a `StorageError` naming its key."""
    try:
        return Record(key, value, Stamp.from_bytes(stamp))
    except (DecodeError, ValueError, TypeError) as exc:  # TypeError: compiled Record's field types
        raise StorageError(f"corrupt record {key[:32]!r} in the store: {exc}") from None


class VersionSnapshot:
    """Every (key, stamp, tombstone) of one namespace as read at trio time `built_at`,
    grouped by the home replicas of each key under ring `generation` (see the module
    docstring); `build_s`: how long making it took."""

    def __init__(self, generation: int, built_at: float, build_s: float,
                 groups: dict[tuple[bytes, ...], list[Row]]) -> None:
        self.generation = generation
        self.built_at = built_at
        self.build_s = build_s
        self._groups = groups

    @classmethod
    async def build(cls, reader: KvReader, namespace: str,
                    placement: Callable[[bytes], tuple[bytes, ...] | None], *,
                    generation: int) -> VersionSnapshot:
        """Read the versions (in the reader's thread), then place each key with
        `placement` (None: not placeable, left out), a slice at a time on this thread."""
        started = trio.current_time()
        rows = await reader.versions(namespace)
        groups: dict[tuple[bytes, ...], list[Row]] = {}
        for start in range(0, len(rows), _PLACE_SLICE):
            for row in rows[start:start + _PLACE_SLICE]:
                home = placement(row[0])
                if home is not None:
                    groups.setdefault(home, []).append(row)
            await trio.sleep(0)  # a big namespace must not hold up the node's other tasks
        return cls(generation, started, trio.current_time() - started, groups)

    def shared(self, me: bytes, peer: bytes) -> list[Row]:
        """The rows whose home replicas include both `me` and `peer`."""
        return [row for home, rows in self._groups.items() if me in home and peer in home for row in rows]

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._groups.values())


class PeerReplica:
    """The `ReplicaStore` of one anti-entropy session (see the module docstring)."""

    def __init__(self, reader: KvReader, namespace: str, index: RangeIndex,
                 on_repair: Callable[[str, Record], None]) -> None:
        self._reader = reader
        self._namespace = namespace
        self._index = index
        self._on_repair = on_repair
        self.applied = 0

    @classmethod
    async def build(cls, reader: KvReader, namespace: str, rows: list[Row],
                    on_repair: Callable[[str, Record], None]) -> PeerReplica:
        """A session's replica over `rows` (`VersionSnapshot.shared`). The index is built
        in a worker thread: a few seconds of Python for a million keys, during which the
        trio thread still gets the interpreter at every switch interval."""
        index = await trio.to_thread.run_sync(RangeIndex.build, rows)
        return cls(reader, namespace, index, on_repair)

    @property
    def index(self) -> RangeIndex:
        return self._index

    def read(self, key: bytes) -> VersionedRecord | None:
        entry = self._index.version_of(key)
        if entry is None:
            return None
        rec = self._reader.read_sync(self._namespace, key)
        if rec is None or rec.stamp.to_bytes() != entry[0]:
            # Purged or replaced since the index was built: offer what the index lists as
            # a tombstone only if it was one; else the newer stored version is still right.
            if rec is None:
                return VersionedRecord(key, entry[0], None) if entry[1] else None
            return VersionedRecord(key, rec.stamp.to_bytes(), rec.value)
        return VersionedRecord(key, entry[0], rec.value)

    def apply(self, record: VersionedRecord) -> None:
        try:
            rec = Record(record.key, record.value, Stamp.from_bytes(record.version))
        except (DecodeError, ValueError):
            return  # remote garbage: the session's peer sent a version that is no stamp
        self.applied += 1
        self._index.put(record.key, record.version, record.value is None)
        self._on_repair(self._namespace, rec)
