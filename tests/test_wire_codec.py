"""The wire codec: round trips, strict validation, and one error type for any bad input."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcore._types import node_id_from_public_key
from meshcore.errors import DecodeError, MeshError
from meshcore.kv import decode_namespace
from meshcore.security import (
    Authority,
    HandshakeError,
    SigningKey,
    decode_certificate,
    decode_revocation,
)
from meshcore.wire import (
    ALIVE_CERT_BYTES_MAX,
    DATAGRAM_PAYLOAD_BYTES_MAX,
    STREAM_MESSAGE_BYTES_MAX,
    WIRE_VERSION,
    Ack,
    Alive,
    Dead,
    MemberState,
    Nack,
    NodeMeta,
    Ping,
    PingReq,
    PushPull,
    Status,
    Suspect,
    UserMsg,
    alive_signing_bytes,
    decode,
    encode,
    loads_strict,
    update_size,
)

A = node_id_from_public_key(b"a" * 32)
B = node_id_from_public_key(b"b" * 32)
META = NodeMeta.build(name="pool-7", site="toulouse-pool-7", region="occitanie",
                      roles=["edge", "storage"], tags={"power": "solar", "rack": "r1"})

node_ids = st.binary(min_size=16, max_size=16)
small_text = st.text(max_size=20)
metas = st.builds(
    NodeMeta.build,
    name=small_text, site=small_text, region=small_text,
    roles=st.lists(st.text(max_size=10), max_size=4),
    tags=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
)
incs = st.integers(min_value=0, max_value=2**63 - 1)
addrs = st.tuples(st.text(min_size=1, max_size=30), st.integers(min_value=0, max_value=65535))
updates = st.one_of(
    st.builds(Alive, node=node_ids, incarnation=incs, addr=addrs, meta=metas,
              signature=st.binary(max_size=64), cert=st.binary(max_size=300)),
    st.builds(Suspect, node=node_ids, incarnation=incs, by=node_ids),
    st.builds(Dead, node=node_ids, incarnation=incs, by=node_ids, signature=st.binary(max_size=64)),
    st.builds(UserMsg, origin=node_ids, seq=incs, payload=st.binary(max_size=100)),
)
update_tuples = st.lists(updates, max_size=5).map(tuple)
messages = st.one_of(
    st.builds(Ping, seq=incs, sender=node_ids, target=node_ids, updates=update_tuples),
    st.builds(PingReq, seq=incs, sender=node_ids, target=node_ids, target_addr=addrs,
              nack=st.booleans(), updates=update_tuples),
    st.builds(Ack, seq=incs, sender=node_ids, updates=update_tuples),
    st.builds(Nack, seq=incs, sender=node_ids, updates=update_tuples),
    st.builds(
        PushPull, sender=node_ids, join=st.booleans(), reply=st.booleans(),
        states=st.lists(st.builds(MemberState, node=node_ids, incarnation=incs, addr=addrs,
                                  meta=metas, status=st.sampled_from(Status),
                                  cert=st.binary(max_size=100)),
                        max_size=4).map(tuple),
        user_state=st.binary(max_size=50),
        checksum=st.binary(max_size=32),
    ),
)


@given(messages)
def test_every_message_round_trips(msg: object) -> None:
    data = encode(msg)  # type: ignore[arg-type]
    assert decode(data, bytes_max=STREAM_MESSAGE_BYTES_MAX) == msg


@given(st.binary(max_size=2000))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


@given(messages, st.data())
def test_mutated_messages_only_ever_raise_decode_error(msg: object, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        decode(bytes(raw), bytes_max=STREAM_MESSAGE_BYTES_MAX)
    except DecodeError:
        pass


@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
              st.binary(max_size=5)),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=30,
))
def test_well_formed_cbor_of_the_wrong_shape_is_rejected(value: object) -> None:
    for frame in (value, [WIRE_VERSION, 1, value, A, B, []], [WIRE_VERSION, 3, 1, A, [value]]):
        try:
            decode(cbor2.dumps(frame))
        except DecodeError:
            pass


def test_unknown_wire_version_is_refused_with_a_clear_message() -> None:
    frame = cbor2.dumps([WIRE_VERSION + 1, 3, 1, A, []])
    with pytest.raises(DecodeError, match="unsupported wire message version"):
        decode(frame)


def test_unknown_message_type_is_refused() -> None:
    with pytest.raises(DecodeError, match="unknown wire message type"):
        decode(cbor2.dumps([WIRE_VERSION, 99, 1, A, []]))


def test_oversized_datagram_is_refused_before_parsing() -> None:
    big = encode(Ack(seq=1, sender=A, updates=tuple(
        UserMsg(origin=A, seq=i, payload=b"x" * 1000) for i in range(2))))
    assert len(big) > DATAGRAM_PAYLOAD_BYTES_MAX
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(big)
    assert decode(big, bytes_max=STREAM_MESSAGE_BYTES_MAX).seq == 1  # type: ignore[union-attr]


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(encode(Ack(seq=1, sender=A)) + b"\x00")


def test_cbor_tags_are_refused() -> None:
    tagged = cbor2.dumps(cbor2.CBORTag(4242, [WIRE_VERSION, 3, 1, A, []]))
    with pytest.raises(DecodeError, match="tag 4242"):
        decode(tagged)


def _tag_head(tag: int) -> bytes:
    # the CBOR head of a tag without its content (major type 6)
    for width, info in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if tag < 24:
            return bytes([0xC0 | tag])
        if tag < 1 << (8 * width):
            return bytes([0xC0 | info]) + tag.to_bytes(width, "big")
    raise ValueError(tag)


def test_every_tag_is_refused_including_the_ones_cbor2_decodes_itself() -> None:
    # dates (0, 1), bignums (2, 3), decimals (4, 5), shared references (28, 29), regexes,
    # UUIDs, sets (258), IP addresses, self-describe (55799): none may come off the network.
    tags = [*range(65536), 1 << 16, 1 << 31, (1 << 32) + 1, (1 << 64) - 1]
    for content in (b"\x00", b"\x41\x00", b"\x61a", b"\x80", b"\xa0", b"\x1b" + b"\xff" * 8):
        accepted = []
        for tag in tags:
            try:
                loads_strict(_tag_head(tag) + content, bytes_max=64)
            except DecodeError as exc:
                assert f"tag {tag} " in str(exc), (tag, str(exc))
            else:
                accepted.append(tag)
        assert accepted == [], (content, accepted[:20])


def test_a_bignum_and_a_self_referencing_list_are_refused() -> None:
    assert cbor2.loads(cbor2.dumps(2**70)) == 2**70  # what plain cbor2 would hand us
    with pytest.raises(DecodeError, match="tag 2 "):
        loads_strict(cbor2.dumps(2**70), bytes_max=64)
    cycle = bytes.fromhex("d81c81d81d00")  # shareable([sharedref(0)]): a list holding itself
    loop = cbor2.loads(cycle)
    assert loop[0] is loop
    with pytest.raises(DecodeError, match="tag 2[89] "):
        loads_strict(cycle, bytes_max=64)
    with pytest.raises(DecodeError, match="tag 2[89] "):
        decode(b"\x84" + cbor2.dumps(WIRE_VERSION) + b"\x03\x01" + cycle)  # [v, 3, 1, cycle]


@pytest.mark.parametrize("data, why", [
    (bytes.fromhex("a2 6161 01 6161 02"), "Duplicate map key"),
    (bytes.fromhex("a2 4161 01 4161 02"), "Duplicate map key"),
    (cbor2.dumps({1: 2}), "text string or byte string, not int"),
    (cbor2.dumps({(1, 2): 3}), "text string or byte string, not tuple"),
    (cbor2.dumps({2.5: 3}), "text string or byte string, not float"),
    (b"\x81" * 40 + b"\x00", "depth"),
])
def test_maps_with_repeated_or_non_string_keys_and_deep_nesting_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        loads_strict(data, bytes_max=1024)
    assert loads_strict(cbor2.dumps({"a": 1, b"b": [[[2]]]}), bytes_max=1024) == {"a": 1, b"b": [[[2]]]}


def test_booleans_are_not_accepted_where_numbers_belong() -> None:
    with pytest.raises(DecodeError, match="seq"):
        decode(cbor2.dumps([WIRE_VERSION, 3, True, A, []]))


def test_node_ids_must_have_the_exact_length() -> None:
    with pytest.raises(DecodeError, match="node id"):
        decode(cbor2.dumps([WIRE_VERSION, 3, 1, A[:15], []]))


def test_local_misuse_raises_value_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match="incarnation"):
        Suspect(node=A, incarnation=-1, by=B)
    with pytest.raises(ValueError, match="tag keys must be unique and sorted"):
        NodeMeta(tags=(("b", "1"), ("a", "2")))
    with pytest.raises(ValueError, match="roles"):
        NodeMeta.build(roles=[f"r{i}" for i in range(20)])


def test_update_size_matches_its_share_of_the_encoding() -> None:
    alive = Alive(node=A, incarnation=3, addr=("10.0.0.1", 7946), meta=META)
    empty = len(encode(Ack(seq=1, sender=B)))
    one = len(encode(Ack(seq=1, sender=B, updates=(alive,))))
    assert one - empty == update_size(alive)


def test_metadata_larger_than_its_byte_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 512"):
        NodeMeta.build(tags={f"k{i:02}": "v" * 128 for i in range(16)})


def test_a_full_metadata_alive_fits_a_datagram() -> None:
    # Fill the text budget exactly, with the longest host name and a signature.
    meta = NodeMeta.build(name="n" * 64, site="s" * 64, region="r" * 64,
                          roles=["x" * 32] * 8, tags={"k" * 32: "v" * 32})
    assert sum(map(len, ("n" * 64, "s" * 64, "r" * 64))) + 8 * 32 + 64 == 512
    alive = Alive(node=A, incarnation=2**63 - 1, addr=("h" * 253, 65535), meta=meta,
                  signature=b"s" * 64, cert=b"c" * ALIVE_CERT_BYTES_MAX)
    ping = Ping(seq=2**63 - 1, sender=B, target=A, updates=(alive,))
    assert len(encode(ping)) <= DATAGRAM_PAYLOAD_BYTES_MAX


def test_a_realistic_certificate_fits_the_alive_certificate_budget() -> None:
    authority = Authority(SigningKey.generate(), "territory-cluster")
    cert = authority.issue(
        SigningKey.generate().public_key, name="pool-saint-denis-17", site="pool-sd-17",
        region="fr-idf-93", roles=("edge", "storage"), serial=123_456,
        not_before=1_764_000_000, not_after=1_795_536_000,
    )
    assert len(cert.encode()) <= ALIVE_CERT_BYTES_MAX


def test_the_alive_signature_covers_the_certificate() -> None:
    alive = Alive(node=A, incarnation=1, addr=("10.0.0.1", 7946), meta=META)
    stapled = Alive(node=A, incarnation=1, addr=("10.0.0.1", 7946), meta=META, cert=b"other")
    assert alive_signing_bytes(alive) != alive_signing_bytes(stapled)


def test_an_oversized_certificate_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="cert"):
        Alive(node=A, incarnation=1, addr=("10.0.0.1", 7946), meta=META,
              cert=b"c" * (ALIVE_CERT_BYTES_MAX + 1))


def _hello_decoder(data: bytes) -> object:
    from meshcore.runtime._kv import decode_hello
    return decode_hello(data, 1024)


@pytest.mark.parametrize("decoder", [
    decode, decode_namespace, decode_certificate, decode_revocation, _hello_decoder,
])
@pytest.mark.parametrize("inner", [
    bytes.fromhex("d81c81d81d00"), cbor2.dumps(2**70), bytes.fromhex("d9d9f7 41 00"),
    bytes.fromhex("a2 6161 01 6161 02"),
])
def test_every_decoder_of_untrusted_bytes_parses_strictly(decoder: object, inner: bytes) -> None:
    # in a [1, "kv", <inner>, node id] frame (a well-formed hello around it) and in [inner]
    for data in (b"\x84\x01" + cbor2.dumps("kv") + inner + cbor2.dumps(b"n" * 16), b"\x81" + inner):
        with pytest.raises(MeshError, match=r"tag (2|28|29|55799) not allowed|Duplicate map key"):
            decoder(data)  # type: ignore[operator]


def test_a_handshake_identity_payload_is_parsed_strictly() -> None:
    from meshcore.security._handshake import _decode_payload
    assert _decode_payload(cbor2.dumps([b"cert", b"sig"])) == (b"cert", b"sig")
    self_described = bytes.fromhex("82 d9d9f7 44") + b"cert" + cbor2.dumps(b"sig")
    assert cbor2.loads(self_described) == [b"cert", b"sig"]  # plain cbor2 drops the tag
    with pytest.raises(HandshakeError, match="malformed identity payload"):
        _decode_payload(self_described)
