"""The piggyback queue: updates waiting to be gossiped, each sent a limited number of times.

Like memberlist's TransmitLimitedQueue: an update is sent at most
`retransmit_limit(mult, n)` times; updates sent the fewest times go first, and among those
the newest; a newer update about the same subject (a member, or a user message id)
replaces the queued one. Our addition: an `urgent` class (suspicions, deaths, refutations)
that goes ahead of everything when the config asks for it. Items are kept encoded, so a
packet is assembled by concatenating cached bytes, never by re-encoding.
"""

from __future__ import annotations

from collections.abc import Hashable

from sortedcontainers import SortedList  # type: ignore[import-untyped]

__all__ = ["BroadcastQueue", "UPDATE_BYTES_MIN"]

#: No update encodes smaller than this; packing stops when less room is left.
UPDATE_BYTES_MIN = 20
#: Packing looks at most at this many queued items per packet (bounds the work per send).
SCAN_ITEMS_MAX = 256


class _Item:
    __slots__ = ("key", "data", "urgent", "transmits", "id")

    def __init__(self, key: Hashable, data: bytes, urgent: bool, item_id: int) -> None:
        self.key = key
        self.data = data
        self.urgent = urgent
        self.transmits = 0
        self.id = item_id

    def order(self) -> tuple[int, int, int]:
        return (0 if self.urgent else 1, self.transmits, -self.id)


class BroadcastQueue:
    """Bounded queue of encoded updates keyed by subject."""

    def __init__(self, *, items_max: int) -> None:
        self._items_max = items_max
        self._by_key: dict[Hashable, _Item] = {}
        self._by_order: dict[tuple[int, int, int], _Item] = {}
        self._sorted: SortedList = SortedList()
        self._next_id = 0
        self.dropped = 0  # items pushed out by the bound

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._by_key

    def push(self, key: Hashable, data: bytes, *, urgent: bool = False) -> None:
        """Queue `data` for `key`, replacing whatever was queued for that key."""
        self.discard(key)
        self._next_id += 1
        item = _Item(key, data, urgent, self._next_id)
        self._by_key[key] = item
        order = item.order()
        self._by_order[order] = item
        self._sorted.add(order)
        if len(self._by_key) > self._items_max:
            # Drop the most-transmitted, oldest non-urgent item: it has done most of its work.
            self._remove(self._by_order[self._sorted[-1]])
            self.dropped += 1

    def discard(self, key: Hashable) -> None:
        item = self._by_key.get(key)
        if item is not None:
            self._remove(item)

    def _remove(self, item: _Item) -> None:
        order = item.order()
        del self._by_key[item.key]
        del self._by_order[order]
        self._sorted.remove(order)

    def take(self, bytes_avail: int, count_max: int, transmit_limit: int, *, count: bool = True) -> list[bytes]:
        """Pick updates that fit in `bytes_avail` bytes (at most `count_max` of them), in
        queue order, and count one transmission for each (unless `count` is False: a copy
        that does not spend the updates' budget)."""
        picked: list[_Item] = []
        left = bytes_avail
        scanned = 0
        for order in self._sorted:
            if left < UPDATE_BYTES_MIN or len(picked) >= count_max or scanned >= SCAN_ITEMS_MAX:
                break
            scanned += 1
            item = self._by_order[order]
            size = len(item.data)
            if size <= left:
                picked.append(item)
                left -= size
        if not count:
            return [item.data for item in picked]
        out: list[bytes] = []
        for item in picked:
            out.append(item.data)
            self._remove(item)
            item.transmits += 1
            if item.transmits < transmit_limit:
                self._by_key[item.key] = item
                order = item.order()
                self._by_order[order] = item
                self._sorted.add(order)
        return out
