"""Hybrid logical clock: monotonic stamps, skew refusal, byte order equals stamp order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.errors import ClockSkewError, DecodeError, LocalProtocolError, MeshError
from meshcore.kv import HLC, LOGICAL_MAX, STAMP_BYTES, Stamp

A = b"\x01" * 16
B = b"\x02" * 16

stamps = st.builds(
    Stamp,
    st.integers(0, 2**64 - 1),
    st.integers(0, LOGICAL_MAX),
    st.binary(min_size=16, max_size=16),
)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # (kind, wall_s, remote (physical_us, logical) or None) -> (physical_us, logical)
        ([("now", 1.0, None)], [(1_000_000, 0)]),
        ([("now", 1.0, None), ("now", 1.0, None)], [(1_000_000, 0), (1_000_000, 1)]),
        ([("now", 2.0, None), ("now", 1.0, None)], [(2_000_000, 0), (2_000_000, 1)]),
        ([("now", 1.0, None), ("now", 1.5, None)], [(1_000_000, 0), (1_500_000, 0)]),
        ([("obs", 1.0, (1_200_000, 7))], [(1_200_000, 8)]),
        ([("now", 3.0, None), ("obs", 1.0, (2_000_000, 9))], [(3_000_000, 0), (3_000_000, 1)]),
        ([("now", 1.0, None), ("obs", 1.0, (1_000_000, 4))], [(1_000_000, 0), (1_000_000, 5)]),
        ([("obs", 5.0, (1_000_000, 4))], [(5_000_000, 0)]),
        ([("now", 0.506933, None)], [(506_933, 0)]),  # float seconds round to the nearest µs
    ],
)
def test_clock_follows_the_hlc_update_rules_of_the_table(
    events: list[tuple[str, float, tuple[int, int] | None]], expected: list[tuple[int, int]]
) -> None:
    clock = HLC(A, max_skew_s=1.0)
    got = []
    for kind, wall, remote in events:
        if kind == "now":
            s = clock.now(wall)
        else:
            assert remote is not None
            s = clock.observe(wall, Stamp(remote[0], remote[1], B))
        assert s.node == A
        got.append((s.physical_us, s.logical))
    assert got == expected


def test_remote_stamp_beyond_the_skew_bound_is_refused_and_leaves_the_clock_unchanged() -> None:
    clock = HLC(A, max_skew_s=0.5)
    before = clock.now(10.0)
    with pytest.raises(ClockSkewError, match=r"0\.600 s ahead.*limit 0\.500 s") as info:
        clock.observe(10.0, Stamp(10_600_000, 0, B))
    assert isinstance(info.value, MeshError)
    assert "02020202" in str(info.value)  # names the writer
    assert clock.last() == before
    # Exactly at the bound is still accepted.
    assert clock.observe(10.0, Stamp(10_500_000, 0, B)).physical_us == 10_500_000


def test_resumed_clock_stamps_above_its_last_stamp_even_if_wall_time_went_back() -> None:
    old = HLC(A, max_skew_s=1.0)
    last = old.now(100.0)
    resumed = HLC(A, max_skew_s=1.0, last=last)
    assert resumed.now(50.0) > last


def test_logical_overflow_moves_physical_time_on_by_one_microsecond() -> None:
    clock = HLC(A, max_skew_s=1.0, last=Stamp(1_000_000, LOGICAL_MAX, A))
    s = clock.now(1.0)
    assert (s.physical_us, s.logical) == (1_000_001, 0)
    clock = HLC(A, max_skew_s=1.0)
    s = clock.observe(1.0, Stamp(1_000_000, LOGICAL_MAX, B))
    assert (s.physical_us, s.logical) == (1_000_001, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"node_id": b"short", "max_skew_s": 1.0}, "16-byte"),
        ({"node_id": A, "max_skew_s": 0}, "max_skew_s"),
        ({"node_id": A, "max_skew_s": -1.0}, "max_skew_s"),
        ({"node_id": A, "max_skew_s": True}, "max_skew_s"),
    ],
)
def test_bad_clock_parameters_raise_local_protocol_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        HLC(**kwargs)  # type: ignore[arg-type]


def test_negative_wall_time_is_local_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="wall time"):
        HLC(A, 1.0).now(-1.0)


def test_stamps_reject_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="logical"):
        Stamp(0, LOGICAL_MAX + 1, A)
    with pytest.raises(ValueError, match="physical"):
        Stamp(-1, 0, A)
    with pytest.raises(ValueError, match="node"):
        Stamp(0, 0, b"x")


@pytest.mark.parametrize("data", [b"", b"\x00" * (STAMP_BYTES - 1), b"\x00" * (STAMP_BYTES + 1), "x" * STAMP_BYTES])
def test_stamp_decoding_rejects_wrong_lengths_and_types(data: object) -> None:
    with pytest.raises(DecodeError):
        Stamp.from_bytes(data)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(stamps, stamps)
def test_byte_encoding_sorts_exactly_like_stamps(a: Stamp, b: Stamp) -> None:
    assert len(a.to_bytes()) == STAMP_BYTES
    assert Stamp.from_bytes(a.to_bytes()) == a
    assert (a < b) == (a.to_bytes() < b.to_bytes())
    assert (a == b) == (a.to_bytes() == b.to_bytes())


# An event is a wall-clock reading (that may jump back) and, maybe, a remote stamp offset.
events = st.lists(
    st.tuples(st.integers(0, 10_000_000), st.none() | st.tuples(st.integers(-3_000_000, 3_000_000), st.integers(0, 50))),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150)
@given(events)
def test_stamps_increase_strictly_and_stay_within_the_skew_bound(
    evs: list[tuple[int, tuple[int, int] | None]]
) -> None:
    skew_us = 1_000_000
    clock = HLC(A, max_skew_s=skew_us / 1e6)
    prev: Stamp | None = None
    wall_max = 0
    for wall, remote in evs:
        wall_s = wall / 1e6
        if remote is None:
            s = clock.now(wall_s)
        else:
            r = Stamp(max(0, wall + remote[0]), remote[1], B)
            try:
                s = clock.observe(wall_s, r)
            except ClockSkewError:
                assert r.physical_us - wall > skew_us
                continue
            assert s > r  # causality: a receive is after the send
        wall_max = max(wall_max, wall)
        assert prev is None or s > prev
        # Kulkarni's bound: the physical part never runs ahead of wall time by more than
        # the accepted skew (plus the 1-µs steps of logical overflow, impossible here).
        assert s.physical_us >= wall  # never behind the wall clock
        assert s.physical_us <= wall_max + skew_us
        prev = s
