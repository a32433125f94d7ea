"""`node.kv`: the public key-value API of a node, and its wiring into the node.

    await node.kv.create_namespace("photos", replicas=2, regions=["occitanie"])
    stamp = await node.kv.put("photos", "cat", b"...", consistency="quorum")
    value = await node.kv.get("photos", "cat")            # None: absent or deleted
    await node.kv.delete("photos", "cat")
    async for key, value in node.kv.scan("photos", "ca"): ...   (a list, really: see scan)
    async with node.kv.watch("photos", "ca") as changes: async for change in changes: ...

The layer runs only on a node started with `data_dir` (agent `--data-dir`); elsewhere every
call raises `LocalProtocolError` saying how to enable it. Bad input (unknown namespace, a
value that is not bytes or too large, an unknown consistency level, a region no node is
in) raises before anything is stored.

Placement uses each node's CERTIFIED site and region on a secure node (metadata only on an
insecure one); a node naming no site is its own site.

Wiring (`KvTap`): the node's event router publishes through the tap, which hands member
events to the service and swallows namespace broadcasts (prefix `NS_BROADCAST_PREFIX`),
so `node.events()` subscribers never see them. `run_node_kv` opens the store in
`data_dir`, listens on `kv_port` (default: the SWIM port + 1, or any free port if that one
is taken; 0 = any), advertises the port in the node's `kv` metadata tag, feeds the current
members, then runs the service.
Namespaces are gossiped when created and pulled from each kv peer that comes alive.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import trio

from .._types import Addr, NodeId
from ..errors import ConfigError, LocalProtocolError, NamespaceError, RecordError
from ..kv import VALUE_BYTES_MAX, Completed, Namespace, Stamp, as_key, encode_namespace
from ..runtime._kv import KvService, KvServiceConfig, Watch, sites_and_region
from ..runtime._kvstore import KvReader
from ..runtime._security import MeshSecurity
from ..runtime._storage import open_store
from ..swim._effects import EventKind, Member, MemberEvent, UserBroadcast


class KvHost(Protocol):
    """What the kv layer uses of its node (a `Node`): this module does not import `_node`,
    which imports it."""

    @property
    def node_id(self) -> NodeId: ...

    @property
    def addr(self) -> Addr: ...

    @property
    def security(self) -> MeshSecurity | None: ...

    def members(self) -> list[Member]: ...

    def member(self, node: NodeId) -> Member | None: ...

    async def broadcast(self, payload: bytes) -> None: ...

    async def update_metadata(self, meta: Any = None, **fields: Any) -> None: ...

__all__ = ["NodeKv", "KvTap", "run_node_kv", "KV_TAG", "NS_BROADCAST_PREFIX", "STORE_FILE"]

log = logging.getLogger("meshcore.kv")

KV_TAG = "kv"
NS_BROADCAST_PREFIX = b"\x00meshcore-kv\x00ns\x00"
STORE_FILE = "kv.sqlite3"
SCAN_KEYS_MAX = 100_000
_UP = (EventKind.JOINED, EventKind.ALIVE, EventKind.UPDATED)
_DISABLED = ("this node has no --data-dir; start the agent with --data-dir PATH to store data "
             "(NodeConfig(data_dir=...) in code)")


class KvTap:
    """Sits between the node's event router and its event hub (see the module docstring)."""

    def __init__(self, publish: Callable[[Any], None]) -> None:
        self._publish = publish
        self.service: KvService | None = None
        self.security: Any = None
        self.self_id: bytes = b""
        self.broadcasts_send, self.broadcasts_receive = trio.open_memory_channel[bytes](256)
        self.dropped = 0

    def publish(self, event: Any) -> None:
        if type(event) is UserBroadcast and event.payload.startswith(NS_BROADCAST_PREFIX):
            try:
                self.broadcasts_send.send_nowait(event.payload[len(NS_BROADCAST_PREFIX):])
            except trio.WouldBlock:
                self.dropped += 1
            return
        if type(event) is MemberEvent and self.service is not None:
            feed_member(self.service, event.member, event.kind in _UP, self.security,
                        left=event.kind is EventKind.LEFT)
        self._publish(event)


def certificate_of(security: Any, node: bytes) -> Any:
    """The admitted certificate of `node` (None: insecure node, or not admitted).

    Reads the security layer's admission cache; every member a secure node sees was admitted
    by its certificate first, so placement uses certified sites and regions everywhere."""
    if security is None:
        return None
    if node == security.node_id:
        return security.credentials.certificate
    admitted = getattr(security, "_admitted", None) or {}
    for cert in reversed(list(admitted.values())):
        if cert.node_id == node:
            return cert
    return None


def placement_of(security: Any, node: bytes, meta: Any) -> tuple[str, str]:
    """(site, region) for placement: certified when the node is secure, else metadata."""
    cert = certificate_of(security, node)
    if cert is not None:
        return sites_and_region(cert.site, cert.region, node)
    return sites_and_region(meta.site, meta.region, node)


def feed_member(service: KvService, m: Member, up: bool, security: Any = None, *,
                left: bool = False) -> None:
    """Tell the kv service what membership saw: up, down, or `left` (gone for good: its
    ranges get new homes; a suspect or dead member keeps its place, stand-ins cover it)."""
    if m.node == service.me.node:
        return
    port_text = m.meta.tag_dict.get(KV_TAG)
    if not up:
        if left:
            service.member_left(m.node)
        else:
            service.member_down(m.node)
        return
    try:
        port = int(port_text) if port_text is not None else 0
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        return  # not a storage node (or a bad tag): never placed on the ring
    site, region = placement_of(security, m.node, m.meta)
    service.member_up(m.node, (m.addr[0], port), site, region)


def _check_value(value: object) -> None:
    if type(value) is not bytes:
        raise RecordError(f"a value is bytes, got {type(value).__name__}; encode it first")
    if len(value) > VALUE_BYTES_MAX:
        raise RecordError(f"a value is at most {VALUE_BYTES_MAX} bytes, got {len(value)}")


class NodeKv:
    """The `node.kv` object (see the module docstring)."""

    def __init__(self, service: KvService | None = None) -> None:
        self._service = service

    @property
    def enabled(self) -> bool:
        return self._service is not None

    @property
    def service(self) -> KvService:
        if self._service is None:
            raise LocalProtocolError(_DISABLED)
        return self._service

    @property
    def port(self) -> int:
        return self.service.port

    async def put(self, namespace: str, key: bytes | str, value: bytes, *,
                  consistency: str = "quorum") -> Stamp:
        """Write `value` under `key`; returns the version written once `consistency` holds."""
        svc = self.service
        _check_value(value)
        return await svc.put(namespace, key, value, consistency)

    def start(self, op: str, namespace: str, key: bytes | str, value: bytes | None = None, *,
              consistency: str = "quorum", done: Callable[[Completed], None]) -> None:
        """`put`, `delete` or `get` (`op`) without awaiting it: `done(completed)` runs on the
        trio thread once it finished (`completed.error` set if it failed; `.stamp` or
        `.record` otherwise) and must not raise. Bad input raises here, as `put` does."""
        if op == "put":
            _check_value(value)
        self.service.start(op, namespace, key, value, consistency=consistency, done=done)

    async def delete(self, namespace: str, key: bytes | str, *, consistency: str = "quorum") -> Stamp:
        return await self.service.delete(namespace, key, consistency)

    async def get(self, namespace: str, key: bytes | str, *, consistency: str = "quorum") -> bytes | None:
        rec = await self.service.get_record(namespace, key, consistency)
        return None if rec is None or rec.is_tombstone else rec.value

    async def scan(self, namespace: str, prefix: bytes | str = b"", *,
                   limit: int = 10_000) -> list[tuple[bytes, bytes]]:
        """(key, value) of the live keys starting with `prefix`, in key order, merged from
        every live replica (newest version wins); at most `limit` keys."""
        if type(limit) is not int or not 1 <= limit <= SCAN_KEYS_MAX:
            raise LocalProtocolError(f"limit must be an int in 1..{SCAN_KEYS_MAX}")
        p = as_key(prefix) if prefix else b""
        records = await self.service.scan(namespace, p, limit)
        return [(r.key, r.value) for r in records if r.value is not None]

    def watch(self, namespace: str, prefix: bytes | str = b"") -> Watch:
        """Changes applied on this node (as a replica) to keys with `prefix`; use as
        `async with node.kv.watch(ns) as w: async for change in w: ...`. Versions of one key
        that land in the same group commit may come as the newest one only."""
        return self.service.watch(namespace, as_key(prefix) if prefix else b"")

    def namespaces(self) -> list[Namespace]:
        return self.service.namespaces()

    async def create_namespace(self, name: str, *, replicas: int = 2,
                               regions: Iterable[str] = ()) -> Namespace:
        """Define a namespace cluster-wide (persisted here, gossiped, pulled by late joiners)."""
        svc = self.service
        if isinstance(regions, (str, bytes)):
            raise NamespaceError("regions is a list of region names, e.g. ['occitanie', 'paca']")
        ns = Namespace(name=name, replicas=replicas, regions=tuple(regions))
        svc.check_regions(ns)
        await svc.define(ns)
        return ns

    def statistics(self) -> dict[str, Any]:
        return self.service.statistics()


async def _gossip_namespace(node: KvHost, ns: Namespace) -> None:
    try:
        await node.broadcast(NS_BROADCAST_PREFIX + encode_namespace(ns))
    except LocalProtocolError as exc:
        log.warning("cannot gossip namespace %r: %s", ns.name, exc)


async def listen_kv(service: Any, host: str, kv_port: int | None, swim_port: int) -> Any:
    """Bind the kv port: `kv_port` if one was asked for (a port in use is then the
    service's clear `ConfigError`), else the SWIM port + 1, or any free port when that
    one is taken (by another program's ephemeral port, say). Peers learn the port from
    the node's `kv` metadata tag, so the fallback needs no configuration anywhere."""
    if kv_port is not None:
        return await service.listen(host, kv_port)
    preferred = swim_port + 1 if 0 < swim_port < 65535 else 0
    try:
        return await service.listen(host, preferred)
    except ConfigError:
        if preferred == 0:
            raise
        log.info("kv: port %d (the SWIM port + 1) is in use; listening on a free port instead", preferred)
        return await service.listen(host, 0)


async def run_node_kv(node: KvHost, config: Any, tap: KvTap, wrap: Any, secure: bool,
                      rng: random.Random, *, task_status: trio.TaskStatus[NodeKv] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the kv layer of `node` for as long as this task lives (see the module doc)."""
    data_dir = Path(config.data_dir)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalProtocolError(f"cannot create the data directory {data_dir}: {exc.strerror or exc}") from None
    svc_config: KvServiceConfig = config.kv if config.kv is not None else KvServiceConfig()
    me_member = node.member(node.node_id)
    assert me_member is not None
    site, region = placement_of(node.security, node.node_id, me_member.meta)
    from ..kv import RingMember

    path = data_dir / STORE_FILE
    async with open_store(path, synchronous=svc_config.synchronous,  # type: ignore[arg-type]
                          cache_bytes=svc_config.cache_mb * 1024 * 1024) as store:
        reader = KvReader(path)
        try:
            service = KvService(me=RingMember(node.node_id, site, region), store=store, reader=reader,
                                wrap=wrap, secure=secure, config=svc_config, rng=rng)
            listeners = await listen_kv(service, node.addr[0], config.kv_port, node.addr[1])
            async with trio.open_nursery() as nursery:
                port = await nursery.start(service.run, listeners)
                tags = dict(me_member.meta.tag_dict)
                tags[KV_TAG] = str(port)
                await node.update_metadata(tags=tags)

                def spread(ns: Namespace) -> None:
                    nursery.start_soon(_gossip_namespace, node, ns)

                service.on_namespace = spread
                tap.service, tap.security = service, node.security
                for m in node.members():
                    feed_member(service, m, m.status == 0, node.security, left=m.status == 3)
                nursery.start_soon(_learn_gossip, service, tap)
                task_status.started(NodeKv(service))
        finally:
            tap.service = None
            reader.close()


async def _learn_gossip(service: KvService, tap: KvTap) -> None:
    async for blob in tap.broadcasts_receive:
        await service.learn_namespace(blob)


def kv_stream_wrapper(security: Any, wall_clock: Callable[[], float]) -> Any:
    """The node's stream security for kv links: Noise with certificates on a secure node
    (without the SWIM side's callbacks, which would take the kv port for a datagram
    address), plain framing on an insecure one."""
    if security is None:
        from ..runtime import plain_stream_wrapper

        return plain_stream_wrapper
    from ..runtime._securelink import SecureStreamWrapper

    return SecureStreamWrapper(security.link, wall_clock=wall_clock)
