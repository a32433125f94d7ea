"""The trio anti-entropy driver over in-memory streams, on virtual time."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from meshcore.antientropy import MemoryReplica, ReconcileConfig, VersionedRecord
from meshcore.errors import ConfigError
from meshcore.runtime._antientropy import AntiEntropyConfig, AntiEntropyDriver, TokenBucket


def _replica(n: int, seed: int, drop_every: int = 0) -> MemoryReplica:
    rng = random.Random(seed)
    recs = [VersionedRecord(rng.randbytes(16), (i + 1).to_bytes(8, "big"), rng.randbytes(32)) for i in range(n)]
    if drop_every:
        recs = [r for i, r in enumerate(recs) if i % drop_every]
    return MemoryReplica.from_records(recs)


def _pair_of_drivers(a: MemoryReplica, b: MemoryReplica, config: AntiEntropyConfig, nursery: trio.Nursery):
    """Driver A initiates towards "b"; each connection is served by driver B."""
    driver_b: AntiEntropyDriver[str] = AntiEntropyDriver(
        b, peers=lambda: [], connect=_no_connect, rng=random.Random(2), config=config
    )

    async def connect(peer: str) -> trio.abc.Stream:
        ours, theirs = trio.testing.memory_stream_pair()

        async def serve() -> None:
            async with theirs:
                await driver_b.serve(theirs, peer="a")

        nursery.start_soon(serve)
        return ours

    driver_a: AntiEntropyDriver[str] = AntiEntropyDriver(
        a, peers=lambda: ["b"], connect=connect, rng=random.Random(1), config=config
    )
    return driver_a, driver_b


async def _no_connect(peer: str) -> trio.abc.Stream:
    raise OSError("no route")


async def test_a_session_over_a_stream_makes_the_replicas_equal_and_counts_it(autojump_clock):
    a, b = _replica(3000, 1), _replica(3000, 1, drop_every=7)
    config = AntiEntropyConfig(interval_s=3600)
    async with trio.open_nursery() as nursery:
        driver_a, driver_b = _pair_of_drivers(a, b, config, nursery)
        stats = await driver_a.reconcile_with("b")
    # the initiator's records are followed by its leaf checks, so the responder answers them
    # with the final frame and the initiator verifies
    assert stats is not None and stats.verified is True
    assert a.snapshot() == b.snapshot()
    sa, sb = driver_a.statistics(), driver_b.statistics()
    assert (sa.sessions_completed, sb.sessions_completed) == (1, 1)
    assert sb.sessions_verified + sa.sessions_verified == 1
    assert sa.records_sent == sb.records_applied == 3000 - 3000 * 6 // 7
    assert sa.bytes_sent == sb.bytes_received > 0
    assert sa.current is None


async def test_the_token_bucket_holds_the_byte_rate(autojump_clock):
    a, b = _replica(4000, 3), _replica(0, 3)
    rate = 20_000.0
    config = AntiEntropyConfig(interval_s=3600, bytes_per_s=rate, burst_bytes=70_000)
    async with trio.open_nursery() as nursery:
        driver_a, driver_b = _pair_of_drivers(a, b, config, nursery)
        start = trio.current_time()
        await driver_a.reconcile_with("b")
        elapsed = trio.current_time() - start
    sent = driver_a.statistics().bytes_sent
    assert sent > 200_000
    assert elapsed >= (sent - 70_000) / rate * 0.95
    assert driver_a.statistics().throttled_s > 0
    assert a.snapshot() == b.snapshot()


async def test_sessions_run_periodically_with_a_random_peer(autojump_clock):
    a, b = _replica(500, 4), _replica(500, 4, drop_every=5)
    config = AntiEntropyConfig(interval_s=10, jitter=0.1)
    async with trio.open_nursery() as nursery:
        driver_a, _ = _pair_of_drivers(a, b, config, nursery)
        await nursery.start(driver_a.run)
        await trio.sleep(8.5)
        assert driver_a.statistics().sessions_initiated == 0
        await trio.sleep(36)
        assert 3 <= driver_a.statistics().sessions_initiated <= 5
        nursery.cancel_scope.cancel()
    assert a.snapshot() == b.snapshot()


async def test_a_peer_that_comes_back_alive_is_reconciled_at_once(autojump_clock):
    a, b = _replica(500, 5), _replica(500, 5, drop_every=3)
    config = AntiEntropyConfig(interval_s=3600)
    async with trio.open_nursery() as nursery:
        driver_a, _ = _pair_of_drivers(a, b, config, nursery)
        await nursery.start(driver_a.run)
        await trio.sleep(1)
        driver_a.peer_alive("b")
        driver_a.peer_alive("b")  # a duplicate while pending is ignored
        await trio.sleep(1)
        assert driver_a.statistics().sessions_completed == 1
        nursery.cancel_scope.cancel()
    assert a.snapshot() == b.snapshot()


async def test_a_broken_link_fails_the_session_and_the_next_session_completes_the_repair(autojump_clock):
    a, b = _replica(3000, 6), _replica(0, 6)
    small = AntiEntropyConfig(interval_s=3600, reconcile=ReconcileConfig(message_bytes_max=4096), burst_bytes=8192)
    driver_b: AntiEntropyDriver[str] = AntiEntropyDriver(b, peers=list, connect=_no_connect, rng=random.Random(2), config=small)
    driver_a: AntiEntropyDriver[str] = AntiEntropyDriver(a, peers=list, connect=_no_connect, rng=random.Random(1), config=small)

    async def broken_after(nbytes: int) -> None:
        left, right = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            async def cut() -> None:
                while driver_b.statistics().bytes_received + (
                    driver_b.statistics().current.bytes_received if driver_b.statistics().current else 0
                ) < nbytes:
                    await trio.sleep(0.01)
                await left.aclose()
                await right.aclose()

            nursery.start_soon(cut)
            nursery.start_soon(driver_b.serve, right)
            await driver_a.initiate(left)
            nursery.cancel_scope.cancel()

    await broken_after(40_000)
    assert driver_a.statistics().sessions_failed == 1
    assert 0 < len(b) < 3000
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver_b.serve, right)
        assert await driver_a.initiate(left) is not None
    assert a.snapshot() == b.snapshot()


async def test_a_garbage_frame_from_the_peer_fails_only_that_session(autojump_clock):
    b = _replica(10, 7)
    driver_b: AntiEntropyDriver[str] = AntiEntropyDriver(b, peers=list, connect=_no_connect, rng=random.Random(2))
    left, right = trio.testing.memory_stream_pair()
    before = b.snapshot()
    await left.send_all((20).to_bytes(4, "big") + b"\xff" * 20)
    assert await driver_b.serve(right) is None
    assert driver_b.statistics().sessions_failed == 1
    assert b.snapshot() == before


async def test_the_token_bucket_waits_exactly_for_the_missing_tokens(autojump_clock):
    bucket = TokenBucket(rate=1000, burst=1000)
    start = trio.current_time()
    await bucket.spend(1000)
    await bucket.spend(500)
    assert trio.current_time() - start == pytest.approx(0.5)


def test_a_burst_smaller_than_a_frame_is_a_config_error():
    with pytest.raises(ConfigError, match="burst_bytes"):
        AntiEntropyConfig(burst_bytes=1000)
