"""meshcore: a self-organising, secure mesh for territory-wide clouds of micro-datacenters."""

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

__version__ = "0.1.0"

__all__ = [
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
