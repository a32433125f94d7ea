"""Node certificates and revocations: signed, strict, size-bounded CBOR records.

A certificate is ``[tbs, signature]`` where ``tbs`` is the CBOR encoding of
``["meshcore cert v1", cluster, node public key, name, site, region, roles, serial,
not_before_s, not_after_s, issuer key id]`` and the signature is the authority's Ed25519
signature of ``tbs``. A revocation is the same shape around
``["meshcore revocation v1", cluster, node id, serial, revoked_at_s, issuer key id]``.
Decoding raises only `CertificateError` (reason ``cert_malformed``). Times are integer
Unix seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import blake3
import cbor2

from .._types import NODE_ID_BYTES, NodeId, node_id_from_public_key
from ..errors import DecodeError
from ..wire import loads_strict
from ._errors import CertificateError
from ._keys import SigningKey, public_to_x25519, verify_signature

__all__ = [
    "CERT_BYTES_MAX",
    "KEY_ID_BYTES",
    "CLUSTER_RE",
    "key_id",
    "Certificate",
    "Revocation",
    "Authority",
    "AuthorityPublic",
    "decode_certificate",
    "decode_revocation",
]

CERT_BYTES_MAX = 1024
KEY_ID_BYTES = 8
CLUSTER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NAME_CHARS_MAX = 64
_ROLES_MAX = 8
_TIME_MAX = 2**40
_SERIAL_MAX = 2**63 - 1
_CERT_TAG = b"meshcore cert v1"
_REVOCATION_TAG = b"meshcore revocation v1"


def key_id(public_key: bytes) -> bytes:
    """The short id of an authority key, carried in what it signs (selects the key on
    rollover, when two authorities are trusted)."""
    return blake3.blake3(b"meshcore key id v1" + public_key).digest(KEY_ID_BYTES)


def _check_str(name: str, value: object, chars_max: int = _NAME_CHARS_MAX) -> None:
    if type(value) is not str or len(value) > chars_max:
        raise ValueError(f"{name} must be a string of at most {chars_max} characters")


def _check_int(name: str, value: object, hi: int) -> None:
    if type(value) is not int or not 0 <= value <= hi:
        raise ValueError(f"{name} must be an int in [0, {hi}]")


def _check_bytes(name: str, value: object, n: int) -> None:
    if type(value) is not bytes or len(value) != n:
        raise ValueError(f"{name} must be {n} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """What the cluster authority vouches for about one node."""

    cluster: str
    public_key: bytes
    name: str
    site: str
    region: str
    roles: tuple[str, ...]
    serial: int
    not_before: int
    not_after: int
    issuer: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        if type(self.cluster) is not str or not CLUSTER_RE.fullmatch(self.cluster):
            raise ValueError("cluster must match [A-Za-z0-9._-]{1,64}")
        _check_bytes("public_key", self.public_key, 32)
        for n in ("name", "site", "region"):
            _check_str(n, getattr(self, n))
        if type(self.roles) is not tuple or len(self.roles) > _ROLES_MAX:
            raise ValueError(f"roles must be a tuple of at most {_ROLES_MAX} strings")
        for r in self.roles:
            _check_str("role", r, 32)
        _check_int("serial", self.serial, _SERIAL_MAX)
        _check_int("not_before", self.not_before, _TIME_MAX)
        _check_int("not_after", self.not_after, _TIME_MAX)
        if self.not_after < self.not_before:
            raise ValueError("not_after is before not_before")
        _check_bytes("issuer", self.issuer, KEY_ID_BYTES)
        if type(self.signature) is not bytes or len(self.signature) not in (0, 64):
            raise ValueError("signature must be empty or 64 bytes")

    @property
    def node_id(self) -> NodeId:
        return node_id_from_public_key(self.public_key)

    def tbs_bytes(self) -> bytes:
        """The bytes the authority signs."""
        return cbor2.dumps(
            [
                _CERT_TAG, self.cluster, self.public_key, self.name, self.site, self.region,
                list(self.roles), self.serial, self.not_before, self.not_after, self.issuer,
            ]
        )

    def encode(self) -> bytes:
        if not self.signature:
            raise ValueError("an unsigned certificate cannot be encoded; sign it first")
        return cbor2.dumps([self.tbs_bytes(), self.signature])

    def x25519_public(self) -> bytes:
        return public_to_x25519(self.public_key)

    def describe(self) -> str:
        return (
            f"serial {self.serial} {self.name} site={self.site} region={self.region} "
            f"node={self.node_id.hex()} valid {self.not_before}..{self.not_after}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    """The authority withdraws `node` (every certificate of that node key)."""

    cluster: str
    node: NodeId
    serial: int
    revoked_at: int
    issuer: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        if type(self.cluster) is not str or not CLUSTER_RE.fullmatch(self.cluster):
            raise ValueError("cluster must match [A-Za-z0-9._-]{1,64}")
        _check_bytes("node", self.node, NODE_ID_BYTES)
        _check_int("serial", self.serial, _SERIAL_MAX)
        _check_int("revoked_at", self.revoked_at, _TIME_MAX)
        _check_bytes("issuer", self.issuer, KEY_ID_BYTES)
        if type(self.signature) is not bytes or len(self.signature) not in (0, 64):
            raise ValueError("signature must be empty or 64 bytes")

    def tbs_bytes(self) -> bytes:
        return cbor2.dumps(
            [_REVOCATION_TAG, self.cluster, self.node, self.serial, self.revoked_at, self.issuer]
        )

    def encode(self) -> bytes:
        if not self.signature:
            raise ValueError("an unsigned revocation cannot be encoded; sign it first")
        return cbor2.dumps([self.tbs_bytes(), self.signature])


# --- strict decoding ------------------------------------------------------------------


def _loads(data: bytes) -> Any:
    if type(data) is not bytes or len(data) > CERT_BYTES_MAX:
        raise CertificateError(
            f"record must be bytes of at most {CERT_BYTES_MAX}", reason="cert_malformed"
        )
    try:
        return loads_strict(data, bytes_max=CERT_BYTES_MAX, what="record")
    except DecodeError as exc:
        raise CertificateError(f"not a strict CBOR record: {exc}", reason="cert_malformed") from None


def _split_signed(data: bytes, tag: bytes, arity: int) -> tuple[list[Any], bytes, bytes]:
    outer = _loads(data)
    if type(outer) is not list or len(outer) != 2 or type(outer[0]) is not bytes:
        raise CertificateError("expected [tbs, signature]", reason="cert_malformed")
    tbs, sig = outer
    if type(sig) is not bytes or len(sig) != 64:
        raise CertificateError("signature must be 64 bytes", reason="cert_malformed")
    fields = _loads(tbs)
    if type(fields) is not list or len(fields) != arity or fields[0] != tag:
        raise CertificateError(f"not a {tag.decode()} record", reason="cert_malformed")
    return fields[1:], tbs, sig


def decode_certificate(data: bytes) -> Certificate:
    """Parse (not verify) a signed certificate."""
    f, tbs, sig = _split_signed(data, _CERT_TAG, 11)
    try:
        if type(f[5]) is not list:
            raise ValueError("roles must be a list")
        cert = Certificate(
            cluster=f[0], public_key=f[1], name=f[2], site=f[3], region=f[4],
            roles=tuple(f[5]), serial=f[6], not_before=f[7], not_after=f[8], issuer=f[9],
            signature=sig,
        )
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"bad certificate field: {exc}", reason="cert_malformed") from None
    if cert.tbs_bytes() != tbs:  # one canonical encoding: what is signed is what we parsed
        raise CertificateError("non-canonical certificate encoding", reason="cert_malformed")
    return cert


def decode_revocation(data: bytes) -> Revocation:
    f, tbs, sig = _split_signed(data, _REVOCATION_TAG, 6)
    try:
        rev = Revocation(
            cluster=f[0], node=NodeId(f[1]), serial=f[2], revoked_at=f[3], issuer=f[4],
            signature=sig,
        )
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"bad revocation field: {exc}", reason="cert_malformed") from None
    if rev.tbs_bytes() != tbs:
        raise CertificateError("non-canonical revocation encoding", reason="cert_malformed")
    return rev


# --- the authority ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorityPublic:
    """What nodes trust: a cluster name and the authority's public key."""

    cluster: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not CLUSTER_RE.fullmatch(self.cluster):
            raise ValueError("cluster must match [A-Za-z0-9._-]{1,64}")
        _check_bytes("public_key", self.public_key, 32)

    @property
    def key_id(self) -> bytes:
        return key_id(self.public_key)

    def verifies(self, tbs: bytes, signature: bytes) -> bool:
        return verify_signature(self.public_key, tbs, signature)


class Authority:
    """The operator's cluster authority: issues certificates and revocations."""

    def __init__(self, key: SigningKey, cluster: str) -> None:
        self.key = key
        self.public = AuthorityPublic(cluster, key.public_key)

    @property
    def cluster(self) -> str:
        return self.public.cluster

    def issue(
        self,
        node_public_key: bytes,
        *,
        name: str,
        site: str,
        region: str,
        roles: tuple[str, ...] = (),
        serial: int,
        not_before: int,
        not_after: int,
    ) -> Certificate:
        unsigned = Certificate(
            cluster=self.cluster, public_key=node_public_key, name=name, site=site,
            region=region, roles=tuple(roles), serial=serial, not_before=not_before,
            not_after=not_after, issuer=self.public.key_id,
        )
        return _replace_sig(unsigned, self.key.sign(unsigned.tbs_bytes()))

    def revoke(self, node: NodeId, *, serial: int, revoked_at: int) -> Revocation:
        unsigned = Revocation(
            cluster=self.cluster, node=node, serial=serial, revoked_at=revoked_at,
            issuer=self.public.key_id,
        )
        return Revocation(
            cluster=unsigned.cluster, node=unsigned.node, serial=unsigned.serial,
            revoked_at=unsigned.revoked_at, issuer=unsigned.issuer,
            signature=self.key.sign(unsigned.tbs_bytes()),
        )


def _replace_sig(c: Certificate, sig: bytes) -> Certificate:
    return Certificate(
        cluster=c.cluster, public_key=c.public_key, name=c.name, site=c.site, region=c.region,
        roles=c.roles, serial=c.serial, not_before=c.not_before, not_after=c.not_after,
        issuer=c.issuer, signature=sig,
    )
