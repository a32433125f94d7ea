"""`kv --vs-code`: the two clusters are compared first, after the same warm-up on both.

A cluster that had already run the other phases (its WAL grown and wrapped, its caches
full) ran about 1.15x a fresh copy of the same code, so the comparison must not follow them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

import benchmarks.kv as bench


class FakeAgent:
    def __init__(self, name: str, pid: int) -> None:
        self.control = Path(f"/nonexistent/{name}.sock")
        self.pid = pid


class FakeClient:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def connect(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _args(**over: Any) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args([])
    args.json = None
    for k, v in over.items():
        setattr(args, k, v)
    return args


async def test_the_code_comparison_runs_first_after_an_equal_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    def side(target: bench.Target) -> str:
        return "ours" if target.pids[0] < 100 else "base"

    async def fill(target: bench.Target, args: argparse.Namespace) -> None:
        calls.append(("fill", side(target)))

    async def slice_(target: bench.Target, seconds: float, op: Any, seed: int, tally: bench.Tally) -> bench.Tally:
        calls.append(("slice", side(target)))
        part = bench.Tally(ops=10, elapsed_s=1.0, server_cpu_s=0.01)
        tally.add(part)
        return part

    async def lag(*a: Any) -> None:
        calls.append(("lag",))

    monkeypatch.setattr(bench, "ControlClient", FakeClient)
    monkeypatch.setattr(bench, "_fill", fill)
    monkeypatch.setattr(bench, "_slice", slice_)
    monkeypatch.setattr(bench, "_lag", lag)
    args = _args(vs_code=Path("."), vs_code_phases="put_quorum,get_one", rounds=2)
    ours = [FakeAgent(f"n{i}", 10 + i) for i in range(3)]
    base = [FakeAgent(f"b{i}", 1000 + i) for i in range(3)]
    metrics: dict[str, Any] = {}
    await bench._bench(args, ours, [], [], base, metrics)  # type: ignore[arg-type]

    first_base = calls.index(("slice", "base"))
    # Before the first measured slice of the other cluster: both warmed up, nothing else run.
    assert sorted(calls[:first_base]) == [("fill", "base"), ("fill", "ours"), ("slice", "ours")]
    assert calls[:2] in ([("fill", "ours"), ("fill", "base")], [("fill", "base"), ("fill", "ours")])
    # Two phases of two rounds each, alternating which cluster goes first, then ours alone.
    compared = calls[2:2 + 8]
    assert compared.count(("slice", "ours")) == compared.count(("slice", "base")) == 4
    assert ("slice", "base") not in calls[2 + 8:]
    assert metrics["put_quorum_vs_code"] == metrics["get_one_vs_code"] == 1.0
    assert calls[-1] == ("lag",) and len(calls[2 + 8:-1]) == len(bench._mesh_ops(args))
