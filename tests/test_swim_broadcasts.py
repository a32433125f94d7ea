"""User broadcasts: numbering across restarts, repair through push-pull, no replay on join.

The core by hand for the message rules, the simulator (virtual clock) for the cluster ones.
"""

from __future__ import annotations

import random
from collections import Counter

import cbor2
import pytest

from meshcore.errors import ConfigError, DecodeError
from meshcore.sim import NetConfig, World
from meshcore.swim import Swim, SwimConfig, UserBroadcast
from meshcore.wire import (
    RECENT_USER_MAX,
    MemberState,
    NodeMeta,
    PushPull,
    Status,
    UserMsg,
    decode,
    decode_recent_users,
    encode,
    encode_recent_users,
)


def _id(i: int) -> bytes:
    return bytes([i + 1]) * 16


def _addr(i: int) -> tuple[str, int]:
    return (f"10.0.0.{i + 1}", 7946)


def make(me: int, n: int = 3, **overrides: object) -> Swim:
    s = Swim(config=SwimConfig.profile("lan", **overrides), node_id=_id(me), addr=_addr(me),
             meta=NodeMeta(name=f"n{me}"), rng=random.Random(me))
    s.preload(0.0, [MemberState(node=_id(i), incarnation=0, addr=_addr(i), meta=NodeMeta(name=f"n{i}"),
                                status=Status.ALIVE) for i in range(n)])
    s.start(0.0, [])
    return s


def push_pull(sender: int, user_state: bytes) -> bytes:
    return encode(PushPull(sender=_id(sender), join=False, reply=False, checksum=b"\x00" * 32,
                           user_state=user_state))


def delivered(effects: list[object]) -> list[bytes]:
    return [e.payload for e in effects if isinstance(e, UserBroadcast)]


# --- the codec -------------------------------------------------------------------------------


def test_recent_broadcasts_round_trip_and_garbage_is_a_decode_error() -> None:
    msgs = [UserMsg(origin=_id(1), seq=2**62 + k, payload=b"p%d" % k) for k in range(3)]
    assert decode_recent_users(encode_recent_users(msgs)) == tuple(msgs)
    assert encode_recent_users([]) == b"" and decode_recent_users(b"") == ()
    for bad in (b"\xff", cbor2.dumps({}), cbor2.dumps([[1, 2, 3]]), cbor2.dumps([[4, _id(1), -1, b""]]),
                cbor2.dumps([[4, _id(1), 1, b""]] * (RECENT_USER_MAX + 1)), cbor2.dumps([1]) + b"x"):
        with pytest.raises(DecodeError):
            decode_recent_users(bad)
    with pytest.raises(ValueError):
        encode_recent_users(msgs * RECENT_USER_MAX)


def test_user_recent_max_is_bounded_by_what_a_push_pull_may_carry() -> None:
    with pytest.raises(ConfigError):
        SwimConfig.profile("lan", user_recent_max=RECENT_USER_MAX + 1)
    assert SwimConfig.profile("memberlist").user_recent_max == 0


# --- the core ----------------------------------------------------------------------------------


def test_a_push_pull_delivers_unseen_recent_broadcasts_once_and_gossips_them_on() -> None:
    a = make(0)
    news = [UserMsg(origin=_id(2), seq=7, payload=b"missed"), UserMsg(origin=_id(0), seq=1, payload=b"mine")]
    _, effects = a.on_stream_request(1.0, _addr(1), push_pull(1, encode_recent_users(news)))
    assert delivered(effects) == [b"missed"]  # our own is never delivered to us
    _, effects = a.on_stream_request(2.0, _addr(1), push_pull(1, encode_recent_users(news)))
    assert delivered(effects) == []
    assert a.statistics().broadcasts_repaired == 1
    assert a.statistics().queue_len == 1  # passed on by gossip, so gossip keeps its fan-out
    answer, _ = a.on_stream_request(2.5, _addr(1), push_pull(1, b""))
    assert decode_recent_users(decode(answer, bytes_max=1 << 24).user_state) == ()  # type: ignore[union-attr]
    _, effects = a.on_stream_request(3.0, _addr(1), push_pull(1, b"\xffgarbage"))
    assert dict(a.statistics().dropped)["recent_users"] == 1


def test_a_push_pull_carries_at_most_user_recent_max_broadcasts_of_the_window() -> None:
    a = make(0, user_recent_max=4, user_recent_s=10.0)
    for k in range(6):
        a.broadcast(1.0 + k, b"b%d" % k)
    answer, _ = a.on_stream_request(7.0, _addr(1), push_pull(1, b""))
    assert answer is not None
    carried = decode_recent_users(decode(answer, bytes_max=1 << 24).user_state)  # type: ignore[union-attr]
    assert [m.payload for m in carried] == [b"b2", b"b3", b"b4", b"b5"]
    answer, _ = a.on_stream_request(15.5, _addr(1), push_pull(1, b""))
    carried = decode_recent_users(decode(answer, bytes_max=1 << 24).user_state)  # type: ignore[union-attr]
    assert [m.payload for m in carried] == [b"b5"]  # older than 10 s: dropped from the window


def test_with_user_recent_off_push_pull_carries_and_takes_no_broadcasts() -> None:
    a = make(0, user_recent_max=0)
    a.broadcast(1.0, b"x")
    answer, effects = a.on_stream_request(
        2.0, _addr(1), push_pull(1, encode_recent_users([UserMsg(origin=_id(2), seq=1, payload=b"y")])))
    assert delivered(effects) == []
    assert decode(answer, bytes_max=1 << 24).user_state == b""  # type: ignore[union-attr]


# --- the cluster (simulator) -----------------------------------------------------------------------


def _world(n: int, **overrides: object) -> tuple[World, Counter[tuple[bytes, int]]]:
    w = World(1, nodes=n, config=SwimConfig.profile("lan", **overrides), net=NetConfig(), bootstrap="warm")
    got: Counter[tuple[bytes, int]] = Counter()
    w.broadcast_listeners.append(lambda now, obs, b: got.update([(b.payload, obs)]))
    return w, got


def test_a_restarted_node_s_broadcasts_are_not_taken_for_copies_of_its_earlier_ones() -> None:
    # Its sequence numbers used to start at 1 again; every member still remembered
    # (origin, 1) and silently dropped the new broadcast.
    n = 20
    w, got = _world(n)
    w.at(5.0, lambda: w.do(3, lambda s, now: s.broadcast(now, b"first")))
    w.at(10.0, lambda: w.crash(3))
    w.at(12.0, lambda: w.restart(3))
    w.at(40.0, lambda: w.do(3, lambda s, now: s.broadcast(now, b"second")))
    w.run_until(60.0)
    for payload in (b"first", b"second"):
        assert sorted(obs for p, obs in got if p == payload) == [i for i in range(n) if i != 3]


@pytest.mark.parametrize("recent", [32, 0])
def test_a_member_cut_off_during_a_broadcast_gets_it_at_a_later_push_pull(recent: int) -> None:
    n = 30
    w, got = _world(n, user_recent_max=recent)
    w.at(10.0, lambda: w.partition([[7], [i for i in range(n) if i != 7]]))
    w.at(11.0, lambda: w.do(0, lambda s, now: s.broadcast(now, b"missed")))
    w.at(14.0, w.heal)
    w.run_until(100.0)
    assert all(c == 1 for c in got.values())  # at most once each
    others = {obs for p, obs in got if p == b"missed"}
    assert others >= {i for i in range(1, n) if i != 7}
    if recent:
        assert 7 in others
        assert sum(x.swim.statistics().broadcasts_repaired for x in w.nodes) >= 1
    else:
        assert 7 not in others  # gossip alone had given up on it: what the repair is for


def test_a_node_joining_through_seeds_is_not_handed_the_broadcasts_sent_before() -> None:
    n = 20
    w, got = _world(n)
    w.at(8.0, lambda: w.crash(5))
    w.at(10.0, lambda: w.do(0, lambda s, now: s.broadcast(now, b"before")))
    w.at(12.0, lambda: w.restart(5))  # rejoins through the seeds with no memory
    w.at(30.0, lambda: w.do(0, lambda s, now: s.broadcast(now, b"after")))
    w.run_until(90.0)
    assert (b"before", 5) not in got
    assert got[(b"after", 5)] == 1
    assert sorted(obs for p, obs in got if p == b"before") == [i for i in range(1, n) if i != 5]
