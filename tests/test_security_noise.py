"""Noise core: interoperability with the `noiseprotocol` package, IK, cipher states."""

from __future__ import annotations

import os

import pytest
from noise.connection import Keypair, NoiseConnection

from meshcore.security import HandshakeError, NoiseHandshake
from meshcore.security._noise import x25519_keypair

PROLOGUE = b"meshcore interop test"


def _theirs(name: bytes, *, initiator: bool, static: bytes, remote: bytes | None = None) -> NoiseConnection:
    conn = NoiseConnection.from_name(name)
    (conn.set_as_initiator if initiator else conn.set_as_responder)()
    conn.set_keypair_from_private_bytes(Keypair.STATIC, static)
    if remote is not None:
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote)
    conn.set_prologue(PROLOGUE)
    conn.start_handshake()
    return conn


def _run(ours: NoiseHandshake, theirs: NoiseConnection) -> list[bytes]:
    payloads = []
    while not ours.complete:
        if ours.is_my_turn:
            payloads.append(bytes(theirs.read_message(ours.write_message(b"from us"))))
        else:
            payloads.append(ours.read_message(bytes(theirs.write_message(b"from them"))))
    assert theirs.handshake_finished
    return payloads


@pytest.mark.parametrize("we_initiate", [True, False])
def test_our_xx_handshake_interoperates_with_noiseprotocol_in_both_roles(we_initiate: bool) -> None:
    theirs = _theirs(b"Noise_XX_25519_ChaChaPoly_BLAKE2b", initiator=not we_initiate, static=os.urandom(32))
    ours = NoiseHandshake("XX", initiator=we_initiate, prologue=PROLOGUE, static=x25519_keypair())
    payloads = _run(ours, theirs)
    assert set(payloads) <= {b"from us", b"from them"} and len(payloads) == 3
    assert ours.handshake_hash == theirs.get_handshake_hash()
    send, receive = ours.split()
    for i in range(3):
        assert theirs.decrypt(send.encrypt_with_ad(None, b"ours %d" % i)) == b"ours %d" % i
        assert receive.decrypt_with_ad(None, bytes(theirs.encrypt(b"theirs %d" % i))) == b"theirs %d" % i


@pytest.mark.parametrize("we_initiate", [True, False])
def test_our_ik_handshake_interoperates_with_noiseprotocol_in_both_roles(we_initiate: bool) -> None:
    responder_sk, responder_pk = x25519_keypair()
    if we_initiate:
        theirs = _theirs(b"Noise_IK_25519_ChaChaPoly_BLAKE2b", initiator=False, static=responder_sk)
        ours = NoiseHandshake(
            "IK", initiator=True, prologue=PROLOGUE, static=x25519_keypair(), remote_static=responder_pk
        )
    else:
        theirs = _theirs(
            b"Noise_IK_25519_ChaChaPoly_BLAKE2b", initiator=True, static=os.urandom(32), remote=responder_pk
        )
        ours = NoiseHandshake("IK", initiator=False, prologue=PROLOGUE, static=(responder_sk, responder_pk))
    assert len(_run(ours, theirs)) == 2
    send, _ = ours.split()
    assert theirs.decrypt(send.encrypt_with_ad(None, b"one round trip")) == b"one round trip"


def test_a_different_prologue_fails_the_handshake_with_a_mac_error() -> None:
    a = NoiseHandshake("XX", initiator=True, prologue=b"cluster a", static=x25519_keypair())
    b = NoiseHandshake("XX", initiator=False, prologue=b"cluster b", static=x25519_keypair())
    b.read_message(a.write_message())
    with pytest.raises(HandshakeError) as info:
        a.read_message(b.write_message())
    assert info.value.reason == "bad_mac"


def test_a_truncated_handshake_message_is_a_handshake_error() -> None:
    a = NoiseHandshake("XX", initiator=True, prologue=b"", static=x25519_keypair())
    b = NoiseHandshake("XX", initiator=False, prologue=b"", static=x25519_keypair())
    with pytest.raises(HandshakeError):
        b.read_message(a.write_message()[:20])


def test_a_low_order_ephemeral_key_is_refused() -> None:
    b = NoiseHandshake("XX", initiator=False, prologue=b"", static=x25519_keypair())
    b.read_message(bytes(32))  # the all-zero point: accepted as bytes, refused at DH time
    with pytest.raises(HandshakeError):
        b.write_message()
