"""Hybrid logical clock (Kulkarni et al., 2014) and the version stamps it issues.

A `Stamp` is ``(physical_us, logical, node)``, compared lexicographically: the later
physical time wins, then the higher logical counter, then the larger writer node id. The
node id makes every stamp unique (one writer, one clock), so last-writer-wins is total and
every replica picks the same winner. `Stamp.to_bytes()` is a fixed-width big-endian encoding
that sorts byte-wise exactly like the stamps, so indexes and SQLite can compare versions as
blobs.

Wall time is an argument (seconds, float), never read here. Bounds the clock keeps:
- stamps it issues are strictly increasing, whatever the wall clock does;
- ``physical_us`` never runs ahead of the largest wall time seen by more than
  ``max_skew_s``, because a remote stamp further ahead than that is refused with
  `ClockSkewError` instead of being adopted (one broken clock must not drag the cluster
  into the future, where its writes would win every conflict).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .._types import NODE_ID_BYTES
from ..errors import ClockSkewError, DecodeError, LocalProtocolError

__all__ = [
    "STAMP_BYTES",
    "PHYSICAL_US_MAX",
    "LOGICAL_MAX",
    "Stamp",
    "HLC",
    "wall_us",
]

PHYSICAL_US_MAX = 2**64 - 1
LOGICAL_MAX = 2**32 - 1
_HEAD = struct.Struct(">QI")
#: Encoded size of a stamp: 8 bytes physical µs, 4 bytes logical, 16 bytes node id.
STAMP_BYTES = _HEAD.size + NODE_ID_BYTES


def wall_us(wall_s: float) -> int:
    """Wall time in seconds -> integer microseconds (the unit of `Stamp.physical_us`)."""
    if not isinstance(wall_s, (int, float)) or isinstance(wall_s, bool) or wall_s < 0:
        raise LocalProtocolError(f"wall time must be seconds >= 0, got {wall_s!r:.40}")
    return round(wall_s * 1_000_000)  # round, not int(): 0.506933 * 1e6 is 506932.99...


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """A version: ordered by (physical_us, logical, node); see the module docstring."""

    physical_us: int
    logical: int
    node: bytes

    def __post_init__(self) -> None:
        if type(self.physical_us) is not int or not 0 <= self.physical_us <= PHYSICAL_US_MAX:
            raise ValueError(f"physical_us must be an int in [0, 2**64), got {self.physical_us!r:.40}")
        if type(self.logical) is not int or not 0 <= self.logical <= LOGICAL_MAX:
            raise ValueError(f"logical must be an int in [0, 2**32), got {self.logical!r:.40}")
        if type(self.node) is not bytes or len(self.node) != NODE_ID_BYTES:
            raise ValueError(f"node must be a {NODE_ID_BYTES}-byte node id, got {self.node!r:.40}")

    def to_bytes(self) -> bytes:
        """Fixed-width encoding whose byte order equals the stamp order."""
        return _HEAD.pack(self.physical_us, self.logical) + self.node

    @classmethod
    def from_bytes(cls, data: object) -> Stamp:
        """Decode `to_bytes` output; anything else raises `DecodeError`."""
        if type(data) is not bytes or len(data) != STAMP_BYTES:
            raise DecodeError(f"a stamp is {STAMP_BYTES} bytes, got {data!r:.40}")
        physical_us, logical = _HEAD.unpack_from(data)
        return cls(physical_us, logical, data[_HEAD.size :])


class HLC:
    """One node's hybrid logical clock.

    `now(wall_s)` stamps a local event (a write); `observe(wall_s, remote)` merges a stamp
    received from a peer and returns a stamp later than both. `last` lets a restarted node
    resume above every stamp it wrote before, even if its wall clock went backwards.
    """

    __slots__ = ("_node", "_max_skew_us", "_l", "_c")

    def __init__(self, node_id: object, max_skew_s: object, *, last: Stamp | None = None) -> None:
        # Typed `object`: compiled, a declared `float` would turn True into 1.0 unchecked.
        if type(node_id) is not bytes or len(node_id) != NODE_ID_BYTES:
            raise LocalProtocolError(f"node_id must be a {NODE_ID_BYTES}-byte node id")
        if not isinstance(max_skew_s, (int, float)) or isinstance(max_skew_s, bool) or not max_skew_s > 0:
            raise LocalProtocolError(f"max_skew_s must be > 0 seconds, got {max_skew_s!r:.40}")
        self._node = node_id
        self._max_skew_us = round(max_skew_s * 1_000_000)
        self._l = last.physical_us if last is not None else 0
        self._c = last.logical if last is not None else 0

    @property
    def node_id(self) -> bytes:
        return self._node

    @property
    def max_skew_s(self) -> float:
        return self._max_skew_us / 1_000_000

    def last(self) -> Stamp:
        """The latest stamp issued or observed (physical and logical parts), with our id."""
        return Stamp(self._l, self._c, self._node)

    def now(self, wall_s: float) -> Stamp:
        """A fresh stamp for a local event, strictly greater than every earlier one."""
        pt = wall_us(wall_s)
        if pt > self._l:
            self._l, self._c = pt, 0
        else:
            self._tick()
        return Stamp(self._l, self._c, self._node)

    def observe(self, wall_s: float, remote: Stamp) -> Stamp:
        """Merge a peer's stamp; refuse it if it is more than `max_skew_s` ahead of wall time.

        On refusal the clock is unchanged and `ClockSkewError` names the writer.
        """
        pt = wall_us(wall_s)
        ahead_us = remote.physical_us - pt
        if ahead_us > self._max_skew_us:
            raise ClockSkewError(
                f"stamp from node {remote.node[:4].hex()} is {ahead_us / 1e6:.3f} s ahead of "
                f"local wall time (limit {self.max_skew_s:.3f} s): check the clock (NTP) "
                "on that node or on this one"
            )
        l_old = self._l
        l_new = max(l_old, remote.physical_us, pt)
        if l_new == l_old == remote.physical_us:
            c = max(self._c, remote.logical) + 1
        elif l_new == l_old:
            c = self._c + 1
        elif l_new == remote.physical_us:
            c = remote.logical + 1
        else:
            c = 0
        self._l = l_new
        if c > LOGICAL_MAX:
            self._l, c = self._l + 1, 0
        self._c = c
        return Stamp(self._l, self._c, self._node)

    def _tick(self) -> None:
        # A logical overflow (2**32 events inside one microsecond of stalled wall time) moves
        # physical time on by 1 µs: order and uniqueness are kept, the drift is negligible.
        if self._c == LOGICAL_MAX:
            self._l, self._c = self._l + 1, 0
        else:
            self._c += 1
