"""The RFC 6479-style replay window, by example and by property."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.security import ReplayWindow


def test_the_default_window_tracks_at_least_8128_packets() -> None:
    w = ReplayWindow()
    assert w.window >= 8128
    assert w.check_and_update(10_000)
    assert w.check_and_update(10_000 - 8127)  # oldest still inside the window
    assert not w.check_and_update(10_000 - 8128)  # too old
    assert not w.check_and_update(10_000)  # replay


def test_a_jump_far_ahead_forgets_the_old_window() -> None:
    w = ReplayWindow(blocks=4)
    for c in range(0, 200):
        assert w.check_and_update(c)
    assert w.check_and_update(2**63)
    assert not w.check(199)
    assert w.check(2**63 - 1)


def test_check_alone_does_not_record() -> None:
    w = ReplayWindow()
    assert w.check(5) and w.check(5)
    w.update(5)
    assert not w.check(5)


def _model_run(window: ReplayWindow, counters: list[int]) -> None:
    seen: set[int] = set()
    top = -1
    for c in counters:
        accepted = window.check_and_update(c)
        if c in seen:
            assert not accepted, f"replay of {c} accepted"
        elif c > top - window.window:
            assert accepted, f"fresh in-window {c} rejected (top {top})"
        if accepted:
            seen.add(c)
            top = max(top, c)
        assert window.top == top


@settings(max_examples=150)
@given(
    st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=300),
    st.randoms(use_true_random=False),
    st.integers(min_value=2, max_value=8),
)
def test_no_replay_is_accepted_and_no_fresh_in_window_packet_is_rejected(counters, rnd, blocks) -> None:
    # Random duplications and reorderings of a packet stream (small windows so the
    # property crosses window edges often).
    stream = counters + [rnd.choice(counters) for _ in range(len(counters) // 2)]
    rnd.shuffle(stream)
    _model_run(ReplayWindow(blocks=blocks), stream)


@settings(max_examples=40)
@given(st.integers(min_value=0, max_value=2**32), st.randoms(use_true_random=False))
def test_a_mostly_ordered_stream_with_local_reordering_is_all_accepted_once(start, rnd) -> None:
    sent = list(range(start, start + 3000))
    # Swap neighbours within a 500-packet horizon: reordering well inside the 8,128 window.
    for _ in range(1000):
        i = rnd.randrange(len(sent))
        j = min(len(sent) - 1, i + rnd.randrange(500))
        sent[i], sent[j] = sent[j], sent[i]
    w = ReplayWindow()
    assert all(w.check_and_update(c) for c in sent)
    assert not any(w.check_and_update(c) for c in random.Random(start).sample(sent, 100))
