"""Sans-I/O Noise handshakes: Noise_XX and Noise_IK over 25519, ChaChaPoly and BLAKE2b.

Follows the Noise Protocol Framework (revision 34): `CipherState`, `SymmetricState` and a
table-driven `NoiseHandshake` (bytes in, bytes out, no I/O, no clock). Primitives come from
libsodium through PyNaCl's low-level bindings, HMAC/BLAKE2b from the standard library.
Limits: a handshake message is at most 65,535 bytes; a cipher state refuses the reserved
nonce 2**64-1. Ephemeral keys come from `rand_bytes` (os.urandom unless a test injects one).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from nacl import bindings as _nacl
from nacl.exceptions import CryptoError

from ._errors import HandshakeError

__all__ = [
    "NOISE_MESSAGE_BYTES_MAX",
    "DH_BYTES",
    "TAG_BYTES",
    "PATTERNS",
    "CipherState",
    "NoiseHandshake",
    "hkdf",
    "x25519_keypair",
]

NOISE_MESSAGE_BYTES_MAX = 65535
DH_BYTES = 32
HASH_BYTES = 64
TAG_BYTES = 16
NONCE_MAX = 2**64 - 1  # reserved for rekey, never used for a message

_aead_encrypt = _nacl.crypto_aead_chacha20poly1305_ietf_encrypt
_aead_decrypt = _nacl.crypto_aead_chacha20poly1305_ietf_decrypt
_scalarmult = _nacl.crypto_scalarmult
_scalarmult_base = _nacl.crypto_scalarmult_base
_ZERO4 = bytes(4)

# (pre-messages known to the initiator about the responder, message token lists)
PATTERNS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "XX": ((), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "IK": (("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
}


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "blake2b")


def hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
    """Noise's HKDF (HMAC-BLAKE2b), returning 2 or 3 outputs of 64 bytes."""
    temp = _hmac(chaining_key, ikm)
    o1 = _hmac(temp, b"\x01")
    o2 = _hmac(temp, o1 + b"\x02")
    if outputs == 2:
        return o1, o2
    return o1, o2, _hmac(temp, o2 + b"\x03")


def x25519_keypair(rand_bytes: Callable[[int], bytes] = os.urandom) -> tuple[bytes, bytes]:
    """(private, public) X25519 key pair."""
    sk = rand_bytes(32)
    return sk, _scalarmult_base(sk)


def _dh(sk: bytes, pk: bytes) -> bytes:
    try:
        return _scalarmult(sk, pk)
    except Exception:  # libsodium refuses low-order points (all-zero output)
        raise HandshakeError("peer sent an invalid X25519 public key") from None


def _nonce(n: int) -> bytes:
    return _ZERO4 + n.to_bytes(8, "little")


class CipherState:
    """A key and a 64-bit counter nonce (ChaCha20-Poly1305, IETF 96-bit nonce)."""

    __slots__ = ("k", "n")

    def __init__(self, k: bytes | None = None) -> None:
        self.k = k
        self.n = 0

    def encrypt_with_ad(self, ad: bytes | None, plaintext: bytes) -> bytes:
        if self.k is None:
            return plaintext
        if self.n >= NONCE_MAX:
            raise HandshakeError("nonce exhausted; rekey before sending more")
        ct = _aead_encrypt(plaintext, ad, _ZERO4 + self.n.to_bytes(8, "little"), self.k)
        self.n += 1
        return ct

    def decrypt_with_ad(self, ad: bytes | None, ciphertext: bytes) -> bytes:
        if self.k is None:
            return ciphertext
        if self.n >= NONCE_MAX:
            raise HandshakeError("nonce exhausted")
        try:
            pt = _aead_decrypt(ciphertext, ad, _ZERO4 + self.n.to_bytes(8, "little"), self.k)
        except CryptoError:
            raise HandshakeError("bad MAC", reason="bad_mac") from None
        self.n += 1
        return pt

    def rekey(self) -> None:
        """Noise REKEY: the new key is the encryption of 32 zero bytes at nonce 2**64-1."""
        assert self.k is not None
        self.k = _aead_encrypt(bytes(32), None, _nonce(NONCE_MAX), self.k)[:32]


class _Symmetric:
    __slots__ = ("ck", "h", "cipher")

    def __init__(self, protocol_name: bytes) -> None:
        h = protocol_name.ljust(HASH_BYTES, b"\0") if len(protocol_name) <= HASH_BYTES else _hash(
            protocol_name
        )
        self.ck = h
        self.h = h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k[:32])

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ct = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ct)
        return ct

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        pt = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return pt

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(k1[:32]), CipherState(k2[:32])


class NoiseHandshake:
    """One side of a Noise handshake. Alternate `write_message` / `read_message` as the
    pattern says (`is_my_turn`); when `complete`, `split()` gives (send, receive) ciphers.

    `static` is this side's (private, public) X25519 key; `remote_static` is required for
    the IK initiator (the responder's key, known in advance).
    """

    def __init__(
        self,
        pattern: str,
        *,
        initiator: bool,
        prologue: bytes,
        static: tuple[bytes, bytes],
        remote_static: bytes | None = None,
        rand_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {pattern!r}; use one of {sorted(PATTERNS)}")
        pre_responder, self._messages = PATTERNS[pattern]
        if "s" in pre_responder and initiator and remote_static is None:
            raise ValueError(f"the {pattern} initiator needs the responder's static key")
        self.pattern = pattern
        self.initiator = initiator
        self._sym = _Symmetric(f"Noise_{pattern}_25519_ChaChaPoly_BLAKE2b".encode())
        self._sym.mix_hash(prologue)
        self._s_priv, self.s_pub = static
        self._e_priv: bytes | None = None
        self.e_pub: bytes | None = None
        self.remote_static = remote_static if "s" in pre_responder else None
        self.remote_ephemeral: bytes | None = None
        self._rand = rand_bytes
        if "s" in pre_responder:
            self._sym.mix_hash(self.remote_static if initiator else self.s_pub)  # type: ignore[arg-type]
        self._index = 0

    @property
    def complete(self) -> bool:
        return self._index >= len(self._messages)

    @property
    def is_my_turn(self) -> bool:
        return not self.complete and (self._index % 2 == 0) == self.initiator

    @property
    def handshake_hash(self) -> bytes:
        return self._sym.h

    def _dh_token(self, token: str) -> bytes:
        # Token names are (initiator key, responder key); map to (mine, theirs).
        mine_e, theirs_e = self._e_priv, self.remote_ephemeral
        mine_s, theirs_s = self._s_priv, self.remote_static
        if token == "ee":
            return _dh(mine_e, theirs_e)  # type: ignore[arg-type]
        if token == "ss":
            return _dh(mine_s, theirs_s)  # type: ignore[arg-type]
        first_is_e = token == "es"
        if self.initiator:
            return _dh(mine_e if first_is_e else mine_s, theirs_s if first_is_e else theirs_e)  # type: ignore[arg-type]
        return _dh(mine_s if first_is_e else mine_e, theirs_e if first_is_e else theirs_s)  # type: ignore[arg-type]

    def write_message(self, payload: bytes = b"") -> bytes:
        if not self.is_my_turn:
            raise ValueError("not this side's turn to write a handshake message")
        sym = self._sym
        out = []
        for token in self._messages[self._index]:
            if token == "e":
                self._e_priv, self.e_pub = x25519_keypair(self._rand)
                sym.mix_hash(self.e_pub)
                out.append(self.e_pub)
            elif token == "s":
                out.append(sym.encrypt_and_hash(self.s_pub))
            else:
                sym.mix_key(self._dh_token(token))
        out.append(sym.encrypt_and_hash(payload))
        self._index += 1
        msg = b"".join(out)
        if len(msg) > NOISE_MESSAGE_BYTES_MAX:
            raise ValueError(f"handshake message exceeds {NOISE_MESSAGE_BYTES_MAX} bytes")
        return msg

    def read_message(self, message: bytes) -> bytes:
        """Consume a peer's handshake message and return its payload; raises
        HandshakeError on anything malformed or forged."""
        if self.complete or self.is_my_turn:
            raise HandshakeError("unexpected handshake message", reason="handshake_malformed")
        if len(message) > NOISE_MESSAGE_BYTES_MAX:
            raise HandshakeError("handshake message too long", reason="handshake_malformed")
        message = bytes(message)  # memoryview/bytearray in, immutable slices out
        sym = self._sym
        pos = 0
        for token in self._messages[self._index]:
            if token == "e":
                if len(message) - pos < DH_BYTES:
                    raise HandshakeError("handshake message truncated", reason="handshake_malformed")
                self.remote_ephemeral = message[pos : pos + DH_BYTES]
                pos += DH_BYTES
                sym.mix_hash(self.remote_ephemeral)
            elif token == "s":
                n = DH_BYTES + (TAG_BYTES if sym.cipher.k is not None else 0)
                if len(message) - pos < n:
                    raise HandshakeError("handshake message truncated", reason="handshake_malformed")
                self.remote_static = sym.decrypt_and_hash(message[pos : pos + n])
                pos += n
            else:
                sym.mix_key(self._dh_token(token))
        if sym.cipher.k is not None and len(message) - pos < TAG_BYTES:
            raise HandshakeError("handshake message truncated", reason="handshake_malformed")
        payload = sym.decrypt_and_hash(message[pos:])
        self._index += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) cipher states for transport messages."""
        if not self.complete:
            raise ValueError("the handshake is not complete")
        c1, c2 = self._sym.split()
        return (c1, c2) if self.initiator else (c2, c1)
