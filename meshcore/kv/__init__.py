"""meshcore.kv: the I/O-free pieces of the replicated key-value layer.

Versions (`HLC`, `Stamp`), namespace specs, records and their last-writer-wins merge, the
tombstone purge rule and territory-aware placement; and the replication core built on them
(`KvCore`: coordinator, replica side, hinted handoff, read repair, tombstone collection),
which returns effects for its glue to perform. Storage lives in `meshcore.runtime`.
"""

from ._config import Consistency, KvConfig, acks_required
from ._coordinator import write_satisfied
from ._core import KvCore, KvStatistics
from ._effects import (
    Completed,
    DropHints,
    HeldHint,
    KvEffect,
    KvTimer,
    Load,
    LoadHints,
    Persist,
    PersistHint,
    Purge,
    Send,
    SetTimer,
)
from ._hlc import HLC, LOGICAL_MAX, STAMP_BYTES, Stamp, wall_us
from ._messages import KV_MESSAGE_BYTES_MAX, KvMessage, Status, decode_kv, encode_kv
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
from ._view import ClusterView

__all__ = [
    "HLC", "Stamp", "STAMP_BYTES", "LOGICAL_MAX", "wall_us",
    "Namespace", "NAME_CHARS_MAX", "REGIONS_MAX", "REPLICAS_DEFAULT", "REPLICAS_MAX",
    "encode_namespace", "decode_namespace",
    "Ring", "RingMember", "VNODES_PER_NODE_DEFAULT", "key_token", "replicas_for",
    "Record", "KEY_BYTES_MAX", "VALUE_BYTES_MAX", "as_key", "check_value", "merge", "newer",
    "TombstoneAck", "acked_by", "may_purge", "missing_acks",
    "KvCore", "KvStatistics", "KvConfig", "Consistency", "acks_required", "write_satisfied",
    "ClusterView", "KvEffect", "KvTimer", "Send", "SetTimer", "Persist", "PersistHint", "Load",
    "LoadHints", "HeldHint", "DropHints", "Purge", "Completed",
    "KvMessage", "Status", "encode_kv", "decode_kv", "KV_MESSAGE_BYTES_MAX",
]
