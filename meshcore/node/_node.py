"""The public node: `async with open_node(config) as node: ...`.

`open_node` loads the node's credentials, binds the transport (plus a WebSocket listener
when asked), builds the SWIM core with the node's identity and certificate, plugs the
security layer into the driver's seams (sealed datagrams, Noise streams, admission of every
member by its certificate), and runs the driver in a nursery for the life of the
`async with`. A revocation (`add_revocations`, or gossiped by a peer) expels the node from
the view, is gossiped on and persisted, and is re-announced now and then. Leaving the block stops the node
abruptly (peers will detect it as failed); call `await node.leave()` first for a graceful
exit. Reads (`members`, `statistics`) call the core directly: trio runs one task at a time
and these calls never await, so they cannot interleave with the driver's changes; writes
(`broadcast`, `update_metadata`, `leave`) go through the driver task.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .._types import Addr, NodeId, node_id_from_public_key
from ..errors import ConfigError, CredentialError, LocalProtocolError
from ..runtime import (
    DatagramSealer,
    Driver,
    DriverStatistics,
    PlainSealer,
    SealerStatistics,
    StreamWrapper,
    Transport,
    TransportStatistics,
    open_udp_tcp_transport,
    plain_stream_wrapper,
)
from ..runtime._security import MeshSecurity
from ..runtime._ws import WebSocketTransport, ws_url
from ..swim._effects import Effect, Member
from ..wire import ALIVE_CERT_BYTES_MAX, NodeMeta
from ..wire._messages import USER_PAYLOAD_BYTES_MAX
from ._config import NodeConfig, advertised_addr, resolve_signing_key
from ._events import EventHub, Subscription
from ._kv import KvTap, NodeKv, kv_stream_wrapper, run_node_kv  # the kv layer
from ._wiring import WS_TAG, EventRouter, rebroadcast_interval_s

if TYPE_CHECKING:
    from ..swim import Swim

__all__ = ["Node", "NodeStatistics", "open_node"]

#: Gossip rounds `leave()` waits for by default, so the leave reaches everyone before we go.
LEAVE_LINGER_GOSSIP_ROUNDS = 8
LEAVE_LINGER_S_MAX = 5.0
#: The whole cluster re-announces its known revocations about once per this many seconds.
REVOCATION_REBROADCAST_BASE_S = 10.0

log = logging.getLogger("meshcore.node")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatistics:
    node_id: str
    addr: Addr
    members_alive: int
    members_total: int
    udp_bytes_sent: int
    tcp_bytes_sent: int
    events_published: int
    events_dropped: int
    transport: TransportStatistics
    driver: DriverStatistics
    sealer: SealerStatistics
    swim: Any  # meshcore.swim.SwimStatistics
    #: False only for a node started with insecure=True.
    secure: bool
    #: Every drop by name: security (bad MAC, replay, unknown sender, certificate refusals,
    #: handshake failures, rate limits, unsealable destinations) and driver/core drops.
    drops: Mapping[str, int]

    @property
    def bytes_sent(self) -> int:
        return self.udp_bytes_sent + self.tcp_bytes_sent


class Node:
    """A running meshcore node. Build it with `open_node`."""

    #: The key-value API (meshcore.node._kv); disabled unless the config has a data_dir.
    kv: NodeKv = NodeKv()

    def __init__(
        self,
        *,
        core: Swim,
        driver: Driver,
        transport: Transport,
        sealer: DatagramSealer,
        hub: EventHub,
        leave_linger_s: float,
        stop: trio.CancelScope,
        security: MeshSecurity | None = None,
        router: EventRouter | None = None,
    ) -> None:
        self._security = security
        self._router = router
        self._core = core
        self._driver = driver
        self._transport = transport
        self._sealer = sealer
        self._hub = hub
        self._leave_linger_s = leave_linger_s
        self._stop = stop
        self._left = False

    @property
    def node_id(self) -> NodeId:
        return self._core.node_id

    @property
    def addr(self) -> Addr:
        return self._transport.local_addr

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def has_left(self) -> bool:
        return self._left

    def members(self) -> list[Member]:
        """Every member this node knows of, itself included, sorted by node id."""
        return self._core.members()

    def member(self, node: NodeId) -> Member | None:
        return self._core.member(node)

    def checksum(self) -> str:
        return self._core.checksum()

    def events(self, *, buffer_max: int | None = None) -> Subscription:
        """Subscribe to membership events and user broadcasts from now on.

        Use as `async for event in node.events(): ...` (or `async with` to unsubscribe on
        exit). A slow consumer loses its oldest events (`subscription.dropped`).
        """
        return self._hub.subscribe(buffer_max)

    def _check_running(self, what: str) -> None:
        if self._left:
            raise LocalProtocolError(f"cannot {what}: this node has left the mesh")

    async def broadcast(self, payload: bytes) -> None:
        """Gossip `payload` to every member (at most once each, best effort)."""
        self._check_running("broadcast")
        if type(payload) is not bytes or len(payload) > USER_PAYLOAD_BYTES_MAX:
            raise LocalProtocolError(
                f"payload must be bytes of at most {USER_PAYLOAD_BYTES_MAX}; "
                "send larger data over a stream"
            )
        await self._driver.call(lambda now: self._core.broadcast(now, payload))

    async def update_metadata(self, meta: NodeMeta | None = None, **fields: Any) -> None:
        """Replace the node's metadata (`meta`), or change some fields of it
        (`name=`, `site=`, `region=`, `roles=`, `tags=` as a dict)."""
        self._check_running("update metadata")
        if meta is None:
            current = self._core.member(self._core.node_id)
            base = current.meta if current is not None else NodeMeta()
            unknown = set(fields) - {"name", "site", "region", "roles", "tags"}
            if unknown:
                raise LocalProtocolError(f"unknown metadata fields: {', '.join(sorted(unknown))}")
            tags = fields.pop("tags", None)
            merged: dict[str, Any] = {
                "name": base.name,
                "site": base.site,
                "region": base.region,
                "roles": base.roles,
                "tags": base.tag_dict,
            }
            merged.update(fields)
            if tags is not None:
                merged["tags"] = dict(tags) if isinstance(tags, Mapping) else dict(tags)
            try:
                meta = NodeMeta.build(**merged)
            except ValueError as exc:
                raise LocalProtocolError(f"bad metadata: {exc}") from None
        new_meta = meta
        await self._driver.call(lambda now: self._core.update_metadata(now, new_meta))

    async def leave(self) -> None:
        """Leave gracefully: gossip the leave for a short while, then stop serving."""
        if self._left:
            return
        await self._driver.call(lambda now: self._core.leave(now))
        self._left = True
        await trio.sleep(self._leave_linger_s)
        self._stop.cancel()

    @property
    def security(self) -> MeshSecurity | None:
        """The node's security layer (None when running insecure)."""
        return self._security

    async def add_revocations(self, revocations: Iterable[bytes]) -> list[NodeId]:
        """Apply signed revocations (each the bytes of one `Revocation`): verify them
        against the trusted authorities, persist them, expel each newly revoked node from
        the view and gossip the revocation. Returns the newly revoked nodes. Raises
        `CertificateError` for one not signed by a trusted authority (nothing is applied
        after it)."""
        if self._security is None:
            raise LocalProtocolError("this node runs insecure: it has no authority to check revocations against")
        revoked: list[NodeId] = []
        for data in revocations:
            node = self._security.add_revocation(data)
            if node is not None:
                await self._expel_and_gossip(node, data)
                revoked.append(node)
        return revoked

    async def _expel_and_gossip(self, node: NodeId, data: bytes | None) -> None:
        from ..runtime._security import REVOCATION_PREFIX

        def apply(now: float) -> list[Effect]:
            out: list[Effect] = []
            if node != self._core.node_id:
                out += self._core.expel(now, node, "revoked")
            if data is not None:
                out += self._core.broadcast(now, REVOCATION_PREFIX + data)
            return out

        await self._driver.call(apply)

    async def _serve_system(self, rng: random.Random) -> None:
        """Apply gossiped system messages; re-announce known revocations now and then."""
        assert self._security is not None and self._router is not None
        security, receive = self._security, self._router.system_receive
        while True:
            wait_s = rebroadcast_interval_s(
                REVOCATION_REBROADCAST_BASE_S, self.statistics_alive(), rng
            )
            with trio.move_on_after(wait_s):
                payload = await receive.receive()
                node = security.on_system_broadcast(payload)
                if node is not None:
                    # Gossip already carries it on (the core forwards what it received).
                    await self._expel_and_gossip(node, None)
                continue
            if self._left:
                continue
            for payload in security.revocation_payloads():
                await self._driver.call(functools.partial(self._core.broadcast, payload=payload))

    def statistics_alive(self) -> int:
        return sum(1 for m in self._core.members() if m.status == 0)

    def statistics(self) -> NodeStatistics:
        t = self._transport.statistics()
        members = self._core.members()
        return NodeStatistics(
            node_id=self.node_id.hex(),
            addr=self.addr,
            members_alive=sum(1 for m in members if m.status == 0),
            members_total=len(members),
            udp_bytes_sent=t.datagram_bytes_sent,
            tcp_bytes_sent=t.stream_bytes_sent,
            events_published=self._hub.published,
            events_dropped=self._hub.dropped_total,
            transport=t,
            driver=self._driver.statistics(),
            sealer=self._sealer.statistics(),
            swim=self._core.statistics(),
            secure=self._security is not None,
            drops=self._drops(),
        )

    def _drops(self) -> dict[str, int]:
        drops: dict[str, int] = {}
        if self._security is not None:
            drops.update(self._security.drop_counts())
        d = self._driver.statistics()
        for name in ("datagrams_unsealable", "datagrams_dropped_inbox_full", "stream_requests_in_bad"):
            value = getattr(d, name)
            if value:
                drops[f"driver:{name}"] = value
        for reason, n in getattr(self._core.statistics(), "dropped", ()):
            drops[f"swim:{reason}"] = n
        if self._router is not None:
            if self._router.system_dropped:
                drops["system_queue_full"] = self._router.system_dropped
            if self._router.system_foreign:
                drops["system_message_insecure"] = self._router.system_foreign
        return drops


def _swim_config(config: NodeConfig) -> Any:
    from ..swim import SwimConfig

    try:
        return SwimConfig.profile(config.profile, **dict(config.swim_overrides))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"timing profile {config.profile!r}: {exc}") from None


def _leave_linger_s(config: NodeConfig, swim_config: Any) -> float:
    if config.leave_linger_s is not None:
        return float(config.leave_linger_s)
    gossip_s = float(getattr(swim_config, "gossip_interval_s", 0.2))
    return min(LEAVE_LINGER_S_MAX, LEAVE_LINGER_GOSSIP_ROUNDS * gossip_s)


def _security_kwargs(swim_class: type, security: MeshSecurity | None) -> dict[str, Any]:
    """The Swim constructor's security arguments (certificates travel in Alive records and
    every record is admitted before its signature is checked, when the core supports it)."""
    if security is None:
        return {}
    kwargs: dict[str, Any] = {"signer": security.signer, "verifier": security.verifier}
    params = inspect.signature(swim_class).parameters
    if "cert" in params and "admit" in params:
        kwargs["cert"] = security.cert_bytes
        kwargs["admit"] = security.admit
    return kwargs


def _open_security(config: NodeConfig, wall_clock: Callable[[], float]) -> MeshSecurity | None:
    credentials = config.load_credentials(wall_clock())
    if credentials is None:
        log.warning(
            "INSECURE: this node runs without authentication or encryption (--insecure); "
            "any host can join and read the traffic. Never use this outside a local experiment."
        )
        return None
    from ..security import RevocationStore

    cert_bytes = credentials.certificate.encode()
    if len(cert_bytes) > ALIVE_CERT_BYTES_MAX:
        raise CredentialError(
            f"{config.cert or 'the certificate'}: {len(cert_bytes)} bytes, but at most "
            f"{ALIVE_CERT_BYTES_MAX} travel in membership records; have it reissued with "
            "shorter name/site/region/roles"
        )
    store = RevocationStore(config.revocations) if config.revocations is not None else None
    return MeshSecurity(credentials, wall_clock=wall_clock, revocation_store=store)


def _meta_with_ws(config: NodeConfig, ws_addr: Addr | None) -> NodeMeta:
    meta = config.meta()
    if ws_addr is None:
        return meta
    tags = dict(meta.tags)
    tags[WS_TAG] = ws_url(ws_addr)
    try:
        return NodeMeta.build(name=meta.name, site=meta.site, region=meta.region,
                              roles=list(meta.roles), tags=tags)
    except ValueError as exc:
        raise ConfigError(f"node metadata with the ws tag: {exc}") from None


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    transport: Transport | None = None,
    sealer: DatagramSealer | None = None,
    stream_wrapper: StreamWrapper | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Node]:
    """Start a node and keep it running for the duration of the `async with` block.

    `transport` replaces the default (UDP+TCP bound to `config.host:config.port`; tests pass
    an in-memory one). Security comes from the config's credentials; `sealer` and
    `stream_wrapper` replace its seams only for tests of the seams themselves.
    `wall_clock` (Unix seconds) judges certificate validity; tests on virtual time pass
    one derived from `trio.current_time()`.
    """
    from ..swim import Swim

    if not isinstance(config, NodeConfig):
        raise LocalProtocolError("open_node takes a NodeConfig; build one with NodeConfig(...)")
    swim_config = _swim_config(config)
    security = _open_security(config, wall_clock)
    if security is not None:
        node_id = security.node_id
    else:
        key = resolve_signing_key(config.key)
        node_id = node_id_from_public_key(bytes(key.verify_key))
    seed = config.rng_seed if config.rng_seed is not None else int.from_bytes(os.urandom(8), "big")
    rng = random.Random(seed)
    if transport is None:
        transport = await open_udp_tcp_transport(config.host, config.port)
    ws: WebSocketTransport | None = None
    if config.ws_bind is not None or config.ws_seeds:
        ws = WebSocketTransport(
            transport,
            ws_bind=config.ws_bind,  # type: ignore[arg-type]  # normalised by NodeConfig
            routes={a: a for a in config.ws_seeds},
        )
        transport = ws
        if security is not None:
            security.datagram_routable = ws.datagram_routable
    if sealer is None:
        sealer = security.datagrams if security is not None else PlainSealer()
    if stream_wrapper is None:
        stream_wrapper = security.stream_wrapper if security is not None else plain_stream_wrapper
    hub = EventHub(buffer_max=config.events_buffer_max)
    kv_tap = KvTap(hub.publish)  # the kv layer sees member events, hides its broadcasts
    router = EventRouter(publish=kv_tap.publish, security=security, ws=ws, self_id=node_id)
    try:
        meta = config.meta()
        if ws is not None and config.ws_bind is not None and config.ws_bind[1] != 0:
            meta = _meta_with_ws(config, _ws_advertised(config, config.ws_bind))  # type: ignore[arg-type]
        core = Swim(
            config=swim_config,
            node_id=node_id,
            addr=advertised_addr(config, transport.local_addr),
            meta=meta,
            rng=rng,
            **_security_kwargs(Swim, security),
        )
        driver = Driver(
            core=core,
            transport=transport,
            sealer=sealer,
            stream_wrapper=stream_wrapper,
            on_event=router.on_event,
        )
        try:
            async with trio.open_nursery() as nursery:
                stop = trio.CancelScope()
                node = Node(
                    core=core,
                    driver=driver,
                    transport=transport,
                    sealer=sealer,
                    hub=hub,
                    leave_linger_s=_leave_linger_s(config, swim_config),
                    stop=stop,
                    security=security,
                    router=router,
                )
                await nursery.start(_run_driver, driver, config.seeds, stop)
                if ws is not None and ws.ws_addr is not None and WS_TAG not in meta.tag_dict:
                    # Port 0: the WebSocket port is known only now.
                    await node.update_metadata(_meta_with_ws(config, _ws_advertised(config, ws.ws_addr)))
                if security is not None:
                    nursery.start_soon(node._serve_system, random.Random(rng.getrandbits(64)))
                if config.data_dir is not None:  # the kv layer (meshcore.node._kv)
                    node.kv = await nursery.start(
                        run_node_kv, node, config, kv_tap, kv_stream_wrapper(security, wall_clock),
                        security is not None, random.Random(rng.getrandbits(64)))
                try:
                    yield node
                finally:
                    stop.cancel()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # An exception from the caller's block is the only one in our nursery's group:
            # hand it back as it was raised, not wrapped in a group of one (raised outside
            # this handler so that its own __cause__/__context__ stay as they were).
            if len(group.exceptions) != 1 or isinstance(group.exceptions[0], BaseExceptionGroup):
                raise
            lone = group.exceptions[0]
        else:
            lone = None
        if lone is not None:
            raise lone
    finally:
        hub.close()
        await transport.aclose()


def _ws_advertised(config: NodeConfig, ws_addr: Addr) -> Addr:
    """The WebSocket address peers should dial: the advertised host for a wildcard bind."""
    import ipaddress

    host = ws_addr[0]
    if ipaddress.ip_address(host).is_unspecified:
        adv = config.advertise
        host = adv[0] if isinstance(adv, tuple) else config.host
    return (host, ws_addr[1])


async def _run_driver(
    driver: Driver,
    seeds: tuple[Addr, ...],
    stop: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with stop:
        await driver.run(seeds, task_status=task_status)
