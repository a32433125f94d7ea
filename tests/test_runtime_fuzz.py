"""A running node fed random and mutated datagrams keeps serving and counts the drops."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.errors import DecodeError
from meshcore.node import Node, NodeConfig, open_node
from meshcore.runtime import MemoryNetwork
from meshcore.wire import Status, decode

garbage = st.binary(min_size=0, max_size=1500)
# (which captured datagram, byte position, new byte value, truncate to, keep the rest)
mutation = st.tuples(
    st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2000)
)
attack = st.one_of(garbage.map(lambda b: ("raw", b)), mutation.map(lambda m: ("mut", m)))


def _mutate(captured: list[bytes], m: tuple[int, int, int, int]) -> bytes:
    which, pos, value, cut = m
    data = bytearray(captured[which % len(captured)])
    if data:
        data[pos % len(data)] = value
    return bytes(data[: max(1, cut)])


def _undecodable(data: bytes) -> bool:
    if not data or data[0] != 0:
        return True
    try:
        decode(data[1:])
    except DecodeError:
        return True
    return False


async def _scenario(attacks: list[tuple[str, object]]) -> None:
    net = MemoryNetwork()
    captured: list[bytes] = []
    net.tap = lambda src, dst, data: captured.append(data) if len(captured) < 200 else None
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:

        async def run(i: int, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
            seeds = [nodes[0].addr] if nodes else []
            cfg = NodeConfig(name=f"n{i}", profile="local", rng_seed=i, seeds=seeds, insecure=True)
            async with open_node(cfg, transport=net.transport()) as node:
                task_status.started(node)
                await trio.sleep_forever()

        for i in range(3):
            nodes.append(await nursery.start(run, i))
        await trio.sleep(5)
        target = nodes[0]
        attacker = net.transport()
        sent = []
        for kind, value in attacks:
            data = value if kind == "raw" else _mutate(captured, value)  # type: ignore[arg-type]
            assert isinstance(data, bytes)
            sent.append(data)
            await attacker.send_datagram(target.addr, data)
            await trio.sleep(0.01)
        await trio.sleep(10)

        stats = target.statistics()
        assert stats.driver.core_errors == 0
        assert stats.sealer.dropped + stats.swim.dropped_total >= sum(map(_undecodable, sent))
        # The target still answers probes: its peers keep it alive.
        for peer in nodes[1:]:
            m = peer.member(target.node_id)
            assert m is not None and m.status == Status.ALIVE, m
        nursery.cancel_scope.cancel()


@settings(max_examples=40)
@given(st.lists(attack, min_size=1, max_size=30))
def test_a_node_fed_random_and_mutated_datagrams_keeps_serving_and_counts_drops(
    attacks: list[tuple[str, object]],
) -> None:
    trio.run(_scenario, attacks, clock=trio.testing.MockClock(autojump_threshold=0))
