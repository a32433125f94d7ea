"""The kv message codec: round trips, strict refusal, and fuzzing (decode raises only
DecodeError)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.errors import DecodeError
from meshcore.kv import Stamp
from meshcore.kv._messages import (
    KV_MESSAGE_BYTES_MAX,
    HintAck,
    HintDelivery,
    Read,
    ReadReply,
    Repair,
    Status,
    TombstoneAckMsg,
    Write,
    WriteAck,
    decode_kv,
    encode_kv,
)

A, B = b"\x01" * 16, b"\x02" * 16
S = Stamp(1_700_000_000_000_000, 3, A)
SAMPLES = [
    Write(request_id=1, coordinator=A, namespace="ns", key=b"k", stamp=S, value=b"v"),
    Write(request_id=2, coordinator=A, namespace="ns", key=b"k", stamp=S, value=None, hint_for=B),
    WriteAck(request_id=1, sender=B),
    WriteAck(request_id=1, sender=B, status=Status.CLOCK_SKEW, detail="ahead"),
    Read(request_id=3, coordinator=A, namespace="ns", key=b"k"),
    ReadReply(request_id=3, sender=B),
    ReadReply(request_id=3, sender=B, stamp=S, value=b"v"),
    ReadReply(request_id=3, sender=B, stamp=S, value=None),
    HintDelivery(hint_id=9, sender=A, namespace="ns", key=b"k", stamp=S, value=b"v"),
    HintAck(hint_id=9, sender=B),
    Repair(sender=A, namespace="ns", key=b"k", stamp=S, value=None),
    TombstoneAckMsg(sender=A, namespace="ns", key=b"k", stamp=S, echo=True),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: object) -> None:
    assert decode_kv(encode_kv(msg)) == msg  # type: ignore[arg-type]


def test_a_one_mib_value_fits_and_a_larger_frame_is_refused() -> None:
    big = Write(request_id=1, coordinator=A, namespace="ns", key=b"k", stamp=S, value=b"x" * (1024 * 1024))
    assert decode_kv(encode_kv(big)) == big
    with pytest.raises(ValueError, match="at most"):
        Write(request_id=1, coordinator=A, namespace="ns", key=b"k", stamp=S, value=b"x" * (1024 * 1024 + 1))
    with pytest.raises(DecodeError, match="exceeds"):
        decode_kv(b"\x00" * (KV_MESSAGE_BYTES_MAX + 1))


@pytest.mark.parametrize("frame", [
    [2, 3, 1, A, "ns", b"k"],  # wrong version
    [1, 99],  # unknown type
    [1, 3, 1, A, "ns"],  # wrong arity
    [1, 3, True, A, "ns", b"k"],  # bool for an int
    [1, 3, 1, b"short", "ns", b"k"],  # bad node id
    [1, 2, 1, B, 42, ""],  # unknown status
    [1, 7, A, "ns", b"k", b"\x00" * 5, None],  # bad stamp
    [1, 4, 1, B, 0, None, b"v"],  # a value without a stamp
])
def test_malformed_frames_are_refused_with_decode_error(frame: list[object]) -> None:
    with pytest.raises(DecodeError):
        decode_kv(cbor2.dumps(frame))


def test_tags_and_trailing_bytes_are_refused() -> None:
    good = encode_kv(SAMPLES[0])
    with pytest.raises(DecodeError, match="trailing"):
        decode_kv(good + b"\x00")
    with pytest.raises(DecodeError, match="tag"):
        decode_kv(cbor2.dumps(cbor2.CBORTag(40000, [1, 3, 1, A, "ns", b"k"])))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        decode_kv(data)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.integers(min_value=0, max_value=10_000), st.integers(0, 255))
def test_corrupted_valid_frames_decode_to_a_valid_message_or_decode_error(msg: object, pos: int,
                                                                          byte: int) -> None:
    data = bytearray(encode_kv(msg))  # type: ignore[arg-type]
    data[pos % len(data)] = byte
    try:
        out = decode_kv(bytes(data))
    except DecodeError:
        return
    assert decode_kv(encode_kv(out)) == out


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.binary(max_size=40),
                  st.text(max_size=20), st.floats(allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 9), st.lists(_leaf, max_size=9))
def test_arbitrary_cbor_arrays_raise_only_decode_error(kind: int, fields: list[object]) -> None:
    try:
        decode_kv(cbor2.dumps([1, kind, *fields]))
    except DecodeError:
        pass
