"""Tier 2: the real driver and node API over the in-memory network, on virtual time."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from meshcore.errors import LocalProtocolError
from meshcore.node import Node, NodeConfig, open_node
from meshcore.node.testing import (
    WALL_CLOCK_BASE_S,
    SecureCluster,
    core_admits_certificates,
    virtual_wall_clock,
)
from meshcore.runtime import MemoryNetwork
from meshcore.swim import EventKind, MemberEvent, UserBroadcast
from meshcore.wire import Status

WAIT_S = 60.0  # virtual seconds: generous, costs nothing under the autojump clock


class Mesh:
    """Nodes on one MemoryNetwork, each in its own cancel scope so a test can crash one."""

    def __init__(self, nursery: trio.Nursery, profile: str = "local") -> None:
        self.net = MemoryNetwork()
        self.nursery = nursery
        self.profile = profile
        self.nodes: list[Node] = []
        self.scopes: list[trio.CancelScope] = []
        # Secure by default; plain only while the core cannot carry certificates.
        self.cluster = SecureCluster([], now=WALL_CLOCK_BASE_S) if core_admits_certificates() else None

    async def add(self, name: str, **fields: object) -> Node:
        seeds = [self.nodes[0].addr] if self.nodes else []
        common = dict(profile=self.profile, rng_seed=len(self.nodes), seeds=seeds, **fields)
        if self.cluster is not None:
            config = self.cluster.config(name, **common)
        else:
            config = NodeConfig(name=name, insecure=True, **common)  # type: ignore[arg-type]
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                async with open_node(
                    config, transport=self.net.transport(), wall_clock=virtual_wall_clock()
                ) as node:
                    task_status.started(node)
                    await trio.sleep_forever()

        node = await self.nursery.start(run)
        self.nodes.append(node)
        self.scopes.append(scope)
        return node

    def crash(self, i: int) -> None:
        self.scopes[i].cancel()


def status(observer: Node, node: Node) -> Status | None:
    m = observer.member(node.node_id)
    return None if m is None else m.status


async def wait_for(check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    with trio.fail_after(timeout_s):
        while not check():
            await trio.sleep(0.05)


async def test_five_nodes_join_and_every_view_converges(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        mesh = Mesh(nursery)
        for i in range(5):
            await mesh.add(f"n{i}")
        await wait_for(lambda: all(n.statistics().members_alive == 5 for n in mesh.nodes))
        assert len({n.checksum() for n in mesh.nodes}) == 1
        nursery.cancel_scope.cancel()


async def test_a_crashed_node_is_declared_dead_by_every_survivor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        mesh = Mesh(nursery)
        for i in range(4):
            await mesh.add(f"n{i}")
        await wait_for(lambda: all(n.statistics().members_alive == 4 for n in mesh.nodes))
        victim = mesh.nodes[2]
        events = mesh.nodes[0].events()
        mesh.crash(2)
        survivors = [n for i, n in enumerate(mesh.nodes) if i != 2]
        await wait_for(lambda: all(status(n, victim) == Status.DEAD for n in survivors))
        kinds = []
        while (e := events.receive_nowait()) is not None:
            if isinstance(e, MemberEvent) and e.member.node == victim.node_id:
                kinds.append(e.kind)
        assert kinds[-1] == EventKind.DEAD
        nursery.cancel_scope.cancel()


async def test_a_graceful_leave_is_seen_as_left_not_dead(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        mesh = Mesh(nursery)
        for i in range(4):
            await mesh.add(f"n{i}")
        await wait_for(lambda: all(n.statistics().members_alive == 4 for n in mesh.nodes))
        leaver = mesh.nodes[3]
        await leaver.leave()
        assert leaver.has_left
        await wait_for(lambda: all(status(n, leaver) == Status.LEFT for n in mesh.nodes[:3]))
        with pytest.raises(LocalProtocolError, match="left"):
            await leaver.broadcast(b"too late")
        nursery.cancel_scope.cancel()


async def test_a_broadcast_and_a_metadata_update_reach_every_member_as_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        mesh = Mesh(nursery)
        for i in range(3):
            await mesh.add(f"n{i}", site="s1")
        await wait_for(lambda: all(n.statistics().members_alive == 3 for n in mesh.nodes))
        subs = [n.events() for n in mesh.nodes[1:]]
        origin = mesh.nodes[0]
        await origin.broadcast(b"hello mesh")
        await origin.update_metadata(site="s2", tags={"zone": "north"})

        def seen(sub_index: int) -> tuple[bool, bool]:
            return got[sub_index]

        got = [(False, False) for _ in subs]

        async def consume(i: int) -> None:
            async for e in subs[i]:
                b, u = got[i]
                if isinstance(e, UserBroadcast) and e.origin == origin.node_id:
                    assert e.payload == b"hello mesh"
                    b = True
                if (
                    isinstance(e, MemberEvent)
                    and e.kind == EventKind.UPDATED
                    and e.member.node == origin.node_id
                ):
                    assert e.member.meta.site == "s2"
                    assert e.member.meta.tag_dict == {"zone": "north"}
                    u = True
                got[i] = (b, u)

        for i in range(len(subs)):
            nursery.start_soon(consume, i)
        await wait_for(lambda: all(seen(i) == (True, True) for i in range(len(subs))))
        nursery.cancel_scope.cancel()


async def test_a_slow_subscriber_loses_its_oldest_events_and_counts_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        mesh = Mesh(nursery)
        first = await mesh.add("n0")
        sub = first.events(buffer_max=2)
        for i in range(1, 5):
            await mesh.add(f"n{i}")
        await wait_for(lambda: first.statistics().members_alive == 5)
        assert sub.dropped >= 2  # four joins into a buffer of two
        assert first.statistics().events_dropped == sub.dropped
        kept = [sub.receive_nowait(), sub.receive_nowait()]
        assert all(isinstance(e, MemberEvent) for e in kept)
        assert sub.receive_nowait() is None
        nursery.cancel_scope.cancel()


async def test_update_metadata_rejects_an_unknown_field(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        mesh = Mesh(nursery)
        node = await mesh.add("n0")
        with pytest.raises(LocalProtocolError, match="colour"):
            await node.update_metadata(colour="blue")
        with pytest.raises(LocalProtocolError, match="payload"):
            await node.broadcast(b"x" * 5000)
        nursery.cancel_scope.cancel()


async def test_an_exception_in_the_node_block_reaches_the_caller_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    with pytest.raises(KeyError, match="mine"):
        async with open_node(NodeConfig(name="n0", insecure=True), transport=net.transport()):
            raise KeyError("mine")
