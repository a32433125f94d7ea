"""Real `meshcore agent` processes on 127.0.0.1: the control socket and a clean SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshcore.cli._launch import AgentProcess
from meshcore.node.testing import SecureCluster

pytestmark = pytest.mark.slow

WAIT_S = 20.0


def wait_until(check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[AgentProcess, AgentProcess]]:
    creds = tmp_path / "creds"
    SecureCluster(["alpha", "beta"], directory=creds)
    a = AgentProcess("alpha", tmp_path, credentials=creds,
                     extra=["--site", "s1", "--role", "web", "--tag", "rack=r1"])
    started = [a]
    try:
        host, port = a.start()
        b = AgentProcess("beta", tmp_path, join=[f"{host}:{port}"], credentials=creds)
        started.append(b)
        b.start()
        yield a, b
    finally:
        for agent in started:
            agent.kill()


def _members_json(agent: AgentProcess) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "meshcore.cli", "members", "--json", "--control", str(agent.control)],
        capture_output=True,
        timeout=WAIT_S,
        check=True,
    )
    answer = json.loads(out.stdout)
    assert isinstance(answer["drops"], dict)
    return list(answer["members"])


def test_members_json_lists_both_agents_with_their_metadata(pair: tuple[AgentProcess, AgentProcess]) -> None:
    a, b = pair
    wait_until(lambda: len([m for m in (a.members() or []) if m["status"] == "alive"]) == 2)
    members = {m["name"]: m for m in _members_json(a)}
    assert set(members) == {"alpha", "beta"}
    assert members["alpha"]["site"] == "s1"
    assert members["alpha"]["roles"] == ["web"]
    assert members["alpha"]["tags"] == {"rack": "r1"}
    assert members["beta"]["addr"] == f"{b.addr[0]}:{b.addr[1]}"  # type: ignore[index]


def test_sigterm_makes_the_agent_leave_gracefully_and_exit_0(pair: tuple[AgentProcess, AgentProcess]) -> None:
    a, b = pair
    wait_until(lambda: len([m for m in (a.members() or []) if m["status"] == "alive"]) == 2)
    assert b.stop(timeout_s=WAIT_S) == 0
    wait_until(lambda: any(m["name"] == "beta" and m["status"] == "left" for m in (a.members() or [])))
    assert not b.control.exists()  # the control socket is removed on the way out


def test_a_second_sigterm_during_the_leave_still_ends_in_a_clean_exit(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    import signal
    import time

    a, b = pair
    wait_until(lambda: len([m for m in (a.members() or []) if m["status"] == "alive"]) == 2)
    assert b.proc is not None
    b.proc.send_signal(signal.SIGTERM)
    # An impatient supervisor signals again while the agent is leaving and exiting.
    for _ in range(20):
        if b.proc.poll() is not None:
            break
        b.proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    assert b.proc.wait(WAIT_S) == 0


def test_an_agent_process_can_run_the_meshcore_package_of_another_checkout(tmp_path: Path) -> None:
    # The kv benchmark's --vs-code: the child must import `code`'s meshcore, not ours.
    other = tmp_path / "checkout"
    (other / "meshcore" / "cli").mkdir(parents=True)
    (other / "meshcore" / "__init__.py").write_text("")
    (other / "meshcore" / "cli" / "__init__.py").write_text("")
    (other / "meshcore" / "cli" / "__main__.py").write_text(
        "import time\nprint('meshcore agent other listening on 127.0.0.1:4242 control=/x', flush=True)\n"
        "time.sleep(60)\n")
    agent = AgentProcess("other", tmp_path, code=other)
    try:
        assert agent.start(timeout_s=20.0) == ("127.0.0.1", 4242)
    finally:
        agent.kill()


def test_the_agent_tunes_the_collector_the_gil_switch_interval_and_its_scheduling() -> None:
    import gc
    import os
    import sys
    import threading

    from meshcore.cli._agent import GC_YOUNG_THRESHOLD, GIL_SWITCH_INTERVAL_S, _tune_runtime

    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    policy: list[int] = []

    def tune() -> None:  # in a thread of its own: the policy is per thread
        _tune_runtime()
        if hasattr(os, "sched_getscheduler"):
            policy.append(os.sched_getscheduler(0))

    try:
        t = threading.Thread(target=tune)
        t.start()
        t.join()
        if hasattr(os, "SCHED_BATCH"):
            assert policy == [os.SCHED_BATCH]
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD == 20_000
        assert GIL_SWITCH_INTERVAL_S == 0.05 and abs(sys.getswitchinterval() - 0.05) < 1e-9
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)
