"""The storage seam of reconciliation, and a simple in-memory replica for tests/benchmarks.

A session reads fingerprints and entries from `ReplicaStore.index`, reads values with
`read`, and calls `apply` only with records that are strictly newer than what the index
holds for their key (it compares versions itself, so a store never sees a stale repair).
`apply` must update the index (`index.put`) before it returns. The kv layer plugs its
SQLite-backed store in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import LocalProtocolError
from ._index import RangeIndex, check_entry, newer

__all__ = ["VersionedRecord", "ReplicaStore", "MemoryReplica"]


@dataclass(frozen=True, slots=True)
class VersionedRecord:
    """One version of one key: a value, or a tombstone (`value is None`)."""

    key: bytes
    version: bytes
    value: bytes | None

    @property
    def tombstone(self) -> bool:
        return self.value is None


class ReplicaStore(Protocol):
    @property
    def index(self) -> RangeIndex: ...

    def read(self, key: bytes) -> VersionedRecord | None:
        """The record the index lists for `key` (None if absent)."""
        ...

    def apply(self, record: VersionedRecord) -> None:
        """Store a repair (strictly newer than the indexed entry) and index it."""
        ...


class MemoryReplica:
    """A dict of records plus its `RangeIndex`: the reference `ReplicaStore`."""

    def __init__(self, index: RangeIndex | None = None, values: dict[bytes, bytes | None] | None = None) -> None:
        self._index = index if index is not None else RangeIndex()
        self._values: dict[bytes, bytes | None] = values if values is not None else {}
        if len(self._values) != len(self._index):
            raise LocalProtocolError("MemoryReplica: values and index must hold the same keys")
        self.applied = 0

    @classmethod
    def from_records(cls, records: list[VersionedRecord]) -> MemoryReplica:
        index = RangeIndex.build((r.key, r.version, r.value is None) for r in records)
        return cls(index, {r.key: r.value for r in records})

    @property
    def index(self) -> RangeIndex:
        return self._index

    def read(self, key: bytes) -> VersionedRecord | None:
        entry = self._index.version_of(key)
        if entry is None:
            return None
        return VersionedRecord(key, entry[0], self._values[key])

    def apply(self, record: VersionedRecord) -> None:
        self.applied += 1
        self._write(record)

    def write(self, key: bytes, version: bytes, value: bytes | None) -> bool:
        """A local write (value None: delete); kept only if newer. Returns whether kept."""
        check_entry(key, version)
        old = self._index.version_of(key)
        if old is not None and not newer(version, value is None, old[0], old[1]):
            return False
        self._write(VersionedRecord(key, version, value))
        return True

    def _write(self, record: VersionedRecord) -> None:
        self._values[record.key] = record.value
        self._index.put(record.key, record.version, record.value is None)

    def snapshot(self) -> dict[bytes, tuple[bytes, bytes | None]]:
        """key -> (version, value), for equality checks."""
        return {k: (v[0], self._values[k]) for k in self._values if (v := self._index.version_of(k))}

    def __len__(self) -> int:
        return len(self._values)
