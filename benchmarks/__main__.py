"""Dispatch `python -m benchmarks SCENARIO ...` to the scenario's module.

Each scenario module exposes `add_arguments(parser)` and `run(args) -> None` (which calls
`benchmarks._report.emit`). Modules are imported lazily so one scenario's optional tools
(serf, etcd, noiseprotocol) never stop another from running.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SCENARIOS = {
    "swim-sim": ("benchmarks.swim_sim", "SWIM membership in the seeded simulator"),
    "swim-procs": ("benchmarks.swim_procs", "real agent processes on loopback (optionally vs Serf)"),
    "link": ("benchmarks.link", "handshakes, stream and datagram sealing throughput"),
    "antientropy": ("benchmarks.antientropy", "Merkle/range reconciliation of two replicas"),
    "kv": ("benchmarks.kv", "replicated key-value layer on real agents (optionally vs etcd)"),
    "kv-sim": ("benchmarks.kv_sim", "replicated key-value layer in the simulator"),
    "kv-ae-round": ("benchmarks.kv_ae", "CPU of one node's anti-entropy round in a big ring"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m benchmarks SCENARIO [options] --json PATH\n\nscenarios:")
        for name, (_, doc) in SCENARIOS.items():
            print(f"  {name:<12} {doc}")
        return 0 if argv else 2
    name = argv[0]
    if name not in SCENARIOS:
        print(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    module_name, doc = SCENARIOS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"scenario {name!r} is not implemented yet", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks {name}", description=doc)
    parser.add_argument("--json", metavar="PATH", help="write the result document here")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    module.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
