"""The SWIM core driven by hand: bytes in, effects out."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcore.swim import (
    EventKind,
    MemberEvent,
    SendDatagram,
    SendStream,
    SetTimer,
    Swim,
    SwimConfig,
    Timer,
)
from meshcore.wire import (
    Ack,
    Alive,
    Dead,
    MemberState,
    Nack,
    NodeMeta,
    Ping,
    PingReq,
    Status,
    Suspect,
    decode,
    encode,
)


def _id(i: int) -> bytes:
    return bytes([i + 1]) * 16


def _addr(i: int) -> tuple[str, int]:
    return (f"10.0.0.{i + 1}", 7946)


def make(n: int, me: int = 0, profile: str = "lan", **overrides: object) -> Swim:
    """Swim number `me` of a warm cluster of `n` (it knows everyone, at incarnation 0)."""
    cfg = SwimConfig.profile(profile, **overrides)
    s = Swim(config=cfg, node_id=_id(me), addr=_addr(me), meta=NodeMeta(name=f"n{me}"),
             rng=random.Random(me))
    s.preload(0.0, [MemberState(node=_id(i), incarnation=0, addr=_addr(i),
                                meta=NodeMeta(name=f"n{i}"), status=Status.ALIVE) for i in range(n)])
    return s


def sends(effects: list) -> list[tuple[tuple[str, int], object]]:
    return [(e.addr, decode(e.data)) for e in effects if isinstance(e, SendDatagram)]


def timers(effects: list, kind: str) -> list[SetTimer]:
    return [e for e in effects if isinstance(e, SetTimer) and e.timer.kind == kind]


def events(effects: list, kind: EventKind) -> list[MemberEvent]:
    return [e for e in effects if isinstance(e, MemberEvent) and e.kind is kind]


def start_and_probe(s: Swim) -> tuple[list, Ping, tuple[str, int]]:
    """Start `s` and fire its first probe tick; return the effects and the Ping."""
    eff = s.start(0.0, [])
    tick = timers(eff, "probe")[0]
    eff = s.on_timer(tick.at, tick.timer)
    (addr, ping), = [(a, m) for a, m in sends(eff) if isinstance(m, Ping)]
    return eff, ping, addr


def test_a_probed_member_answers_with_an_ack_of_the_same_seq() -> None:
    b = make(3, me=1)
    ping = Ping(seq=7, sender=_id(0), target=_id(1))
    (addr, ack), = sends(b.on_datagram(1.0, _addr(0), encode(ping)))
    assert addr == _addr(0) and isinstance(ack, Ack) and ack.seq == 7


def test_a_ping_for_another_target_is_counted_and_dropped() -> None:
    b = make(3, me=1)
    eff = b.on_datagram(1.0, _addr(0), encode(Ping(seq=7, sender=_id(0), target=_id(2))))
    assert sends(eff) == [] and dict(b.statistics().dropped)["wrong_target"] == 1


def test_a_suspected_member_refutes_with_a_higher_incarnation() -> None:
    b = make(3, me=1)
    sus = Suspect(node=_id(1), incarnation=0, by=_id(0))
    eff = b.on_datagram(1.0, _addr(0), encode(Ping(seq=1, sender=_id(0), target=_id(1), updates=(sus,))))
    assert b.incarnation == 1
    (_, ack), = sends(eff)
    # The refutation rides in the very ack, first.
    assert isinstance(ack.updates[0], Alive) and ack.updates[0].incarnation == 1
    assert b.statistics().refutations == 1 and b.local_health == 1


def test_buddy_system_puts_the_suspicion_first_in_the_probe_of_a_suspect() -> None:
    a = make(2, me=0)
    a.on_datagram(0.5, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Suspect(node=_id(1), incarnation=0, by=_id(1)),))))
    assert a.member(_id(1)).status is Status.SUSPECT
    _, ping, addr = start_and_probe(a)
    assert addr == _addr(1)
    assert isinstance(ping.updates[0], Suspect) and ping.updates[0].node == _id(1)


def test_plain_swim_has_no_buddy_system() -> None:
    a = make(2, me=0, profile="swim")
    a.on_datagram(0.5, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Suspect(node=_id(1), incarnation=0, by=_id(1)),))))
    _, ping, _ = start_and_probe(a)
    assert not any(isinstance(u, Suspect) for u in ping.updates[:1]) or ping.updates[0].by != _id(0)


def _fail_direct_probe(a: Swim) -> tuple[Ping, list, SetTimer]:
    eff, ping, _ = start_and_probe(a)
    timeout = timers(eff, "probe_timeout")[0]
    end = timers(eff, "probe_end")[0]
    eff2 = a.on_timer(timeout.at, timeout.timer)
    return ping, eff2, end


def test_indirect_probes_go_to_k_members_and_a_nack_spares_local_health() -> None:
    a = make(6, me=0)
    ping, eff, end = _fail_direct_probe(a)
    reqs = [(addr, m) for addr, m in sends(eff) if isinstance(m, PingReq)]
    assert len(reqs) == 3 and all(m.target == ping.target for _, m in reqs)
    assert ping.target not in {decode_addr for decode_addr, _ in reqs}
    # Every intermediate answers with a nack: the fault is not ours.
    for addr, req in reqs:
        helper = int(addr[0].rsplit(".", 1)[1]) - 1
        a.on_datagram(end.at - 0.1, addr, encode(Nack(seq=req.seq, sender=_id(helper))))
    eff3 = a.on_timer(end.at, end.timer)
    assert a.local_health == 0
    assert events(eff3, EventKind.SUSPECT)[0].member.node == ping.target


def test_missing_nacks_raise_local_health() -> None:
    a = make(6, me=0)
    _, _, end = _fail_direct_probe(a)
    a.on_timer(end.at, end.timer)
    assert a.local_health == 3  # one point per missing nack


def test_an_intermediate_forwards_the_ack_or_sends_a_nack_in_time() -> None:
    b = make(3, me=1)
    req = PingReq(seq=9, sender=_id(0), target=_id(2), target_addr=_addr(2))
    eff = b.on_datagram(1.0, _addr(0), encode(req))
    (addr, ping), = sends(eff)
    assert addr == _addr(2) and ping.target == _id(2)
    (_, ack), = sends(b.on_datagram(1.01, _addr(2), encode(Ack(seq=ping.seq, sender=_id(2)))))
    assert isinstance(ack, Ack) and ack.seq == 9
    # Second request: the target stays silent, so the origin gets a nack.
    eff = b.on_datagram(2.0, _addr(0), encode(PingReq(seq=10, sender=_id(0), target=_id(2), target_addr=_addr(2))))
    t = timers(eff, "indirect_timeout")[0]
    (_, nack), = sends(b.on_timer(t.at, t.timer))
    assert isinstance(nack, Nack) and nack.seq == 10


def test_a_probe_falls_back_to_the_stream_when_udp_is_blocked() -> None:
    a = make(4, me=0)
    b_index = None
    ping, eff, end = _fail_direct_probe(a)
    (stream,) = [e for e in eff if isinstance(e, SendStream)]
    b_index = int(stream.addr[0].rsplit(".", 1)[1]) - 1
    b = make(4, me=b_index)
    reply, _ = b.on_stream_request(0.8, _addr(0), stream.data)
    assert reply is not None
    a.on_stream_reply(0.9, stream.token, reply)
    eff2 = a.on_timer(end.at, end.timer)
    assert events(eff2, EventKind.SUSPECT) == []
    assert a.member(ping.target).status is Status.ALIVE
    assert a.statistics().stream_probes_ok == 1


def test_plain_swim_never_uses_the_stream_fallback() -> None:
    a = make(4, me=0, profile="swim")
    _, eff, _ = _fail_direct_probe(a)
    assert not [e for e in eff if isinstance(e, SendStream)]


def test_a_suspicion_times_out_into_death() -> None:
    a = make(3, me=0)
    eff = a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Suspect(node=_id(2), incarnation=0, by=_id(1)),))))
    assert events(eff, EventKind.SUSPECT)
    t = timers(eff, "suspicion")[0]
    eff = a.on_timer(t.at, t.timer)  # time is up: a last look first, no verdict yet
    assert events(eff, EventKind.DEAD) == []
    (verdict,) = timers(eff, "suspicion")
    eff = a.on_timer(verdict.at, verdict.timer)
    assert events(eff, EventKind.DEAD)[0].member.node == _id(2)
    assert a.member(_id(2)).status is Status.DEAD


def test_memberlist_declares_a_suspect_dead_as_soon_as_its_timer_expires() -> None:
    a = make(3, me=0, profile="memberlist")
    eff = a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Suspect(node=_id(2), incarnation=0, by=_id(1)),))))
    t = timers(eff, "suspicion")[0]
    eff = a.on_timer(t.at, t.timer)
    assert events(eff, EventKind.DEAD)[0].member.node == _id(2)


def test_a_last_look_probes_the_suspect_with_the_suspicion_and_through_helpers() -> None:
    a = make(6, me=0)
    eff = a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Suspect(node=_id(2), incarnation=0, by=_id(1)),))))
    t = timers(eff, "suspicion")[0]
    eff = a.on_timer(t.at, t.timer)
    out = sends(eff)
    pings = [(addr, m) for addr, m in out if isinstance(m, Ping)]
    reqs = [(addr, m) for addr, m in out if isinstance(m, PingReq)]
    assert [addr for addr, _ in pings] == [_addr(2)]
    assert isinstance(pings[0][1].updates[0], Suspect) and pings[0][1].updates[0].node == _id(2)
    assert len(reqs) == 3 and all(m.target == _id(2) and m.seq == pings[0][1].seq for _, m in reqs)
    assert a.statistics().last_looks == 1


def test_an_answer_to_the_last_look_relayed_by_a_helper_spares_the_suspect() -> None:
    a = make(6, me=0)
    eff = a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Suspect(node=_id(2), incarnation=0, by=_id(1)),))))
    t = timers(eff, "suspicion")[0]
    eff = a.on_timer(t.at, t.timer)
    (_, req) = next((addr, m) for addr, m in sends(eff) if isinstance(m, PingReq))
    (verdict,) = timers(eff, "suspicion")
    a.on_datagram(t.at + 0.01, _addr(3), encode(Ack(seq=req.seq, sender=_id(3))))
    eff = a.on_timer(verdict.at, verdict.timer)
    assert events(eff, EventKind.DEAD) == []
    assert a.member(_id(2)).status is Status.SUSPECT


def test_a_stale_suspicion_timer_is_ignored_after_a_refutation() -> None:
    a = make(3, me=0)
    eff = a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Suspect(node=_id(2), incarnation=0, by=_id(1)),))))
    t = timers(eff, "suspicion")[0]
    alive = Alive(node=_id(2), incarnation=1, addr=_addr(2), meta=NodeMeta(name="n2"))
    eff = a.on_datagram(2.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(alive,))))
    assert events(eff, EventKind.ALIVE)
    assert events(a.on_timer(t.at, t.timer), EventKind.DEAD) == []


def test_a_graceful_leave_is_gossiped_and_seen_as_left() -> None:
    a = make(3, me=0)
    b = make(3, me=1)
    a.start(0.0, [])
    eff = a.leave(1.0)
    g = timers(eff, "gossip")[0]
    out = a.on_timer(g.at, g.timer)
    msgs = [m for _, m in sends(out)]
    leave = next(u for m in msgs for u in m.updates if isinstance(u, Dead))
    assert leave.node == leave.by == _id(0)
    eff = b.on_datagram(1.3, _addr(0), encode(Ack(seq=0, sender=_id(0), updates=(leave,))))
    assert events(eff, EventKind.LEFT) and b.member(_id(0)).status is Status.LEFT


def test_a_restarted_node_refutes_an_older_claim_about_itself() -> None:
    fresh = make(3, me=1)  # restarted: incarnation 0 again
    dead = Dead(node=_id(1), incarnation=4, by=_id(0))
    fresh.on_datagram(1.0, _addr(0), encode(Ack(seq=0, sender=_id(0), updates=(dead,))))
    assert fresh.incarnation == 5
    # and a stale Alive of its previous life is outbid as well
    old = Alive(node=_id(1), incarnation=7, addr=_addr(1), meta=NodeMeta(name="n1"))
    fresh.on_datagram(1.1, _addr(0), encode(Ack(seq=0, sender=_id(0), updates=(old,))))
    assert fresh.incarnation == 8


def test_a_metadata_update_bumps_the_incarnation_and_reaches_others_as_updated() -> None:
    a = make(2, me=0)
    b = make(2, me=1)
    eff = a.update_metadata(1.0, NodeMeta.build(name="n0", roles=["storage"]))
    assert a.incarnation == 1 and events(eff, EventKind.UPDATED)
    g = timers(eff, "gossip")[0]
    (_, msg), = sends(a.on_timer(g.at, g.timer))
    eff = b.on_datagram(1.3, _addr(0), encode(msg))
    (ev,) = events(eff, EventKind.UPDATED)
    assert ev.member.meta.roles == ("storage",) and ev.member.incarnation == 1


def test_equal_views_have_equal_checksums() -> None:
    a, b = make(5, me=0), make(5, me=3)
    assert a.checksum() == b.checksum()
    sus = Suspect(node=_id(2), incarnation=0, by=_id(1))
    a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(sus,))))
    assert a.checksum() != b.checksum()
    b.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(sus,))))
    assert a.checksum() == b.checksum()


def test_a_user_broadcast_is_delivered_once() -> None:
    a, b = make(2, me=0), make(2, me=1)
    eff = a.broadcast(1.0, b"hello")
    g = timers(eff, "gossip")[0]
    data = [e.data for e in a.on_timer(g.at, g.timer) if isinstance(e, SendDatagram)][0]
    first = [e for e in b.on_datagram(1.3, _addr(0), data) if type(e).__name__ == "UserBroadcast"]
    again = [e for e in b.on_datagram(1.4, _addr(0), data) if type(e).__name__ == "UserBroadcast"]
    assert [e.payload for e in first] == [b"hello"] and again == []


def test_every_datagram_fits_the_payload_limit_even_with_a_full_queue() -> None:
    a = make(2, me=0)
    for i in range(300):
        a.on_datagram(0.1, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(Alive(
            node=bytes([200, i % 256, i // 256]) + bytes(13), incarnation=0, addr=("10.9.9.9", 1),
            meta=NodeMeta.build(name="x" * 60, tags={"k": "v" * 100})),))))
    _, ping, _ = start_and_probe(a)
    eff = a.on_timer(0.5, Timer("gossip"))
    assert all(len(e.data) <= a.config.packet_bytes_max for e in eff if isinstance(e, SendDatagram))


@given(st.binary(max_size=300))
def test_random_datagrams_are_only_ever_counted_as_dropped(data: bytes) -> None:
    a = make(3, me=0)
    a.on_datagram(1.0, _addr(1), data)
    a.on_stream_request(1.0, _addr(1), data)
    assert a.statistics().dropped_total >= 1


_VALID = [encode(m) for m in (
    Ping(seq=3, sender=_id(1), target=_id(0), updates=(Suspect(node=_id(2), incarnation=0, by=_id(1)),)),
    Ack(seq=3, sender=_id(1), updates=(Alive(node=_id(2), incarnation=2, addr=_addr(2), meta=NodeMeta()),)),
    PingReq(seq=3, sender=_id(1), target=_id(2), target_addr=_addr(2)),
)]


@given(st.sampled_from(_VALID), st.integers(0, 200), st.integers(0, 255), st.integers(0, 3))
def test_mutated_datagrams_never_raise(data: bytes, pos: int, value: int, how: int) -> None:
    a = make(3, me=0)
    a.start(0.0, [])
    b = bytearray(data)
    pos %= len(b)
    if how == 0:
        b[pos] = value
    elif how == 1:
        del b[pos:]
    elif how == 2:
        b.insert(pos, value)
    else:
        b[pos] ^= 1 << (value % 8)
    a.on_datagram(1.0, _addr(1), bytes(b))
    a.on_stream_request(1.0, _addr(1), bytes(b))
    a.on_stream_reply(1.0, 12345, bytes(b))


def test_a_reconnect_knocks_on_a_dead_member_before_sending_the_full_state() -> None:
    from meshcore.wire import STREAM_MESSAGE_BYTES_MAX, PushPull

    a = make(3, me=0)
    a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Dead(node=_id(2), incarnation=0, by=_id(1)),))))
    assert a.member(_id(2)).status is Status.DEAD
    eff = a.start(2.0, [])
    rc = timers(eff, "reconnect")[0]
    eff = a.on_timer(rc.at, rc.timer)
    (knock,) = [e for e in eff if isinstance(e, SendStream)]
    assert knock.addr == _addr(2) and isinstance(decode(knock.data), Ping)
    b = make(3, me=2)
    reply, _ = b.on_stream_request(rc.at, _addr(0), knock.data)
    assert reply is not None
    eff = a.on_stream_reply(rc.at + 0.01, knock.token, reply)
    (pp,) = [e for e in eff if isinstance(e, SendStream)]
    assert pp.addr == _addr(2)
    assert isinstance(decode(pp.data, bytes_max=STREAM_MESSAGE_BYTES_MAX), PushPull)


def test_a_failed_knock_sends_nothing_more() -> None:
    a = make(3, me=0)
    a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Dead(node=_id(2), incarnation=0, by=_id(1)),))))
    eff = a.start(2.0, [])
    rc = timers(eff, "reconnect")[0]
    (knock,) = [e for e in a.on_timer(rc.at, rc.timer) if isinstance(e, SendStream)]
    assert a.on_stream_failed(rc.at + 10.0, knock.token) == []
    assert a.on_stream_reply(rc.at + 11.0, knock.token, b"late") == []


def test_a_dead_member_answering_a_knock_speeds_up_reconnects_until_the_heal_window_passes() -> None:
    a = make(40, me=0)  # 38 live members: the slow pace is one reconnect per 38/8 s
    a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Dead(node=_id(2), incarnation=0, by=_id(1)), Dead(node=_id(3), incarnation=0, by=_id(1))))))
    eff = a.start(2.0, [])
    rc = timers(eff, "reconnect")[0]
    eff = a.on_timer(rc.at, rc.timer)
    slow = timers(eff, "reconnect")[0]
    (knock,) = [e for e in eff if isinstance(e, SendStream)]
    reply, _ = make(40, me=int(knock.addr[0].rsplit(".", 1)[1]) - 1).on_stream_request(rc.at, _addr(0), knock.data)
    assert reply is not None
    eff = a.on_stream_reply(rc.at + 0.01, knock.token, reply)
    (hot,) = timers(eff, "reconnect")
    assert hot.at <= rc.at + 1.01 < slow.at and hot.timer.token != slow.timer.token
    assert a.on_timer(slow.at, slow.timer) == []  # the slow timer is stale now
    t, timer = hot.at, hot.timer
    window = a.config.heal_window_s
    while t < rc.at + 0.01 + window:  # fast pace for the whole window after the news
        (nxt,) = timers(a.on_timer(t, timer), "reconnect")
        assert nxt.at - t <= 1.0
        t, timer = nxt.at, nxt.timer
    eff = a.on_timer(t, timer)
    assert timers(eff, "reconnect")[0].at - t > 1.0  # cooled down


def test_while_healing_a_node_also_exchanges_checksums_with_live_members() -> None:
    from meshcore.wire import STREAM_MESSAGE_BYTES_MAX, PushPull

    a = make(40, me=0)
    a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
        Dead(node=_id(2), incarnation=0, by=_id(1)),))))
    eff = a.start(2.0, [])
    a._heat(2.0, eff)  # as after an answered knock
    (rc,) = [t for t in timers(eff, "reconnect") if t.timer.token == 1]
    t, timer, live_pp, knocks = rc.at, rc.timer, 0, 0
    for _ in range(8):
        eff = a.on_timer(t, timer)
        for e in eff:
            if isinstance(e, SendStream):
                msg = decode(e.data, bytes_max=STREAM_MESSAGE_BYTES_MAX)
                if isinstance(msg, PushPull):
                    assert msg.checksum and not msg.states and e.addr != _addr(2)
                    live_pp += 1
                else:
                    assert e.addr == _addr(2)
                    knocks += 1
        (nxt,) = timers(eff, "reconnect")
        t, timer = nxt.at, nxt.timer
    assert live_pp >= 1 and knocks >= 1 and live_pp + knocks == 8


def test_one_revival_is_a_restart_but_several_within_the_window_heat_reconnects() -> None:
    a = make(40, me=0)
    eff = a.start(0.0, [])
    slow = timers(eff, "reconnect")[0]
    for j in (2, 3, 4):
        a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
            Dead(node=_id(j), incarnation=0, by=_id(1)),))))
    revive = [Alive(node=_id(j), incarnation=1, addr=_addr(j), meta=NodeMeta(name=f"n{j}"))
              for j in (2, 3, 4)]
    eff = a.on_datagram(2.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=tuple(revive[:1]))))
    assert timers(eff, "reconnect") == []
    eff = a.on_datagram(3.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=tuple(revive[1:]))))
    (hot,) = timers(eff, "reconnect")
    assert hot.at <= 4.0 and hot.timer.token != slow.timer.token  # a new, fast timer


def _merge_claiming_dead(profile: str, *, healing: bool = False) -> list:
    from meshcore.wire import PushPull

    a = make(5, me=0, profile=profile)
    if healing:
        a._heat(0.5, [])  # as after an answered knock
    states = tuple(MemberState(node=_id(i), incarnation=0, addr=_addr(i), meta=NodeMeta(name=f"n{i}"),
                               status=Status.ALIVE if i in (0, 1) else Status.DEAD) for i in range(5))
    pp = PushPull(sender=_id(1), join=False, reply=False, states=states)
    _, eff = a.on_stream_request(1.0, _addr(1), encode(pp))
    return [a, eff]


def test_while_healing_a_peer_that_holds_our_live_members_dead_makes_us_tell_them() -> None:
    a, eff = _merge_claiming_dead("lan", healing=True)
    assert all(a.status_of(_id(i)) is Status.ALIVE for i in (2, 3, 4))
    notices = {addr: m for addr, m in sends(eff)}
    assert set(notices) == {_addr(2), _addr(3), _addr(4)}
    for i in (2, 3, 4):
        (claim,) = notices[_addr(i)].updates
        assert isinstance(claim, Suspect) and claim.node == _id(i) and claim.incarnation == 0
    # the member refutes when it hears the claim
    c = make(5, me=2)
    eff = c.on_datagram(1.1, _addr(0), encode(notices[_addr(2)]))
    assert c.incarnation == 1


@pytest.mark.parametrize("profile", ["lan", "memberlist"])
def test_outside_a_heal_members_a_peer_holds_dead_are_suspected(profile: str) -> None:
    a, eff = _merge_claiming_dead(profile)
    assert all(a.status_of(_id(i)) is Status.SUSPECT for i in (2, 3, 4))
    assert sends(eff) == []


def test_memberlist_suspects_members_a_peer_holds_dead_even_while_healing() -> None:
    a, eff = _merge_claiming_dead("memberlist", healing=True)
    assert all(a.status_of(_id(i)) is Status.SUSPECT for i in (2, 3, 4))
    assert sends(eff) == []


def test_evidence_of_a_heal_resets_local_health_and_drops_a_probe_begun_during_the_cut() -> None:
    a = make(10, me=0)
    eff, ping, _ = start_and_probe(a)
    target = ping.target
    a._awareness.apply_delta(5)  # as after many probes through helpers on the far side
    out: list = []
    a._heat(0.9, out)  # e.g. a dead member answered a knock
    assert a.local_health == 0
    (tick,) = timers(out, "probe")
    assert tick.at <= 0.9 + a.config.probe_interval_s
    # the old probe's end passes without a verdict: no suspicion of a member we reach again
    (end,) = timers(eff, "probe_end")
    assert events(a.on_timer(end.at, end.timer), EventKind.SUSPECT) == []
    assert a.status_of(target) is Status.ALIVE


def test_in_a_large_cluster_a_few_revivals_are_restarts_and_a_wave_of_them_is_a_heal() -> None:
    a = make(202, me=0)  # 200 live others: a heal needs ceil(5 % of them) = 10 revivals
    eff = a.start(0.0, [])
    slow = timers(eff, "reconnect")[0]
    others = list(range(2, 14))
    a.on_datagram(1.0, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=tuple(
        Dead(node=_id(j), incarnation=0, by=_id(1)) for j in others))))

    def revive(j: int, t: float) -> list:
        return a.on_datagram(t, _addr(1), encode(Ack(seq=0, sender=_id(1), updates=(
            Alive(node=_id(j), incarnation=1, addr=_addr(j), meta=NodeMeta(name=f"n{j}")),))))

    for k, j in enumerate(others[:9]):
        fast = [t for t in timers(revive(j, 2.0 + 0.1 * k), "reconnect") if t.timer.token != slow.timer.token]
        assert fast == []  # nine came back: still a few restarts
    (hot,) = timers(revive(others[9], 3.0), "reconnect")
    assert hot.timer.token != slow.timer.token and hot.at <= 4.0
