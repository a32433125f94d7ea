"""SWIM timing and algorithm switches, and the named profiles.

Profiles (`SwimConfig.profile(name, **overrides)`):

=====================  ======  ======  ======  ==========  ======  =====================
field                  lan     wan     local   memberlist  swim    memberlist LAN/WAN/Local
=====================  ======  ======  ======  ==========  ======  =====================
probe_interval_s       1.0     5.0     0.5     1.0         1.0     1.0 / 5.0 / 1.0
probe_timeout_s        0.2     3.0     0.1     0.5         0.5     0.5 / 3.0 / 0.2
indirect_checks        3       3       1       3           3       3 / 3 / 1
suspicion_mult         2.25    5       4       4           4       4 / 6 / 3
suspicion_floor_s      6.5     20      2       0           0       0 (none)
suspicion_max_mult     6       6       6       6           1       6 / 6 / 6
confirmations_k        3       3       2       mult-2=2    0       SuspicionMult-2
retransmit_mult        4       4       3       4           4       4 / 4 / 2
gossip_interval_s      0.2     0.5     0.1     0.2         off     0.2 / 0.5 / 0.1
gossip_nodes           3       4       3       3           0       3 / 4 / 3
push_pull_interval_s   60      60      15      30          off     30 / 60 / 15
awareness_max          8       8       8       8           1(off)  8
stream fallback        yes     yes     yes     yes         no      yes (TCP pings)
=====================  ======  ======  ======  ==========  ======  =====================

`memberlist` is memberlist's algorithm with DefaultLANConfig (Lifeguard included) and none
of our changes. `swim` is the 2002 paper: fixed suspicion timeout, no local health, no buddy
system, no confirmations, piggyback-only dissemination, no stream fallback, no push-pull.

Our changes over memberlist (the `lan`, `wan`, `local` profiles):

* `urgent_first`: Suspect, Dead and refuting Alive records go ahead of the rest of the
  piggyback queue, so failure news and refutations spread at full speed under load;
* `eager_suspect_probe`: a member that hears a new suspicion probes the suspect at its next
  tick, so independent confirmations (and refutations) come within a probe period and the
  Lifeguard timeout reaches its minimum quickly — which lets `suspicion_mult` be lower
  than memberlist's while keeping its protection against false positives;
* `tell_dead_senders`: a member that hears from a node it believes dead answers with that
  Dead record first, so the node refutes at once (heals partitions and restarts fast); and
  a member that hears a suspicion of an older incarnation of itself answers with its
  current Alive, so a stale suspicion cannot linger until it times out into a death;
* `reconnect_per_s`: periodic push-pull with a random recently dead member (or with a
  seed when no seed is alive in our view), about `reconnect_per_s` times a second for the
  whole cluster, so a healed partition or a restarted node merges by itself; it knocks
  first (a stream ping) and sends its full state only to a member that answers, since
  most recently dead members are really gone;
* heal mode (`heal_window_s`) and `death_notices`: a node that sees a partition heal (a
  knock answered, itself dead in a peer's state, many dead members back within the
  window) exchanges state by push-pull every `reconnect_min_interval_s` while the evidence
  lasts, and meanwhile a push-pull peer that holds dead a member we see alive at the same
  incarnation (the two were cut apart) makes us send that member the claim in one
  datagram, so it refutes, instead of suspecting it ourselves and gossiping the suspicion;
  so the bulk of a heal — every member's refutation — travels in full-state exchanges
  rather than through the piggyback queue, whose capacity bounds gossip at ~20 KB/s; on
  entering heal mode a node also forgets the local health the cut raised and the probe it
  began before the heal (whose verdict would be the cut's, not the target's);
* `defer_late_timers`: a suspicion or probe timer that fires late (the node itself was
  paused) is put off by one probe timeout so that the inbox — maybe a refutation, maybe the
  ack — is read before a verdict; a late timer also raises local health;
* `proof_of_life`: a suspect that sent us a datagram since the suspicion began is not
  declared dead by us when the timer fires; we wait another minimum timeout and probe it
  with the suspicion first (buddy), so it refutes. A crashed node sends nothing, so this
  costs no detection time;
* `last_look`: when the suspicion timer expires, a member first probes the suspect once
  more, directly (with the suspicion, so that it refutes) and through `indirect_checks`
  helpers, and decides one probe timeout later: any answer is proof of life. Under heavy
  loss a refutation can miss a member for seconds (each copy is lost with probability p),
  while a fresh round trip usually gets through; a crashed node stays silent, so this
  costs one probe timeout of detection time;
* `budget_alive_only`: only copies sent to members we hold alive spend an update's
  transmit budget; copies to suspects (probes with the suspicion, last looks) and to the
  recently dead (memberlist's gossip to the dead, for `gossip_to_dead_s`, so that a wrongly
  dead member hears it and refutes) are extra. memberlist spends the budget on them all:
  during a partition the whole other side is suspect, then "recently dead", for half a
  minute, about half of every update's budget goes to unreachable members, and broadcasts
  sent on one side then missed members of that same side;
* the gossip timer only runs while there is something to send (same behaviour, cheaper).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..wire import DATAGRAM_PAYLOAD_BYTES_MAX, RECENT_USER_MAX

__all__ = ["SwimConfig", "PROFILES", "retransmit_limit", "push_pull_scale_s"]


def retransmit_limit(mult: int, n: int) -> int:
    """memberlist's `retransmitLimit`: mult * ceil(log10(n + 1))."""
    return mult * math.ceil(math.log10(n + 1))


def push_pull_scale_s(interval_s: float, n: int, threshold_nodes: int = 32) -> float:
    """memberlist's `pushPullScale`: above 32 nodes the interval grows with log2(n / 32)."""
    if n <= threshold_nodes:
        return interval_s
    multiplier = math.ceil(math.log2(n) - math.log2(threshold_nodes)) + 1.0
    return interval_s * multiplier


@dataclass(frozen=True, slots=True, kw_only=True)
class SwimConfig:
    """All knobs of the SWIM core. Use `SwimConfig.profile(name, **overrides)`."""

    profile_name: str = "lan"
    #: memberlist's LAN value. Probing twice as often bought about half a second of
    #: detection for twice the datagrams (sealed, 4 instead of 2 per node per second); the
    #: refused-connection path and confirmations buy far more for nothing.
    probe_interval_s: float = 1.0
    probe_timeout_s: float = 0.2
    indirect_checks: int = 3
    #: memberlist scales the suspicion timeout with the probe interval; with our 1 s probes,
    #: 2.25 keeps the timeout we tuned with 0.5 s probes (4.5 x log10(n) x 0.5 s).
    suspicion_mult: float = 2.25
    suspicion_max_timeout_mult: float = 6.0
    #: Lower bound of the minimum suspicion timeout (memberlist: none). Must exceed the
    #: longest pause a healthy node may take plus the time its refutation needs.
    suspicion_floor_s: float = 6.5
    #: Confirmations to reach the minimum timeout; None means memberlist's mult - 2.
    confirmations_k: int | None = 3
    retransmit_mult: int = 4
    gossip_interval_s: float = 0.2
    gossip_nodes: int = 3
    gossip_to_dead_s: float = 30.0
    push_pull_interval_s: float = 60.0  # 0 disables periodic push-pull (join still uses it)
    push_pull_scale_nodes: int = 32
    awareness_max: int = 8
    buddy: bool = True
    stream_fallback: bool = True
    stream_timeout_s: float = 10.0
    # --- our changes (all off in the memberlist and swim profiles) ---
    urgent_first: bool = True
    eager_suspect_probe: bool = True
    tell_dead_senders: bool = True
    #: Push-pulls per second, for the whole cluster, with recently dead members (0: off).
    reconnect_per_s: float = 8.0
    reconnect_min_interval_s: float = 1.0
    reconnect_window_s: float = 3600.0
    #: Heal mode: after evidence that a partition healed (a dead member answered a knock,
    #: a peer had us dead, or at least max(`heal_revivals_min`, `heal_revivals_frac` x live
    #: members) dead members came back within `heal_window_s`), exchange state (push-pull,
    #: checksum first) every `reconnect_min_interval_s` for `heal_window_s` past the last
    #: such evidence. The fraction keeps restarts and stalled nodes coming back, a few at a
    #: time in a large cluster, from counting as a heal.
    heal_window_s: float = 10.0
    heal_revivals_min: int = 3
    heal_revivals_frac: float = 0.05
    #: In heal mode, a push-pull that claims a member we see alive (same incarnation) is
    #: suspect or dead does not make us suspect it (memberlist's "remote dead => suspect"
    #: floods each side of a healed partition with wrong suspicions of its own members);
    #: instead we tell up to `death_notices_max` such members, at random, one small
    #: datagram each, so that they refute. The rest learn it from their own heal-mode
    #: exchanges. Outside heal mode we suspect, as memberlist does (at 20 % loss, telling
    #: instead slowed crash detection: p99 20.4 -> 26.7 s).
    death_notices: bool = True
    death_notices_max: int = 16
    budget_alive_only: bool = True
    #: Push-pull also carries the last `user_recent_max` user broadcasts this node sent or
    #: got by gossip (0: off), if younger than `user_recent_s`, so that a member that missed
    #: one on the gossip path gets it at a later exchange (Serf carries its recent user
    #: events the same way; memberlist has none). A member delivers such a broadcast once,
    #: like any other, and gossips it on, but does not carry it in its own push-pulls. The
    #: window spans a few push-pull intervals (60 s, x4 at 200 nodes, x6 at 1,000); the
    #: count bounds what an exchange carries (64 x 1 KiB payloads at most).
    user_recent_max: int = 64
    user_recent_s: float = 600.0
    defer_late_timers: bool = True
    proof_of_life: bool = True
    last_look: bool = True
    #: A stream fallback probe that the target's host refused (nothing listens on the
    #: port: the process is gone, e.g. kill -9 or a crash) caps our own suspicion of it at
    #: this many seconds (0: off). A stalled or unreachable node is never refused — its
    #: kernel still accepts, or nothing answers at all — so this cannot shorten those.
    refused_suspicion_s: float = 1.0
    #: Periodic push-pull opens with the membership checksum alone; member states cross
    #: the link only when the two views differ.
    push_pull_checksum_first: bool = True
    # --- limits ---
    packet_bytes_max: int = DATAGRAM_PAYLOAD_BYTES_MAX
    broadcast_queue_max: int = 8192
    user_seen_max: int = 65536
    member_reclaim_s: float = 24 * 3600.0
    indirect_pending_max: int = 1024

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or f.name == "profile_name" or v is None:
                continue
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"SwimConfig.{f.name} must be a number >= 0, got {v!r}")
        if self.probe_interval_s <= 0 or self.probe_timeout_s <= 0:
            raise ConfigError("probe_interval_s and probe_timeout_s must be > 0")
        if self.probe_timeout_s > self.probe_interval_s:
            raise ConfigError("probe_timeout_s must not exceed probe_interval_s")
        if self.awareness_max < 1:
            raise ConfigError("awareness_max must be >= 1 (1 disables local health)")
        if type(self.user_recent_max) is not int or self.user_recent_max > RECENT_USER_MAX:
            raise ConfigError(f"user_recent_max must be an int in [0, {RECENT_USER_MAX}]")
        if self.packet_bytes_max > DATAGRAM_PAYLOAD_BYTES_MAX or self.packet_bytes_max < 256:
            raise ConfigError(f"packet_bytes_max must be in [256, {DATAGRAM_PAYLOAD_BYTES_MAX}]")

    @property
    def k(self) -> int:
        if self.confirmations_k is None:
            return max(0, int(self.suspicion_mult) - 2)
        return self.confirmations_k

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> SwimConfig:
        if name not in PROFILES:
            raise ConfigError(f"unknown SWIM profile {name!r}; choose one of {', '.join(PROFILES)}")
        fields = {**PROFILES[name], **overrides}
        try:
            return cls(profile_name=name, **fields)
        except TypeError as exc:
            raise ConfigError(f"bad SwimConfig override: {exc}") from None


_MEMBERLIST_ONLY = dict(
    urgent_first=False, eager_suspect_probe=False, tell_dead_senders=False,
    reconnect_per_s=0.0, defer_late_timers=False, proof_of_life=False, last_look=False,
    refused_suspicion_s=0.0, push_pull_checksum_first=False, death_notices=False,
    budget_alive_only=False, user_recent_max=0,
)

PROFILES: dict[str, dict[str, Any]] = {
    "lan": {},
    "wan": dict(
        probe_interval_s=5.0, probe_timeout_s=3.0, suspicion_mult=5, suspicion_floor_s=20.0, gossip_interval_s=0.5,
        gossip_nodes=4, push_pull_interval_s=60.0, gossip_to_dead_s=60.0, stream_timeout_s=30.0,
        reconnect_per_s=2.0, reconnect_min_interval_s=5.0, refused_suspicion_s=5.0,
    ),
    "local": dict(
        probe_interval_s=0.5, probe_timeout_s=0.1, indirect_checks=1, suspicion_mult=4, suspicion_floor_s=2.0, confirmations_k=2,
        retransmit_mult=3, gossip_interval_s=0.1, push_pull_interval_s=15.0,
        gossip_to_dead_s=15.0, stream_timeout_s=1.0, refused_suspicion_s=0.5,
    ),
    "memberlist": dict(probe_interval_s=1.0, probe_timeout_s=0.5, suspicion_mult=4, push_pull_interval_s=30.0,
                       suspicion_floor_s=0.0, confirmations_k=None, **_MEMBERLIST_ONLY),
    "swim": dict(
        probe_interval_s=1.0, probe_timeout_s=0.5, suspicion_floor_s=0.0, suspicion_mult=4, suspicion_max_timeout_mult=1, confirmations_k=0, awareness_max=1,
        buddy=False, stream_fallback=False, gossip_nodes=0, push_pull_interval_s=0.0,
        **_MEMBERLIST_ONLY,
    ),
}
