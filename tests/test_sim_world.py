"""Small seeded simulations: determinism, crash detection, partitions, restarts, stalls."""

from __future__ import annotations

import pytest

from meshcore.sim import NetConfig, SafetyViolation, World
from meshcore.swim import EventKind, Member, MemberEvent
from meshcore.wire import NodeMeta, Status


def dead_watch(world: World, victim: int) -> dict[int, float]:
    seen: dict[int, float] = {}
    vid = world.nodes[victim].node_id

    def on(now: float, obs: int, e: MemberEvent) -> None:
        if e.kind is EventKind.DEAD and e.member.node == vid:
            seen.setdefault(obs, now)

    world.listeners.append(on)
    return seen


def scenario(seed: int) -> str:
    w = World(seed, nodes=20, net=NetConfig(loss=0.1, duplicate=0.02))
    w.at(8.0, lambda: w.crash(4))
    w.at(9.0, lambda: w.stall(7, 2.0))
    w.run_until(30.0)
    return w.trace_sha256()


def test_the_same_seed_replays_the_same_trace() -> None:
    assert scenario(11) == scenario(11)
    assert scenario(11) != scenario(12)


def test_a_cluster_joins_through_its_seeds_and_converges() -> None:
    w = World(3, nodes=30, net=NetConfig(loss=0.05))
    w.run_until(15.0)
    assert w.converged()


def test_every_survivor_detects_a_crash_within_seconds() -> None:
    w = World(5, nodes=40, net=NetConfig(loss=0.05))
    w.run_until(10.0)
    seen = dead_watch(w, 9)
    w.crash(9)
    w.run_until(30.0)
    assert set(seen) == set(w.running())
    assert max(seen.values()) - 10.0 < 12.0


def heal_converges_within(w: World, within_s: float) -> bool:
    """Split `w` in two halves at t=10 s for 60 s (long enough for each half to declare the
    other dead), heal, and tell whether every view agrees within `within_s` of the heal."""
    n = len(w.nodes)
    w.run_until(10.0)
    w.partition([range(n // 2), range(n // 2, n)])
    w.run_until(70.0)
    s0 = w.swim(0)
    far_dead = sum(s0.status_of(w.nodes[j].node_id) is Status.DEAD for j in range(n // 2, n))
    assert far_dead > n // 4, "the cut was too short to matter"
    w.heal()
    t = 70.0
    while not w.converged() and t < 70.0 + within_s:
        t += 0.25
        w.run_until(t)
    return w.converged()


def test_a_healed_partition_merges_by_itself() -> None:
    assert heal_converges_within(World(8, nodes=30), 20.0), "views did not merge within 20 s"


def test_a_healed_partition_of_100_lossy_nodes_converges_within_2_5_seconds() -> None:
    # Death notices instead of suspicions, heal-mode push-pulls and a fresh local health
    # after the heal; before them this took 2.75 s.
    assert heal_converges_within(World(8, nodes=100, net=NetConfig(loss=0.05)), 2.5)


def test_a_restarted_node_rejoins_with_a_higher_incarnation() -> None:
    w = World(4, nodes=20)
    w.run_until(10.0)
    seen = dead_watch(w, 6)
    w.crash(6)
    w.run_until(30.0)
    assert set(seen) == set(w.running())
    w.restart(6)
    w.run_until(45.0)
    assert w.converged()
    assert w.swim(6).incarnation >= 1
    assert all(w.swim(i).status_of(w.nodes[6].node_id) is Status.ALIVE for i in w.running())


def test_a_member_behind_a_udp_firewall_is_kept_alive_by_stream_probes() -> None:
    w = World(6, nodes=20)
    w.run_until(10.0)
    seen = dead_watch(w, 5)
    w.block_udp(5)
    w.run_until(50.0)
    assert seen == {}


def test_without_stream_fallback_a_udp_blocked_member_is_declared_dead() -> None:
    w = World(6, nodes=20, profile="swim")
    w.run_until(10.0)
    seen = dead_watch(w, 5)
    w.block_udp(5)
    w.run_until(50.0)
    assert seen


def test_a_short_pause_does_not_kill_a_member() -> None:
    w = World(9, nodes=30, net=NetConfig(loss=0.05))
    w.run_until(10.0)
    seen = dead_watch(w, 3)
    w.stall(3, 4.0)
    w.run_until(40.0)
    assert seen == {}
    assert w.converged()


def test_a_metadata_update_reaches_every_member() -> None:
    w = World(2, nodes=25)
    w.run_until(8.0)
    meta = NodeMeta.build(name="n1", roles=["gateway"])
    w.do(1, lambda s, now: s.update_metadata(now, meta))
    w.run_until(12.0)
    nid = w.nodes[1].node_id
    assert all(w.swim(i).member(nid).meta == meta for i in w.running())


def test_a_safety_violation_names_the_seed() -> None:
    w = World(77, nodes=5)
    w.run_until(2.0)
    ghost = Member(node=b"\xee" * 16, addr=("10.9.9.9", 1), meta=NodeMeta(), incarnation=0,
                   status=Status.ALIVE, since=0.0)
    with pytest.raises(SafetyViolation, match="seed 77"):
        w._check_event(w.nodes[0], MemberEvent(EventKind.JOINED, ghost))


def broadcast_misses(alive_only: bool) -> int:
    """60 lossy nodes cut in two halves at t=5 s for 40 s; one broadcast a second from the
    first half: (broadcast, member of that half) pairs never reached."""
    from meshcore.swim import SwimConfig

    n = 60
    w = World(1, nodes=n, config=SwimConfig.profile("lan", budget_alive_only=alive_only),
              net=NetConfig(loss=0.05), bootstrap="warm")
    got: set[tuple[bytes, int]] = set()
    w.broadcast_listeners.append(lambda now, obs, b: got.add((b.payload, obs)))
    w.run_until(5.0)
    w.partition([range(n // 2), range(n // 2, n)])
    sent = []
    for k in range(36):
        origin, payload = k % (n // 2), b"b%d" % k
        w.at(6.0 + k, lambda o=origin, p=payload: w.do(o, lambda s, now: s.broadcast(now, p)))
        sent.append((origin, payload))
    w.run_until(45.0)
    return sum((p, r) not in got for o, p in sent for r in range(n // 2) if r != o)


def test_copies_to_unreachable_members_do_not_starve_a_partitioned_half_of_broadcasts() -> None:
    # memberlist spends an update's transmit budget on suspects and the recently dead too;
    # in a partition that is the whole other half, and this half's own members miss
    # broadcasts. Seeded, so the figures are exact: 29 misses with that rule, 5 without.
    with_budget_spent_on_all, alive_only = broadcast_misses(False), broadcast_misses(True)
    assert alive_only * 3 < with_budget_spent_on_all, (alive_only, with_budget_spent_on_all)
