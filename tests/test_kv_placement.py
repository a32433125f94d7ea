"""Placement ring: distinct sites, territory respected, clear errors, ~1/n movement."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.errors import LocalProtocolError, PlacementError
from meshcore.kv import Namespace, Ring, RingMember, key_token, replicas_for


def node(i: int) -> bytes:
    return i.to_bytes(16, "big")


def cluster(layout: list[tuple[str, str, int]]) -> list[RingMember]:
    """layout: (site, region, nodes on that site)."""
    members, i = [], 0
    for site, region, count in layout:
        for _ in range(count):
            i += 1
            members.append(RingMember(node(i), site, region))
    return members


KEYS = [f"key-{i}".encode() for i in range(400)]

# A cluster as drawn by hypothesis: up to 8 sites, each in one of 3 regions, 1-3 nodes each.
layouts = st.lists(
    st.tuples(st.sampled_from(["occitanie", "aquitaine", "bretagne"]), st.integers(1, 3)),
    min_size=1,
    max_size=8,
).map(lambda sites: cluster([(f"site-{i}", r, n) for i, (r, n) in enumerate(sites)]))
namespaces = st.builds(
    Namespace,
    name=st.just("ns"),
    replicas=st.integers(1, 3),
    regions=st.sampled_from([(), ("occitanie",), ("occitanie", "aquitaine")]),
)


@settings(max_examples=60)
@given(layouts, namespaces)
def test_replicas_are_on_distinct_sites_inside_the_territory_or_placement_fails(
    members: list[RingMember], ns: Namespace
) -> None:
    ring = Ring(members, vnodes_per_node=16)
    by_node = {m.node: m for m in members}
    eligible_sites = {m.site for m in members if ns.allows(m.region)}
    if len(eligible_sites) < ns.replicas:
        with pytest.raises(PlacementError, match="namespace 'ns'"):
            ring.replicas_for(ns, b"k")
        with pytest.raises(PlacementError):
            ring.check(ns)
        return
    ring.check(ns)
    for key in KEYS[:50]:
        reps = ring.replicas_for(ns, key)
        assert len(reps) == ns.replicas
        assert len({by_node[n].site for n in reps}) == ns.replicas
        assert all(ns.allows(by_node[n].region) for n in reps)
        assert reps == replicas_for(ns, key, reversed(members), vnodes_per_node=16)  # order-free


def moved_slots(before: Ring, after: Ring, ns: Namespace) -> tuple[float, list[tuple[set[bytes], set[bytes]]]]:
    changes = []
    for key in KEYS:
        old, new = set(before.replicas_for(ns, key)), set(after.replicas_for(ns, key))
        if old != new:
            changes.append((old, new))
    moved = sum(len(new - old) for old, new in changes)
    return moved / (len(KEYS) * ns.replicas), changes


@settings(max_examples=25)
@given(st.integers(4, 24), st.integers(1, 3), st.integers(0, 2**32))
def test_a_join_moves_only_slots_to_the_newcomer_and_about_one_nth_of_them(n: int, replicas: int, seed: int) -> None:
    rnd = random.Random(seed)
    members = cluster([(f"site-{i % max(replicas, n // 2)}", "occitanie", 1) for i in range(n)])
    ns = Namespace(name="ns", replicas=replicas)
    before = Ring(members)
    newcomer = RingMember(node(10_000 + seed % 1000), f"site-{rnd.randrange(n + 1)}", "occitanie")
    after = Ring([*members, newcomer])
    fraction, changes = moved_slots(before, after, ns)
    for old, new in changes:  # every changed replica set gained the newcomer and lost one node
        assert new - old == {newcomer.node} and len(old - new) == 1
    assert fraction <= 2.5 / (n + 1)


@settings(max_examples=25)
@given(st.integers(5, 24), st.integers(1, 3), st.integers(0, 2**32))
def test_a_leave_moves_only_the_leavers_slots(n: int, replicas: int, seed: int) -> None:
    members = cluster([(f"site-{i}", "occitanie", 1) for i in range(n)])
    ns = Namespace(name="ns", replicas=replicas)
    before = Ring(members)
    leaver = members[seed % n]
    after = Ring(members)
    after.remove(leaver.node)
    fraction, changes = moved_slots(before, after, ns)
    for old, new in changes:
        assert old - new == {leaver.node} and len(new - old) == 1
    assert fraction <= 2.5 / n


def test_with_fifty_nodes_a_join_moves_close_to_one_fiftieth_of_the_slots() -> None:
    members = cluster([(f"site-{i}", "occitanie", 1) for i in range(50)])
    ns = Namespace(name="ns", replicas=2)
    fraction, _ = moved_slots(Ring(members), Ring([*members, RingMember(node(999), "site-new", "occitanie")]), ns)
    assert 0.3 / 51 <= fraction <= 2.0 / 51


def test_placement_error_names_the_namespace_territory_and_eligible_sites() -> None:
    ring = Ring(cluster([("site-a", "occitanie", 2), ("site-b", "bretagne", 1)]))
    ns = Namespace(name="x", replicas=2, regions=("occitanie",))
    with pytest.raises(PlacementError) as info:
        ring.replicas_for(ns, b"k")
    assert str(info.value) == "namespace 'x' needs 2 sites in {occitanie}, only 1 eligible alive: site-a"


def test_a_region_that_no_site_has_is_a_clear_placement_error() -> None:
    ring = Ring(cluster([("site-a", "occitanie", 1), ("site-b", "bretagne", 1)]))
    with pytest.raises(PlacementError, match=r"only be stored in \{mars\}.*regions of the members: bretagne, occitanie"):
        ring.check(Namespace(name="x", replicas=1, regions=("mars",)))


def test_an_empty_ring_cannot_place_anything() -> None:
    with pytest.raises(PlacementError, match="no members"):
        Ring().replicas_for(Namespace(name="x", regions=("r",)), b"k")


def test_a_node_recertified_in_another_region_leaves_the_old_territory() -> None:
    ring = Ring(cluster([("site-a", "occitanie", 1), ("site-b", "occitanie", 1)]))
    ns = Namespace(name="x", replicas=2, regions=("occitanie",))
    ring.replicas_for(ns, b"k")
    ring.add(RingMember(node(2), "site-b", "bretagne"))
    with pytest.raises(PlacementError, match="only 1 eligible alive: site-a"):
        ring.replicas_for(ns, b"k")


def test_stand_in_is_the_next_eligible_live_node_on_a_fresh_site() -> None:
    members = cluster([(f"site-{i}", "occitanie" if i < 4 else "bretagne", 2) for i in range(6)])
    by_node = {m.node: m for m in members}
    ring = Ring(members)
    ns = Namespace(name="x", replicas=2, regions=("occitanie",))
    for key in KEYS[:100]:
        home = ring.replicas_for(ns, key)
        subs = ring.stand_ins_for(ns, key, down={home[0]})
        assert list(subs) == [home[0]]
        sub = subs[home[0]]
        assert sub not in home and by_node[sub].region == "occitanie"
        assert by_node[sub].site not in {by_node[home[1]].site}
        assert ring.stand_ins_for(ns, key, down=set()) == {}
        # With both home replicas down the two stand-ins are on two distinct fresh sites.
        both = ring.stand_ins_for(ns, key, down=set(home))
        assert len({by_node[s].site for s in both.values()}) == 2


def test_no_stand_in_exists_when_the_territory_has_no_other_site() -> None:
    ring = Ring(cluster([("site-a", "occitanie", 1), ("site-b", "occitanie", 1), ("site-c", "bretagne", 1)]))
    ns = Namespace(name="x", replicas=2, regions=("occitanie",))
    home = ring.replicas_for(ns, b"k")
    assert ring.stand_ins_for(ns, b"k", down={home[0]}) == {}


def test_key_tokens_depend_on_the_namespace_and_str_keys_equal_their_bytes() -> None:
    assert key_token("a", b"k") != key_token("b", b"k")
    assert key_token("a", "k") == key_token("a", b"k")


def test_removing_an_unknown_node_is_a_no_op_and_bad_members_are_refused() -> None:
    ring = Ring(cluster([("site-a", "r", 1)]))
    ring.remove(node(77))
    assert len(ring) == 1 and node(1) in ring
    with pytest.raises(LocalProtocolError, match="16-byte"):
        RingMember(b"x", "s", "r")
    with pytest.raises(LocalProtocolError, match="site"):
        RingMember(node(1), "", "r")
    with pytest.raises(LocalProtocolError, match="vnodes_per_node"):
        Ring(vnodes_per_node=0)


@settings(max_examples=40)
@given(layouts, st.lists(namespaces, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_the_placement_cache_never_answers_differently_from_a_fresh_ring(
    members: list[RingMember], spaces: list[Namespace], rnd: random.Random
) -> None:
    # One long-lived ring (cached walks) against a ring rebuilt from scratch, through joins,
    # leaves and re-certified sites; every answer and every refusal must agree.
    ring = Ring(members[:1], vnodes_per_node=8)
    current = {m.node: m for m in members[:1]}
    for step in range(12):
        m = rnd.choice(members)
        if m.node in current and rnd.random() < 0.4 and len(current) > 1:
            ring.remove(m.node)
            del current[m.node]
        elif m.node in current and rnd.random() < 0.5:
            moved = RingMember(m.node, f"moved-{step}", m.region)
            ring.add(moved)
            current[m.node] = moved
        else:
            ring.add(m)
            current[m.node] = m
        fresh = Ring(current.values(), vnodes_per_node=8)
        for ns in spaces:
            for key in KEYS[:30]:
                try:
                    want: list[bytes] | str = fresh.replicas_for(ns, key)
                except PlacementError as exc:
                    want = str(exc)
                try:
                    got: list[bytes] | str = ring.replicas_for(ns, key)
                except PlacementError as exc:
                    got = str(exc)
                assert got == want


def test_a_caller_changing_the_returned_list_does_not_change_the_cached_placement() -> None:
    ring = Ring(cluster([("a", "r", 1), ("b", "r", 1), ("c", "r", 1)]), vnodes_per_node=8)
    ns = Namespace(name="ns", replicas=2)
    first = ring.replicas_for(ns, b"k")
    first.clear()
    assert len(ring.replicas_for(ns, b"k")) == 2


@settings(max_examples=40)
@given(layouts, namespaces, st.integers(1, 4))
def test_co_replicas_are_exactly_the_nodes_a_node_shares_keys_with(
    members: list[RingMember], ns: Namespace, vnodes: int
) -> None:
    ring = Ring(members, vnodes_per_node=vnodes)
    by_node = {m.node: m for m in members}
    if len({m.site for m in members if ns.allows(m.region)}) < ns.replicas:
        assert all(ring.co_replicas(ns, m.node) == frozenset() for m in members)
        return
    # The definition, walked by hand: the keys just before each point of the ring start
    # their walk there; their replicas are the first nodes on distinct sites from it.
    pts = list(ring._eligible_points(ns))
    expected: dict[bytes, set[bytes]] = {m.node: set() for m in members}
    for start in range(len(pts)):
        reps: list[bytes] = []
        for i in range(len(pts)):
            n = pts[(start + i) % len(pts)][1]
            if n not in reps and by_node[n].site not in {by_node[r].site for r in reps}:
                reps.append(n)
            if len(reps) == ns.replicas:
                break
        for n in reps:
            expected[n].update(r for r in reps if r != n)
    # And what keys actually do: every pair sharing a key is in there.
    for i in range(500):
        reps = ring.replicas_for(ns, b"co-%d" % i)
        for n in reps:
            assert set(reps) - {n} <= ring.co_replicas(ns, n)
    for m in members:
        assert ring.co_replicas(ns, m.node) == expected[m.node]


def test_co_replicas_follow_membership_changes_and_leave_most_nodes_out_of_a_big_ring() -> None:
    members = [RingMember(node(i), f"s{i}", "r1") for i in range(200)]
    ring = Ring(members, vnodes_per_node=8)
    ns = Namespace(name="ns", replicas=2)
    peers = ring.co_replicas(ns, node(0))
    assert 0 < len(peers) <= 2 * 8 * 2  # neighbours on each side of each of its 8 points
    newcomer = RingMember(node(999), "s999", "r1")
    ring.add(newcomer)
    assert all(node(0) in ring.co_replicas(ns, p) for p in ring.co_replicas(ns, node(0)))
    ring.remove(node(999))
    assert ring.co_replicas(ns, node(0)) == peers
