"""The kv benchmark counts an agent's child processes (its stores' sync helpers) with it."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.kv import _cpu_s, _rss_mb, _tree

# A child that burns CPU, then holds ~40 MB, then waits to be killed.
_CHILD = """
import sys, time
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
ballast = bytearray(40 * 1024 * 1024)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
print("ready", flush=True)
sys.stdin.read()
"""


def test_cpu_and_memory_include_live_descendants() -> None:
    me = os.getpid()
    cpu0, rss0 = _cpu_s([me]), _rss_mb(me)
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        assert child.pid in _tree(me)
        assert _cpu_s([me]) - cpu0 >= 0.25  # the child's 0.3 s of CPU, this process barely moved
        assert _rss_mb(me) - rss0 >= 35
    finally:
        child.kill()
        child.wait()


def test_a_process_that_is_gone_counts_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert _cpu_s([child.pid]) == 0.0
    assert _rss_mb(child.pid) != _rss_mb(child.pid)  # nan
