"""Real agent processes: the kv commands end to end, and kill -9 under write load.

Marked slow; every wait is bounded and every process is reaped in `finally`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meshcore.cli._control import ControlError, request_sync
from meshcore.cli._launch import AgentProcess
from meshcore.node.testing import SecureCluster

pytestmark = pytest.mark.slow
WAIT_S = 30.0


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def _wait(cond: object, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if cond():  # type: ignore[operator]
                return
        except ControlError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _read_all(agent: AgentProcess, key: bytes, attempts: int = 5) -> dict[str, object]:
    """Read at `all`, retrying a read that timed out: on a loaded machine a replica may
    answer late. This test is about durability (every acknowledged write is found), not
    latency; a write that is missing reads as not found, which no retry hides."""
    for attempt in range(attempts):
        try:
            return request_sync(agent.control, "kv.get", timeout_s=5.0, fields={
                "namespace": "d", "key_b64": _b64(key), "consistency": "all"})
        except ControlError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _kv_peers(agent: AgentProcess) -> int:
    return int(agent.request("kv.stats")["kv"]["peers"])


@contextmanager
def agents(tmp_path: Path, names: list[str]) -> Iterator[list[AgentProcess]]:
    creds = tmp_path / "creds"
    SecureCluster(names, directory=creds)
    procs: list[AgentProcess] = []
    try:
        for i, name in enumerate(names):
            join = [f"{procs[0].addr[0]}:{procs[0].addr[1]}"] if procs else []  # type: ignore[index]
            a = AgentProcess(name, tmp_path, join=join, credentials=creds,
                             extra=["--data-dir", str(tmp_path / f"data-{name}"), "--site", f"s{i}",
                                    "--region", "r1"])
            procs.append(a)  # before start(): reaped in `finally` even if it fails to start
            a.start()
        for a in procs:
            _wait(lambda a=a: _kv_peers(a) == len(names) - 1, f"{a.name} to see its kv peers")
        yield procs
    finally:
        for a in procs:
            a.kill()


def _cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshcore.cli", *args, "--control", str(agent.control)],
                          capture_output=True, text=True, timeout=WAIT_S)


def test_kv_and_namespace_commands_work_against_running_agents(tmp_path: Path) -> None:
    with agents(tmp_path, ["a", "b", "c"]) as (a, b, c):
        r = _cli(a, "namespace", "create", "cfg", "--replicas", "2", "--regions", "test")
        assert r.returncode == 0, r.stderr
        _wait(lambda: "cfg" in _cli(c, "namespace", "list").stdout, "the namespace to spread")
        assert _cli(b, "kv", "put", "cfg", "color", "blue", "--consistency", "all").returncode == 0
        got = _cli(c, "kv", "get", "cfg", "color")
        assert (got.returncode, got.stdout.strip()) == (0, "blue")
        assert _cli(a, "kv", "ls", "cfg", "co").stdout.split("\n")[0] == "color\tblue"
        assert _cli(a, "kv", "del", "cfg", "color").returncode == 0
        gone = _cli(b, "kv", "get", "cfg", "color")
        assert gone.returncode == 1 and "not found" in gone.stderr
        bad = _cli(a, "kv", "put", "nope", "k", "v")
        assert bad.returncode != 0 and "not defined" in bad.stderr
        far = _cli(a, "namespace", "create", "x", "--regions", "mars")
        assert far.returncode != 0 and "region" in far.stderr


def test_every_acknowledged_write_survives_kill_9_of_its_coordinator(tmp_path: Path) -> None:
    with agents(tmp_path, ["a", "b", "c"]) as (b, c, victim):  # the victim joined via b
        victim.request("namespace.create", fields={"name": "d", "replicas": 2})
        _wait(lambda: any(ns["name"] == "d" for ns in b.request("namespace.list")["namespaces"])
              and any(ns["name"] == "d" for ns in c.request("namespace.list")["namespaces"]),
              "the namespace to spread")
        acked: list[tuple[str, str]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def writer(w: int) -> None:
            seq = 0
            while not stop.is_set():
                seq += 1
                key, value = f"w{w}-{seq}", f"v{seq}"
                level = "one" if seq % 2 else "quorum"
                try:
                    victim.request("kv.put", timeout_s=5.0, fields={
                        "namespace": "d", "key_b64": _b64(key), "value_b64": _b64(value), "consistency": level})
                except ControlError:
                    if not victim.running:
                        return
                    continue
                with lock:
                    acked.append((key, value))

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
        for t in threads:
            t.start()
        _wait(lambda: len(acked) >= 200, "writes to be acknowledged")
        victim.kill()  # SIGKILL in the middle of the load
        stop.set()
        for t in threads:
            t.join(10.0)
        assert len(acked) >= 200
        victim.start()
        _wait(lambda: _kv_peers(victim) == 2, "the restarted agent to see its kv peers")
        _wait(lambda: victim.request("kv.get", fields={"namespace": "d", "key_b64": _b64(acked[0][0]),
                                                       "consistency": "all"})["found"], "reads to work")
        missing = []
        for key, value in acked:
            ans = _read_all(victim, key)
            if not ans["found"] or ans["value_b64"] != _b64(value):
                missing.append(key)
        assert missing == []
