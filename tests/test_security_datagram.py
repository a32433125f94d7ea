"""Sealed datagrams: every kind of bad datagram is dropped and counted, never raised."""

from __future__ import annotations

import os

import pytest

from meshcore.errors import LocalProtocolError
from meshcore.security import DATAGRAM_OVERHEAD_BYTES, DatagramSealer, make_throwaway_cluster
from meshcore.wire import SEAL_OVERHEAD_BYTES_MAX

NOW = 1_700_000_000.0
A_ADDR, B_ADDR = ("10.0.0.1", 7946), ("10.0.0.2", 7946)


@pytest.fixture
def pair():
    cluster = make_throwaway_cluster(["a", "b", "c"], now=NOW)
    a, b, c = cluster.nodes
    clock = [NOW]
    sa = a.datagram_sealer(counter_start=int(NOW) << 32, clock=lambda: clock[0])
    sb = b.datagram_sealer(counter_start=int(NOW) << 32, clock=lambda: clock[0])
    sa.add_peer(b.certificate, B_ADDR)
    sb.add_peer(a.certificate, A_ADDR)
    return cluster, sa, sb, clock


def test_a_sealed_datagram_opens_at_the_peer_with_32_bytes_of_overhead(pair) -> None:
    cluster, sa, sb, _ = pair
    data = sa.seal(B_ADDR, b"ping")
    assert len(data) - len(b"ping") == DATAGRAM_OVERHEAD_BYTES <= SEAL_OVERHEAD_BYTES_MAX
    assert sb.open_from(A_ADDR, data) == (cluster.nodes[0].key.node_id, b"ping")
    assert sa.open(B_ADDR, sb.seal(A_ADDR, b"ack")) == b"ack"


def test_a_replayed_datagram_is_dropped_and_counted(pair) -> None:
    _, sa, sb, _ = pair
    data = sa.seal(B_ADDR, b"ping")
    assert sb.open(A_ADDR, data) == b"ping"
    assert sb.open(A_ADDR, data) is None
    assert sb.statistics().drops["replay"] == 1


def test_a_bit_flipped_datagram_is_dropped_and_counted_and_does_not_burn_its_counter(pair) -> None:
    _, sa, sb, _ = pair
    data = sa.seal(B_ADDR, b"ping")
    for i in range(16, len(data)):
        forged = bytearray(data)
        forged[i] ^= 0x40
        assert sb.open(A_ADDR, bytes(forged)) is None
    assert sb.statistics().drops["bad_mac"] == len(data) - 16
    assert sb.open(A_ADDR, data) == b"ping"  # the genuine one still opens


def test_random_bytes_and_runts_are_dropped_and_counted(pair) -> None:
    _, _, sb, _ = pair
    for n in (0, 1, 31, 32, 100, 1400, 1401, 5000):
        assert sb.open(A_ADDR, os.urandom(n)) is None
    stats = sb.statistics()
    assert stats.dropped == 8 and stats.opened == 0
    assert stats.drops["datagram_malformed"] == 5 and stats.drops["unknown_sender"] == 3


def test_a_datagram_from_an_unadmitted_sender_is_dropped_after_one_lookup(pair) -> None:
    cluster, _, sb, _ = pair
    c = cluster.nodes[2]
    sc = c.datagram_sealer(counter_start=0, clock=lambda: NOW)
    sc.add_peer(cluster.nodes[1].certificate, B_ADDR)  # c knows b, b never admitted c
    assert sb.open(("10.0.0.3", 1), sc.seal(B_ADDR, b"let me in")) is None
    assert sb.statistics().drops["unknown_sender"] == 1


def test_datagrams_from_a_revoked_or_expired_peer_are_dropped(pair) -> None:
    cluster, sa, sb, clock = pair
    a = cluster.nodes[0]
    sb._trust.add_revocation(cluster.authority.revoke(a.key.node_id, serial=1, revoked_at=int(NOW)))
    assert sb.open(A_ADDR, sa.seal(B_ADDR, b"x")) is None
    assert sb.statistics().drops["cert_revoked"] == 1
    assert sa.open(B_ADDR, sb.seal(A_ADDR, b"y")) == b"y"
    clock[0] = cluster.nodes[1].certificate.not_after + 1
    assert sa.open(B_ADDR, sb.seal(A_ADDR, b"z")) is None
    assert sa.statistics().drops["cert_expired"] == 1


def test_a_removed_peer_can_no_longer_send_or_be_sealed_to(pair) -> None:
    cluster, sa, sb, _ = pair
    data = sa.seal(B_ADDR, b"x")
    sb.remove_peer(cluster.nodes[0].key.node_id)
    assert sb.open(A_ADDR, data) is None
    assert not sb.can_seal(A_ADDR)
    with pytest.raises(LocalProtocolError, match="admit"):
        sb.seal(A_ADDR, b"y")


def test_a_restarted_sender_with_a_later_counter_start_is_accepted(pair) -> None:
    cluster, sa, sb, _ = pair
    assert sb.open(A_ADDR, sa.seal(B_ADDR, b"before")) == b"before"
    a = cluster.nodes[0]
    restarted: DatagramSealer = a.datagram_sealer(counter_start=(int(NOW) + 5) << 32, clock=lambda: NOW)
    restarted.add_peer(cluster.nodes[1].certificate, B_ADDR)
    assert sb.open(A_ADDR, restarted.seal(B_ADDR, b"after")) == b"after"


def test_the_two_directions_use_different_keys(pair) -> None:
    _, sa, sb, _ = pair
    # a datagram a->b reflected back to a must not open as if b had sent it
    assert sa.open(B_ADDR, sa.seal(B_ADDR, b"mirror")) is None


def test_an_oversized_plaintext_is_local_misuse(pair) -> None:
    _, sa, _, _ = pair
    with pytest.raises(ValueError):
        sa.seal(B_ADDR, bytes(1400))
