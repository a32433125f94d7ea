"""Two nodes linked over WebSocket form one secure mesh with UDP/TCP nodes (real trio
sockets on 127.0.0.1, bounded by a timeout)."""

from __future__ import annotations

import trio

from meshcore.node import Node, open_node
from meshcore.node.testing import SecureCluster
from meshcore.runtime._ws import WebSocketTransport
from meshcore.wire import Status

TIMEOUT_S = 30.0


async def test_two_websocket_nodes_and_two_udp_tcp_nodes_form_one_mesh() -> None:
    cluster = SecureCluster(["w1", "w2", "t1", "t2"])
    nodes: list[Node] = []

    async def run(config: object, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_node(config) as node:  # type: ignore[arg-type]
            task_status.started(node)
            await trio.sleep_forever()

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            w1 = await nursery.start(run, cluster.config("w1", profile="local", ws_bind="127.0.0.1:0"))
            ws1 = w1.transport
            assert isinstance(ws1, WebSocketTransport) and ws1.ws_addr is not None
            w2 = await nursery.start(run, cluster.config(
                "w2", profile="local", ws_bind="127.0.0.1:0",
                seeds=[f"ws://127.0.0.1:{ws1.ws_addr[1]}"],
            ))
            seed = f"{w1.addr[0]}:{w1.addr[1]}"
            t1 = await nursery.start(run, cluster.config("t1", profile="local", seeds=[seed]))
            t2 = await nursery.start(run, cluster.config("t2", profile="local", seeds=[seed]))
            nodes = [w1, w2, t1, t2]
            # Every node sees all four alive, and the views agree: they can still differ for
            # a moment after all four are alive (about 1 run in 6 asserted too early).
            while not (all(sum(m.status == Status.ALIVE for m in n.members()) == 4 for n in nodes)
                       and len({n.checksum() for n in nodes}) == 1):
                await trio.sleep(0.1)
            # w2 reached w1 over WebSocket (its join, and later links between the two).
            ws2 = w2.transport
            assert isinstance(ws2, WebSocketTransport)
            assert ws2.ws_streams[0] >= 1 and ws1.ws_streams[1] >= 1
            assert w2.member(w1.node_id).meta.tag_dict["ws"].startswith("ws://127.0.0.1:")  # type: ignore[union-attr]
            assert len({n.checksum() for n in nodes}) == 1
            nursery.cancel_scope.cancel()
