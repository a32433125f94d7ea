"""Real processes on loopback: an agent certified by another authority cannot join a
20-agent mesh, and its attempts show in the drop counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meshcore.cli._launch import AgentProcess
from meshcore.node.testing import SecureCluster

pytestmark = pytest.mark.slow

AGENTS = 20
WAIT_S = 45.0


def wait_until(check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.25)


def test_an_agent_of_another_authority_cannot_join_a_20_agent_mesh(tmp_path: Path) -> None:
    names = [f"a{i}" for i in range(AGENTS)]
    creds = tmp_path / "creds"
    rogue_creds = tmp_path / "rogue"
    SecureCluster(names, directory=creds)
    SecureCluster(["rogue"], directory=rogue_creds)
    agents: list[AgentProcess] = []
    try:
        seed = AgentProcess(names[0], tmp_path, credentials=creds)
        host, port = seed.start()
        agents.append(seed)
        others = [AgentProcess(n, tmp_path, join=[f"{host}:{port}"], credentials=creds) for n in names[1:]]
        agents += others
        for a in others:
            a.spawn()
        for a in others:
            a.wait_ready()
        rogue = AgentProcess("rogue", tmp_path, join=[f"{host}:{port}"], credentials=rogue_creds)
        agents.append(rogue)
        rogue.start()

        def converged() -> bool:
            for a in agents[:AGENTS]:
                members = a.members()
                if members is None or sum(m["status"] == "alive" for m in members) != AGENTS:
                    return False
            return True

        wait_until(converged)
        time.sleep(2)
        for a in agents[:AGENTS]:
            assert "rogue" not in {m["name"] for m in a.members() or []}
        answer = seed.request("members")
        assert answer["drops"].get("handshake_eof", 0) >= 1, answer["drops"]
        stats = seed.request("stats")["stats"]
        assert stats["drops"]["handshake_eof"] >= 1
        assert rogue.request("members")["drops"].get("cert_untrusted", 0) >= 1
    finally:
        for a in agents:
            a.kill()
