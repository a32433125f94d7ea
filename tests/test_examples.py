"""The examples run as documented (real sockets on 127.0.0.1, bounded time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                         timeout=timeout_s)
    assert out.returncode == 0, out.stderr
    return out


@pytest.mark.slow
def test_hello_mesh_joins_broadcasts_updates_and_leaves() -> None:
    out = run_example("hello_mesh.py", 60)
    assert "broadcast: hello from albi" in out.stdout
    assert "updated: nimes-1 roles=('storage',)" in out.stdout
    assert "left: nimes-1" in out.stdout
    assert out.stdout.count(" alive") == 3


@pytest.mark.slow
def test_failover_moves_the_service_to_another_site_after_a_power_cut() -> None:
    out = run_example("failover.py", 90)
    lines = out.stdout.splitlines()
    victim = next(ln for ln in lines if ln.startswith("power cut at ")).split()[-1]
    moved = next(ln for ln in lines if "failed over to" in ln)
    assert victim not in moved.split("failed over to")[1]
    # Exactly one owner before the cut, exactly one more after it.
    assert sum("starts" in ln or "I own" in ln for ln in lines) == 2


@pytest.mark.slow
def test_file_sync_spreads_edits_and_deletes_and_a_site_catches_up_after_a_power_cut() -> None:
    out = run_example("file_sync.py", 120)
    assert "notes/report.txt written at toulouse: at albi and nimes after" in out.stdout
    assert "13 chunks) written at albi: everywhere after" in out.stdout
    assert "caught up (edit, deletion, new file)" in out.stdout
    # Nothing refused or failed on the way (warnings would be on stderr).
    counters = out.stdout.splitlines()[-1]
    assert "refused" not in counters and "failed" not in counters and "conflicts" not in counters, counters
