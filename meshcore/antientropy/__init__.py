"""meshcore.antientropy: find and repair what two replicas hold differently (I/O-free).

- `RangeIndex`: the ordered index of (key, version, tombstone) with range fingerprints;
- `ReconcileSession`: one side of a range-based reconciliation (bytes in, bytes out);
- `ReplicaStore` (the storage seam) and `MemoryReplica` (in-memory, for tests/benchmarks);
- `reconcile_pair`: run a whole session between two local replicas (tests, simulator).
"""

from ._config import ReconcileConfig, ReconcileError
from ._index import HASH_MASK, KEY_BYTES_MAX, VERSION_BYTES_MAX, Entry, RangeIndex, item_hash, newer
from ._pair import PairResult, reconcile_pair
from ._ranges import FULL_RANGE, KeyRange, Splitter
from ._session import ReconcileSession, SessionStatistics
from ._store import MemoryReplica, ReplicaStore, VersionedRecord

__all__ = [
    "HASH_MASK",
    "KEY_BYTES_MAX",
    "VERSION_BYTES_MAX",
    "FULL_RANGE",
    "Entry",
    "KeyRange",
    "MemoryReplica",
    "PairResult",
    "RangeIndex",
    "ReconcileConfig",
    "ReconcileError",
    "ReconcileSession",
    "ReplicaStore",
    "SessionStatistics",
    "Splitter",
    "VersionedRecord",
    "item_hash",
    "newer",
    "reconcile_pair",
]
