"""The simulator in secure mode: admission, sealed datagrams, revocation by gossip."""

from __future__ import annotations

from meshcore.sim import NetConfig, SafetyViolation, World
from meshcore.wire import Status

ROGUE = 99


def never_in_a_view(node: int):  # type: ignore[no-untyped-def]
    """A checker: after every event, the node that handled it does not list `node`."""

    def check(world: World, i: int) -> None:
        if i == node:
            return
        swim = world.nodes[i].swim
        if swim is not None and swim.status_of(world.nodes[node].node_id) is not None:
            raise SafetyViolation(f"node {i} admitted node {node} (seed {world.seed})")

    return check


def secure_world(seed: int, **kw: object) -> World:
    return World(seed, 100, bootstrap="warm", secure=True, net=NetConfig(loss=0.05), **kw)  # type: ignore[arg-type]


def test_a_revoked_node_is_dead_or_left_in_every_view_within_10_seconds() -> None:
    w = secure_world(3)
    w.run_until(10.0)
    victim = w.nodes[42].node_id
    w.revoke(7, w.cluster.revoke(victim, at_s=10.0))  # type: ignore[union-attr]
    w.run_until(20.0)
    others = [i for i in w.running() if i != 42]
    assert len(others) == 99
    assert all(w.swim(i).status_of(victim) in (Status.DEAD, Status.LEFT) for i in others)
    # Its datagrams are refused from then on, by the sealer of every node.
    assert w.security_drops().get("cert_revoked", 0) + w.security_drops().get("unknown_sender", 0) > 0


def test_a_node_certified_by_another_authority_never_enters_a_view_and_its_packets_are_dropped() -> None:
    w = secure_world(4, rogues=[ROGUE])
    w.checkers.append(never_in_a_view(ROGUE))
    w.run_until(30.0)
    drops = w.security_drops()
    assert drops["unknown_sender"] > 0  # it probes everybody; nobody can open its packets
    assert drops["admit:cert_untrusted"] > 0
    assert w.converged()  # the 99 certified nodes agree among themselves


def test_a_rogue_joining_through_the_seeds_is_refused_at_the_handshake() -> None:
    w = World(5, 30, secure=True, rogues=[29], net=NetConfig(loss=0.02))
    w.checkers.append(never_in_a_view(29))
    w.run_until(20.0)
    assert w.handshakes_refused > 0
    assert w.converged()


def test_a_revocation_signed_by_another_authority_is_ignored() -> None:
    w = secure_world(6)
    w.run_until(5.0)
    victim = w.nodes[10].node_id
    forged = w.cluster.outsider.revoke(victim, serial=1, revoked_at=0)  # type: ignore[union-attr]
    w.revoke(3, forged)
    w.run_until(15.0)
    assert all(w.swim(i).status_of(victim) is Status.ALIVE for i in w.running() if i != 10)
    assert w.security_drops()["admit:revocation_untrusted"] == 1


def test_a_secure_run_replays_bit_for_bit() -> None:
    def trace() -> str:
        w = World(8, 30, bootstrap="warm", secure=True, net=NetConfig(loss=0.1))
        w.at(5.0, lambda: w.crash(3))
        w.run_until(20.0)
        return w.trace_sha256()

    assert trace() == trace()
