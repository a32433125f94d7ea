"""`RecordCache`: the versions a store last wrote durably, kept in memory for point reads.

A kv get on a replica is a point read of the store. Done by the reader thread it costs a
trip there and back (a task, a thread hand-off, a wake-up of the trio thread) that is most
of the read's CPU; this cache answers it on the trio thread when it can.

What it holds: for each key, the last version the store reported as written (won, and
durable) — updated on the trio thread as each write is answered, in answer order, which is
commit order. A deletion of a version (a purged tombstone, a copy dropped after a hand-off)
forgets the key once it is answered, whatever its outcome. Every write to the records
table goes through the store, which tells the cache, so the cache never holds a version
other than the store's last answered one: a hit is what a read of the disk would have
returned once those writes were answered (a read of the disk may also see a commit whose
sync is still running; the cache waits for the sync, as the write's acknowledgement does).

Limits: records whose value exceeds `value_bytes_max` are not kept (nor are they evicted
for); at most about `bytes_max` bytes in all, the least recently written evicted first. A
key not written since the store opened is a miss (reads do not fill the cache: a read
racing with a write could put back the older version).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..kv import Record

__all__ = ["RecordCache", "ENTRY_OVERHEAD_BYTES"]

#: Memory an entry costs besides its key and value bytes (dict slot, tuple, Record, Stamp).
ENTRY_OVERHEAD_BYTES = 300


class RecordCache:
    __slots__ = ("_items", "_bytes", "bytes_max", "value_bytes_max", "hits", "misses", "evicted")

    def __init__(self, bytes_max: int, value_bytes_max: int = 64 * 1024) -> None:
        self._items: dict[tuple[str, bytes], Record] = {}
        self._bytes = 0
        self.bytes_max = bytes_max
        self.value_bytes_max = value_bytes_max
        self.hits = 0
        self.misses = 0
        self.evicted = 0

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
        items = self._items
        if len(won) != len(records):  # never, by the store's contract; forgetting is safe
            self.clear()
            return
        for rec, w in zip(records, won, strict=True):  # lengths checked above
            if not w:
                continue
            k = (namespace, rec.key)
            old = items.pop(k, None)
            if old is not None:
                self._bytes -= _size(old)
            v = rec.value
            if v is not None and len(v) > self.value_bytes_max:
                continue  # too large to keep: the next read of it goes to the disk
            items[k] = rec  # (re)inserted last: the most recently written
            self._bytes += _size(rec)
        while self._bytes > self.bytes_max and items:
            oldest = next(iter(items))
            self._bytes -= _size(items.pop(oldest))
            self.evicted += 1

    def forget(self, namespace: str, key: bytes) -> None:
        old = self._items.pop((namespace, key), None)
        if old is not None:
            self._bytes -= _size(old)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


def _size(rec: Record) -> int:
    return len(rec.key) + (0 if rec.value is None else len(rec.value)) + ENTRY_OVERHEAD_BYTES
