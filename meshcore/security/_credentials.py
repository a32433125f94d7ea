"""Loading a node's credentials with clear errors, and throwaway clusters for tests/demo.

`load_credentials` checks, in order: the key file (exists, mode 0600, well-formed), the
authority files (1 or 2, same cluster), the certificate file (well-formed, certifies this
key, signed by a configured authority, inside its validity window at `now`, not revoked
in the optional revocation store). Each failure is a `CredentialError` naming the file and
the fix, so a node never starts half-secure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, CredentialError
from ._cert import Authority, Certificate
from ._counters import DropLog
from ._datagram import DatagramSealer
from ._errors import CertificateError
from ._files import (
    RevocationStore,
    load_authority_public,
    load_certificate_bytes,
    save_authority_public,
    save_certificate,
)
from ._handshake import LinkSecurity
from ._keys import SigningKey, load_secret_key, save_public_key, save_secret_key
from ._statements import StatementSigner, StatementVerifier
from ._trust import TrustStore

__all__ = ["Credentials", "load_credentials", "ThrowawayCluster", "make_throwaway_cluster"]

_DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Credentials:
    """Everything a node needs to take part securely."""

    key: SigningKey
    certificate: Certificate
    trust: TrustStore

    @property
    def node_id(self) -> bytes:
        return self.key.node_id

    def link_security(self, drops: DropLog | None = None) -> LinkSecurity:
        return LinkSecurity(self.key, self.certificate, self.trust, drops=drops)

    def datagram_sealer(
        self, *, counter_start: int, clock: Callable[[], float], drops: DropLog | None = None
    ) -> DatagramSealer:
        return DatagramSealer(
            self.key, self.trust, counter_start=counter_start, clock=clock, drops=drops
        )

    def statement_signer(self) -> StatementSigner:
        return StatementSigner(self.key)

    def statement_verifier(self) -> StatementVerifier:
        verifier = StatementVerifier(self.trust)
        verifier.add_certificate(self.certificate)
        return verifier


def load_credentials(
    key_path: str | os.PathLike[str],
    cert_path: str | os.PathLike[str],
    authority_paths: Sequence[str | os.PathLike[str]],
    *,
    now: float,
    revocations_path: str | os.PathLike[str] | None = None,
) -> Credentials:
    key = load_secret_key(key_path)
    if not authority_paths:
        raise CredentialError(
            "no authority file configured; pass the cluster's authority.pub (two during a "
            "key rollover)"
        )
    authorities = [load_authority_public(p) for p in authority_paths]
    try:
        trust = TrustStore(authorities)
    except ConfigError as exc:
        names = ", ".join(str(p) for p in authority_paths)
        raise CredentialError(f"{names}: {exc}") from None
    if revocations_path is not None:
        store = RevocationStore(revocations_path)
        for rev in store.load():
            try:
                trust.add_revocation(rev)
            except CertificateError as exc:
                raise CredentialError(
                    f"{revocations_path}: {exc}; it must come from a configured authority"
                ) from None
    raw = load_certificate_bytes(cert_path)
    try:
        cert = trust.verify(raw)
    except CertificateError as exc:
        fix = {
            "cert_wrong_cluster": "use a certificate of this cluster's authority",
            "cert_untrusted": "configure the authority that signed it, or get a new certificate",
        }.get(exc.reason, "get a new certificate (`meshcore authority sign`)")
        raise CredentialError(f"{cert_path}: {exc}; {fix}") from None
    if cert.public_key != key.public_key:
        raise CredentialError(
            f"{cert_path} certifies node {cert.node_id.hex()} but {key_path} is node "
            f"{key.node_id.hex()}; get a certificate for this key "
            f"(`meshcore authority sign DIR --node-pub {key_path}.pub ...`)"
        )
    try:
        trust.check_current(cert, now)
    except CertificateError as exc:
        fix = (
            "this node was revoked; the operator must issue a new key and certificate"
            if exc.reason == "cert_revoked"
            else "issue a new one with `meshcore authority sign` (or check the clock)"
        )
        raise CredentialError(f"{cert_path}: {exc}; {fix}") from None
    return Credentials(key, cert, trust)


@dataclass(frozen=True, slots=True)
class ThrowawayCluster:
    authority: Authority
    nodes: tuple[Credentials, ...]

    def issue(self, name: str, *, now: float, days: float = 30, site: str = "",
              region: str = "test", roles: tuple[str, ...] = (),
              key: SigningKey | None = None, serial: int | None = None) -> Credentials:
        """Certify one more node (a fresh key unless given) in this cluster."""
        key = key or SigningKey.generate()
        cert = self.authority.issue(
            key.public_key, name=name, site=site or name, region=region, roles=roles,
            serial=serial if serial is not None else len(self.nodes) + 1000,
            not_before=int(now) - 60, not_after=int(now + days * _DAY_S),
        )
        return Credentials(key, cert, TrustStore([self.authority.public]))


def make_throwaway_cluster(
    names: Sequence[str],
    *,
    now: float,
    cluster: str = "test",
    days: float = 30,
    region: str = "test",
    directory: str | os.PathLike[str] | None = None,
) -> ThrowawayCluster:
    """A fresh authority and one certified node per name (each with its own TrustStore).

    With `directory`, also writes ``authority.pub`` and, per node, ``NAME.key`` (0600),
    ``NAME.key.pub`` and ``NAME.cert`` there, for the demo and for process tests.
    """
    authority = Authority(SigningKey.generate(), cluster)
    base = ThrowawayCluster(authority, ())
    nodes = tuple(
        base.issue(name, now=now, days=days, region=region, serial=i + 1)
        for i, name in enumerate(names)
    )
    if directory is not None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_authority_public(authority.public, d / "authority.pub")
        for name, creds in zip(names, nodes, strict=True):
            save_secret_key(creds.key, d / f"{name}.key")
            save_public_key(creds.key.public_key, d / f"{name}.key.pub")
            save_certificate(creds.certificate, d / f"{name}.cert")
    return ThrowawayCluster(authority, nodes)
