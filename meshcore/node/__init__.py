"""meshcore.node: the public API — `open_node(NodeConfig(...))` gives a running `Node`."""

from ._config import PROFILES, NodeConfig, parse_addr, resolve_signing_key
from ._events import Event, EventHub, Subscription
from ._node import Node, NodeStatistics, open_node

__all__ = [
    "PROFILES",
    "Event",
    "EventHub",
    "Node",
    "NodeConfig",
    "NodeStatistics",
    "Subscription",
    "open_node",
    "parse_addr",
    "resolve_signing_key",
]
