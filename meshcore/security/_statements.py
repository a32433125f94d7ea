"""Self-signed statements: a node signs its own Alive and leave records.

`StatementSigner` is the `signer=` callable of the SWIM core (``bytes -> signature``) and
`StatementVerifier` its `verifier=` callable (``(node_id, message, signature) -> bool``),
where `message` is `meshcore.wire.alive_signing_bytes(...)` or `dead_signing_bytes(...)`.
The verifier looks the node's public key up among certificates the caller registered
(after admission) and caches each verified (node, message digest, signature), bounded, so
gossip repeating the same record costs a hash and a dict lookup. Unknown or revoked nodes
and bad signatures return False and are counted.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from .._types import NodeId
from ._cert import Certificate
from ._counters import Counters
from ._keys import SigningKey, verify_signature
from ._trust import TrustStore

__all__ = ["StatementSigner", "StatementVerifier"]


class StatementSigner:
    def __init__(self, key: SigningKey) -> None:
        self._key = key

    def __call__(self, message: bytes) -> bytes:
        return self._key.sign(message)


class StatementVerifier:
    def __init__(
        self,
        trust: TrustStore | None = None,
        *,
        counters: Counters | None = None,
        cache_entries_max: int = 16_384,
    ) -> None:
        self._trust = trust
        self._keys: dict[NodeId, bytes] = {}
        self._cache: OrderedDict[tuple[NodeId, bytes], None] = OrderedDict()
        self._cache_max = cache_entries_max
        self.counters = counters if counters is not None else Counters()

    def add_certificate(self, cert: Certificate) -> None:
        """Register an admitted peer's certified key (replacing an older one)."""
        if self._keys.get(cert.node_id) != cert.public_key:
            self._keys[cert.node_id] = cert.public_key

    def remove(self, node: NodeId) -> None:
        self._keys.pop(node, None)

    def __call__(self, node: NodeId, message: bytes, signature: bytes) -> bool:
        public_key = self._keys.get(node)
        if public_key is None:
            self.counters.incr("statement_unknown_node")
            return False
        if self._trust is not None and self._trust.is_revoked(node):
            self.counters.incr("cert_revoked")
            return False
        cache_key = (node, hashlib.blake2b(message + signature, digest_size=32).digest())
        if cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return True
        if not verify_signature(public_key, message, signature):
            self.counters.incr("statement_bad_signature")
            return False
        self._cache[cache_key] = None
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return True
