"""Node and authority signing keys (Ed25519) and their files.

A secret key file is one text line, ``meshcore-ed25519-secret v1 <seed hex>``, written with
mode 0600; loading refuses a file that group or others may read. A public key file is
``meshcore-ed25519-public v1 <public key hex>``. The node's Noise/datagram static key is
the X25519 form of its Ed25519 key, so one certified key covers signing and key exchange.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from nacl import bindings as _nacl

from .._types import NodeId, node_id_from_public_key
from ..errors import CredentialError

__all__ = [
    "SigningKey",
    "verify_signature",
    "public_to_x25519",
    "save_secret_key",
    "load_secret_key",
    "save_public_key",
    "load_public_key",
]

_SECRET_HEADER = "meshcore-ed25519-secret v1"
_PUBLIC_HEADER = "meshcore-ed25519-public v1"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 key pair plus its derived values (node id, X25519 form)."""

    seed: bytes = field(repr=False)
    public_key: bytes = field(init=False)
    _secret: bytes = field(init=False, repr=False)
    x25519_secret: bytes = field(init=False, repr=False)
    x25519_public: bytes = field(init=False)

    def __post_init__(self) -> None:
        if type(self.seed) is not bytes or len(self.seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        pk, sk = _nacl.crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "public_key", pk)
        object.__setattr__(self, "_secret", sk)
        object.__setattr__(self, "x25519_secret", _nacl.crypto_sign_ed25519_sk_to_curve25519(sk))
        object.__setattr__(self, "x25519_public", _nacl.crypto_sign_ed25519_pk_to_curve25519(pk))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(32))

    @property
    def node_id(self) -> NodeId:
        return node_id_from_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """A 64-byte detached signature."""
        return _nacl.crypto_sign(message, self._secret)[:64]


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message`; never raises."""
    if len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        _nacl.crypto_sign_open(signature + message, public_key)
    except Exception:  # BadSignatureError, or a malformed key: either way not valid
        return False
    return True


def public_to_x25519(public_key: bytes) -> bytes:
    """The X25519 form of an Ed25519 public key; raises ValueError for an invalid key."""
    try:
        return _nacl.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except Exception as exc:
        raise ValueError("not a valid Ed25519 public key") from exc


def _write_private(path: Path, text: str) -> None:
    # Create with 0600 from the start (no window where the secret is world-readable).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def save_secret_key(key: SigningKey, path: str | os.PathLike[str]) -> None:
    """Write `key` to a new file with mode 0600; refuses to overwrite an existing file."""
    p = Path(path)
    try:
        _write_private(p, f"{_SECRET_HEADER} {key.seed.hex()}\n")
    except FileExistsError:
        raise CredentialError(
            f"{p}: already exists; choose another path or remove the old key first"
        ) from None
    except OSError as exc:
        raise CredentialError(f"{p}: cannot write the key file ({exc.strerror})") from None


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise CredentialError(f"{path}: {what} file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"{path}: cannot read the {what} file ({exc})") from None


def _parse(path: Path, text: str, header: str, what: str) -> bytes:
    parts = text.split()
    if len(parts) != 3 or " ".join(parts[:2]) != header:
        raise CredentialError(f"{path}: not a meshcore {what} file (expected '{header} <hex>')")
    try:
        raw = bytes.fromhex(parts[2])
    except ValueError:
        raise CredentialError(f"{path}: the {what} is not valid hex") from None
    if len(raw) != 32:
        raise CredentialError(f"{path}: the {what} must be 32 bytes, got {len(raw)}")
    return raw


def load_secret_key(path: str | os.PathLike[str]) -> SigningKey:
    """Load a secret key file, refusing one that group or others can access."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise CredentialError(
            f"{p}: key file not found; create one with `meshcore keygen --out {p}`"
        ) from None
    except OSError as exc:
        raise CredentialError(f"{p}: cannot read the key file ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(
            f"{p}: key file is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
            f"fix it with `chmod 600 {p}`"
        )
    return SigningKey(_parse(p, _read(p, "key"), _SECRET_HEADER, "secret key"))


def save_public_key(public_key: bytes, path: str | os.PathLike[str]) -> None:
    p = Path(path)
    try:
        p.write_text(f"{_PUBLIC_HEADER} {public_key.hex()}\n")
    except OSError as exc:
        raise CredentialError(f"{p}: cannot write the public key ({exc.strerror})") from None


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    return _parse(p, _read(p, "public key"), _PUBLIC_HEADER, "public key")
