"""Placement: a consistent-hash ring with virtual nodes, filtered by territory and site.

Each member (node id, certified site, certified region) owns `vnodes_per_node` points on a
64-bit ring (blake3 of the node id and the point index). A key's token is blake3 of its
namespace and key. The replicas of a key are found by walking the ring clockwise from its
token and keeping, in order, the first `namespace.replicas` nodes that

1. are certified for a region the namespace allows (sovereignty), and
2. sit on a site not already chosen (replicas on distinct sites).

Because a member only owns its own points, a member joining or leaving changes the walk
only where its points are: about 1/n of the replica slots move, never more than the keys
it gains or loses (property-tested). The ring holds the members the caller deems part of
the cluster (alive or suspect); liveness of the moment is handled by `stand_ins_for`
(hinted handoff), so a short suspicion does not move data.

Limits: `vnodes_per_node` in [1, 1024]; a walk visits at most every eligible point once.
Filtered point lists are cached per territory; the replicas a walk finds are cached per
starting point (the walk from a point does not depend on the key that led there, so a new
key costs one hash and one bisection); and the answers for the last `KEY_CACHE_MAX` keys
are kept (each request asks several times: its coordinator and every replica). All three,
and each node's co-replicas (`co_replicas`: its anti-entropy peers), are dropped on any
membership change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

import blake3
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from .._types import NODE_ID_BYTES
from ..errors import LocalProtocolError, PlacementError
from ._namespace import Namespace
from ._record import as_key

__all__ = [
    "KEY_CACHE_MAX",
    "PLACEMENT_CACHE_MAX",
    "VNODES_PER_NODE_DEFAULT",
    "VNODES_PER_NODE_MAX",
    "SITE_CHARS_MAX",
    "RingMember",
    "Ring",
    "key_token",
    "replicas_for",
]

VNODES_PER_NODE_DEFAULT = 64
VNODES_PER_NODE_MAX = 1024
SITE_CHARS_MAX = 64
#: Walks remembered, one per (territory, replica count, starting point); cleared whole
#: when full (more namespace shapes than expected) and on any membership change.
PLACEMENT_CACHE_MAX = 65_536
#: Keys whose placement is remembered as such (saves the hash and the bisection of keys
#: asked for again, as every request's key is: by the coordinator and by each replica).
KEY_CACHE_MAX = 16_384
_AFTER_ANY_NODE = b"\xff" * (NODE_ID_BYTES + 1)  # sorts after every node id at one token


def _token(data: bytes) -> int:
    return int.from_bytes(blake3.blake3(data).digest(8), "big")


def key_token(namespace: str, key: bytes | str) -> int:
    """Position of a key on the ring (64-bit), namespaced so namespaces spread apart."""
    name = namespace.encode("utf-8")
    return _token(b"meshcore key v1" + len(name).to_bytes(2, "big") + name + as_key(key))


@dataclass(frozen=True, slots=True)
class RingMember:
    """What placement needs to know of a node: its id and its certified site and region."""

    node: bytes
    site: str
    region: str

    def __post_init__(self) -> None:
        if type(self.node) is not bytes or len(self.node) != NODE_ID_BYTES:
            raise LocalProtocolError(f"node must be a {NODE_ID_BYTES}-byte node id, got {self.node!r:.40}")
        for what, v in (("site", self.site), ("region", self.region)):
            if type(v) is not str or not 1 <= len(v) <= SITE_CHARS_MAX:
                raise LocalProtocolError(f"{what} must be a str of 1-{SITE_CHARS_MAX} chars, got {v!r:.40}")


class Ring:
    """The placement ring. Mutate with `add` / `remove`; query with `replicas_for`."""

    def __init__(self, members: Iterable[RingMember] = (), *, vnodes_per_node: int = VNODES_PER_NODE_DEFAULT) -> None:
        if type(vnodes_per_node) is not int or not 1 <= vnodes_per_node <= VNODES_PER_NODE_MAX:
            raise LocalProtocolError(f"vnodes_per_node must be in [1, {VNODES_PER_NODE_MAX}], got {vnodes_per_node!r}")
        self._vnodes = vnodes_per_node
        self._members: dict[bytes, RingMember] = {}
        self._points: SortedList = SortedList()  # (token, node)
        self._by_territory: dict[tuple[str, ...], SortedList] = {}
        self._placed: dict[tuple[tuple[str, ...], int, int], tuple[bytes, ...]] = {}
        self._by_key: dict[tuple[str, tuple[str, ...], int, bytes], tuple[bytes, ...]] = {}
        self._co: dict[tuple[tuple[str, ...], int, bytes], frozenset[bytes]] = {}
        #: Counts membership changes: an answer computed under one generation holds as
        #: long as the generation is the same.
        self.generation = 0
        for m in members:
            self.add(m)

    # --- membership -------------------------------------------------------------------

    def _node_points(self, node: bytes) -> Iterator[tuple[int, bytes]]:
        for i in range(self._vnodes):
            yield (_token(b"meshcore ring v1" + node + i.to_bytes(4, "big")), node)

    def add(self, member: RingMember) -> None:
        """Add a member, or update its site/region (a re-certified node)."""
        if type(member) is not RingMember:
            raise LocalProtocolError(f"add() takes a RingMember, got {type(member).__name__}")
        old = self._members.get(member.node)
        if old == member:
            return
        if old is None:
            self._points.update(self._node_points(member.node))
        self._members[member.node] = member
        self._forget()

    def remove(self, node: bytes) -> None:
        """Remove a member (left or declared dead). Unknown nodes are ignored."""
        if self._members.pop(node, None) is None:
            return
        for p in self._node_points(node):
            self._points.remove(p)
        self._forget()

    def _forget(self) -> None:
        """Drop every cached answer: the membership changed."""
        self.generation += 1
        self._by_territory.clear()
        self._placed.clear()
        self._by_key.clear()
        self._co.clear()

    def __contains__(self, node: object) -> bool:
        return node in self._members

    def __len__(self) -> int:
        return len(self._members)

    def members(self) -> list[RingMember]:
        """Members in node-id order."""
        return [self._members[n] for n in sorted(self._members)]

    # --- queries ----------------------------------------------------------------------

    def _eligible_points(self, ns: Namespace) -> SortedList:
        pts = self._by_territory.get(ns.regions)
        if pts is None:
            if ns.unrestricted:
                pts = self._points
            else:
                pts = SortedList(p for p in self._points if ns.allows(self._members[p[1]].region))
            self._by_territory[ns.regions] = pts
        return pts

    def _start(self, ns: Namespace, key: bytes | str) -> tuple[SortedList, int]:
        """The eligible points and the index of the first one after the key's token."""
        pts = self._eligible_points(ns)
        n = len(pts)
        if n == 0:
            return pts, 0
        return pts, pts.bisect_right((key_token(ns.name, key), _AFTER_ANY_NODE)) % n

    def _walk(self, ns: Namespace, key: bytes | str) -> Iterator[bytes]:
        """Eligible nodes in ring order from the key's token, each node once."""
        pts, start = self._start(ns, key)
        return self._walk_from(pts, start)

    def _walk_from(self, pts: SortedList, start: int) -> Iterator[bytes]:
        n = len(pts)
        if n == 0:
            return
        seen: set[bytes] = set()
        for i in range(n):
            node = pts[(start + i) % n][1]
            if node not in seen:
                seen.add(node)
                yield node
                if len(seen) == len(self._members):
                    return

    def _eligible_sites(self, ns: Namespace) -> list[str]:
        return sorted({m.site for m in self._members.values() if ns.allows(m.region)})

    def _placement_error(self, ns: Namespace) -> PlacementError:
        sites = self._eligible_sites(ns)
        if not sites:
            regions = sorted({m.region for m in self._members.values()})
            known = ", ".join(regions) if regions else "none (no members)"
            return PlacementError(
                f"namespace {ns.name!r} may only be stored in {ns.territory()}, but no member "
                f"is certified there; regions of the members: {known}"
            )
        return PlacementError(
            f"namespace {ns.name!r} needs {ns.replicas} sites in {ns.territory()}, only "
            f"{len(sites)} eligible alive: {', '.join(sites)}"
        )

    def check(self, ns: Namespace) -> None:
        """Raise `PlacementError` unless the namespace can be placed on the current members."""
        if len(self._eligible_sites(ns)) < ns.replicas:
            raise self._placement_error(ns)

    def replicas_for(self, ns: Namespace, key: bytes | str) -> list[bytes]:
        """The home replicas of a key, in ring order, on distinct sites inside the territory.

        Raises `PlacementError` (naming the eligible sites) when too few sites qualify.
        """
        kk = (ns.name, ns.regions, ns.replicas, as_key(key))
        hit = self._by_key.get(kk)
        if hit is not None:
            return list(hit)
        pts, start = self._start(ns, kk[3])
        hit = self._placement_at(ns, pts, start)
        if len(self._by_key) >= KEY_CACHE_MAX:
            self._by_key.clear()
        self._by_key[kk] = hit
        return list(hit)

    def co_replicas(self, ns: Namespace, node: bytes) -> frozenset[bytes]:
        """The nodes that are home replicas of some key of `ns` together with `node` (its
        anti-entropy peers): the union of the placements that hold `node`. Empty if `ns`
        cannot be placed or `node` is not eligible. Cached until the membership changes.

        Only walks that can reach `node` are made: a walk from start `s` takes `node` at
        one of its points `p` only if, between `s` and `p`, fewer than `replicas` other
        sites were met and none of them is `node`'s own site; so from each of `node`'s
        points, starts are tried backwards until that no longer holds (a few per point,
        instead of one walk per point of the ring)."""
        ck = (ns.regions, ns.replicas, node)
        hit = self._co.get(ck)
        if hit is not None:
            return hit
        pts = self._eligible_points(ns)
        n = len(pts)
        found: set[bytes] = set()
        me = self._members.get(node)
        if me is not None and n and ns.allows(me.region):
            try:
                for mine in (pts.bisect_left(p) for p in self._node_points(node)):
                    sites: set[str] = set()  # sites of the other nodes between start and mine
                    for back in range(n):
                        start = (mine - back) % n
                        if back:
                            other = self._members[pts[start][1]]
                            if other.node != node:
                                sites.add(other.site)
                        if me.site in sites or len(sites) >= ns.replicas:
                            break
                        placed = self._placement_at(ns, pts, start)
                        if node in placed:
                            found.update(placed)
            except PlacementError:
                found.clear()
        found.discard(node)
        result = self._co[ck] = frozenset(found)
        return result

    def _placement_at(self, ns: Namespace, pts: SortedList, start: int) -> tuple[bytes, ...]:
        """The (cached) walk from eligible point `start`; raises `PlacementError` (and
        caches nothing) when too few sites qualify."""
        pk = (ns.regions, ns.replicas, start)
        placed = self._placed.get(pk)
        if placed is None:
            placed = tuple(self._place(ns, pts, start))
            if len(self._placed) >= PLACEMENT_CACHE_MAX:
                self._placed.clear()
            self._placed[pk] = placed
        return placed

    def _place(self, ns: Namespace, pts: SortedList, start: int) -> list[bytes]:
        chosen: list[bytes] = []
        sites: set[str] = set()
        for node in self._walk_from(pts, start):
            site = self._members[node].site
            if site not in sites:
                sites.add(site)
                chosen.append(node)
                if len(chosen) == ns.replicas:
                    return chosen
        raise self._placement_error(ns)

    def stand_ins_for(self, ns: Namespace, key: bytes | str, down: Collection[bytes]) -> dict[bytes, bytes]:
        """Hinted handoff: for each home replica in `down`, the next eligible node to hold
        its copy meanwhile, in ring order, inside the territory, not itself down, and on a
        site holding no other copy. Down replicas with no such node are left out."""
        home = self.replicas_for(ns, key)
        missing = [n for n in home if n in down]
        if not missing:
            return {}
        sites = {self._members[n].site for n in home if n not in down}
        result: dict[bytes, bytes] = {}
        for node in self._walk(ns, key):
            if node in home or node in down:
                continue
            site = self._members[node].site
            if site in sites:
                continue
            sites.add(site)
            result[missing[len(result)]] = node
            if len(result) == len(missing):
                break
        return result


def replicas_for(ns: Namespace, key: bytes | str, members: Iterable[RingMember], *,
                 vnodes_per_node: int = VNODES_PER_NODE_DEFAULT) -> list[bytes]:
    """One-shot form of `Ring.replicas_for` (builds a ring; keep a `Ring` for repeated use)."""
    return Ring(members, vnodes_per_node=vnodes_per_node).replicas_for(ns, key)
