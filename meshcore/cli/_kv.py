"""`meshcore kv put|get|del|ls|watch` and `meshcore namespace create|list`, against a running
agent over its control socket; and the control-socket ops that serve them.

Keys and values travel base64-encoded in the JSON requests (`key_b64`, `value_b64`), so any
bytes work; the command line takes text (UTF-8) and prints values as text when they decode,
else as `hex:...`. `kv watch` keeps the connection open and prints one line per change
until interrupted. Ops: kv.put, kv.get, kv.del, kv.ls, kv.watch, kv.stats, kv.local, namespace.create,
namespace.list. Every request is untrusted: a bad field is an `{"ok": false}` answer.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ConfigError, LocalProtocolError, MeshError
from ..kv import Completed
from ..runtime._storage import SYNC_MODES
from ._control import EXTRA_OPS, NOWAIT_OPS, ControlError, request_sync
from ._control import error_answer as _error
from ._members import _add_target, control_path_from_args

__all__ = ["register", "KV_OPS", "SYNC_MODES", "service_config"]

LEVELS = ("one", "quorum", "all")
LS_LIMIT_DEFAULT = 1000
Send = Callable[[bytes], Awaitable[None]]


# --- control-socket side (runs inside the agent) -------------------------------------------


def _b64(req: dict[str, Any], name: str, *, empty: bool = False) -> bytes:
    text = req.get(name, "" if empty else None)
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not valid base64") from None
    if not data and not empty:
        raise ValueError(f"{name} is empty")
    return data


def _enc(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _level(req: dict[str, Any]) -> str:
    level = req.get("consistency", "quorum")
    if level not in LEVELS:
        raise ValueError(f"consistency must be one of {', '.join(LEVELS)}")
    return str(level)


async def _op_ls(node: Any, req: dict[str, Any], send: Send) -> dict[str, Any]:
    limit = req.get("limit", LS_LIMIT_DEFAULT)
    if type(limit) is not int:
        raise ValueError("limit must be an int")
    items = await node.kv.scan(req.get("namespace"), _b64(req, "prefix_b64", empty=True), limit=limit)
    return {"ok": True, "items": [[_enc(k), _enc(v)] for k, v in items]}


async def _op_watch(node: Any, req: dict[str, Any], send: Send) -> None:
    watch = node.kv.watch(req.get("namespace"), _b64(req, "prefix_b64", empty=True))
    async with watch:
        await send(json.dumps({"ok": True, "watching": True}).encode() + b"\n")
        async for change in watch:
            line = {"key_b64": _enc(change.key), "deleted": change.value is None,
                    "value_b64": None if change.value is None else _enc(change.value),
                    "stamp_us": change.stamp.physical_us, "dropped": watch.dropped}
            await send(json.dumps(line).encode() + b"\n")
    return None


async def _op_local(node: Any, req: dict[str, Any], send: Send) -> dict[str, Any]:
    """What THIS node's store holds for a key, and whether it is a home replica of it
    (no coordination: for diagnostics and convergence measurements)."""
    svc = node.kv.service
    namespace, key = req.get("namespace"), _b64(req, "key_b64")
    rec = await svc._store.get(namespace, key)
    core = svc._require()
    home = node.node_id in core.view.replicas(core.view.namespace(namespace), key)
    return {"ok": True, "home": home, "found": rec is not None and rec.value is not None,
            "value_b64": None if rec is None or rec.value is None else _enc(rec.value)}


async def _op_stats(node: Any, req: dict[str, Any], send: Send) -> dict[str, Any]:
    return {"ok": True, "kv": node.kv.statistics()}


async def _op_ns_create(node: Any, req: dict[str, Any], send: Send) -> dict[str, Any]:
    regions = req.get("regions", [])
    if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
        raise ValueError("regions must be a list of strings")
    ns = await node.kv.create_namespace(req.get("name"), replicas=req.get("replicas", 2), regions=regions)
    return {"ok": True, "namespace": _ns_json(ns)}


async def _op_ns_list(node: Any, req: dict[str, Any], send: Send) -> dict[str, Any]:
    return {"ok": True, "namespaces": [_ns_json(ns) for ns in node.kv.namespaces()]}


def _ns_json(ns: Any) -> dict[str, Any]:
    return {"name": ns.name, "replicas": ns.replicas, "regions": list(ns.regions)}


def _guarded(fn: Callable[[Any, dict[str, Any], Send], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def run(node: Any, req: dict[str, Any], send: Send) -> Any:
        try:
            return await fn(node, req, send)
        except (MeshError, ValueError, TypeError) as exc:
            return _error(exc)

    return run


KV_OPS = {
    "kv.ls": _op_ls, "kv.watch": _op_watch,
    "kv.stats": _op_stats, "kv.local": _op_local, "namespace.create": _op_ns_create, "namespace.list": _op_ns_list,
}
EXTRA_OPS.update({op: _guarded(fn) for op, fn in KV_OPS.items()})


def _nowait_put(node: Any, req: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None:
    def done(c: Completed) -> None:
        if c.error is not None or c.stamp is None:
            reply(_error(c.error or LocalProtocolError("a write completed without a stamp")))
        else:
            reply({"ok": True, "stamp_us": c.stamp.physical_us})

    node.kv.start("put", req.get("namespace"), _b64(req, "key_b64"), _b64(req, "value_b64", empty=True),
                  consistency=_level(req), done=done)


def _nowait_del(node: Any, req: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None:
    def done(c: Completed) -> None:
        reply(_error(c.error) if c.error is not None else {"ok": True})

    node.kv.start("delete", req.get("namespace"), _b64(req, "key_b64"), consistency=_level(req), done=done)


def _nowait_get(node: Any, req: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None:
    def done(c: Completed) -> None:
        if c.error is not None:
            reply(_error(c.error))
            return
        value = None if c.record is None or c.record.is_tombstone else c.record.value
        reply({"ok": True, "found": value is not None, "value_b64": None if value is None else _enc(value)})

    node.kv.start("get", req.get("namespace"), _b64(req, "key_b64"), consistency=_level(req), done=done)


# Point reads and writes are answered without a task waiting (the control socket's fast
# path, NOWAIT_OPS): the connection's task goes back to reading, and the kv service's
# completion writes the answer.
NOWAIT_OPS.update({"kv.put": _nowait_put, "kv.get": _nowait_get, "kv.del": _nowait_del})


CACHE_MB_MAX = 65536


def service_config(synchronous: str | None, cache_mb: int | None = None) -> Any:
    """The agent's kv sync mode and record cache size (`--kv-sync`/`kv_sync`,
    `--kv-cache-mb`/`kv_cache_mb`) as a kv service config; None when neither is set (the
    service's defaults)."""
    from ..runtime._kv import KvServiceConfig

    fields: dict[str, Any] = {}
    if synchronous is not None:
        fields["synchronous"] = synchronous
    if cache_mb is not None:
        fields["cache_mb"] = cache_mb
    return KvServiceConfig(**fields) if fields else None


def check_cache_mb(v: int) -> int:
    """A record cache size in MiB, 0 (no cache) to `CACHE_MB_MAX`; ValueError says what it must be."""
    if not 0 <= v <= CACHE_MB_MAX:
        raise ValueError(f"between 0 (no cache) and {CACHE_MB_MAX} MiB, got {v}")
    return v


def cache_mb_arg(text: str) -> int:
    """`--kv-cache-mb`: an int of MiB, 0 to `CACHE_MB_MAX` (0: no record cache)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {text!r:.40}") from None
    try:
        return check_cache_mb(v)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- command line side --------------------------------------------------------------------


def _text(b64: str) -> str:
    data = base64.b64decode(b64)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + data.hex()


def _key(text: str) -> str:
    data = text.encode("utf-8")
    if not data:
        raise ConfigError("a key cannot be empty")
    return _enc(data)


def _kv(args: argparse.Namespace) -> int:
    path = control_path_from_args(args)
    action = args.kv_command
    fields: dict[str, Any] = {"namespace": args.namespace}
    if action in ("put", "get", "del"):
        fields["key_b64"] = _key(args.key)
        fields["consistency"] = args.consistency
    if action == "put":
        fields["value_b64"] = _enc(args.value.encode("utf-8"))
    if action in ("ls", "watch"):
        fields["prefix_b64"] = _enc(args.prefix.encode("utf-8"))
    if action == "watch":
        return _watch(path, fields)
    if action == "ls":
        fields["limit"] = args.limit
    answer = request_sync(path, f"kv.{action}", timeout_s=args.timeout, fields=fields)
    if action == "get":
        if not answer.get("found"):
            print(f"meshcore kv get: {args.key!r} not found in {args.namespace!r}", file=sys.stderr)
            return 1
        print(_text(answer["value_b64"]))
    elif action == "ls":
        for k, v in answer["items"]:
            print(f"{_text(k)}\t{_text(v)}")
    return 0


def _watch(path: Any, fields: dict[str, Any]) -> int:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            s.connect(str(path))
        except OSError as exc:
            raise ControlError(f"cannot reach the agent at {path}: {exc.strerror or exc}") from None
        s.sendall(json.dumps({**fields, "op": "kv.watch"}).encode() + b"\n")
        f = s.makefile("rb")
        first = json.loads(f.readline() or b"{}")
        if not first.get("ok"):
            raise ControlError(f"the agent refused: {first.get('error', 'no answer')}")
        for raw in f:
            line = json.loads(raw)
            key = _text(line["key_b64"])
            if line["deleted"]:
                print(f"DEL\t{key}", flush=True)
            else:
                print(f"PUT\t{key}\t{_text(line['value_b64'])}", flush=True)
    finally:
        s.close()
    return 0


def _namespace(args: argparse.Namespace) -> int:
    path = control_path_from_args(args)
    if args.ns_command == "create":
        regions = [r.strip() for r in (args.regions or "").split(",") if r.strip()]
        answer = request_sync(path, "namespace.create", timeout_s=args.timeout,
                              fields={"name": args.name_, "replicas": args.replicas, "regions": regions})
        ns = answer["namespace"]
        print(f"namespace {ns['name']} replicas={ns['replicas']} regions={','.join(ns['regions']) or 'any'}")
        return 0
    answer = request_sync(path, "namespace.list", timeout_s=args.timeout)
    for ns in answer["namespaces"]:
        print(f"{ns['name']}\treplicas={ns['replicas']}\tregions={','.join(ns['regions']) or 'any'}")
    return 0


def register(subparsers: Any) -> None:
    """Add `kv` and `namespace` to the main CLI's subparsers."""
    kv = subparsers.add_parser("kv", help="read and write the replicated key-value store")
    sub = kv.add_subparsers(dest="kv_command", metavar="ACTION", required=True)
    for name, helptext in (("put", "write a value"), ("get", "read a value"), ("del", "delete a key"),
                           ("ls", "list keys (and values) by prefix"), ("watch", "print changes applied here")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("namespace", metavar="NS")
        if name in ("put", "get", "del"):
            p.add_argument("key", metavar="KEY")
        if name == "put":
            p.add_argument("value", metavar="VALUE")
        if name in ("put", "get", "del"):
            p.add_argument("--consistency", choices=LEVELS, default="quorum")
        if name in ("ls", "watch"):
            p.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
        if name == "ls":
            p.add_argument("--limit", type=int, default=LS_LIMIT_DEFAULT)
        _add_target(p)
        p.set_defaults(func=_kv)
    ns = subparsers.add_parser("namespace", help="define and list key-value namespaces")
    nsub = ns.add_subparsers(dest="ns_command", metavar="ACTION", required=True)
    c = nsub.add_parser("create", help="define a namespace cluster-wide")
    c.add_argument("name_", metavar="NAME")
    c.add_argument("--replicas", type=int, default=2)
    c.add_argument("--regions", metavar="R1,R2", help="regions allowed to hold the data (default: any)")
    _add_target(c)
    c.set_defaults(func=_namespace)
    ls = nsub.add_parser("list", help="list the namespaces the agent knows")
    _add_target(ls)
    ls.set_defaults(func=_namespace)
