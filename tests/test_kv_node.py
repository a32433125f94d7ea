"""The kv layer in running nodes: real UDP/TCP sockets on loopback, secure links, real SQLite.

Each test is bounded by `fail_after`; nothing asserts on wall-clock durations.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import meshcore
from meshcore.errors import ConsistencyError, LocalProtocolError, NamespaceError, RecordError
from meshcore.kv import Completed, KvConfig
from meshcore.node import Node, open_node
from meshcore.node.testing import SecureCluster
from meshcore.runtime._kv import KvService, KvServiceConfig

LIMIT_S = 60.0
FAST = KvServiceConfig(core=KvConfig(request_timeout_s=1.0, tick_s=0.2, hint_retry_s=0.3),
                       connect_timeout_s=2.0, reconnect_backoff_s=0.1, ae_interval_s=3600.0,
                       synchronous="normal", handoff_settle_s=0.2, handoff_interval_s=0.5,
                       left_reclaim_s=0.5, ae_snapshot_s=1.0)


class KvMesh:
    """Nodes with stores under `root`; each runs in its own cancel scope so it can crash."""

    def __init__(self, nursery: trio.Nursery, root: Path, names: list[str]) -> None:
        self.nursery = nursery
        self.root = root
        self.cluster = SecureCluster(names)
        self.nodes: dict[str, Node] = {}
        self.scopes: dict[str, trio.CancelScope] = {}
        self.seed: tuple[str, int] | None = None

    async def start(self, name: str, *, region: str = "r1", data: bool = True, kv: object = None) -> Node:
        fields: dict[str, object] = dict(profile="local", site=f"site-{name}", region=region,
                                         seeds=[self.seed] if self.seed else [], kv=kv or FAST)
        if data:
            fields.update(data_dir=self.root / name, kv_port=0)
        config = self.cluster.config(name, **fields)
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                async with open_node(config) as node:
                    task_status.started(node)
                    await trio.sleep_forever()

        node: Node = await self.nursery.start(run)
        self.seed = self.seed or node.addr
        self.nodes[name] = node
        self.scopes[name] = scope
        return node

    def crash(self, name: str) -> None:
        self.scopes.pop(name).cancel()
        self.nodes.pop(name)

    async def settle(self) -> None:
        """Wait until every kv node sees every other kv node alive."""
        ids = [n.node_id for n in self.nodes.values() if n.kv.enabled]
        while True:
            if all(n.kv.service.core is not None and
                   all(n.kv.service.core.view.is_alive(x) for x in ids if x != n.node_id)
                   for n in self.nodes.values() if n.kv.enabled):
                return
            await trio.sleep(0.05)


@asynccontextmanager
async def kv_mesh(root: Path, names: list[str], **regions: str) -> AsyncIterator[KvMesh]:
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            mesh = KvMesh(nursery, root, names)
            for name in names:
                await mesh.start(name, region=regions.get(name, "r1"))
            await mesh.settle()
            yield mesh
            nursery.cancel_scope.cancel()


async def wait_for_namespace(mesh: KvMesh, name: str) -> None:
    while not all(any(ns.name == name for ns in n.kv.namespaces()) for n in mesh.nodes.values()):
        await trio.sleep(0.05)


async def test_put_get_delete_scan_at_every_consistency_level_across_three_nodes(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a, b, c = (mesh.nodes[x] for x in "abc")
        await a.kv.create_namespace("photos", replicas=2)
        await wait_for_namespace(mesh, "photos")
        for i, level in enumerate(("one", "quorum", "all")):
            await a.kv.put("photos", f"k{i}", b"v%d" % i, consistency=level)
        assert await b.kv.get("photos", "k1") == b"v1"
        assert await c.kv.get("photos", "k2", consistency="all") == b"v2"
        await c.kv.delete("photos", "k1")
        assert await a.kv.get("photos", "k1") is None
        assert await b.kv.scan("photos", "k") == [(b"k0", b"v0"), (b"k2", b"v2")]


async def test_a_namespace_created_on_one_node_reaches_a_late_joiner(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        await mesh.nodes["a"].kv.create_namespace("late", replicas=2)
        await wait_for_namespace(mesh, "late")
        mesh.cluster.issue("d")
        d = await mesh.start("d")
        await mesh.settle()
        await wait_for_namespace(mesh, "late")
        await d.kv.put("late", "x", b"1")
        assert await mesh.nodes["a"].kv.get("late", "x") == b"1"


async def test_watch_sees_changes_applied_on_a_replica(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        a, b = mesh.nodes["a"], mesh.nodes["b"]
        await a.kv.create_namespace("w", replicas=2)
        await wait_for_namespace(mesh, "w")
        async with b.kv.watch("w", "user/") as changes:
            await a.kv.put("w", "other", b"x", consistency="all")
            await a.kv.put("w", "user/1", b"hello", consistency="all")
            await a.kv.delete("w", "user/1", consistency="all")
            first = await changes.__anext__()
            second = await changes.__anext__()
        assert (first.key, first.value) == (b"user/1", b"hello")
        assert (second.key, second.value) == (b"user/1", None)
        assert second.stamp > first.stamp


async def test_a_node_down_then_back_gets_its_writes_by_hinted_handoff_and_read_repair(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a = mesh.nodes["a"]
        await a.kv.create_namespace("h", replicas=3)
        await wait_for_namespace(mesh, "h")
        await a.kv.put("h", "before", b"old", consistency="all")
        mesh.crash("c")
        while a.kv.service.core.view.is_alive(mesh.cluster.credentials["c"].key.node_id):  # type: ignore[union-attr]
            await trio.sleep(0.05)
        with pytest.raises(ConsistencyError):
            await a.kv.put("h", "k", b"x", consistency="all")  # a home replica is known down
        await a.kv.put("h", "k", b"v", consistency="quorum")
        assert a.kv.service.statistics()["hints_stored"] + mesh.nodes["b"].kv.service.statistics()[
            "hints_stored"] == 0  # rf=3 on 3 nodes: no stand-in site exists, so no hint
        c = await mesh.start("c")
        await mesh.settle()
        # Read repair: a read at `all` finds c stale and repairs it.
        assert await a.kv.get("h", "k", consistency="all") == b"v"
        while await c.kv.service._store.get("h", b"k") is None:
            await trio.sleep(0.05)
        assert (await c.kv.service._store.get("h", b"before")) is not None


async def test_hints_held_by_a_stand_in_reach_the_replica_when_it_returns(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c", "d"]) as mesh:
        a = mesh.nodes["a"]
        await a.kv.create_namespace("hh", replicas=2)
        await wait_for_namespace(mesh, "hh")
        svc = a.kv.service
        assert svc.core is not None
        ns = svc.core.view.namespace("hh")
        d_id = mesh.nodes["d"].node_id
        keys = [f"k{i}" for i in range(200) if d_id in svc.core.view.replicas(ns, f"k{i}".encode())][:10]
        assert keys
        mesh.crash("d")
        while svc.core.view.is_alive(d_id):
            await trio.sleep(0.05)
        for k in keys:
            await a.kv.put("hh", k, b"while-down", consistency="quorum")
        held = sum(n.kv.service.statistics()["hints_stored"] for n in mesh.nodes.values())
        assert held >= len(keys)
        d = await mesh.start("d")
        await mesh.settle()
        for k in keys:
            while (rec := await d.kv.service._store.get("hh", k.encode())) is None:
                await trio.sleep(0.05)
            assert rec.value == b"while-down"


async def test_anti_entropy_session_repairs_a_replica_that_missed_writes(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        a, b = mesh.nodes["a"], mesh.nodes["b"]
        await a.kv.create_namespace("ae", replicas=2)
        await wait_for_namespace(mesh, "ae")
        # Write on a's store only (as if b had missed it and no hint existed).
        from meshcore.kv import HLC, Record

        hlc = HLC(a.node_id, 0.5)
        recs = [Record(b"k%d" % i, b"v%d" % i, hlc.now(time.time())) for i in range(50)]
        await a.kv.service._store.put_many("ae", recs)
        assert await b.kv.service._store.get("ae", b"k7") is None
        assert await a.kv.service.reconcile_all() == 1
        while await b.kv.service._store.get("ae", b"k49") is None:
            await trio.sleep(0.05)
        assert (await b.kv.service._store.get("ae", b"k7")).value == b"v7"  # type: ignore[union-attr]


async def test_bad_input_raises_clearly_and_stores_nothing(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        a = mesh.nodes["a"]
        await a.kv.create_namespace("ok", replicas=2)
        with pytest.raises(NamespaceError, match="not defined"):
            await a.kv.put("nope", "k", b"v")
        with pytest.raises(RecordError, match="bytes"):
            await a.kv.put("ok", "k", "text")  # type: ignore[arg-type]
        with pytest.raises(RecordError, match="at most"):
            await a.kv.put("ok", "k", b"x" * (1024 * 1024 + 1))
        with pytest.raises(LocalProtocolError):
            await a.kv.put("ok", "k", b"v", consistency="most")
        with pytest.raises(NamespaceError, match="no storage node is in region"):
            await a.kv.create_namespace("far", regions=["mars"])
        with pytest.raises(NamespaceError, match="needs 3 sites"):
            await a.kv.create_namespace("big", replicas=3)
        with pytest.raises(NamespaceError, match="already exists"):
            await a.kv.create_namespace("ok", replicas=1)
        assert [ns.name for ns in a.kv.namespaces()] == ["ok"]
        assert await a.kv.scan("ok") == []


async def test_a_node_without_data_dir_says_how_to_enable_kv(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            mesh = KvMesh(nursery, tmp_path, ["x"])
            x = await mesh.start("x", data=False)
            with pytest.raises(LocalProtocolError, match="--data-dir"):
                await x.kv.put("ns", "k", b"v")
            nursery.cancel_scope.cancel()


async def test_placement_uses_the_certified_region_not_the_claimed_one(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b"], a="claimed", b="claimed") as mesh:
        a = mesh.nodes["a"]
        # The certificates say region "test"; the metadata claims "claimed".
        with pytest.raises(NamespaceError, match="no storage node is in region"):
            await a.kv.create_namespace("x", regions=["claimed"])
        await a.kv.create_namespace("y", regions=["test"])
        await wait_for_namespace(mesh, "y")
        await a.kv.put("y", "k", b"v", consistency="all")


async def test_a_kv_link_speaking_for_another_node_is_refused(tmp_path: Path) -> None:
    from meshcore.runtime._kv import encode_hello

    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        a, b = mesh.nodes["a"], mesh.nodes["b"]
        target = ("127.0.0.1", a.kv.port)
        raw = await trio.open_tcp_stream(*target)
        link = await b.kv.service._wrap(raw, initiator=True, peer=target)  # b's certificate...
        await link.send_message(encode_hello("kv", a.node_id))  # ...claiming to be a
        while a.kv.service.counters["hello_bad"] == 0:
            await trio.sleep(0.02)
        await link.aclose()
        assert a.kv.service.statistics()["dropped_messages"] == 0


def test_a_slow_watcher_loses_its_oldest_changes_and_counts_them() -> None:
    from meshcore.kv import Stamp
    from meshcore.runtime._kv import Change, Watch

    w = Watch(set(), "ns", b"", buffer_max=2)
    for i in range(5):
        w._offer(Change("ns", b"k%d" % i, b"v", Stamp(1_000_000 + i, 0, b"\x00" * 16)))
    assert w.dropped == 3
    assert [c.key for c in w._buffer] == [b"k3", b"k4"]


async def test_insecure_nodes_replicate_over_plain_links(tmp_path: Path) -> None:
    from meshcore.node import NodeConfig

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nodes: list[Node] = []
            for name in ("p", "q"):
                config = NodeConfig(name=name, insecure=True, profile="local", site=name, region="r",
                                    seeds=[nodes[0].addr] if nodes else [], data_dir=tmp_path / name,
                                    kv_port=0, kv=FAST)

                async def run(config: NodeConfig = config, *,
                              task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
                    async with open_node(config) as node:
                        task_status.started(node)
                        await trio.sleep_forever()

                nodes.append(await nursery.start(run))
            p, q = nodes
            while not p.kv.service.core.view.is_alive(q.node_id):  # type: ignore[union-attr]
                await trio.sleep(0.05)
            await p.kv.create_namespace("plain", replicas=2, regions=["r"])
            while not q.kv.namespaces():
                await trio.sleep(0.05)
            await q.kv.put("plain", "k", b"v", consistency="all")
            assert await p.kv.get("plain", "k", consistency="one") == b"v"
            nursery.cancel_scope.cancel()


async def test_garbage_on_the_kv_port_is_counted_and_the_service_keeps_working(tmp_path: Path) -> None:
    from meshcore.runtime._kv import encode_hello

    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        a, b = mesh.nodes["a"], mesh.nodes["b"]
        await a.kv.create_namespace("g", replicas=2)
        await wait_for_namespace(mesh, "g")
        target = ("127.0.0.1", a.kv.port)
        raw = await trio.open_tcp_stream(*target)
        await raw.send_all(b"\x00\x00\x00\x10" + b"not a handshake!" * 3)
        await raw.aclose()
        link = await b.kv.service._wrap(await trio.open_tcp_stream(*target), initiator=True, peer=target)
        await link.send_message(encode_hello("kv", b.node_id))
        await link.send_message(b"\x00\x00\x00\x03abc" + b"\x00\x00\x00\x09truncated")  # bad message, bad batch
        await link.aclose()
        while a.kv.service.counters["links_refused"] == 0 or a.kv.service.statistics()["dropped_messages"] == 0:
            await trio.sleep(0.02)
        await b.kv.put("g", "still", b"fine", consistency="all")
        assert await a.kv.get("g", "still") == b"fine"


@pytest.mark.parametrize("slack", [-0.1, 2.0, True, "0.01"])
def test_a_timer_slack_outside_zero_to_one_second_is_refused(slack: object) -> None:
    with pytest.raises(LocalProtocolError, match="timer_slack_s"):
        KvServiceConfig(timer_slack_s=slack)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value"), [
    ("handoff_settle_s", 0), ("handoff_interval_s", -1.0), ("left_reclaim_s", "600"),
    ("down_reclaim_s", True), ("handoff_concurrency", 0), ("handoff_page", 1.5),
    ("ae_snapshot_s", 0), ("ae_snapshot_s", "5")])
def test_bad_hand_off_and_reclaim_settings_are_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(LocalProtocolError, match=name):
        KvServiceConfig(**{name: value})  # type: ignore[arg-type]


async def test_link_batches_are_counted(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a = mesh.nodes["a"]
        await a.kv.create_namespace("n", replicas=3)
        await wait_for_namespace(mesh, "n")
        for i in range(5):
            await a.kv.put("n", f"k{i}", b"v", consistency="all")
        s = a.kv.statistics()
        assert s["link_messages_sent"] >= 10 and 1 <= s["link_batches_sent"] <= s["link_messages_sent"]


async def test_writes_reach_every_replica_when_no_link_write_completes_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The round task writes an idle link without waiting; a frame the socket does not take
    # whole goes to the peer's own task. Here no frame is ever taken at once (a full
    # socket, every time), so every batch takes that slow path, and every write still lands.
    from meshcore.runtime._securelink import SecureLink

    held: list[int] = []

    def hold(self: SecureLink, data: bytes) -> bool:
        frame = self._encoder.seal(data, trio.current_time())
        self._tail += frame
        held.append(len(frame))
        return False

    monkeypatch.setattr(SecureLink, "send_message_nowait", hold)
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a, c = mesh.nodes["a"], mesh.nodes["c"]
        await a.kv.create_namespace("n", replicas=3)
        await wait_for_namespace(mesh, "n")
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(lambda i=i: a.kv.put("n", f"k{i}", b"v%d" % i, consistency="all"))
        assert [await c.kv.get("n", f"k{i}", consistency="all") for i in range(20)] == [b"v%d" % i for i in range(20)]
        assert held  # the slow path was taken


async def test_a_link_found_broken_by_the_round_task_is_opened_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meshcore.runtime._securelink import SecureLink

    real = SecureLink.send_message_nowait
    failures = [3]

    def flaky(self: SecureLink, data: bytes) -> bool:
        if failures[0] > 0:
            failures[0] -= 1
            raise trio.BrokenResourceError("connection reset")
        return real(self, data)

    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a = mesh.nodes["a"]
        await a.kv.create_namespace("n", replicas=3)
        await wait_for_namespace(mesh, "n")
        await a.kv.put("n", "before", b"1", consistency="all")  # links open and idle
        monkeypatch.setattr(SecureLink, "send_message_nowait", flaky)
        ok = 0
        for i in range(10):
            try:
                await a.kv.put("n", f"k{i}", b"v", consistency="all")
                ok += 1
            except ConsistencyError:
                pass  # a write whose batch was lost with the link times out
        assert failures == [0] and ok >= 7
        await a.kv.put("n", "after", b"2", consistency="all")
        assert await mesh.nodes["c"].kv.get("n", "after", consistency="one") == b"2"


class _Listener:
    """A kv service stand-in whose `listen` refuses the ports in `busy`."""

    def __init__(self, busy: set[int]) -> None:
        self.busy = busy
        self.asked: list[int] = []

    async def listen(self, host: str, port: int) -> list[int]:
        from meshcore.errors import ConfigError

        self.asked.append(port)
        if port in self.busy:
            raise ConfigError(f"port {port} in use")
        return [port]


async def test_the_default_kv_port_falls_back_to_a_free_one_but_an_asked_for_port_does_not() -> None:
    from meshcore.errors import ConfigError
    from meshcore.node._kv import listen_kv

    svc = _Listener(busy={7001})
    assert await listen_kv(svc, "127.0.0.1", None, 7000) == [0]  # SWIM + 1 taken: any free port
    assert svc.asked == [7001, 0]
    assert await listen_kv(_Listener(set()), "127.0.0.1", None, 7000) == [7001]
    with pytest.raises(ConfigError):
        await listen_kv(_Listener(busy={7001}), "127.0.0.1", 7001, 7000)  # asked for: a clear error
    edge = _Listener(set())
    assert await listen_kv(edge, "127.0.0.1", None, 65535) == [0] and edge.asked == [0]  # no port 65536


# --- ring changes: a node joins, a node leaves ---------------------------------------------------


async def _holders(mesh: KvMesh, ns: str, key: bytes) -> set[str]:
    """The nodes whose store holds a copy of `key` (a value or a tombstone)."""
    return {name for name, n in mesh.nodes.items() if await n.kv.service._store.get(ns, key) is not None}


def _home(mesh: KvMesh, observer: str, ns: str, key: bytes) -> set[str]:
    core = mesh.nodes[observer].kv.service.core
    assert core is not None
    names = {n.node_id: name for name, n in mesh.nodes.items()}
    return {names.get(x, "?") for x in core.view.replicas(core.view.namespace(ns), key)}


async def _wait_placed(mesh: KvMesh, observer: str, ns: str, keys: list[bytes]) -> None:
    """Until every key is held by exactly its home replicas (in `observer`'s ring)."""
    while True:
        wrong = [k for k in keys if await _holders(mesh, ns, k) != _home(mesh, observer, ns, k)]
        if not wrong:
            return
        await trio.sleep(0.1)


async def _fill(mesh: KvMesh, ns: str, n: int = 60) -> list[bytes]:
    """A namespace of 2 copies holding `n` keys k0..k<n> = v-k0..., written at `all` from a."""
    a = mesh.nodes["a"]
    await a.kv.create_namespace(ns, replicas=2)
    await wait_for_namespace(mesh, ns)
    keys = [b"k%d" % i for i in range(n)]
    for k in keys:
        await a.kv.put(ns, k, b"v-" + k, consistency="all")
    return keys


async def test_a_joining_node_gets_its_ranges_and_the_old_owners_drop_them_only_after(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a = mesh.nodes["a"]
        keys = await _fill(mesh, "docs")
        await a.kv.delete("docs", b"k0", consistency="all")  # tombstones change homes too
        await mesh.start("d")
        await mesh.settle()
        await wait_for_namespace(mesh, "docs")
        moved = [k for k in keys if "d" in _home(mesh, "a", "docs", k)]
        assert moved  # about a third of the keys now have d as a home replica
        await _wait_placed(mesh, "a", "docs", keys)
        dropped = sum(n.kv.service.statistics()["handoff_dropped"] for n in mesh.nodes.values())
        assert dropped >= len(moved)  # each moved key left the owner it displaced
        d = mesh.nodes["d"]
        for k in keys[1:]:
            assert await d.kv.get("docs", k, consistency="all") == b"v-" + k
        assert await d.kv.get("docs", b"k0", consistency="all") is None


async def test_a_node_that_leaves_has_its_keys_copied_to_new_home_replicas(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c", "d"]) as mesh:
        a = mesh.nodes["a"]
        keys = await _fill(mesh, "keep")
        d_id = mesh.nodes["d"].node_id
        on_d = [k for k in keys if "d" in _home(mesh, "a", "keep", k)]
        assert on_d
        await mesh.nodes["d"].leave()
        mesh.nodes.pop("d")
        for name in "abc":  # every node takes d off its ring
            while d_id in mesh.nodes[name].kv.service.core.view.ring:  # type: ignore[union-attr]
                await trio.sleep(0.05)
        await _wait_placed(mesh, "a", "keep", keys)  # two copies again, on a, b, c only
        for k in on_d:
            assert await a.kv.get("keep", k, consistency="all") == b"v-" + k


async def test_a_leave_followed_by_a_return_within_the_grace_moves_nothing(tmp_path: Path) -> None:
    # A restart is a graceful leave then a join: it must not send the node's ranges away.
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        svc = mesh.nodes["a"].kv.service
        core = svc.core
        assert core is not None
        c_id = mesh.nodes["c"].node_id
        member = next(m for m in core.view.ring.members() if m.node == c_id)
        addr = svc._peers[c_id].addr
        svc.member_left(c_id)
        assert c_id in svc._reclaim and not core.view.is_alive(c_id)
        svc.member_up(c_id, addr, member.site, member.region)  # back (SWIM: alive again)
        assert c_id not in svc._reclaim and c_id in core.view.ring
        svc.member_left(c_id)  # and this time it stays away
        while c_id in core.view.ring:
            await trio.sleep(0.05)


async def _key_c_is_not_home_for(mesh: KvMesh, namespace: str) -> tuple[bytes, KvService]:
    """Make a 2-replica namespace; a key whose home replicas do not include c, and c's service."""
    await mesh.nodes["a"].kv.create_namespace(namespace, replicas=2)
    await wait_for_namespace(mesh, namespace)
    key = next(b"k%d" % i for i in range(100) if "c" not in _home(mesh, "a", namespace, b"k%d" % i))
    return key, mesh.nodes["c"].kv.service


async def test_a_copy_too_old_to_hand_off_stays_until_a_home_replica_holds_as_new(tmp_path: Path) -> None:
    # Versions older than the hint TTL are refused to any write (that is what keeps a
    # purged delete from coming back): such a copy is dropped only once a read at `all`
    # finds it, or something newer, on a home replica.
    from meshcore.kv import Record, Stamp

    async with kv_mesh(tmp_path, ["a", "b", "c", "d"]) as mesh:
        a = mesh.nodes["a"]
        key, c_svc = await _key_c_is_not_home_for(mesh, "old")
        ttl = c_svc.config.core.hint_ttl_s
        await c_svc.hand_off_all()  # whatever the start left to do is done
        stuck = c_svc.counters["handoff_stuck"]
        ancient = Record(key, b"ancient", Stamp(int((time.time() - ttl - 60) * 1e6), 0, b"\x01" * 16))
        await c_svc._store.put_many("old", [ancient])  # c holds a copy of a key it is not home for
        assert await c_svc.hand_off_all() == 1
        assert c_svc.counters["handoff_stuck"] == stuck + 1
        assert await c_svc._store.get("old", key) == ancient  # nowhere else: kept
        await a.kv.put("old", key, b"newer", consistency="all")
        assert await c_svc.hand_off_all() == 0
        assert await c_svc._store.get("old", key) is None
        assert await a.kv.get("old", key, consistency="all") == b"newer"


async def test_two_hand_off_passes_at_once_do_not_count_each_others_drops_as_left(tmp_path: Path) -> None:
    from meshcore.kv import HLC, Record

    async with kv_mesh(tmp_path, ["a", "b", "c", "d"]) as mesh:
        a = mesh.nodes["a"]
        key, c_svc = await _key_c_is_not_home_for(mesh, "twice")
        await c_svc.hand_off_all()  # whatever the start left to do is done
        copy = Record(key, b"v", HLC(mesh.nodes["c"].node_id, 0.5).now(time.time()))
        await c_svc._store.put_many("twice", [copy])  # c holds a copy of a key it is not home for
        dropped = c_svc.counters["handoff_dropped"]
        results: list[int] = []

        async def one_pass() -> None:
            results.append(await c_svc.hand_off_all())

        async with trio.open_nursery() as n:  # as the loop's pass and an asked-for one may meet
            n.start_soon(one_pass)
            n.start_soon(one_pass)
        assert results == [0, 0]
        assert c_svc.counters["handoff_dropped"] == dropped + 1
        assert await c_svc._store.get("twice", key) is None
        assert await a.kv.get("twice", key, consistency="all") == b"v"


async def test_a_store_failing_during_a_hand_off_pass_is_counted_and_the_node_keeps_serving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meshcore.errors import StorageError

    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a = mesh.nodes["a"]
        keys = await _fill(mesh, "disk", 5)
        svc = a.kv.service
        before = svc.counters["storage_errors"]

        async def failing(*args: object, **kwargs: object) -> object:
            raise StorageError("store read failed: disk I/O error")

        monkeypatch.setattr(svc._store, "versions", failing)
        svc._ring_changed.set()  # as a ring change would
        while svc.counters["storage_errors"] == before:
            await trio.sleep(0.05)
        monkeypatch.undo()
        await a.kv.put("disk", keys[0], b"still here", consistency="all")
        assert await a.kv.get("disk", keys[0], consistency="all") == b"still here"


async def test_the_sessions_of_one_round_share_one_read_of_the_store(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a, c = mesh.nodes["a"], mesh.nodes["c"]
        await a.kv.create_namespace("ae3", replicas=3)
        await wait_for_namespace(mesh, "ae3")
        from meshcore.kv import HLC, Record

        hlc = HLC(a.node_id, 0.5)
        await a.kv.service._store.put_many("ae3", [Record(b"k%d" % i, b"v", hlc.now(time.time())) for i in range(20)])
        svc = a.kv.service
        before = svc.counters["ae_snapshots"]
        assert await svc.reconcile_all() == 2  # with b and with c
        assert svc.counters["ae_snapshots"] == before + 1
        assert await svc.reconcile_all() == 2  # within ae_snapshot_s: the same snapshot
        assert svc.counters["ae_snapshots"] == before + 1
        while await c.kv.service._store.get("ae3", b"k19") is None:  # and the sessions worked
            await trio.sleep(0.05)
        # A ring change makes the next session read afresh, whatever the snapshot's age.
        ring = svc.core.view.ring  # type: ignore[union-attr]
        b_member = next(m for m in ring.members() if m.node == mesh.nodes["b"].node_id)
        ring.remove(b_member.node)
        ring.add(b_member)
        assert await svc.reconcile_all() == 2
        assert svc.counters["ae_snapshots"] == before + 2
        # It holds every version of the namespace: it goes once too old to serve.
        assert "ae3" in svc._snapshots
        with trio.fail_after(svc.config.ae_snapshot_s + 10):
            while "ae3" in svc._snapshots:
                await trio.sleep(0.1)


async def test_anti_entropy_runs_only_with_nodes_that_share_keys(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a = mesh.nodes["a"]
        await a.kv.create_namespace("solo", replicas=1)  # one copy: no two nodes share a key
        await a.kv.create_namespace("pair", replicas=3)  # three copies: every node shares all
        await wait_for_namespace(mesh, "solo")
        await wait_for_namespace(mesh, "pair")
        svc = a.kv.service
        solo, pair = svc.core.view.namespace("solo"), svc.core.view.namespace("pair")  # type: ignore[union-attr]
        assert svc._replica_peers(solo) == []
        assert set(svc._replica_peers(pair)) == {mesh.nodes["b"].node_id, mesh.nodes["c"].node_id}
        assert await svc.reconcile_all() == 2  # the two "pair" sessions, none for "solo"


async def test_gets_of_written_keys_are_answered_from_the_store_cache_and_stay_right(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b", "c"]) as mesh:
        a, b = mesh.nodes["a"], mesh.nodes["b"]
        await a.kv.create_namespace("n", replicas=3)
        await wait_for_namespace(mesh, "n")
        for i in range(5):
            await a.kv.put("n", f"k{i}", b"v1", consistency="all")
        hits = sum(n.kv.statistics()["store"]["cache_hits"] for n in mesh.nodes.values())
        for i in range(5):
            assert await b.kv.get("n", f"k{i}", consistency="all") == b"v1"
        after = sum(n.kv.statistics()["store"]["cache_hits"] for n in mesh.nodes.values())
        assert after - hits == 15  # every replica of every key answered from memory
        await a.kv.put("n", "k0", b"v2", consistency="all")
        await a.kv.delete("n", "k1", consistency="all")
        assert await b.kv.get("n", "k0", consistency="all") == b"v2"
        assert await b.kv.get("n", "k1", consistency="all") is None
        assert await b.kv.get("n", "never", consistency="all") is None  # a miss reads the disk
        for n in mesh.nodes.values():  # as after a restart: nothing in memory
            n.kv.service._store._cache.clear()
        before = sum(n.kv.statistics()["store"]["cache_hits"] for n in mesh.nodes.values())
        assert await b.kv.get("n", "k2", consistency="all") == b"v1"  # read from disk, kept
        assert await b.kv.get("n", "k2", consistency="all") == b"v1"
        after = sum(n.kv.statistics()["store"]["cache_hits"] for n in mesh.nodes.values())
        assert after - before == 3  # the second get: every replica from memory


def test_the_agent_takes_its_kv_settings_from_the_config_file_and_flags_override_it(tmp_path: Path) -> None:
    import argparse

    from meshcore.cli._agent import add_agent_parser, agent_settings
    from meshcore.runtime._kv import KvServiceConfig

    parser = add_agent_parser(argparse.ArgumentParser().add_subparsers())
    toml = tmp_path / "agent.toml"
    toml.write_text('kv_sync = "normal"\nkv_cache_mb = 8\n')
    base = ["--insecure", "--control", str(tmp_path / "c.sock")]

    def kv(*argv: str) -> KvServiceConfig | None:
        return agent_settings(parser.parse_args([*base, *argv]))[0].kv

    assert kv() is None  # nothing said: the service's defaults
    assert kv("--kv-cache-mb", "8") == KvServiceConfig(cache_mb=8)
    assert kv("--config", str(toml)) == KvServiceConfig(synchronous="normal", cache_mb=8)
    assert kv("--config", str(toml), "--kv-sync", "full", "--kv-cache-mb", "0") == KvServiceConfig(
        synchronous="full", cache_mb=0)
    assert KvServiceConfig().cache_mb == 32
    with pytest.raises(LocalProtocolError, match="cache_mb"):
        KvServiceConfig(cache_mb=-1)


async def test_a_node_with_no_record_cache_reads_every_get_from_disk(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        mesh = KvMesh(nursery, tmp_path, ["a"])
        a = await mesh.start("a", kv=dataclasses.replace(FAST, cache_mb=0))
        await a.kv.create_namespace("n", replicas=1)
        await a.kv.put("n", "k", b"v", consistency="all")
        assert await a.kv.get("n", "k") == b"v"
        store = a.kv.statistics()["store"]
        assert store["cache_records"] == 0 and store["cache_hits"] == 0
        nursery.cancel_scope.cancel()


async def test_a_request_started_without_a_waiter_leaves_no_callback_behind_when_it_fails_to_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        a = mesh.nodes["a"]
        await a.kv.create_namespace("n", replicas=2)
        await wait_for_namespace(mesh, "n")
        svc = a.kv.service
        with pytest.raises(NamespaceError):  # misuse raises before anything is registered
            a.kv.start("put", "nope", "k", b"v", done=lambda c: None)
        with pytest.raises(LocalProtocolError):
            a.kv.start("scan", "n", "k", done=lambda c: None)
        from meshcore.kv import VALUE_BYTES_MAX

        with pytest.raises(RecordError):
            a.kv.start("put", "n", "k", "text", done=lambda c: None)  # type: ignore[arg-type]
        with pytest.raises(RecordError):
            a.kv.start("put", "n", "k", b"x" * (VALUE_BYTES_MAX + 1), done=lambda c: None)
        with pytest.raises(RecordError):  # the service refuses a non-bytes value itself too
            svc.start("put", "n", "k", None, done=lambda c: None)
        assert await a.kv.get("n", "k", consistency="all") is None  # nothing of them was stored

        def broken(effects: object) -> None:
            raise RuntimeError("a bug while performing")

        # A compiled KvService's methods cannot be replaced: that part runs in the
        # pure-Python pass of `make test` (MESHCORE_PURE=1).
        if meshcore._native.status() != "compiled":
            monkeypatch.setattr(svc, "_perform", broken)
            with pytest.raises(RuntimeError):
                a.kv.start("put", "n", "k", b"v", done=lambda c: None)
            assert svc._waiters == {}
            monkeypatch.undo()
        got: list[Completed] = []
        done = trio.Event()

        def finished(c: Completed) -> None:
            got.append(c)
            done.set()

        a.kv.start("put", "n", "k", b"v", consistency="all", done=finished)
        with trio.fail_after(10):
            await done.wait()
        assert got[0].error is None and svc._waiters == {}
        assert await mesh.nodes["b"].kv.get("n", "k", consistency="one") == b"v"
