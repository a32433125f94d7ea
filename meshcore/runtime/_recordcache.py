"""`RecordCache`: versions of keys a store holds, kept in memory for point reads.

A kv get on a replica is a point read of the store. Done by the reader thread it costs a
trip there and back (a task, a thread hand-off, a wake-up of the trio thread) that is most
of the read's CPU; this cache answers it on the trio thread when it can.

Writes: the last version the store reported as written (won, and durable) of each key,
updated on the trio thread as each write is answered, in answer order, which is commit
order. A deletion of a version (a purged tombstone, a copy dropped after a hand-off)
forgets the key once it is answered, whatever its outcome. Every write to the records
table goes through the store, which tells the cache.

Reads fill it too (`read_begins` before a read of the disk, `read_ends` with what it
found): a version found is kept unless the key was written or forgotten since the read
began (the read may have seen the older state: putting it back would be stale) or is held
already (kept as it is: a newer commit the read saw reaches the cache with its answer).

So a hit is never older than the store's last answered version of its key: it is what a
read of the disk returns, but for commits not answered yet. A version filled by a read
can be one whose sync is still running, served before it is durable as a read of the disk
would serve it (the store stops answering from memory once a sync fails).

Limits: records whose value exceeds `value_bytes_max` are not kept (nor are they evicted
for); at most about `bytes_max` bytes in all, the least recently written (or read in)
evicted first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..kv import Record

__all__ = ["RecordCache", "ENTRY_OVERHEAD_BYTES"]

#: Memory an entry costs besides its key and value bytes (dict slot, tuple, Record, Stamp).
ENTRY_OVERHEAD_BYTES = 300


class RecordCache:
    __slots__ = ("_items", "_bytes", "bytes_max", "value_bytes_max", "hits", "misses", "evicted", "_seq",
                 "_touched", "_reads", "_floor")

    def __init__(self, bytes_max: int, value_bytes_max: int = 64 * 1024) -> None:
        self._items: dict[tuple[str, bytes], Record] = {}
        self._bytes = 0
        self.bytes_max = bytes_max
        self.value_bytes_max = value_bytes_max
        self.hits = 0
        self.misses = 0
        self.evicted = 0
        self._seq = 0  # counts the changes (writes and forgets), for the reads' guard
        self._touched: dict[tuple[str, bytes], int] = {}  # key -> last change, while reads run
        self._reads: dict[int, int] = {}  # start sequence -> reads begun then, still running
        self._floor = 0  # reads begun before this sequence keep nothing (a `clear` since)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, namespace: str, key: bytes) -> Record | None:
        """The store's version of `key` (a tombstone is a version), or None: not known here."""
        rec = self._items.get((namespace, key))
        if rec is None:
            self.misses += 1
        else:
            self.hits += 1
        return rec

    def wrote(self, namespace: str, records: Sequence[Record], won: Sequence[bool]) -> None:
        """A write was answered: `won[i]` says whether `records[i]` is now the stored version."""
        if len(won) != len(records):  # never, by the store's contract; forgetting is safe
            self.clear()
            return
        for rec, w in zip(records, won, strict=True):  # lengths checked above
            if w:
                k = (namespace, rec.key)
                self._touch(k)
                self._put(k, rec)
        self._evict()

    def read_begins(self) -> int:
        """Before a read of the disk whose results go to `read_ends`: its token."""
        token = self._seq
        self._reads[token] = self._reads.get(token, 0) + 1
        return token

    def read_ends(self, token: int, found: Iterable[tuple[str, Record | None]]) -> None:
        """What a read begun with `token` found, (namespace, record or None: no row) per
        key; keep what is safe to keep. Call it once per `read_begins`, failed reads too."""
        left = self._reads.get(token, 0) - 1
        if left > 0:
            self._reads[token] = left
        else:
            self._reads.pop(token, None)
        items, touched = self._items, self._touched
        for namespace, rec in found if token >= self._floor else ():
            if rec is None:
                continue
            k = (namespace, rec.key)
            if k not in items and touched.get(k, token) <= token:
                self._put(k, rec)
        self._evict()
        if not self._reads:
            touched.clear()

    def _touch(self, k: tuple[str, bytes]) -> None:
        self._seq += 1
        if self._reads:
            self._touched[k] = self._seq

    def _put(self, k: tuple[str, bytes], rec: Record) -> None:
        items = self._items
        old = items.pop(k, None)
        if old is not None:
            self._bytes -= _size(old)
        v = rec.value
        if v is not None and len(v) > self.value_bytes_max:
            return  # too large to keep: the next read of it goes to the disk
        items[k] = rec  # (re)inserted last: the most recent
        self._bytes += _size(rec)

    def _evict(self) -> None:
        items = self._items
        while self._bytes > self.bytes_max and items:
            oldest = next(iter(items))
            self._bytes -= _size(items.pop(oldest))
            self.evicted += 1

    def forget(self, namespace: str, key: bytes) -> None:
        self._touch((namespace, key))
        old = self._items.pop((namespace, key), None)
        if old is not None:
            self._bytes -= _size(old)

    def clear(self) -> None:
        """Forget everything; the reads running now keep nothing either."""
        self._items.clear()
        self._bytes = 0
        self._seq += 1
        self._floor = self._seq


def _size(rec: Record) -> int:
    return len(rec.key) + (0 if rec.value is None else len(rec.value)) + ENTRY_OVERHEAD_BYTES
