"""`make demo` end to end: five real agents, a kill -9, a restart, a clean exit."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_the_demo_shows_a_crash_detected_and_healed_and_exits_0() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "meshcore.demo"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for line in (
        "every agent sees 5 alive members",
        "suspects node-3",
        "every survivor marks node-3 dead",
        "every agent sees node-3 alive again",
        "all agents exited with code 0",
    ):
        assert line in out.stdout
