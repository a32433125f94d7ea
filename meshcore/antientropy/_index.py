"""Ordered index of (key, version, tombstone) entries with range fingerprints.

Job: answer "how many entries, and what is the sum of their item hashes, in [lo, hi)?" for
any key range, and list the entries of a small range, while writes stay cheap.

How: keys live in sorted blocks of about `block_items` keys (the sortedcontainers layout,
kept here because each block also carries the sum of its entries' hashes). Two Fenwick
trees over the blocks hold the running counts and sums, so a prefix query is a bisect, a
Fenwick walk and one lookup in the block's lazily rebuilt prefix array. A write replaces a
hash (O(log n)) or inserts into one block (a bisect and a memmove); only a block split or
merge marks the Fenwick trees stale, and they are rebuilt on the next query (amortised
O(1) per write, since a block splits once per `block_items` inserts). Nothing ever scans
the keyspace.

The item hash is blake3 over (key, tombstone flag, version), 128 bits; range sums are taken
modulo 2**128, so two ranges holding the same entries have the same sum whatever the order
of writes. Versions are opaque byte strings ordered byte-wise (the kv layer's HLC stamps
encode to bytes that sort like the stamps); ties are broken by the tombstone flag (a
tombstone wins), matching the kv merge rule.

Limits: keys 1..`KEY_BYTES_MAX` bytes, versions 1..`VERSION_BYTES_MAX` bytes.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate

import blake3

from ..errors import LocalProtocolError

__all__ = [
    "KEY_BYTES_MAX",
    "VERSION_BYTES_MAX",
    "HASH_MASK",
    "Entry",
    "RangeIndex",
    "item_hash",
    "newer",
]

KEY_BYTES_MAX = 1024
VERSION_BYTES_MAX = 64
HASH_MASK = (1 << 128) - 1
_KEY_LEN = struct.Struct(">H")
_LIVE, _TOMB = b"\x00", b"\x01"


@dataclass(frozen=True, slots=True)
class Entry:
    """One indexed entry: the newest version of `key` this replica holds."""

    key: bytes
    version: bytes
    tombstone: bool


def item_hash(key: bytes, version: bytes, tombstone: bool) -> int:
    """The 128-bit hash an entry contributes to the fingerprint of every range holding it."""
    data = _KEY_LEN.pack(len(key)) + key + (_TOMB if tombstone else _LIVE) + version
    return int.from_bytes(blake3.blake3(data).digest(16), "big")


def newer(version_a: bytes, tomb_a: bool, version_b: bytes, tomb_b: bool) -> bool:
    """Whether (version_a, tomb_a) supersedes (version_b, tomb_b): greater version wins,
    and at an equal version the tombstone wins (the kv merge rule)."""
    return (version_a, tomb_a) > (version_b, tomb_b)


def check_entry(key: object, version: object) -> None:
    """Raise `LocalProtocolError` unless key and version are bytes within the limits."""
    if type(key) is not bytes or not 1 <= len(key) <= KEY_BYTES_MAX:
        raise LocalProtocolError(f"a key is 1..{KEY_BYTES_MAX} bytes, got {key!r:.40}")
    if type(version) is not bytes or not 1 <= len(version) <= VERSION_BYTES_MAX:
        raise LocalProtocolError(
            f"a version is 1..{VERSION_BYTES_MAX} bytes (encode stamps with to_bytes()), "
            f"got {version!r:.40}"
        )


def _fen_build(values: list[int]) -> list[int]:
    tree = [0, *values]
    n = len(values)
    for i in range(1, n + 1):
        j = i + (i & -i)
        if j <= n:
            tree[j] += tree[i]
    return tree


def _fen_add(tree: list[int], i: int, delta: int) -> None:
    i += 1
    n = len(tree)
    while i < n:
        tree[i] += delta
        i += i & -i


def _fen_prefix(tree: list[int], i: int) -> int:
    total = 0
    while i > 0:
        total += tree[i]
        i -= i & -i
    return total


class RangeIndex:
    """Sorted entries with O(log n) writes and range (count, hash-sum) queries."""

    def __init__(self, *, block_items: int = 512) -> None:
        if type(block_items) is not int or not 16 <= block_items <= 65536:
            raise LocalProtocolError(f"block_items must be an int in [16, 65536], got {block_items!r}")
        self._load = block_items
        self._meta: dict[bytes, tuple[bytes, bool, int]] = {}
        self._keys: list[list[bytes]] = []
        self._hashes: list[list[int]] = []
        self._maxes: list[bytes] = []
        self._bsum: list[int] = []
        self._pre: list[list[int] | None] = []
        self._fsum: list[int] = [0]
        self._fcnt: list[int] = [0]
        self._fen_stale = False
        self._total = 0

    # --- construction -----------------------------------------------------------------

    @classmethod
    def build(cls, entries: Iterable[tuple[bytes, bytes, bool]], *, block_items: int = 512) -> RangeIndex:
        """Cold build from (key, version, tombstone) triples in any order (keys unique)."""
        index = cls(block_items=block_items)
        rows = sorted(entries, key=lambda e: e[0])
        meta = index._meta
        for key, version, tomb in rows:
            check_entry(key, version)
            meta[key] = (version, bool(tomb), item_hash(key, version, bool(tomb)))
        if len(meta) != len(rows):
            raise LocalProtocolError("RangeIndex.build got duplicate keys; pass one entry per key")
        keys = [row[0] for row in rows]
        hashes = [meta[k][2] for k in keys]
        step = block_items
        for start in range(0, len(keys), step):
            block = keys[start : start + step]
            bh = hashes[start : start + step]
            index._keys.append(block)
            index._hashes.append(bh)
            index._maxes.append(block[-1])
            index._bsum.append(sum(bh))
            index._pre.append(None)
        index._total = sum(index._bsum)
        index._rebuild_fenwick()
        return index

    # --- reads --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, key: object) -> bool:
        return key in self._meta

    def get(self, key: bytes) -> Entry | None:
        meta = self._meta.get(key)
        return None if meta is None else Entry(key, meta[0], meta[1])

    def version_of(self, key: bytes) -> tuple[bytes, bool] | None:
        """(version, tombstone) of `key`, or None; cheaper than `get`."""
        meta = self._meta.get(key)
        return None if meta is None else (meta[0], meta[1])

    def prefix(self, bound: bytes | None) -> tuple[int, int]:
        """(count, hash sum) of the entries with key < bound (None: all entries)."""
        if bound is None:
            return len(self._meta), self._total
        j = bisect_left(self._maxes, bound)
        if j == len(self._keys):
            return len(self._meta), self._total
        if self._fen_stale:
            self._rebuild_fenwick()
        count = _fen_prefix(self._fcnt, j)
        total = _fen_prefix(self._fsum, j)
        p = bisect_left(self._keys[j], bound)
        if p:
            pre = self._pre[j]
            if pre is None:
                pre = list(accumulate(self._hashes[j], initial=0))
                self._pre[j] = pre
            count += p
            total += pre[p]
        return count, total

    def summary(self, lo: bytes, hi: bytes | None) -> tuple[int, int]:
        """(count, hash sum mod 2**128) of the entries with lo <= key < hi."""
        c_lo, s_lo = self.prefix(lo)
        c_hi, s_hi = self.prefix(hi)
        return c_hi - c_lo, (s_hi - s_lo) & HASH_MASK

    def count(self, lo: bytes, hi: bytes | None) -> int:
        return self.prefix(hi)[0] - self.prefix(lo)[0]

    def keys(self, lo: bytes, hi: bytes | None) -> Iterator[bytes]:
        """Keys in [lo, hi), in order."""
        j = bisect_left(self._maxes, lo)
        nblocks = len(self._keys)
        if j == nblocks:
            return
        block = self._keys[j]
        p = bisect_left(block, lo)
        while True:
            for i in range(p, len(block)):
                key = block[i]
                if hi is not None and key >= hi:
                    return
                yield key
            j += 1
            if j == nblocks:
                return
            block, p = self._keys[j], 0

    def entries(self, lo: bytes, hi: bytes | None) -> list[tuple[bytes, bytes, bool]]:
        """(key, version, tombstone) of the entries in [lo, hi), in key order."""
        meta = self._meta
        out = []
        for key in self.keys(lo, hi):
            version, tomb, _ = meta[key]
            out.append((key, version, tomb))
        return out

    # --- writes -------------------------------------------------------------------------

    def put(self, key: bytes, version: bytes, tombstone: bool = False) -> None:
        """Record that this replica now holds `key` at `version` (a tombstone if deleted).

        Replaces whatever was indexed for `key`: the store decides what is newer.
        """
        check_entry(key, version)
        tombstone = bool(tombstone)
        h = item_hash(key, version, tombstone)
        old = self._meta.get(key)
        self._meta[key] = (version, tombstone, h)
        if old is not None:
            if old[2] == h:
                return
            j = bisect_left(self._maxes, key)
            p = bisect_left(self._keys[j], key)
            self._hashes[j][p] = h
            self._adjust(j, h - old[2], 0)
            return
        if not self._keys:
            self._keys.append([key])
            self._hashes.append([h])
            self._maxes.append(key)
            self._bsum.append(h)
            self._pre.append(None)
            self._total = h
            self._fen_stale = True
            return
        j = bisect_left(self._maxes, key)
        if j == len(self._keys):
            j -= 1
            self._maxes[j] = key
        block = self._keys[j]
        p = bisect_left(block, key)
        block.insert(p, key)
        self._hashes[j].insert(p, h)
        self._adjust(j, h, 1)
        if len(block) > 2 * self._load:
            self._split(j)

    def discard(self, key: bytes) -> None:
        """Forget `key` entirely (tombstone garbage collection). No error if absent."""
        old = self._meta.pop(key, None)
        if old is None:
            return
        j = bisect_left(self._maxes, key)
        block = self._keys[j]
        p = bisect_left(block, key)
        del block[p]
        del self._hashes[j][p]
        self._adjust(j, -old[2], -1)
        if not block:
            for seq in (self._keys, self._hashes, self._maxes, self._bsum, self._pre):
                del seq[j]
            self._fen_stale = True
        elif p == len(block):
            self._maxes[j] = block[-1]

    # --- internals ----------------------------------------------------------------------

    def _adjust(self, j: int, delta_sum: int, delta_count: int) -> None:
        self._bsum[j] += delta_sum
        self._total += delta_sum
        self._pre[j] = None
        if not self._fen_stale:
            _fen_add(self._fsum, j, delta_sum)
            if delta_count:
                _fen_add(self._fcnt, j, delta_count)

    def _split(self, j: int) -> None:
        half = self._load
        keys, hashes = self._keys[j], self._hashes[j]
        self._keys[j : j + 1] = [keys[:half], keys[half:]]
        self._hashes[j : j + 1] = [hashes[:half], hashes[half:]]
        self._maxes[j : j + 1] = [keys[half - 1], keys[-1]]
        self._bsum[j : j + 1] = [sum(hashes[:half]), sum(hashes[half:])]
        self._pre[j : j + 1] = [None, None]
        self._fen_stale = True

    def _rebuild_fenwick(self) -> None:
        self._fsum = _fen_build(self._bsum)
        self._fcnt = _fen_build([len(b) for b in self._keys])
        self._fen_stale = False
