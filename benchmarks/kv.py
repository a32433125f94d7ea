"""`python -m benchmarks kv`: the replicated key-value layer on real agent processes.

Setup: `--nodes` secure agents (`meshcore agent --data-dir ...`, Noise links, SQLite WAL with
synchronous=FULL, one site each, one region) on loopback, a namespace with `--replicas`
copies. What a "client" is: one persistent connection from this benchmark process to an
agent's control socket (newline-delimited JSON, the same path `meshcore kv` takes), doing
one request at a time; the agent runs the request through `node.kv` (it coordinates the
request with the replicas over the kv links). `--clients` clients are spread round-robin
over the agents and run concurrently (trio tasks in this one process).

Warm-up: every key written once, on every system under test at once (our agents at quorum,
etcd, the `--vs-code` cluster), so that each phase runs against stores that hold every key
(a get finds its key, a put updates one) and no system has a longer history than another.
Phases (each `--seconds` long, same clients): put then get at each consistency level
(one, quorum, all), random keys out of `--keys`, `--value-bytes` values. Then:
- replication_lag_p99_ms: a watcher on every agent; writes acked at `one`; lag = time from
  the ack to the arrival (in this process) of the last replica's watch event for that key;
- converge_after_heal_s: one agent is frozen (SIGSTOP: it neither sends nor answers, like a
  partition of one node), declared dead by the others, `--fault-writes` keys are written at
  quorum, the agent is resumed (SIGCONT, the heal), and we measure the time until its own
  store holds every one of those keys it is a home replica of (hinted handoff + anti-entropy);
- rss_mb_per_node: mean resident memory of the agents at the end;
- read_cache_hit_ratio: the share of the agents' point reads (all get phases) that their
  stores' record caches answered (after the warm-up every key was written since start).

`--vs etcd`: a 3-member etcd cluster (/usr/bin/etcd, fsync on) on loopback, up at the same
time as the agents and driven by the same number of clients, each a persistent HTTP/1.1
keep-alive connection to one member's JSON gateway (/v3/kv/put, /v3/kv/range with base64
keys), round-robin over the members. The members talk to each other over TLS
(`--peer-auto-tls`, certificates they make at start), as our agents talk only over
encrypted links; `--etcd-peers plain` runs them in the clear. etcd puts are always raft-quorum writes (compared with
our `quorum`); a linearizable range is its quorum read, a serializable range its `one` read.
The three compared phases are interleaved: `--rounds` slices of `--seconds / --rounds`
each, alternating which system goes first (ABBA), so that a change in the speed of this
shared machine falls on both; each figure sums its slices, and `*_vs_etcd_min/max` give
the spread of the per-round ratios.

`--vs-code DIR`: a second cluster of `--nodes` agents runs the meshcore package in DIR (a
checkout of another commit); `--vs-python PATH` runs that cluster with another interpreter
(a venv's python holding the dependencies; with no `--vs-code`, on this checkout's code),
to compare CPython builds. Its quorum puts are interleaved with ours the same way
(`put_quorum_vs_code`, per-round min/max, and `put_quorum_cpu_vs_code`, the ratio of CPU
per put); `--vs-code-phases put_quorum,get_one` compares those phases instead (metrics named
after each): how a change moves the figure, measured on the same machine at the same time.
This comparison runs first, right after the warm-up, so that neither cluster has a longer
history (a grown WAL, full caches) than the other.

CPU: every phase also reports `*_server_cpu_ms_per_op` (user + system CPU of the agents and their child processes, or
of the etcd members, per completed operation, from /proc) and `*_client_cpu_ms_per_op`
(this process), so a throughput figure can be read against what it cost.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import trio

from benchmarks._report import emit, percentile
from meshcore.cli._control import ControlError, request_sync
from meshcore.cli._launch import AgentProcess
from meshcore.node.testing import SecureCluster

LEVELS = ("one", "quorum", "all")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5.0, help="length of each throughput phase")
    p.add_argument("--rounds", type=int, default=5,
                   help="with --vs: slices per compared phase, alternating the two systems")
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--lag-writes", type=int, default=300)
    p.add_argument("--fault-writes", type=int, default=300)
    p.add_argument("--vs", choices=["etcd"], help="also measure a 3-member etcd cluster")
    p.add_argument("--etcd-peers", choices=("tls", "plain"), default="tls",
                   help="etcd member-to-member links: TLS (like our encrypted links; the default) or plain")
    p.add_argument("--vs-code", type=Path, metavar="DIR",
                   help="also run --nodes agents from the meshcore package in DIR (another checkout, "
                        "e.g. `git worktree add DIR COMMIT`) and interleave its quorum puts with ours")
    p.add_argument("--vs-python", metavar="PATH",
                   help="run the --vs-code cluster (or, without --vs-code, a second cluster of this code) "
                        "with this interpreter instead of the one running the benchmark")
    p.add_argument("--vs-code-phases", default="put_quorum", metavar="PHASES",
                   help="with --vs-code: the phases to compare, comma-separated (put_one, get_one, ...); "
                        "before a get phase both clusters get every key written once")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", default="lan", help="SWIM timing profile of the agents (default lan)")
    p.add_argument("--sync", choices=("full", "normal"), default="full",
                   help="the agents' store fsync (--kv-sync); full is the agent's default")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tree(pid: int) -> list[int]:
    """`pid` and its live descendants (an agent's store runs a sync helper process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            if p == pid:
                return float("nan")
    return total / 1024


# --- clients ------------------------------------------------------------------------------


class ControlClient:
    """One persistent control-socket connection: one JSON request at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream: trio.SocketStream | None = None
        self._buf = bytearray()

    async def connect(self) -> None:
        self.stream = await trio.open_unix_socket(str(self.path))

    async def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send `req`, return the answer. An agent hangs up on a connection idle for
        `CLIENT_TIMEOUT_S` (a client whose share of a warm-up ended before the others'):
        a connection found closed before any byte of the answer is opened again, once."""
        assert self.stream is not None
        data = json.dumps(req).encode() + b"\n"
        try:
            await self.stream.send_all(data)
            await self._receive_line()
        except (trio.BrokenResourceError, ControlError):
            if self._buf:
                raise ControlError("agent closed the connection in the middle of an answer") from None
            await self.stream.aclose()
            try:
                await self.connect()
            except OSError as exc:
                raise ControlError(f"agent closed the connection and refuses a new one: {exc}") from None
            await self.stream.send_all(data)
            await self._receive_line()
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def _receive_line(self) -> None:
        assert self.stream is not None
        while b"\n" not in self._buf:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ControlError("agent closed the connection")
            self._buf += chunk

    async def lines(self) -> Any:
        """Yield every further line (for kv.watch)."""
        assert self.stream is not None
        while True:
            while b"\n" not in self._buf:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return
                self._buf += chunk
            line, _, rest = bytes(self._buf).partition(b"\n")
            self._buf = bytearray(rest)
            yield json.loads(line)

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


class HttpClient:
    """One persistent HTTP/1.1 keep-alive connection to an etcd member's JSON gateway.

    As lean as `ControlClient` (one prebuilt request head, the answer read by its
    Content-Length), so that the client side costs both systems about the same CPU."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self._buf = bytearray()

    async def connect(self) -> None:
        self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)

    async def _fill(self, until: Callable[[], bool]) -> None:
        assert self.stream is not None
        while not until():
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise RuntimeError("etcd closed the connection")
            self._buf += chunk

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.stream is not None
        data = json.dumps(body).encode()
        await self.stream.send_all(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.port, len(data), data))
        await self._fill(lambda: b"\r\n\r\n" in self._buf)
        head, _, rest = bytes(self._buf).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        if b"content-length" not in fields:
            raise RuntimeError(f"etcd answered without a Content-Length: {head[:200]!r}")
        size = int(fields[b"content-length"])
        self._buf = bytearray(rest)
        await self._fill(lambda: len(self._buf) >= size)
        payload, self._buf = bytes(self._buf[:size]), self._buf[size:]
        if status != 200:
            raise RuntimeError(f"etcd answered {status}: {payload[:200]!r}")
        answer: dict[str, Any] = json.loads(payload or b"{}")
        return answer

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes `pids` (all their threads)
    and their descendants (live ones, and those they have reaped)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for root in pids:
        for pid in _tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
            if pid == root:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped children
    return total / tick


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Tally:
    """What the slices of one phase added up to."""

    ops: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def rate(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def record(self, metrics: dict[str, Any], prefix: str) -> None:
        metrics[f"{prefix}_per_s"] = round(self.rate, 1)
        metrics[f"{prefix}_p50_ms"] = round(percentile(self.latencies_ms, 50), 3)
        metrics[f"{prefix}_p99_ms"] = round(percentile(self.latencies_ms, 99), 3)
        metrics[f"{prefix}_errors"] = self.errors
        per_op = 1000 / self.ops if self.ops else math.nan
        metrics[f"{prefix}_server_cpu_ms_per_op"] = round(self.server_cpu_s * per_op, 3)
        metrics[f"{prefix}_client_cpu_ms_per_op"] = round(self.client_cpu_s * per_op, 3)


Op = Callable[[Any, random.Random], Awaitable[None]]


@dataclass
class Target:
    """One system under test: its clients, the pids of its servers, and its operations."""

    clients: list[Any]
    pids: list[int]


async def _slice(target: Target, seconds: float, op: Op, seed: int, tally: Tally) -> Tally:
    """Run `op` in a loop on every client of `target` for `seconds`, adding to `tally`
    (and returning what this slice alone did)."""
    part = Tally()
    deadline = trio.current_time() + seconds

    async def loop(client: Any, rng: random.Random) -> None:
        while trio.current_time() < deadline:
            t0 = time.perf_counter()
            try:
                await op(client, rng)
            except (ControlError, RuntimeError):
                part.errors += 1
                continue
            part.latencies_ms.append((time.perf_counter() - t0) * 1000)

    cpu0, own0, t0 = _cpu_s(target.pids), _own_cpu_s(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i, c in enumerate(target.clients):
            nursery.start_soon(loop, c, random.Random(seed * 1000 + i))
    part.elapsed_s = time.perf_counter() - t0
    part.server_cpu_s = _cpu_s(target.pids) - cpu0
    part.client_cpu_s = _own_cpu_s() - own0
    part.ops = len(part.latencies_ms)
    tally.add(part)
    return part


async def _paired(ours: tuple[Target, Op], theirs: tuple[Target, Op], seconds: float, rounds: int,
                  seed: int) -> tuple[Tally, Tally, list[float]]:
    """`rounds` slices of each system, alternating which goes first; the per-round ratios."""
    a, b = Tally(), Tally()
    ratios: list[float] = []
    for r in range(rounds):
        legs = [(ours, a), (theirs, b)]
        if r % 2:
            legs.reverse()
        parts = [await _slice(target, seconds / rounds, op, seed + r, tally) for (target, op), tally in legs]
        if r % 2:
            parts.reverse()
        mine, other = parts
        if other.rate > 0:
            ratios.append(mine.rate / other.rate)
    return a, b, ratios


def _record_ratio(metrics: dict[str, Any], key: str, mine: Tally, other: Tally, ratios: list[float]) -> None:
    """`key`: our rate over the other's, summed over the rounds; `key_min/max`: per round."""
    metrics[key] = round(mine.rate / other.rate, 3) if other.rate else math.nan
    metrics[f"{key}_min"] = round(min(ratios), 3) if ratios else math.nan
    metrics[f"{key}_max"] = round(max(ratios), 3) if ratios else math.nan


# --- meshcore -----------------------------------------------------------------------------


def _start_agents(args: argparse.Namespace, work: Path, agents: list[AgentProcess],
                  code: Path | None = None, python: str | None = None) -> None:
    """Start the agents into `agents` (the caller kills them, even if this fails midway);
    `code`: from the meshcore package in that directory; `python`: with that interpreter."""
    names = [f"n{i}" for i in range(args.nodes)]
    work.mkdir(parents=True, exist_ok=True)
    creds = work / "creds"
    SecureCluster(names, directory=creds)
    for i, name in enumerate(names):
        join = [f"{agents[0].addr[0]}:{agents[0].addr[1]}"] if agents else []  # type: ignore[index]
        a = AgentProcess(name, work, join=join, credentials=creds, profile=args.profile,
                         extra=["--data-dir", str(work / f"data-{name}"), "--site", f"s{i}", "--region", "r1",
                                # Any free kv port: the default (SWIM port + 1) can be taken by
                                # another process's ephemeral port and fail the start.
                                "--kv-port", "0", "--kv-sync", args.sync], code=code, python=python)
        agents.append(a)  # before start(): a failed start is still reaped by the caller
        a.start(timeout_s=30.0)
    _wait_sync(lambda: all(int(a.request("kv.stats")["kv"]["peers"]) == args.nodes - 1 for a in agents),
               60.0, "agents to see each other")
    agents[0].request("namespace.create", fields={"name": "bench", "replicas": args.replicas})
    _wait_sync(lambda: all(any(ns["name"] == "bench" for ns in a.request("namespace.list")["namespaces"])
                           for a in agents), 30.0, "the namespace to spread")


def _cache_hit_ratio(agents: list[AgentProcess]) -> float:
    """Of the agents' point reads so far (every get phase), the share their stores'
    record caches answered (the rest read the disk in the reader thread)."""
    hits = misses = 0
    for a in agents:
        store = a.request("kv.stats")["kv"]["store"]
        hits, misses = hits + int(store["cache_hits"]), misses + int(store["cache_misses"])
    return round(hits / (hits + misses), 3) if hits + misses else math.nan


def _wait_sync(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except ControlError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _mesh_ops(args: argparse.Namespace) -> dict[str, Op]:
    """The measured operations on our agents, by phase name (`put_one`, `get_quorum`, ...)."""
    ops: dict[str, Op] = {}
    for level in LEVELS:
        put_key = _mesh_put_key(args, level)

        async def put(c: ControlClient, rng: random.Random, put_key: PutKey = put_key) -> None:
            await put_key(c, rng.randrange(args.keys))

        async def get(c: ControlClient, rng: random.Random, level: str = level) -> None:
            key = _b64(b"k%d" % rng.randrange(args.keys))
            a = await c.request({"op": "kv.get", "namespace": "bench", "key_b64": key, "consistency": level})
            if not a.get("ok"):
                raise ControlError(a.get("error", "?"))

        ops[f"put_{level}"], ops[f"get_{level}"] = put, get
    return ops


def _vs_code_phases(args: argparse.Namespace) -> list[str]:
    names = [n.strip() for n in args.vs_code_phases.split(",") if n.strip()]
    known = [f"{kind}_{level}" for kind in ("put", "get") for level in LEVELS]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise SystemExit(f"--vs-code-phases: unknown phase {', '.join(bad) or '(none)'}; choose from {', '.join(known)}")
    return names


PutKey = Callable[[Any, int], Awaitable[None]]


def _mesh_put_key(args: argparse.Namespace, level: str = "quorum") -> PutKey:
    """Write key number `k` at `level` on one of our agents."""
    value = _b64(b"x" * args.value_bytes)

    async def put(c: ControlClient, k: int) -> None:
        a = await c.request({"op": "kv.put", "namespace": "bench", "key_b64": _b64(b"k%d" % k),
                             "value_b64": value, "consistency": level})
        if not a.get("ok"):
            raise ControlError(a.get("error", "?"))

    return put


def _etcd_put_key(args: argparse.Namespace) -> PutKey:
    """Write key number `k` to etcd (a raft-quorum write)."""
    value = _b64(b"x" * args.value_bytes)

    async def put(c: HttpClient, k: int) -> None:
        await c.post("/v3/kv/put", {"key": _b64(b"k%d" % k), "value": value})

    return put


async def _fill(target: Target, put: PutKey, keys: int) -> None:
    """Write every key once (the clients share the keys out)."""

    async def fill(i: int, c: Any) -> None:
        for k in range(i, keys, len(target.clients)):
            await put(c, k)

    async with trio.open_nursery() as nursery:
        for i, c in enumerate(target.clients):
            nursery.start_soon(fill, i, c)


def _etcd_ops(args: argparse.Namespace) -> dict[str, Op]:
    """etcd's counterparts of our phases: puts are raft-quorum writes, a linearizable range
    is a quorum read and a serializable one a local (`one`) read."""
    put_key = _etcd_put_key(args)

    async def put(c: HttpClient, rng: random.Random) -> None:
        await put_key(c, rng.randrange(args.keys))

    def get(serializable: bool) -> Op:
        async def op(c: HttpClient, rng: random.Random) -> None:
            await c.post("/v3/kv/range", {"key": _b64(b"k%d" % rng.randrange(args.keys)),
                                          "serializable": serializable})
        return op

    return {"put_quorum": put, "get_quorum": get(False), "get_one": get(True)}


async def _bench(args: argparse.Namespace, agents: list[AgentProcess], etcd: list[subprocess.Popen[bytes]],
                 etcd_ports: list[int], base_agents: list[AgentProcess], metrics: dict[str, Any]) -> None:
    ours = Target([ControlClient(agents[i % len(agents)].control) for i in range(args.clients)],
                  [a.pid for a in agents])
    theirs: Target | None = None
    base: Target | None = None
    if base_agents:
        base = Target([ControlClient(base_agents[i % len(base_agents)].control) for i in range(args.clients)],
                      [a.pid for a in base_agents])
    try:
        for c in ours.clients:
            await c.connect()
        if etcd:
            await _etcd_ready(etcd_ports[0])
            theirs = Target([HttpClient(etcd_ports[i % len(etcd_ports)]) for i in range(args.clients)],
                            [p.pid for p in etcd])
            for c in theirs.clients:
                await c.connect()
        mesh_ops, etcd_ops = _mesh_ops(args), _etcd_ops(args)
        if base is not None:
            for c in base.clients:
                await c.connect()
        # Warm-up, every system at once: every key written once, so that each measured phase
        # runs against a store that holds every key (a get finds its key, a put updates one)
        # and no system has a longer history than another. Without it etcd's gets at `one`
        # (the first phase it takes part in) all missed, while ours found about half.
        async with trio.open_nursery() as nursery:
            for target, put in ((ours, _mesh_put_key(args)), (base, _mesh_put_key(args)),
                                (theirs, _etcd_put_key(args))):
                if target is not None:
                    nursery.start_soon(_fill, target, put, args.keys)
        if base is not None:
            # First, while both clusters are fresh: a cluster that had already run the other
            # phases (its WAL grown and wrapped, its caches full) ran about 1.15x a fresh
            # copy of the same code, a bias that hid smaller effects.
            for name in _vs_code_phases(args):
                op = mesh_ops[name]
                mine, other, ratios = await _paired((ours, op), (base, op), args.seconds, args.rounds, args.seed)
                other.record(metrics, f"vs_code_{name}")
                _record_ratio(metrics, f"{name}_vs_code", mine, other, ratios)
                if mine.ops and other.ops:
                    metrics[f"{name}_cpu_vs_code"] = round(
                        (mine.server_cpu_s / mine.ops) / (other.server_cpu_s / other.ops), 3)
            for c in base.clients:  # done with it: the later phases measure our agents alone
                await c.aclose()
        for name, op in mesh_ops.items():
            seed = args.seed + name.startswith("get")
            if theirs is not None and name in etcd_ops:
                mine, other, ratios = await _paired((ours, op), (theirs, etcd_ops[name]), args.seconds,
                                                    args.rounds, seed)
                mine.record(metrics, name)
                other.record(metrics, f"etcd_{name}")
                _record_ratio(metrics, f"{name}_vs_etcd", mine, other, ratios)
            else:
                mine = Tally()
                await _slice(ours, args.seconds, op, seed, mine)
                mine.record(metrics, name)
        await _lag(args, agents, ours.clients, metrics)
    finally:
        for c in ours.clients + (theirs.clients if theirs else []) + (base.clients if base else []):
            await c.aclose()


async def _lag(args: argparse.Namespace, agents: list[AgentProcess], clients: list[ControlClient],
               metrics: dict[str, Any]) -> None:
    arrivals: dict[str, list[float]] = {}
    acked: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        for a in agents:
            w = ControlClient(a.control)
            await w.connect()
            first = await w.request({"op": "kv.watch", "namespace": "bench", "prefix_b64": _b64(b"lag/")})
            assert first.get("ok"), first

            async def watch(w: ControlClient = w) -> None:
                async for line in w.lines():
                    arrivals.setdefault(line["key_b64"], []).append(time.perf_counter())

            nursery.start_soon(watch)
        seq = iter(range(args.lag_writes))

        async def writer(c: ControlClient) -> None:
            for i in seq:
                key = _b64(b"lag/%d" % i)
                a = await c.request({"op": "kv.put", "namespace": "bench", "key_b64": key,
                                     "value_b64": _b64(b"v"), "consistency": "one"})
                if a.get("ok"):
                    acked[key] = time.perf_counter()
                await trio.sleep(0.005)  # a steady stream, not a saturation test

        async with trio.open_nursery() as writers:
            for c in clients[:4]:
                writers.start_soon(writer, c)
        with trio.move_on_after(10.0):
            while not all(len(arrivals.get(k, ())) >= args.replicas for k in acked):
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    lags = [max(0.0, sorted(arrivals[k])[args.replicas - 1] - t) * 1000
            for k, t in acked.items() if len(arrivals.get(k, ())) >= args.replicas]
    metrics["replication_lag_p50_ms"] = round(percentile(lags, 50), 3)
    metrics["replication_lag_p99_ms"] = round(percentile(lags, 99), 3)
    metrics["replication_lag_incomplete"] = len(acked) - len(lags)


def _heal(args: argparse.Namespace, agents: list[AgentProcess], metrics: dict[str, Any]) -> None:
    victim, coordinator = agents[-1], agents[0]
    victim_id = next(m["id"] for m in coordinator.request("members")["members"] if m["name"] == victim.name)
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        _wait_sync(lambda: next(m["status"] for m in coordinator.request("members")["members"]
                                if m["id"] == victim_id) != "alive", 60.0, "the frozen agent to be declared down")
        keys = [_b64(b"heal/%d" % i) for i in range(args.fault_writes)]
        ok = 0
        for k in keys:
            try:
                coordinator.request("kv.put", timeout_s=10.0, fields={
                    "namespace": "bench", "key_b64": k, "value_b64": _b64(b"healed"), "consistency": "quorum"})
                ok += 1
            except ControlError:
                pass
        metrics["fault_writes_acked"] = ok
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    t0 = time.perf_counter()
    pending = list(keys)
    deadline = time.monotonic() + 120.0
    while pending and time.monotonic() < deadline:
        left = []
        for k in pending:
            try:
                a = request_sync(victim.control, "kv.local", timeout_s=5.0,
                                 fields={"namespace": "bench", "key_b64": k})
            except ControlError:
                left.append(k)
                continue
            if a["home"] and not a["found"]:
                left.append(k)
        pending = left
        if pending:
            time.sleep(0.05)
    metrics["converge_after_heal_s"] = round(time.perf_counter() - t0, 3) if not pending else float("nan")
    metrics["heal_keys_missing"] = len(pending)


# --- etcd ---------------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_etcd(work: Path, procs: list[subprocess.Popen[bytes]], peers: str = "tls") -> list[int]:
    """Start 3 etcd members into `procs` (the caller kills them); returns client ports.
    `peers="tls"`: the members talk over TLS with certificates they generate at start
    (`--peer-auto-tls`), as our agents talk only over encrypted links."""
    binary = shutil.which("etcd")
    if binary is None:
        raise SystemExit("--vs etcd needs the etcd binary (Debian package etcd-server)")
    ports = _free_ports(6)
    client, peer = ports[:3], ports[3:]
    scheme = "https" if peers == "tls" else "http"
    cluster = ",".join(f"e{i}={scheme}://127.0.0.1:{peer[i]}" for i in range(3))
    for i in range(3):
        argv = [binary, "--name", f"e{i}", "--data-dir", str(work / f"etcd{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{client[i]}",
                "--advertise-client-urls", f"http://127.0.0.1:{client[i]}",
                "--listen-peer-urls", f"{scheme}://127.0.0.1:{peer[i]}",
                "--initial-advertise-peer-urls", f"{scheme}://127.0.0.1:{peer[i]}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "bench", "--logger", "zap", "--log-level", "error",
                *(["--peer-auto-tls"] if peers == "tls" else [])]
        log = open(work / f"etcd{i}.log", "wb")  # noqa: SIM115 - lives as long as the process
        procs.append(subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
    return client


async def _etcd_ready(port: int) -> None:
    with trio.fail_after(60):
        while True:
            try:
                c = HttpClient(port)
                await c.connect()
                await c.post("/v3/kv/put", {"key": _b64(b"warmup"), "value": _b64(b"1")})
                await c.aclose()
                return
            except (OSError, RuntimeError, ValueError):
                await trio.sleep(0.2)


# --- entry point --------------------------------------------------------------------------


def _check_python(path: str) -> None:
    """`--vs-python`: an interpreter that can run an agent (3.11+, the dependencies)."""
    probe = "import sys, trio, nacl, cbor2, blake3, sortedcontainers, cryptography; sys.exit(sys.version_info < (3, 11))"
    try:
        ok = subprocess.run([path, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        raise SystemExit(f"--vs-python {path}: not a Python >= 3.11 with meshcore's dependencies installed "
                         "(make a venv from it and `pip install -e .` there)")


def run(args: argparse.Namespace) -> None:
    if args.rounds < 1 or args.seconds <= 0:
        raise SystemExit("--rounds must be >= 1 and --seconds > 0")
    if args.vs_python is not None and args.vs_code is None:
        args.vs_code = Path(__file__).resolve().parent.parent  # this checkout, another interpreter
    if args.vs_code is not None:
        _vs_code_phases(args)  # a bad list fails before anything starts
    if args.vs_code is not None and not (args.vs_code / "meshcore" / "__init__.py").is_file():
        raise SystemExit(f"--vs-code {args.vs_code}: no meshcore package there (want DIR/meshcore/__init__.py)")
    if args.vs_python is not None:
        _check_python(args.vs_python)
    metrics: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="meshcore-kv-bench-") as tmp:
        work = Path(tmp)
        agents: list[AgentProcess] = []
        base_agents: list[AgentProcess] = []
        etcd: list[subprocess.Popen[bytes]] = []
        try:
            etcd_ports = _start_etcd(work, etcd, args.etcd_peers) if args.vs == "etcd" else []
            _start_agents(args, work, agents)
            if args.vs_code is not None:
                _start_agents(args, work / "vs-code", base_agents, code=args.vs_code.resolve(),
                              python=args.vs_python)
            trio.run(_bench, args, agents, etcd, etcd_ports, base_agents, metrics)
            metrics["read_cache_hit_ratio"] = _cache_hit_ratio(agents)
            for a in base_agents:  # the later phases measure our agents alone
                a.kill()
            if etcd:
                metrics["etcd_rss_mb_per_node"] = round(sum(_rss_mb(p.pid) for p in etcd) / len(etcd), 1)
                for p in etcd:  # the fault phase measures the agents alone
                    p.kill()
            _heal(args, agents, metrics)
            metrics["rss_mb_per_node"] = round(sum(_rss_mb(a.pid) for a in agents) / len(agents), 1)
        finally:
            for a in agents + base_agents:
                a.kill()
            for p in etcd:
                p.kill()
                p.wait(10)
    # The headline names the brief asks for (the quorum level is the default).
    summary = {
        "put_per_s": metrics.get("put_quorum_per_s"), "get_per_s": metrics.get("get_quorum_per_s"),
        "put_p50_ms": metrics.get("put_quorum_p50_ms"), "put_p99_ms": metrics.get("put_quorum_p99_ms"),
        "get_p99_ms": metrics.get("get_quorum_p99_ms"),
    }
    params = {"nodes": args.nodes, "replicas": args.replicas, "profile": args.profile, "sync": args.sync, "clients": args.clients, "seconds": args.seconds,
              "keys": args.keys, "value_bytes": args.value_bytes, "vs": args.vs or "none",
              "etcd_peers": args.etcd_peers if args.vs else "none", "rounds": args.rounds,
              "vs_code": str(args.vs_code) if args.vs_code else "none",
              "vs_code_phases": args.vs_code_phases if args.vs_code else "none",
              "vs_python": args.vs_python or "none"}
    emit("kv", params, {**summary, **metrics}, args.json)
