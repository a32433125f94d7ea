"""The examples run as documented (real sockets on 127.0.0.1, bounded time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_hello_mesh_joins_broadcasts_updates_and_leaves() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / "hello_mesh.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "broadcast: hello from albi" in out.stdout
    assert "updated: nimes-1 roles=('storage',)" in out.stdout
    assert "left: nimes-1" in out.stdout
    assert out.stdout.count(" alive") == 3


@pytest.mark.slow
def test_failover_moves_the_service_to_another_site_after_a_power_cut() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / "failover.py")],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    victim = next(ln for ln in lines if ln.startswith("power cut at ")).split()[-1]
    moved = next(ln for ln in lines if "failed over to" in ln)
    assert victim not in moved.split("failed over to")[1]
    # Exactly one owner before the cut, exactly one more after it.
    assert sum("starts" in ln or "I own" in ln for ln in lines) == 2
