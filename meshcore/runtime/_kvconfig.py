"""The kv service's settings (`KvServiceConfig`), checked when built: a module of its own,
kept in plain Python (the service itself may be compiled, see `meshcore._native`), so
that a wrong type gets the same clear `LocalProtocolError` either way."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import LocalProtocolError
from ..kv import KvConfig
from ._storage import SYNC_MODES

__all__ = ["KvServiceConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KvServiceConfig:
    core: KvConfig = field(default_factory=KvConfig)
    connect_timeout_s: float = 5.0
    reconnect_backoff_s: float = 0.5
    outbox_messages_max: int = 10_000
    watchers_max: int = 256
    watch_buffer_max: int = 1024
    scan_records_max: int = 100_000
    hello_bytes_max: int = 64 * 1024
    #: Queued kv messages to one peer travel together up to about this size.
    batch_bytes_max: int = 1024 * 1024
    rpc_timeout_s: float = 10.0
    #: Anti-entropy: each namespace is reconciled with each co-replica (a node it shares
    #: keys with, `Ring.co_replicas`) about this often.
    ae_interval_s: float = 60.0
    ae_bytes_per_s: float = 1024 * 1024
    #: Sessions starting within this long of one read of a namespace's versions share it
    #: (a ring change always makes a fresh one); longer for a big namespace, so that
    #: reading and placing its keys takes at most ~5 % of the time (`snapshot_ttl_s`).
    ae_snapshot_s: float = 5.0
    #: Each node pulls the namespace definitions of a random peer about this often.
    namespace_pull_s: float = 5.0
    #: "full" survives power loss, "normal" only process crashes (see runtime._storage).
    synchronous: str = "full"
    #: The store's record cache (`Store.cached`), in MiB; 0: none.
    cache_mb: int = 32
    #: A timer may fire this much late, so that timers due close together (one request
    #: timeout per request) are handled in one wake-up of the timer task.
    timer_slack_s: float = 0.01
    #: Range hand-off (module docstring): wait after a ring change, retry interval while
    #: keys remain, hand-offs in flight at once, keys examined per read of the store.
    handoff_settle_s: float = 2.0
    handoff_interval_s: float = 30.0
    #: A member that left (or stays down) this long is taken off the ring for good.
    left_reclaim_s: float = 600.0
    down_reclaim_s: float = 24 * 3600.0
    handoff_concurrency: int = 16
    handoff_page: int = 1000

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "reconnect_backoff_s", "rpc_timeout_s", "ae_interval_s",
                     "ae_bytes_per_s", "ae_snapshot_s", "namespace_pull_s", "handoff_settle_s", "handoff_interval_s",
                     "left_reclaim_s", "down_reclaim_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise LocalProtocolError(f"{name} must be a number > 0, got {v!r:.40}")
        if type(self.cache_mb) is not int or self.cache_mb < 0:
            raise LocalProtocolError(f"cache_mb must be an int >= 0, got {self.cache_mb!r:.40}")
        for name in ("outbox_messages_max", "watchers_max", "watch_buffer_max", "scan_records_max",
                     "hello_bytes_max", "batch_bytes_max", "handoff_concurrency", "handoff_page"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise LocalProtocolError(f"{name} must be an int >= 1, got {v!r:.40}")
        if self.synchronous not in SYNC_MODES:
            raise LocalProtocolError("synchronous is 'full' or 'normal'")
        v = self.timer_slack_s
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            raise LocalProtocolError(f"timer_slack_s must be a number in [0, 1], got {v!r:.40}")
