"""Fail a service over to another site when its site goes down.

Every site that can run the service carries the role `svc:<name>`. Each node ranks the alive
candidates by rendezvous hashing of (service, node id) — the same ranking everywhere, no
election messages — and the first one runs the service. When SWIM declares the owner dead,
every survivor's ranking moves to the next candidate, which starts the service.

Limits, on purpose: during a network partition each side runs its own copy (availability
over exclusivity). A service that must never run twice should take a lease in the
replicated key-value store at `quorum` before it starts (fencing), which this example does
not do.

    python examples/failover.py          # three sites in one process, one of them crashes
"""

from __future__ import annotations

import time

import blake3
import trio

import meshcore
from meshcore.node.testing import SecureCluster

SERVICE = "billing"
ROLE = f"svc:{SERVICE}"


def owner(node: meshcore.Node, service: str = SERVICE) -> meshcore.Member | None:
    """The live candidate with the highest rendezvous score, as this node sees it.

    A suspect still counts as live: moving the service on a mere suspicion would make it
    flap whenever a link is lossy; SWIM's dead verdict (suspicion timeout, refutation
    window) is what moves it."""
    live = (meshcore.Status.ALIVE, meshcore.Status.SUSPECT)
    candidates = [
        m for m in node.members() if m.status in live and f"svc:{service}" in m.meta.roles
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda m: blake3.blake3(service.encode() + m.node).digest())


class ServiceRunner:
    """Runs `service` on this node while this node is its owner; reacts to membership."""

    def __init__(self, node: meshcore.Node, log: list[str]) -> None:
        self.node = node
        self.log = log
        self.running = False

    async def run(self) -> None:
        events = self.node.events()
        self._reconcile()
        async for _event in events:
            self._reconcile()

    def _reconcile(self) -> None:
        me = self.node.node_id
        current = owner(self.node)
        should_run = current is not None and current.node == me
        name = self.node.member(me).meta.name  # type: ignore[union-attr]
        if should_run and not self.running:
            self.running = True
            self.log.append(f"{time.monotonic():.3f} {name} starts {SERVICE}")
            print(f"[{name}] I own '{SERVICE}' now: starting it")
        elif not should_run and self.running:
            self.running = False
            print(f"[{name}] '{SERVICE}' moved away: stopping it")


async def main() -> None:
    sites = ["toulouse", "montpellier", "perpignan"]
    cluster = SecureCluster([f"{s}-1" for s in sites])
    log: list[str] = []
    scopes: dict[str, trio.CancelScope] = {}
    nodes: dict[str, meshcore.Node] = {}
    joined = trio.Event()

    async def site(name: str, seeds: tuple[meshcore.Addr, ...],
                   task_status: trio.TaskStatus[meshcore.Node] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = cluster.config(f"{name}-1", site=name, region="occitanie", roles=(ROLE,),
                             seeds=seeds, profile="local")
        with trio.CancelScope() as scope:
            scopes[name] = scope
            async with meshcore.open_node(cfg) as node, trio.open_nursery() as inner:
                task_status.started(node)
                # Claim nothing before the join has settled: alone in its view at start,
                # every node would otherwise think it is the owner.
                await joined.wait()
                inner.start_soon(ServiceRunner(node, log).run)
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        first = await nursery.start(site, sites[0], ())
        nodes[sites[0]] = first
        for s in sites[1:]:
            nodes[s] = await nursery.start(site, s, (first.addr,))
        with trio.fail_after(15):
            while any(sum(m.status is meshcore.Status.ALIVE for m in n.members()) < 3
                      for n in nodes.values()):
                await trio.sleep(0.05)
            joined.set()
            while not log:
                await trio.sleep(0.05)
        active = owner(first)
        assert active is not None
        victim = active.meta.site
        print(f"all three sites see each other; '{SERVICE}' runs at {victim}")

        # The owner's site loses power: no leave message, the others must notice.
        crashed_at = time.monotonic()
        print(f"power cut at {victim}")
        scopes[victim].cancel()
        survivors = [n for s, n in nodes.items() if s != victim]
        with trio.fail_after(30):
            while len(log) < 2:
                await trio.sleep(0.05)
        took = float(log[-1].split()[0]) - crashed_at
        # Every survivor reaches the same verdict on its own (gossip spreads the death).
        with trio.fail_after(30):
            while len({getattr(owner(n), "node", None) for n in survivors}) != 1:
                await trio.sleep(0.05)
        new_owner = owner(survivors[0])
        assert new_owner is not None and new_owner.meta.site != victim
        print(f"'{SERVICE}' failed over to {new_owner.meta.site} {took:.1f} s after the power cut")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
