"""The identity-bound handshake: Noise XX/IK whose payloads carry certificates.

Each side's encrypted handshake payload is ``[certificate, binding signature]``: the
certificate (checked by `TrustStore.admit`) names the node's Ed25519 key, the signature by
that key over ``"meshcore noise static v1" + Noise static key`` binds the Noise static key
to the identity (as libp2p-noise does), and the static key must also be the X25519 form of
the certified key (so datagram keys derived from certificates agree with links).

`LinkSecurity` is what a node configures once (its key, certificate, trust store, caches,
drop counters); `IdentityHandshake` is one sans-I/O handshake driven by bytes and `now`.
Caching: the binding signature is made once per node; a peer's certificate signature and
binding are verified once per distinct (certificate, static key, signature), bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cbor2

from .._types import NodeId
from ..errors import DecodeError
from ..wire import loads_strict
from ._cert import CERT_BYTES_MAX, Certificate
from ._counters import DropLog
from ._errors import HandshakeError
from ._keys import SigningKey, verify_signature
from ._noise import CipherState, NoiseHandshake
from ._trust import TrustStore

__all__ = [
    "PATTERN_IDS",
    "LinkSecurity",
    "IdentityHandshake",
    "HandshakeResult",
    "binding_bytes",
    "handshake_pair",
]

#: First byte of a link's first handshake message says which pattern follows.
PATTERN_IDS = {"XX": 1, "IK": 2}
_BINDING_TAG = b"meshcore noise static v1"
_PAYLOAD_BYTES_MAX = CERT_BYTES_MAX + 128
_BINDING_CACHE_MAX = 4096


def binding_bytes(static_public: bytes) -> bytes:
    return _BINDING_TAG + static_public


def _prologue(cluster: str, pattern: str) -> bytes:
    # Peers of another cluster, or disagreeing on the pattern, fail at the first MAC.
    return b"meshcore link v1\0" + cluster.encode() + b"\0" + pattern.encode()


class LinkSecurity:
    """A node's link credentials and shared verification caches."""

    def __init__(
        self,
        key: SigningKey,
        certificate: Certificate,
        trust: TrustStore,
        *,
        drops: DropLog | None = None,
    ) -> None:
        if certificate.public_key != key.public_key:
            raise ValueError("the certificate does not certify this key")
        self.key = key
        self.certificate = certificate
        self.certificate_bytes = certificate.encode()
        self.trust = trust
        self.drops = drops if drops is not None else DropLog()
        self.static = (key.x25519_secret, key.x25519_public)
        self._payload = cbor2.dumps(
            [self.certificate_bytes, key.sign(binding_bytes(key.x25519_public))]
        )
        self._statics: OrderedDict[bytes, bytes] = OrderedDict()
        self._bindings: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()

    @property
    def node_id(self) -> NodeId:
        return self.key.node_id

    @property
    def payload(self) -> bytes:
        return self._payload

    def static_of(self, cert_bytes: bytes, cert: Certificate) -> bytes:
        """The X25519 static key a certificate implies (cached: a field inversion)."""
        x = self._statics.get(cert_bytes)
        if x is None:
            try:
                x = cert.x25519_public()
            except ValueError:
                raise HandshakeError(
                    "certified key has no X25519 form", reason="binding_invalid"
                ) from None
            self._statics[cert_bytes] = x
            if len(self._statics) > _BINDING_CACHE_MAX:
                self._statics.popitem(last=False)
        return x

    def check_payload(self, payload: bytes, remote_static: bytes, now: float) -> Certificate:
        """Verify a peer's handshake payload; raise a SecurityError subclass if bad."""
        cert_bytes, sig = _decode_payload(payload)
        cert = self.trust.admit(cert_bytes, now)
        if self.static_of(cert_bytes, cert) != remote_static:
            raise HandshakeError(
                f"peer {cert.name!r} uses a Noise static key its certificate does not name",
                reason="binding_invalid",
            )
        cache_key = (cert_bytes, remote_static, sig)
        if cache_key not in self._bindings:
            if not verify_signature(cert.public_key, binding_bytes(remote_static), sig):
                raise HandshakeError(
                    f"peer {cert.name!r} did not sign its Noise static key",
                    reason="binding_invalid",
                )
            self._bindings[cache_key] = None
            if len(self._bindings) > _BINDING_CACHE_MAX:
                self._bindings.popitem(last=False)
        return cert


def _decode_payload(payload: bytes) -> tuple[bytes, bytes]:
    bad = HandshakeError("malformed identity payload", reason="handshake_malformed")
    if len(payload) > _PAYLOAD_BYTES_MAX:
        raise bad
    try:
        value: Any = loads_strict(payload, bytes_max=_PAYLOAD_BYTES_MAX, what="identity payload")
    except DecodeError:
        raise bad from None
    if (
        type(value) is not list
        or len(value) != 2
        or type(value[0]) is not bytes
        or type(value[1]) is not bytes
    ):
        raise bad
    return value[0], value[1]


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    peer: Certificate
    send: CipherState
    receive: CipherState
    handshake_hash: bytes
    pattern: str


class IdentityHandshake:
    """One sans-I/O handshake. Loop: if `is_my_turn`, send `write_message(now)`; else feed
    the peer's next message to `read_message(data, now)`; stop when `complete`, then take
    `result()`. Errors are `HandshakeError` / `CertificateError` (both SecurityError).

    `peer_certificate` (initiator only) selects IK: one round trip, for a peer whose
    certificate (hence static key) is already known. `expected_node` makes the handshake
    fail unless the peer is that node.
    """

    def __init__(
        self,
        security: LinkSecurity,
        *,
        initiator: bool,
        now: float,
        pattern: str = "XX",
        peer_certificate: Certificate | None = None,
        expected_node: NodeId | None = None,
    ) -> None:
        if pattern not in PATTERN_IDS:
            raise ValueError(f"unknown pattern {pattern!r}; use XX or IK")
        remote_static = None
        if pattern == "IK" and initiator:
            if peer_certificate is None:
                raise ValueError("an IK initiator needs the peer's certificate")
            security.trust.check_current(peer_certificate, now)
            remote_static = security.static_of(peer_certificate.encode(), peer_certificate)
            if expected_node is None:
                expected_node = peer_certificate.node_id
        self._sec = security
        self.pattern = pattern
        self.initiator = initiator
        self._expected = expected_node
        self._peer: Certificate | None = None
        self._noise = NoiseHandshake(
            pattern,
            initiator=initiator,
            prologue=_prologue(security.trust.cluster, pattern),
            static=security.static,
            remote_static=remote_static,
        )

    @property
    def complete(self) -> bool:
        return self._noise.complete

    @property
    def is_my_turn(self) -> bool:
        return self._noise.is_my_turn

    def write_message(self, now: float) -> bytes:
        # The identity travels only once a key protects it (never in XX message 1).
        noise = self._noise
        first_xx = self.pattern == "XX" and self.initiator and noise.e_pub is None
        return noise.write_message(b"" if first_xx else self._sec.payload)

    def read_message(self, data: bytes, now: float) -> None:
        payload = self._noise.read_message(data)
        if self._noise.remote_static is None or not payload:
            if self.pattern == "XX" and not self.initiator and self._noise.remote_static is None:
                return  # XX message 1 carries only the ephemeral key
            raise HandshakeError("peer sent no identity", reason="handshake_malformed")
        cert = self._sec.check_payload(payload, self._noise.remote_static, now)
        if self._expected is not None and cert.node_id != self._expected:
            raise HandshakeError(
                f"peer is {cert.name!r} ({cert.node_id.hex()}), expected node "
                f"{self._expected.hex()}",
                reason="peer_mismatch",
            )
        self._peer = cert

    def result(self) -> HandshakeResult:
        if not self.complete or self._peer is None:
            raise ValueError("the handshake is not complete")
        send, receive = self._noise.split()
        return HandshakeResult(
            self._peer, send, receive, self._noise.handshake_hash, self.pattern
        )


def handshake_pair(
    initiator: LinkSecurity,
    responder: LinkSecurity,
    *,
    now: float,
    pattern: str = "XX",
    rounds_max: int = 4,
) -> tuple[HandshakeResult, HandshakeResult]:
    """Run a whole handshake between two local sides (tests, benchmarks): returns the
    (initiator, responder) results or raises the first SecurityError either side hits."""
    i = IdentityHandshake(
        initiator, initiator=True, now=now, pattern=pattern,
        peer_certificate=responder.certificate if pattern == "IK" else None,
    )
    r = IdentityHandshake(responder, initiator=False, now=now, pattern=pattern)
    for _ in range(rounds_max):
        if i.complete and r.complete:
            return i.result(), r.result()
        if i.is_my_turn:
            r.read_message(i.write_message(now), now)
        else:
            i.read_message(r.write_message(now), now)
    raise RuntimeError(f"handshake did not finish in {rounds_max} messages")
