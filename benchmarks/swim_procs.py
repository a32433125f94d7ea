"""`python -m benchmarks swim-procs`: real agent processes on loopback, optionally vs Serf.

One run starts N `meshcore agent` processes (and, with `--vs serf`, afterwards N `serf agent`
processes at the matching Serf timing profile: lan, wan or local; our `memberlist` and `swim`
profiles are compared against Serf's lan), never both clusters at once. For each cluster:

- join_converge_s: from the moment every process serves (ours: printed its address; Serf:
  answers RPC) until every member list shows N alive members. All non-seed processes are
  started at once, joining the first one. `start_all_s` (spawn to all serving) is reported
  beside it, because Python starts slower than Go.
- a steady window (`--window-s`, after `--settle-s`) with no polling at all, measuring
  cpu_pct_per_node (utime+stime from /proc/PID/stat over the window, mean per node),
  rss_mb_per_node (VmRSS from /proc/PID/status at the end, mean) and bytes_per_node_s:
  bytes each process itself counted as sent on UDP and TCP, summed, per node per second.
  Ours: the agent's transport counters (control `stats`: udp_bytes_sent + tcp_bytes_sent,
  i.e. sealed datagram bytes and stream bytes including framing). Serf: memberlist's own
  `memberlist.udp.sent` + `memberlist.tcp.sent` counters, received from each agent over
  statsd (one UDP listener per agent; the statsd traffic itself is not counted). Both count
  payload bytes handed to the kernel, not IP/UDP headers.
- K kills (kill -9 of a non-seed node, one at a time): detect_first_s / detect_all_s = time
  from the kill until the first / every survivor's member list shows the node dead (ours:
  status dead; Serf: failed), polling every survivor every ~100 ms over persistent
  connections (control socket / Serf msgpack RPC). Medians over the K kills.
- K graceful leaves (SIGTERM to ours, SIGINT to Serf: each one's graceful-leave signal):
  leave_all_s = time until every other member shows it left. Median over the K leaves.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import emit
from meshcore.cli._launch import AgentProcess, LaunchError

POLL_INTERVAL_S = 0.1
STEP_TIMEOUT_S = 90.0
SERF = "/usr/bin/serf"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=20, help="processes per cluster (default 20)")
    parser.add_argument("--kill", type=int, default=3, help="kills and leaves to measure (default 3)")
    parser.add_argument("--vs", choices=["serf"], help="also run HashiCorp Serf and compare")
    parser.add_argument("--profile", default="lan", help="our timing profile (default lan)")
    parser.add_argument("--settle-s", type=float, default=5.0, help="wait after convergence")
    parser.add_argument("--window-s", type=float, default=10.0, help="steady measuring window")
    parser.add_argument("--seed", type=int, default=1, help="choice of victims")


# --- process metrics --------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    """A port free for both UDP and TCP right now (small race accepted: loopback, one run)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


# --- a tiny msgpack, enough for Serf's RPC ---------------------------------------------


def mp_pack(obj: Any) -> bytes:
    if isinstance(obj, dict):
        out = bytearray([0x80 | len(obj)] if len(obj) < 16 else b"\xde" + struct.pack(">H", len(obj)))
        for k, v in obj.items():
            out += mp_pack(k) + mp_pack(v)
        return bytes(out)
    if isinstance(obj, str):
        raw = obj.encode()
        if len(raw) < 32:
            return bytes([0xA0 | len(raw)]) + raw
        return b"\xda" + struct.pack(">H", len(raw)) + raw
    if isinstance(obj, int) and 0 <= obj < 2**32:
        return bytes([obj]) if obj < 128 else b"\xce" + struct.pack(">I", obj)
    raise TypeError(f"cannot pack {type(obj).__name__}")


class _Incomplete(Exception):
    pass


def mp_unpack(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """Decode one msgpack value at `pos`; raise _Incomplete when `buf` ends too early."""

    def need(n: int) -> None:
        if pos + n > len(buf):
            raise _Incomplete

    need(1)
    b = buf[pos]
    pos += 1
    fixed = {0xC0: None, 0xC2: False, 0xC3: True}
    if b in fixed:
        return fixed[b], pos
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        if 0xA0 <= b <= 0xBF:
            n = b & 0x1F
        else:
            size = {0xD9: 1, 0xC4: 1, 0xDA: 2, 0xC5: 2, 0xDB: 4, 0xC6: 4}[b]
            need(size)
            n = int.from_bytes(buf[pos : pos + size], "big")
            pos += size
        need(n)
        raw = buf[pos : pos + n]
        return (raw if b in (0xC4, 0xC5, 0xC6) else raw.decode(errors="replace")), pos + n
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        if b <= 0x8F:
            n = b & 0x0F
        else:
            size = 2 if b == 0xDE else 4
            need(size)
            n = int.from_bytes(buf[pos : pos + size], "big")
            pos += size
        d = {}
        for _ in range(n):
            k, pos = mp_unpack(buf, pos)
            v, pos = mp_unpack(buf, pos)
            d[k] = v
        return d, pos
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        if b <= 0x9F:
            n = b & 0x0F
        else:
            size = 2 if b == 0xDC else 4
            need(size)
            n = int.from_bytes(buf[pos : pos + size], "big")
            pos += size
        items = []
        for _ in range(n):
            v, pos = mp_unpack(buf, pos)
            items.append(v)
        return items, pos
    ints = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if b in ints:
        size = struct.calcsize(ints[b])
        need(size)
        return struct.unpack(ints[b], buf[pos : pos + size])[0], pos + size
    raise ValueError(f"unsupported msgpack type 0x{b:02x}")


class SerfRpc:
    """A persistent connection to one Serf agent's RPC port."""

    def __init__(self, addr: tuple[str, int], timeout_s: float = 2.0) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout_s)
        self.buf = b""
        self.seq = 0
        self._call("handshake", {"Version": 1}, body=False)

    def _read_one(self) -> Any:
        while True:
            try:
                value, pos = mp_unpack(self.buf)
            except _Incomplete:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("serf closed the RPC connection") from None
                self.buf += chunk
                continue
            self.buf = self.buf[pos:]
            return value

    def _call(self, command: str, args: dict[str, Any] | None = None, *, body: bool = True) -> Any:
        self.seq += 1
        self.sock.sendall(mp_pack({"Command": command, "Seq": self.seq}) + (mp_pack(args) if args else b""))
        header = self._read_one()
        if header.get("Error"):
            raise ConnectionError(f"serf RPC {command}: {header['Error']}")
        return self._read_one() if body else None

    def members(self) -> list[dict[str, Any]]:
        return list(self._call("members")["Members"])

    def close(self) -> None:
        self.sock.close()


# --- the two clusters behind one interface ---------------------------------------------


class OursCluster:
    kind = "meshcore"
    dead_status = "dead"

    def __init__(self, workdir: Path, profile: str) -> None:
        self.workdir = workdir
        self.profile = profile
        self.agents: list[AgentProcess] = []
        self._conns: dict[int, socket.socket] = {}

    def start(self, n: int) -> float:
        # Sealed like a real deployment: a throwaway authority certifies every agent.
        # (Insecure only while the SWIM core cannot carry certificates yet.)
        from meshcore.node.testing import core_admits_certificates
        from meshcore.security import make_throwaway_cluster

        names = [f"n{i}" for i in range(n)]
        creds: Path | None = self.workdir / "credentials"
        if core_admits_certificates():
            make_throwaway_cluster(names, now=time.time(), cluster="bench", directory=creds, days=1)
        else:
            print("WARNING: the SWIM core cannot carry certificates yet: agents run --insecure")
            creds = None
        sec = {"credentials": creds, "insecure": creds is None}
        seed = AgentProcess("n0", self.workdir, profile=self.profile, **sec)
        host, port = seed.start()
        self.agents = [seed] + [
            AgentProcess(f"n{i}", self.workdir, profile=self.profile, join=[f"{host}:{port}"], **sec)
            for i in range(1, n)
        ]
        t0 = time.monotonic()
        for a in self.agents[1:]:
            a.spawn()
        for a in self.agents[1:]:
            a.wait_ready(timeout_s=STEP_TIMEOUT_S)
        return time.monotonic() - t0

    def pids(self, alive: list[int]) -> list[int]:
        return [self.agents[i].pid for i in alive]

    def statuses(self, i: int) -> dict[str, str] | None:
        """name -> status as agent i sees it (persistent control connection)."""
        answer = self._ask(i, "members")
        if answer is None:
            return None
        return {m["name"]: m["status"] for m in answer["members"]}

    def _ask(self, i: int, op: str) -> dict[str, Any] | None:
        for _ in range(2):
            s = self._conns.get(i)
            try:
                if s is None:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(2.0)
                    s.connect(str(self.agents[i].control))
                    self._conns[i] = s
                s.sendall(json.dumps({"op": op}).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        raise ConnectionError
                    buf += chunk
                return dict(json.loads(buf))
            except (OSError, ValueError):
                if s is not None:
                    s.close()
                self._conns.pop(i, None)
        return None

    def bytes_sent(self, i: int) -> int:
        answer = self._ask(i, "stats")
        if answer is None:
            return 0
        stats = answer["stats"]
        return int(stats["udp_bytes_sent"]) + int(stats["tcp_bytes_sent"])

    def kill(self, i: int) -> None:
        self._drop(i)
        self.agents[i].kill()

    def leave(self, i: int) -> None:
        self._drop(i)
        proc = self.agents[i].proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)

    def _drop(self, i: int) -> None:
        s = self._conns.pop(i, None)
        if s is not None:
            s.close()

    def close(self) -> None:
        for i in list(self._conns):
            self._drop(i)
        for a in self.agents:
            a.kill()


class SerfCluster:
    kind = "serf"
    dead_status = "failed"

    def __init__(self, workdir: Path, profile: str) -> None:
        self.workdir = workdir
        self.profile = profile if profile in ("lan", "wan", "local") else "lan"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.rpc_addrs: list[tuple[str, int]] = []
        self.statsd: list[socket.socket] = []
        self.sent: list[float] = []
        self._rpc: dict[int, SerfRpc] = {}
        self._logs: list[Any] = []

    def _spawn(self, i: int, join: str | None) -> str:
        bind_port, rpc_port = free_port(), free_port()
        sd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sd.bind(("127.0.0.1", 0))
        sd.setblocking(False)
        cfg = self.workdir / f"serf{i}.json"
        cfg.write_text(json.dumps({"statsd_addr": f"127.0.0.1:{sd.getsockname()[1]}"}))
        argv = [SERF, "agent", "-node", f"n{i}", "-bind", f"127.0.0.1:{bind_port}",
                "-rpc-addr", f"127.0.0.1:{rpc_port}", "-profile", self.profile,
                "-config-file", str(cfg), "-log-level", "warn"]
        if join:
            argv += ["-join", join]
        log = open(self.workdir / f"serf{i}.log", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        self.rpc_addrs.append(("127.0.0.1", rpc_port))
        self.statsd.append(sd)
        self.sent.append(0.0)
        return f"127.0.0.1:{bind_port}"

    def _wait_rpc(self, i: int) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:
                raise LaunchError(f"serf agent n{i} exited; see {self.workdir}/serf{i}.log")
            try:
                self._rpc[i] = SerfRpc(self.rpc_addrs[i])
                return
            except OSError:
                time.sleep(0.05)
        raise LaunchError(f"serf agent n{i} did not answer RPC")

    def start(self, n: int) -> float:
        seed = self._spawn(0, None)
        self._wait_rpc(0)
        t0 = time.monotonic()
        for i in range(1, n):
            self._spawn(i, seed)
        for i in range(1, n):
            self._wait_rpc(i)
        return time.monotonic() - t0

    def pids(self, alive: list[int]) -> list[int]:
        return [self.procs[i].pid for i in alive]

    def statuses(self, i: int) -> dict[str, str] | None:
        for _ in range(2):
            try:
                if i not in self._rpc:
                    self._rpc[i] = SerfRpc(self.rpc_addrs[i])
                return {m["Name"]: m["Status"] for m in self._rpc[i].members()}
            except (OSError, ValueError, KeyError):
                rpc = self._rpc.pop(i, None)
                if rpc is not None:
                    rpc.close()
        return None

    def _drain_statsd(self) -> None:
        for i, sd in enumerate(self.statsd):
            while True:
                try:
                    data = sd.recv(65536)
                except BlockingIOError:
                    break
                for line in data.decode(errors="replace").splitlines():
                    name, _, rest = line.partition(":")
                    if name.endswith(("memberlist.udp.sent", "memberlist.tcp.sent")):
                        self.sent[i] += float(rest.split("|")[0])

    def bytes_sent(self, i: int) -> int:
        self._drain_statsd()
        return int(self.sent[i])

    def flush_counters(self) -> None:
        # go-metrics' statsd sink flushes every 100 ms; wait for the tail of the window.
        time.sleep(0.3)
        self._drain_statsd()

    def kill(self, i: int) -> None:
        self._close_rpc(i)
        self.procs[i].kill()
        self.procs[i].wait()

    def leave(self, i: int) -> None:
        self._close_rpc(i)
        self.procs[i].send_signal(signal.SIGINT)

    def _close_rpc(self, i: int) -> None:
        rpc = self._rpc.pop(i, None)
        if rpc is not None:
            rpc.close()

    def close(self) -> None:
        for i in list(self._rpc):
            self._close_rpc(i)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for sd in self.statsd:
            sd.close()
        for log in self._logs:
            log.close()


# --- the measurement ----------------------------------------------------------------------


def _wait_all(cluster: Any, alive: list[int], check: Any, timeout_s: float = STEP_TIMEOUT_S) -> tuple[float, float]:
    """Poll every agent in `alive` until `check(statuses)` holds for each; returns the
    times (since the call) at which the first and the last agent satisfied it."""
    t0 = time.monotonic()
    done: dict[int, float] = {}
    while len(done) < len(alive):
        if time.monotonic() - t0 > timeout_s:
            raise LaunchError(f"{cluster.kind}: condition not reached within {timeout_s:g} s ({len(done)}/{len(alive)})")
        round_start = time.monotonic()
        for i in alive:
            if i in done:
                continue
            statuses = cluster.statuses(i)
            if statuses is not None and check(statuses):
                done[i] = time.monotonic() - t0
        time.sleep(max(0.0, POLL_INTERVAL_S - (time.monotonic() - round_start)))
    return min(done.values()), max(done.values())


def measure(cluster: Any, args: argparse.Namespace) -> dict[str, float]:
    n, k = args.nodes, args.kill
    rng = random.Random(args.seed)
    names = [f"n{i}" for i in range(n)]
    start_all_s = cluster.start(n)
    alive = list(range(n))
    _, join_s = _wait_all(cluster, alive, lambda st: sum(st.get(x) == "alive" for x in names) == n)
    print(f"  {cluster.kind}: {n} processes serving after {start_all_s:.2f} s, converged {join_s:.2f} s later", file=sys.stderr, flush=True)

    time.sleep(args.settle_s)
    pids = cluster.pids(alive)
    b0 = [cluster.bytes_sent(i) for i in alive]
    c0 = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(args.window_s)
    c1 = [cpu_seconds(p) for p in pids]
    t1 = time.monotonic()
    if hasattr(cluster, "flush_counters"):
        cluster.flush_counters()
    b1 = [cluster.bytes_sent(i) for i in alive]
    window = t1 - t0
    rss = [rss_mb(p) for p in pids]
    cpu_pct = statistics.mean((b - a) / window * 100 for a, b in zip(c0, c1, strict=True))
    bytes_rate = sum(b - a for a, b in zip(b0, b1, strict=True)) / n / window

    candidates = list(range(1, n))
    rng.shuffle(candidates)
    victims, leavers = candidates[:k], candidates[k : 2 * k]
    firsts, alls = [], []
    for v in victims:
        cluster.kill(v)
        alive.remove(v)
        first, last = _wait_all(cluster, alive, lambda st, v=v: st.get(names[v]) == cluster.dead_status)
        firsts.append(first)
        alls.append(last)
        print(f"  {cluster.kind}: kill -9 n{v}: first {first:.2f} s, all {last:.2f} s", file=sys.stderr, flush=True)
        time.sleep(1.0)
    leaves = []
    for v in leavers:
        cluster.leave(v)
        alive.remove(v)
        _, last = _wait_all(cluster, alive, lambda st, v=v: st.get(names[v]) == "left")
        leaves.append(last)
        print(f"  {cluster.kind}: leave n{v}: all {last:.2f} s", file=sys.stderr, flush=True)
    return {
        "start_all_s": start_all_s,
        "join_converge_s": join_s,
        "detect_first_s": statistics.median(firsts) if firsts else float("nan"),
        "detect_all_s": statistics.median(alls) if alls else float("nan"),
        "leave_all_s": statistics.median(leaves) if leaves else float("nan"),
        "rss_mb_per_node": statistics.mean(rss),
        "cpu_pct_per_node": cpu_pct,
        "bytes_per_node_s": bytes_rate,
    }


def run(args: argparse.Namespace) -> None:
    if args.nodes < 2 or args.kill < 0 or 2 * args.kill > args.nodes - 2:
        raise SystemExit("need --nodes >= 2 and 2 * --kill <= nodes - 2 (kills and leaves spare the seed)")
    if args.vs == "serf" and shutil.which(SERF) is None:
        raise SystemExit(f"{SERF} not found: install the Debian package 'serf' or drop --vs serf")
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="meshcore-bench-") as tmp:
        ours = OursCluster(Path(tmp), args.profile)
        try:
            metrics.update(measure(ours, args))
        finally:
            ours.close()
        if args.vs == "serf":
            serf = SerfCluster(Path(tmp), args.profile)
            try:
                theirs = measure(serf, args)
            finally:
                serf.close()
            for key, value in theirs.items():
                metrics[f"serf_{key}"] = value
            for key, value in theirs.items():
                metrics[f"ratio_{key}"] = metrics[key] / value if value else float("nan")
    params = {"nodes": args.nodes, "kill": args.kill, "profile": args.profile, "vs": args.vs or "-", "window_s": args.window_s}
    emit("swim-procs", params, metrics, args.json)
