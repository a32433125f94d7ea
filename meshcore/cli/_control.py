"""The agent's local control socket: newline-delimited JSON over a unix socket.

Request ``{"op": "members"}`` / ``{"op": "stats"}`` / ``{"op": "leave"}`` /
``{"op": "revoke", "revocations": [HEX, ...]}`` (signed revocations to apply and gossip);
the answer is one line, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The socket is created with
mode 0600 in a directory of mode 0700: only the agent's user may drive it. Requests are
bounded (`REQUEST_BYTES_MAX`), clients at once too (`CLIENTS_MAX`), and a client that does
not finish its request within `CLIENT_TIMEOUT_S` is disconnected.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ..errors import ConfigError, MeshError
from ..node import Node
from ..runtime import StreamIO
from ..swim._effects import Member

__all__ = [
    "UNIX_PATH_BYTES_MAX",
    "ControlError",
    "default_control_path",
    "member_to_json",
    "serve_control",
    "request",
    "request_sync",
]

REQUEST_BYTES_MAX = 64 * 1024
REVOCATIONS_PER_REQUEST_MAX = 128
RESPONSE_BYTES_MAX = 64 * 1024 * 1024
CLIENTS_MAX = 16
CLIENT_TIMEOUT_S = 5.0
#: Ops added by other CLI modules (meshcore.cli._kv): op -> handler(node, request, send).
#: A handler returns the answer, or None once it has written its own lines with `send`
#: (a streaming op such as kv.watch; the connection closes after it).
EXTRA_OPS: dict[str, Callable[..., Any]] = {}
#: Ops answered without the connection's task waiting for them (kv put, get, del):
#: handler(node, request, reply) starts the op and returns; `reply(answer)` is then called
#: exactly once, at once or later, on the trio thread. The connection's task goes back to
#: reading meanwhile, so an answer costs it no wake-up; a next request on the same
#: connection waits for the answer before it (answers stay in request order). A handler
#: that raises MeshError, ValueError or TypeError has answered with that error.
NOWAIT_OPS: dict[str, Callable[[Node, dict[str, Any], Callable[[dict[str, Any]], None]], None]] = {}
#: sun_path is 108 bytes on Linux, including the terminating NUL.
UNIX_PATH_BYTES_MAX = 107


def error_answer(exc: BaseException) -> dict[str, Any]:
    """The answer to a request that failed with `exc`."""
    return {"ok": False, "error": str(exc) or type(exc).__name__}


class ControlError(Exception):
    """The control socket could not be reached or answered badly."""


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "meshcore"
    return Path(f"/tmp/meshcore-{os.getuid()}")


def default_control_path(name: str) -> Path:
    """Where the agent named `name` listens unless told otherwise."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "node"
    return runtime_dir() / f"{safe}.sock"


def check_control_path(path: Path) -> None:
    if len(os.fsencode(str(path))) > UNIX_PATH_BYTES_MAX:
        raise ConfigError(
            f"control socket path {str(path)!r} is longer than {UNIX_PATH_BYTES_MAX} bytes; "
            "choose a shorter --control path"
        )


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def member_to_json(m: Member) -> dict[str, Any]:
    return {
        "id": m.node.hex(),
        "name": m.meta.name,
        "addr": f"{m.addr[0]}:{m.addr[1]}",
        "status": m.status.name.lower(),
        "incarnation": m.incarnation,
        "site": m.meta.site,
        "region": m.meta.region,
        "roles": list(m.meta.roles),
        "tags": m.meta.tag_dict,
        "since": m.since,
    }


async def _revoke(node: Node, req: dict[str, Any]) -> dict[str, Any]:
    items = req.get("revocations")
    if (
        not isinstance(items, list)
        or not 0 < len(items) <= REVOCATIONS_PER_REQUEST_MAX
        or not all(isinstance(h, str) for h in items)
    ):
        return {"ok": False, "error": f"revocations must be a list of 1..{REVOCATIONS_PER_REQUEST_MAX} hex strings"}
    try:
        blobs = [bytes.fromhex(h) for h in items]
    except ValueError:
        return {"ok": False, "error": "a revocation is not valid hex"}
    try:
        revoked = await node.add_revocations(blobs)
    except (MeshError, ValueError) as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "revoked": [n.hex() for n in revoked]}


async def _answer(node: Node, req: Any, on_leave: Callable[[], None]) -> dict[str, Any]:
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        return {"ok": False, "error": 'a request is a JSON object like {"op": "members"}'}
    op = req["op"]
    if op == "members":
        return {
            "ok": True,
            "self": node.node_id.hex(),
            "checksum": node.checksum(),
            "members": [member_to_json(m) for m in node.members()],
            "drops": dict(node.statistics().drops),
        }
    if op == "stats":
        return {"ok": True, "stats": _jsonable(node.statistics())}
    if op == "leave":
        on_leave()
        return {"ok": True}
    if op == "revoke":
        return await _revoke(node, req)
    return {"ok": False, "error": f"unknown op {op!r:.40}; use members, stats, leave or revoke"}


class _IdleGuard:
    """Cuts a connection off once it has waited `timeout_s` for a request. The reader
    only notes when it starts and stops waiting (`since`); this guard's task wakes about
    once per timeout, so a busy connection pays no timer work per request."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None  # when the wait for the next request began

    async def watch(self, scope: trio.CancelScope, timeout_s: float) -> None:
        while True:
            since, now = self.since, trio.current_time()
            if since is not None and now - since >= timeout_s:
                scope.cancel()
                return
            await trio.sleep(timeout_s if since is None else since + timeout_s - now)


class _Pending:
    """The answer a `NOWAIT_OPS` request of one connection owes (at most one at a time)."""

    __slots__ = ("io", "idle", "nursery", "owed", "answered", "reading")

    def __init__(self, io: StreamIO, idle: _IdleGuard, nursery: trio.Nursery) -> None:
        self.io = io
        self.idle = idle
        self.nursery = nursery
        self.owed = False
        self.answered = trio.Event()
        self.reading = False  # the connection's task waits for the next request

    def start(self) -> None:
        self.owed = True
        self.answered = trio.Event()

    def reply(self, answer: dict[str, Any]) -> None:
        """Write `answer` without waiting; what the socket does not take at once is sent
        by a task of the connection. Never raises (it runs inside the kv service)."""
        if not self.owed:
            return  # answered already: a second call is a bug of the handler, not the client's
        data = json.dumps(answer).encode() + b"\n"
        try:
            sent = self.io.write_nowait(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            sent = len(data)  # the client went away; its connection's task ends on reading
        if sent < len(data):
            try:
                self.nursery.start_soon(self._send_rest, data[sent:])
            except RuntimeError:  # the connection is closing
                self._done()
            return
        self._done()

    async def _send_rest(self, data: bytes) -> None:
        try:
            await self.io.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._done()

    def _done(self) -> None:
        self.owed = False
        if self.reading:  # the wait for the next request starts now
            self.idle.since = trio.current_time()
        self.answered.set()


async def _serve_client(
    stream: trio.SocketStream, node: Node, on_leave: Callable[[], None]
) -> None:
    """Answer requests on one connection until the client closes it; each request must
    arrive within CLIENT_TIMEOUT_S (a client may keep the connection open between them;
    handling a request has no time limit here)."""
    buf = bytearray()
    io = StreamIO(stream)
    idle = _IdleGuard()
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(idle.watch, nursery.cancel_scope, CLIENT_TIMEOUT_S)
        pending = _Pending(io, idle, nursery)
        try:
            while True:
                if b"\n" not in buf:
                    # Waiting for a request; not while an answer is owed (no time limit).
                    idle.since = None if pending.owed else trio.current_time()
                    pending.reading = True
                    while b"\n" not in buf:
                        if len(buf) > REQUEST_BYTES_MAX:
                            if pending.owed:
                                await pending.answered.wait()
                            await io.send_all(b'{"ok": false, "error": "request too long"}\n')
                            return
                        chunk = await io.receive_some(REQUEST_BYTES_MAX)
                        if not chunk:
                            return
                        buf += chunk
                    pending.reading = False
                    idle.since = None
                if pending.owed:  # answers go in request order
                    await pending.answered.wait()
                line, _, rest = bytes(buf).partition(b"\n")
                buf = bytearray(rest)
                try:
                    req = json.loads(line)
                except ValueError:
                    answer: dict[str, Any] = {"ok": False, "error": "request is not valid JSON"}
                else:
                    op = str(req.get("op")) if isinstance(req, dict) else None
                    nowait = NOWAIT_OPS.get(op) if op is not None else None
                    if nowait is not None:
                        pending.start()
                        try:
                            nowait(node, req, pending.reply)
                        except (MeshError, ValueError, TypeError) as exc:
                            pending.reply(error_answer(exc))
                        continue
                    extra = EXTRA_OPS.get(op) if op is not None else None
                    if extra is not None:  # an op of another CLI module (see EXTRA_OPS)
                        answer = await extra(node, req, io.send_all)
                        if answer is None:
                            return
                    else:
                        answer = await _answer(node, req, on_leave)
                await io.send_all(json.dumps(answer).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away (caught here: the nursery would wrap it in a group)
        finally:
            nursery.cancel_scope.cancel()  # the guard's task ends with the connection


async def serve_control(
    path: Path,
    node: Node,
    on_leave: Callable[[], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket at `path` until cancelled; removes the socket file after."""
    check_control_path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if _is_live(path):
            raise ConfigError(
                f"control socket {path} is in use by a running agent; "
                "give this agent another --name or --control path"
            )
        path.unlink()
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(CLIENTS_MAX)
    listener = trio.SocketListener(sock)
    limiter = trio.CapacityLimiter(CLIENTS_MAX)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                await limiter.acquire_on_behalf_of(stream)
                nursery.start_soon(_client_task, stream, node, on_leave, limiter)
    finally:
        sock.close()
        try:
            path.unlink()
        except OSError:
            pass


async def _client_task(
    stream: trio.SocketStream, node: Node, on_leave: Callable[[], None], limiter: trio.CapacityLimiter
) -> None:
    try:
        await _serve_client(stream, node, on_leave)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        limiter.release_on_behalf_of(stream)


def _is_live(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


def request_sync(
    path: Path | str, op: str, *, timeout_s: float = 5.0, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Send one request to the agent at `path` and return its answer (blocking; for the CLI,
    the demo and the benchmarks). Raises `ControlError` with a readable message."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        try:
            s.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no agent control socket at {path} (is the agent running?)") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the agent at {path}: {exc.strerror or exc}") from None
        try:
            s.sendall(json.dumps({**(fields or {}), "op": op}).encode() + b"\n")
            buf = bytearray()
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > RESPONSE_BYTES_MAX:
                    raise ControlError("the agent's answer is too large")
        except TimeoutError:
            raise ControlError(f"the agent at {path} did not answer within {timeout_s:g} s") from None
        except OSError as exc:
            raise ControlError(f"the agent at {path} closed the connection: {exc}") from None
    finally:
        s.close()
    try:
        answer = json.loads(buf)
    except ValueError:
        raise ControlError(f"the agent at {path} sent an invalid answer") from None
    if not isinstance(answer, dict):
        raise ControlError(f"the agent at {path} sent an invalid answer")
    if not answer.get("ok"):
        raise ControlError(f"the agent refused: {answer.get('error', 'no reason given')}")
    return answer


async def request(path: Path | str, op: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """`request_sync` in a worker thread, for trio code."""
    return await trio.to_thread.run_sync(lambda: request_sync(path, op, timeout_s=timeout_s))
