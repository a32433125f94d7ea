"""meshcore.kv: the I/O-free pieces of the replicated key-value layer.

Versions (`HLC`, `Stamp`), namespace specs, records and their last-writer-wins merge, the
tombstone purge rule and territory-aware placement. The coordinator and its network glue
build on these; storage lives in `meshcore.runtime`.
"""

from ._hlc import HLC, LOGICAL_MAX, STAMP_BYTES, Stamp, wall_us
from ._namespace import (
    NAME_CHARS_MAX,
    REGIONS_MAX,
    REPLICAS_DEFAULT,
    REPLICAS_MAX,
    Namespace,
    decode_namespace,
    encode_namespace,
)
from ._placement import VNODES_PER_NODE_DEFAULT, Ring, RingMember, key_token, replicas_for
from ._record import KEY_BYTES_MAX, VALUE_BYTES_MAX, Record, as_key, check_value, merge, newer
from ._tombstones import TombstoneAck, acked_by, may_purge, missing_acks

__all__ = [
    "HLC", "Stamp", "STAMP_BYTES", "LOGICAL_MAX", "wall_us",
    "Namespace", "NAME_CHARS_MAX", "REGIONS_MAX", "REPLICAS_DEFAULT", "REPLICAS_MAX",
    "encode_namespace", "decode_namespace",
    "Ring", "RingMember", "VNODES_PER_NODE_DEFAULT", "key_token", "replicas_for",
    "Record", "KEY_BYTES_MAX", "VALUE_BYTES_MAX", "as_key", "check_value", "merge", "newer",
    "TombstoneAck", "acked_by", "may_purge", "missing_acks",
]
