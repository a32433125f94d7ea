"""Wire format: messages as frozen dataclasses and their versioned CBOR codec."""

from ._codec import (
    DATAGRAM_BYTES_MAX,
    DATAGRAM_PAYLOAD_BYTES_MAX,
    RECENT_USER_MAX,
    SEAL_OVERHEAD_BYTES_MAX,
    STREAM_MESSAGE_BYTES_MAX,
    WIRE_VERSION,
    alive_signing_bytes,
    dead_signing_bytes,
    decode,
    decode_recent_users,
    encode,
    encode_recent_users,
    encode_update,
    update_size,
)
from ._envelope import decode_envelope, loads_strict
from ._messages import (
    ALIVE_CERT_BYTES_MAX,
    Ack,
    Alive,
    Dead,
    MemberState,
    Message,
    Nack,
    NodeMeta,
    Ping,
    PingReq,
    PushPull,
    Status,
    Suspect,
    Update,
    UserMsg,
)

__all__ = [
    "WIRE_VERSION", "DATAGRAM_BYTES_MAX", "SEAL_OVERHEAD_BYTES_MAX",
    "DATAGRAM_PAYLOAD_BYTES_MAX", "STREAM_MESSAGE_BYTES_MAX", "ALIVE_CERT_BYTES_MAX",
    "encode", "decode", "encode_update", "update_size", "decode_envelope", "loads_strict",
    "alive_signing_bytes", "dead_signing_bytes", "RECENT_USER_MAX", "encode_recent_users",
    "decode_recent_users",
    "Ack", "Alive", "Dead", "MemberState", "Message", "Nack", "NodeMeta", "Ping",
    "PingReq", "PushPull", "Status", "Suspect", "Update", "UserMsg",
]
