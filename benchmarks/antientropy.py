"""Anti-entropy between two replicas: build, diverge by D entries, reconcile, compare.

`python -m benchmarks antientropy --keys N --diffs D --json PATH`

Keys are 16 random bytes, values 32 bytes, versions 12 bytes (8-byte microsecond time +
4-byte writer id, the byte order of the kv layer's stamps). The D differences cycle through
six kinds: a key only on A, only on B, newer on A, newer on B, deleted later on A, deleted
later on B. Reported: bytes_total (both directions, every frame byte, records included),
round_trips (one frame each way; a last unanswered frame counts one), records_sent,
overstream_ratio (records sent / records that differed), build_s (cold build of one
replica's index), update_us (mean of `--updates` incremental index writes on the built
index), reconcile_s, equal (A and B hold the same records afterwards), verified.
"""

from __future__ import annotations

import argparse
import random
import time

from meshcore.antientropy import (
    MemoryReplica,
    RangeIndex,
    ReconcileConfig,
    VersionedRecord,
    reconcile_pair,
)

from ._report import emit

_T0_US = 1_700_000_000_000_000  # versions spread over ~30 days after this instant
_SPREAD_US = 30 * 86_400 * 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=int, default=100_000, help="entries per replica")
    parser.add_argument("--diffs", type=int, default=100, help="entries that differ")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--message-bytes", type=int, default=64 * 1024, help="frame limit")
    parser.add_argument("--updates", type=int, default=10_000, help="timed incremental writes")


def _version(t_us: int, writer: int) -> bytes:
    return t_us.to_bytes(8, "big") + writer.to_bytes(4, "big")


def _diverge(rng: random.Random, base: list[VersionedRecord], diffs: int) -> tuple[list[VersionedRecord], list[VersionedRecord]]:
    """Two record lists that differ in exactly `diffs` keys."""
    a = {r.key: r for r in base}
    b = dict(a)
    touched = rng.sample(range(len(base)), min(len(base), diffs))
    for i in range(diffs):
        kind = i % 6
        if kind < 2 or not touched:
            rec = VersionedRecord(rng.randbytes(16), _version(_T0_US + rng.randrange(_SPREAD_US), 1), rng.randbytes(32))
            (a if kind == 0 else b)[rec.key] = rec
            continue
        old = base[touched.pop()]
        later = int.from_bytes(old.version[:8], "big") + rng.randrange(1_000_000, 86_400_000_000)
        value = None if kind >= 4 else rng.randbytes(32)
        rec = VersionedRecord(old.key, _version(later, 2), value)
        (a if kind in (2, 4) else b)[rec.key] = rec
    return list(a.values()), list(b.values())


def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    base = [
        VersionedRecord(rng.randbytes(16), _version(_T0_US + rng.randrange(_SPREAD_US), 1), rng.randbytes(32))
        for _ in range(args.keys)
    ]
    recs_a, recs_b = _diverge(rng, base, args.diffs)
    del base
    t0 = time.perf_counter()
    replica_a = MemoryReplica.from_records(recs_a)
    build_s = time.perf_counter() - t0
    replica_b = MemoryReplica.from_records(recs_b)
    del recs_a, recs_b

    config = ReconcileConfig(message_bytes_max=args.message_bytes)
    t0 = time.perf_counter()
    result = reconcile_pair(replica_a, replica_b, rng=rng, config=config)
    reconcile_s = time.perf_counter() - t0
    equal = replica_a.snapshot() == replica_b.snapshot()

    update_us = _time_updates(replica_a.index, rng, args.updates)
    metrics = {
        "bytes_total": result.bytes_total,
        "round_trips": result.round_trips,
        "frames": result.frames,
        "records_sent": result.records_sent,
        "records_differed": args.diffs,
        "overstream_ratio": result.records_sent / args.diffs if args.diffs else 0.0,
        "build_s": build_s,
        "update_us": update_us,
        "reconcile_s": reconcile_s,
        "equal": equal,
        "verified": result.verified,
        "dense": result.initiator.dense,
    }
    params = {"keys": args.keys, "diffs": args.diffs, "seed": args.seed, "message_bytes": args.message_bytes}
    emit("antientropy", params, metrics, args.json)


def _time_updates(index: RangeIndex, rng: random.Random, n: int) -> float:
    """Mean µs of one incremental write: a third new keys, a third newer versions, a third
    deletes (tombstones) of existing keys."""
    if n <= 0:
        return 0.0
    existing = [k for _, k in zip(range(n), index.keys(b"", None), strict=False)]
    ops = []
    for i in range(n):
        version = _version(_T0_US + _SPREAD_US + i, 3)
        if i % 3 == 0 or not existing:
            ops.append((rng.randbytes(16), version, False))
        else:
            ops.append((existing[rng.randrange(len(existing))], version, i % 3 == 2))
    t0 = time.perf_counter()
    for key, version, tomb in ops:
        index.put(key, version, tomb)
    return (time.perf_counter() - t0) / n * 1e6
