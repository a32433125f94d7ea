"""Three certified nodes in one process on loopback: join, watch events, broadcast, update
metadata, leave. The same calls work across machines; only the addresses change.

    python examples/hello_mesh.py
"""

from __future__ import annotations

import trio

import meshcore
from meshcore.node.testing import SecureCluster


async def main() -> None:
    # A throwaway authority and one certificate per node; in production the operator runs
    # `meshcore authority init/sign` once and each site keeps its key and certificate.
    cluster = SecureCluster(["toulouse-1", "albi-1", "nimes-1"])
    first = cluster.config("toulouse-1", site="toulouse", region="occitanie", profile="local")
    async with meshcore.open_node(first) as a:
        seeds = (a.addr,)
        b_cfg = cluster.config("albi-1", site="albi", region="occitanie", seeds=seeds, profile="local")
        c_cfg = cluster.config("nimes-1", site="nimes", region="occitanie", seeds=seeds, profile="local")
        async with meshcore.open_node(b_cfg) as b, meshcore.open_node(c_cfg) as c:
            events = a.events()
            with trio.fail_after(10):
                while sum(m.status == meshcore.Status.ALIVE for m in a.members()) < 3:
                    await trio.sleep(0.05)
            print("members seen by toulouse-1:")
            for m in a.members():
                print(f"  {m.meta.name:<11} {m.meta.site:<9} {m.status.name.lower()}")

            await b.broadcast(b"hello from albi")
            await c.update_metadata(roles=("storage",))
            with trio.fail_after(10):
                while (m := a.member(c.node_id)) is None or m.meta.roles != ("storage",):
                    await trio.sleep(0.05)
            await c.leave()

            with trio.fail_after(10):
                async for event in events:
                    if isinstance(event, meshcore.UserBroadcast):
                        print("broadcast:", event.payload.decode())
                    elif event.kind is meshcore.EventKind.LEFT:
                        print("left:", event.member.meta.name)
                        break
                    else:
                        print(f"{event.kind.value}: {event.member.meta.name} roles={event.member.meta.roles}")


if __name__ == "__main__":
    trio.run(main)
