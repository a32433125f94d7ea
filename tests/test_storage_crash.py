"""An acknowledged write survives kill -9 of the writing process (real process, seconds)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from meshcore.runtime._storage import open_store

ROOT = Path(__file__).resolve().parent.parent

# The child writes from 8 concurrent tasks and prints "ACK w i" only after each put_many
# returned, i.e. after its group commit; it stops by itself after 30 s at the latest.
CHILD = """
import sys, trio
from meshcore.kv import Namespace, Record, Stamp
from meshcore.runtime._storage import open_store

async def main(path):
    async with open_store(path) as store:
        await store.put_namespace(Namespace(name="crash", replicas=1))
        async def writer(w):
            for i in range(1, 1_000_000):
                key = f"w{w}-{i}".encode()
                await store.put_many("crash", [Record(key, key * 100, Stamp(i, 0, bytes([w + 1]) * 16))])
                print(f"ACK {w} {i}", flush=True)
        with trio.move_on_after(30):
            async with trio.open_nursery() as nursery:
                for w in range(8):
                    nursery.start_soon(writer, w)

trio.run(main, sys.argv[1])
"""

ACKS_BEFORE_KILL = 300
DEADLINE_S = 60.0  # a safety net against a hung child, not a performance assertion


def _read_acks_then_kill(proc: subprocess.Popen[bytes]) -> list[tuple[int, int]]:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + DEADLINE_S
    killed = False
    while True:
        if not killed and buf.count(b"\n") >= ACKS_BEFORE_KILL:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc.kill()
            pytest.fail("the writer child produced too few acks before the deadline")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:  # EOF: the child is dead; everything it printed is in buf
            break
        buf += chunk
    proc.wait()
    assert killed and proc.returncode == -signal.SIGKILL
    acks = []
    for line in buf.split(b"\n"):
        if line.startswith(b"ACK "):  # a torn last line (no newline) is not an ack
            _, w, i = line.split()
            acks.append((int(w), int(i)))
    return acks


@pytest.mark.slow
def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, env=env, cwd=ROOT)
    acks = _read_acks_then_kill(proc)
    assert len(acks) >= ACKS_BEFORE_KILL
    assert Path(f"{path}-wal").exists()  # killed before any clean close: recovery reads the WAL

    async def check() -> int:
        async with open_store(path) as store:
            for w, i in acks:
                key = f"w{w}-{i}".encode()
                got = await store.get("crash", key)
                assert got is not None and got.value == key * 100, key
            return len([row async for row in store.scan_versions("crash")])

    stored = trio.run(check)
    assert stored >= len(acks)
