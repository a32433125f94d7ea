"""One reconciliation session between two replicas, I/O-free: bytes in, bytes out.

Design (chosen by measurement, see benchmarks/antientropy.py). Range-based set
reconciliation (Meyer 2022, as in negentropy) with three changes that matter on slow links:

1. Implicit bounds. A node of the tree is (root, nbits, path): a slice of the root range
   computed by both sides (`Splitter`), so a message names a node in a few bytes and never
   carries a key bound.
2. Wide, short fingerprints. The first answer to a differing root splits it into up to 4,096
   children of ~512 entries with 3-byte fingerprints (salted per session, so a collision
   only delays a repair to the next session, and the final verification catches it). Deeper
   splits are sized from the observed density of differences: few differences -> leaves of
   ~16 entries after one more split; many -> two more splits and leaves of ~4 entries.
3. Version-aware leaves. A leaf lists, per entry, a salted key id, a window of the version
   (the bytes after the leaf's common version prefix, which order the versions) and a
   1-byte salted hash of (version, tombstone). The receiver therefore knows at once which
   side is newer for each key: it sends its newer or missing records and asks for the rest,
   so only the stale side is repaired and a record crosses the link once. Versions the
   window cannot order (equal windows) take one extra exchange (`Offer`). Equal windows
   and equal 1-byte hashes do not prove equal versions, so the answer to a leaf (`Want`)
   carries a salted fingerprint of the entries it found equal or sent; the leaf's sender
   answers a mismatch with offers, and a leaf in which nothing differs at all (its node's
   fingerprints did) is answered with offers at once.

With no difference a session is one exchange of ~100 bytes. 100 differences among 10**6
keys take 3 round trips (root; children; grandchildren; leaves; records both ways), as the
final repairs ride on the last two messages. Invertible Bloom lookup tables (rateless IBLT)
would send fewer bytes for tiny differences, but they cannot cover an arbitrary key range
incrementally, need a size estimate or extra rounds, and still need a version exchange per
conflicting key; the range tree does all of that with one index.

Framing: strict alternation. Each side answers every frame with one frame of at most
`message_bytes_max`; work that does not fit waits in a FIFO queue (`more` flag), so a large
divergence streams in bounded frames. A frame that needs no answer and leaves both queues
empty is `final`; it carries the sender's root fingerprints so the receiver can check that
the replicas now agree (`verified`).

Resumption: a node is named by its bounds, so the session keeps no per-node state, and every
repair is applied as soon as it arrives. After a broken link, a new session over the same
ranges finds the repaired parts equal at the first split and only redoes what was missing.

Errors: a corrupted, truncated, oversized or inconsistent frame raises `ReconcileError`
before any of its records is applied, and the session is over.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from ..errors import LocalProtocolError
from ._config import ReconcileConfig, ReconcileError
from ._index import HASH_MASK, item_hash, newer
from ._messages import (
    SALT_BYTES,
    Block,
    Fps,
    Frame,
    Hello,
    Leaf,
    Offer,
    Put,
    Root,
    Verify,
    Want,
    WantKey,
    decode_frame,
    encode_block,
    encode_frame,
    frame_overhead_bytes,
)
from ._ranges import FULL_RANGE, KeyRange, Splitter
from ._store import ReplicaStore, VersionedRecord

__all__ = ["ReconcileSession", "SessionStatistics"]

_ACTIVE, _PUT, _PASSIVE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """A snapshot of one side of a session."""

    initiator: bool
    done: bool
    failed: bool
    verified: bool | None
    frames_sent: int
    frames_received: int
    bytes_sent: int
    bytes_received: int
    records_sent: int
    records_applied: int
    records_stale: int
    records_out_of_range: int
    unknown_wants: int
    leaves_sent: int
    nodes_compared: int
    #: Leaf checks that showed a hidden difference (answered with offers).
    checks_failed: int
    dense: bool


class ReconcileSession:
    """One side of a session. The initiator calls `start()`; then each side feeds the
    other's frames to `receive()` and sends back what it returns, until it returns None
    (the session is over: `done`)."""

    def __init__(
        self,
        replica: ReplicaStore,
        *,
        initiator: bool,
        rng: random.Random | None = None,
        ranges: Sequence[KeyRange] = (FULL_RANGE,),
        config: ReconcileConfig | None = None,
    ) -> None:
        self._cfg = config if config is not None else ReconcileConfig()
        self._replica = replica
        self._index = replica.index
        self.initiator = initiator
        self._roots: list[KeyRange] = []
        self._splitters: list[Splitter] = []
        self._queue: deque[tuple[bytes, int]] = deque()
        self._peer_more = False
        self._dense = False
        self._diverged = False
        self._started = False
        self._roots_processed = 0  # root blocks arrive in order; this is the next one's index
        self.done = False
        self.failed = False
        self.verified: bool | None = None
        self._n = dict.fromkeys(
            ("frames_sent", "frames_received", "bytes_sent", "bytes_received", "records_sent",
             "records_applied", "records_stale", "records_out_of_range", "unknown_wants",
             "leaves_sent", "nodes_compared", "checks_failed"), 0)
        cfg = self._cfg
        if initiator:
            if rng is None:
                raise LocalProtocolError("the initiator needs an rng (random.Random) to salt the session")
            ranges = list(ranges)
            if not 1 <= len(ranges) <= cfg.ranges_max:
                raise LocalProtocolError(f"a session reconciles 1..{cfg.ranges_max} ranges, got {len(ranges)}")
            for r in ranges:
                if not isinstance(r, KeyRange):
                    raise LocalProtocolError(f"ranges must be KeyRange values, got {r!r:.40}")
            self._set_params(
                Hello(rng.randbytes(SALT_BYTES), cfg.fingerprint_bytes, cfg.kid_bytes, cfg.window_bytes, cfg.vh_bytes)
            )
            for r in ranges:
                self._add_root(r)

    # --- public API ---------------------------------------------------------------------

    def start(self) -> bytes:
        """The initiator's first frame."""
        if not self.initiator or self._started:
            raise LocalProtocolError("start() is called once, by the initiator")
        self._started = True
        hello = Hello(self._salt, self._fpb, self._kidb, self._winb, self._vhb)
        self._push(hello, _ACTIVE)
        for i, r in enumerate(self._roots):
            self._push(Root(r.lo, r.hi, self._root_fp(i)), _ACTIVE)
        return self._reply()

    def receive(self, data: bytes) -> bytes | None:
        """Process the peer's frame; return the frame to send back, or None when the
        session is over. Raises `ReconcileError` (and applies nothing of `data`) when the
        frame is bad; the session is then over too."""
        if self.done:
            raise LocalProtocolError("the session is over; start a new one")
        if self.initiator and not self._started:
            raise LocalProtocolError("the initiator calls start() before receive()")
        try:
            frame = decode_frame(data, self._cfg)
            self._validate(frame)
        except ReconcileError:
            self.done = self.failed = True
            raise
        self._n["frames_received"] += 1
        self._n["bytes_received"] += len(data)
        self._peer_more = frame.more
        self._dense = self._dense or frame.dense
        for block in frame.blocks:
            self._process(block)
        if frame.final:
            self.done = True
            return None
        if self._n["frames_received"] + self._n["frames_sent"] >= self._cfg.frames_max:
            self.done = self.failed = True
            raise ReconcileError(f"session exceeded {self._cfg.frames_max} frames")
        return self._reply()

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            initiator=self.initiator, done=self.done, failed=self.failed, verified=self.verified,
            dense=self._dense, **self._n,
        )

    # --- parameters and hashing ---------------------------------------------------------

    def _set_params(self, h: Hello) -> None:
        self._salt = h.salt
        self._fpb, self._kidb, self._winb, self._vhb = h.fingerprint_bytes, h.kid_bytes, h.window_bytes, h.vh_bytes
        self._entry_bytes = self._kidb + self._winb + self._vhb
        self._empty_fp = self._fp(0, 0, self._fpb)
        self._empty_root_fp = self._fp(0, 0, self._cfg.root_fingerprint_bytes)

    def _add_root(self, r: KeyRange) -> None:
        self._roots.append(r)
        self._splitters.append(Splitter(r, self._cfg.depth_bits_max))

    def _fp(self, count: int, total: int, nbytes: int) -> bytes:
        data = self._salt + count.to_bytes(8, "big") + (total & HASH_MASK).to_bytes(16, "big")
        return blake3.blake3(data).digest(nbytes)

    def _root_fp(self, i: int) -> bytes:
        r = self._roots[i]
        count, total = self._index.summary(r.lo, r.hi)
        return self._fp(count, total, self._cfg.root_fingerprint_bytes)

    def _kid(self, key: bytes) -> bytes:
        return blake3.blake3(self._salt + b"k" + key).digest(self._kidb)

    def _vh(self, version: bytes, tomb: bool) -> bytes:
        return blake3.blake3(self._salt + (b"t" if tomb else b"l") + version).digest(self._vhb)

    # --- validation (before anything is applied) ----------------------------------------

    def _validate(self, frame: Frame) -> None:
        first = self._n["frames_received"] == 0 and not self.initiator
        blocks = frame.blocks
        if first:
            if not blocks or type(blocks[0]) is not Hello:
                raise ReconcileError("a session starts with a hello block")
            self._set_params(blocks[0])
            roots = [r for r in blocks[1:] if isinstance(r, Root)]
            if not 1 <= len(roots) <= self._cfg.ranges_max:
                raise ReconcileError(f"a session names 1..{self._cfg.ranges_max} ranges, got {len(roots)}")
            if len(roots) != len(blocks) - 1:
                raise ReconcileError("the first frame holds only hello and root blocks")
            for r in roots:
                if len(r.fp) != self._cfg.root_fingerprint_bytes:
                    raise ReconcileError("root fingerprint of the wrong width")
                self._add_root(KeyRange(r.lo, r.hi))
            return
        nroots = len(self._roots)
        for b in blocks:
            t = type(b)
            if t is Hello or t is Root:
                raise ReconcileError(f"{t.__name__} block after the first frame")
            if frame.final and t is not Put and t is not Verify:
                raise ReconcileError("a final frame carries only records and verification")
            if t is Fps:
                if b.root >= nroots or len(b.fps) != (1 << b.bits) * self._fpb:  # type: ignore[union-attr]
                    raise ReconcileError("fingerprint block with a bad root or width")
            elif t is Leaf:
                if b.root >= nroots or len(b.entries) % self._entry_bytes:  # type: ignore[union-attr]
                    raise ReconcileError("leaf block with a bad root or entry width")
                kids = {b.entries[i : i + self._kidb] for i in range(0, len(b.entries), self._entry_bytes)}  # type: ignore[union-attr]
                if len(kids) * self._entry_bytes != len(b.entries):  # type: ignore[union-attr]
                    raise ReconcileError("leaf lists a key id twice")
            elif t is Want:
                w: Want = b  # type: ignore[assignment]
                if w.root >= nroots or len(w.kids) % self._kidb or len(w.skipped) % self._kidb:
                    raise ReconcileError("want block with a bad root or id width")
                if len(w.check) != self._fpb:
                    raise ReconcileError("want check of the wrong width")
            elif t is Verify:
                if not frame.final or len(b.fps) != nroots * self._cfg.root_fingerprint_bytes:  # type: ignore[union-attr]
                    raise ReconcileError("verification outside a final frame or of the wrong width")

    # --- processing -----------------------------------------------------------------------

    def _process(self, b: Block) -> None:
        t = type(b)
        if t is Put:
            self._on_put(b)  # type: ignore[arg-type]
        elif t is Fps:
            self._diverged = True
            self._on_fps(b)  # type: ignore[arg-type]
        elif t is Leaf:
            self._diverged = True
            self._on_leaf(b)  # type: ignore[arg-type]
        elif t is Want:
            self._on_want(b)  # type: ignore[arg-type]
        elif t is Offer:
            self._on_offer(b)  # type: ignore[arg-type]
        elif t is WantKey:
            self._send_record(b.key)  # type: ignore[union-attr]
        elif t is Root:
            self._on_root(b)  # type: ignore[arg-type]
        elif t is Verify:
            mine = b"".join(self._root_fp(i) for i in range(len(self._roots)))
            self.verified = mine == b.fps  # type: ignore[union-attr]

    def _on_root(self, b: Root) -> None:
        i = self._roots_processed
        self._roots_processed += 1
        r = self._roots[i]
        count, total = self._index.summary(r.lo, r.hi)
        if self._fp(count, total, self._cfg.root_fingerprint_bytes) == b.fp:
            return
        self._diverged = True
        other_empty = b.fp == self._empty_root_fp
        self._expand(i, 0, 0, r.lo, r.hi, count, other_empty)

    def _on_fps(self, b: Fps) -> None:
        bits, fpb = b.bits, self._fpb
        points = self._splitters[b.root].child_points(b.nbits, b.path, bits)
        prefixes = [self._index.prefix(p) for p in points]
        mismatched = []
        for i in range(1 << bits):
            count = prefixes[i + 1][0] - prefixes[i][0]
            total = prefixes[i + 1][1] - prefixes[i][1]
            theirs = b.fps[i * fpb : (i + 1) * fpb]
            if self._fp(count, total, fpb) != theirs:
                mismatched.append((i, count, theirs == self._empty_fp))
        self._n["nodes_compared"] += 1 << bits
        if b.nbits == 0 and not self._dense:
            self._update_density(1 << bits, len(mismatched), prefixes[-1][0] - prefixes[0][0])
        depth = b.nbits + bits
        for i, count, other_empty in mismatched:
            lo, hi = points[i], points[i + 1]
            assert lo is not None
            self._expand(b.root, depth, (b.path << bits) | i, lo, hi, count, other_empty)

    def _update_density(self, children: int, mismatched: int, entries: int) -> None:
        # Poisson estimate of differences per child, then per entry.
        if mismatched >= children:
            per_child = math.log(children) + 1.0
        else:
            per_child = -math.log(1.0 - mismatched / children)
        per_entry = per_child * children / max(entries, 1)
        if per_entry > self._cfg.dense_threshold:
            self._dense = True

    def _leaf_target(self) -> int:
        return self._cfg.dense_leaf_items if self._dense else self._cfg.sparse_leaf_items

    def _expand(self, root: int, nbits: int, path: int, lo: bytes, hi: bytes | None, count: int, other_empty: bool) -> None:
        """Our answer for a node whose fingerprints differ."""
        if other_empty:
            for key in list(self._index.keys(lo, hi)):
                self._send_record(key)
            return
        cfg = self._cfg
        target = self._leaf_target()
        if count <= target * 5 // 2 or nbits >= cfg.depth_bits_max:
            if self._send_leaf(root, nbits, path, lo, hi):
                return
            if nbits >= cfg.depth_bits_max:  # own key ids collide at the depth limit
                for key in list(self._index.keys(lo, hi)):
                    self._send_record(key)
                return
            bits = 1
        elif nbits == 0:
            # The widest split still leaves half a frame for other blocks.
            cap = min(cfg.root_split_bits_max, int(math.log2(cfg.message_bytes_max // 2 // self._fpb)))
            bits = max(1, min(cap, math.ceil(math.log2(count / cfg.root_child_items))))
        else:
            # Round, not ceil: leaves accept up to 2.5x the target, and a 64-way split of a
            # node just above 32 targets costs more fingerprints than it saves in leaves.
            cap = 5 if self._dense else 6
            bits = max(1, min(cap, round(math.log2(count / target))))
        bits = min(bits, cfg.depth_bits_max - nbits)
        points = self._splitters[root].child_points(nbits, path, bits)
        prefixes = [self._index.prefix(p) for p in points]
        fps = b"".join(
            self._fp(prefixes[i + 1][0] - prefixes[i][0], prefixes[i + 1][1] - prefixes[i][1], self._fpb)
            for i in range(1 << bits)
        )
        self._push(Fps(root, nbits, path, bits, fps), _ACTIVE)

    def _send_leaf(self, root: int, nbits: int, path: int, lo: bytes, hi: bytes | None) -> bool:
        """Queue our leaf for the node; False if two of our key ids collide (split instead)."""
        entries = self._index.entries(lo, hi)
        kids = [self._kid(k) for k, _, _ in entries]
        if len(set(kids)) != len(kids):
            return False
        vbase = _common_prefix([v for _, v, _ in entries])
        skip, win = len(vbase), self._winb
        parts = []
        for kid, (_, version, tomb) in zip(kids, entries, strict=True):
            parts.append(kid + version[skip : skip + win].ljust(win, b"\0") + self._vh(version, tomb))
        self._push(Leaf(root, nbits, path, vbase, b"".join(parts)), _ACTIVE)
        self._n["leaves_sent"] += 1
        return True

    def _on_leaf(self, b: Leaf) -> None:
        lo, hi = self._splitters[b.root].bounds(b.nbits, b.path)
        eb, kb, win = self._entry_bytes, self._kidb, self._winb
        theirs = {b.entries[i : i + kb]: b.entries[i + kb : i + eb] for i in range(0, len(b.entries), eb)}
        vbase, skip = b.vbase, len(b.vbase)
        entries = self._index.entries(lo, hi)
        wanted: list[bytes] = []
        offered: list[bytes] = []
        sent = matched = 0
        total = 0  # item-hash sum of the entries the peer holds as we do once our records land
        for key, version, tomb in entries:
            kid = self._kid(key)
            tag = theirs.pop(kid, None)
            if tag is None:
                order = 1
            else:
                head = version[:skip]
                if head != vbase:
                    order = 1 if head > vbase else -1
                else:
                    window = version[skip : skip + win].ljust(win, b"\0")
                    their_window = tag[:win]
                    order = 0 if window == their_window else (1 if window > their_window else -1)
            if order < 0:
                wanted.append(kid)
                continue
            if order == 0 and self._vh(version, tomb) != tag[win:]:  # type: ignore[index]
                self._push(Offer(key, version, tomb), _ACTIVE)
                offered.append(kid)
                continue
            if order > 0:
                self._send_record(key)
                sent += 1
            else:
                matched += 1
            total += item_hash(key, version, tomb)
        wanted.extend(theirs)  # ids we do not hold at all
        if matched and not (wanted or offered or sent):
            # The peer sent this leaf because the node's fingerprints differ, yet every entry
            # matched: a short version hash collided on versions the window could not order.
            # Offer them all: an offer is compared exactly.
            for key, version, tomb in entries:
                self._push(Offer(key, version, tomb), _ACTIVE)
            return
        if wanted or matched:
            # A match rests on the short version hash (the windows tied). The check lets the
            # peer prove the matches, and it answers a mismatch with offers. It is active (it
            # costs a frame when we only send records) because the peer cannot answer a final
            # frame; a hidden difference would otherwise wait for the next session.
            check = self._fp(matched + sent, total, self._fpb)
            self._push(Want(b.root, b.nbits, b.path, b"".join(wanted), b"".join(offered), check), _ACTIVE)

    def _on_want(self, b: Want) -> None:
        lo, hi = self._splitters[b.root].bounds(b.nbits, b.path)
        kb = self._kidb
        wanted = {b.kids[i : i + kb] for i in range(0, len(b.kids), kb)}
        skipped = {b.skipped[i : i + kb] for i in range(0, len(b.skipped), kb)}
        rest = []
        total = 0
        for key, version, tomb in self._index.entries(lo, hi):
            kid = self._kid(key)
            if kid in wanted:
                wanted.discard(kid)
                self._send_record(key)
            elif kid not in skipped:
                rest.append((key, version, tomb))
                total += item_hash(key, version, tomb)
        self._n["unknown_wants"] += len(wanted)
        if self._fp(len(rest), total, self._fpb) != b.check:
            # The entries the peer found equal (or sent us, already applied: its records
            # travel before its want) are not what we hold: offer ours, compared exactly.
            self._n["checks_failed"] += 1
            for key, version, tomb in rest:
                self._push(Offer(key, version, tomb), _ACTIVE)

    def _on_offer(self, b: Offer) -> None:
        if not self._in_roots(b.key):
            self._n["records_out_of_range"] += 1
            return
        mine = self._index.version_of(b.key)
        if mine is None or newer(b.version, b.tombstone, mine[0], mine[1]):
            self._push(WantKey(b.key), _ACTIVE)
        elif newer(mine[0], mine[1], b.version, b.tombstone):
            self._send_record(b.key)

    def _on_put(self, b: Put) -> None:
        if not self._in_roots(b.key):
            self._n["records_out_of_range"] += 1
            return
        tomb = b.value is None
        mine = self._index.version_of(b.key)
        if mine is not None and not newer(b.version, tomb, mine[0], mine[1]):
            self._n["records_stale"] += 1
            return
        self._replica.apply(VersionedRecord(b.key, b.version, b.value))
        self._n["records_applied"] += 1

    def _in_roots(self, key: bytes) -> bool:
        return any(key in r for r in self._roots)

    # --- output ---------------------------------------------------------------------------

    def _send_record(self, key: bytes) -> None:
        if not self._in_roots(key):
            return
        record = self._replica.read(key)
        if record is None:
            self._n["unknown_wants"] += 1
            return
        self._push(Put(record.key, record.version, record.value), _PUT)

    def _push(self, block: Block, kind: int) -> None:
        self._queue.append((encode_block(block), kind))

    def _reply(self) -> bytes:
        cfg = self._cfg
        verify_bytes = len(self._roots) * cfg.root_fingerprint_bytes + 8
        budget = cfg.message_bytes_max - frame_overhead_bytes(65535) - verify_bytes
        queue, size, active, puts = self._queue, 0, False, 0
        blocks: list[bytes] = []
        while queue:
            enc, kind = queue[0]
            if blocks and size + len(enc) > budget:
                break
            queue.popleft()
            blocks.append(enc)
            size += len(enc)
            active = active or kind == _ACTIVE
            puts += kind == _PUT
            if size > budget:  # one record larger than a frame travels alone
                break
        more = bool(queue)
        final = not more and not self._peer_more and not active
        if final and self._diverged and size <= budget:
            mine = b"".join(self._root_fp(i) for i in range(len(self._roots)))
            blocks.append(encode_block(Verify(mine)))
        frame = encode_frame(more=more, final=final, dense=self._dense, blocks=blocks)
        self._n["frames_sent"] += 1
        self._n["bytes_sent"] += len(frame)
        self._n["records_sent"] += puts
        if final:
            self.done = True
        return frame


def _common_prefix(versions: list[bytes]) -> bytes:
    if not versions:
        return b""
    lo, hi = min(versions), max(versions)
    n = 0
    for a, b in zip(lo, hi, strict=False):
        if a != b:
            break
        n += 1
    return lo[:n]
