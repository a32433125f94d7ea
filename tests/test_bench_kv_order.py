"""`kv`: every system is warmed up (every key written once) before anything is measured,
and `--vs-code` compares the two clusters first.

A cluster that had already run the other phases (its WAL grown and wrapped, its caches
full) ran about 1.15x a fresh copy of the same code, so the comparison must not follow them;
and without the warm-up etcd's first phase (gets at `one`) read an empty store.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import pytest
import trio

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

    async def fill(target: bench.Target, put: Any, keys: int) -> None:
        assert keys == args.keys
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


class FakeHttp(FakeClient):
    def __init__(self, port: int) -> None:
        self.port = port
        self.puts: list[bytes] = []

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path == "/v3/kv/put"
        self.puts.append(base64.b64decode(body["key"]))
        return {}


async def test_etcd_and_our_agents_hold_every_key_before_the_first_measured_phase(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    etcd_clients: list[FakeHttp] = []

    def http(port: int) -> FakeHttp:
        etcd_clients.append(FakeHttp(port))
        return etcd_clients[-1]

    async def fill(target: bench.Target, put: Any, keys: int) -> None:
        side = "etcd" if target.pids[0] >= 5000 else "ours"
        if side == "etcd":  # the real fill, on fake etcd clients: every key, once
            await real_fill(target, put, keys)
        calls.append(("fill", side))

    async def slice_(target: bench.Target, seconds: float, op: Any, seed: int, tally: bench.Tally) -> bench.Tally:
        calls.append(("slice", "etcd" if target.pids[0] >= 5000 else "ours"))
        part = bench.Tally(ops=10, elapsed_s=1.0, server_cpu_s=0.01)
        tally.add(part)
        return part

    async def ready(port: int) -> None:
        pass

    async def lag(*a: Any) -> None:
        pass

    real_fill = bench._fill
    monkeypatch.setattr(bench, "ControlClient", FakeClient)
    monkeypatch.setattr(bench, "HttpClient", http)
    monkeypatch.setattr(bench, "_etcd_ready", ready)
    monkeypatch.setattr(bench, "_fill", fill)
    monkeypatch.setattr(bench, "_slice", slice_)
    monkeypatch.setattr(bench, "_lag", lag)
    args = _args(keys=50, rounds=1)
    ours = [FakeAgent(f"n{i}", 10 + i) for i in range(3)]
    etcd = [FakeAgent(f"e{i}", 5000 + i) for i in range(3)]
    await bench._bench(args, ours, etcd, [1, 2, 3], [], {})  # type: ignore[arg-type]
    first_slice = next(i for i, c in enumerate(calls) if c[0] == "slice")
    assert sorted(calls[:first_slice]) == [("fill", "etcd"), ("fill", "ours")]
    assert sorted(k for c in etcd_clients for k in c.puts) == sorted(b"k%d" % k for k in range(50))


async def _control_server(path: Path) -> trio.SocketListener:
    """A stand-in for an agent's control socket."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(8)
    return trio.SocketListener(sock)


async def test_the_control_client_reopens_a_connection_the_agent_hung_up_once(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    listener = await _control_server(path)
    # One entry per connection: its answer, or None to hang up after reading the request
    # (what an agent does to a client idle for 5 s).
    answers: list[bytes | None] = [None, b'{"ok": true, "n": 2}\n']

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            answer = answers.pop(0)
            if answer is not None:
                await stream.send_all(answer)
                await stream.receive_some(65536)  # then wait: the client closes

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, [listener])
        client = bench.ControlClient(path)
        await client.connect()
        # The first connection is hung up on before any answer: the request goes again.
        assert await client.request({"op": "stats"}) == {"ok": True, "n": 2}
        await client.aclose()
        # Hung up on again, and the new connection too: a clear error, not a loop.
        answers[:] = [None, None]
        client = bench.ControlClient(path)
        await client.connect()
        with pytest.raises(bench.ControlError, match="closed the connection"):
            await client.request({"op": "stats"})
        await client.aclose()
        nursery.cancel_scope.cancel()


def test_the_read_cache_hit_ratio_sums_every_agents_store() -> None:
    class Stats:
        def __init__(self, hits: int, misses: int) -> None:
            self.store = {"cache_hits": hits, "cache_misses": misses}

        def request(self, op: str) -> dict[str, Any]:
            assert op == "kv.stats"
            return {"ok": True, "kv": {"store": self.store}}

    assert bench._cache_hit_ratio([Stats(30, 0), Stats(5, 5)]) == 0.875  # type: ignore[list-item]
    assert bench._cache_hit_ratio([Stats(0, 0)]) != bench._cache_hit_ratio([Stats(0, 0)])  # NaN: no reads
