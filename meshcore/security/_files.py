"""Credential files: certificates, authority public keys, the authority directory and
the revocation store. Every error is a `CredentialError` naming the file and the fix.

Formats are one-line text records so an operator can inspect and copy them:
``meshcore-cert v1 <hex>``, ``meshcore-authority v1 <cluster> <public key hex>``; the
revocation store holds one ``meshcore-revocation v1 <hex>`` per line (append-only).
An authority directory holds ``authority.key`` (0600), ``authority.pub``, ``issued/``
(one certificate per serial) and ``revocations``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CredentialError
from ._cert import (
    CLUSTER_RE,
    Authority,
    AuthorityPublic,
    Certificate,
    Revocation,
    decode_certificate,
    decode_revocation,
)
from ._errors import CertificateError
from ._keys import SigningKey, load_secret_key, save_secret_key

__all__ = [
    "save_certificate",
    "load_certificate",
    "save_authority_public",
    "load_authority_public",
    "RevocationStore",
    "AuthorityDir",
]

_CERT_HEADER = "meshcore-cert v1"
_AUTH_HEADER = "meshcore-authority v1"
_REV_HEADER = "meshcore-revocation v1"
_REVOCATIONS_MAX = 100_000


def _read_text(path: Path, what: str, fix: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise CredentialError(f"{path}: {what} not found; {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"{path}: cannot read the {what} ({exc})") from None


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise CredentialError(f"{path}: cannot write ({exc.strerror})") from None


def save_certificate(cert: Certificate, path: str | os.PathLike[str]) -> None:
    _write_text(Path(path), f"{_CERT_HEADER} {cert.encode().hex()}\n")


def load_certificate_bytes(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    parts = _read_text(
        p, "certificate", "ask the operator for one (`meshcore authority sign`)"
    ).split()
    if len(parts) != 3 or " ".join(parts[:2]) != _CERT_HEADER:
        raise CredentialError(f"{p}: not a meshcore certificate file (expected '{_CERT_HEADER} <hex>')")
    try:
        return bytes.fromhex(parts[2])
    except ValueError:
        raise CredentialError(f"{p}: the certificate is not valid hex") from None


def load_certificate(path: str | os.PathLike[str]) -> Certificate:
    """Parse a certificate file (not verified: `TrustStore` does that)."""
    try:
        return decode_certificate(load_certificate_bytes(path))
    except CertificateError as exc:
        raise CredentialError(f"{path}: malformed certificate ({exc}); get a new one") from None


def save_authority_public(public: AuthorityPublic, path: str | os.PathLike[str]) -> None:
    _write_text(Path(path), f"{_AUTH_HEADER} {public.cluster} {public.public_key.hex()}\n")


def load_authority_public(path: str | os.PathLike[str]) -> AuthorityPublic:
    p = Path(path)
    parts = _read_text(
        p, "authority file", "copy authority.pub from the authority directory"
    ).split()
    if len(parts) != 4 or " ".join(parts[:2]) != _AUTH_HEADER or not CLUSTER_RE.fullmatch(parts[2]):
        raise CredentialError(
            f"{p}: not a meshcore authority file (expected '{_AUTH_HEADER} <cluster> <hex>')"
        )
    try:
        key = bytes.fromhex(parts[3])
        return AuthorityPublic(parts[2], key)
    except ValueError:
        raise CredentialError(f"{p}: the authority key must be 32 bytes of hex") from None


class RevocationStore:
    """An append-only file of signed revocations (verification is the TrustStore's job)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> list[Revocation]:
        if not self.path.exists():
            return []
        out: list[Revocation] = []
        text = _read_text(self.path, "revocation store", "")
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 3 or " ".join(parts[:2]) != _REV_HEADER:
                    raise ValueError("bad header")
                out.append(decode_revocation(bytes.fromhex(parts[2])))
            except (ValueError, CertificateError) as exc:
                raise CredentialError(
                    f"{self.path}:{lineno}: malformed revocation ({exc}); remove that line"
                ) from None
            if len(out) > _REVOCATIONS_MAX:
                raise CredentialError(f"{self.path}: more than {_REVOCATIONS_MAX} revocations")
        return out

    def append(self, revocation: Revocation) -> None:
        try:
            with self.path.open("a") as f:
                f.write(f"{_REV_HEADER} {revocation.encode().hex()}\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise CredentialError(f"{self.path}: cannot append ({exc.strerror})") from None


class AuthorityDir:
    """The operator's authority directory (created by `meshcore authority init`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.key_path = self.path / "authority.key"
        self.public_path = self.path / "authority.pub"
        self.issued_path = self.path / "issued"
        self.revocations = RevocationStore(self.path / "revocations")

    @classmethod
    def init(cls, path: str | os.PathLike[str], cluster: str) -> AuthorityDir:
        if not CLUSTER_RE.fullmatch(cluster):
            raise CredentialError(
                f"cluster name {cluster!r} must be 1-64 of letters, digits, '.', '_', '-'"
            )
        d = cls(path)
        if d.key_path.exists():
            raise CredentialError(
                f"{d.key_path}: an authority already exists here; use another directory"
            )
        try:
            d.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            d.issued_path.mkdir(exist_ok=True)
        except OSError as exc:
            raise CredentialError(f"{d.path}: cannot create ({exc.strerror})") from None
        key = SigningKey.generate()
        save_secret_key(key, d.key_path)
        save_authority_public(AuthorityPublic(cluster, key.public_key), d.public_path)
        return d

    def authority(self) -> Authority:
        if not self.public_path.exists():
            raise CredentialError(
                f"{self.path}: not an authority directory; run `meshcore authority init` first"
            )
        public = load_authority_public(self.public_path)
        key = load_secret_key(self.key_path)
        if key.public_key != public.public_key:
            raise CredentialError(
                f"{self.key_path} does not match {self.public_path}; restore the pair"
            )
        return Authority(key, public.cluster)

    def issued(self) -> list[Certificate]:
        if not self.issued_path.is_dir():
            raise CredentialError(
                f"{self.path}: not an authority directory; run `meshcore authority init`"
            )
        certs = [load_certificate(p) for p in self.issued_path.glob("*.cert")]
        return sorted(certs, key=lambda c: c.serial)

    def next_serial(self) -> int:
        return max((c.serial for c in self.issued()), default=0) + 1

    def record_issued(self, cert: Certificate) -> Path:
        path = self.issued_path / f"{cert.serial}.cert"
        save_certificate(cert, path)
        return path
