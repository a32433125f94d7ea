"""What the replication core asks its driver to do (the kv side of sans-I/O).

The core never touches a socket, a disk or a clock. Every call returns a list of these
values; the driver (the trio glue, or the simulator) performs them and reports back:

- `Send`: deliver `data` (an encoded kv message) to node `to` (what a node has to tell its
  own other half — a coordinator that is also a home replica — the core hands over
  directly, without a `Send`; a driver still delivers a `Send` addressed to this node);
- `SetTimer`: call `on_timer(now, timer)` once `now >= at` (stale timers are ignored);
- `Persist` / `PersistHint`: write durably, then call `on_persisted(now, token)` (or
  `on_persist_failed(now, token, reason)`); a replica acks only after that callback;
- `Load`: read a key, then call `on_loaded(now, token, record_or_None)`;
- `LoadHints`: read up to `limit` hints held for `target`, then `on_hints(now, target, hints)`;
- `DropHints`, `Purge`: fire-and-forget store maintenance;
- `Completed`: a client request (put/delete/get) finished, with a record or an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MeshError
from ._hlc import Stamp
from ._record import Record

__all__ = [
    "KvTimer", "Send", "SetTimer", "Persist", "PersistHint", "Load", "LoadHints", "HeldHint",
    "DropHints", "Purge", "Completed", "KvEffect",
]


@dataclass(frozen=True, slots=True)
class KvTimer:
    """`kind` is "request" (token = request id: its timeout), "read_extra" (token = request
    id: ask a get's other home replicas) or "tick" (the periodic housekeeping)."""

    kind: str
    token: int = 0


@dataclass(frozen=True, slots=True)
class Send:
    to: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class SetTimer:
    at: float
    timer: KvTimer


@dataclass(frozen=True, slots=True)
class Persist:
    """Store records under last-writer-wins (`Store.put_many`), then `on_persisted`."""

    token: int
    namespace: str
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class PersistHint:
    """Hold `record` for `target` (`Store.add_hints`), then `on_persisted`."""

    token: int
    target: bytes
    namespace: str
    record: Record


@dataclass(frozen=True, slots=True)
class Load:
    token: int
    namespace: str
    key: bytes


@dataclass(frozen=True, slots=True)
class LoadHints:
    target: bytes
    limit: int


@dataclass(frozen=True, slots=True)
class HeldHint:
    """A hint as the store returns it (the runtime's `Hint` has the same fields)."""

    id: int
    target: bytes
    namespace: str
    record: Record


@dataclass(frozen=True, slots=True)
class DropHints:
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Purge:
    """Delete exactly this tombstone (`Store.purge_tombstone`); a newer write is kept."""

    namespace: str
    key: bytes
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class Completed:
    """A put/delete/get finished. On success `error` is None; a put/delete carries the
    stamp it wrote in `stamp`, a get the newest record found (None: no such key; a
    tombstone record: deleted)."""

    request_id: int
    error: MeshError | None = None
    record: Record | None = None
    stamp: Stamp | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


KvEffect = Send | SetTimer | Persist | PersistHint | Load | LoadHints | DropHints | Purge | Completed
