"""Sealed datagrams (SWIM over UDP): pairwise static keys, counters, replay windows.

Wire layout (32 bytes of overhead): ``key id (8) | counter (8, big-endian) | ciphertext
with 16-byte Poly1305 tag``; the first 16 bytes are the associated data and the counter is
the ChaCha20-Poly1305 nonce. For each admitted peer, an X25519 static-static DH of the two
certified keys, mixed with the cluster name and both node ids, gives one key and one key id
per direction. `open` drops a datagram from an unknown key id after one dict lookup, before
any costly operation; then it checks expiry/revocation, the replay window, and the MAC.
Nothing here raises on remote input: every drop is counted (and logged, rate-limited).

Counters must never repeat under one key, including across restarts of the sender: the
runtime passes ``counter_start = int(unix_time_s) << 32``, so a later boot always starts
above anything an earlier boot could have sent (below 2**32 datagrams per second). Known
limit: a receiver that restarts forgets its windows and would accept one replay of each
datagram captured before its restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nacl import bindings as _nacl

from .._types import Addr, NodeId
from ..errors import LocalProtocolError, SecurityError
from ..wire import DATAGRAM_BYTES_MAX
from ._aead import Aead, InvalidTag
from ._cert import Certificate
from ._counters import DropLog
from ._keys import SigningKey
from ._noise import hkdf
from ._replay import ReplayWindow
from ._trust import TrustStore

__all__ = ["DATAGRAM_OVERHEAD_BYTES", "DatagramStatistics", "DatagramSealer"]

KEY_ID_BYTES = 8
COUNTER_BYTES = 8
HEADER_BYTES = KEY_ID_BYTES + COUNTER_BYTES
DATAGRAM_OVERHEAD_BYTES = HEADER_BYTES + 16
_COUNTER_MAX = 2**64 - 1

_ZERO4 = bytes(4)


@dataclass(frozen=True, slots=True, kw_only=True)
class DatagramStatistics:
    sealed: int
    opened: int
    dropped: int
    peers: int
    drops: Mapping[str, int]


class _Peer:
    __slots__ = ("cert", "node", "addr", "tx_id", "tx", "rx_id", "rx", "window")

    def __init__(self, cert: Certificate, addr: Addr | None, keys: tuple[bytes, bytes, bytes, bytes], blocks: int) -> None:
        self.cert = cert
        self.node = cert.node_id
        self.addr = addr
        self.tx_id, tx_key, self.rx_id, rx_key = keys
        self.tx, self.rx = Aead(tx_key), Aead(rx_key)
        self.window = ReplayWindow(blocks)


class DatagramSealer:
    """Seals datagrams to admitted peers and opens datagrams from them.

    Fits the runtime's sealer seam: `seal(peer_addr, plaintext) -> bytes` and
    `open(src_addr, data) -> bytes | None`; `open_from` also returns the sender's node id.
    `clock` gives the current time (for expiry checks and the rate-limited drop log).
    """

    def __init__(
        self,
        key: SigningKey,
        trust: TrustStore,
        *,
        counter_start: int,
        clock: Callable[[], float],
        drops: DropLog | None = None,
        window_blocks: int = 128,
    ) -> None:
        if not 0 <= counter_start < _COUNTER_MAX:
            raise ValueError("counter_start must be in [0, 2**64-1); pass int(unix_time_s) << 32")
        self._key = key
        self._trust = trust
        self._counter = counter_start
        self._clock = clock
        self.drops = drops if drops is not None else DropLog()
        self._blocks = window_blocks
        self._by_rx_id: dict[bytes, _Peer] = {}
        self._by_node: dict[NodeId, _Peer] = {}
        self._by_addr: dict[Addr, _Peer] = {}
        self._sealed = 0
        self._opened = 0
        self._dropped = 0

    # --- peer table -------------------------------------------------------------------

    def _derive(self, cert: Certificate) -> tuple[bytes, bytes, bytes, bytes]:
        me, them = self._key.node_id, cert.node_id
        try:
            shared = _nacl.crypto_scalarmult(self._key.x25519_secret, cert.x25519_public())
        except Exception:
            raise SecurityError(f"certificate of {cert.name!r} has an unusable key") from None
        lo, hi = sorted((me, them))
        salt = hashlib.blake2b(
            b"meshcore datagram v1\0" + self._trust.cluster.encode() + b"\0" + lo + hi
        ).digest()
        out_lo, out_hi = hkdf(salt, shared, 2)  # out_lo keys the lo -> hi direction
        mine, theirs = (out_lo, out_hi) if me == lo else (out_hi, out_lo)
        return mine[32:40], mine[:32], theirs[32:40], theirs[:32]

    def admit_peer(self, cert_bytes: bytes, now: float, addr: Addr | None = None) -> Certificate:
        """Admit a peer by its certificate bytes (full TrustStore check); raises
        CertificateError if it may not be admitted."""
        cert = self._trust.admit(cert_bytes, now)
        self.add_peer(cert, addr)
        return cert

    def add_peer(self, cert: Certificate, addr: Addr | None = None) -> None:
        """Add (or refresh) a peer whose certificate the caller already admitted."""
        if cert.public_key == self._key.public_key:
            raise LocalProtocolError("a node does not seal datagrams to itself")
        old = self._by_node.get(cert.node_id)
        if old is not None and old.cert == cert:
            if addr is not None:
                self.set_peer_addr(cert.node_id, addr)
            return
        keys = self._derive(cert)
        if keys[2] in self._by_rx_id and (old is None or old.rx_id != keys[2]):
            raise SecurityError("datagram key id collision; refusing the peer")
        self.remove_peer(cert.node_id)
        peer = _Peer(cert, addr, keys, self._blocks)
        if old is not None and old.rx_id == peer.rx_id:
            peer.window = old.window  # same key: keep its replay history
        self._by_node[peer.node] = peer
        self._by_rx_id[peer.rx_id] = peer
        if addr is not None:
            self.set_peer_addr(peer.node, addr)

    def remove_peer(self, node: NodeId) -> None:
        peer = self._by_node.pop(node, None)
        if peer is None:
            return
        self._by_rx_id.pop(peer.rx_id, None)
        if peer.addr is not None and self._by_addr.get(peer.addr) is peer:
            del self._by_addr[peer.addr]

    def set_peer_addr(self, node: NodeId, addr: Addr) -> None:
        peer = self._by_node.get(node)
        if peer is None:
            raise LocalProtocolError(f"node {node.hex()} is not an admitted peer; add it first")
        if peer.addr is not None and self._by_addr.get(peer.addr) is peer:
            del self._by_addr[peer.addr]
        peer.addr = addr
        self._by_addr[addr] = peer

    def has_peer(self, node: NodeId) -> bool:
        return node in self._by_node

    def can_seal(self, addr: Addr) -> bool:
        return addr in self._by_addr

    def peer_at(self, addr: Addr) -> NodeId | None:
        peer = self._by_addr.get(addr)
        return None if peer is None else peer.node

    # --- sealing ----------------------------------------------------------------------

    def _seal(self, peer: _Peer, plaintext: bytes) -> bytes:
        if len(plaintext) + DATAGRAM_OVERHEAD_BYTES > DATAGRAM_BYTES_MAX:
            raise ValueError(
                f"datagram plaintext of {len(plaintext)} bytes exceeds "
                f"{DATAGRAM_BYTES_MAX - DATAGRAM_OVERHEAD_BYTES}"
            )
        counter = self._counter
        if counter >= _COUNTER_MAX:
            raise LocalProtocolError("datagram counter exhausted; restart with a new counter_start")
        self._counter = counter + 1
        c8 = counter.to_bytes(8, "big")
        header = peer.tx_id + c8
        self._sealed += 1
        return header + peer.tx.encrypt(_ZERO4 + c8, plaintext, header)

    def seal(self, peer: Addr, plaintext: bytes) -> bytes:
        """Seal for the admitted peer at address `peer`; raises LocalProtocolError if no
        admitted peer is known there (check `can_seal` first)."""
        p = self._by_addr.get(peer)
        if p is None:
            raise LocalProtocolError(
                f"no admitted peer at {peer[0]}:{peer[1]}; admit it (stream handshake) first"
            )
        return self._seal(p, plaintext)

    def seal_to(self, node: NodeId, plaintext: bytes) -> bytes:
        p = self._by_node.get(node)
        if p is None:
            raise LocalProtocolError(f"node {node.hex()} is not an admitted peer; add it first")
        return self._seal(p, plaintext)

    # --- opening ----------------------------------------------------------------------

    def _drop(self, reason: str, src: Addr) -> None:
        self._dropped += 1
        self.drops.drop(reason, self._clock(), f"datagram from {src[0]}:{src[1]}")

    def open_from(self, src: Addr, data: bytes) -> tuple[NodeId, bytes] | None:
        """(sender, plaintext), or None after counting the drop. Never raises."""
        if not HEADER_BYTES + 16 <= len(data) <= DATAGRAM_BYTES_MAX:
            self._drop("datagram_malformed", src)
            return None
        peer = self._by_rx_id.get(bytes(data[:KEY_ID_BYTES]))
        if peer is None:
            self._drop("unknown_sender", src)
            return None
        if self._trust.is_revoked(peer.node):
            self._drop("cert_revoked", src)
            return None
        if self._clock() > peer.cert.not_after:
            self._drop("cert_expired", src)
            return None
        c8 = bytes(data[KEY_ID_BYTES:HEADER_BYTES])
        counter = int.from_bytes(c8, "big")
        window = peer.window
        if not window.check(counter):
            self._drop("replay", src)
            return None
        try:
            plaintext = peer.rx.decrypt(_ZERO4 + c8, bytes(data[HEADER_BYTES:]), bytes(data[:HEADER_BYTES]))
        except InvalidTag:
            self._drop("bad_mac", src)
            return None
        window.update(counter)
        self._opened += 1
        return peer.node, plaintext

    def open(self, src: Addr, data: bytes) -> bytes | None:
        got = self.open_from(src, data)
        return None if got is None else got[1]

    def statistics(self) -> DatagramStatistics:
        return DatagramStatistics(
            sealed=self._sealed,
            opened=self._opened,
            dropped=self._dropped,
            peers=len(self._by_node),
            drops=self.drops.counters.snapshot(),
        )
