"""`meshcore agent`: run one node until SIGINT/SIGTERM (or a control `leave`), then leave.

Settings come from an optional TOML file (`--config`) and flags; a flag wins over the file.
Both are untrusted input: every problem becomes a `ConfigError` with a one-line message.
File keys: bind, advertise, join (list), name, site, region, roles (list), tags (table), profile,
control, key, cert, authorities (list), revocations, insecure (bool), ws_bind, log_level.

Secure by default: the agent needs --key, --cert and --authority (the credentials are
loaded and checked before anything binds; a missing, expired or foreign credential is one
line naming the file and the fix, exit 2). --insecure runs without them, loudly.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import signal
import socket
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import trio

from ..errors import ConfigError
from ..node import PROFILES, NodeConfig, open_node, parse_addr, resolve_signing_key
from ..runtime import no_wakeup_preemption
from . import _kv as _kv_ops  # noqa: F401  (registers the kv control ops)
from ._control import check_control_path, default_control_path, serve_control

__all__ = ["add_agent_parser", "agent_settings", "run_agent"]

log = logging.getLogger("meshcore.agent")

DEFAULT_PORT = 7946
CONFIG_BYTES_MAX = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
_FILE_KEYS = {
    "bind": str,
    "advertise": str,
    "join": list,
    "name": str,
    "site": str,
    "region": str,
    "roles": list,
    "tags": dict,
    "profile": str,
    "control": str,
    "key": str,
    "cert": str,
    "authorities": list,
    "revocations": str,
    "insecure": bool,
    "ws_bind": str,
    "log_level": str,
    "data_dir": str,  # kv layer
    "kv_port": int,  # kv layer
    "kv_sync": str,  # kv layer
    "kv_cache_mb": int,  # kv layer
}


def add_agent_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "agent", help="run a node until SIGINT/SIGTERM", description=__doc__
    )
    p.add_argument("--bind", metavar="HOST:PORT", help=f"UDP+TCP address (default 127.0.0.1:{DEFAULT_PORT}; port 0: any)")
    p.add_argument("--advertise", metavar="HOST:PORT", help="address peers use (needed with a wildcard --bind)")
    p.add_argument("--join", metavar="HOST:PORT", action="append",
                   help="seed to join, HOST:PORT or ws://HOST:PORT (repeatable)")
    p.add_argument("--name", help="node name (default: the host name)")
    p.add_argument("--site", help="site (micro-datacenter) name")
    p.add_argument("--region", help="region / territory")
    p.add_argument("--role", action="append", dest="roles", metavar="ROLE", help="role (repeatable)")
    p.add_argument("--tag", action="append", dest="tags", metavar="K=V", help="tag (repeatable)")
    p.add_argument("--profile", help=f"timing profile: {', '.join(PROFILES)} (default lan)")
    p.add_argument("--config", metavar="FILE.toml", help="read settings from this TOML file")
    p.add_argument("--control", metavar="PATH", help="control socket path (default: per node name)")
    p.add_argument("--key", metavar="PATH", help="node key file (from `meshcore keygen`)")
    p.add_argument("--cert", metavar="PATH", help="node certificate (from `meshcore authority sign`)")
    p.add_argument("--authority", action="append", dest="authorities", metavar="PATH",
                   help="trusted authority.pub (repeatable: two during a key rollover)")
    p.add_argument("--revocations", metavar="PATH", help="revocation store (read and appended)")
    p.add_argument("--ws-bind", metavar="HOST:PORT", help="also accept links over WebSocket here")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="no authentication, no encryption: local experiments only")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="log verbosity (default info)")
    # kv layer (meshcore.cli._kv)
    p.add_argument("--data-dir", metavar="PATH", help="store key-value data here (enables `meshcore kv`)")
    p.add_argument("--kv-port", type=int, metavar="PORT", help="kv service TCP port (default: bind port + 1, or any free port if that one is taken)")
    p.add_argument("--kv-sync", choices=_kv_ops.SYNC_MODES,
                   help="kv store fsync: full (default; survives power loss) or normal (process crashes only)")
    p.add_argument("--kv-cache-mb", type=_kv_ops.cache_mb_arg, metavar="MIB",
                   help="memory for the kv store's record cache, which answers reads (default 32; 0: none)")
    return p


def _read_toml(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = p.read_bytes()[: CONFIG_BYTES_MAX + 1]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    if len(raw) > CONFIG_BYTES_MAX:
        raise ConfigError(f"{path}: config file is larger than {CONFIG_BYTES_MAX} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for key, value in data.items():
        expected = _FILE_KEYS.get(key)
        if expected is None:
            raise ConfigError(f"{path}: unknown setting {key!r}; known: {', '.join(_FILE_KEYS)}")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):  # true is no port
            raise ConfigError(f"{path}: {key} must be a {expected.__name__}, got {type(value).__name__}")
    for key in ("join", "roles"):
        if key in data and not all(isinstance(v, str) for v in data[key]):
            raise ConfigError(f"{path}: {key} must be a list of strings")
    if "profile" in data and data["profile"] not in PROFILES:
        raise ConfigError(f"{path}: profile {data['profile']!r} is unknown; choose one of {', '.join(PROFILES)}")
    if "tags" in data and not all(isinstance(v, str) for v in data["tags"].values()):
        raise ConfigError(f"{path}: tags values must be strings")
    if "kv_sync" in data and data["kv_sync"] not in _kv_ops.SYNC_MODES:
        raise ConfigError(f"{path}: kv_sync {data['kv_sync']!r:.40} is unknown; choose one of "
                          f"{', '.join(_kv_ops.SYNC_MODES)}")
    if "kv_cache_mb" in data:
        try:
            _kv_ops.check_cache_mb(data["kv_cache_mb"])
        except ValueError as exc:
            raise ConfigError(f"{path}: kv_cache_mb must be {exc}") from None
    return data


def _parse_tags(items: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag {item!r} must be KEY=VALUE")
        if key in tags:
            raise ConfigError(f"--tag {key!r} is given twice")
        tags[key] = value
    return tags


def agent_settings(args: argparse.Namespace) -> tuple[NodeConfig, Path, str]:
    """Merge the config file and the flags into (NodeConfig, control path, log level)."""
    file: dict[str, Any] = _read_toml(args.config) if args.config else {}

    def pick(flag: Any, key: str, default: Any) -> Any:
        return flag if flag is not None else file.get(key, default)

    bind = parse_addr(pick(args.bind, "bind", f"127.0.0.1:{DEFAULT_PORT}"), what="--bind", default_port=DEFAULT_PORT)
    joins = pick(args.join, "join", [])
    seeds = tuple(
        j if j.strip().startswith("ws://") else parse_addr(j, what="--join", default_port=DEFAULT_PORT)
        for j in joins
    )
    name = pick(args.name, "name", None) or socket.gethostname()
    tags = _parse_tags(args.tags) if args.tags is not None else dict(file.get("tags", {}))
    level = pick(args.log_level, "log_level", "info")
    if level not in LOG_LEVELS:
        raise ConfigError(f"log level {level!r} is unknown; choose one of {', '.join(LOG_LEVELS)}")
    key_path = pick(args.key, "key", None)
    advertise = pick(args.advertise, "advertise", None)
    insecure = bool(pick(args.insecure, "insecure", False))
    ws_bind = pick(args.ws_bind, "ws_bind", None)
    authorities = pick(args.authorities, "authorities", [])
    if not all(isinstance(a, str) for a in authorities):
        raise ConfigError("authorities must be a list of file paths")
    config = NodeConfig(
        host=bind[0],
        port=bind[1],
        advertise=parse_addr(advertise, what="--advertise", default_port=0) if advertise else None,
        seeds=seeds,
        name=name,
        site=pick(args.site, "site", ""),
        region=pick(args.region, "region", ""),
        roles=tuple(pick(args.roles, "roles", [])),
        tags=tags,
        profile=pick(args.profile, "profile", "lan"),
        key=(resolve_signing_key(key_path) if insecure else key_path) if key_path else None,
        cert=pick(args.cert, "cert", None),
        authorities=tuple(authorities),
        revocations=pick(args.revocations, "revocations", None),
        insecure=insecure,
        ws_bind=parse_addr(ws_bind, what="--ws-bind") if ws_bind else None,
        data_dir=pick(args.data_dir, "data_dir", None),  # kv layer
        kv_port=pick(args.kv_port, "kv_port", None),
        kv=_kv_ops.service_config(pick(args.kv_sync, "kv_sync", None), pick(args.kv_cache_mb, "kv_cache_mb", None)),
    )
    # Load and check the credentials now: a bad one is a one-line error before anything binds.
    credentials = config.load_credentials(time.time())
    if credentials is not None:
        config = dataclasses.replace(config, credentials=credentials)
    control_text = pick(args.control, "control", None)
    control = Path(control_text) if control_text else default_control_path(name)
    check_control_path(control)
    return config, control, level


#: Allocations between two young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 20_000


#: How long a thread may hold the GIL while another waits (CPython's default is 5 ms).
GIL_SWITCH_INTERVAL_S = 0.05


def _tune_runtime() -> None:
    """Once the node is up, three settings for a busy agent (the kv benchmark's quorum
    puts, both variants loaded at once, CPU per put new/old):

    - GC: leave what start-up built out of every later collection (`gc.freeze`), and
      collect the young generation every 20,000 allocations instead of 700. A busy agent
      allocates a few thousand short-lived objects per request; with the defaults the
      collector ran several times per request and rescanned the long-lived state
      (members, rings, caches). About 4 % less CPU; cyclic garbage lives longer.
    - GIL: the store's writer thread and the trio thread share the GIL; with CPython's
      5 ms switch interval the two were forced to hand it over again and again (each a
      pair of futex calls and context switches). The trio thread gives the GIL up at every
      system call anyway (each socket read and write, each epoll wait), so a longer
      interval only removes the forced hand-overs: 0.05 s gave 0.960 0.940 0.958 0.930 of
      the CPU per put and a higher put rate; 0.5 s gave no more.
    - Scheduling: the calling (trio) thread becomes SCHED_BATCH (`no_wakeup_preemption`,
      as the store's writer thread and sync helper already are; threads started later
      inherit it). Every request wakes other processes: peers over the kv links, the client
      over the control socket. A normal thread woken that way may preempt its waker in
      the middle of a scheduling round, before the waker has written its other batches; a
      SCHED_BATCH thread waits for the next tick or a free core, with the same share of
      the CPU. On a loaded host the waker finishes its round and the woken one finds more
      work per wake-up. It changes nothing on an idle host (a free core runs the woken
      thread at once); SWIM's timeouts are hundreds of times longer than a tick.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    if not no_wakeup_preemption():
        log.debug("the agent's thread stays SCHED_OTHER")


async def run_agent(config: NodeConfig, control: Path) -> None:
    """Run until a signal or a control `leave`, then leave gracefully."""
    # trio re-raises signals still queued when the receiver closes, with the handlers it
    # found on entry. Ignoring them on entry means a second SIGTERM from an impatient
    # supervisor cannot turn a finished graceful leave into death by signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(config) as node:
            leave_now = trio.Event()
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_control, control, node, leave_now.set)
                _tune_runtime()
                host, port = node.addr
                ws = getattr(node.transport, "ws_addr", None)
                print(
                    f"meshcore agent {node.node_id.hex()[:8]} name={config.name} "
                    f"listening on {host}:{port} control={control}"
                    + (f" ws=ws://{ws[0]}:{ws[1]}/" if ws else "")
                    + ("" if config.credentials is not None else " INSECURE"),
                    flush=True,
                )

                async def wait_signal() -> None:
                    async for signum in signals:
                        log.info("received %s: leaving the mesh", signal.Signals(signum).name)
                        leave_now.set()
                        return

                nursery.start_soon(wait_signal)
                await leave_now.wait()
                await node.leave()
                nursery.cancel_scope.cancel()
    print("meshcore agent left the mesh", file=sys.stderr, flush=True)
