"""`python -m benchmarks swim-sim`: SWIM membership at scale in the seeded simulator.

The cluster starts warm (every node preloaded with the member list, as after its join
push-pull), runs `--warmup-s` to settle, then is measured for `--duration-s`:

* `--kill K` nodes crash, spread evenly over the window (each at least 40 s before its end);
  detect_all_* is, per crash, the time until every surviving node marks it dead;
  detect_first_* until the first one does; crashes_detected counts crashes that every
  survivor detected.
* false_deaths: distinct (node, incarnation) pairs declared dead (by whoever declared first)
  while the node was running and not stalled. Counted the same way for every profile.
  A declaration by an observer on the other side of a partition is not false (the node
  really is unreachable from there), nor is one made within one maximum suspicion timeout
  after the heal by an observer that was on the other side (its suspicion began while the
  node was unreachable); those are counted in partition_deaths instead.
* dissemination_p9999_s: one user broadcast every 5 s from a random live node; the 99.99th
  percentile over (broadcast, live receiver on the sender's side of any partition) of the
  time to reach it (never = infinity).
* `--stall F`: a fraction F of nodes pause for U(1, 5) s, again and again (gaps U(5, 25) s).
* `--partition-s S`: two halves are split at the start of the window for S seconds;
  heal_converge_s is the time from the heal until every live view agrees (equal
  checksums, every live node alive in every view). Crashes then happen after that.
* msgs/bytes per node per second: datagrams plus stream messages, in the window.
* `--secure`: the same run with the security layer on in the simulator (certificates in
  every Alive, signed records, admission, sealed datagrams; see `meshcore/sim/_secure.py`);
  security_drops counts datagrams and admissions refused (none expected: no outsiders).
"""

from __future__ import annotations

import argparse
import math
import random
import time

from benchmarks._report import emit, percentile
from meshcore.sim import NetConfig, World
from meshcore.swim import EventKind, MemberEvent, UserBroadcast
from meshcore.swim._suspicion import suspicion_timeout_s


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--kill", type=int, default=3)
    p.add_argument("--stall", type=float, default=0.0)
    p.add_argument("--partition-s", type=float, default=0.0)
    p.add_argument("--duration-s", type=float, default=120.0)
    p.add_argument("--warmup-s", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", default="lan")
    p.add_argument("--latency-ms", type=float, default=1.0, help="base one-way latency")
    p.add_argument("--jitter-ms", type=float, default=4.0)
    p.add_argument("--verbose", action="store_true", help="print each false death")
    p.add_argument("--secure", action="store_true",
                   help="certificates, signed records, admission and sealed datagrams")


def run(args: argparse.Namespace) -> None:
    wall0 = time.perf_counter()
    n = args.nodes
    world = World(args.seed, n, profile=args.profile, bootstrap="warm", secure=args.secure,
                  net=NetConfig(loss=args.loss, latency_base_s=args.latency_ms / 1000,
                                latency_jitter_s=args.jitter_ms / 1000))
    plan = random.Random(args.seed * 7919 + 17)
    t0 = args.warmup_s
    t_end = t0 + args.duration_s
    ids = [nd.node_id for nd in world.nodes]

    order = list(range(n))
    plan.shuffle(order)
    victims = order[: args.kill]
    stallers = order[args.kill: args.kill + int(round(args.stall * n))]

    # --- partition -------------------------------------------------------------------
    heal_at = None
    kill_from = t0 + 5.0
    if args.partition_s > 0:
        half = n // 2
        world.at(t0, lambda: world.partition([list(range(half)), list(range(half, n))]))
        heal_at = t0 + args.partition_s
        world.at(heal_at, world.heal)
        kill_from = heal_at + 30.0
    kill_to = max(kill_from, t_end - 40.0)
    crash_at: dict[int, float] = {}
    for j, v in enumerate(victims):
        t = kill_from + (kill_to - kill_from) * (j / max(1, len(victims) - 1) if len(victims) > 1 else 0.0)
        crash_at[v] = t
        world.at(t, lambda v=v: world.crash(v))

    # --- stalls --------------------------------------------------------------------------
    def stall_loop(i: int) -> None:
        world.stall(i, plan.uniform(1.0, 5.0))
        world.at(world.now + plan.uniform(5.0, 25.0) + 5.0, lambda: stall_loop(i))

    for i in stallers:
        world.at(t0 + plan.uniform(0.0, 20.0), lambda i=i: stall_loop(i))

    # --- observation --------------------------------------------------------------------
    dead_seen: dict[int, dict[int, float]] = {v: {} for v in victims}
    partition_deaths: set[tuple[bytes, int]] = set()
    cfg = world.config
    susp_max_s = cfg.suspicion_max_timeout_mult * max(
        cfg.suspicion_floor_s, suspicion_timeout_s(cfg.suspicion_mult, n, cfg.probe_interval_s))
    half = n // 2

    def split_by_partition(now: float, obs: int, target: int) -> bool:
        if heal_at is None or now < t0:
            return False
        if now < heal_at:
            return world.separated(obs, target)
        return now <= heal_at + susp_max_s and (obs < half) != (target < half)

    first_decl: dict[tuple[bytes, int], bool] = {}
    idx_of = world.ids

    def on_event(now: float, obs: int, e: MemberEvent) -> None:
        if e.kind is not EventKind.DEAD:
            return
        target = idx_of[e.member.node]
        if target in dead_seen and now >= crash_at[target]:  # not a death during a partition
            dead_seen[target].setdefault(obs, now)
        key = (e.member.node, e.member.incarnation)
        if key not in first_decl:
            tn = world.nodes[target]
            first_decl[key] = tn.running and not world.is_stalled(target) and now >= t0
            if first_decl[key] and split_by_partition(now, obs, target):
                first_decl[key] = False
                partition_deaths.add(key)
            if first_decl[key] and args.verbose:
                print(f"false death t={now:.2f} observer={obs} (stalled={world.is_stalled(obs)}, "
                      f"resumed {now - world.nodes[obs].resumed_at:.2f}s ago) node={target} "
                      f"inc={e.member.incarnation} (resumed {now - tn.resumed_at:.2f}s ago)")

    world.listeners.append(on_event)

    sent: list[tuple[float, int, set[int]]] = []
    got: dict[tuple[bytes, bytes], float] = {}

    def on_bcast(now: float, obs: int, b: UserBroadcast) -> None:
        got.setdefault((b.payload, ids[obs]), now)

    world.broadcast_listeners.append(on_bcast)

    def issue(k: int) -> None:
        live = [i for i in world.running() if not world.is_stalled(i)]
        origin = live[plan.randrange(len(live))]
        payload = f"b{k}".encode()
        # Receivers cut off by an active partition are not expected to get it.
        receivers = {r for r in world.running() if r != origin and not world.separated(origin, r)}
        sent.append((world.now, origin, receivers))
        world.do(origin, lambda s, now: s.broadcast(now, payload))

    k = 0
    t = t0 + 2.0
    while t < t_end - 10:
        world.at(t, lambda k=k: issue(k))
        k += 1
        t += 5.0

    world.run_until(t0)
    d0, db0 = world.datagrams_sent + world.stream_msgs, world.datagram_bytes + world.stream_bytes

    heal_converge = math.nan
    if heal_at is not None:
        world.run_until(heal_at)
        t = heal_at
        while t < t_end:
            t += 0.25
            world.run_until(t)
            if world.converged():
                heal_converge = world.now - heal_at
                break
    world.run_until(t_end)
    d1, db1 = world.datagrams_sent + world.stream_msgs, world.datagram_bytes + world.stream_bytes

    # --- metrics -----------------------------------------------------------------------
    survivors = set(world.running())
    detect_all, detect_first, detected = [], [], 0
    for v in victims:
        seen = dead_seen[v]
        others = survivors - {v}
        if seen:
            detect_first.append(min(seen.values()) - crash_at[v])
        if others <= set(seen):
            detected += 1
            detect_all.append(max(seen[o] for o in others) - crash_at[v])
        else:
            detect_all.append(math.inf)
    lat: list[float] = []
    for k, (ts, _origin, receivers) in enumerate(sent):
        payload = f"b{k}".encode()
        for r in receivers:
            if r in survivors:
                tr = got.get((payload, ids[r]))
                lat.append(math.inf if tr is None else tr - ts)
    span = args.duration_s * n
    metrics = {
        "detect_all_p50_s": percentile(detect_all, 50),
        "detect_all_p99_s": percentile(detect_all, 99),
        "detect_first_p50_s": percentile(detect_first, 50),
        "crashes_detected": detected,
        "false_deaths": sum(1 for v in first_decl.values() if v),
        "partition_deaths": len(partition_deaths),
        "dissemination_p9999_s": percentile(lat, 99.99),
        "heal_converge_s": heal_converge,
        "msgs_per_node_s": (d1 - d0) / span,
        "bytes_per_node_s": (db1 - db0) / span,
        "security_drops": sum(world.security_drops().values()),
        "events": world.events_processed,
        "trace_sha256": world.trace_sha256(),
        "wall_s": time.perf_counter() - wall0,
    }
    params = {k: getattr(args, k) for k in ("nodes", "loss", "kill", "stall", "partition_s",
                                            "duration_s", "seed", "profile", "secure")}
    emit("swim-sim", params, metrics, args.json)
