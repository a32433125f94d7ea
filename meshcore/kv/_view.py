"""The cluster as one node sees it: namespaces, the placement ring, who is alive.

Shared by the coordinator and the replica side of one node. The ring holds every certified
member the node knows of (alive or not): placement does not move when a node is merely
down, a stand-in takes its writes as hints instead (`Ring.stand_ins_for`). A member leaves
the ring only by `remove` (it left the cluster for good; re-homing its ranges is the job of
range streaming / anti-entropy, not of this view). Liveness comes from the membership layer
(SWIM): a member is alive from `set_alive(node, True)` until `set_alive(node, False)`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import LocalProtocolError, NamespaceError
from ._namespace import Namespace
from ._placement import Ring, RingMember
from ._record import as_key

__all__ = ["ClusterView"]


class ClusterView:
    __slots__ = ("me", "ring", "_alive", "_namespaces")

    def __init__(self, me: RingMember, members: Iterable[RingMember] = (), *,
                 namespaces: Iterable[Namespace] = (), vnodes_per_node: int = 64) -> None:
        self.me = me
        self.ring = Ring(members, vnodes_per_node=vnodes_per_node)
        self.ring.add(me)
        self._alive: set[bytes] = {me.node}
        self._namespaces: dict[str, Namespace] = {}
        for ns in namespaces:
            self.define(ns)

    # --- namespaces ---------------------------------------------------------------------

    def define(self, ns: Namespace) -> None:
        if type(ns) is not Namespace:
            raise LocalProtocolError(f"define() takes a Namespace, got {type(ns).__name__}")
        self._namespaces[ns.name] = ns

    def namespace(self, name: object) -> Namespace:
        """The spec of a defined namespace; `NamespaceError` saying how to define it."""
        ns = self._namespaces.get(name) if type(name) is str else None
        if ns is None:
            known = ", ".join(sorted(self._namespaces)) or "none"
            raise NamespaceError(f"namespace {name!r:.80} is not defined (defined: {known}); "
                                 "define it on the cluster before using it")
        return ns

    def known_namespace(self, name: str) -> Namespace | None:
        return self._namespaces.get(name)

    # --- members ------------------------------------------------------------------------

    def add(self, member: RingMember) -> None:
        self.ring.add(member)

    def remove(self, node: bytes) -> None:
        if node == self.me.node:
            raise LocalProtocolError("a node cannot remove itself from its own view")
        self.ring.remove(node)
        self._alive.discard(node)

    def set_alive(self, node: bytes, alive: bool) -> bool:
        """Record liveness; return True if it changed. Unknown nodes are ignored."""
        if node == self.me.node or node not in self.ring:
            return False
        was = node in self._alive
        if alive:
            self._alive.add(node)
        else:
            self._alive.discard(node)
        return was != alive

    def is_alive(self, node: bytes) -> bool:
        return node in self._alive

    def down(self) -> frozenset[bytes]:
        return frozenset(m.node for m in self.ring.members() if m.node not in self._alive)

    # --- placement ----------------------------------------------------------------------

    def replicas(self, ns: Namespace, key: bytes) -> list[bytes]:
        """Home replicas (raises `PlacementError` if the territory has too few sites)."""
        return self.ring.replicas_for(ns, as_key(key))

    def stand_ins(self, ns: Namespace, key: bytes) -> dict[bytes, bytes]:
        """Down home replica -> alive stand-in holding its hint (missing if none)."""
        home = self.replicas(ns, key)
        down = frozenset(n for n in home if n not in self._alive)
        if not down:
            return {}
        return self.ring.stand_ins_for(ns, key, self.down())
