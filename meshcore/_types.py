"""Small shared value types: node ids and addresses."""

from __future__ import annotations

from typing import NewType

import blake3

__all__ = ["NodeId", "Addr", "NODE_ID_BYTES", "node_id_from_public_key", "short_id"]

#: Length of a node id in bytes (128 bits of blake3 over the Ed25519 public key).
NODE_ID_BYTES = 16

NodeId = NewType("NodeId", bytes)
"""A node's stable identity: blake3 of its Ed25519 public key, first 16 bytes."""

Addr = tuple[str, int]
"""A transport address: (host, port)."""


def node_id_from_public_key(public_key: bytes) -> NodeId:
    """Derive the node id from a 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return NodeId(blake3.blake3(b"meshcore node id v1" + public_key).digest(NODE_ID_BYTES))


def short_id(node: bytes) -> str:
    """The first 8 hex digits of a node id, for logs and tables."""
    return node[:4].hex()
