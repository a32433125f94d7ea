"""`KvService`: the trio driver of the replication core (`meshcore.kv.KvCore`).

It performs the core's effects with real I/O, exactly as the simulator does with virtual
I/O: `Send` over one pooled outbound connection per peer, `SetTimer` on a timer heap
(fired up to `timer_slack_s` late, so that the one-timeout-per-request timers are handled
in batches), `Persist`/`Load`/hints/purges on the node's SQLite `Store`, `Completed` wakes
the awaiting client call. The `Persist`s of one scheduling round go to the store as one
write per namespace without a task waiting on them (`Store.put_many_nowait`); the core
hears `on_persisted` from the store's callback once the group commit is durable. `now` is
the wall clock (`clock()`, Unix seconds): stamps are wall time. A `Load` is answered from the
store's record cache (`Store.cached`) when the key is there, else by one read per round
in the reader's thread, whose results the cache keeps unless a write raced with them.

Links: the service listens on its own TCP port. Every connection is wrapped by the node's
stream wrapper (Noise with certificates on a secure node, plain framing on an insecure one)
and starts with a hello ``[1, kind, node_id, body]``; on a secure link the claimed node id
must be the certified one, else the link is dropped and counted. Kinds:
- ``kv``: a one-way stream of kv messages from that node (answers travel on our own
  outbound connection to it); each link message is a batch of ``[u32 length, message]``
  items (whatever was queued for that peer, up to `batch_bytes_max`). One task does the
  end of every scheduling round (`_round_loop`): it hands that round's `Persist`s to the
  store and writes each peer's batch itself when the peer's link is open and the socket
  takes the frame at once; connecting, and a frame the socket takes only part of, are
  left to that peer's own task (`_peer_task`). One wake-up per round instead of one per
  peer with messages and one for the store (quorum puts on 5 agents, interleaved with
  the code before: CPU per put x0.978 and x0.938, rate x1.016 and x1.056);
- ``ae``: one anti-entropy session for namespace `body` (we serve, they initiate);
- ``scan``: `[namespace, prefix, limit]` -> one reply listing the records we hold;
- ``ns``: one reply listing our namespace definitions (the pull a node does on join).

Membership: `member_up(node, addr, site, region)` / `member_down(node)` /
`member_left(node)` from the node's events (only members advertising the `kv` tag). A
member that is down keeps its place on the ring (stand-ins hold hints for it). One that
left and is not back within `left_reclaim_s` (a restart is a leave and a join: it must not
move data), or that stays down for `down_reclaim_s`, is taken off the ring; a new member
is put on it. Either way some keys change homes (a member that comes back is put back).
New home replicas get their copies by anti-entropy with the replicas they share keys with
(a session with every live co-replica right after a change). Range hand-off: a node that holds
keys it is no longer a home replica of copies each to all its home replicas through the
write path (`KvCore.hand_off`: original stamp, level `all`, durable acks) and only then
drops its copy, if unchanged meanwhile (`Store.drop_copy`). A version older than the hint
TTL is not pushed (replicas refuse those to any write, so that nothing brings back a
purged delete): a read at `all` must find a home replica holding it or a newer one before
the copy is dropped (normally anti-entropy among the home replicas has put it there);
until then it stays and is counted in `handoff_stuck`. A pass runs `handoff_settle_s` after
a ring change, and again while keys remain (a home replica down or refusing), every
`handoff_interval_s`, doubling up to an hour while nothing changes. Namespaces: `define` (persisted, then the
core learns it); definitions are pulled from each peer that comes alive and from a random
live peer every `namespace_pull_s` (gossip on creation is the fast path, not the only one). Watchers see each record this node durably applies (as a home replica),
in apply order (a version superseded within one group commit may be skipped); a slow watcher loses its oldest changes (counted).

Limits: `outbox_messages_max` queued messages per peer (beyond: dropped, counted, the
request times out), `scan_records_max` per scan, `watchers_max`, and `hello_bytes_max`.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
import trio

from ..antientropy import ReconcileConfig
from ..errors import (
    ConfigError,
    ConsistencyError,
    DecodeError,
    HandoffPending,
    LocalProtocolError,
    MeshError,
    NamespaceError,
    RecordError,
    RemoteProtocolError,
    StorageError,
)
from ..kv import (
    Completed,
    DropHints,
    HeldHint,
    KvCore,
    KvEffect,
    KvTimer,
    Load,
    LoadHints,
    Namespace,
    Persist,
    PersistHint,
    Purge,
    Record,
    RingMember,
    Send,
    SetTimer,
    Stamp,
    as_key,
    decode_namespace,
    encode_namespace,
    merge,
)
from ..kv._messages import Repair
from ..wire import loads_strict
from ._antientropy import AntiEntropyConfig, AntiEntropyDriver
from ._kvconfig import KvServiceConfig
from ._kvstore import KvReader, PeerReplica, VersionSnapshot
from ._storage import Store
from ._watch import Change, Watch

__all__ = ["KvServiceConfig", "KvService", "Change", "Watch", "UNSET_REGION"]

log = logging.getLogger("meshcore.kv")

#: Region of a node whose metadata names none: no namespace can list it (names start with
#: a letter or digit), so only unrestricted namespaces place data there.
UNSET_REGION = "_unset"
_HELLO_VERSION = 1
#: Records per `put_many` of the persist flusher, and keys per batched read.
PERSIST_BATCH_MAX = 2048
LOAD_BATCH_MAX = 2048
_KINDS = ("kv", "ae", "scan", "ns")
#: Timers fired in one round of the timer task before it lets the others run.
_TIMERS_PER_ROUND_MAX = 1024


def encode_hello(kind: str, node: bytes, body: Any = None) -> bytes:
    return cbor2.dumps([_HELLO_VERSION, kind, node, body])


def decode_hello(data: bytes, limit: int) -> tuple[str, bytes, Any]:
    v = loads_strict(data, bytes_max=limit, what="hello")
    if (not isinstance(v, list) or len(v) != 4 or v[0] != _HELLO_VERSION or v[1] not in _KINDS
            or type(v[2]) is not bytes or len(v[2]) != 16):
        raise DecodeError("malformed hello")
    return v[1], v[2], v[3]


class _Peer:
    """The outbound side of the kv link to one peer (`KvService._send`).

    Messages queue in `queue`. While `slow` is False the link is open and idle, and the
    service's round task (`_round_loop`) writes each round's batch itself, without
    waiting; otherwise the peer's own task (`_peer_task`) owns the link: it connects,
    sends what the kernel would not take at once, and hands the link back when done."""

    __slots__ = ("node", "addr", "capacity", "queue", "in_round", "link", "slow", "broken",
                 "task_running", "wakeup", "closed", "dropped")

    def __init__(self, node: bytes, addr: tuple[str, int], capacity: int) -> None:
        self.node = node
        self.addr = addr
        self.capacity = capacity
        self.queue: deque[bytes] = deque()
        self.in_round = False  # listed for this round's flush
        self.link: Any = None
        self.slow = True
        self.broken = False  # the round task found the link broken: the task reconnects
        self.task_running = False
        self.wakeup = trio.Event()
        self.closed = False
        self.dropped = 0

    def close(self) -> None:
        """Replaced or gone: the task closes the link and ends; queued messages are dropped."""
        self.closed = True
        self.queue.clear()
        self.wakeup.set()


@dataclass
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    result: Completed | None = None
    #: For a request started with `KvService.start`: called with the outcome instead.
    callback: Callable[[Completed], None] | None = None


StreamWrapperFn = Callable[..., Awaitable[Any]]


class KvService:
    """The kv layer of one node (see the module docstring). Build with `open` via the node."""

    def __init__(self, *, me: RingMember, store: Store, reader: KvReader, wrap: StreamWrapperFn,
                 secure: bool, config: KvServiceConfig | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.config = config or KvServiceConfig()
        self.me = me
        self._store = store
        self._reader = reader
        self._wrap = wrap
        self._secure = secure
        self._clock = clock
        self._rng = rng or random.Random()
        self.core: KvCore | None = None
        self._peers: dict[bytes, _Peer] = {}
        self._timers: list[tuple[float, int, KvTimer]] = []
        self._timer_seq = 0
        self._timer_wakeup = trio.Event()
        self._waiters: dict[int, _Waiter] = {}
        self._watchers: set[Watch] = set()
        self._persists: list[Persist] = []
        self._dirty: list[_Peer] = []  # peers with messages queued this round
        self._round_wakeup = trio.Event()
        self._crashed: BaseException | None = None
        self._running = False
        self._loads: list[Load] = []
        self._loading = False
        self._nursery: trio.Nursery | None = None
        self._ring_changed = trio.Event()
        # One hand-off pass at a time: a pass asked for (hand_off_all) while the loop's is
        # running would try the same copies, and count those the other dropped as left.
        self._handoff_lock = trio.Lock()
        # node -> trio time at which it leaves the ring unless it is back (member_left/down)
        self._reclaim: dict[bytes, float] = {}
        self._reclaim_wakeup = trio.Event()
        self.port = 0
        self.counters: dict[str, int] = dict.fromkeys(
            ("links_refused", "hello_bad", "outbox_dropped", "connect_failed", "storage_errors",
             "ae_sessions", "ae_failed", "ae_records_applied", "namespace_conflicts", "watch_dropped",
             "link_batches_sent", "link_messages_sent", "handoff_passes", "handoff_dropped",
             "handoff_deferred", "handoff_stuck", "ae_snapshots"), 0)
        # Anti-entropy: one snapshot of each namespace's versions, shared by the sessions
        # starting within ae_snapshot_s (_snapshot).
        self._snapshots: dict[str, VersionSnapshot] = {}
        self._snapshot_locks: dict[str, trio.Lock] = {}
        self.on_namespace: Callable[[Namespace], None] = lambda ns: None

    # --- lifecycle ------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> list[trio.SocketListener]:
        """Bind the kv port (before `run`, so a port in use is a plain `ConfigError`)."""
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise ConfigError(f"the kv service cannot listen on {host}:{port} ({exc.strerror or exc}); "
                              "choose another --kv-port (0: any free port)") from None
        self.port = listeners[0].socket.getsockname()[1]
        return listeners

    async def run(self, listeners: list[trio.SocketListener], *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore from the store, serve `listeners`, and drive the core until cancelled."""
        store = self._store
        now = self._clock()
        core = KvCore(me=self.me, namespaces=store.namespaces(), config=self.config.core,
                      rng=random.Random(self._rng.getrandbits(64)), last_stamp=await store.max_stamp())
        core.restore(now, tombstones=await self._reader.tombstones(),
                     hint_targets=await self._reader.hint_targets())
        self.core = core
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._running = True
                nursery.start_soon(self._round_loop)
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._ae_loop)
                nursery.start_soon(self._namespace_loop)
                nursery.start_soon(self._handoff_loop)
                nursery.start_soon(self._reclaim_loop)
                nursery.start_soon(trio.serve_listeners, self._serve_raw, listeners)
                self._perform(core.start(now))
                task_status.started(self.port)
        finally:
            self._running = False

    def _now(self) -> float:
        return self._clock()

    # --- membership and namespaces ----------------------------------------------------------

    def member_up(self, node: bytes, addr: tuple[str, int], site: str, region: str) -> None:
        core = self.core
        if core is None or node == self.me.node:
            return
        peer = self._peers.get(node)
        if peer is None or peer.addr != addr:
            if peer is not None:
                peer.close()
            self._peers[node] = _Peer(node, addr, self.config.outbox_messages_max)
        member = RingMember(node, site, region)
        known = next((m for m in core.view.ring.members() if m.node == node), None)
        if known != member:
            if known is not None:
                core.view.remove(node)
            core.add_member(member)
            self._ring_changed.set()
        was_alive = core.view.is_alive(node)
        self._reclaim.pop(node, None)
        self._perform(core.member_alive(self._now(), node))
        if not was_alive and self._nursery is not None:
            self._nursery.start_soon(self._pull_namespaces, node)
            self._nursery.start_soon(self._reconcile_peer, node)

    def member_down(self, node: bytes) -> None:
        if self.core is not None and node != self.me.node:
            self._perform(self.core.member_down(self._now(), node))
            self._reclaim_after(node, self.config.down_reclaim_s)

    def member_left(self, node: bytes) -> None:
        """`node` left: down now, off the ring unless back within `left_reclaim_s`."""
        if self.core is not None and node != self.me.node:
            self._perform(self.core.member_down(self._now(), node))
            self._reclaim_after(node, self.config.left_reclaim_s)

    def _reclaim_after(self, node: bytes, delay_s: float) -> None:
        if self.core is None or node not in self.core.view.ring:
            return
        at = trio.current_time() + delay_s
        if at < self._reclaim.get(node, math.inf):
            self._reclaim[node] = at
            self._reclaim_wakeup.set()

    async def _reclaim_loop(self) -> None:
        while True:
            now = trio.current_time()
            for node in [n for n, at in self._reclaim.items() if at <= now]:
                del self._reclaim[node]
                self._remove_member(node)
            with trio.move_on_at(min(self._reclaim.values(), default=math.inf)):
                await self._reclaim_wakeup.wait()
            self._reclaim_wakeup = trio.Event()

    def _remove_member(self, node: bytes) -> None:
        """`node` is gone for good: off the ring, and a session with every live co-replica so
        that the new home replicas get their copies (module docstring)."""
        core = self._require()
        if node not in core.view.ring or core.view.is_alive(node):
            return
        core.remove_member(node)
        log.info("kv: %s is gone for good; its ranges move to new home replicas", node.hex()[:8])
        self._ring_changed.set()
        if self._nursery is not None:
            for peer in [n for n in self._peers if core.view.is_alive(n)]:
                self._nursery.start_soon(self._reconcile_peer, peer)

    def namespaces(self) -> list[Namespace]:
        return self._store.namespaces()

    async def define(self, ns: Namespace, *, local: bool = True) -> bool:
        """Persist and apply a namespace definition; True if it is new here. A definition
        that differs from the one held raises (`local`) or is counted and ignored (gossip)."""
        core = self._require()
        held = core.view.known_namespace(ns.name)
        if held == ns:
            return False
        if held is not None:
            if not local:
                self.counters["namespace_conflicts"] += 1
                return False
            raise NamespaceError(
                f"namespace {ns.name!r} already exists with replicas={held.replicas} regions="
                f"{held.territory()}; changing a namespace is not supported: create another name")
        await self._store.put_namespace(ns)
        core.define(ns)
        if local:
            self.on_namespace(ns)  # gossip carries learned definitions on by itself
        return True

    def check_regions(self, ns: Namespace) -> None:
        """Raise unless every region of `ns` has a kv member, and enough sites exist."""
        core = self._require()
        members = core.view.ring.members()
        have = {m.region for m in members}
        missing = [r for r in ns.regions if r not in have]
        if missing:
            known = ", ".join(sorted(r for r in have if r != UNSET_REGION)) or "none"
            raise NamespaceError(f"no storage node is in region(s) {', '.join(missing)} (regions with nodes: "
                                 f"{known}); start nodes there first or fix the region names")
        sites = {m.site for m in members if ns.allows(m.region)}
        if len(sites) < ns.replicas:
            raise NamespaceError(f"namespace {ns.name!r} needs {ns.replicas} sites in {ns.territory()}, "
                                 f"only {len(sites)} are known; lower --replicas or add sites")

    # --- client API -----------------------------------------------------------------------------

    def _require(self) -> KvCore:
        if self.core is None:
            raise LocalProtocolError("the kv service is not running")
        return self.core

    async def _call(self, rid: int, effects: list[KvEffect]) -> Completed:
        waiter = self._waiters[rid] = _Waiter()
        try:
            self._perform(effects)
            await waiter.event.wait()
        finally:
            self._waiters.pop(rid, None)
        assert waiter.result is not None
        if waiter.result.error is not None:
            raise waiter.result.error
        return waiter.result

    def start(self, op: object, namespace: object, key: object, value: object = None, *,
              consistency: object = "quorum", done: Callable[[Completed], None]) -> None:
        """Start a put, delete or get (`op`) without a task waiting for it: `done(completed)`
        runs on the trio thread when it finishes (its `error` set if it failed) and must
        not raise. Misuse raises here, as the awaitable calls do. (The control socket's
        path: its connection task goes back to reading instead of waking for the answer.)"""
        core = self._require()
        now = self._now()
        if op == "put":
            rid, effects = core.put(now, namespace, key, value, consistency)
        elif op == "delete":
            rid, effects = core.delete(now, namespace, key, consistency)
        elif op == "get":
            rid, effects = core.get(now, namespace, key, consistency)
        else:
            raise LocalProtocolError(f"start() runs put, delete or get, not {op!r:.40}")
        self._waiters[rid] = _Waiter(callback=done)
        try:
            self._perform(effects)
        except BaseException:
            self._waiters.pop(rid, None)  # as `_call` does: no callback left behind
            raise

    async def put(self, namespace: object, key: object, value: object, consistency: object = "quorum") -> Stamp:
        core = self._require()
        rid, effects = core.put(self._now(), namespace, key, value, consistency)
        done = await self._call(rid, effects)
        assert done.stamp is not None
        return done.stamp

    async def delete(self, namespace: object, key: object, consistency: object = "quorum") -> Stamp:
        core = self._require()
        rid, effects = core.delete(self._now(), namespace, key, consistency)
        done = await self._call(rid, effects)
        assert done.stamp is not None
        return done.stamp

    async def get_record(self, namespace: object, key: object, consistency: object = "quorum") -> Record | None:
        core = self._require()
        rid, effects = core.get(self._now(), namespace, key, consistency)
        return (await self._call(rid, effects)).record

    async def scan(self, namespace_name: object, prefix: bytes, limit: int) -> list[Record]:
        """Newest visible record of every key with `prefix`, merged from every live replica
        holder (this node and each live kv peer), in key order, at most `limit` keys."""
        core = self._require()
        ns = core.view.namespace(namespace_name)
        namespace = ns.name
        best: dict[bytes, Record] = {}

        def fold(records: list[Record]) -> None:
            for r in records:
                cur = best.get(r.key)
                best[r.key] = r if cur is None else merge(cur, r)

        if ns.allows(self.me.region):
            fold(await self._reader.scan(namespace, prefix, limit))
        peers = [n for n in self._peers if core.view.is_alive(n)]
        failed: list[str] = []

        async def ask(node: bytes) -> None:
            try:
                fold(await self._scan_peer(node, namespace, prefix, limit))
            except (OSError, trio.BrokenResourceError, trio.EndOfChannel, trio.TooSlowError, MeshError):
                failed.append(node.hex()[:8])

        async with trio.open_nursery() as nursery:
            for n in peers:
                nursery.start_soon(ask, n)
        if failed and len(failed) == len(peers) and peers:
            raise ConsistencyError(f"scan: no peer answered ({', '.join(failed)})")
        out = [best[k] for k in sorted(best) if not best[k].is_tombstone]
        return out[:limit]

    def watch(self, namespace: object, prefix: bytes) -> Watch:
        ns = self._require().view.namespace(namespace)
        if len(self._watchers) >= self.config.watchers_max:
            raise LocalProtocolError(f"at most {self.config.watchers_max} watchers; close one first")
        w = Watch(self._watchers, ns.name, prefix, self.config.watch_buffer_max)
        self._watchers.add(w)
        return w

    def statistics(self) -> dict[str, Any]:
        core = self._require()
        s = core.statistics()
        out: dict[str, Any] = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
        out.update(self.counters)
        out["watch_dropped"] = self.counters["watch_dropped"] + sum(w.dropped for w in self._watchers)
        out["peers"] = len(self._peers)
        out["store"] = dataclasses.asdict(self._store.statistics())
        return out

    # --- effects ----------------------------------------------------------------------------------

    def _perform(self, effects: list[KvEffect]) -> None:
        core = self.core
        assert core is not None
        nursery = self._nursery
        for e in effects:
            t = type(e)
            if t is Send:
                self._send(e.to, e.data)  # type: ignore[union-attr]
            elif t is SetTimer:
                self._timer_seq += 1
                entry = (e.at, self._timer_seq, e.timer)  # type: ignore[union-attr]
                heapq.heappush(self._timers, entry)
                if self._timers[0] is entry:
                    self._timer_wakeup.set()  # only an earlier deadline needs the loop to wake
            elif t is Completed:
                waiter = self._waiters.get(e.request_id)  # type: ignore[union-attr]
                if waiter is None:
                    continue
                if waiter.callback is not None:
                    del self._waiters[e.request_id]  # type: ignore[union-attr]
                    waiter.callback(e)  # type: ignore[arg-type]
                else:
                    waiter.result = e  # type: ignore[assignment]
                    waiter.event.set()
            elif t is Persist:
                self._persists.append(e)  # type: ignore[arg-type]
                if len(self._persists) == 1:
                    self._round_wakeup.set()
            elif t is Load:
                # Answered from the store's record cache when it can (no trip to the
                # reader thread); the core may already be answering on our stack, which
                # is at most a reply deep (on_loaded -> Send or Completed).
                held = self._store.cached(e.namespace, e.key)  # type: ignore[union-attr]
                if held is not None:
                    self._perform(core.on_loaded(self._now(), e.token, held))  # type: ignore[union-attr]
                    continue
                self._loads.append(e)  # type: ignore[arg-type]
                if not self._loading and nursery is not None:
                    self._loading = True
                    nursery.start_soon(self._flush_loads)
            elif nursery is not None:
                nursery.start_soon(self._storage_effect, e)

    async def _round_loop(self) -> None:
        """What the other tasks of a scheduling round queued, done once at its end: one
        wake-up of this task per round, however many writes and messages.
        - The `Persist`s go to the store, one write per namespace (`put_many_nowait`: no
          task waits on it). The store's writer commits whatever is queued while a commit
          runs (group commit); each write's outcome comes back in `_persisted`.
        - Each peer's queued messages go out as one link batch, written here when its link
          is open and idle (`_flush_peers`)."""
        while True:
            await self._round_wakeup.wait()
            self._round_wakeup = trio.Event()
            if self._crashed is not None:
                raise self._crashed
            if self._persists:
                self._flush_persists()
            if self._dirty:
                self._flush_peers()

    def _flush_persists(self) -> None:
        batch, self._persists = self._persists, []
        by_ns: dict[str, list[Persist]] = {}
        for e in batch:
            by_ns.setdefault(e.namespace, []).append(e)
        for namespace, effects in by_ns.items():
            chunk: list[Persist] = []
            size = 0
            for e in effects:
                if chunk and size + len(e.records) > PERSIST_BATCH_MAX:
                    self._submit_persists(namespace, chunk)
                    chunk, size = [], 0
                chunk.append(e)
                size += len(e.records)
            if chunk:
                self._submit_persists(namespace, chunk)

    def _submit_persists(self, namespace: str, effects: list[Persist]) -> None:
        records = [r for e in effects for r in e.records]
        try:
            self._store.put_many_nowait(namespace, records, functools.partial(self._persisted, namespace, effects))
        except (StorageError, NamespaceError, RecordError):
            self._persist_each(effects)

    def _persist_each(self, effects: list[Persist]) -> None:
        """Find the bad write of a failed batch: each on its own (see `_storage_effect`)."""
        if self._running and self._nursery is not None:
            for e in effects:
                self._nursery.start_soon(self._storage_effect, e)

    def _persisted(self, namespace: str, effects: list[Persist], won: list[bool] | None,
                   error: BaseException | None) -> None:
        """A group commit holding `effects` is durable (or failed). Runs as a trio
        `run_sync_soon` callback: it must not raise, so a bug is handed to the pump task,
        which re-raises it inside the service."""
        if not self._running:
            return  # the service stopped; the store finishes its queue on close
        try:
            if error is not None or won is None:
                self._persist_each(effects)
                return
            core = self.core
            assert core is not None
            i = 0
            for e in effects:
                for rec in e.records:
                    if won[i]:
                        self._notify(namespace, rec)
                    i += 1
                self._perform(core.on_persisted(self._now(), e.token))
        except BaseException as exc:  # noqa: BLE001 - handed over, re-raised by the round task
            self._crashed = exc
            self._round_wakeup.set()

    async def _flush_loads(self) -> None:
        """Answer every queued `Load` with one read in the reader's thread."""
        core = self.core
        assert core is not None
        try:
            while self._loads:
                batch, self._loads = self._loads[:LOAD_BATCH_MAX], self._loads[LOAD_BATCH_MAX:]
                token = self._store.read_begins()
                found: list[Record | None] = []
                try:
                    found = await self._reader.get_many([(e.namespace, e.key) for e in batch])
                except StorageError:
                    self.counters["storage_errors"] += 1
                    found = [None] * len(batch)
                finally:  # what was found goes to the record cache (it keeps what it may)
                    self._store.read_ends(token, [(e.namespace, r) for e, r in zip(batch, found, strict=False)])
                for e, rec in zip(batch, found, strict=True):
                    self._perform(core.on_loaded(self._now(), e.token, rec))
        finally:
            self._loading = False

    async def _storage_effect(self, e: KvEffect) -> None:
        core = self.core
        assert core is not None
        store = self._store
        try:
            if type(e) is Persist:
                try:
                    won = await store.put_many(e.namespace, e.records)
                except (StorageError, NamespaceError) as exc:
                    self.counters["storage_errors"] += 1
                    self._perform(core.on_persist_failed(self._now(), e.token, str(exc)))
                    return
                for rec, w in zip(e.records, won, strict=True):
                    if w:
                        self._notify(e.namespace, rec)
                self._perform(core.on_persisted(self._now(), e.token))
            elif type(e) is PersistHint:
                try:
                    await store.add_hints(e.target, e.namespace, [e.record])
                except (StorageError, NamespaceError) as exc:
                    self.counters["storage_errors"] += 1
                    self._perform(core.on_persist_failed(self._now(), e.token, str(exc)))
                    return
                self._perform(core.on_persisted(self._now(), e.token))
            elif type(e) is LoadHints:
                hints = await store.hints(e.target, limit=e.limit)
                held = [HeldHint(h.id, h.target, h.namespace, h.record) for h in hints]
                self._perform(core.on_hints(self._now(), e.target, held))
            elif type(e) is DropHints:
                await store.delete_hints(e.ids)
            elif type(e) is Purge:
                await store.purge_tombstone(e.namespace, e.key, e.stamp)
        except (StorageError, NamespaceError) as exc:
            self.counters["storage_errors"] += 1
            log.warning("kv storage effect %s failed: %s", type(e).__name__, exc)

    def _notify(self, namespace: str, rec: Record) -> None:
        if not self._watchers:
            return
        change = Change(namespace, rec.key, rec.value, rec.stamp)
        for w in list(self._watchers):
            if w.namespace == namespace and rec.key.startswith(w.prefix):
                w._offer(change)

    async def _timer_loop(self) -> None:
        """Fire due timers. It sleeps until the earliest deadline plus `timer_slack_s`,
        then fires every timer due by then (at most `_TIMERS_PER_ROUND_MAX` per round)."""
        slack = self.config.timer_slack_s
        timers = self._timers
        while True:
            self._timer_wakeup = trio.Event()
            if not timers:
                await self._timer_wakeup.wait()
                continue
            at = timers[0][0]
            delay = at - self._clock()
            if delay > 0:
                with trio.move_on_after(delay + slack):
                    await self._timer_wakeup.wait()
                continue
            core = self.core
            assert core is not None
            now = self._now()
            fired = 0
            while timers and timers[0][0] <= now and fired < _TIMERS_PER_ROUND_MAX:
                _, _, timer = heapq.heappop(timers)
                self._perform(core.on_timer(now, timer))
                fired += 1
            await trio.lowlevel.checkpoint()

    # --- links ------------------------------------------------------------------------------------

    def _send(self, to: bytes, data: bytes) -> None:
        core = self.core
        assert core is not None
        if to == self.me.node:
            # Deliver to ourselves at once: the core finished the call that produced this
            # effect, and what a message to ourselves starts is storage I/O (a task), so
            # this recursion is at most two calls deep.
            self._perform(core.on_message(self._now(), self.me.node, data))
            return
        peer = self._peers.get(to)
        if peer is None or peer.closed or len(peer.queue) >= peer.capacity:
            if peer is not None:
                peer.dropped += 1
            self.counters["outbox_dropped"] += 1
            return
        peer.queue.append(data)
        if not peer.in_round:
            peer.in_round = True
            self._dirty.append(peer)
            if len(self._dirty) == 1:
                self._round_wakeup.set()

    def _flush_peers(self) -> None:
        """Round task: send each listed peer's queue. An open, idle link is written here
        without waiting (`send_message_nowait`); a peer with no link yet, a busy one, or a
        write the kernel takes only part of goes to the peer's own task (`_peer_task`)."""
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            peer.in_round = False
            if peer.closed or not peer.queue:
                continue
            link = peer.link
            nowait = getattr(link, "send_message_nowait", None)
            if peer.slow or nowait is None:
                self._wake_peer_task(peer)
                continue
            try:
                while peer.queue:
                    if not nowait(self._batch(peer, peer.queue.popleft())):
                        self._wake_peer_task(peer)  # the link holds the rest of that frame
                        break
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, MeshError):
                peer.broken = True
                self._wake_peer_task(peer)

    def _wake_peer_task(self, peer: _Peer) -> None:
        """Hand sending to the peer's own task (start it if needed)."""
        peer.slow = True
        if peer.task_running:
            peer.wakeup.set()
        elif self._nursery is not None:
            peer.task_running = True
            self._nursery.start_soon(self._peer_task, peer)

    async def _open(self, addr: tuple[str, int], kind: str, body: Any = None) -> Any:
        with trio.fail_after(self.config.connect_timeout_s):
            raw = await trio.open_tcp_stream(*addr)
            try:
                link = await self._wrap(raw, initiator=True, peer=addr)
                await link.send_message(encode_hello(kind, self.me.node, body))
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(raw)
                raise
        return link

    async def _peer_task(self, peer: _Peer) -> None:
        """The slow path of one peer's link: connect (dropping what is queued while it
        cannot: requests time out and hints take over), send what the round task could not
        write at once, then hand the idle link back (`slow` False) and sleep until needed."""
        try:
            while not peer.closed:
                if peer.link is None:
                    try:
                        peer.link = await self._open(peer.addr, "kv")
                    except (OSError, trio.TooSlowError, trio.BrokenResourceError, MeshError):
                        self.counters["connect_failed"] += 1
                        peer.dropped += len(peer.queue)
                        peer.queue.clear()
                        await trio.sleep(self.config.reconnect_backoff_s)
                        continue
                link = peer.link
                try:
                    if peer.broken:
                        raise trio.BrokenResourceError("a write of the round task failed")
                    flush = getattr(link, "flush", None)
                    if flush is not None:
                        await flush()
                    while peer.queue and not peer.closed:
                        await link.send_message(self._batch(peer, peer.queue.popleft()))
                    if peer.closed:
                        break
                    peer.slow = False  # idle: the round task writes the next batches
                    peer.wakeup = trio.Event()
                    await peer.wakeup.wait()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, MeshError):
                    peer.link, peer.broken, peer.slow = None, False, True
                    await _close_quietly(link)
        finally:
            peer.task_running, peer.slow = False, True
            if peer.link is not None:
                link, peer.link = peer.link, None
                await _close_quietly(link)

    def _batch(self, peer: _Peer, first: bytes) -> bytes:
        """`first` plus whatever else is queued for `peer`, as one link message: one
        encryption and one send for many kv messages when the link is busy."""
        parts = [len(first).to_bytes(4, "big"), first]
        size = len(first)
        queue = peer.queue
        limit = self.config.batch_bytes_max
        while queue and size < limit:
            data = queue.popleft()
            parts += (len(data).to_bytes(4, "big"), data)
            size += len(data) + 4
        self.counters["link_batches_sent"] += 1
        self.counters["link_messages_sent"] += len(parts) // 2
        return b"".join(parts)

    async def _serve_raw(self, stream: trio.SocketStream) -> None:
        try:
            sockname = stream.socket.getpeername()
            addr = (str(sockname[0]), int(sockname[1]))
            link = await self._wrap(stream, initiator=False, peer=addr)
        except (MeshError, OSError, trio.BrokenResourceError, trio.TooSlowError):
            self.counters["links_refused"] += 1
            return
        try:
            first: bytes | None = None
            with trio.move_on_after(self.config.connect_timeout_s):
                first = await link.receive_message()
            try:
                if first is None:
                    raise DecodeError("no hello in time")
                kind, node, body = decode_hello(first, self.config.hello_bytes_max)
            except DecodeError:
                self.counters["hello_bad"] += 1
                return
            certified = getattr(link, "peer_node", None)
            if self._secure and certified != node:
                self.counters["hello_bad"] += 1  # a peer speaking for another node
                return
            if kind == "kv":
                await self._serve_kv(link, node)
            elif kind == "ae":
                await self._serve_ae(link, node, body)
            elif kind == "scan":
                await self._serve_scan(link, body)
            elif kind == "ns":
                await link.send_message(cbor2.dumps([encode_namespace(ns) for ns in self._store.namespaces()]))
        except (MeshError, trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel, OSError,
                trio.TooSlowError) as exc:
            # A peer's link failing (or its request hitting a local storage error) ends that
            # link only; it is logged at debug level, never fatal to the service.
            log.debug("kv link from %s closed: %r", addr, exc)
        finally:
            await _close_quietly(link)

    async def _serve_kv(self, link: Any, node: bytes) -> None:
        core = self.core
        assert core is not None
        while True:
            batch = await link.receive_message()
            pos, end = 0, len(batch)
            while pos < end:
                size = int.from_bytes(batch[pos:pos + 4], "big")
                if pos + 4 + size > end:
                    raise RemoteProtocolError("truncated kv batch")  # remote garbage: drop the link
                data = batch[pos + 4:pos + 4 + size]
                pos += 4 + size
                self._perform(core.on_message(self._now(), node, data))

    # --- small RPCs: scan and namespace pull ------------------------------------------------------

    async def _rpc(self, node: bytes, kind: str, body: Any) -> Any:
        peer = self._peers.get(node)
        if peer is None:
            raise LocalProtocolError("unknown peer")
        with trio.fail_after(self.config.rpc_timeout_s):
            link = await self._open(peer.addr, kind, body)
            try:
                reply = await link.receive_message()
            finally:
                await _close_quietly(link)
        try:
            return loads_strict(reply, bytes_max=len(reply), what="rpc reply")
        except DecodeError as exc:
            raise DecodeError(f"bad rpc reply: {exc}") from None

    async def _scan_peer(self, node: bytes, namespace: str, prefix: bytes, limit: int) -> list[Record]:
        rows = await self._rpc(node, "scan", [namespace, prefix, limit])
        out: list[Record] = []
        if not isinstance(rows, list):
            raise DecodeError("bad scan reply")
        for row in rows[:limit]:
            try:
                k, s, v = row
                out.append(Record(k, v, Stamp.from_bytes(s)))
            except (ValueError, TypeError, DecodeError):
                self.counters["hello_bad"] += 1
        return out

    async def _serve_scan(self, link: Any, body: Any) -> None:
        try:
            namespace, prefix, limit = body
            prefix = as_key(prefix) if prefix else b""
            limit = min(int(limit), self.config.scan_records_max)
            self._store.namespace(namespace)
        except (ValueError, TypeError, MeshError):
            await link.send_message(cbor2.dumps([]))
            return
        records = await self._reader.scan(namespace, prefix, max(1, limit))
        await link.send_message(cbor2.dumps([[r.key, r.stamp.to_bytes(), r.value] for r in records]))

    async def _pull_namespaces(self, node: bytes) -> None:
        try:
            specs = await self._rpc(node, "ns", None)
        except (OSError, trio.BrokenResourceError, trio.EndOfChannel, trio.TooSlowError, MeshError):
            return
        if not isinstance(specs, list):
            return
        for blob in specs[:1000]:
            await self.learn_namespace(blob)

    # --- range hand-off -------------------------------------------------------------------

    async def _handoff_loop(self) -> None:
        cfg = self.config
        left, retry_s = 0, cfg.handoff_interval_s
        while True:
            with trio.move_on_after(retry_s if left else math.inf) as waited:
                await self._ring_changed.wait()
            # Retries of keys that could not move back off; a ring change starts afresh.
            retry_s = min(3600.0, retry_s * 2) if waited.cancelled_caught else cfg.handoff_interval_s
            await trio.sleep(cfg.handoff_settle_s)  # joins and leaves often come in bursts
            self._ring_changed = trio.Event()
            try:
                left = await self.hand_off_all()
            except StorageError as exc:  # a failing disk must not take the node down
                self.counters["storage_errors"] += 1
                log.warning("kv: hand-off pass stopped: %s; retrying later", exc)
                left = 1

    async def hand_off_all(self) -> int:
        """One hand-off pass (module docstring) over every namespace; returns how many keys
        held here that this node is no longer a home replica of are still here."""
        async with self._handoff_lock:
            return await self._hand_off_pass()

    async def _hand_off_pass(self) -> int:
        core = self._require()
        self.counters["handoff_passes"] += 1
        cfg = self.config
        left = 0
        for ns in self._store.namespaces():
            if core.view.known_namespace(ns.name) is None:
                continue
            after: bytes | None = None
            while True:
                page = await self._store.versions(ns.name, after=after, limit=cfg.handoff_page)
                foreign = [k for k, _ in page if not self._is_home(ns.name, k)]
                if foreign:
                    found = await self._reader.get_many([(ns.name, k) for k in foreign])
                    left += await self._hand_off_many(ns.name, [r for r in found if r is not None])
                if len(page) < cfg.handoff_page:
                    break
                after = page[-1][0]
                await trio.sleep(0)  # a long namespace must not hold up the node's other tasks
        return left

    def _is_home(self, namespace: str, key: bytes) -> bool:
        try:
            return self._require().is_home(namespace, key)
        except MeshError:
            return True  # not placeable now (too few eligible sites): keep the copy

    async def _hand_off_many(self, namespace: str, records: list[Record]) -> int:
        """Hand off `records`, at most `handoff_concurrency` at a time; returns how many
        are still here afterwards."""
        core = self._require()
        limit = trio.Semaphore(self.config.handoff_concurrency)
        left = 0

        async def one(rec: Record) -> None:
            nonlocal left
            try:
                try:
                    await self._call(*core.move_off(self._now(), namespace, rec))
                except MeshError as exc:  # the copy stays: kept, deferred, or home again
                    if isinstance(exc, LocalProtocolError) and self._is_home(namespace, rec.key):
                        return  # a home replica again: the ring changed back
                    # HandoffPending: too old to push and held nowhere else; otherwise a
                    # home replica down or refusing, or back-pressure: the next pass.
                    self.counters["handoff_stuck" if isinstance(exc, HandoffPending) else "handoff_deferred"] += 1
                    left += 1
                    return
            finally:
                limit.release()
            if self._is_home(namespace, rec.key):
                return  # the ring changed back meanwhile: this copy is a home copy again
            try:
                dropped = await self._store.drop_copy(namespace, rec.key, rec.stamp)
            except (StorageError, NamespaceError):
                self.counters["storage_errors"] += 1
                left += 1
                return
            if dropped:
                core.forget(namespace, rec.key)
                self.counters["handoff_dropped"] += 1
            else:
                left += 1  # it changed meanwhile: the next pass hands the new version off

        async with trio.open_nursery() as nursery:
            for rec in records:
                await limit.acquire()
                nursery.start_soon(one, rec)
        return left

    async def _namespace_loop(self) -> None:
        """Pull the definitions of one random live peer now and then, so a namespace whose
        gossip was lost still reaches everyone (and a restarted node catches up)."""
        while True:
            await trio.sleep(self.config.namespace_pull_s * (0.5 + self._rng.random()))
            core = self.core
            live = [n for n in self._peers if core is not None and core.view.is_alive(n)]
            if live:
                await self._pull_namespaces(live[self._rng.randrange(len(live))])

    async def learn_namespace(self, blob: object) -> None:
        """A namespace definition from a peer (gossip or pull): remote input."""
        if type(blob) is not bytes:
            return
        try:
            ns = decode_namespace(blob)
        except DecodeError:
            self.counters["hello_bad"] += 1
            return
        try:
            await self.define(ns, local=False)
        except (StorageError, NamespaceError) as exc:
            log.warning("cannot store namespace %r from a peer: %s", ns.name, exc)

    # --- anti-entropy -------------------------------------------------------------------------

    def _replica_peers(self, ns: Namespace) -> list[bytes]:
        """The alive members this node shares keys of `ns` with (by the ring): its
        anti-entropy peers. In a big ring a small part of the members (at 400 nodes with 64
        points each: ~110 of 399 for 2 replicas), not every member of the territory."""
        core = self.core
        assert core is not None
        if not ns.allows(self.me.region):
            return []
        return sorted(n for n in core.view.ring.co_replicas(ns, self.me.node) if core.view.is_alive(n))

    async def _session_replica(self, ns: Namespace, peer: bytes) -> PeerReplica:
        """The replica of one session with `peer`: the keys both are home replicas of, from
        a snapshot of the namespace at most `snapshot_ttl_s` old (under the current ring)."""
        snapshot = await self._snapshot(ns)
        return await PeerReplica.build(self._reader, ns.name, snapshot.shared(self.me.node, peer),
                                       self._apply_repair)

    async def _snapshot(self, ns: Namespace) -> VersionSnapshot:
        core = self._require()
        ring = core.view.ring
        async with self._snapshot_locks.setdefault(ns.name, trio.Lock()):
            snap = self._snapshots.get(ns.name)
            if (snap is not None and snap.generation == ring.generation
                    and trio.current_time() - snap.built_at <= snapshot_ttl_s(self.config, snap.build_s)):
                return snap

            def placement(key: bytes) -> tuple[bytes, ...] | None:
                try:
                    return tuple(core.view.replicas(ns, key))
                except MeshError:
                    return None

            for attempt in range(3):
                fresh = await VersionSnapshot.build(self._reader, ns.name, placement, generation=ring.generation)
                if ring.generation == fresh.generation or attempt == 2:
                    break  # else the ring changed while keys were being placed: again
            self.counters["ae_snapshots"] += 1
            self._snapshots[ns.name] = fresh
            if self._nursery is not None:
                self._nursery.start_soon(self._forget_snapshot, ns.name, fresh)
            return fresh

    async def _forget_snapshot(self, name: str, snapshot: VersionSnapshot) -> None:
        """A snapshot holds every version of its namespace: keep it no longer than it may
        serve (sessions under way keep only their own rows)."""
        await trio.sleep(snapshot_ttl_s(self.config, snapshot.build_s))
        if self._snapshots.get(name) is snapshot:
            del self._snapshots[name]

    def _apply_repair(self, namespace: str, rec: Record) -> None:
        core = self.core
        assert core is not None
        self.counters["ae_records_applied"] += 1
        msg = Repair(sender=self.me.node, namespace=namespace, key=rec.key, stamp=rec.stamp, value=rec.value)
        self._perform(core.replica.on_repair(self._now(), msg))

    def _ae_driver(self, replica: PeerReplica) -> AntiEntropyDriver[bytes]:
        limits = ReconcileConfig()
        burst = max(128 * 1024, limits.message_bytes_max + 4)
        cfg = AntiEntropyConfig(bytes_per_s=self.config.ae_bytes_per_s, burst_bytes=burst,
                                session_timeout_s=max(30.0, self.config.ae_interval_s))
        return AntiEntropyDriver(replica, peers=lambda: [], connect=_no_connect, rng=self._rng, config=cfg)

    async def _reconcile_peer(self, node: bytes) -> None:
        core = self.core
        assert core is not None
        for ns in self._store.namespaces():
            if node in self._replica_peers(ns):
                await self._reconcile(ns, node)

    async def _reconcile(self, ns: Namespace, node: bytes) -> bool:
        peer = self._peers.get(node)
        if peer is None:
            return False
        try:
            replica = await self._session_replica(ns, node)
            link = await self._open(peer.addr, "ae", ns.name)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, MeshError):
            self.counters["ae_failed"] += 1
            return False
        try:
            stats = await self._ae_driver(replica).initiate(_MessageByteStream(link), peer=node)
        except (MeshError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            stats = None
        finally:
            await _close_quietly(link)
        self.counters["ae_sessions" if stats is not None else "ae_failed"] += 1
        return stats is not None

    async def _serve_ae(self, link: Any, node: bytes, body: Any) -> None:
        core = self.core
        assert core is not None
        ns = core.view.known_namespace(body) if type(body) is str else None
        if ns is None or node not in self._replica_peers(ns):
            return
        try:
            replica = await self._session_replica(ns, node)
        except StorageError:
            self.counters["ae_failed"] += 1
            return
        stats = await self._ae_driver(replica).serve(_MessageByteStream(link), peer=node)
        self.counters["ae_sessions" if stats is not None else "ae_failed"] += 1

    async def _ae_loop(self) -> None:
        interval = self.config.ae_interval_s
        while True:
            await trio.sleep(interval * (0.8 + 0.4 * self._rng.random()))
            for ns in self._store.namespaces():
                for node in self._replica_peers(ns):
                    # Only one side of each pair initiates a periodic round (the smaller id).
                    if self.me.node < node:
                        await self._reconcile(ns, node)

    async def reconcile_all(self) -> int:
        """Run one session with every live replica peer of every namespace now (tests, heal)."""
        ok = 0
        for ns in self._store.namespaces():
            for node in self._replica_peers(ns):
                ok += await self._reconcile(ns, node)
        return ok


def snapshot_ttl_s(config: KvServiceConfig, build_s: float) -> float:
    """How long a snapshot that took `build_s` to make may serve sessions: `ae_snapshot_s`,
    or 20 times its making if longer (a million keys take seconds to read and place; made
    afresh every few seconds they would keep a core busy)."""
    return max(config.ae_snapshot_s, 20.0 * build_s)


async def _no_connect(peer: bytes) -> trio.abc.Stream:
    raise OSError("sessions are opened by the kv service")


async def _close_quietly(link: Any) -> None:
    with trio.CancelScope(shield=True):
        try:
            await link.aclose()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, MeshError):
            pass


class _MessageByteStream(trio.abc.Stream):
    """A byte stream over a message link: each `send_all` is one message (the session
    driver frames its own messages, so message boundaries need not match reads)."""

    def __init__(self, link: Any) -> None:
        self._link = link
        self._pending = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._link.send_message(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._pending:
            try:
                self._pending = await self._link.receive_message()
            except trio.EndOfChannel:
                return b""
        n = len(self._pending) if max_bytes is None else max_bytes
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    async def aclose(self) -> None:
        pass  # the owner closes the link


def sites_and_region(site: str, region: str, node: bytes) -> tuple[str, str]:
    """Placement identity from metadata: a node naming no site is its own site."""
    return (site or f"node-{node.hex()[:16]}", region or UNSET_REGION)

