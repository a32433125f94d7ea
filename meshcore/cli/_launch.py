"""Start and watch `meshcore agent` processes (for the demo, the benchmarks and the tests).

Each agent is a child process with its own control socket in a scratch directory; its
stdout's first line (printed once it serves) carries its bound address. Every wait has a
timeout, and `AgentProcess.stop()` / `kill()` always reap the child, so callers can clean up
in a `finally` without leaving processes behind.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from .._types import Addr
from ._control import ControlError, request_sync

__all__ = ["AgentProcess", "LaunchError"]

_READY = re.compile(r"listening on (\S+):(\d+) control=(\S+)")


class LaunchError(Exception):
    """An agent did not start, or did not answer in time."""


class AgentProcess:
    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        bind: str = "127.0.0.1:0",
        join: list[str] | None = None,
        profile: str = "local",
        key: Path | None = None,
        credentials: Path | None = None,
        insecure: bool = False,
        extra: list[str] | None = None,
        code: Path | None = None,
        python: str | None = None,
    ) -> None:
        """`credentials`: a directory written by `make_throwaway_cluster(directory=...)`
        (or `SecureCluster`) holding NAME.key, NAME.cert and authority.pub. `code`: run the
        `meshcore` package of that directory (another checkout, for A/B benchmarks)
        instead of the one this interpreter would import. `python`: the interpreter to run
        it with (default: this one)."""
        self.name = name
        self.code = code
        self.workdir = workdir
        self.control = workdir / f"{name}.sock"
        self.log_path = workdir / f"{name}.log"
        self._argv = [
            python or sys.executable, "-m", "meshcore.cli", "agent",
            "--name", name, "--bind", bind, "--profile", profile,
            "--control", str(self.control), "--log-level", "warning",
        ]
        for seed in join or []:
            self._argv += ["--join", seed]
        if credentials is not None:
            self._argv += [
                "--key", str(credentials / f"{name}.key"),
                "--cert", str(credentials / f"{name}.cert"),
                "--authority", str(credentials / "authority.pub"),
            ]
        elif key is not None:
            self._argv += ["--key", str(key)]
        if insecure:
            self._argv += ["--insecure"]
        self._argv += extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self._term_sent = False
        self.addr: Addr | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the agent is not started"
        return self.proc.pid

    def start(self, *, timeout_s: float = 15.0) -> Addr:
        """Start the agent and wait until it serves; returns its bound address."""
        self.spawn()
        return self.wait_ready(timeout_s=timeout_s)

    def spawn(self) -> None:
        """Start the process without waiting (then call `wait_ready`)."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.code is not None:
            # `python -m` puts the working directory first on sys.path, then PYTHONPATH.
            env["PYTHONPATH"] = str(self.code)
        self._term_sent = False
        self.proc = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env,
            cwd=self.code,
        )

    def wait_ready(self, *, timeout_s: float = 15.0) -> Addr:
        """Wait for the agent's first stdout line; returns its bound address."""
        assert self.proc is not None and self.proc.stdout is not None, "spawn() first"
        deadline = time.monotonic() + timeout_s
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise LaunchError(f"agent {self.name} did not start: {self.log_tail()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        match = _READY.search(line.decode(errors="replace"))
        if match is None:
            self.kill()
            raise LaunchError(f"agent {self.name} printed an unexpected first line: {line!r}")
        self.addr = (match.group(1), int(match.group(2)))
        return self.addr

    def log_tail(self) -> str:
        """The last line the agent wrote to stderr (for error messages)."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "empty log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(
        self, op: str, *, timeout_s: float = 2.0, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return request_sync(self.control, op, timeout_s=timeout_s, fields=fields)

    def members(self, *, timeout_s: float = 2.0) -> list[dict[str, Any]] | None:
        """The agent's member list, or None when it does not answer."""
        try:
            return list(self.request("members", timeout_s=timeout_s)["members"])
        except ControlError:
            return None

    def kill(self) -> None:
        """kill -9, then reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap(5.0)

    def terminate(self) -> None:
        """Send SIGTERM (graceful leave) without waiting; then `stop()` reaps it."""
        if self.proc is not None and self.proc.poll() is None and not self._term_sent:
            self.proc.send_signal(signal.SIGTERM)
            self._term_sent = True

    def stop(self, *, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (graceful leave), wait, and kill -9 if it does not exit in time.
        Returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        self.terminate()  # at most one SIGTERM: a second one would cut the leave short
        try:
            code: int | None = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        return code

    def _reap(self, timeout_s: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
                pass
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
