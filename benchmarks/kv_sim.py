"""kv-sim: the replicated key-value layer in the seeded simulator (SWIM membership).

`python -m benchmarks kv-sim --nodes 50 --duration-s 600 --seed 1 [--seeds 5]`: 3 regions,
2 nodes per site, namespaces with rf 2 (any region, r0 only, r1+r2), concurrent writers at
one/quorum/all, crashes with restarts (durable stores), partitions and stream loss, with
anti-entropy; `--decommissions N` also crashes N nodes for good, takes them off the ring
30 s later (their keys move to new homes) and brings each back 30-60 s after that with an
empty store (keys move back: the others hand off what they no longer own). Reports the
safety counters (acked_lost for quorum/all writes, resurrected,
misplaced), converge_after_heal_s and the counts. With --seeds N it runs seeds
seed..seed+N-1 and reports the worst value of each safety metric and every seed's figures.
"""

from __future__ import annotations

import argparse
import math
import time

from meshcore.sim._kv import KvScenario, run_kv_scenario

from ._report import emit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="run this many consecutive seeds")
    parser.add_argument("--ops-per-s", type=float, default=20.0)
    parser.add_argument("--crashes", type=int, default=6)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--decommissions", type=int, default=0,
                        help="nodes crashed for good and taken off the ring (ranges move)")
    parser.add_argument("--loss", type=float, default=0.02)


def run(args: argparse.Namespace) -> None:
    if args.nodes < 8:
        raise SystemExit("--nodes must be at least 8 (3 regions, 2 nodes per site, rf 2)")
    if args.duration_s < 120:
        raise SystemExit("--duration-s must be at least 120 (faults need room before the quiet phase)")
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):
        t0 = time.perf_counter()
        _, m = run_kv_scenario(KvScenario(seed=seed, nodes=args.nodes, duration_s=args.duration_s,
                                          ops_per_s=args.ops_per_s, crashes=args.crashes,
                                          partitions=args.partitions, loss=args.loss,
                                          decommissions=args.decommissions))
        m["wall_s"] = round(time.perf_counter() - t0, 2)
        runs.append((seed, m))
    params = {"nodes": args.nodes, "duration_s": args.duration_s, "seed": args.seed, "seeds": args.seeds,
              "ops_per_s": args.ops_per_s, "crashes": args.crashes, "partitions": args.partitions,
              "decommissions": args.decommissions, "loss": args.loss}
    if len(runs) == 1:
        emit("kv-sim", params, runs[0][1], args.json)
        return
    conv = [float(m["converge_after_heal_s"]) for _, m in runs]  # type: ignore[arg-type]
    metrics: dict[str, object] = {
        "acked_lost_max": max(int(m["acked_lost"]) for _, m in runs),  # type: ignore[call-overload]
        "resurrected_max": max(int(m["resurrected"]) for _, m in runs),  # type: ignore[call-overload]
        "misplaced_max": max(int(m["misplaced"]) for _, m in runs),  # type: ignore[call-overload]
        "converge_after_heal_s_max": math.nan if any(math.isnan(c) for c in conv) else max(conv),
    }
    for seed, m in runs:
        for k in ("acked_lost", "resurrected", "misplaced", "converge_after_heal_s", "puts_acked",
                  "deletes_acked", "writes_failed", "hints_delivered", "read_repairs_sent",
                  "tombstones_purged", "handoffs_dropped", "state_sha256", "wall_s"):
            metrics[f"seed{seed}.{k}"] = m[k]
    emit("kv-sim", params, metrics, args.json)
