"""Trio driver of anti-entropy: runs `ReconcileSession`s over stream links.

- `initiate(stream)` / `serve(stream)` run one session over any `trio.abc.Stream` (the secure
  link is passed in by the node), framing each message as a 4-byte big-endian length then the
  frame, and never sending faster than a token bucket allows (`bytes_per_s`, `burst_bytes`,
  on the trio clock), so a rooftop 4G modem keeps room for everything else.
- `run()` reconciles with a random replica peer every `interval_s` (with jitter), and at once
  with a peer reported by `peer_alive(peer)` (the node calls it from SWIM events).
- `statistics()` is a frozen snapshot of counters and of the session in progress.

Limits: one session at a time per driver as initiator (sessions are bandwidth-bound, and the
token bucket is shared anyway); each session has a deadline (`session_timeout_s`); a frame
longer than the reconciliation limits ends the session before it is read. A bad frame or a
broken link ends that session only: it is counted, and repairs already applied stay (so the
next session resumes where this one stopped, see `meshcore.antientropy`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

from ..antientropy import (
    FULL_RANGE,
    KeyRange,
    ReconcileConfig,
    ReconcileError,
    ReconcileSession,
    ReplicaStore,
    SessionStatistics,
)
from ..errors import ConfigError

__all__ = ["AntiEntropyConfig", "AntiEntropyDriver", "AntiEntropyStatistics", "TokenBucket"]

P = TypeVar("P", bound=Hashable)
_LEN_BYTES = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class AntiEntropyConfig:
    interval_s: float = 60.0
    #: Each wait is interval_s * (1 +- jitter), so peers do not synchronise.
    jitter: float = 0.2
    bytes_per_s: float = 256 * 1024
    burst_bytes: int = 128 * 1024
    session_timeout_s: float = 300.0
    #: Peers waiting for an immediate session (more are dropped and counted).
    urgent_peers_max: int = 64
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)

    def __post_init__(self) -> None:
        if not (isinstance(self.interval_s, (int, float)) and self.interval_s > 0):
            raise ConfigError(f"interval_s must be > 0, got {self.interval_s!r}")
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter < 1):
            raise ConfigError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if not (isinstance(self.bytes_per_s, (int, float)) and self.bytes_per_s > 0):
            raise ConfigError(f"bytes_per_s must be > 0, got {self.bytes_per_s!r}")
        if type(self.burst_bytes) is not int or self.burst_bytes < self.reconcile.message_bytes_max + _LEN_BYTES:
            raise ConfigError("burst_bytes must hold one frame (reconcile.message_bytes_max + 4)")
        if not (isinstance(self.session_timeout_s, (int, float)) and self.session_timeout_s > 0):
            raise ConfigError(f"session_timeout_s must be > 0, got {self.session_timeout_s!r}")
        if type(self.urgent_peers_max) is not int or self.urgent_peers_max < 1:
            raise ConfigError(f"urgent_peers_max must be an int >= 1, got {self.urgent_peers_max!r}")


@dataclass(frozen=True, slots=True)
class AntiEntropyStatistics:
    sessions_initiated: int
    sessions_served: int
    sessions_completed: int
    sessions_failed: int
    sessions_verified: int
    sessions_unverified: int
    sessions_timed_out: int
    urgent_dropped: int
    bytes_sent: int
    bytes_received: int
    records_sent: int
    records_applied: int
    throttled_s: float
    #: The session running now (None when idle): its peer and current counters.
    current_peer: object | None
    current: SessionStatistics | None


class TokenBucket:
    """`rate` bytes/s refilled continuously up to `burst` bytes, on the trio clock."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None
        self.waited_s = 0.0

    def _refill(self, now: float) -> None:
        if self._stamp is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def spend(self, nbytes: int) -> None:
        """Wait until `nbytes` may be sent, then take them (nbytes above burst: wait for a
        full bucket and go into debt, so an oversized record still passes)."""
        self._refill(trio.current_time())
        need = min(float(nbytes), float(self.burst))
        if self._tokens < need:
            delay = (need - self._tokens) / self.rate
            self.waited_s += delay
            await trio.sleep(delay)
            self._refill(trio.current_time())
        self._tokens -= nbytes


class AntiEntropyDriver(Generic[P]):
    """Schedules and runs anti-entropy sessions for one replica."""

    def __init__(
        self,
        replica: ReplicaStore,
        *,
        peers: Callable[[], Sequence[P]],
        connect: Callable[[P], Awaitable[trio.abc.Stream]],
        rng: random.Random,
        config: AntiEntropyConfig | None = None,
        ranges: Callable[[P], Sequence[KeyRange]] | None = None,
    ) -> None:
        self._replica = replica
        self._peers = peers
        self._connect = connect
        self._rng = rng
        self.config = config if config is not None else AntiEntropyConfig()
        self._ranges = ranges
        self._bucket = TokenBucket(self.config.bytes_per_s, self.config.burst_bytes)
        self._urgent_send, self._urgent_recv = trio.open_memory_channel[P](self.config.urgent_peers_max)
        self._urgent_pending: set[P] = set()
        self._n = dict.fromkeys(
            ("sessions_initiated", "sessions_served", "sessions_completed", "sessions_failed",
             "sessions_verified", "sessions_unverified", "sessions_timed_out", "urgent_dropped",
             "bytes_sent", "bytes_received", "records_sent", "records_applied"), 0)
        self._current: ReconcileSession | None = None
        self._current_peer: P | None = None
        self._session_done = trio.Event()

    # --- scheduling -----------------------------------------------------------------------

    def peer_alive(self, peer: P) -> None:
        """A replica peer came (back) alive: reconcile with it as soon as possible."""
        if peer in self._urgent_pending:
            return
        try:
            self._urgent_send.send_nowait(peer)
        except trio.WouldBlock:
            self._n["urgent_dropped"] += 1
            return
        self._urgent_pending.add(peer)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reconcile forever: with urgent peers first, else with a random peer each interval."""
        task_status.started()
        next_at = trio.current_time() + self._wait_s()
        while True:
            urgent: list[P] = []
            with trio.move_on_at(next_at):
                urgent.append(await self._urgent_recv.receive())
                self._urgent_pending.discard(urgent[0])
            if urgent:
                peer = urgent[0]
            else:
                next_at = trio.current_time() + self._wait_s()
                candidates = list(self._peers())
                if not candidates:
                    continue
                peer = candidates[self._rng.randrange(len(candidates))]
            await self.reconcile_with(peer)

    def _wait_s(self) -> float:
        cfg = self.config
        return cfg.interval_s * (1 + cfg.jitter * (2 * self._rng.random() - 1))

    async def reconcile_with(self, peer: P) -> SessionStatistics | None:
        """Connect to `peer` and run one session as initiator; None if it failed."""
        try:
            stream = await self._connect(peer)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError):
            self._n["sessions_failed"] += 1
            return None
        async with stream:
            ranges = self._ranges(peer) if self._ranges is not None else (FULL_RANGE,)
            return await self.initiate(stream, peer=peer, ranges=ranges)

    # --- sessions ---------------------------------------------------------------------------

    async def initiate(
        self, stream: trio.abc.Stream, *, peer: P | None = None, ranges: Sequence[KeyRange] = (FULL_RANGE,)
    ) -> SessionStatistics | None:
        """Run one session as initiator over `stream`; None if it failed."""
        session = ReconcileSession(
            self._replica, initiator=True, rng=self._rng, ranges=ranges, config=self.config.reconcile
        )
        self._n["sessions_initiated"] += 1
        return await self._run_session(session, stream, peer, first=session.start())

    async def serve(self, stream: trio.abc.Stream, *, peer: P | None = None) -> SessionStatistics | None:
        """Answer one session initiated by the peer at the other end of `stream`."""
        session = ReconcileSession(self._replica, initiator=False, config=self.config.reconcile)
        self._n["sessions_served"] += 1
        return await self._run_session(session, stream, peer, first=None)

    async def _run_session(
        self, session: ReconcileSession, stream: trio.abc.Stream, peer: P | None, first: bytes | None
    ) -> SessionStatistics | None:
        self._current, self._current_peer = session, peer
        outcome = "failed"
        try:
            with trio.move_on_after(self.config.session_timeout_s) as scope:
                out = first
                while True:
                    if out is not None:
                        await self._send(stream, out)
                    if session.done:
                        break
                    out = session.receive(await self._receive(stream))
                    if out is None:
                        break
                outcome = "ok"
            if scope.cancelled_caught:
                self._n["sessions_timed_out"] += 1
        except (ReconcileError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer or the link failed; counted below, repairs so far are kept
        finally:
            stats = session.statistics()
            self._n["bytes_sent"] += stats.bytes_sent
            self._n["bytes_received"] += stats.bytes_received
            self._n["records_sent"] += stats.records_sent
            self._n["records_applied"] += stats.records_applied
            self._current, self._current_peer = None, None
        if outcome != "ok":
            self._n["sessions_failed"] += 1
            return None
        self._n["sessions_completed"] += 1
        if stats.verified is True:
            self._n["sessions_verified"] += 1
        elif stats.verified is False:
            self._n["sessions_unverified"] += 1
        return stats

    async def _send(self, stream: trio.abc.Stream, frame: bytes) -> None:
        data = len(frame).to_bytes(_LEN_BYTES, "big") + frame
        await self._bucket.spend(len(data))
        await stream.send_all(data)

    async def _receive(self, stream: trio.abc.Stream) -> bytes:
        head = await _receive_exactly(stream, _LEN_BYTES)
        size = int.from_bytes(head, "big")
        limit = self.config.reconcile.record_frame_bytes_max
        if size > limit:
            raise ReconcileError(f"peer announced a frame of {size} bytes (limit {limit})")
        return await _receive_exactly(stream, size)

    # --- introspection ------------------------------------------------------------------------

    def statistics(self) -> AntiEntropyStatistics:
        current = self._current
        return AntiEntropyStatistics(
            throttled_s=self._bucket.waited_s,
            current_peer=self._current_peer,
            current=None if current is None else current.statistics(),
            **self._n,
        )


async def _receive_exactly(stream: trio.abc.Stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(min(n - len(buf), 1 << 16))
        if not chunk:
            raise trio.BrokenResourceError(f"link closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)

