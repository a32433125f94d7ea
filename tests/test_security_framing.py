"""AEAD stream frames: round trip, rekey, limits, tampering."""

from __future__ import annotations

import pytest

from meshcore.security import (
    DEFAULT_FRAME_LIMITS,
    FrameDecoder,
    FrameEncoder,
    FrameError,
    FrameLimits,
    handshake_pair,
    make_throwaway_cluster,
)

NOW = 1_700_000_000.0


def _pair(limits: FrameLimits = DEFAULT_FRAME_LIMITS, t0: float = 0.0) -> tuple[FrameEncoder, FrameDecoder]:
    a, b = make_throwaway_cluster(["a", "b"], now=NOW).nodes
    ra, rb = handshake_pair(a.link_security(), b.link_security(), now=NOW)
    return FrameEncoder(ra.send, t0, limits), FrameDecoder(rb.receive, t0, limits)


def _deliver(dec: FrameDecoder, frame: bytes, now: float = 0.0) -> bytes | None:
    dec.receive_data(frame)
    return dec.next_message(now)


def test_frames_round_trip_even_when_split_into_single_bytes() -> None:
    enc, dec = _pair()
    stream = b"".join(enc.seal(b"message %d" % i, 0.0) for i in range(3))
    got = []
    for i in range(len(stream)):
        dec.receive_data(stream[i : i + 1])
        while (m := dec.next_message(0.0)) is not None:
            got.append(m)
    assert got == [b"message 0", b"message 1", b"message 2"]


def test_the_sender_rekeys_after_the_message_limit_and_the_receiver_follows() -> None:
    enc, dec = _pair(FrameLimits(rekey_messages_max=3))
    keys = set()
    for i in range(10):
        keys.add(enc._cipher.k)
        frame = enc.seal(b"m%d" % i, 0.0)
        assert _deliver(dec, frame) == b"m%d" % i
    assert len(keys) >= 4  # 10 messages, a new key every 3


def test_the_sender_rekeys_after_the_interval_and_an_old_frame_no_longer_opens() -> None:
    enc, dec = _pair(FrameLimits(rekey_interval_s=120.0))
    k0 = enc._cipher.k
    assert _deliver(dec, enc.seal(b"early", 1.0), 1.0) == b"early"
    last_old = enc.seal(b"late", 121.0)  # marked REKEY: the last frame under the old key
    assert enc._cipher.k != k0
    assert _deliver(dec, last_old, 121.0) == b"late"
    assert _deliver(dec, enc.seal(b"new key", 122.0), 122.0) == b"new key"
    with pytest.raises(FrameError):
        _deliver(dec, last_old, 123.0)  # replayed under the new key: does not authenticate


def test_a_peer_that_never_rekeys_is_refused_past_the_message_limit() -> None:
    enc, dec = _pair(FrameLimits(rekey_messages_max=1000))
    dec = FrameDecoder(dec._cipher, 0.0, FrameLimits(rekey_messages_max=3))
    assert _deliver(dec, enc.seal(b"1", 0.0)) == b"1"
    assert _deliver(dec, enc.seal(b"2", 0.0)) == b"2"
    with pytest.raises(FrameError) as info:
        _deliver(dec, enc.seal(b"3", 0.0))
    assert info.value.reason == "frame_past_rekey_limit"


def test_a_peer_that_never_rekeys_is_refused_past_the_interval() -> None:
    limits = FrameLimits(rekey_interval_s=120.0, rekey_grace_s=30.0)
    enc, dec = _pair(FrameLimits(rekey_interval_s=10_000.0))
    dec = FrameDecoder(dec._cipher, 0.0, limits)
    assert _deliver(dec, enc.seal(b"ok", 100.0), 100.0) == b"ok"
    with pytest.raises(FrameError) as info:
        _deliver(dec, enc.seal(b"stale key", 151.0), 151.0)
    assert info.value.reason == "frame_past_rekey_limit"


def test_a_tampered_frame_is_rejected_and_the_decoder_stays_failed() -> None:
    enc, dec = _pair()
    frame = bytearray(enc.seal(b"pay me 10", 0.0))
    frame[-20] ^= 0x01
    with pytest.raises(FrameError) as info:
        _deliver(dec, bytes(frame))
    assert info.value.reason == "bad_mac"
    with pytest.raises(FrameError):
        _deliver(dec, enc.seal(b"next", 0.0))


def test_a_tampered_header_kind_is_rejected() -> None:
    enc, dec = _pair()
    frame = bytearray(enc.seal(b"x", 0.0))
    frame[0] = 1  # claim REKEY: the header is associated data, so the MAC fails
    with pytest.raises(FrameError):
        _deliver(dec, bytes(frame))


def test_an_oversized_frame_header_is_refused_before_buffering_its_body() -> None:
    _, dec = _pair(FrameLimits(message_bytes_max=1024))
    with pytest.raises(FrameError) as info:
        _deliver(dec, bytes((0,)) + (1024 + 17).to_bytes(3, "big"))
    assert info.value.reason == "frame_too_large"


def test_unknown_frame_kinds_and_runt_frames_are_refused() -> None:
    for header in (bytes((7, 0, 0, 20)), bytes((0, 0, 0, 3))):
        _, dec = _pair()
        with pytest.raises(FrameError):
            _deliver(dec, header + bytes(20))


def test_sending_a_message_over_the_limit_is_local_misuse() -> None:
    enc, _ = _pair(FrameLimits(message_bytes_max=10))
    with pytest.raises(ValueError, match="split it"):
        enc.seal(bytes(11), 0.0)
