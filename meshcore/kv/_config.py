"""Timing and limits of the replication core (`KvConfig`), and the consistency levels.

Consistency levels and what counts (the rule is also in `write_satisfied`):
- `one`: one durable copy anywhere: a home replica, or a stand-in holding a hint.
- `quorum` (floor(rf/2)+1 copies): by default a *sloppy* quorum like Dynamo's — acks of
  stand-ins holding hints count — but at least one ack must come from a home replica, so a
  quorum write always sits durably on a home replica, whatever happens to the hints
  (`sloppy_quorum=False` counts home replicas only).
- `all`: every home replica; hints never count, and a write for which a home replica is
  known to be down fails at once (nothing is sent).
Reads count home replicas only (hints are not readable). A get asks as many alive home
replicas as its level needs (this node first when it is one, then in ring order); the others
are asked too when one of those refuses, or when the get is still short of answers
`read_extra_after_s` later (a replica alive to SWIM can still be slow). `read_extra_after_s=0`
asks every alive home replica at once (Dynamo/Riak style: more read repair, ~1.5x the CPU of a
get at `one`).

Age bound: versions older than `hint_ttl_s` (by their stamp) are refused as direct writes and
hints older than that are dropped; a tombstone is purged only once every replica acked it AND
it is older than `hint_ttl_s + max_skew_s`. So no late hint or delayed write of an older
version can land after its tombstone was purged (a purge by acks alone cannot know about
messages still in flight or hints held by stand-ins it never heard of).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ConfigError
from ._hlc import Stamp, wall_us

__all__ = ["Consistency", "KvConfig", "acks_required"]


class Consistency(enum.Enum):
    ONE = "one"
    QUORUM = "quorum"
    ALL = "all"


def acks_required(level: Consistency, replicas: int) -> int:
    """Copies a request needs at `level` with replication factor `replicas`."""
    if level is Consistency.ONE:
        return 1
    if level is Consistency.QUORUM:
        return replicas // 2 + 1
    return replicas


@dataclass(frozen=True, slots=True, kw_only=True)
class KvConfig:
    request_timeout_s: float = 2.0
    max_skew_s: float = 0.5
    hint_ttl_s: float = 3 * 3600.0
    tick_s: float = 1.0
    hint_retry_s: float = 5.0
    hint_batch_max: int = 64
    tombstone_resend_s: float = 10.0
    tombstones_tracked_max: int = 100_000
    requests_max: int = 10_000
    pending_max: int = 10_000
    sloppy_quorum: bool = True
    read_extra_after_s: float = 0.1

    def __post_init__(self) -> None:
        for name in ("request_timeout_s", "max_skew_s", "hint_ttl_s", "tick_s", "hint_retry_s",
                     "tombstone_resend_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ConfigError(f"{name} must be a number of seconds > 0, got {v!r:.40}")
        for name in ("hint_batch_max", "tombstones_tracked_max", "requests_max", "pending_max"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r:.40}")
        v = self.read_extra_after_s
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < self.request_timeout_s:
            raise ConfigError(f"read_extra_after_s must be a number of seconds in [0, request_timeout_s), got {v!r:.40}")
        if self.hint_ttl_s <= self.request_timeout_s:
            raise ConfigError("hint_ttl_s must exceed request_timeout_s, or live writes are refused as stale")
        if type(self.sloppy_quorum) is not bool:
            raise ConfigError("sloppy_quorum must be a bool")

    def past_hint_ttl(self, now: float, stamp: Stamp) -> bool:
        """Whether a version written at `stamp` is older than `hint_ttl_s` at wall time
        `now`: too old for a hint, a direct write or a hand-off push (module docstring)."""
        return wall_us(now) - stamp.physical_us > self.hint_ttl_s * 1e6

    @property
    def purge_age_s(self) -> float:
        """A tombstone younger than this is never purged (see the module docstring)."""
        return self.hint_ttl_s + self.max_skew_s
