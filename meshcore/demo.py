"""`make demo`: a live five-node mesh on loopback, one crash, one recovery.

Starts five `meshcore agent` processes (timing profile `local`), shows the member table as
the first node sees it (through its control socket), kills one node with SIGKILL, shows it
suspected and then dead on every survivor, restarts it with the same key (same node id),
shows it alive again everywhere, then stops every agent gracefully. Exit code 0 when every
step was seen within its deadline; 1 otherwise. No agent outlives the demo.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .cli._launch import AgentProcess, LaunchError
from .cli._members import format_members

__all__ = ["main"]

NODES = 5
VICTIM = 2  # index of the node that is killed and restarted
STEP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.1

_t0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _t0:5.1f}s] {text}", flush=True)


def show_table(agent: AgentProcess) -> None:
    try:
        answer = agent.request("members")
    except Exception as exc:  # the demo keeps going; the table is only for the eyes
        say(f"(no table from {agent.name}: {exc})")
        return
    print(f"\n  members as {agent.name} sees them:")
    for line in format_members(answer).splitlines():
        print("    " + line)
    print(flush=True)


def status_of(agent: AgentProcess, name: str) -> str | None:
    members = agent.members()
    if members is None:
        return None
    for m in members:
        if m["name"] == name:
            return str(m["status"])
    return "unknown"


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = STEP_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            say(what)
            return True
        time.sleep(POLL_INTERVAL_S)
    say(f"TIMEOUT after {timeout_s:g} s waiting for: {what}")
    return False


def _make_credentials(workdir: Path, names: list[str]) -> Path | None:
    """A throwaway cluster authority and one certificate per node (keys kept on disk, so a
    restarted node keeps its id); the demo's mesh is sealed like a real one. None (an
    insecure demo) only while the SWIM core cannot carry certificates yet."""
    from .node.testing import core_admits_certificates
    from .security import make_throwaway_cluster

    if not core_admits_certificates():
        say("WARNING: this SWIM core cannot carry certificates yet: running --insecure")
        return None
    make_throwaway_cluster(names, now=time.time(), cluster="demo", directory=workdir, days=1)
    return workdir


def _all_alive(agents: list[AgentProcess], n: int) -> Callable[[], bool]:
    def check() -> bool:
        for a in agents:
            members = a.members()
            if members is None or sum(m["status"] == "alive" for m in members) != n:
                return False
        return True

    return check


def run(workdir: Path) -> bool:
    names = [f"node-{i + 1}" for i in range(NODES)]
    creds = _make_credentials(workdir, names)
    agents: list[AgentProcess] = []
    try:
        if creds is not None:
            say(f"throwaway authority for cluster 'demo' and {NODES} certificates in {workdir}")
        say(f"starting {NODES} agents on 127.0.0.1 (profile 'local')")
        first = AgentProcess(names[0], workdir, credentials=creds, insecure=creds is None)
        seed_addr = first.start()
        seed = f"{seed_addr[0]}:{seed_addr[1]}"
        agents.append(first)
        say(f"  {first.name} pid {first.pid} on {seed}")
        for name in names[1:]:
            a = AgentProcess(name, workdir, join=[seed], credentials=creds, insecure=creds is None)
            host, port = a.start()
            agents.append(a)
            say(f"  {a.name} pid {a.pid} on {host}:{port}, joining {seed}")
        if not wait_until(f"every agent sees {NODES} alive members", _all_alive(agents, NODES)):
            return False
        show_table(agents[0])

        victim = agents[VICTIM]
        survivors = [a for a in agents if a is not victim]
        victim_addr = f"{victim.addr[0]}:{victim.addr[1]}" if victim.addr else "127.0.0.1:0"
        say(f"kill -9 {victim.name} (pid {victim.pid})")
        victim.kill()
        t_kill = time.monotonic()
        if not wait_until(
            f"{agents[0].name} suspects {victim.name}",
            lambda: status_of(agents[0], victim.name) in ("suspect", "dead"),
        ):
            return False
        show_table(agents[0])
        if not wait_until(
            f"every survivor marks {victim.name} dead",
            lambda: all(status_of(a, victim.name) == "dead" for a in survivors),
        ):
            return False
        say(f"  detected by all {len(survivors)} survivors {time.monotonic() - t_kill:.1f} s after the kill")
        show_table(agents[0])

        say(f"restarting {victim.name} on {victim_addr} with the same key")
        restarted = AgentProcess(victim.name, workdir, bind=victim_addr, join=[seed], credentials=creds,
                                 insecure=creds is None)
        restarted.start()
        agents[VICTIM] = restarted
        if not wait_until(f"every agent sees {victim.name} alive again", _all_alive(agents, NODES)):
            return False
        show_table(agents[0])

        say("stopping every agent (SIGTERM: graceful leave)")
        for a in agents:
            a.terminate()
        codes = [a.stop() for a in agents]
        if any(c != 0 for c in codes):
            say(f"some agents did not exit cleanly: exit codes {codes}")
            return False
        say("all agents exited with code 0")
        return True
    except LaunchError as exc:
        say(f"FAILED: {exc}")
        return False
    finally:
        for a in agents:
            a.kill()


def main(argv: list[str] | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="meshcore-demo-") as tmp:
        ok = run(Path(tmp))
        if not ok:
            for log in sorted(Path(tmp).glob("*.log")):
                text = log.read_text(errors="replace").strip()
                if text:
                    print(f"--- {log.name} (last lines)\n" + "\n".join(text.splitlines()[-5:]))
    print("demo finished" if ok else "demo FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
