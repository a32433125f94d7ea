"""The public node: `async with open_node(config) as node: ...`.

`open_node` binds the transport, builds the SWIM core with the node's identity, and runs the
driver in a nursery for the life of the `async with`. Leaving the block stops the node
abruptly (peers will detect it as failed); call `await node.leave()` first for a graceful
exit. Reads (`members`, `statistics`) call the core directly: trio runs one task at a time
and these calls never await, so they cannot interleave with the driver's changes; writes
(`broadcast`, `update_metadata`, `leave`) go through the driver task.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .._types import Addr, NodeId, node_id_from_public_key
from ..errors import ConfigError, LocalProtocolError
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
from ..swim._effects import Member
from ..wire import NodeMeta
from ..wire._messages import USER_PAYLOAD_BYTES_MAX
from ._config import NodeConfig, advertised_addr, resolve_signing_key
from ._events import EventHub, Subscription

if TYPE_CHECKING:
    from ..swim import Swim

__all__ = ["Node", "NodeStatistics", "open_node"]

#: Gossip rounds `leave()` waits for by default, so the leave reaches everyone before we go.
LEAVE_LINGER_GOSSIP_ROUNDS = 8
LEAVE_LINGER_S_MAX = 5.0


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

    @property
    def bytes_sent(self) -> int:
        return self.udp_bytes_sent + self.tcp_bytes_sent


class Node:
    """A running meshcore node. Build it with `open_node`."""

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
    ) -> None:
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
        )


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


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    transport: Transport | None = None,
    sealer: DatagramSealer | None = None,
    stream_wrapper: StreamWrapper | None = None,
) -> AsyncIterator[Node]:
    """Start a node and keep it running for the duration of the `async with` block.

    `transport`, `sealer` and `stream_wrapper` replace the defaults (UDP+TCP bound to
    `config.host:config.port`, plain datagrams, plain framed streams): tests pass an
    in-memory transport, the security layer its sealer and secure link.
    """
    from ..swim import Swim

    if not isinstance(config, NodeConfig):
        raise LocalProtocolError("open_node takes a NodeConfig; build one with NodeConfig(...)")
    swim_config = _swim_config(config)
    key = resolve_signing_key(config.key)
    node_id = node_id_from_public_key(bytes(key.verify_key))
    seed = config.rng_seed if config.rng_seed is not None else int.from_bytes(os.urandom(8), "big")
    rng = random.Random(seed)
    if transport is None:
        transport = await open_udp_tcp_transport(config.host, config.port)
    sealer = sealer if sealer is not None else PlainSealer()
    hub = EventHub(buffer_max=config.events_buffer_max)
    try:
        core = Swim(
            config=swim_config,
            node_id=node_id,
            addr=advertised_addr(config, transport.local_addr),
            meta=config.meta(),
            rng=rng,
        )
        driver = Driver(
            core=core,
            transport=transport,
            sealer=sealer,
            stream_wrapper=stream_wrapper or plain_stream_wrapper,
            on_event=hub.publish,
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
                )
                await nursery.start(_run_driver, driver, config.seeds, stop)
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


async def _run_driver(
    driver: Driver,
    seeds: tuple[Addr, ...],
    stop: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with stop:
        await driver.run(seeds, task_status=task_status)
