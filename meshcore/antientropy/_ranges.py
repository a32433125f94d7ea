"""Key ranges and their deterministic subdivision (pure arithmetic, table-tested).

A session reconciles a few root ranges ``[lo, hi)`` (``hi=None``: no upper bound). A node of
the reconciliation tree is a root plus a bit path: node ``(nbits, path)`` is the slice
``[point(nbits, path), point(nbits, path + 1))`` where ``point`` places ``path / 2**nbits``
between lo and hi, reading keys as base-256 fractions. Both sides compute the same bounds
from the same numbers, so the wire carries only (root, nbits, path), never a key.

Points are computed at one fixed precision per root (``depth_bits_max`` bits below the
longest bound), so a point is the same bytes whatever depth asks for it: a parent's upper
bound is exactly its last child's. Interior points drop trailing zero bytes, so one
fraction has one spelling. Keys that are equal as fractions (b"a", b"a\\0") can never be
separated, which is why depth is bounded and a node at the bound becomes a leaf.

Uniformly spread keys split evenly; keys sharing a long prefix cost extra levels (round
trips), never correctness. The kv layer indexes ring-token-prefixed keys for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LocalProtocolError
from ._index import KEY_BYTES_MAX

__all__ = ["KeyRange", "FULL_RANGE", "Splitter"]


@dataclass(frozen=True, slots=True)
class KeyRange:
    """The keys k with lo <= k < hi (hi None: no upper bound)."""

    lo: bytes = b""
    hi: bytes | None = None

    def __post_init__(self) -> None:
        if type(self.lo) is not bytes or len(self.lo) > KEY_BYTES_MAX:
            raise LocalProtocolError(f"KeyRange.lo must be bytes of at most {KEY_BYTES_MAX}")
        if self.hi is not None:
            if type(self.hi) is not bytes or len(self.hi) > KEY_BYTES_MAX:
                raise LocalProtocolError(f"KeyRange.hi must be None or bytes of at most {KEY_BYTES_MAX}")
            if not self.lo < self.hi:
                raise LocalProtocolError(f"empty KeyRange: lo {self.lo!r:.40} >= hi {self.hi!r:.40}")

    def __contains__(self, key: object) -> bool:
        return type(key) is bytes and self.lo <= key and (self.hi is None or key < self.hi)


FULL_RANGE = KeyRange()


class Splitter:
    """Bounds of the nodes under one root range."""

    __slots__ = ("root", "depth_bits_max", "_width_bytes", "_lo", "_span")

    def __init__(self, root: KeyRange, depth_bits_max: int) -> None:
        self.root = root
        self.depth_bits_max = depth_bits_max
        longest = max(len(root.lo), len(root.hi or b""))
        self._width_bytes = longest + depth_bits_max // 8 + 2
        scale = self._width_bytes
        self._lo = int.from_bytes(root.lo.ljust(scale, b"\0"), "big")
        hi = (1 << (8 * scale)) if root.hi is None else int.from_bytes(root.hi.ljust(scale, b"\0"), "big")
        self._span = hi - self._lo

    def point(self, nbits: int, path: int) -> bytes | None:
        """The lower bound of node (nbits, path); path == 2**nbits gives the root's hi."""
        if path == 0:
            return self.root.lo
        if path == 1 << nbits:
            return self.root.hi
        value = self._lo + ((self._span * path) >> nbits)
        return value.to_bytes(self._width_bytes, "big").rstrip(b"\0")

    def bounds(self, nbits: int, path: int) -> tuple[bytes, bytes | None]:
        lo = self.point(nbits, path)
        assert lo is not None
        return lo, self.point(nbits, path + 1)

    def child_points(self, nbits: int, path: int, bits: int) -> list[bytes | None]:
        """The 2**bits + 1 bounds of the children of node (nbits, path)."""
        depth = nbits + bits
        first = path << bits
        return [self.point(depth, first + i) for i in range((1 << bits) + 1)]
