"""`python -m meshcore.sim --seed N [--nodes ...]`: replay a seeded scenario, print its digest.

The scenario: the cluster joins through its seeds, `--kill` nodes crash (spread over the
run), one node restarts, one stalls, and with `--partition-s` two halves are split for that
long; safety checkers run on every step. The same arguments always print the same digest.
"""

from __future__ import annotations

import argparse
import functools
import sys

from . import NetConfig, SafetyViolation, World


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meshcore.sim", description=__doc__)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--nodes", type=int, default=30)
    p.add_argument("--profile", default="lan")
    p.add_argument("--loss", type=float, default=0.05)
    p.add_argument("--duplicate", type=float, default=0.01)
    p.add_argument("--kill", type=int, default=2)
    p.add_argument("--partition-s", type=float, default=0.0)
    p.add_argument("--duration-s", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.nodes < 4:
        p.error("--nodes must be at least 4")
    w = World(args.seed, args.nodes, profile=args.profile,
              net=NetConfig(loss=args.loss, duplicate=args.duplicate))
    d = args.duration_s
    for j in range(args.kill):
        victim = args.nodes - 1 - j
        w.at(d * 0.2 + j * d * 0.5 / max(1, args.kill), functools.partial(w.crash, victim))
    w.at(d * 0.6, lambda: w.restart(args.nodes - 1) if not w.nodes[args.nodes - 1].running else None)
    w.at(d * 0.3, lambda: w.stall(1, 3.0))
    if args.partition_s > 0:
        half = args.nodes // 2
        w.at(d * 0.25, lambda: w.partition([range(half), range(half, args.nodes)]))
        w.at(d * 0.25 + args.partition_s, w.heal)
    try:
        w.run_until(d)
    except SafetyViolation as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"seed={args.seed} nodes={args.nodes} t={w.now:.1f}s events={w.events_processed} "
          f"converged={w.converged()}")
    print(w.trace_sha256())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
