"""kv-ae-round: the CPU of one node's anti-entropy round in a big ring.

`python -m benchmarks kv-ae-round --nodes 400 --keys 20000 --replicas 2`: a ring of
`--nodes` members on distinct sites (64 points each), one namespace, and the `--keys` keys
one node holds (keys it is a home replica of). Measured, in this process, with the kv
service's own code:
- `round_cpu_s`: what a round costs that node now: one `VersionSnapshot` (every key placed
  once) and, for each of its co-replicas (`Ring.co_replicas`), the rows it shares with that
  peer (`VersionSnapshot.shared`) and the session's `RangeIndex`;
- `baseline_round_cpu_s`: the way rounds worked before (aeb1820): a session with every
  member of the territory, each placing every key to keep the ones shared with that peer,
  then building its index; measured on `--baseline-sessions` peers and multiplied out;
- `round_vs_baseline`: the ratio of the two (lower is better).
Setting up tries keys until the node holds `--keys` of them (about nodes / replicas tries
per key: minutes for 200,000 keys at 400 nodes). Reading the versions from SQLite is left
out of both (it was per session before, per
snapshot now, so the ratio only understates the change). CPU is this process's
(`time.process_time`).
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import trio

from meshcore.antientropy import RangeIndex
from meshcore.kv import Namespace, Ring, RingMember
from meshcore.runtime._kvstore import VersionSnapshot

from ._report import emit

Row = tuple[bytes, bytes, bool]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=400)
    p.add_argument("--keys", type=int, default=20_000, help="keys the measured node holds")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--baseline-sessions", type=int, default=5,
                   help="baseline sessions actually run (the rest of the territory is multiplied out)")
    p.add_argument("--seed", type=int, default=1)


class _Rows:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    async def versions(self, namespace: str) -> list[Row]:
        return list(self.rows)


def run(args: argparse.Namespace) -> None:
    if args.nodes < args.replicas + 1 or args.keys < 1 or args.baseline_sessions < 1:
        raise SystemExit("need --nodes > --replicas, --keys >= 1 and --baseline-sessions >= 1")
    rng = random.Random(args.seed)
    members = [RingMember(i.to_bytes(16, "big"), f"site-{i}", "r1") for i in range(1, args.nodes + 1)]
    ring = Ring(members)
    ns = Namespace(name="bench", replicas=args.replicas)
    me = members[0].node
    rows: list[Row] = []
    i = 0
    while len(rows) < args.keys:
        key = b"key-%010d" % i
        i += 1
        if me in ring.replicas_for(ns, key):
            rows.append((key, rng.randbytes(12), rng.random() < 0.1))
    territory = [m.node for m in members[1:]]

    def placement(key: bytes) -> tuple[bytes, ...] | None:
        return tuple(ring.replicas_for(ns, key))

    async def current() -> tuple[float, float, list[float], int]:
        t0 = time.process_time()
        peers = sorted(ring.co_replicas(ns, me))
        snap = await VersionSnapshot.build(_Rows(rows), ns.name, placement,  # type: ignore[arg-type]
                                           generation=ring.generation)
        t_snap = time.process_time() - t0
        sessions = []
        for peer in peers:
            t1 = time.process_time()
            RangeIndex.build(snap.shared(me, peer))
            sessions.append(time.process_time() - t1)
        return t_snap, time.process_time() - t0, sessions, len(peers)

    def baseline_session(peer: bytes) -> float:
        t0 = time.process_time()
        shared = []
        for row in rows:
            home = ring.replicas_for(ns, row[0])
            if peer in home and me in home:
                shared.append(row)
        RangeIndex.build(shared)
        return time.process_time() - t0

    # Fresh caches for each side: the ring's placement caches would otherwise favour the second.
    ring = Ring(members)
    sample = rng.sample(territory, min(args.baseline_sessions, len(territory)))
    base = [baseline_session(p) for p in sample]
    ring = Ring(members)
    t_snap, t_round, sessions, co = trio.run(current)
    base_session = sum(base) / len(base)
    metrics: dict[str, Any] = {
        "peers_territory": len(territory),
        "peers_co_replicas": co,
        "snapshot_ms": round(t_snap * 1000, 1),
        "session_ms_mean": round(sum(sessions) / len(sessions) * 1000, 3) if sessions else 0.0,
        "round_cpu_s": round(t_round, 3),
        "baseline_session_ms": round(base_session * 1000, 1),
        "baseline_round_cpu_s": round(base_session * len(territory), 2),
        "round_vs_baseline": round(t_round / (base_session * len(territory)), 5),
    }
    params = {"nodes": args.nodes, "keys": args.keys, "replicas": args.replicas,
              "baseline_sessions": len(sample), "seed": args.seed}
    emit("kv-ae-round", params, metrics, args.json)
