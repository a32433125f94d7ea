"""Admission: does a peer's certificate verify, is it current, is it unrevoked?

`TrustStore.admit(cert_bytes, now)` is the one gate every peer passes (stream handshake,
datagram peer table, statement verifier). Signature checks are cached by the exact
certificate bytes (bounded), so a known peer costs a dict lookup plus two comparisons;
validity window and revocation are checked on every call because they change with time
and gossip. At most two authorities are trusted at once (old and new, during rollover).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from .._types import NodeId
from ..errors import ConfigError
from ._cert import AuthorityPublic, Certificate, Revocation, decode_certificate, decode_revocation
from ._errors import CertificateError

__all__ = ["AUTHORITIES_MAX", "TrustStore"]

AUTHORITIES_MAX = 2


class TrustStore:
    def __init__(
        self,
        authorities: Iterable[AuthorityPublic],
        *,
        clock_skew_s: int = 60,
        cache_entries_max: int = 4096,
    ) -> None:
        auths = list(authorities)
        if not 1 <= len(auths) <= AUTHORITIES_MAX:
            raise ConfigError(
                f"trust 1 to {AUTHORITIES_MAX} authorities (old and new during a key "
                f"rollover), got {len(auths)}"
            )
        clusters = {a.cluster for a in auths}
        if len(clusters) != 1:
            raise ConfigError(f"trusted authorities name different clusters: {sorted(clusters)}")
        self.cluster: str = auths[0].cluster
        self._by_key_id = {a.key_id: a for a in auths}
        self._clock_skew_s = clock_skew_s
        self._cache: OrderedDict[bytes, Certificate] = OrderedDict()
        self._cache_max = cache_entries_max
        self._revoked: dict[NodeId, Revocation] = {}

    @property
    def authorities(self) -> tuple[AuthorityPublic, ...]:
        return tuple(self._by_key_id.values())

    # --- certificates -----------------------------------------------------------------

    def verify(self, cert_bytes: bytes) -> Certificate:
        """Parse and check the authority's signature (cached); not time or revocation."""
        cert = self._cache.get(cert_bytes)
        if cert is not None:
            return cert
        cert = decode_certificate(cert_bytes)
        if cert.cluster != self.cluster:
            raise CertificateError(
                f"certificate is for cluster {cert.cluster!r}, not {self.cluster!r}",
                reason="cert_wrong_cluster",
            )
        auth = self._by_key_id.get(cert.issuer)
        if auth is None or not auth.verifies(cert.tbs_bytes(), cert.signature):
            raise CertificateError(
                f"certificate of {cert.name!r} is not signed by a trusted authority",
                reason="cert_untrusted",
            )
        self._cache[cert_bytes] = cert
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return cert

    def check_current(self, cert: Certificate, now: float) -> None:
        """Raise CertificateError if `cert` is outside its window or revoked at `now`."""
        if now + self._clock_skew_s < cert.not_before:
            raise CertificateError(
                f"certificate of {cert.name!r} is not valid before {cert.not_before}",
                reason="cert_not_yet_valid",
            )
        if now > cert.not_after + self._clock_skew_s:
            raise CertificateError(
                f"certificate of {cert.name!r} expired at {cert.not_after}",
                reason="cert_expired",
            )
        if cert.node_id in self._revoked:
            raise CertificateError(
                f"node {cert.name!r} ({cert.node_id.hex()}) is revoked", reason="cert_revoked"
            )

    def admit(self, cert_bytes: bytes, now: float) -> Certificate:
        """The full admission check; returns the certificate or raises CertificateError."""
        cert = self.verify(cert_bytes)
        self.check_current(cert, now)
        return cert

    # --- revocations ------------------------------------------------------------------

    def add_revocation(self, revocation: Revocation | bytes) -> bool:
        """Verify and record a revocation; True if it is new. Raises CertificateError
        for one that is malformed or not signed by a trusted authority."""
        rev = decode_revocation(revocation) if isinstance(revocation, bytes) else revocation
        auth = self._by_key_id.get(rev.issuer)
        if (
            rev.cluster != self.cluster
            or auth is None
            or not auth.verifies(rev.tbs_bytes(), rev.signature)
        ):
            raise CertificateError(
                "revocation is not signed by a trusted authority", reason="revocation_untrusted"
            )
        if rev.node in self._revoked:
            return False
        self._revoked[rev.node] = rev
        return True

    def is_revoked(self, node: NodeId) -> bool:
        return node in self._revoked

    def revocations(self) -> tuple[Revocation, ...]:
        return tuple(self._revoked.values())
