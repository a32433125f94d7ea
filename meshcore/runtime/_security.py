"""The security layer wired for one node: admission, sealed datagrams, secure streams,
revocations, and one bag of named drop counters.

`MeshSecurity(credentials, wall_clock=...)` owns, for one node:

- `admit(node, cert_bytes) -> bool`: the SWIM core calls it for every Alive / member state
  before checking the record's signature. The certificate must be signed by a trusted
  authority for this cluster, be inside its validity window at the wall-clock `now`, not
  be revoked, and certify exactly `node`. On success the peer's key is registered with the
  statement verifier and the datagram sealer (so datagrams can be sealed to it and opened
  from it). Results are cached by the exact certificate bytes (bounded), so gossip that
  repeats a record costs a dict lookup; a refusal is counted by reason and logged
  (rate-limited).
- `datagrams`: the runtime's `DatagramSealer` seam over the security sealer. `seal` returns
  None for an address with no admitted peer (the driver counts `unsealable` and asks for a
  stream handshake to that address, which exchanges certificates both ways).
- `stream_wrapper`: Noise XX over every stream (TCP or WebSocket), handshakes rate-limited
  per source host; each side of a successful handshake admits the other's certificate.
- revocations: verified against the trusted authorities, persisted (optional store),
  then the node is forgotten by the sealer and the verifier; gossip carries them as
  system broadcasts (`REVOCATION_PREFIX + revocation bytes`), which `Node.events()` never
  shows.

Limits: `admit_cache_max` certificates cached (least recently used evicted); refusals are
cached only when they cannot change with time (malformed, wrong cluster, untrusted). The
datagram counter starts at `int(unix_time_s) << 32`, so a restarted node never reuses a
nonce under its (static) pairwise keys.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from .._types import Addr, NodeId
from ..errors import LocalProtocolError, SecurityError
from ..security import (
    REVOCATION_PREFIX,
    SYSTEM_PREFIX,
    Certificate,
    CertificateError,
    Counters,
    Credentials,
    DropLog,
    RateLimiter,
    Revocation,
    RevocationStore,
    StatementSigner,
    StatementVerifier,
    decode_revocation,
    decode_revocation_broadcast,
    encode_revocation_broadcast,
)
from ..security import DatagramSealer as _SecuritySealer
from ._seams import SealerStatistics
from ._securelink import SecureStreamWrapper

__all__ = ["SYSTEM_PREFIX", "REVOCATION_PREFIX", "MeshSecurity", "SealedDatagrams"]

log = logging.getLogger("meshcore.security")

_TIME_INDEPENDENT_REFUSALS = frozenset({"cert_malformed", "cert_wrong_cluster", "cert_untrusted"})


class SealedDatagrams:
    """The runtime's datagram seam backed by `meshcore.security.DatagramSealer`.

    Besides the member table's addresses, it remembers (bounded) the source address of
    every authenticated datagram, so a reply reaches a peer whose packets come from an
    address other than the one it advertises (wildcard binds, NAT).
    """

    def __init__(
        self,
        sealer: _SecuritySealer,
        drops: DropLog,
        wall_clock: Callable[[], float],
        *,
        reply_routes_max: int = 4096,
    ) -> None:
        self._sealer = sealer
        self._drops = drops
        self._wall_clock = wall_clock
        self._unsealable = 0
        self._reply_routes: OrderedDict[Addr, NodeId] = OrderedDict()
        self._reply_routes_max = reply_routes_max

    def seal(self, peer: Addr, plaintext: bytes) -> bytes | None:
        if not self._sealer.can_seal(peer):
            node = self._reply_routes.get(peer)
            if node is not None and self._sealer.has_peer(node):
                return self._sealer.seal_to(node, plaintext)
            self._unsealable += 1
            self._drops.drop(
                "unsealable_destination", self._wall_clock(),
                f"no admitted peer at {peer[0]}:{peer[1]} yet (a handshake is requested)",
            )
            return None
        return self._sealer.seal(peer, plaintext)

    def open(self, src: Addr, data: bytes) -> bytes | None:
        got = self._sealer.open_from(src, data)
        if got is None:
            return None
        node, plaintext = got
        if self._sealer.peer_at(src) != node and self._reply_routes.get(src) != node:
            self._reply_routes[src] = node
            if len(self._reply_routes) > self._reply_routes_max:
                self._reply_routes.popitem(last=False)
        return plaintext

    def statistics(self) -> SealerStatistics:
        s = self._sealer.statistics()
        return SealerStatistics(sealed=s.sealed, opened=s.opened, dropped=s.dropped + self._unsealable)


class MeshSecurity:
    def __init__(
        self,
        credentials: Credentials,
        *,
        wall_clock: Callable[[], float] = time.time,
        revocation_store: RevocationStore | None = None,
        counter_start: int | None = None,
        drop_log_interval_s: float = 10.0,
        admit_cache_max: int = 4096,
        handshake_rate_per_s: float = 20.0,
        handshake_burst: float = 40.0,
        handshake_timeout_s: float = 10.0,
    ) -> None:
        self.credentials = credentials
        self.trust = credentials.trust
        self.wall_clock = wall_clock
        self.counters = Counters()
        self.drops = DropLog(self.counters, log_interval_s=drop_log_interval_s, logger=log)
        if counter_start is None:
            counter_start = int(wall_clock()) << 32
        self.sealer = credentials.datagram_sealer(
            counter_start=counter_start, clock=wall_clock, drops=self.drops
        )
        self.datagrams = SealedDatagrams(self.sealer, self.drops, wall_clock)
        self.signer = StatementSigner(credentials.key)
        self.verifier = StatementVerifier(self.trust, counters=self.counters)
        self.verifier.add_certificate(credentials.certificate)
        self.link = credentials.link_security(drops=self.drops)
        self.cert_bytes = self.link.certificate_bytes
        self.node_id: NodeId = credentials.key.node_id
        self._store = revocation_store
        self._admitted: OrderedDict[bytes, Certificate] = OrderedDict()
        self._refused: OrderedDict[bytes, str] = OrderedDict()
        self._cache_max = admit_cache_max
        #: False for stream addresses that are not also datagram addresses (WebSocket
        #: endpoints); the node sets it from its transport.
        self.datagram_routable: Callable[[Addr], bool] = lambda addr: True
        self.stream_wrapper = SecureStreamWrapper(
            self.link,
            wall_clock=wall_clock,
            limiter=RateLimiter(handshake_rate_per_s, handshake_burst),
            on_handshake=self.on_stream_peer,
            timeout_s=handshake_timeout_s,
        )

    # --- admission ----------------------------------------------------------------------

    def _refuse(self, reason: str, detail: str) -> bool:
        self.drops.drop(reason, self.wall_clock(), detail)
        return False

    def admit(self, node: NodeId, cert_bytes: bytes) -> bool:
        """May a record about `node`, carrying `cert_bytes`, be considered? Never raises."""
        if node == self.node_id:
            return cert_bytes == self.cert_bytes or not cert_bytes
        now = self.wall_clock()
        cert = self._admitted.get(cert_bytes)
        if cert is not None:
            if cert.node_id != node:
                return self._refuse("cert_node_mismatch", f"record about {node.hex()[:8]}")
            if self.trust.is_revoked(node):
                return self._refuse("cert_revoked", f"node {cert.name!r}")
            if now > cert.not_after + 60:
                return self._refuse("cert_expired", f"node {cert.name!r}")
            self._admitted.move_to_end(cert_bytes)
            return True
        if not cert_bytes:
            return self._refuse("cert_missing", f"record about {node.hex()[:8]} has no certificate")
        known = self._refused.get(cert_bytes)
        if known is not None:
            return self._refuse(known, f"record about {node.hex()[:8]} (cached refusal)")
        try:
            cert = self.trust.admit(cert_bytes, now)
        except CertificateError as exc:
            if exc.reason in _TIME_INDEPENDENT_REFUSALS:
                self._refused[cert_bytes] = exc.reason
                if len(self._refused) > self._cache_max:
                    self._refused.popitem(last=False)
            return self._refuse(exc.reason, f"record about {node.hex()[:8]}: {exc}")
        if cert.node_id != node:
            return self._refuse("cert_node_mismatch", f"record about {node.hex()[:8]} carries {cert.name!r}")
        try:
            self._register(cert, None)
        except SecurityError as exc:
            return self._refuse("cert_unusable", f"{cert.name!r}: {exc}")
        self._admitted[cert_bytes] = cert
        if len(self._admitted) > self._cache_max:
            self._admitted.popitem(last=False)
        return True

    def _register(self, cert: Certificate, addr: Addr | None) -> None:
        self.verifier.add_certificate(cert)
        self.sealer.add_peer(cert, addr)

    def on_stream_peer(self, cert: Certificate, addr: Addr, initiator: bool) -> None:
        """A stream handshake admitted `cert` (the full TrustStore check already ran)."""
        # On the initiating side `addr` is where the peer listens (datagrams go there too);
        # on the accepting side it is an ephemeral source port, so the address comes later,
        # from the member table.
        if cert.public_key == self.credentials.key.public_key:
            return
        try:
            self._register(cert, addr if initiator and self.datagram_routable(addr) else None)
        except (SecurityError, LocalProtocolError) as exc:
            self.drops.drop("cert_unusable", self.wall_clock(), f"{cert.name!r}: {exc}")

    def learn_address(self, node: NodeId, addr: Addr) -> None:
        """The member table says `node` (admitted) listens at `addr`: seal datagrams there."""
        if node != self.node_id and self.sealer.has_peer(node):
            if self.sealer.peer_at(addr) != node:
                self.sealer.set_peer_addr(node, addr)

    # --- revocations -------------------------------------------------------------------

    def add_revocation(self, data: bytes | Revocation) -> NodeId | None:
        """Verify, record and persist a revocation; returns the revoked node when it is new
        (the caller then expels it and gossips it), None when already known. Raises
        CertificateError for one that is malformed or not from a trusted authority."""
        rev = decode_revocation(data) if isinstance(data, bytes) else data
        if not self.trust.add_revocation(rev):
            return None
        if self._store is not None:
            try:
                self._store.append(rev)
            except Exception as exc:  # a full disk must not stop the expulsion
                log.error("cannot persist a revocation: %s", exc)
        if rev.node == self.node_id:
            log.error("this node's certificate was revoked by the authority; it will be expelled")
            return rev.node
        self.sealer.remove_peer(rev.node)
        self.verifier.remove(rev.node)
        for cert_bytes in [b for b, c in self._admitted.items() if c.node_id == rev.node]:
            del self._admitted[cert_bytes]
        log.warning("node %s is revoked (serial %d): expelling it", rev.node.hex(), rev.serial)
        return rev.node

    def on_system_broadcast(self, payload: bytes) -> NodeId | None:
        """Handle a system broadcast from gossip; returns a newly revoked node, if any.
        Remote input: a bad payload is counted and dropped."""
        try:
            return self.add_revocation(decode_revocation_broadcast(payload))
        except CertificateError as exc:
            self.drops.drop(exc.reason, self.wall_clock(), f"gossiped revocation: {exc}")
            return None

    def revocation_payloads(self) -> list[bytes]:
        return [encode_revocation_broadcast(r) for r in self.trust.revocations()]

    # --- counters ----------------------------------------------------------------------

    def drop_counts(self) -> Mapping[str, int]:
        return self.counters.snapshot()
