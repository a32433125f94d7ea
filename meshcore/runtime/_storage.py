"""The node's local store: SQLite in WAL mode, group commit on one writer thread.

Open with ``async with open_store(path) as store:``. Writes (`put_many`, namespaces, hints,
tombstone acknowledgements, purges) are queued to ONE dedicated writer thread, which takes
everything queued while the previous commit was running and commits it as one transaction
(group commit: one fsync for many writes, no artificial delay). An awaited write returns
only after its transaction committed; `put_many_nowait` queues one without a task waiting
on it and reports through a callback (the kv service's path: no task per write). The
writer wakes the trio thread once per group commit, not once per write. Reads run on a
second connection in a worker thread (WAL lets them proceed while the writer commits). The trio thread never touches SQLite.
`cached(namespace, key)` answers a point read from memory when it can: the store keeps the
version it last wrote of each key, in step with its answers, and what reads of the disk
found (`read_begins`/`read_ends`) unless a write raced with them (`RecordCache`, bounded by
`open_store(cache_bytes=...)`, 32 MiB by default; 0 turns it off).

Durability: ``journal_mode=WAL``, and with ``synchronous="full"`` (the default) no write is
reported before the WAL holding it is synced to disk, so an acknowledged write survives
kill -9 of the process AND a power cut or kernel crash. The sync is a second stage of the
group commit (`_SyncHelper`): SQLite commits with its NORMAL setting (the WAL frames
written, not synced), the writer hands the commit to a small helper process
(`_wal_syncer`, one per store) that fdatasyncs the WAL file, and the trio thread answers
the commit's writes when the helper reports a sync that began after the commit. SQLite's
FULL is exactly NORMAL plus that sync at the end of each commit, so what reaches the disk
is the same; the differences are that the next group commit runs while a sync is in
flight instead of after it, one sync covers every commit that finished meanwhile, and the
wait for the disk costs the agent's threads no hand-overs of CPython's GIL (a sync thread
in this process did: 0.80–0.83 of the CPU per put with the process instead, the helper's
own CPU included). A commit is visible to this node's reads up to one sync before it is
durable; only its acknowledgement waits. A failed sync (an I/O error), or a helper that
died, fails its writes and every later one with `StorageError`, reads included (the page
cache can no longer be trusted to match the disk): reopen the store. (``synchronous=
"normal"`` answers after the commit and never syncs: kill -9 is survived, since the WAL
pages are in the OS cache, but the last commits can be lost on power loss, and micro-DCs
on solar power do lose power. It is there for benchmarks and tests that accept that trade.)

Last-writer-wins is applied inside the transaction (`put_many` reports which records won),
so concurrent writers cannot lose a newer version. A group commit of only `put_many_nowait`
writes (the kv service's path) goes in as one multi-row upsert outside BEGIN/COMMIT, its own
transaction: each SQLite call makes the writer thread give up the GIL and wait to get it
back from the busy trio thread, so one call per group commit instead of one per record plus
two costs that thread less. Which records won then comes from the connection's change count
(all of them, the common case) or, when some lost, from reading back the stored versions
(a version superseded by a newer one of the same key in the same group is reported as
lost). A failed group commit is rolled back whole and its writes are retried one
transaction each, so a write that fails (disk full, I/O error, a corrupt page) raises
`StorageError` with nothing of it applied, and does not take its neighbours down with it.

Limits: `PUT_RECORDS_MAX` records per call; a group commit holds at most `batch_ops_max`
calls or about `batch_bytes_max` bytes; at most `pending_ops_max` calls wait in the queue
(callers beyond that wait their turn: back-pressure, not unbounded memory).
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import os
import queue
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import trio

from ..errors import DecodeError, LocalProtocolError, NamespaceError, RecordError, StorageError
from ..kv import Namespace, Record, Stamp, TombstoneAck, decode_namespace, encode_namespace
from ..kv import as_key as _as_key
from . import _wal_syncer
from ._fastio import acquire
from ._kvstore import row_record
from ._recordcache import RecordCache

log = logging.getLogger("meshcore.runtime")

#: The store's durability modes (`open_store(synchronous=...)`; see the module doc).
SYNC_MODES = ("full", "normal")

__all__ = [
    "PUT_RECORDS_MAX",
    "VERSIONS_PAGE_MAX",
    "SCHEMA_VERSION",
    "Hint",
    "StoreStatistics",
    "Store",
    "open_store",
]

PUT_RECORDS_MAX = 10_000
VERSIONS_PAGE_MAX = 100_000
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (name TEXT PRIMARY KEY, spec BLOB NOT NULL);
-- stamp precedes value so that scanning (key, stamp) never reads a value's overflow pages.
CREATE TABLE IF NOT EXISTS records (
    ns TEXT NOT NULL, key BLOB NOT NULL, stamp BLOB NOT NULL, value BLOB,
    PRIMARY KEY (ns, key));
CREATE TABLE IF NOT EXISTS hints (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target BLOB NOT NULL, ns TEXT NOT NULL,
    key BLOB NOT NULL, stamp BLOB NOT NULL, value BLOB);
CREATE INDEX IF NOT EXISTS hints_by_target ON hints (target, id);
CREATE TABLE IF NOT EXISTS tombstone_acks (
    ns TEXT NOT NULL, key BLOB NOT NULL, node BLOB NOT NULL, stamp BLOB NOT NULL,
    PRIMARY KEY (ns, key, node)) WITHOUT ROWID;
"""

# Last-writer-wins in SQL, the same rule as meshcore.kv.merge: a greater stamp (blob order
# equals stamp order) wins; on equal stamps a tombstone wins, then the larger value.
_UPSERT = """
INSERT INTO records (ns, key, stamp, value) VALUES (?, ?, ?, ?)
ON CONFLICT (ns, key) DO UPDATE SET stamp = excluded.stamp, value = excluded.value
WHERE excluded.stamp > records.stamp
   OR (excluded.stamp = records.stamp AND records.value IS NOT NULL
       AND (excluded.value IS NULL OR excluded.value > records.value))
"""
#: Rows per multi-row upsert statement: 4 parameters each, well under the 999 variables
#: that SQLite builds older than 3.32 allow.
_UPSERT_ROWS_MAX = 128


@functools.cache
def _upsert_rows(n: int) -> str:
    """`_UPSERT` for `n` rows in one statement. Rows apply in order, as `n` statements
    would, so two versions of one key in a batch still end with the newer one."""
    return _UPSERT.replace("VALUES (?, ?, ?, ?)", "VALUES " + ", ".join(["(?, ?, ?, ?)"] * n))


_ACK_UPSERT = """
INSERT INTO tombstone_acks (ns, key, node, stamp) VALUES (?, ?, ?, ?)
ON CONFLICT (ns, key, node) DO UPDATE SET stamp = excluded.stamp
WHERE excluded.stamp > tombstone_acks.stamp
"""


@dataclass(frozen=True, slots=True)
class Hint:
    """A copy held for `target` while it is down (hinted handoff); `id` orders delivery."""

    id: int
    target: bytes
    namespace: str
    record: Record


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A snapshot of the writer's counters."""

    commits: int
    writes: int
    batch_writes_max: int
    failed_commits: int
    pending: int
    #: fdatasyncs of the WAL (synchronous="full"): at most one per commit, fewer when
    #: commits finish while a sync runs.
    syncs: int = 0
    #: The record cache (`cached`): reads it answered and did not, and what it holds.
    cache_hits: int = 0
    cache_misses: int = 0
    cache_records: int = 0
    cache_bytes: int = 0


@dataclass(eq=False)
class _Op:
    apply: Callable[[sqlite3.Connection], Any]
    size_bytes: int
    done: Callable[[Any, BaseException | None], None] = lambda result, error: None  # set by the submitter
    result: Any = None
    error: BaseException | None = None
    #: A `put_many_nowait`: its upsert parameters, flat, 4 per row. The writer may merge
    #: such ops into one statement (see `_Writer._merged`).
    params: list[Any] | None = None
    #: Set (on the trio thread) when `done` was called: a close that gave up on the disk
    #: answers what it can find, and a late answer from the writer must not come twice.
    answered: bool = False


_STOP = object()


@dataclass
class _Counters:
    commits: int = 0
    writes: int = 0
    batch_writes_max: int = 0
    failed_commits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _connect(path: Path, synchronous: str, *, readonly: bool) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
    # check_same_thread=False: each connection is used by one thread at a time (the writer
    # thread, or reads serialised by a limiter), just not the thread that opened it.
    # cached_statements: room for the writer's multi-row upserts of every size besides the rest.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0,
                           cached_statements=2 * _UPSERT_ROWS_MAX)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{path}: SQLite refused WAL mode (got {mode!r}); use a local disk")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        if readonly:
            conn.execute("PRAGMA query_only=1")
        else:
            # Keep the WAL file from growing without bound after checkpoints. Checkpoints
            # stay at SQLite's default (past 1,000 pages of WAL): 10,000 pages, tried, ran
            # quorum puts no faster (kv benchmark, interleaved with the default: x1.02 and
            # x1.04 for the default), and a fresh store's first 40 MB of WAL then grow the
            # file, whose syncs cost more than those of a WAL rewritten from its start.
            conn.execute("PRAGMA journal_size_limit=67108864")
    except BaseException:
        conn.close()
        raise
    return conn


def _init_schema(conn: sqlite3.Connection) -> list[Namespace]:
    conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
    row = conn.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
    if row is None:
        conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    elif row[0] != SCHEMA_VERSION:
        raise StorageError(
            f"store schema version {row[0]!r}, this meshcore reads version {SCHEMA_VERSION}: "
            "upgrade meshcore or point it at a new data directory"
        )
    spaces = []
    for name, spec in conn.execute("SELECT name, spec FROM namespaces ORDER BY name"):
        try:
            spaces.append(decode_namespace(spec))
        except DecodeError as exc:
            raise StorageError(f"namespace {name!r} in the store is corrupt: {exc}") from None
    return spaces


class _Writer:
    """The writer thread: group commit of everything queued, results sent back to trio."""

    def __init__(self, conn: sqlite3.Connection, token: trio.lowlevel.TrioToken, *,
                 batch_ops_max: int, batch_bytes_max: int, sync: _SyncHelper | None = None) -> None:
        """`sync`: the helper that syncs the WAL before each commit's writes are answered
        (synchronous="full"); None: answer once committed."""
        self._conn = conn
        self._token = token
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batch_ops_max = batch_ops_max
        self._batch_bytes_max = batch_bytes_max
        self.counters = _Counters()
        self.dead: StorageError | None = None
        self.thread = threading.Thread(target=self._run, name="meshcore-store-writer", daemon=True)
        self.sync = sync
        self._in_hand: list[_Op] = []  # the batch the thread is committing (for `abandon`)

    def close(self) -> None:
        """Close the connection (after the thread finished)."""
        self._conn.close()

    @property
    def broken(self) -> StorageError | None:
        """Why this writer takes no more writes (its thread crashed, or a sync failed)."""
        return self.dead or (self.sync.failed if self.sync is not None else None)

    def submit(self, op: _Op | object) -> None:
        self._queue.put(op)
        if self.dead is not None and isinstance(op, _Op):
            # The thread may have drained the queue just before this put: answer here.
            op.result, op.error = None, self.dead
            self._tell_all([op])

    def abandon(self, error: StorageError) -> None:
        """Trio thread, when a close gave up waiting for this thread (the disk does not
        answer): fail the batch in its hands and everything queued with `error`. If the
        thread comes back, its own answers for them are ignored (`_Op.answered`)."""
        ops = list(self._in_hand)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Op):
                ops.append(item)
        self._queue.put(_STOP)  # drained with the rest: the thread stops if it comes back
        for op in ops:
            _answer(op, None, error)

    def _take_batch(self, first: _Op) -> tuple[list[_Op], bool]:
        batch, size = [first], first.size_bytes
        while len(batch) < self._batch_ops_max and size < self._batch_bytes_max:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return batch, True
            batch.append(nxt)
            size += nxt.size_bytes
        return batch, False

    def _commit(self, batch: list[_Op]) -> None:
        if not self._commit_all(batch, self._merged(batch)) and len(batch) > 1:
            # One bad write must not fail its neighbours: retry each on its own. A disk
            # that is full or failing fails them all again, which is the truth.
            for op in batch:
                self._commit_all([op])

    @staticmethod
    def _merged(batch: list[_Op]) -> list[Any] | None:
        """The parameters of one upsert for the whole batch, if it holds only
        `put_many_nowait` writes of at most `_UPSERT_ROWS_MAX` rows in all; else None."""
        params: list[Any] = []
        for op in batch:
            if op.params is None:
                return None
            params += op.params
        return params if len(params) <= 4 * _UPSERT_ROWS_MAX else None

    def _commit_all(self, batch: list[_Op], merged: list[Any] | None = None) -> bool:
        conn = self._conn
        try:
            if merged is not None:
                # One statement outside BEGIN is a transaction of its own, committed (and
                # fsynced) when it ends. Every SQLite call hands the GIL to the busy trio
                # thread and waits to get it back: one call instead of one per record plus
                # BEGIN and COMMIT is most of what a group commit costs that thread.
                rows = len(merged) // 4
                before = conn.total_changes
                conn.execute(_upsert_rows(rows), merged)
                if conn.total_changes - before == rows:  # every row was inserted or updated
                    for op in batch:
                        op.result = [True] * (len(op.params or ()) // 4)
                else:
                    stored = _stored_versions(conn, merged)
                    for op in batch:
                        p = op.params or []
                        op.result = [stored.get((p[i], p[i + 1])) == (p[i + 2], p[i + 3])
                                     for i in range(0, len(p), 4)]
            else:
                conn.execute("BEGIN IMMEDIATE")
                for op in batch:
                    op.result = op.apply(conn)
                conn.execute("COMMIT")
        except Exception as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the failed COMMIT may already have rolled back
            err = StorageError(f"store write failed and was rolled back: {exc.__class__.__name__}: {exc}")
            for op in batch:
                op.result, op.error = None, err
            with self.counters.lock:
                self.counters.failed_commits += 1
            return False
        for op in batch:
            op.error = None
        with self.counters.lock:
            self.counters.commits += 1
            self.counters.writes += len(batch)
            self.counters.batch_writes_max = max(self.counters.batch_writes_max, len(batch))
        return True

    def _tell_all(self, batch: list[_Op]) -> None:
        # One wake-up of the trio thread per group commit, not one per write.
        try:
            self._token.run_sync_soon(_answer_all, batch)
        except trio.RunFinishedError:
            pass  # nobody is left to tell

    def _run(self) -> None:
        if not _wal_syncer.no_wakeup_preemption():
            log.debug("the store writer thread stays SCHED_OTHER")
        stop = False
        batch: list[_Op] = []
        try:
            while not stop:
                item = self._queue.get()
                if item is _STOP:
                    break
                batch, stop = self._take_batch(item)
                self._in_hand = batch
                sync = self.sync
                if sync is None:
                    self._commit(batch)
                    self._tell_all(batch)
                elif sync.failed is not None:
                    for op in batch:  # the disk lost writes once: apply nothing more
                        op.result, op.error = None, sync.failed
                    self._tell_all(batch)
                else:
                    self._commit(batch)
                    sync.submit(batch)  # answered once the WAL is on disk
                batch = self._in_hand = []
        except BaseException as exc:
            # A bug here must not leave writers waiting forever: fail what is in hand and
            # everything queued, and refuse what comes next.
            dead = StorageError(f"the store writer thread crashed: {exc!r}; reopen the store")
            dead.__cause__ = exc
            self.dead = dead
            while True:
                for op in batch:
                    op.result, op.error = None, dead
                if batch:
                    self._tell_all(batch)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch = [] if item is _STOP else [item]


def _sync_helper_command(wal_fd: int) -> tuple[list[str], tuple[int, ...]]:
    """The sync helper's command line and the descriptors it inherits (a module function:
    tests stand in for the disk here). -I -S: no site packages, no environment, so it
    starts in milliseconds and holds a few MB."""
    return [sys.executable, "-I", "-S", str(Path(__file__).with_name("_wal_syncer.py")), str(wal_fd)], (wal_fd,)


class _SyncHelper:
    """The second stage of a group commit (module doc, Durability): a helper process syncs
    the WAL, the trio thread answers the writes.

    The writer thread hands over each committed batch (`submit`: numbered, kept in
    `pending`, the number sent to the helper). `run`, a task on the trio thread, reads the
    helper's answers (`_wal_syncer`: the last number it read before a sync) and answers
    every pending batch up to it. A failed sync, or a helper gone, sets `failed`: pending
    and later batches fail with it, and the writer applies nothing more."""

    def __init__(self, wal_fd: int, token: trio.lowlevel.TrioToken) -> None:
        """Start the helper for the open WAL descriptor `wal_fd` (closed by `aclose`).
        Raises OSError if it cannot be started."""
        argv, fds = _sync_helper_command(wal_fd)
        self.wal_fd = wal_fd
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds,
                                     bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._requests = self.proc.stdin
        self._answers = self.proc.stdout.fileno()
        os.set_blocking(self._answers, False)
        self._token = token
        self.syncs = 0  # answered syncs (trio thread)
        self._seq = 0
        self.pending: collections.deque[tuple[int, list[_Op]]] = collections.deque()
        self.failed: StorageError | None = None
        self._closing = False
        self._settled = trio.Event()  # set by `run` when nothing is pending
        self.finished = trio.Event()  # `run` returned

    def submit(self, batch: list[_Op]) -> None:
        """Writer thread: `batch` is committed; answer it once a later sync is done."""
        self._seq += 1
        self.pending.append((self._seq, batch))
        try:
            self._requests.write(self._seq.to_bytes(8, "big"))
        except (OSError, ValueError) as exc:  # the helper is gone (ValueError: pipe closed)
            self._fail_soon(StorageError(f"the store's sync helper is gone ({exc!r}); reopen the store"))

    def _fail(self, error: StorageError) -> None:
        """Record the first failure (every later write fails with it) and log it."""
        if self.failed is None:
            self.failed = error
            log.error("%s", error)

    def _fail_soon(self, error: StorageError) -> None:
        self._fail(error)
        try:
            self._token.run_sync_soon(self._answer_up_to, self._seq)
        except trio.RunFinishedError:
            pass

    def _answer_up_to(self, seq: int) -> None:
        """Trio thread: answer every pending batch numbered `seq` or less (with `failed`, if set)."""
        failed = self.failed
        while self.pending and self.pending[0][0] <= seq:
            batch = self.pending.popleft()[1]
            if failed is not None:
                for op in batch:
                    if op.error is None:
                        op.result, op.error = None, failed
            _answer_all(batch)
        if not self.pending:
            self._settled.set()

    async def run(self) -> None:
        """Read the helper's answers until it exits; never raises but Cancelled (a system
        task). However it ends, every write handed over is answered."""
        try:
            await self._read_answers()
            if not self._closing:
                self._fail(StorageError("the store's sync helper exited; reopen the store"))
        except trio.Cancelled:
            self._fail(StorageError("the store's sync reader was cancelled; reopen the store"))
            raise
        except BaseException as exc:  # noqa: BLE001 - a bug must not leave writers waiting
            self._fail(StorageError(f"the store's sync reader stopped: {exc!r}; reopen the store"))
        finally:
            self._answer_up_to(self._seq)
            self.finished.set()

    async def _read_answers(self) -> None:
        """Answer pending batches as the helper's answers arrive, until its stdout closes."""
        buffered = b""
        while True:
            await trio.lowlevel.wait_readable(self._answers)
            try:
                data = os.read(self._answers, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            buffered += data
            whole = len(buffered) - len(buffered) % _wal_syncer.ANSWER_BYTES
            for i in range(0, whole, _wal_syncer.ANSWER_BYTES):
                seq = int.from_bytes(buffered[i:i + 8], "big")
                errno = int.from_bytes(buffered[i + 8:i + 12], "big")
                if errno:
                    self._fail(StorageError(
                        f"the store's WAL could not be synced to disk ({os.strerror(errno)}); its last "
                        "writes may be lost: check the disk and reopen the store"))
                else:
                    self.syncs += 1
                self._answer_up_to(seq)
            buffered = buffered[whole:]

    def abandon(self, error: StorageError) -> None:
        """Trio thread, when a close gave up waiting for the disk: fail every pending
        batch and all later ones with `error`, and kill the helper (without waiting for it:
        a process inside a sync that the disk does not finish cannot exit until it does)."""
        self._fail(error)
        self._closing = True
        self._answer_up_to(self._seq)
        try:
            self.proc.kill()
        except OSError:
            pass

    async def aclose(self) -> None:
        """Trio thread, after the writer thread finished: wait for the last answers, then
        stop the helper."""
        while self.pending and not self.finished.is_set():
            self._settled = trio.Event()
            await self._settled.wait()
        self._closing = True
        self._requests.close()
        await self.finished.wait()
        await trio.to_thread.run_sync(self._reap, abandon_on_cancel=True)
        os.close(self.wal_fd)

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]


@functools.cache
def _versions_of(n: int) -> str:
    return ("SELECT ns, key, stamp, value FROM records WHERE (ns, key) IN (VALUES "
            + ", ".join(["(?, ?)"] * n) + ")")


def _stored_versions(conn: sqlite3.Connection, params: list[Any]) -> dict[tuple[str, bytes], tuple[bytes, Any]]:
    """(namespace, key) -> (stamp, value) stored now, for the rows of upsert `params`."""
    pairs = [v for i in range(0, len(params), 4) for v in params[i:i + 2]]
    rows = conn.execute(_versions_of(len(pairs) // 2), pairs).fetchall()
    return {(ns, key): (stamp, value) for ns, key, stamp, value in rows}


def _answer(op: _Op, result: Any, error: BaseException | None) -> None:
    """Trio thread: hand `op` its outcome, once (a later answer is ignored)."""
    if not op.answered:
        op.answered = True
        op.done(result, error)


def _answer_all(batch: list[_Op]) -> None:
    """Runs on the trio thread: hand each write of a group commit its outcome."""
    for op in batch:
        _answer(op, op.result, op.error)


class Store:
    """The local store of one node. Create with `open_store`; all methods are async."""

    def __init__(self, path: Path, writer: _Writer, reader: sqlite3.Connection,
                 spaces: Iterable[Namespace], pending_ops_max: int, close_timeout_s: float,
                 cache_bytes: int = 0) -> None:
        self._path = path
        self._cache = RecordCache(cache_bytes)
        self._close_timeout_s = close_timeout_s
        self._writer = writer
        self._reader = reader
        self._read_limiter = trio.CapacityLimiter(1)
        self._pending = trio.Semaphore(pending_ops_max)
        self._pending_max = pending_ops_max
        self._queued_nowait = 0  # writes queued by put_many_nowait, not yet answered
        self._spaces = {ns.name: ns for ns in spaces}
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    def statistics(self) -> StoreStatistics:
        c = self._writer.counters
        with c.lock:
            return StoreStatistics(
                commits=c.commits, writes=c.writes, batch_writes_max=c.batch_writes_max,
                failed_commits=c.failed_commits,
                syncs=self._writer.sync.syncs if self._writer.sync is not None else 0,
                pending=self._pending_max - self._pending.value + self._queued_nowait,
                cache_hits=self._cache.hits, cache_misses=self._cache.misses,
                cache_records=len(self._cache), cache_bytes=self._cache.size_bytes,
            )

    # --- plumbing ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"the store {self._path} is closed")
        broken = self._writer.broken
        if broken is not None:
            raise broken

    async def _write(self, apply: Callable[[sqlite3.Connection], Any], size_bytes: int = 0) -> Any:
        return await self._submit_and_wait(_Op(apply, size_bytes))

    async def _submit_and_wait(self, op: _Op,
                               answered: Callable[[Any, BaseException | None], None] | None = None) -> Any:
        """Queue `op` and wait for its answer; `answered(result, error)` runs first, as the
        answer arrives (in answer order: what keeps the record cache in step)."""
        self._check_open()
        pending = self._pending
        await acquire(pending)  # the common case: no schedule point spent here
        try:
            self._check_open()
            event = trio.Event()
            outcome: list[Any] = []

            def done(result: Any, error: BaseException | None) -> None:
                if answered is not None:
                    answered(result, error)
                outcome[:] = [result, error]
                event.set()

            op.done = done
            self._writer.submit(op)
            # If we are cancelled here the write may still commit; trio's rule for an
            # interrupted operation: it may or may not have happened.
            await event.wait()
        finally:
            pending.release()
        result, error = outcome
        if error is not None:
            raise error
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        self._check_open()

        def run() -> Any:
            try:
                return fn(self._reader)
            except sqlite3.Error as exc:
                raise StorageError(f"store read failed: {exc.__class__.__name__}: {exc}") from None

        return await trio.to_thread.run_sync(run, limiter=self._read_limiter)

    def namespace(self, name: str) -> Namespace:
        """The spec of a defined namespace; `NamespaceError` if it is not defined."""
        ns = self._spaces.get(name) if type(name) is str else None
        if ns is None:
            known = ", ".join(sorted(self._spaces)) or "none"
            raise NamespaceError(
                f"namespace {name!r:.80} is not defined (defined: {known}); "
                "create it with put_namespace(Namespace(name=...)) first"
            )
        return ns

    def namespaces(self) -> list[Namespace]:
        """Every defined namespace, by name (kept in memory; no I/O)."""
        return [self._spaces[n] for n in sorted(self._spaces)]

    # --- writes -----------------------------------------------------------------------

    async def put_namespace(self, ns: Namespace) -> None:
        """Define or redefine a namespace (durable once this returns)."""
        if type(ns) is not Namespace:
            raise NamespaceError(f"put_namespace takes a Namespace, got {type(ns).__name__}")
        spec = encode_namespace(ns)
        await self._write(lambda c: c.execute(
            "INSERT INTO namespaces VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
            (ns.name, spec)))
        self._spaces[ns.name] = ns

    def _check_records(self, namespace: str, records: Sequence[Record]) -> None:
        self.namespace(namespace)
        if isinstance(records, (Record, bytes, str)) or not isinstance(records, Sequence):
            raise RecordError(f"expected a sequence of Record, got {type(records).__name__}")
        if len(records) > PUT_RECORDS_MAX:
            raise RecordError(f"at most {PUT_RECORDS_MAX} records per call, got {len(records)}: split the batch")
        for r in records:
            if type(r) is not Record:
                raise RecordError(f"expected Record values, got {type(r).__name__}")

    def _put_op(self, namespace: str, records: Sequence[Record], *, mergeable: bool = False) -> _Op:
        """Check the records (raises on misuse) and build the writer's upsert for them (one
        statement per record, so that each says whether it won); shared by `put_many` and
        `put_many_nowait`. `mergeable`: the writer may instead merge it with the rest of a
        group commit into one statement (`_Writer._merged`)."""
        self._check_records(namespace, records)
        params: list[Any] = []
        for r in records:
            params += (namespace, r.key, r.stamp.to_bytes(), r.value)

        def upsert_each(conn: sqlite3.Connection) -> list[bool]:
            return [conn.execute(_UPSERT, params[i:i + 4]).rowcount == 1 for i in range(0, len(params), 4)]

        return _Op(upsert_each, sum(r.size_bytes() for r in records), params=params if mergeable else None)

    async def put_many(self, namespace: str, records: Sequence[Record]) -> list[bool]:
        """Store records under last-writer-wins; return, per record, whether it won.

        Returns once the group commit holding them is durable. Unknown namespace, wrong
        types or too many records raise before anything is written.
        """
        op = self._put_op(namespace, records)
        held = tuple(records)
        result: list[bool] = await self._submit_and_wait(op, functools.partial(self._cache_wrote, namespace, held))
        return result

    def _cache_wrote(self, namespace: str, records: Sequence[Record], won: list[bool] | None,
                     error: BaseException | None) -> None:
        if error is None and won is not None:
            self._cache.wrote(namespace, records, won)

    def put_many_nowait(self, namespace: str, records: Sequence[Record],
                        on_done: Callable[[list[bool] | None, BaseException | None], None]) -> None:
        """`put_many` without a task waiting on it: queue the records for the next group
        commit and return at once; `on_done(won, None)` runs on the trio thread once that
        commit is durable, `on_done(None, error)` if it failed (nothing of it applied).

        Misuse raises here, before anything is queued, exactly as `put_many` does; a closed
        or dead store raises `StorageError`. `on_done` must not raise (it runs as a trio
        `run_sync_soon` callback). Not bounded by `pending_ops_max`: the caller bounds what
        it queues (the kv replica core bounds its pending writes).
        """
        self._check_open()

        op = self._put_op(namespace, records, mergeable=True)
        held = tuple(records)

        def done(result: Any, error: BaseException | None) -> None:
            self._queued_nowait -= 1
            self._cache_wrote(namespace, held, result, error)
            on_done(result, error)

        op.done = done
        self._queued_nowait += 1
        self._writer.submit(op)

    async def add_hints(self, target: bytes, namespace: str, records: Sequence[Record]) -> None:
        """Hold copies of records for `target`, a replica that is down (hinted handoff)."""
        self._check_records(namespace, records)
        _check_node(target)
        rows = [(target, namespace, r.key, r.stamp.to_bytes(), r.value) for r in records]
        await self._write(
            lambda c: c.executemany("INSERT INTO hints (target, ns, key, stamp, value) VALUES (?, ?, ?, ?, ?)", rows),
            sum(r.size_bytes() for r in records),
        )

    async def delete_hints(self, ids: Iterable[int]) -> None:
        """Forget delivered hints."""
        rows = [(i,) for i in ids]
        if any(type(i) is not int for (i,) in rows):
            raise LocalProtocolError("hint ids are ints from Hint.id")
        await self._write(lambda c: c.executemany("DELETE FROM hints WHERE id = ?", rows))

    async def add_tombstone_acks(self, namespace: str, acks: Iterable[TombstoneAck]) -> None:
        """Record that nodes hold tombstones (or newer versions); the newest ack per node wins."""
        self.namespace(namespace)
        rows = []
        for a in acks:
            if type(a) is not TombstoneAck:
                raise RecordError(f"expected TombstoneAck values, got {type(a).__name__}")
            _check_node(a.node)
            rows.append((namespace, _as_key(a.key), a.node, a.stamp.to_bytes()))
        await self._write(lambda c: c.executemany(_ACK_UPSERT, rows))

    async def purge_tombstone(self, namespace: str, key: bytes | str, stamp: Stamp) -> bool:
        """Delete the tombstone of `key` written at `stamp`, and its acks.

        Only that exact tombstone goes: if a newer write replaced it meanwhile, nothing is
        deleted and False is returned. Decide with `meshcore.kv.may_purge` first.
        """
        return await self._delete_version(namespace, key, stamp, tombstone_only=True)

    async def drop_copy(self, namespace: str, key: bytes | str, stamp: Stamp) -> bool:
        """Delete this node's copy of `key` if it is still the version written at `stamp`
        (value or tombstone), and its tombstone acks: the kv service's range hand-off, once
        every home replica holds that version. False (nothing deleted) if it changed."""
        return await self._delete_version(namespace, key, stamp, tombstone_only=False)

    async def _delete_version(self, namespace: str, key: bytes | str, stamp: Stamp, *,
                              tombstone_only: bool) -> bool:
        self.namespace(namespace)
        k, s = _as_key(key), stamp.to_bytes()
        sql = "DELETE FROM records WHERE ns = ? AND key = ? AND stamp = ?" + (
            " AND value IS NULL" if tombstone_only else "")

        def apply(conn: sqlite3.Connection) -> bool:
            gone = conn.execute(sql, (namespace, k, s)).rowcount == 1
            if gone:
                conn.execute("DELETE FROM tombstone_acks WHERE ns = ? AND key = ? AND stamp <= ?", (namespace, k, s))
            return gone

        # Forget the key as the deletion is answered (in answer order), whatever its outcome:
        # a write answered before it may have put back the very version it deleted.
        result: bool = await self._submit_and_wait(_Op(apply, 0), lambda r, e: self._cache.forget(namespace, k))
        return result

    # --- reads ------------------------------------------------------------------------

    def read_begins(self) -> int:
        """Before a point read of the disk whose results go to `read_ends` (the cache's
        guard against putting back a version a racing write replaced: `RecordCache`)."""
        return self._cache.read_begins()

    def read_ends(self, token: int, found: Iterable[tuple[str, Record | None]]) -> None:
        """What the read begun with `token` found, (namespace, record or None) per key: the
        cache keeps what it may. Once per `read_begins`, a failed read too (found empty)."""
        self._cache.read_ends(token, found)

    def cached(self, namespace: str, key: bytes) -> Record | None:
        """The version of `key` this store holds, from memory (`RecordCache`), or None if
        it is not there (then read the disk). None too once the store is closed or broken."""
        if self._closed or self._writer.broken is not None:
            return None
        return self._cache.get(namespace, key)

    async def get(self, namespace: str, key: bytes | str) -> Record | None:
        """The stored version of a key (a tombstone is returned as such), or None."""
        self.namespace(namespace)
        k = _as_key(key)

        def fn(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute("SELECT key, stamp, value FROM records WHERE ns = ? AND key = ?",
                               (namespace, k)).fetchone()
            return None if row is None else row_record(*row)

        result: Record | None = await self._read(fn)
        return result

    async def versions(self, namespace: str, *, after: bytes | None = None,
                       limit: int = 10_000) -> list[tuple[bytes, Stamp]]:
        """One page of (key, stamp) in key order, keys strictly after `after`."""
        self.namespace(namespace)
        if type(limit) is not int or not 1 <= limit <= VERSIONS_PAGE_MAX:
            raise LocalProtocolError(f"limit must be an int in [1, {VERSIONS_PAGE_MAX}]")
        start = b"" if after is None else _as_key(after)

        def fn(conn: sqlite3.Connection) -> list[tuple[bytes, Stamp]]:
            rows = conn.execute(
                "SELECT key, stamp FROM records WHERE ns = ? AND key > ? ORDER BY key LIMIT ?",
                (namespace, start, limit)).fetchall()
            try:
                return [(k, Stamp.from_bytes(s)) for k, s in rows]
            except DecodeError as exc:
                raise StorageError(f"corrupt stamp in namespace {namespace!r}: {exc}") from None

        result: list[tuple[bytes, Stamp]] = await self._read(fn)
        return result

    async def scan_versions(self, namespace: str, *, page: int = 10_000) -> AsyncIterator[tuple[bytes, Stamp]]:
        """Every (key, stamp) of a namespace in key order, read page by page (index rebuild)."""
        after: bytes | None = None
        while True:
            rows = await self.versions(namespace, after=after, limit=page)
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = rows[-1][0]

    async def max_stamp(self) -> Stamp | None:
        """The greatest stamp stored, to resume the node's HLC above it after a restart."""
        def fn(conn: sqlite3.Connection) -> Stamp | None:
            row = conn.execute("SELECT max(stamp) FROM records").fetchone()
            return None if row[0] is None else Stamp.from_bytes(row[0])

        result: Stamp | None = await self._read(fn)
        return result

    async def hints(self, target: bytes, *, limit: int = 1000) -> list[Hint]:
        """Pending hints for `target`, oldest first."""
        _check_node(target)
        if type(limit) is not int or not 1 <= limit <= VERSIONS_PAGE_MAX:
            raise LocalProtocolError(f"limit must be an int in [1, {VERSIONS_PAGE_MAX}]")

        def fn(conn: sqlite3.Connection) -> list[Hint]:
            rows = conn.execute(
                "SELECT id, ns, key, stamp, value FROM hints WHERE target = ? ORDER BY id LIMIT ?",
                (target, limit)).fetchall()
            return [Hint(i, target, ns, row_record(k, s, v)) for i, ns, k, s, v in rows]

        result: list[Hint] = await self._read(fn)
        return result

    async def tombstone_acks(self, namespace: str, key: bytes | str) -> list[TombstoneAck]:
        """The acknowledgements recorded for a key's tombstone, by node."""
        self.namespace(namespace)
        k = _as_key(key)

        def fn(conn: sqlite3.Connection) -> list[TombstoneAck]:
            rows = conn.execute("SELECT node, stamp FROM tombstone_acks WHERE ns = ? AND key = ? ORDER BY node",
                                (namespace, k)).fetchall()
            return [TombstoneAck(k, Stamp.from_bytes(s), n) for n, s in rows]

        result: list[TombstoneAck] = await self._read(fn)
        return result

    # --- lifecycle --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Finish every queued write, stop the writer thread, close the files.

        Not interrupted by cancellation, but bounded by `close_timeout_s`: a disk that does
        not answer (a sync or a write that never returns) must not keep the node from
        stopping. Past that time every write not yet answered fails with `StorageError`
        (none of them was acknowledged, so none is lost; some may still reach the disk
        later), the sync helper is killed, and the files are left to the process's exit."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        writer.submit(_STOP)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._close_timeout_s):
                await trio.to_thread.run_sync(writer.thread.join, abandon_on_cancel=True)
                if writer.sync is not None:
                    await writer.sync.aclose()
                async with self._read_limiter:
                    await trio.to_thread.run_sync(self._close_files, abandon_on_cancel=True)
                return
        error = StorageError(
            f"the store {self._path} was closed after waiting {self._close_timeout_s:g} s for its disk: "
            "its writes that the disk had not confirmed failed")
        log.error("%s (is the disk hung?)", error)
        writer.abandon(error)
        if writer.sync is not None:
            writer.sync.abandon(error)

    def _close_files(self) -> None:
        self._reader.close()
        self._writer.close()


def _check_node(node: object) -> None:
    if type(node) is not bytes or len(node) != 16:
        raise LocalProtocolError(f"a node id is 16 bytes, got {node!r:.40}")


@asynccontextmanager
async def open_store(
    path: str | Path,
    *,
    synchronous: Literal["full", "normal"] = "full",
    batch_ops_max: int = 1024,
    batch_bytes_max: int = 32 * 1024 * 1024,
    pending_ops_max: int = 4096,
    close_timeout_s: float = 30.0,
    cache_bytes: int = 32 * 1024 * 1024,
) -> AsyncIterator[Store]:
    """Open (creating if needed) the store at `path`; close it on exit (waiting at most
    `close_timeout_s` for the disk: `Store.aclose`). `cache_bytes`: the record cache's
    budget (`Store.cached`; 0: none). See the module doc."""
    if synchronous not in SYNC_MODES:
        raise LocalProtocolError(f"synchronous is 'full' or 'normal', got {synchronous!r}")
    for name, v in (("batch_ops_max", batch_ops_max), ("batch_bytes_max", batch_bytes_max),
                    ("pending_ops_max", pending_ops_max)):
        if type(v) is not int or v < 1:
            raise LocalProtocolError(f"{name} must be an int >= 1, got {v!r}")
    if type(cache_bytes) is not int or cache_bytes < 0:
        raise LocalProtocolError(f"cache_bytes must be an int >= 0, got {cache_bytes!r}")
    if type(close_timeout_s) not in (int, float) or not 0 < close_timeout_s < math.inf:
        raise LocalProtocolError(f"close_timeout_s must be a number > 0, got {close_timeout_s!r}")
    p = Path(path)

    token = trio.lowlevel.current_trio_token()

    def opening() -> tuple[sqlite3.Connection, sqlite3.Connection, list[Namespace], _SyncHelper | None]:
        # "full": SQLite commits at NORMAL and `_SyncHelper` syncs the WAL (module doc).
        try:
            w = _connect(p, "NORMAL", readonly=False)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the store {p}: {exc}; check the path and permissions") from None
        r: sqlite3.Connection | None = None
        wal_fd: int | None = None
        try:
            spaces = _init_schema(w)  # a write transaction: the WAL file exists after it
            r = _connect(p, "NORMAL", readonly=True)
            if synchronous == "full":
                wal_fd = os.open(f"{p}-wal", os.O_RDWR | os.O_CLOEXEC)
                sync = _SyncHelper(wal_fd, token)
            else:
                sync = None
        except BaseException as exc:
            if wal_fd is not None:
                os.close(wal_fd)
            if r is not None:
                r.close()
            w.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise StorageError(f"cannot open the store {p}: {exc}") from None
            raise
        return w, r, spaces, sync

    w, r, spaces, sync = await trio.to_thread.run_sync(opening)
    writer = _Writer(w, token, batch_ops_max=batch_ops_max, batch_bytes_max=batch_bytes_max, sync=sync)
    if sync is not None:
        trio.lowlevel.spawn_system_task(sync.run)
    writer.thread.start()
    store = Store(p, writer, r, spaces, pending_ops_max, close_timeout_s, cache_bytes)
    try:
        yield store
    finally:
        await store.aclose()

