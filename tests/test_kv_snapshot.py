"""Anti-entropy snapshots: one read of a namespace, grouped by home replicas, split per peer."""

from __future__ import annotations

from meshcore.kv import Namespace, Ring, RingMember
from meshcore.runtime._kvstore import VersionSnapshot


def node(i: int) -> bytes:
    return bytes([i + 1]) * 16


class Rows:
    """A reader that holds `rows` (only `versions` is used by a snapshot)."""

    def __init__(self, rows: list[tuple[bytes, bytes, bool]]) -> None:
        self.rows = rows

    async def versions(self, namespace: str) -> list[tuple[bytes, bytes, bool]]:
        return list(self.rows)


async def test_a_peer_gets_exactly_the_rows_both_nodes_are_home_replicas_of() -> None:
    ring = Ring([RingMember(node(i), f"s{i}", "r1") for i in range(8)], vnodes_per_node=4)
    ns = Namespace(name="ns", replicas=2)
    rows = [(b"key-%04d" % i, b"\x01" * 12, i % 7 == 0) for i in range(5000)]
    unplaceable = {b"key-0003", b"key-0100"}

    def placement(key: bytes) -> tuple[bytes, ...] | None:
        return None if key in unplaceable else tuple(ring.replicas_for(ns, key))

    snap = await VersionSnapshot.build(Rows(rows), "ns", placement, generation=ring.generation)  # type: ignore[arg-type]
    assert len(snap) == len(rows) - len(unplaceable)
    me = node(0)
    total = 0
    for i in range(1, 8):
        peer = node(i)
        want = [r for r in rows if r[0] not in unplaceable and {me, peer} <= set(ring.replicas_for(ns, r[0]))]
        got = snap.shared(me, peer)
        assert sorted(got) == sorted(want)
        assert (len(want) > 0) == (peer in ring.co_replicas(ns, me))
        total += len(got)
    # Each of me's keys is shared with exactly one other replica (2 copies).
    assert total == sum(1 for r in rows if r[0] not in unplaceable and me in ring.replicas_for(ns, r[0]))


def test_the_round_benchmark_runs_and_a_round_costs_less_than_the_old_way(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from benchmarks.__main__ import main

    out = tmp_path / "ae.json"
    assert main(["kv-ae-round", "--nodes", "40", "--keys", "300", "--baseline-sessions", "2",
                 "--json", str(out)]) == 0
    m = json.loads(out.read_text())["metrics"]
    assert m["peers_territory"] == 39 and 0 < m["peers_co_replicas"] <= 39
    assert m["round_vs_baseline"] < 1


def test_a_snapshot_that_took_long_to_make_serves_longer() -> None:
    from meshcore.runtime._kv import KvServiceConfig, snapshot_ttl_s

    cfg = KvServiceConfig(ae_snapshot_s=5.0)
    assert snapshot_ttl_s(cfg, 0.01) == 5.0  # small namespaces: fresh every few seconds
    assert snapshot_ttl_s(cfg, 3.0) == 60.0  # a big one: at most ~5 % of the time rebuilding
