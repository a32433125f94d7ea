"""Secure mode of the simulator: certificates, signed statements, sealed datagrams.

`SecureCluster(rng, n, rogues)` makes a throwaway authority and one certificate per node,
all from the world's seeded rng (so a seed still replays bit for bit). Each node gets a
`NodeSecurity`: its own `TrustStore` (revocations are per node, they spread by gossip), a
`DatagramSealer`, a `StatementSigner` for its own Alive/leave records, a statement
verifier and the `admit(node, cert_bytes)` closure its `Swim` calls for every record:
authority signature and cluster, validity at the simulated time (sim time 0 is the wall
clock second `EPOCH_S`), not revoked, and the certificate certifies exactly `node`. An
admitted certificate is registered with the verifier and the node's sealer.

Rogue nodes hold certificates signed by another authority (same cluster name) and accept
anybody: they model an outsider that knows the member list and tries to take part.

Memoized pure crypto, shared by all simulated nodes (the results are the same, it only
saves CPU; at 1,000 nodes it avoids ~1M signature checks and ~1M X25519 operations):

* certificate signature checks: by certificate bytes, in one authority-only TrustStore;
  time and revocation are still checked per node and per call (`check_current`);
* Alive/leave statement signatures: one `StatementVerifier` for all nodes (they all trust
  one authority, so its key table is the same for every node); each node checks its own
  revocation list first;
* pairwise datagram keys: the static-static X25519 result is symmetric, so the second node
  of a pair takes the first one's derivation (with the directions swapped).

Limits: replay windows are `WINDOW_BLOCKS` blocks (a sim sender reorders only within a few
milliseconds of jitter); the memo of pairwise keys holds only pairs half-derived.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable

from .._types import NodeId
from ..errors import SecurityError
from ..security import (
    Authority,
    AuthorityPublic,
    Certificate,
    CertificateError,
    DatagramSealer,
    DropLog,
    Revocation,
    SigningKey,
    StatementSigner,
    StatementVerifier,
    TrustStore,
    decode_certificate,
)

__all__ = ["EPOCH_S", "SecureCluster", "NodeSecurity", "CLUSTER"]

# Simulated drops are counted (`World.security_drops()`), not logged: a thousand nodes'
# rate-limited drop lines would drown the output.
_SILENT = logging.getLogger("meshcore.sim.drops")
_SILENT.propagate = False
_SILENT.addHandler(logging.NullHandler())

#: The wall-clock second that simulated time 0 stands for (certificate validity checks).
EPOCH_S = 1_700_000_000
CLUSTER = "sim"
CERT_DAYS = 30
WINDOW_BLOCKS = 4
_DAY_S = 86_400


class _Shared:
    """Memoized pure crypto for one simulated cluster (see the module docstring)."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.check = TrustStore([authority.public], cache_entries_max=1 << 20)
        self.refused: dict[bytes, str] = {}
        self.verifier = StatementVerifier(None, cache_entries_max=1 << 20)
        self.pair_keys: dict[tuple[NodeId, NodeId], tuple[bytes, bytes, bytes, bytes]] = {}
        self._views: dict[bytes, _KeyView] = {}  # by certificate signature

    def key_view(self, cert: Certificate) -> _KeyView:
        view = self._views.get(cert.signature)
        if view is None:
            view = self._views[cert.signature] = _KeyView(cert)
        return view

    def certificate(self, cert_bytes: bytes) -> Certificate | str:
        """The verified certificate, or the reason it is refused (time-independent)."""
        why = self.refused.get(cert_bytes)
        if why is not None:
            return why
        try:
            cert = self.check.verify(cert_bytes)
        except CertificateError as exc:
            self.refused[cert_bytes] = exc.reason
            return exc.reason
        self.verifier.add_certificate(cert)
        return cert


class _SimSealer(DatagramSealer):
    """The security layer's sealer; only the pairwise key derivation is memoized."""

    def __init__(self, key: SigningKey, trust: TrustStore, *, shared: _Shared, counter_start: int,
                 clock: Callable[[], float]) -> None:
        super().__init__(key, trust, counter_start=counter_start, clock=clock, window_blocks=WINDOW_BLOCKS,
                         drops=DropLog(logger=_SILENT))
        self._shared = shared
        self._me = key.node_id

    def _derive(self, cert: Certificate) -> tuple[bytes, bytes, bytes, bytes]:
        shared = self._shared
        view = shared.key_view(cert)
        hit = shared.pair_keys.pop((self._me, view.node_id), None)
        if hit is not None:
            return hit
        keys = super()._derive(view)  # type: ignore[arg-type]
        shared.pair_keys[(view.node_id, self._me)] = (keys[2], keys[3], keys[0], keys[1])
        return keys


class _KeyView:
    """What key derivation reads from a certificate, computed once per certificate
    (the node id is a hash and the X25519 form a curve conversion; both are pure)."""

    __slots__ = ("node_id", "name", "_x25519")

    def __init__(self, cert: Certificate) -> None:
        self.node_id = cert.node_id
        self.name = cert.name
        self._x25519 = cert.x25519_public()

    def x25519_public(self) -> bytes:
        return self._x25519


class NodeSecurity:
    """The security state of one simulated node (kept across its restarts)."""

    def __init__(self, key: SigningKey, cert: Certificate, shared: _Shared, clock: Callable[[], float],
                 *, trusted: AuthorityPublic, rogue: bool = False) -> None:
        self.key = key
        self.node_id = key.node_id
        self.cert = cert
        self.cert_bytes = cert.encode()
        self.rogue = rogue
        self.trust = TrustStore([trusted])
        self.signer = StatementSigner(key)
        self._shared = shared
        self._clock = clock
        self.refused: dict[str, int] = {}
        self._peers: dict[NodeId, Certificate] = {}  # admitted, in the current sealer
        self.sealer = self.new_sealer(0.0)

    def new_sealer(self, now: float) -> DatagramSealer:
        """A fresh sealer (at boot and restart). Counters start at the boot second << 32,
        like the runtime, so a restarted node never reuses a nonce under its keys."""
        start = (EPOCH_S + int(now) + 1) << 32
        self._peers = {}
        self.sealer = _SimSealer(self.key, self.trust, shared=self._shared, counter_start=start,
                                 clock=self._clock)
        return self.sealer

    def _refuse(self, reason: str) -> bool:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return False

    def admit(self, node: NodeId, cert_bytes: bytes) -> bool:
        if node == self.node_id:
            return True
        if self.rogue:
            return self._admit_anything(node, cert_bytes)
        got = self._shared.certificate(cert_bytes)
        if type(got) is str:
            return self._refuse(got)
        cert: Certificate = got  # type: ignore[assignment]
        if self._shared.key_view(cert).node_id != node:
            return self._refuse("cert_wrong_node")
        try:
            self.trust.check_current(cert, self._clock())
        except CertificateError as exc:
            return self._refuse(exc.reason)
        if self._peers.get(node) is cert and self.sealer.has_peer(node):
            return True  # the same certificate again: already a peer
        try:
            self.sealer.add_peer(cert)
        except SecurityError:
            return self._refuse("sealer_refused")
        self._peers[node] = cert
        return True

    def _admit_anything(self, node: NodeId, cert_bytes: bytes) -> bool:
        try:
            cert = decode_certificate(cert_bytes)
        except CertificateError:
            return False
        if cert.node_id != node:
            return False
        try:
            self.sealer.add_peer(cert)
        except SecurityError:
            return False
        return True

    def verify(self, node: NodeId, message: bytes, signature: bytes) -> bool:
        if self.rogue:
            return True
        if self.trust.is_revoked(node):
            return False
        return self._shared.verifier(node, message, signature)

    def add_revocation(self, rev: Revocation) -> bool:
        """Verify and record; True if new for this node. Raises CertificateError if forged."""
        if not self.trust.add_revocation(rev):
            return False
        self.sealer.remove_peer(rev.node)
        return True


class SecureCluster:
    """Keys and certificates for `n` simulated nodes; indices in `rogues` are outsiders."""

    def __init__(self, rng: random.Random, n: int, rogues: Iterable[int], clock: Callable[[], float]) -> None:
        self.authority = Authority(SigningKey(rng.randbytes(32)), CLUSTER)
        self.outsider = Authority(SigningKey(rng.randbytes(32)), CLUSTER)
        self.shared = _Shared(self.authority)
        rogue_set = set(rogues)
        self.nodes: list[NodeSecurity] = []
        for i in range(n):
            key = SigningKey(rng.randbytes(32))
            rogue = i in rogue_set
            auth = self.outsider if rogue else self.authority
            cert = auth.issue(key.public_key, name=f"n{i}", site=f"site{i % 50}", region=f"r{i % 4}",
                              serial=i + 1, not_before=EPOCH_S - 60, not_after=EPOCH_S + CERT_DAYS * _DAY_S)
            self.nodes.append(NodeSecurity(key, cert, self.shared, clock, trusted=auth.public, rogue=rogue))

    def revoke(self, node: NodeId, *, at_s: float = 0.0) -> Revocation:
        """A revocation of `node` signed by the cluster authority."""
        return self.authority.revoke(node, serial=1, revoked_at=EPOCH_S + int(at_s))
