"""Limits and tunables of a reconciliation session (one frozen value, validated once)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, RemoteProtocolError
from ._index import KEY_BYTES_MAX, VERSION_BYTES_MAX

__all__ = ["ReconcileConfig", "ReconcileError"]


class ReconcileError(RemoteProtocolError):
    """The peer's reconciliation message is corrupted, truncated, oversized or breaks the
    protocol. The session ends; nothing from that message was applied."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileConfig:
    """What a session may send and accept.

    The fingerprint/id widths are chosen by the initiator and adopted by the responder
    (within the bounds checked here); the byte limits are each side's own.
    """

    #: Largest frame either side sends or accepts (a frame holding one oversized record
    #: may reach `record_frame_bytes_max`).
    message_bytes_max: int = 64 * 1024
    #: Largest value a record may carry, and the frame limit for a frame with one record.
    value_bytes_max: int = 1024 * 1024
    #: Bytes of a child-range fingerprint (salted per session, so a collision only delays).
    fingerprint_bytes: int = 3
    #: Bytes of a root fingerprint (the "nothing differs" verdict rests on it).
    root_fingerprint_bytes: int = 16
    #: Bytes of the salted key id in a leaf entry.
    kid_bytes: int = 4
    #: Bytes of version kept (after the leaf's common prefix) to order versions in a leaf.
    window_bytes: int = 4
    #: Bytes of the salted (version, tombstone) hash that tells equal versions apart.
    vh_bytes: int = 1
    #: The first split of a root aims at children of about this many entries.
    root_child_items: int = 512
    #: Most bits a root is split by at once (4096 children).
    root_split_bits_max: int = 12
    #: Leaf sizes when differences are sparse / dense (see the session docstring).
    sparse_leaf_items: int = 16
    dense_leaf_items: int = 2
    #: Diffs per entry above which the session switches to dense mode.
    dense_threshold: float = 0.003
    #: Deepest node (bits below a root); a node this deep is always a leaf.
    depth_bits_max: int = 256
    #: Most root ranges in one session and most frames a session may take.
    ranges_max: int = 256
    frames_max: int = 100_000

    def __post_init__(self) -> None:
        def check(name: str, lo: int, hi: int) -> None:
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise ConfigError(f"ReconcileConfig.{name} must be an int in [{lo}, {hi}], got {value!r}")

        check("message_bytes_max", 4096, 16 * 1024 * 1024)
        check("value_bytes_max", 0, 64 * 1024 * 1024)
        check("fingerprint_bytes", 2, 16)
        check("root_fingerprint_bytes", 8, 32)
        check("kid_bytes", 3, 16)
        check("window_bytes", 1, 16)
        check("vh_bytes", 1, 8)
        check("root_child_items", 2, 1 << 20)
        check("root_split_bits_max", 1, 16)
        check("sparse_leaf_items", 1, 4096)
        check("dense_leaf_items", 1, 4096)
        check("depth_bits_max", 8, 1024)
        check("ranges_max", 1, 65536)
        check("frames_max", 2, 1 << 30)
        if self.depth_bits_max % 8:
            raise ConfigError("ReconcileConfig.depth_bits_max must be a multiple of 8")
        if not isinstance(self.dense_threshold, (int, float)) or not 0 < self.dense_threshold < 1:
            raise ConfigError(f"ReconcileConfig.dense_threshold must be in (0, 1), got {self.dense_threshold!r}")
        entry = self.kid_bytes + self.window_bytes + self.vh_bytes
        if 3 * self.sparse_leaf_items * entry + 2 * VERSION_BYTES_MAX > self.message_bytes_max // 2:
            raise ConfigError("sparse_leaf_items too large for message_bytes_max")
        if KEY_BYTES_MAX * 2 + 256 > self.message_bytes_max:
            raise ConfigError("message_bytes_max must hold two keys")

    @property
    def record_frame_bytes_max(self) -> int:
        """Frame limit for a frame that carries a single record."""
        return max(self.message_bytes_max, self.value_bytes_max + KEY_BYTES_MAX + VERSION_BYTES_MAX + 64)
