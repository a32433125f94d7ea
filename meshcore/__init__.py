"""meshcore: a self-organising, secure mesh for territory-wide clouds of micro-datacenters."""

from typing import TYPE_CHECKING, Any

# First: importing it chooses the compiled or the pure-Python modules (meshcore._native).
from . import _native  # noqa: F401  # isort: skip

from ._types import Addr, NodeId, node_id_from_public_key
from .errors import (
    ConfigError,
    CredentialError,
    DecodeError,
    LocalProtocolError,
    MeshError,
    RemoteProtocolError,
    SecurityError,
)

if TYPE_CHECKING:
    from .node import Node, NodeConfig, NodeStatistics, Subscription, open_node
    from .swim._effects import EventKind, Member, MemberEvent, UserBroadcast
    from .wire import NodeMeta, Status

__version__ = "0.1.0"

# The node API pulls in trio; resolve it on first use so that `import meshcore.wire` (the
# simulator, the I/O-free cores) stays light.
_LAZY = {
    "open_node": "node",
    "Node": "node",
    "NodeConfig": "node",
    "NodeStatistics": "node",
    "Subscription": "node",
    "EventKind": "swim._effects",
    "Member": "swim._effects",
    "MemberEvent": "swim._effects",
    "UserBroadcast": "swim._effects",
    "NodeMeta": "wire",
    "Status": "wire",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshcore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "open_node",
    "Node",
    "NodeConfig",
    "NodeStatistics",
    "Subscription",
    "EventKind",
    "Member",
    "MemberEvent",
    "UserBroadcast",
    "NodeMeta",
    "Status",
    "Addr",
    "NodeId",
    "node_id_from_public_key",
    "MeshError",
    "ConfigError",
    "CredentialError",
    "DecodeError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "SecurityError",
]
